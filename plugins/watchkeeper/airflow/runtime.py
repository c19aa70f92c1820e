"""What the DAGs' tasks run: resolve the spec, the store and connections, then call the shell.

Kept apart from dags.py so DAG parsing never imports it.
"""

from __future__ import annotations

from airflow.sdk.exceptions import AirflowFailException

from watchkeeper import monitor
from watchkeeper.spec import get_spec


def conn_url(conn_id: str) -> str:
    """An Airflow connection as a SQLAlchemy URL."""
    from airflow.sdk import BaseHook

    conn = BaseHook.get_connection(conn_id)
    uri = conn.get_uri()
    return uri.replace("postgres://", "postgresql://", 1)


def _store():
    from watchkeeper.store import open_store

    return open_store()


def load(model: str, ds: str) -> dict:
    return monitor.load(get_spec(model), ds, _store(), resolver=conn_url)


def check(model: str, ds: str, stage: str, loaded: dict) -> dict:
    try:
        return monitor.check(get_spec(model), ds, stage, _store(), loaded, resolver=conn_url)
    except monitor.ConfigurationError as err:
        # Retrying cannot fix a suite; fail now, with the message the owner needs.
        raise AirflowFailException(f"configuration error in model {model!r}: {err}") from None


def record_slis(model: str, ds: str, loaded: dict) -> dict:
    return monitor.record_slis(get_spec(model), ds, _store())


def record_deployment(model: str, ds: str, version: str, run_id: str | None) -> dict:
    """A deployment event, once per (model, version, ds): a retried task records nothing new."""
    from watchkeeper.gatekeeper import now_utc

    payload = {"version": version, "run_id": run_id, "deployed_at": now_utc().isoformat()}
    w = _store().record_event(model, "deployment", version, ds, payload, created_by="airflow")
    return {"model": model, "version": version, "ds": ds, "recorded": w.inserted}


def ingest_labels(model: str, ds: str) -> dict:
    from watchkeeper import label_pipeline

    return label_pipeline.ingest(get_spec(model), ds, resolver=conn_url)


def restate_quality(model: str, ds: str) -> dict:
    from watchkeeper import label_pipeline

    return label_pipeline.restate(get_spec(model), ds, _store(), resolver=conn_url)


def analyze_drift(model: str, ds: str, kind: str) -> dict:
    from watchkeeper import analysis

    return analysis.analyze_drift(get_spec(model), ds, _store(), kind)


def analyze_drift_group(model: str, ds: str, kind: str, index: int, features: list[str]) -> dict:
    from watchkeeper import analysis

    return analysis.analyze_drift_group(get_spec(model), ds, _store(), kind, index, features)


def merge_drift_groups(model: str, ds: str, kind: str) -> dict:
    from watchkeeper import analysis

    try:
        return analysis.merge_drift_groups(get_spec(model), ds, _store(), kind)
    except analysis.DriftPartsMissing as err:
        raise AirflowFailException(str(err)) from None


def analyze_predictions(model: str, ds: str) -> dict:
    from watchkeeper import analysis

    return analysis.analyze_predictions(get_spec(model), ds, _store())


def _slack_resolver(conn_id: str):
    from airflow.sdk import BaseHook

    from watchkeeper import alerts

    c = BaseHook.get_connection(conn_id)
    return alerts.credentials_from_connection(c.conn_type, c.password, host=c.host, schema=c.schema,
                                              extra=c.extra_dejson, conn_id=conn_id)


def raise_and_deliver(model: str, ds: str, which: str) -> dict:
    """Enqueue the day's alerts (idempotent), then send what is pending."""
    from watchkeeper import day_alerts

    spec, store = get_spec(model), _store()
    raised = day_alerts.raise_for(spec, ds, store, which)
    delivered = day_alerts.deliver(spec, store, resolver=_slack_resolver)
    return {"raised": raised, "delivered": delivered}


def build_reports(model: str, ds: str) -> dict:
    """Rebuild the reviewers' site cheaply: the index, the model page and this day's page.

    WATCHKEEPER_SITE_REBUILD=end (the demo's setting) leaves it to one full build at the end.
    """
    import os

    from watchkeeper import reports

    if os.environ.get("WATCHKEEPER_SITE_REBUILD") == "end":
        return {"skipped": "WATCHKEEPER_SITE_REBUILD=end: the site is built once when the run ends"}

    b = reports.build_site(_store(), [get_spec(model)], days=[ds])
    return {"index": str(b.index), "day_pages": [str(p) for p in b.day_pages],
            "triage_pages": [str(p) for p in b.triage_pages], "problems": b.problems,
            "seconds": round(b.seconds, 2)}


# ---- shadow and canary rollouts (issue 10) ----------------------------------------------------


def compare(model: str, ds: str) -> dict:
    """The labels DAG's compare task: the candidate against the incumbent, stored and alerted."""
    from watchkeeper import compare as cmp
    from watchkeeper import rollout

    try:
        out = rollout.run_compare(get_spec(model), ds, _store(), resolver=conn_url)
    except (rollout.RolloutError, cmp.CompareError) as err:
        # Wrong columns or a missing candidate block: a retry cannot fix it.
        raise AirflowFailException(f"compare for model {model!r} on {ds}: {err}") from None
    # XCom keeps the verdict; the evidence is in the store (the event) and on the model page.
    return {k: v for k, v in out.items() if k != "evidence"} | {
        "reasons": (out.get("evidence") or {}).get("reasons")}


def rollout_decide(model: str, ds: str) -> str:
    import logging

    from watchkeeper import rollout

    d = rollout.decide(get_spec(model), ds, _store())
    logging.getLogger(__name__).info("rollout of %s at %s on %s: %s (%s)", d["candidate"],
                                     d["stage"], ds, d["branch"], d["why"])
    return d["branch"]


def rollout_promote(model: str, ds: str, run_id: str | None) -> dict:
    from watchkeeper import rollout

    return rollout.promote(get_spec(model), ds, _store(), run_id)


def rollout_roll_back(model: str, ds: str, run_id: str | None) -> dict:
    from watchkeeper import rollout

    return rollout.roll_back(get_spec(model), ds, _store(), run_id)


def rollout_hold(model: str, ds: str) -> dict:
    from watchkeeper import rollout

    return rollout.decide(get_spec(model), ds, _store())
