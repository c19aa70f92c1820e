"""Drift, skew, prediction monitors and coverage inside the monitor DAG (dag.test on a small
demo world): the day-29 upstream bug is named by segment, the positive rate alerts, the history
JSON carries the documented shape, and an empty reference window says so."""

from __future__ import annotations

import json
from datetime import date

import pytest
import yaml

from watchkeeper import paths

pytestmark = pytest.mark.slow


@pytest.fixture
def fraud_small_segments(tmp_path, monkeypatch):
    """fraud with a segment minimum fit for 2,000-row days (DE is ~300 rows a day)."""
    spec = yaml.safe_load((paths.project_root() / "include/models/fraud.yaml").read_text())
    spec["drift"] = {"min_segment_rows": 100}
    models = tmp_path / "models"
    models.mkdir()
    (models / "fraud.yaml").write_text(yaml.safe_dump(spec))
    monkeypatch.setenv("WATCHKEEPER_MODELS_DIR", str(models))


def _history(model):
    from watchkeeper import history
    from watchkeeper.spec import get_spec
    from watchkeeper.store import open_store

    return {d["ds"]: d for d in history.build(get_spec(model), open_store())}


def test_day_29_is_named_by_segment_and_alerts_predictions(demo_home, small_demo, run_dag, fraud_small_segments):
    for n in range(24, 30):
        out = run_dag("fraud_monitor", small_demo.ds(n))
        assert out.ok, out.tasks
    # drift and skew ran as one mapped task per feature group (7 features, 4 per task), merged
    for kind in ("drift", "skew"):
        assert {t: s for t, s in out.tasks.items() if t.startswith(kind)} == {
            f"{kind}_features[0]": "success", f"{kind}_features[1]": "success", kind: "success"}
    # ... and the merged groups store exactly what one compare over all features stores
    from watchkeeper import analysis
    from watchkeeper.spec import get_spec
    from watchkeeper.store import open_store

    store = open_store()

    def stored(kind):
        return sorted((m.subject, m.value, json.dumps(m.payload, sort_keys=True, default=str))
                      for m in store.metrics("fraud", kind) if m.ds == small_demo.ds(29))

    mapped = {k: stored(k) for k in ("drift", "skew")}
    for kind in ("drift", "skew"):
        analysis.analyze_drift(get_spec("fraud"), small_demo.ds(29), store, kind)
    single = {k: stored(k) for k in ("drift", "skew")}
    for kind in ("drift", "skew"):
        assert len(mapped[kind]) == len(single[kind]) > 10
        assert [r[:2] for r in mapped[kind]] == [r[:2] for r in single[kind]], kind
        assert [json.loads(r[2]).get("drifted") for r in mapped[kind]] == \
               [json.loads(r[2]).get("drifted") for r in single[kind]], kind
    h = _history("fraud")
    first = h[small_demo.ds(24)]
    assert first["drift"].get("reference_empty") is True  # the first day has nothing to compare with
    day = h[small_demo.ds(29)]
    drift = day["drift"]
    assert drift["any_drift"] is True and set(drift) >= {"share", "dataset_drift", "features"}
    rows = drift["features"]
    keys = {"feature", "method", "score", "threshold", "drifted", "evidently_drifted", "segment"}
    assert all(keys <= set(r) for r in rows)
    amount_countries = {r["segment"]["country"] for r in rows
                        if r["feature"] == "amount" and r["drifted"] and r["segment"]
                        and "country" in r["segment"]}
    assert amount_countries == {"DE"}, amount_countries
    alerts = {p["monitor"] for p in day["predictions"] if p["alert"]}
    assert "positive_rate" in alerts, day["predictions"]
    assert "coverage" in day and "quality" in day
    assert (paths.reports_dir() / "fraud" / small_demo.ds(29) / "drift.html").exists()
    # a healthy day before: no drifted row against its window
    assert not any(r["drifted"] for r in h[small_demo.ds(26)]["drift"]["features"])
    # Evidently pages by default (issue 16): on a day with a finding, and on Mondays only else
    for n in range(25, 29):
        ds = small_demo.ds(n)
        for kind in ("drift", "skew"):
            page = paths.reports_dir() / "fraud" / ds / f"{kind}.html"
            wanted = h[ds][kind].get("any_drift") or date.fromisoformat(ds).weekday() == 0
            assert page.exists() == bool(wanted), (ds, kind, h[ds][kind].get("any_drift"))
    assert day["slis"]["feature_drift"]["good"] is False
    assert day["slis"]["prediction_stability"]["good"] is False

    # the team channel (no Slack configured: the outbox file) heard about it, once
    outbox = paths.home() / "alerts" / "outbox.jsonl"
    lines = [json.loads(x) for x in outbox.read_text().splitlines()]
    day29 = [m for m in lines if m["ds"] == small_demo.ds(29)]
    # a grouped announcement is one message carrying its incidents (facts.members)
    kinds = {m["kind"] for m in day29} | {k["kind"] for m in day29 if m["kind"] == "group"
                                          for k in m["facts"]["members"]}
    assert {"expectation_failed", "drift", "prediction_anomaly"} <= kinds, kinds
    assert all({"model", "kind", "severity", "ds", "dedupe_key", "text", "blocks"} <= set(m) for m in day29)
    assert len({m["dedupe_key"] for m in lines}) == len(lines)
    assert run_dag("fraud_monitor", small_demo.ds(29)).ok  # a re-run adds no line
    assert len(outbox.read_text().splitlines()) == len(lines)


def test_missing_feature_is_a_finding_and_others_are_measured(demo_home, small_demo, run_dag, tmp_path, monkeypatch):
    import pandas as pd

    spec = yaml.safe_load((paths.project_root() / "include/models/eta.yaml").read_text())
    data = tmp_path / "data"
    data.mkdir()
    spec["source"]["path"] = str(data / "ds={ds}.parquet")
    spec["landing"] = {"kind": "none"}
    models = tmp_path / "models"
    models.mkdir()
    (models / "eta.yaml").write_text(yaml.safe_dump(spec))
    monkeypatch.setenv("WATCHKEEPER_MODELS_DIR", str(models))
    src = small_demo.home / "demo/eta/predictions"
    for n in (2, 3):
        ds = small_demo.ds(n)
        frame = pd.read_parquet(src / f"ds={ds}.parquet")
        if n == 3:
            frame = frame.drop(columns=["weather"]).assign(courier_tenure=None)
        frame.to_parquet(data / f"ds={ds}.parquet")
        assert run_dag("eta_monitor", ds).ok
    skew = _history("eta")[small_demo.ds(3)]["skew"]
    problems = {p["feature"]: p["message"] for p in skew.get("problems", [])}
    assert "weather" in problems and "courier_tenure" in problems, skew
    measured = {r["feature"] for r in skew["features"] if r["score"] is not None}
    assert {"distance_km", "items", "hour"} <= measured
