"""Regenerate the incident library: small, seeded data snapshots of past incidents.

    .venv/bin/python include/incidents/generate.py [--only NAME ...]

The snapshots under include/incidents/<name>/ are the record and are committed; `watchkeeper
backtest` replays them as they are and never calls this script. Run it only to change an incident
on purpose (then review the diff of incident.yaml and re-run the backtest).

Each incident folder holds:
  incident.yaml              what happened and what must be detected, by which day
  <model>.yaml               the model spec the replay uses (the project's spec, pointed at the
                             snapshot; paths use {home}/incident, where the backtest copies it)
  features.json              the features suite at the snapshot's batch size (suggest-suite's
                             rules; the project's suites are tuned for 20,000 rows a day)
  data/training.parquet      the reference (training) set
  data/predictions/ds=<ds>.parquet, data/landing.json, data/labels/arrived=<ds>.parquet

The demo's incidents are cut from worlds made by `watchkeeper.demo.generate_demo` with a compact
`Story` (the same generator and models, fewer rows and days); the other shapes start from a
healthy demo world and apply the incident to the days after onset. Every random draw is seeded.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

try:
    from watchkeeper import demo, quality
except ImportError:  # run with a Python that does not have the package installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "plugins"))
    from watchkeeper import demo, quality

LIBRARY = Path(__file__).resolve().parent
PROJECT = LIBRARY.parents[1]
SEED = 20_250_601
ROWS = 600  # rows a day: enough for the monitors' statistics, small enough for CI
TRAINING_ROWS = 4_000
# Fixed dates: a snapshot is a record of days that happened, not days relative to today.
WORLD_END = date(2025, 6, 30)

QUIET = dict(  # a Story in which nothing happens unless an incident switches it on
    amount_drift_per_day=0.0, merchant_shift_per_day=0.0, concept_new_pattern_logit=0.0,
    concept_old_pattern_decay=0.0, incident_day=1, incident_amount_factor=1.0,
    incident_null_fraction=0.0, incident_new_category_share=0.0,
    incident_new_category_true_logit=0.0, late_landing_day=1, late_landing_hour=2,
    drift_start_day=1,
)


@dataclass
class Snapshot:
    """One incident as written: days are 1-based numbers of the world it was cut from."""

    name: str
    model: str
    title: str
    origin: str
    days: list[int]
    onset: int
    expect: list[dict]
    notes: str = ""
    labels: bool = False
    spec_changes: dict = field(default_factory=dict)


# --------------------------------------------------------------------------------------------
# worlds


def _world(tmp: Path, story: demo.Story, rows: int = ROWS) -> demo.DemoManifest:
    home = tmp / f"world-{len(list(tmp.iterdir()))}"
    return demo.generate_demo(home, WORLD_END, rows_per_day=rows, training_rows=TRAINING_ROWS,
                              story=story)


def _landing(m: demo.DemoManifest, model: str) -> dict[str, str]:
    if model == "fraud":
        return json.loads(m.fraud_landing.read_text())
    return {ds: m.landed_marker_path(ds).read_text().strip() for ds in m.ds_list}


def _labels(m: demo.DemoManifest, model: str) -> pd.DataFrame:
    parts = [pd.read_parquet(m.labels_path(model, ds)) for ds in m.ds_list]
    return pd.concat(parts, ignore_index=True)


# --------------------------------------------------------------------------------------------
# writing one incident


def _spec(model: str, snap: Snapshot) -> dict:
    """The project's spec for `model`, pointed at the snapshot under {home}/incident."""
    raw = yaml.safe_load((PROJECT / "include" / "models" / f"{model}.yaml").read_text())
    data = "{home}/incident/data"
    raw["source"] = {"kind": "file", "path": data + "/predictions/ds={ds}.parquet"}
    raw["landing"] = {"kind": "manifest", "path": data + "/landing.json",
                      "deadline_hours": raw.get("landing", {}).get("deadline_hours", 6)}
    raw["reference"] = {"training": data + "/training.parquet"}
    raw["suites"] = {"ingestion": f"expectations/{model}/ingestion.json",
                     "features": "{home}/incident/features.json"}
    if snap.labels:
        raw["labels"]["source"] = {"kind": "file", "path": data + "/labels/arrived={ds}.parquet"}
    else:
        raw.pop("labels", None)
        raw["slos"] = [s for s in raw.get("slos", []) if not s.get("quality")]
    raw.update(snap.spec_changes)
    return raw


def _to_parquet(frame: pd.DataFrame, path: Path) -> None:
    """Compact: no pandas metadata or column statistics, zstd at a high level. A year of days
    is hundreds of small files; their per-file overhead is most of the library's size."""
    table = pa.Table.from_pandas(frame, preserve_index=False).replace_schema_metadata(None)
    pq.write_table(table, path, compression="zstd", compression_level=19, write_statistics=False)


