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


def _write(snap: Snapshot, m: demo.DemoManifest, spec: dict | None = None,
           batches: dict[str, pd.DataFrame] | None = None, labels: pd.DataFrame | None = None,
           training: pd.DataFrame | None = None, landing: dict[str, str] | None = None,
           extra_files: dict[str, str] | None = None) -> Path:
    out = LIBRARY / snap.name
    shutil.rmtree(out, ignore_errors=True)
    (out / "data" / "predictions").mkdir(parents=True)
    dss = [m.ds(d) for d in snap.days]
    spec = spec if spec is not None else _spec(snap.model, snap)
    training = training if training is not None else pd.read_parquet(m.training_path(snap.model))
    training.to_parquet(out / "data" / "training.parquet", index=False, compression="zstd")
    for ds in dss:
        frame = batches[ds] if batches is not None else pd.read_parquet(
            m.predictions_path(snap.model, ds))
        frame.to_parquet(out / "data" / "predictions" / f"ds={ds}.parquet", index=False,
                         compression="zstd")
    landing = landing if landing is not None else _landing(m, snap.model)
    (out / "data" / "landing.json").write_text(
        json.dumps({ds: landing[ds] for ds in dss}, indent=2, sort_keys=True) + "\n")
    if snap.labels:
        labels = labels if labels is not None else _labels(m, snap.model)
        (out / "data" / "labels").mkdir()
        arrived = labels["label_ts"].dt.strftime("%Y-%m-%d")
        for ds in dss:  # every replayed day has a label file (maybe empty), as upstream delivers
            labels[arrived == ds].sort_values("label_ts", kind="stable").to_parquet(
                out / "data" / "labels" / f"arrived={ds}.parquet", index=False, compression="zstd")
    features = [quality.FeatureInfo(name=f["name"], kind=f["kind"],
                                    bounds=tuple(f["bounds"]) if f.get("bounds") else None,
                                    pii=bool(f.get("pii")))
                for f in spec["features"]]
    suite = quality.suggest_features_suite(training, features, name=f"{snap.model}.features",
                                           daily_rows=ROWS)
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


INCIDENTS = {f.__name__: f for f in (demo_upstream_bug, demo_seasonal_drift, demo_late_partition,
                                     demo_concept_drift, slow_label_pipeline,
                                     silently_frozen_feature, one_segment_outage, feedback_loop)}


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
