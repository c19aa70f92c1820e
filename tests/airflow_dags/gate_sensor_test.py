"""Test-only DAGs (linked into the session's dags folder by conftest): the gate sensor waiting on
each demo model, with short intervals so a closed gate times out in seconds."""

from datetime import datetime, timezone

from airflow.sdk import DAG

from watchkeeper.airflow.operators import ErrorBudgetGateSensor

for _model in ("eta", "fraud"):
    with DAG(
        dag_id=f"test_gate_sensor_{_model}",
        schedule=None,
        start_date=datetime(2026, 1, 1, tzinfo=timezone.utc),
        catchup=False,
        tags=["watchkeeper", "test", f"model:{_model}"],
        doc_md="Test DAG: ErrorBudgetGateSensor in reschedule mode." * 5,
        default_args={"owner": "watchkeeper-tests", "retries": 1},
    ) as _dag:
        ErrorBudgetGateSensor(task_id="wait_for_gate", model=_model, poke_interval=1, timeout=4,
                              retries=1)
    globals()[_dag.dag_id] = _dag