def _write(snap: Snapshot, m: demo.DemoManifest, spec: dict | None = None,
           batches: dict[str, pd.DataFrame] | None = None, labels: pd.DataFrame | None = None,
           training: pd.DataFrame | None = None, landing: dict[str, str] | None = None,
           extra_files: dict[str, str] | None = None, daily_rows: int = ROWS,
           seasonal_columns: tuple[str, ...] = (), limits: dict | None = None) -> Path:
    out = LIBRARY / snap.name
    shutil.rmtree(out, ignore_errors=True)
    (out / "data" / "predictions").mkdir(parents=True)
    dss = [m.ds(d) for d in snap.days]
    spec = spec if spec is not None else _spec(snap.model, snap)
    training = training if training is not None else pd.read_parquet(m.training_path(snap.model))
    _to_parquet(training, out / "data" / "training.parquet")
    for ds in dss:
        frame = batches[ds] if batches is not None else pd.read_parquet(
            m.predictions_path(snap.model, ds))
        _to_parquet(frame, out / "data" / "predictions" / f"ds={ds}.parquet")
    landing = landing if landing is not None else _landing(m, snap.model)
    (out / "data" / "landing.json").write_text(
        json.dumps({ds: landing[ds] for ds in dss}, indent=2, sort_keys=True) + "\n")
    if snap.labels:
        labels = labels if labels is not None else _labels(m, snap.model)
        (out / "data" / "labels").mkdir()
        arrived = labels["label_ts"].dt.strftime("%Y-%m-%d")
        for ds in dss:  # every replayed day has a label file (maybe empty), as upstream delivers
            _to_parquet(labels[arrived == ds].sort_values("label_ts", kind="stable"),
                        out / "data" / "labels" / f"arrived={ds}.parquet")
    features = [quality.FeatureInfo(name=f["name"], kind=f["kind"],
                                    bounds=tuple(f["bounds"]) if f.get("bounds") else None,
                                    pii=bool(f.get("pii")))
                for f in spec["features"]]
    suite = quality.suggest_features_suite(training, features, name=f"{snap.model}.features",
                                           daily_rows=daily_rows)
    if seasonal_columns:
        # A reviewed suite for a seasonal input keeps its range and null checks (a unit change
        # still fails them) but not the training set's mean and quantiles: those describe a
        # year, never a day.
        suite["expectations"] = [
            e for e in suite["expectations"]
            if not (e["kwargs"].get("column") in seasonal_columns
                    and e["type"] in ("expect_column_mean_to_be_between",
                                      "expect_column_quantile_values_to_be_between"))]
    (out / "features.json").write_text(json.dumps(suite, indent=2) + "\n")
    for rel, text in (extra_files or {}).items():
        (out / rel).write_text(text)
    header = (f"# {snap.name}: the {snap.model} spec the backtest replays this incident with.\n"
              "# Written by include/incidents/generate.py from include/models/"
              f"{snap.model}.yaml (or by hand for models\n# that exist only here); data paths "
              "point at {home}/incident, where the backtest copies this folder.\n")
    (out / f"{snap.model}.yaml").write_text(header + yaml.safe_dump(spec, sort_keys=False))
    doc = {
        "title": snap.title,
        "origin": snap.origin,
        "model": snap.model,
        "replay": {"first": dss[0], "last": dss[-1]},
        "onset": m.ds(snap.onset),
        "expect": snap.expect,
    }
    if limits:
        doc["limits"] = limits
    if snap.notes:
        doc["notes"] = snap.notes
    text = ("# What happened and what the current monitors must detect. by_day counts from the\n"
            "# onset (day 1 = the onset day); severity is the least an alert must carry.\n")
    (out / "incident.yaml").write_text(text + yaml.safe_dump(doc, sort_keys=False, width=100))
    return out


# --------------------------------------------------------------------------------------------
# the incidents


def demo_upstream_bug(tmp: Path) -> None:
    story = demo.Story(seed=SEED, n_days=7, **{**QUIET, "incident_day": 7,
                                              "incident_amount_factor": 100.0,
                                              "incident_null_fraction": 0.30,
                                              "incident_new_category_share": 0.03,
                                              "incident_new_category_true_logit": 1.0})
    m = _world(tmp, story)
    snap = Snapshot(
        name="demo_upstream_bug", model="fraud", origin="demo (day 29)",
        title="Upstream bug: amounts in cents for DE, device_age_days 30% null, a new merchant "
              "category 'crypto'",
        days=list(range(1, 8)), onset=7,
        spec_changes={"drift": {"reference_days": 4, "min_segment_rows": 60}},
        expect=[
            {"stage": "ingestion", "subject": "device_age_days", "severity": "ticket", "by_day": 1},
            {"stage": "features", "subject": "merchant_category", "severity": "ticket", "by_day": 1},
            {"stage": "drift", "subject": "amount", "segment": "country=DE", "severity": "ticket",
             "by_day": 1},
        ])
    _write(snap, m)


def demo_seasonal_drift(tmp: Path) -> None:
    story = demo.Story(seed=SEED, n_days=16,
                       **{**QUIET, "drift_start_day": 3, "amount_drift_per_day": 0.02,
                          "merchant_shift_per_day": 0.0025})
    m = _world(tmp, story)
    snap = Snapshot(
        name="demo_seasonal_drift", model="fraud", origin="demo (days 15..)",
        title="Slow seasonal drift: the amount median grows 2% a day and travel/electronics gain "
              "share of the merchant mix",
        days=list(range(1, 15)), onset=3,
        notes="Slow drift is what a moving window absorbs: skew against the training set "
              "carries it.",
        expect=[
            {"stage": "skew", "subject": "amount", "severity": "ticket", "by_day": 9},
            {"stage": "skew", "subject": "merchant_category", "severity": "ticket", "by_day": 12},
        ])
    _write(snap, m)


