"""A mature-day quality fall pages through the burn rule: through the labels DAG's steps
(label_pipeline.ingest/restate, day_alerts.raise_for) on a real store, at 200 predictions a day,
and in `watchkeeper status` / `watchkeeper history` output.

The world: a calibrated fraud model scores 200 transactions a day (score uniform in [0, 1],
flagged at 0.5, so about 100 flags a day and a precision of 0.75). Every label of prediction-day
d arrives on d + 2, so on the labels run of day ds the newest mature day is ds - 2. From day
FALL on the relationship flips (a label is fraud with probability 1 - score): precision 0.25.
One isolated bad day (ONE_OFF) comes earlier.
"""

from __future__ import annotations

import json
from datetime import date, timedelta

import numpy as np
import pandas as pd
import pytest
import yaml

from watchkeeper import paths

FIRST = date(2025, 2, 1)
DAYS = 36
FALL = 30  # 1-based day the quality falls
ONE_OFF = 18  # one bad day on its own
LAG = 2


def _ds(n: int) -> str:
    return (FIRST + timedelta(days=n - 1)).isoformat()


def _world(home, models_dir) -> None:
    root = home / "qb"
    (root / "predictions").mkdir(parents=True)
    (root / "labels").mkdir()
    labels_by_arrival: dict[str, list] = {}
    for n in range(1, DAYS + 1):
        rng = np.random.default_rng([14, n])
        ds = _ds(n)
        ids = [f"{ds}-{i}" for i in range(200)]
        score = rng.random(200)
        pd.DataFrame({"txn_id": ids, "event_ts": pd.Timestamp(ds) + pd.Timedelta(hours=12),
                      "score": score, "predicted_label": (score >= 0.5).astype(int),
                      "model_version": "v1"}).to_parquet(root / "predictions" / f"ds={ds}.parquet")
        fallen = n >= FALL or n == ONE_OFF
        y = (rng.random(200) < ((1 - score) if fallen else score)).astype(int)
        arrive = _ds(n + LAG)
        labels_by_arrival.setdefault(arrive, []).append(pd.DataFrame(
            {"txn_id": ids, "is_fraud": y, "label_ts": pd.Timestamp(arrive) + pd.Timedelta(hours=1)}))
    for arrive, frames in labels_by_arrival.items():
        pd.concat(frames).to_parquet(root / "labels" / f"arrived={arrive}.parquet")
    spec = yaml.safe_load((paths.project_root() / "include/models/fraud.yaml").read_text())
    spec["source"] = {"kind": "file", "path": "{home}/qb/predictions/ds={ds}.parquet"}
    spec.pop("landing")
    spec.pop("suites")
    spec["segments"] = []
    spec["labels"].update(source={"kind": "file", "path": "{home}/qb/labels/arrived={ds}.parquet"},
                          max_delay_days=5, business_outcomes=[])
    spec["slos"].append({"name": "precision-pooled", "sli": "precision", "kind": "ratio",
                         "objective": 0.6, "quality": True, "gates": ["model"]})
    (models_dir / "fraud.yaml").write_text(yaml.safe_dump(spec))


@pytest.fixture
def fallen_world(tmp_path, monkeypatch):
    from watchkeeper import paths as p

    models = tmp_path / "models"
    models.mkdir()
    _world(p.home(), models)
    monkeypatch.setenv("WATCHKEEPER_MODELS_DIR", str(models))
    from watchkeeper import day_alerts, label_pipeline
    from watchkeeper.spec import get_spec
    from watchkeeper.store import open_store

    spec, store = get_spec("fraud"), open_store()
    for n in range(1, DAYS + 1):
        label_pipeline.ingest(spec, _ds(n))
        label_pipeline.restate(spec, _ds(n), store)
        day_alerts.raise_for(spec, _ds(n), store, "labels")
    return spec, store


def _snapshots(store, slo: str) -> dict[str, dict]:
    return {m.ds: m.payload for m in store.metrics("fraud", "budget") if m.subject == slo}


