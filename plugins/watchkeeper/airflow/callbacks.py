"""Task callbacks: every task's outcome and duration go to the store (infrastructure health).

Recording must never turn a successful task into a failed one: errors here are logged only.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


def _record(context, state: str) -> None:
    try:
        from watchkeeper.store import RunRecord, open_store

        ti = context["ti"]
        dag = context.get("dag")
        tags = getattr(dag, "tags", None) or []
        model = next((t.split(":", 1)[1] for t in tags if str(t).startswith("model:")), None)
        from watchkeeper.airflow.days import local_ds

        # the model's day: Airflow's `ds` is the UTC date of the logical date
        ds = local_ds(context.get("logical_date"), getattr(dag, "timezone", None)) or context.get("ds")
        if not model or not ds:
            return
        start = getattr(ti, "start_date", None)
        end = getattr(ti, "end_date", None)
        duration = (end - start).total_seconds() if start and end else None
        error = context.get("exception")
        # A mapped task's instances (one per feature group) are recorded apart.
        map_index = getattr(ti, "map_index", -1)
        task_id = ti.task_id if map_index is None or map_index < 0 else f"{ti.task_id}[{map_index}]"
        open_store().record_run(RunRecord(
            model=model,
            ds=ds,
            dag_id=ti.dag_id,
            task_id=task_id,
            state=state,
            try_number=int(getattr(ti, "try_number", None) or 1),
            started_at=start,
            duration_seconds=duration,
            error=None if error is None else str(error)[:2000],
        ))
    except Exception as err:  # noqa: BLE001 - bookkeeping must not fail the task
        log.warning("watchkeeper: could not record task outcome: %s", err)


def record_task_failure(context) -> None:
    _record(context, "failed")


def record_task_success(context) -> None:
    _record(context, "success")