def demo_late_partition(tmp: Path) -> None:
    story = demo.Story(seed=SEED, n_days=3, **{**QUIET, "late_landing_day": 3,
                                              "late_landing_hour": 14})
    m = _world(tmp, story)
    snap = Snapshot(
        name="demo_late_partition", model="fraud", origin="demo (day 33)",
        title="The day's partition lands at 14:00 the next day, eight hours after its deadline",
        days=[1, 2, 3], onset=3,
        expect=[
            {"stage": "ingestion", "subject": "freshness", "severity": "ticket", "by_day": 1},
            {"stage": "slo", "subject": "freshness", "severity": "ticket", "by_day": 1},
        ])
    _write(snap, m)


def demo_concept_drift(tmp: Path) -> None:
    # The demo's concept drift, compressed: the same change in what fraud looks like, ramping in
    # over 3 days instead of 28, and labels arriving after 1-4 days instead of 2-10, so the
    # replay needs two weeks, not six.
    story = demo.Story(seed=SEED, n_days=16, concept_ramp_days=3, label_delay_days=(1, 4),
                       **{**QUIET, "drift_start_day": 7, "concept_new_pattern_logit": 4.5,
                          "concept_old_pattern_decay": 0.7})
    m = _world(tmp, story)
    snap = Snapshot(
        name="demo_concept_drift", model="fraud", origin="demo (days 15..), compressed",
        title="Concept drift: fraud moves from card testing on new devices to account takeover; "
              "precision falls while the model's own estimate stays calm",
        days=list(range(1, 15)), onset=7, labels=True,
        notes="Labels arrive 1-4 days late; a prediction-day is judged once 90% of its labels "
              "are in.",
        expect=[
            {"stage": "labels", "subject": "concept_drift", "severity": "ticket", "by_day": 8},
            {"stage": "labels", "subject": "precision", "severity": "ticket", "by_day": 8},
        ])
    _write(snap, m)


def slow_label_pipeline(tmp: Path) -> None:
    story = demo.Story(seed=SEED, n_days=16, label_delay_days=(1, 3), label_never_fraction=0.02,
                       **QUIET)
    m = _world(tmp, story)
    onset = 6
    labels = _labels(m, "fraud")
    # The label job slows down: from the onset each prediction-day's labels come one more day
    # later than the previous day's (a backlog growing upstream).
    pred_day = pd.to_datetime(labels["txn_id"].str.slice(2, 10), format="%Y%m%d")
    age = (pred_day - pd.Timestamp(m.ds(onset))).dt.days
    extra = np.clip(age + 1, 0, None)
    labels["label_ts"] = labels["label_ts"] + pd.to_timedelta(extra, unit="D")
    labels = labels[labels["label_ts"] < pd.Timestamp(WORLD_END + timedelta(days=1))]
    snap = Snapshot(
        name="slow_label_pipeline", model="fraud", origin="new shape",
        title="The label pipeline slows down: each day's labels arrive one day later than the "
              "day before, so label coverage and maturity fall behind",
        days=list(range(1, 12)), onset=onset, labels=True,
        expect=[
            {"stage": "labels", "subject": "label_lag", "severity": "ticket", "by_day": 6},
        ])
    _write(snap, m, labels=labels)


def silently_frozen_feature(tmp: Path) -> None:
    story = demo.Story(seed=SEED, n_days=7, **QUIET)
    m = _world(tmp, story)
    onset = 6
    batches = {}
    for d in range(1, 8):
        ds = m.ds(d)
        frame = pd.read_parquet(m.predictions_path("eta", ds))
        if d >= onset:
            # The courier-tenure cache stopped refreshing: every row gets the last cached value,
            # a plausible one (near the training median), so no range check can see it.
            frame["courier_tenure"] = 212.4
            frame["predicted_minutes"] = demo.eta_model_predict(frame)
        batches[ds] = frame
    snap = Snapshot(
        name="silently_frozen_feature", model="eta", origin="new shape",
        title="courier_tenure is frozen at one plausible value (a cache that stopped refreshing)",
        days=list(range(1, 8)), onset=onset,
        spec_changes={"drift": {"reference_days": 4}},
        expect=[
            {"stage": "features", "subject": "courier_tenure", "severity": "ticket", "by_day": 1},
            {"stage": "drift", "subject": "courier_tenure", "severity": "ticket", "by_day": 1},
        ])
    _write(snap, m, batches=batches)


