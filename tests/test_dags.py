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