def test_a_mature_quality_fall_pages_through_the_burn_rule(fallen_world, capsys):
    spec, store = fallen_world
    snaps = _snapshots(store, "model-quality")
    # every snapshot's burn ends at the newest mature day, LAG days before the run
    for n in range(LAG + 1, DAYS + 1):
        assert snaps[_ds(n)]["burn_as_of"] == snaps[_ds(n)]["data_as_of"] == _ds(n - LAG)
        assert snaps[_ds(n)]["burn_1d"] is not None  # never null: quality burn is measured
    # healthy runs raise nothing; the one-off bad day alone neither pages nor tickets
    alerts = {ds: s["alert"] for ds, s in snaps.items()}
    assert all(alerts[_ds(n)] is None for n in range(1, FALL + LAG + 1)), alerts
    one_off = snaps[_ds(ONE_OFF + LAG)]
    assert one_off["burn_1d"] == pytest.approx(10.0) and one_off["bad_days_3d"] == 1
    # a young window (18 mature days of history): scaled to the 26-day mature span of a full
    # window, allowed = 0.1 * 18 * 26 / 18 = 2.6, as one bad day uses on a full window
    assert one_off["days_observed"] == ONE_OFF and one_off["allowed_bad"] == pytest.approx(2.6)
    assert one_off["budget_remaining"] == pytest.approx(1 - 1 / 2.6)
    # the labels run that matures the second fallen day pages: 2 bad days in the last 3
    page_run = _ds(FALL + 1 + LAG)
    s = snaps[page_run]
    assert (s["alert"], s["burn_as_of"], s["bad_days_3d"]) == ("page", _ds(FALL + 1), 2)
    assert s["burn_1d"] == pytest.approx(10.0) and s["burn_3d"] == pytest.approx(20 / 3)
    # ... and the page went to the outbox as a budget_burn page for the quality SLO
    pages = [(r.ds, r.severity) for r in store.outbox("fraud", kinds="budget_burn")
             if r.subject == "model-quality"]
    assert pages and pages[0] == (page_run, "page"), pages
    # the pooled ratio SLO burns on the same mature days (0.75 bad / 0.4 allowed = 1.9x)
    pooled = _snapshots(store, "precision-pooled")[page_run]
    assert pooled["burn_as_of"] == _ds(FALL + 1) and pooled["burn_1d"] > 1.5

    # --- the SLI rows behind it: verdicts, bounds and events ---
    rows = {r.ds: r for r in store.slis("fraud", sli="precision")}
    healthy, fallen = rows[_ds(FALL - 2)], rows[_ds(FALL)]
    for r, verdict in ((healthy, "good"), (fallen, "bad")):
        assert not r.provisional and r.details["verdict"] == verdict
        assert r.good is (verdict == "good")
        assert r.details["method"] == "wilson" and r.details["confidence"] == 0.95
        assert r.details["n"] == r.total_events  # precision: TP + FP predicted positives
        assert r.good_events / r.total_events == pytest.approx(r.value)
    assert fallen.details["upper"] < 0.5 < healthy.details["lower"]
    newest = rows[_ds(DAYS)]  # labels not in yet: provisional, events stored, not judged
    assert newest.provisional and newest.good is None and "verdict" not in newest.details

    # --- what people see: `watchkeeper status` and `watchkeeper history` ---
    from watchkeeper import cli

    assert cli.main(["status", "fraud"]) == 0
    out = capsys.readouterr().out
    (line,) = [ln for ln in out.splitlines() if ln.strip().startswith("model-quality ")]
    assert "PAGE" in line and f"(burn over the newest mature days, to {_ds(DAYS - LAG)})" in line
    (fresh,) = [ln for ln in out.splitlines() if ln.strip().startswith("freshness ")]
    assert "newest mature days" not in fresh  # monitor SLIs burn to the evaluation day
    assert cli.main(["status", "fraud", "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    (q,) = [s for s in status["slos"] if s["slo"] == "model-quality"]
    assert (q["alert"], q["burn_as_of"], q["quality"]) == ("page", _ds(DAYS - LAG), True)
    assert cli.main(["history", "fraud", "--json"]) == 0
    days = {d["ds"]: d for d in json.loads(capsys.readouterr().out)}
    assert days[_ds(FALL)]["slis"]["precision"]["good"] is False
    assert days[_ds(FALL - 1)]["slis"]["precision"]["good"] is True
    assert days[_ds(DAYS)]["slis"]["precision"].get("provisional") is True