def one_segment_outage(tmp: Path) -> None:
    story = demo.Story(seed=SEED, n_days=7, **QUIET)
    m = _world(tmp, story)
    onset = 6
    batches = {}
    for d in range(1, 8):
        ds = m.ds(d)
        frame = pd.read_parquet(m.predictions_path("fraud", ds))
        if d >= onset:
            # The French acquirer's feed stopped: its rows are simply not there.
            frame = frame[frame["country"] != "FR"].reset_index(drop=True)
        batches[ds] = frame
    snap = Snapshot(
        name="one_segment_outage", model="fraud", origin="new shape",
        title="One segment's rows vanish: country FR (12% of traffic) stops arriving",
        days=list(range(1, 8)), onset=onset,
        spec_changes={"drift": {"reference_days": 4, "min_segment_rows": 60}},
        expect=[
            {"stage": "drift", "subject": "country", "severity": "ticket", "by_day": 1},
            {"stage": "skew", "subject": "country", "severity": "ticket", "by_day": 1},
        ])
    _write(snap, m, batches=batches)


# ---- a ranking model the demo does not have: the feedback loop --------------------------------

N_ITEMS = 400
QUERIES_PER_DAY = 120
TOP_K = 5
DEVICES = ("ios", "android", "web")


def _recs_day(rng: np.random.Generator, day: date, tag: str, n_queries: int,
              concentration: float) -> pd.DataFrame:
    """A day of recommendations: each query gets its top-5 items. `concentration` > 0 is the
    feedback loop: items recommended before are shown more, so the catalogue shown narrows."""
    popularity = 1.0 / np.arange(1, N_ITEMS + 1) ** (0.6 + concentration)
    popularity /= popularity.sum()
    rows = []
    secs = rng.integers(0, 86_400, size=n_queries)
    tenure = np.round(np.minimum(rng.gamma(1.2, 150.0, size=n_queries), 3000.0), 1)
    device = np.asarray(DEVICES)[rng.choice(3, size=n_queries, p=(0.45, 0.4, 0.15))]
    for q in range(n_queries):
        items = rng.choice(N_ITEMS, size=TOP_K, replace=False, p=popularity)
        base = rng.uniform(0.55, 0.95)
        scores = np.sort(base - np.abs(rng.normal(0, 0.08, size=TOP_K)))[::-1]
        for rank, (item, score) in enumerate(zip(items, scores), start=1):
            rows.append({
                "rec_id": f"r-{tag}-{q:04d}-{rank}",
                "event_ts": pd.Timestamp(day) + pd.Timedelta(seconds=int(secs[q])),
                "model_version": "recs-v2",
                "query_id": f"q-{tag}-{q:04d}",
                "item_id": f"item-{item:04d}",
                "user_tenure_days": float(tenure[q]),
                "device": str(device[q]),
                "position": rank,
                "score": round(float(score), 4),
            })
    return pd.DataFrame(rows)


RECS_SPEC = {
    "name": "recs",
    "task": "ranking",
    "description": "Home-page recommendations: five items per visit (exists only in the "
                   "incident library).",
    "owner": "growth-ml",
    "timezone": "UTC",
    "retries": 1,
    "source": {"kind": "file", "path": "{home}/incident/data/predictions/ds={ds}.parquet"},
    "landing": {"kind": "manifest", "path": "{home}/incident/data/landing.json",
                "deadline_hours": 6},
    "columns": {"id": "rec_id", "timestamp": "event_ts", "model_version": "model_version"},
    "features": [
        {"name": "user_tenure_days", "kind": "numerical", "bounds": [0, 10000]},
        {"name": "device", "kind": "categorical"},
        {"name": "position", "kind": "numerical", "bounds": [1, 50]},
    ],
    "prediction": {"score": "score", "query_group": "query_id", "item": "item_id"},
    "segments": ["device"],
    "reference": {"training": "{home}/incident/data/training.parquet"},
    "suites": {"ingestion": "{home}/incident/ingestion.json",
               "features": "{home}/incident/features.json"},
    "drift": {"reference_days": 3},
    "slos": [
        {"name": "data-quality", "sli": "data_quality", "kind": "ratio", "objective": 0.95,
         "gates": ["model", "features"]},
        {"name": "freshness", "sli": "freshness", "kind": "timeslice", "objective": 0.9,
         "gates": ["model", "features"]},
        {"name": "prediction-stability", "sli": "prediction_stability", "kind": "timeslice",
         "objective": 0.9, "gates": ["model"]},
    ],
    "alerts": {"routes": [{"severity": "page", "channel": "#recs-oncall"},
                          {"severity": "ticket", "channel": "#recs-ml"}]},
}

RECS_INGESTION = {
    "name": "recs.ingestion",
    "expectations": [
        {"type": "expect_table_columns_to_match_set",
         "kwargs": {"column_set": ["rec_id", "event_ts", "model_version", "query_id", "item_id",
                                   "user_tenure_days", "device", "position", "score"],
                    "exact_match": False},
         "meta": {"id": "schema.columns", "notes": "Every column the monitors read."}},
        {"type": "expect_table_row_count_to_be_between",
         "kwargs": {"min_value": {"$PARAMETER": "min_rows"}},
         "meta": {"id": "volume.min_rows", "notes": "At least half the trailing median."}},
        {"type": "expect_column_values_to_be_unique", "kwargs": {"column": "rec_id"},
         "meta": {"id": "rec_id.unique", "notes": "One row per shown item."}},
        {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "item_id"},
         "meta": {"id": "item_id.not_null", "notes": "Every row names its item."}},
        {"type": "expect_column_values_to_be_between",
         "kwargs": {"column": "score", "min_value": 0, "max_value": 1},
         "meta": {"id": "score.in_unit_interval", "notes": "Scores are probabilities."}},
    ],
}


