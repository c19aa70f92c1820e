"""DAG integrity: every spec yields DAGs that import cleanly, quickly, with the conventions
operators expect (tags, owner, retries, docs), and without heavy imports at parse time."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import subprocess_env
from watchkeeper import paths

PROJECT = paths.project_root()


@pytest.fixture(scope="module")
def bag(airflow_db):
    return airflow_db.dagbag()


def test_no_import_errors(bag):
    assert bag.import_errors == {}
    assert {f"{m}_{k}" for m in ("fraud", "eta") for k in ("monitor", "labels", "deploy")} <= set(bag.dag_ids)


def test_conventions(bag):
    for dag_id in bag.dag_ids:
        dag = bag.get_dag(dag_id)
        if "test" in dag.tags:
            continue  # tests/airflow_dags: test-only DAGs linked into the session's folder
        assert "watchkeeper" in dag.tags, dag_id
        assert any(t.startswith("model:") for t in dag.tags), dag_id
        assert dag.doc_md and len(dag.doc_md) > 100, dag_id
        assert dag.catchup is False and dag.max_active_runs == 1
        for t in dag.tasks:
            # a closed gate is an answer, not a transient error: the gate alone does not retry;
            # run_status fails on purpose when another task failed: retrying it changes nothing
            if type(t).__name__ != "ErrorBudgetGate" and t.task_id != "run_status":
                assert t.retries >= 1, (dag_id, t.task_id)
            assert t.owner and t.owner != "airflow", (dag_id, t.task_id)
        if dag_id.endswith(("_monitor", "_labels")):
            watcher = dag.get_task("run_status")
            assert watcher.trigger_rule == "one_failed" and watcher.retries == 0
            assert set(watcher.upstream_task_ids) == {t.task_id for t in dag.tasks} - {"run_status"}


def test_a_failed_check_fails_the_run_and_the_rest_still_runs(demo_home, small_demo, run_dag,
                                                             tmp_path, monkeypatch):
    """`report` runs whatever happened (all_done): without the watcher a day whose checks failed
    would show as a successful run in Airflow."""
    import yaml

    spec = yaml.safe_load((PROJECT / "include/models/eta.yaml").read_text())
    spec["suites"]["features"] = str(tmp_path / "missing-suite.json")  # a configuration error
    spec["retries"] = 0
    models = tmp_path / "models"
    models.mkdir()
    (models / "eta.yaml").write_text(yaml.safe_dump(spec))
    monkeypatch.setenv("WATCHKEEPER_MODELS_DIR", str(models))
    out = run_dag("eta_monitor", small_demo.ds(3))
    assert out.state == "failed", out
    assert out.tasks["check_features"] == "failed" and out.tasks["run_status"] == "failed", out.tasks
    assert out.tasks["check_ingestion"] == "success" and out.tasks["report"] == "success", out.tasks



def test_parsing_imports_nothing_heavy():
    """A DAG file is a declaration: pandas, GX, Evidently, sklearn stay out of the parser."""
    code = (
        "import sys, json, runpy\n"
        f"runpy.run_path({str(PROJECT / 'dags' / 'watchkeeper_dags.py')!r})\n"
        "heavy = [m for m in ('pandas', 'great_expectations', 'evidently', 'sklearn', 'pyarrow')"
        " if m in sys.modules]\n"
        "print(json.dumps(heavy))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env=subprocess_env(), timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert json.loads(r.stdout.strip().splitlines()[-1]) == []


def test_invalid_spec_is_an_import_error_and_valid_models_keep_their_dags(tmp_path, monkeypatch, airflow_db):
    models = tmp_path / "models"
    models.mkdir()
    (models / "eta.yaml").write_text((PROJECT / "include/models/eta.yaml").read_text())
    broken = yaml.safe_load((PROJECT / "include/models/fraud.yaml").read_text())
    broken["features"][0]["kind"] = "text"
    (models / "fraud.yaml").write_text(yaml.safe_dump(broken))
    monkeypatch.setenv("WATCHKEEPER_MODELS_DIR", str(models))
    bag = airflow_db.dagbag()
    assert "eta_monitor" in bag.dag_ids and "fraud_monitor" not in bag.dag_ids
    (path, err), = bag.import_errors.items()
    assert path.endswith("watchkeeper_spec_errors.py")
    assert "fraud.yaml" in err and "features[0].kind" in err


# ----- time: start dates, timezones, days long past (issue 15) ----------------------------------


def _eta_in(tmp_path, monkeypatch, small_demo, *, tz: str, day: str, start_date: str | None):
    """The demo's eta model moved to `tz`, reading one day of its data re-stamped to `day`."""
    import pandas as pd

    from watchkeeper.spec import day_bounds, parse_spec

    spec = yaml.safe_load((PROJECT / "include/models/eta.yaml").read_text())
    data = tmp_path / "data"
    data.mkdir()
    spec.update(timezone=tz, retries=0)
    if start_date:
        spec["start_date"] = start_date
    spec["source"]["path"] = str(data / "ds={ds}.parquet")
    spec["landing"] = {"kind": "none"}
    models = tmp_path / "models"
    models.mkdir()
    (models / "eta.yaml").write_text(yaml.safe_dump(spec))
    monkeypatch.setenv("WATCHKEEPER_MODELS_DIR", str(models))
    src = small_demo.ds(3)
    frame = pd.read_parquet(Path(small_demo.home) / "demo/eta/predictions" / f"ds={src}.parquet")
    start, _ = day_bounds(parse_spec(spec), day)  # midnight in tz, as naive UTC below
    shift = pd.Timestamp(start.astimezone(__import__("datetime").timezone.utc).replace(tzinfo=None)) \
        - pd.Timestamp(src)
    frame["event_ts"] = frame["event_ts"] + shift
    frame.to_parquet(data / f"ds={day}.parquet")
    return models / "eta.yaml", len(frame)


