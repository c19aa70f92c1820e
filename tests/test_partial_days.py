"""Partial days (issue 14) through the monitor DAG (`dag.test()`, real GX, Evidently, SQLite).

A day cut to its first hours is a time-biased sample: drift, skew and score drift see it as a
shift. It must be reported as partial, its comparisons computed and stored but not alerted, its
feature_drift / prediction_stability SLIs count in neither good nor total, and later days must
not use it as a reference.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from watchkeeper import paths

pytestmark = pytest.mark.slow

PROJECT = paths.project_root()
RUN_TIMING = ("started_at", "duration_seconds")
SUPPRESSED = "judged as incomplete data, not as a shift"


@pytest.fixture
def fraud_files(demo_home, small_demo, tmp_path, monkeypatch):
    """fraud reading one Parquet file per day from a folder the test writes; put(n, how)."""
    data = tmp_path / "data"
    data.mkdir()
    spec = yaml.safe_load((PROJECT / "include/models/fraud.yaml").read_text())
    spec["source"] = {"kind": "file", "path": str(data / "ds={ds}.parquet")}
    spec["landing"] = {"kind": "none"}
    models = tmp_path / "models"
    models.mkdir()
    (models / "fraud.yaml").write_text(yaml.safe_dump(spec))
    monkeypatch.setenv("WATCHKEEPER_MODELS_DIR", str(models))
    monkeypatch.setenv("WATCHKEEPER_EVIDENTLY_PAGES", "on_finding")
    monkeypatch.setenv("WATCHKEEPER_SITE_REBUILD", "end")
    src = Path(small_demo.home) / "demo/fraud/predictions"

    def put(n: int, how: str = "full") -> str:
        ds = small_demo.ds(n)
        frame = pd.read_parquet(src / f"ds={ds}.parquet")
        if how == "quiet":  # a quiet Sunday: 70% of the rows, spread over the whole day
            frame = frame.sample(frac=0.7, random_state=n).sort_values("event_ts")
        elif how == "first_hours":  # the upstream job delivered 00:00-06:00 only
            frame = frame[frame["event_ts"] < pd.Timestamp(ds) + pd.Timedelta(hours=6)]
        frame.to_parquet(data / f"ds={ds}.parquet")
        return ds

    return put


def _store():
    from watchkeeper.store import open_store

    return open_store()


def _dump(model: str):
    dump = _store().dump(model)
    dump["wk_run"] = [{k: v for k, v in r.items() if k not in RUN_TIMING}
                      for r in dump.get("wk_run", [])]
    return dump


def _dataset(family: str, ds: str) -> dict:
    (m,) = [m for m in _store().metrics("fraud", family) if m.ds == ds and m.subject == "__dataset__"]
    return m.payload


def _rows(family: str, ds: str) -> list[dict]:
    return [m.payload for m in _store().metrics("fraud", family)
            if m.ds == ds and m.subject != "__dataset__"]


def _outbox_kinds(ds: str) -> set[str]:
    outbox = paths.home() / "alerts" / "outbox.jsonl"
    lines = [json.loads(x) for x in outbox.read_text().splitlines()] if outbox.exists() else []
    # a group message carries several incidents' announcements: count its members' kinds
    return {k for m in lines if m["ds"] == ds
            for k in ([x["kind"] for x in m["facts"]["members"]] if m["kind"] == "group"
                      else [m["kind"]])}


def _snapshot(slo: str, ds: str):
    from watchkeeper import budgets

    (snap,) = [s for s in budgets.latest_snapshots(_store(), "fraud", ds) if s.slo == slo]
    assert snap.ds == ds
    return snap


def _assert_suppressed(ds: str, reason_start: str) -> None:
    """Drift (when it had a window), skew, prediction monitors and coverage of a partial day:
    computed, stored with what they would have alerted, and not alerted."""
    for fam in ("drift", "skew"):
        dataset = _dataset(fam, ds)
        if dataset.get("reference_empty"):
            continue
        rows = _rows(fam, ds)
        assert rows and all(r["score"] is not None for r in rows if not r.get("segment")), fam
        assert not any(r["drifted"] for r in rows), fam
        assert all(r["suppressed"].startswith(reason_start) for r in rows)
        assert dataset["partial"] is True and dataset["any_drift"] is False
        assert dataset["suppressed"].startswith(reason_start) and SUPPRESSED in dataset["suppressed"]
        # hours 00-06 only: the hour feature is where a time-biased sample shows first
        assert "hour" in dataset["would_alert"], (fam, dataset["would_alert"])
        assert any(r["would_alert"] for r in rows if r["feature"] == "hour")
    monitors = {r["name"]: r for r in _rows("prediction", ds)}
    assert {"score_drift", "positive_rate"} <= set(monitors)
    assert all(m["value"] is not None and m["alert"] is False for m in monitors.values())
    # night transactions score higher: score drift would have fired, as on fraud's 42-row day
    assert monitors["score_drift"]["would_alert"] is True, monitors["score_drift"]
    pred = _dataset("prediction", ds)
    assert pred["alert"] is False and "score_drift" in pred["would_alert"] and pred["partial"]
    cov = _dataset("coverage", ds)
    assert cov["alert"] is False and cov["partial"] is True and "would_alert" in cov
    slis = {v.sli: v for v in _store().slis("fraud") if v.ds == ds}
    for sli in ("feature_drift", "prediction_stability"):
        v = slis[sli]
        assert (v.value, v.good, v.good_events, v.total_events) == (None, None, None, None), sli
        assert v.details["partial"].startswith(reason_start)
    kinds = _outbox_kinds(ds)
    assert not kinds & {"drift", "skew", "prediction_anomaly", "coverage"}, kinds


def test_partial_day_is_reported_computed_not_alerted_and_left_out_of_the_window(
        fraud_files, small_demo, run_dag):
    days = [fraud_files(1), fraud_files(2), fraud_files(3), fraud_files(4, "quiet"),
            fraud_files(5, "first_hours"), fraud_files(6)]
    for ds in days:
        out = run_dag("fraud_monitor", ds)
        assert out.ok, (ds, out.tasks)
    store = _store()
    parts = {p.ds: p for p in store.partitions("fraud")}
    counts = [parts[d].rows for d in days[:4]]

    # day 1-3: judged by the training set's time-of-day profile, complete
    for ds in days[:3]:
        assert parts[ds].partial["basis"] == "time_of_day" and parts[ds].partial["partial"] is False
    # the quiet Sunday (70%, whole day) is complete against the trailing median
    quiet = parts[days[3]].partial
    assert quiet["partial"] is False and quiet["basis"] == "trailing_median"
    assert quiet["rows"] == parts[days[3]].rows < 0.75 * quiet["expected"]
    # the day cut at 06:00 is partial against the median of the four days before it
    cut = parts[days[4]].partial
    assert cut["partial"] is True and cut["basis"] == "trailing_median"
    assert cut["expected"] == pd.Series(counts).median() and cut["known_days"] == 4
    assert cut["rows"] == parts[days[4]].rows < 200 and cut["last_event"] < "06:00"
    head = f"partial day: {cut['rows']} rows vs {cut['expected']:g} expected"
    assert cut["reason"].startswith(head) and SUPPRESSED in cut["reason"]

    # the incompleteness itself is reported: the ingestion suite's row-count check fails
    (volume,) = [e for e in store.expectation_results("fraud", days[4]) if e.expectation_id == "volume.min_rows"]
    assert volume.success is False and volume.observed == cut["rows"]
    assert "expectation_failed" in _outbox_kinds(days[4])

    _assert_suppressed(days[4], head)
    # the partial day counts in neither good nor total of the feature-drift and stability budgets
    for slo in ("feature-drift", "prediction-stability"):
        assert _snapshot(slo, days[4]).total == _snapshot(slo, days[3]).total == 4
        assert _snapshot(slo, days[5]).total == 5

    # the next full day: a window without the partial day, stagnation against the quiet day
    drift6 = _dataset("drift", days[5])
    assert drift6["reference_days"] == days[:4]
    assert drift6["n_reference"] == sum(counts)
    assert not parts[days[5]].partial["partial"]

    # history (text and JSON) and the day page show it
    from watchkeeper import history, reports
    from watchkeeper.spec import get_spec

    spec = get_spec("fraud")
    built = {d["ds"]: d for d in history.build(spec, store)}
    assert built[days[4]]["partial"] == cut and built[days[3]]["partial"] == quiet
    assert built[days[4]]["slis"]["feature_drift"] == {"value": None, "good": None}
    table = history.as_table(spec, list(built.values()))
    row = next(line for line in table.splitlines() if line.startswith(days[4]))
    assert row.endswith(f"{cut['rows']}/{cut['expected']:.0f} PARTIAL"), row
    assert f"{days[4]}: {cut['reason']}" in table
    assert "PARTIAL" not in next(line for line in table.splitlines() if line.startswith(days[3]))
    reports.build_site(store, [spec], days=[days[4]])
    page = (paths.reports_dir() / "fraud" / days[4] / "index.html").read_text()
    assert "partial day" in page and "would_alert" in page
    assert head in page

    # re-running the partial day (and its load step alone) leaves the store as it was
    once = _dump("fraud")
    assert run_dag("fraud_monitor", days[4]).ok
    from watchkeeper import monitor

    summary = monitor.load(spec, days[4], store)
    assert summary["partial"] == cut and summary["rows"] == cut["rows"]
    assert _dump("fraud") == once


def test_a_fresh_model_first_day_cut_at_six_is_partial_by_time_of_day(fraud_files, run_dag):
    ds = fraud_files(1, "first_hours")
    out = run_dag("fraud_monitor", ds)
    assert out.ok, out.tasks
    store = _store()
    (part,) = store.partitions("fraud")
    p = part.partial
    assert p["partial"] is True and p["basis"] == "time_of_day" and p["known_days"] == 0
    # 00:00-06:00 carries about 6% of a usual fraud day; the expected rows are what a full day
    # at this rate would hold (the demo's days have about 2,000)
    assert 0.04 < p["covered_share"] < 0.09 and 1500 < p["expected"] < 2600
    head = f"partial day: {p['rows']} rows vs {p['expected']:.0f} expected"
    assert p["reason"].startswith(head) and "time-of-day profile" in p["reason"]
    # min_rows follows the same rule, so the row-count check reports the day even without history
    (volume,) = [e for e in store.expectation_results("fraud", ds) if e.expectation_id == "volume.min_rows"]
    assert volume.success is False
    assert _dataset("drift", ds).get("reference_empty") is True  # day 1: nothing to compare with
    _assert_suppressed(ds, head)