def feedback_loop(tmp: Path) -> None:
    rng = np.random.default_rng([SEED, 3, 0])
    n_days, onset = 7, 4
    first = WORLD_END - timedelta(days=n_days - 1)
    train_days = [first - timedelta(days=30 + i) for i in range(8)]
    training = pd.concat([_recs_day(rng, d, f"t{d:%Y%m%d}", QUERIES_PER_DAY, 0.0)
                          for d in train_days], ignore_index=True)
    batches, landing = {}, {}
    for i in range(1, n_days + 1):
        day = first + timedelta(days=i - 1)
        rng = np.random.default_rng([SEED, 3, i])
        # From the onset the loop tightens every day: yesterday's top items are today's.
        conc = 0.0 if i < onset else 0.45 * (i - onset + 1)
        batches[day.isoformat()] = _recs_day(rng, day, f"{day:%Y%m%d}", QUERIES_PER_DAY, conc)
        landing[day.isoformat()] = f"{day + timedelta(days=1)}T02:{10 + i:02d}:00+00:00"

    class _M:  # the bits of a DemoManifest _write needs
        def ds(self, d: int) -> str:
            return (first + timedelta(days=d - 1)).isoformat()

    snap = Snapshot(
        name="feedback_loop", model="recs", origin="new shape",
        title="A feedback loop narrows the recommendations: popular items get shown more, so "
              "fewer distinct items reach users every day",
        days=list(range(1, n_days + 1)), onset=onset,
        expect=[
            {"stage": "predictions", "subject": "distinct_share", "severity": "ticket",
             "by_day": 2},
        ])
    _write(snap, _M(), spec=RECS_SPEC, batches=batches, training=training, landing=landing,
           extra_files={"ingestion.json": json.dumps(RECS_INGESTION, indent=2) + "\n"})


# ---- models the demo does not have: small batches and a yearly cycle (issue 14) ---------------
#
# Both are written as a new user writes them: their own spec with the SLOs a newcomer picks and
# every statistical default left as shipped; the suites come from suggest-suite's rules sized to
# the real batch. They hold the product to its promises on data nobody tuned it for.


def _ingestion_suite(name: str, columns: list[str], id_col: str, ts_col: str,
                     not_null: list[str]) -> dict:
    exps = [
        {"type": "expect_table_columns_to_match_set",
         "kwargs": {"column_set": columns, "exact_match": False},
         "meta": {"id": "schema.columns", "notes": "Every column the monitors read."}},
        {"type": "expect_table_row_count_to_be_between",
         "kwargs": {"min_value": {"$PARAMETER": "min_rows"}},
         "meta": {"id": "volume.min_rows", "notes": "At least half the trailing median."}},
        {"type": "expect_column_values_to_be_unique", "kwargs": {"column": id_col},
         "meta": {"id": f"{id_col}.unique", "notes": "One row per prediction."}},
        {"type": "expect_column_values_to_be_between",
         "kwargs": {"column": ts_col, "min_value": {"$PARAMETER": "day_start"},
                    "max_value": {"$PARAMETER": "day_end"}},
         "meta": {"id": f"{ts_col}.in_day", "notes": "Events belong to the day."}},
    ]
    for c in not_null:
        exps.append({"type": "expect_column_values_to_not_be_null", "kwargs": {"column": c},
                     "meta": {"id": f"{c}.not_null", "notes": "Required by the model."}})
    return {"name": name, "expectations": exps}


def _event_times(rng: np.random.Generator, day: date, n: int, until_hour: float = 24.0):
    secs = np.sort(rng.uniform(0, until_hour * 3600, size=n))
    return pd.Timestamp(day) + pd.to_timedelta(secs.astype(int), unit="s")


class _Days:  # the bits of a DemoManifest _write needs, for worlds made here
    def __init__(self, first: date):
        self.first = first

    def ds(self, d: int) -> str:
        return (self.first + timedelta(days=d - 1)).isoformat()


# ---- small batches: 200 rows a day, 120 healthy days, then a covariate shift ------------------

CHURN_ROWS = 200
CHURN_PLANS = ("basic", "plus", "pro")
CHURN_PLAN_SHARES = (0.5, 0.35, 0.15)
CHURN_PLAN_LOGIT = {"basic": 0.3, "plus": 0.0, "pro": -0.5}
CHURN_REGIONS = ("north", "south", "east", "west")
CHURN_REGION_SHARES = (0.3, 0.25, 0.25, 0.2)