@pytest.mark.parametrize("tz", ["America/New_York", "Asia/Tokyo"])
def test_a_2013_day_runs_through_the_real_dag_on_its_start_date(
        tz, demo_home, small_demo, run_dag, tmp_path, monkeypatch):
    """Days before the old fixed default start (2026-01-01) used to end with no task at all and
    exit 0; and with start_date on the first day of a non-UTC model the first day was skipped,
    because runs used UTC midnights while the DAG started at the model's midnight. East of UTC
    (Tokyo) Airflow's own `ds` is the day before: the tasks must use the model's day."""
    from watchkeeper import history
    from watchkeeper.store import open_store

    day = "2013-06-14"
    _, rows = _eta_in(tmp_path, monkeypatch, small_demo, tz=tz, day=day, start_date=day)
    out = run_dag("eta_monitor", day)
    assert out.ok, out.tasks
    assert out.tasks["load"] == "success" and out.tasks["check_ingestion"] == "success", out.tasks
    store = open_store()
    (part,) = store.partitions("eta")
    assert part.ds == day and part.rows == rows, part
    (d,) = history.build_days("eta", store, [day])
    ing = d["stages"]["ingestion"]
    assert ing["evaluated"] > 20
    # every event lies in the New York day: the day bounds and the run's day agree
    assert not [f for f in ing["failed"] if f["column"] == "event_ts"], ing["failed"]
    runs = store.dump("eta")["wk_run"]
    assert runs and {r["ds"] for r in runs} == {day}  # the model's day, not Airflow's UTC date


def test_a_day_before_start_date_is_refused_with_the_spec_field(
        demo_home, small_demo, airflow_db, tmp_path, monkeypatch):
    from watchkeeper import demo_runner
    from watchkeeper.airflow import embedded

    spec_file, _ = _eta_in(tmp_path, monkeypatch, small_demo, tz="America/New_York",
                        day="2013-06-14", start_date="2013-06-14")
    with pytest.raises(demo_runner.RunRefused) as exc:
        demo_runner.run_range("eta", "2013-06-13", "2013-06-14")
    msg = str(exc.value)
    assert "start_date" in msg and str(spec_file) in msg and "2013-06-13" in msg
    # below the CLI, a run of such a day is an error too, never an empty success
    dag = airflow_db.dagbag().get_dag("eta_monitor")
    with pytest.raises(embedded.DayNotRun, match="before the DAG's start 2013-06-14"):
        embedded.run_day(dag, "2013-06-13")


def test_start_dates_are_midnights_of_the_model_day_in_its_timezone(tmp_path):
    """The DAG's schedule takes the model's timezone from its start, and a run's logical date is
    the model's midnight; the model day of a logical date is taken in that timezone (Airflow's
    `ds` is the UTC date, the day before in Tokyo)."""
    from datetime import date, datetime, timezone

    from watchkeeper.airflow import dags
    from watchkeeper.airflow.days import local_ds, logical_date
    from watchkeeper.spec import get_spec

    eta = get_spec("eta", PROJECT / "include/models")
    tokyo = dags.monitor_dag(eta.model_copy(update={"timezone": "Asia/Tokyo",
                                                    "start_date": date(2013, 3, 1)}))
    assert tokyo.start_date == datetime(2013, 2, 28, 15, tzinfo=timezone.utc)
    assert str(tokyo.timezone) == "Asia/Tokyo"
    ld = logical_date("2013-03-01", tokyo.timezone)
    assert ld == tokyo.start_date and local_ds(ld, tokyo.timezone) == "2013-03-01"
    assert ld.astimezone(timezone.utc).date().isoformat() == "2013-02-28"  # Airflow's own `ds`
    default = dags.monitor_dag(eta.model_copy(update={"timezone": "America/New_York"}))
    assert default.start_date <= datetime(1970, 1, 1, 5, tzinfo=timezone.utc)  # any past day runs
