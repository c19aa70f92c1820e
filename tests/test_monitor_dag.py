"""The monitor DAG end to end through `dag.test()`: real Airflow, real GX, a real SQLite store."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml

from watchkeeper import paths

pytestmark = pytest.mark.slow

PROJECT = paths.project_root()


RUN_TIMING = ("started_at", "duration_seconds")


def _dump(model: str):
    """The store without run timings: the only fields a re-run may change."""
    from watchkeeper.store import open_store

    dump = open_store().dump(model)
    dump["wk_run"] = [{k: v for k, v in r.items() if k not in RUN_TIMING} for r in dump.get("wk_run", [])]
    return dump


def test_fraud_day_runs_and_records_findings(demo_home, small_demo, run_dag):
    day29 = small_demo.ds(29)
    out = run_dag("fraud_monitor", day29)
    assert out.ok, out.tasks
    from watchkeeper import history
    from watchkeeper.store import open_store

    (day,) = history.build_days("fraud", open_store(), [day29])
    ing, feat = day["stages"]["ingestion"], day["stages"]["features"]
    failed_cols = {f["column"] for f in ing["failed"] + feat["failed"]}
    assert "device_age_days" in failed_cols
    assert any(f["column"] == "merchant_category" for f in feat["failed"]), feat["failed"]
    dq = day["slis"]["data_quality"]
    assert 0 < dq["value"] < 1 and day["slis"]["freshness"]["good"] is True
    page = demo_home / "reports" / "fraud" / day29 / "validation-features.html"
    html = page.read_text()
    assert "merchant_category" in html and "http://" not in html and "https://" not in html


def test_rerunning_a_day_leaves_the_store_as_one_clean_run(demo_home, small_demo, run_dag):
    days = [small_demo.ds(28), small_demo.ds(29)]
    for ds in days:
        assert run_dag("fraud_monitor", ds).ok
    once = _dump("fraud")
    assert run_dag("fraud_monitor", days[1]).ok  # a re-run of day 29 (a cleared task, a retry)
    assert run_dag("fraud_monitor", days[0]).ok
    assert _dump("fraud") == once
    assert {r["task_id"] for r in once["wk_run"]} >= {"load", "check_ingestion", "record_slis"}


def _custom_eta(tmp_path: Path, monkeypatch, small_demo, *, features_suite: str | None = None) -> Path:
    """An eta spec reading from a folder the test controls."""
    data = tmp_path / "data"
    data.mkdir()
    spec = yaml.safe_load((PROJECT / "include/models/eta.yaml").read_text())
    spec["source"]["path"] = str(data / "ds={ds}.parquet")
    spec["landing"] = {"kind": "none"}
    if features_suite:
        spec["suites"]["features"] = features_suite
    models = tmp_path / "models"
    models.mkdir()
    (models / "eta.yaml").write_text(yaml.safe_dump(spec))
    monkeypatch.setenv("WATCHKEEPER_MODELS_DIR", str(models))
    return data


def _eta_day(small_demo, n: int) -> pd.DataFrame:
    return pd.read_parquet(Path(small_demo.home) / "demo/eta/predictions" / f"ds={small_demo.ds(n)}.parquet")


def _day_result(ds: str) -> dict:
    from watchkeeper import history
    from watchkeeper.store import open_store

    (day,) = history.build_days("eta", open_store(), [ds])
    return day


def test_missing_partition_is_a_freshness_failure(demo_home, small_demo, run_dag, tmp_path, monkeypatch):
    _custom_eta(tmp_path, monkeypatch, small_demo)
    ds = small_demo.ds(3)
    out = run_dag("eta_monitor", ds)
    assert out.ok, out.tasks
    from watchkeeper.store import open_store

    (part,) = [p for p in open_store().partitions("eta") if p.ds == ds]
    assert part.status == "missing" and f"ds={ds}.parquet" in part.message
    day = _day_result(ds)
    assert day["slis"]["freshness"]["good"] is False
    assert "not run" in day["stages"]["ingestion"]["not_run"]


def test_empty_partition_is_a_finding(demo_home, small_demo, run_dag, tmp_path, monkeypatch):
    data = _custom_eta(tmp_path, monkeypatch, small_demo)
    ds = small_demo.ds(3)
    _eta_day(small_demo, 3).head(0).to_parquet(data / f"ds={ds}.parquet")
    assert run_dag("eta_monitor", ds).ok
    day = _day_result(ds)
    failed = day["stages"]["ingestion"]["failed"]
    assert any(f["expectation"] == "expect_table_row_count_to_be_between" and f["observed"] == 0
               for f in failed), failed


def test_dropped_column_is_a_finding(demo_home, small_demo, run_dag, tmp_path, monkeypatch):
    data = _custom_eta(tmp_path, monkeypatch, small_demo)
    ds = small_demo.ds(3)
    _eta_day(small_demo, 3).drop(columns=["weather"]).to_parquet(data / f"ds={ds}.parquet")
    assert run_dag("eta_monitor", ds).ok
    day = _day_result(ds)
    failed = day["stages"]["ingestion"]["failed"] + day["stages"]["features"]["failed"]
    assert any(f["column"] == "weather" for f in failed), failed
    # the other columns were still checked
    assert day["stages"]["features"]["evaluated"] > 1


def test_wrong_type_column_is_a_finding(demo_home, small_demo, run_dag, tmp_path, monkeypatch):
    data = _custom_eta(tmp_path, monkeypatch, small_demo)
    ds = small_demo.ds(3)
    frame = _eta_day(small_demo, 3)
    frame["distance_km"] = frame["distance_km"].map(lambda v: f"{v:.1f} km")
    frame.to_parquet(data / f"ds={ds}.parquet")
    assert run_dag("eta_monitor", ds).ok
    day = _day_result(ds)
    failed = day["stages"]["ingestion"]["failed"] + day["stages"]["features"]["failed"]
    assert any(f["column"] == "distance_km" for f in failed), failed


def test_suite_with_a_bad_bound_is_a_configuration_error(demo_home, small_demo, run_dag, tmp_path, monkeypatch):
    suite = json.loads((PROJECT / "expectations/eta/features.json").read_text())
    target = next(e for e in suite["expectations"] if e["type"] == "expect_column_values_to_be_between")
    target["kwargs"]["min_value"] = "not-a-number"
    bad = tmp_path / "bad_features.json"
    bad.write_text(json.dumps(suite))
    data = _custom_eta(tmp_path, monkeypatch, small_demo, features_suite=str(bad))
    ds = small_demo.ds(3)
    shutil.copy(Path(small_demo.home) / "demo/eta/predictions" / f"ds={ds}.parquet", data)
    out = run_dag("eta_monitor", ds)
    assert out.tasks["check_features"] == "failed", out.tasks
    assert out.tasks["check_ingestion"] == "success"
    day = _day_result(ds)
    err = day["stages"]["features"]["error"]
    assert "configuration error" in err and "bad_features.json" in err
    assert day["stages"]["features"]["failed"] == []  # not a finding