def _churn_day(rng: np.random.Generator, day: date, tag: str, n: int, *, shifted: bool = False,
               until_hour: float = 24.0) -> pd.DataFrame:
    """One day of a churn model's predictions. The deployed model is the true concept, so it is
    calibrated; the shift (a price rise: higher monthly spend, more support calls) moves the
    inputs, not the concept."""
    tenure = np.round(np.minimum(rng.gamma(2.0, 12.0, size=n), 120.0), 1)
    spend = np.round(rng.lognormal(3.6, 0.45, size=n) * (1.35 if shifted else 1.0), 2)
    calls = rng.poisson(2.2 if shifted else 1.2, size=n).astype(float)
    plan = np.asarray(CHURN_PLANS)[rng.choice(3, size=n, p=CHURN_PLAN_SHARES)]
    region = np.asarray(CHURN_REGIONS)[rng.choice(4, size=n, p=CHURN_REGION_SHARES)]
    z = (-1.0 - 0.035 * (tenure - 24.0) + 0.55 * (calls - 1.2) + 0.015 * (spend - 38.0)
         + np.vectorize(CHURN_PLAN_LOGIT.get)(plan))
    score = 1.0 / (1.0 + np.exp(-z))
    churned = (rng.random(n) < score).astype(int)
    return pd.DataFrame({
        "customer_id": [f"c-{tag}-{i:04d}" for i in range(n)],
        "event_ts": _event_times(rng, day, n, until_hour),
        "model_version": "churn-v1",
        "tenure_months": tenure, "monthly_spend": spend, "support_calls": calls,
        "plan": plan, "region": region,
        "score": np.round(score, 5), "predicted_label": (score >= 0.5).astype(int),
        "churned": churned,
    })


CHURN_SPEC = {
    "name": "churn",
    "task": "binary_classification",
    "description": "Monthly churn risk per customer; 200 scored a day (exists only in the "
                   "incident library).",
    "owner": "retention-ml",
    "timezone": "UTC",
    "retries": 1,
    "source": {"kind": "file", "path": "{home}/incident/data/predictions/ds={ds}.parquet"},
    "landing": {"kind": "manifest", "path": "{home}/incident/data/landing.json",
                "deadline_hours": 6},
    "columns": {"id": "customer_id", "timestamp": "event_ts", "model_version": "model_version"},
    "features": [
        {"name": "tenure_months", "kind": "numerical", "bounds": [0, 600]},
        {"name": "monthly_spend", "kind": "numerical", "bounds": [0, 10000]},
        {"name": "support_calls", "kind": "numerical", "bounds": [0, 100]},
        {"name": "plan", "kind": "categorical"},
        {"name": "region", "kind": "categorical"},
    ],
    "prediction": {"score": "score", "label": "predicted_label", "threshold": 0.5},
    "segments": ["plan"],
    "reference": {"training": "{home}/incident/data/training.parquet"},
    "labels": {"source": {"kind": "file",
                          "path": "{home}/incident/data/labels/arrived={ds}.parquet"},
               "join_key": "customer_id", "label_column": "churned",
               "timestamp_column": "label_ts", "max_delay_days": 10},
    "suites": {"ingestion": "{home}/incident/ingestion.json",
               "features": "{home}/incident/features.json"},
    "slos": [
        {"name": "data-quality", "sli": "data_quality", "kind": "ratio", "objective": 0.95,
         "gates": ["model", "features"]},
        {"name": "freshness", "sli": "freshness", "kind": "timeslice", "objective": 0.9,
         "gates": ["model", "features"]},
        # What a newcomer writes: daily accuracy two points below the training set's.
        {"name": "model-quality", "sli": "accuracy", "kind": "timeslice", "objective": 0.9,
         "threshold": None, "direction": "at_least", "quality": True, "gates": ["model"]},
        {"name": "prediction-stability", "sli": "prediction_stability", "kind": "timeslice",
         "objective": 0.9, "gates": ["model"]},
        {"name": "feature-drift", "sli": "feature_drift", "kind": "timeslice",
         "objective": 0.9, "gates": ["model"]},
    ],
    "alerts": {"routes": [{"severity": "page", "channel": "#churn-oncall"},
                          {"severity": "ticket", "channel": "#churn-ml"},
                          {"severity": "info", "channel": "#churn-ml"}]},
}


def _labels_for(frame: pd.DataFrame, rng: np.random.Generator, day: date, id_col: str,
                label_col: str, delays: tuple[int, int], never: float) -> pd.DataFrame:
    n = len(frame)
    delay = rng.integers(delays[0], delays[1] + 1, size=n)
    keep = rng.random(n) >= never
    ts = (pd.Timestamp(day) + pd.to_timedelta(delay, unit="D")
          + pd.to_timedelta(rng.integers(0, 86_400, size=n), unit="s"))
    return pd.DataFrame({id_col: frame[id_col].to_numpy(), label_col: frame[label_col].to_numpy(),
                         "label_ts": ts})[keep]


def small_batch_shift(tmp: Path) -> None:
    healthy, shifted = 120, 30
    n_days = healthy + shifted
    first = date(2025, 1, 1)
    onset = healthy + 1
    rng = np.random.default_rng([SEED, 4, 0])
    train = pd.concat([_churn_day(rng, first - timedelta(days=90 - i), f"t{i:03d}", 50)
                       for i in range(60)], ignore_index=True)
    batches, landing, labels = {}, {}, []
    for i in range(1, n_days + 1):
        day = first + timedelta(days=i - 1)
        rng = np.random.default_rng([SEED, 4, i])
        # Day 1 is partial, as on the real data: the upstream job delivered the first six hours.
        until = 6.0 if i == 1 else 24.0
        n = round(CHURN_ROWS * rng.uniform(0.92, 1.08) * (until / 24.0))
        frame = _churn_day(rng, day, f"{day:%Y%m%d}", n, shifted=i >= onset, until_hour=until)
        labels.append(_labels_for(frame, rng, day, "customer_id", "churned", (1, 5), 0.02))
        batches[day.isoformat()] = frame.drop(columns=["churned"])
        landing[day.isoformat()] = f"{day + timedelta(days=1)}T0{1 + i % 3}:{10 + i % 40:02d}:00+00:00"
    labels = pd.concat(labels, ignore_index=True)
    end = pd.Timestamp(first + timedelta(days=n_days))
    labels = labels[labels["label_ts"] < end]
    # The newcomer's threshold: two points below the training set's accuracy.
    accuracy = float((train["predicted_label"] == train["churned"]).mean())
    spec = json.loads(json.dumps(CHURN_SPEC))
    spec["slos"][2]["threshold"] = round(accuracy - 0.02, 2)
    ingestion = _ingestion_suite(
        "churn.ingestion", ["customer_id", "event_ts", "model_version", "tenure_months",
                            "monthly_spend", "support_calls", "plan", "region", "score",
                            "predicted_label"], "customer_id", "event_ts",
        ["customer_id", "score", "tenure_months", "monthly_spend", "support_calls", "plan"])
    days = _Days(first)
    snap = Snapshot(
        name="small_batch_shift", model="churn", origin="new shape (real-data report, issue 14)",
        title="Small batches: 200 predictions a day, 120 healthy days (the first one partial), "
              "then a price rise shifts monthly_spend and support_calls for good",
        days=list(range(1, n_days + 1)), onset=onset, labels=True,
        notes="Labels arrive 1-5 days late, 2% never. The SLOs, suites and statistical settings "
              "are a newcomer's: the healthy days must stay quiet and the gate open.",
        expect=[
            {"stage": "drift", "subject": "monthly_spend", "severity": "ticket", "by_day": 2},
            {"stage": "drift", "subject": "support_calls", "severity": "ticket", "by_day": 2},
        ])
    _write(snap, days, spec=spec, batches=batches, training=train, landing=landing,
           labels=labels, daily_rows=CHURN_ROWS,
           extra_files={"ingestion.json": json.dumps(ingestion, indent=2) + "\n"},
           limits={"healthy": [{"first": days.ds(1), "last": days.ds(healthy)}],
                   "gate_open_share": 0.9, "messages_per_30_healthy_days": 5})


# ---- a yearly cycle: a temperature-driven demand model over one year ---------------------------

DEMAND_ROWS = 300
DEMAND_SIZES = ("small", "medium", "large")
DEMAND_SIZE_MINUTES = {"small": -8.0, "medium": 0.0, "large": 14.0}
DEMAND_HOUR_WEIGHTS = np.array(demo.ETA_HOUR_WEIGHTS, dtype=float)


def _temperature(rng: np.random.Generator, day: date, n: int) -> np.ndarray:
    """Daily temperature in Celsius: a yearly cycle (coldest in mid-January, warmest in mid-July)
    with day-to-day weather on top."""
    doy = day.timetuple().tm_yday
    level = 12.0 + 10.0 * np.sin(2 * np.pi * (doy - 105) / 365.25)
    weather = rng.normal(0.0, 2.0)  # the day's weather: every reading of the day shares it
    return np.round(level + weather + rng.normal(0.0, 3.0, size=n), 1)


def _demand_day(rng: np.random.Generator, day: date, tag: str, n: int, *,
                fahrenheit: bool = False) -> pd.DataFrame:
    temp = _temperature(rng, day, n)
    hour = rng.choice(24, size=n, p=DEMAND_HOUR_WEIGHTS / DEMAND_HOUR_WEIGHTS.sum()).astype(float)
    promo = np.where(rng.random(n) < 0.15, "yes", "no")
    size = np.asarray(DEMAND_SIZES)[rng.choice(3, size=n, p=(0.4, 0.4, 0.2))]
    pred = (60.0 + 1.4 * np.abs(temp - 18.0) + 12.0 * (promo == "yes")
            + np.vectorize(DEMAND_SIZE_MINUTES.get)(size) + 0.8 * np.abs(hour - 13.0))
    return pd.DataFrame({
        "order_id": [f"d-{tag}-{i:04d}" for i in range(n)],
        "event_ts": _event_times(rng, day, n),
        "model_version": "demand-v2",
        # The month-9 bug: one upstream release sends Fahrenheit instead of Celsius.
        "temperature": np.round(temp * 1.8 + 32.0, 1) if fahrenheit else temp,
        "hour": hour, "promo": promo, "store_size": size,
        "predicted_units": np.round(pred, 2),
    })


DEMAND_SPEC = {
    "name": "demand",
    "task": "regression",
    "description": "Daily units forecast per store order; demand follows the temperature, "
                   "which follows the seasons (exists only in the incident library).",
    "owner": "supply-ml",
    "timezone": "UTC",
    "retries": 1,
    "source": {"kind": "file", "path": "{home}/incident/data/predictions/ds={ds}.parquet"},
    "landing": {"kind": "manifest", "path": "{home}/incident/data/landing.json",
                "deadline_hours": 6},
    "columns": {"id": "order_id", "timestamp": "event_ts", "model_version": "model_version"},
    "features": [
        # The inputs follow the seasons: compared with the same time last year when that is
        # staged, else with the recent days only; the training set (all seasons) is no yardstick.
        {"name": "temperature", "kind": "numerical", "bounds": [-60, 60], "seasonal": "yearly"},
        {"name": "hour", "kind": "numerical", "bounds": [0, 23]},
        {"name": "promo", "kind": "categorical"},
        {"name": "store_size", "kind": "categorical"},
    ],
    "prediction": {"label": "predicted_units"},
    "reference": {"training": "{home}/incident/data/training.parquet"},
    "suites": {"ingestion": "{home}/incident/ingestion.json",
               "features": "{home}/incident/features.json"},
    "slos": [
        {"name": "data-quality", "sli": "data_quality", "kind": "ratio", "objective": 0.95,
         "gates": ["model", "features"]},
        {"name": "freshness", "sli": "freshness", "kind": "timeslice", "objective": 0.9,
         "gates": ["model", "features"]},
        {"name": "prediction-stability", "sli": "prediction_stability", "kind": "timeslice",
         "objective": 0.9, "gates": ["model"]},
        {"name": "feature-drift", "sli": "feature_drift", "kind": "timeslice",
         "objective": 0.9, "gates": ["model"]},
    ],
    "alerts": {"routes": [{"severity": "page", "channel": "#demand-oncall"},
                          {"severity": "ticket", "channel": "#demand-ml"},
                          {"severity": "info", "channel": "#demand-ml"}]},
}


def seasonal_yearly_cycle(tmp: Path) -> None:
    first, n_days = date(2024, 7, 1), 365
    onset, bug_days = 253, 10  # 2025-03-10 .. 2025-03-19: the Fahrenheit release
    rng = np.random.default_rng([SEED, 5, 0])
    # The training set spans the previous year: every season is in it.
    train = pd.concat([_demand_day(rng, first - timedelta(days=365 - 7 * i), f"t{i:03d}", 100)
                       for i in range(52)], ignore_index=True)
    batches, landing = {}, {}
    for i in range(1, n_days + 1):
        day = first + timedelta(days=i - 1)
        rng = np.random.default_rng([SEED, 5, i])
        n = round(DEMAND_ROWS * rng.uniform(0.92, 1.08))
        batches[day.isoformat()] = _demand_day(rng, day, f"{day:%Y%m%d}", n,
                                               fahrenheit=onset <= i < onset + bug_days)
        landing[day.isoformat()] = f"{day + timedelta(days=1)}T0{1 + i % 3}:{10 + i % 40:02d}:00+00:00"
    ingestion = _ingestion_suite(
        "demand.ingestion", ["order_id", "event_ts", "model_version", "temperature", "hour",
                             "promo", "store_size", "predicted_units"], "order_id", "event_ts",
        ["order_id", "temperature", "predicted_units"])
    days = _Days(first)
    healthy = [{"first": days.ds(1), "last": days.ds(onset - 1)},
               {"first": days.ds(onset + bug_days + 1), "last": days.ds(n_days)}]
    snap = Snapshot(
        name="seasonal_yearly_cycle", model="demand", origin="new shape (real-data report, issue 14)",
        title="A year of a seasonal input: temperature follows the seasons all year; in month 9 "
              "an upstream release sends it in Fahrenheit for ten days",
        days=list(range(1, n_days + 1)), onset=onset,
        notes="temperature is declared seasonal in the spec. Over the year no drift may page "
              "on a healthy day, while the Fahrenheit days are caught at once.",
        expect=[
            {"stage": "drift", "subject": "temperature", "severity": "ticket", "by_day": 2},
        ])
    _write(snap, days, spec=DEMAND_SPEC, batches=batches, training=train, landing=landing,
           daily_rows=DEMAND_ROWS, seasonal_columns=("temperature",),
           extra_files={"ingestion.json": json.dumps(ingestion, indent=2) + "\n"},
           limits={"healthy": healthy, "pages_on_healthy_days": 0})


INCIDENTS = {f.__name__: f for f in (demo_upstream_bug, demo_seasonal_drift, demo_late_partition,
                                     demo_concept_drift, slow_label_pipeline,
                                     silently_frozen_feature, one_segment_outage, feedback_loop,
                                     small_batch_shift, seasonal_yearly_cycle)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", action="append", choices=sorted(INCIDENTS),
                   help="regenerate only this incident (repeatable)")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="wk-incidents-") as tmp:
        for name in args.only or INCIDENTS:
            INCIDENTS[name](Path(tmp))
            size = sum(f.stat().st_size for f in (LIBRARY / name).rglob("*") if f.is_file())
            print(f"{name}: {size / 1024:.0f} KB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
