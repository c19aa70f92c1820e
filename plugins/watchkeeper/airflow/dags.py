"""DAGs built from the model specs. The files under dags/ call `build_dags()` and nothing else.

Parsing must stay in milliseconds: this module imports the Airflow SDK and the spec (pydantic,
YAML) only. Every heavy import (pandas, Great Expectations, Evidently, SQLAlchemy models) happens
inside the task callables, at run time, on the worker.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

from airflow.sdk import DAG, task

from watchkeeper import spec as specmod
from watchkeeper.airflow import callbacks
from watchkeeper.airflow.days import local_ds

# Without `start_date` in the spec a model's DAGs start on this day (midnight in the model's
# timezone), so any past day can be run (`watchkeeper run`, a backfill). It is fixed, which keeps
# parsing deterministic (no "now" at parse time), and catchup is off, so nothing runs from it by
# itself: a scheduler starts with the newest day.
DEFAULT_START_DAY = (1970, 1, 1)

MONITOR_DOC = """\
### Watchkeeper monitor: `{name}`

{description}

Every day, for the logical date `ds` in the model's timezone ({tz}):

1. **load** reads the day's partition ({source}) and records when it landed
   (freshness; deadline {deadline} h after the day ends);
2. **check_ingestion** and **check_features** run the Great Expectations suites
   `{ingestion}` and `{features}`; a failed expectation is a finding, recorded and
   alerted, not a crashed task; a suite GX cannot evaluate fails the task as a configuration error;
3. **drift** compares the batch with the trailing clean days (sudden change), **skew** with the
   training set (slow drift), per feature and per segment, with Evidently's stat tests calibrated
   to the batch size; each runs as one mapped task per feature group (`drift_features`,
   `skew_features`) and a merge that corrects for the day's many comparisons; **predictions** watches the
   score distribution, positive rate, class mix, stagnation, and feature coverage;
4. **record_slis** writes the data-quality (ratio), freshness, prediction-stability and
   feature-drift (timeslice) SLIs and re-evaluates the error budgets;
5. **alert** turns the day's findings into Slack messages (outbox, deduplicated per model, kind,
   subject and day) and delivers what is pending;
6. **report** rebuilds the reviewers' site: the index, this model's page and this day's page.

Re-running a day replaces that day's results: the store ends as one clean run would leave it.
Spec: `{spec_path}` · Reports: `WATCHKEEPER_HOME/reports/{name}/<ds>/`
"""


def _default_args(spec: specmod.ModelSpec) -> dict:
    return {
        "owner": spec.owner,
        "retries": spec.retries,
        "retry_delay": timedelta(minutes=2),
        "retry_exponential_backoff": True,
        "on_failure_callback": callbacks.record_task_failure,
        "on_success_callback": callbacks.record_task_success,
    }


def _start(spec: specmod.ModelSpec) -> datetime:
    """Midnight of the first day in the model's timezone: the DAG's schedule takes its timezone
    from here, so its runs' logical dates are the model's midnights (see watchkeeper.airflow.days)."""
    y, m, d = ((spec.start_date.year, spec.start_date.month, spec.start_date.day)
               if spec.start_date else DEFAULT_START_DAY)
    return datetime(y, m, d, tzinfo=spec.tz)


def _model_dag(spec: specmod.ModelSpec, kind: str, **kwargs) -> DAG:
    """A Watchkeeper DAG of one model: `<model>_<kind>`, the shared defaults and tags."""
    return DAG(dag_id=f"{spec.name}_{kind}", start_date=_start(spec), catchup=False,
               max_active_runs=1, default_args=_default_args(spec),
               tags=["watchkeeper", kind, f"model:{spec.name}", spec.task], **kwargs)


def _alert_and_report(name: str, tz: str, which: str, upstream) -> None:
    """The tail both daily DAGs share: alert on the day's findings, then rebuild the site (even
    when alerting failed: reviewers still need the pages)."""

    @task(task_id="alert", multiple_outputs=False)
    def alert(_upstream: dict, ds=None, logical_date=None) -> dict:
        ds = local_ds(logical_date, tz) or ds
        from watchkeeper.airflow import runtime

        return runtime.raise_and_deliver(name, ds, which)

    @task(task_id="report", multiple_outputs=False, trigger_rule="all_done")
    def report(ds=None, logical_date=None) -> dict:
        ds = local_ds(logical_date, tz) or ds
        from watchkeeper.airflow import runtime

        return runtime.build_reports(name, ds)

    alert(upstream) >> report()


def _feature_group_stage(name: str, tz: str, kind: str, groups: list[dict]):
    """Drift or skew as one mapped task per feature group (`<kind>_features`, spread over the
    workers) and a merging task (`<kind>`) that corrects for the day's many comparisons over all
    groups and stores the result. Groups pass their results through shared storage
    (WATCHKEEPER_HOME/state), never XCom; the grouping is the spec's, known at parse time."""

    @task(task_id=f"{kind}_features", multiple_outputs=False, map_index_template="{{ feature_group }}")
    def compare_group(group: dict, ds=None, logical_date=None) -> dict:
        ds = local_ds(logical_date, tz) or ds
        from airflow.sdk import get_current_context

        from watchkeeper.airflow import runtime

        get_current_context()["feature_group"] = ", ".join(group["features"])
        return runtime.analyze_drift_group(name, ds, kind, group["index"], group["features"])

    @task(task_id=kind, multiple_outputs=False)
    def merge(ds=None, logical_date=None) -> dict:
        ds = local_ds(logical_date, tz) or ds
        from watchkeeper.airflow import runtime

        return runtime.merge_drift_groups(name, ds, kind)

    parts = compare_group.expand(group=groups)
    merged = merge()
    parts >> merged
    return parts, merged


def _fail_run_when_a_task_fails(dag: DAG) -> None:
    """Airflow judges a run by its last tasks, and `report` runs whatever happened before it
    (trigger rule all_done), so a day whose checks failed would show as a successful run. This
    watcher, downstream of every task, fails the run when any of them failed and is skipped
    otherwise."""

    @task(task_id="run_status", trigger_rule="one_failed", retries=0)
    def run_status() -> None:
        from airflow.sdk.exceptions import AirflowFailException

        raise AirflowFailException(
            "a task of this run failed (its log says why; `watchkeeper status` lists the model's "
            "recent task failures); the other tasks ran and stored what they could")

    watcher = run_status()
    for t in dag.tasks:
        if t is not watcher.operator:
            t >> watcher


def monitor_dag(spec: specmod.ModelSpec) -> DAG:
    name, tz = spec.name, spec.timezone
    doc = MONITOR_DOC.format(
        name=name,
        description=spec.description or "",
        tz=spec.timezone,
        source=spec.source.kind,
        deadline=spec.landing.deadline_hours,
        ingestion=spec.suites.ingestion or "(none)",
        features=spec.suites.features or "(none)",
        spec_path=Path(spec.spec_path).name,
    )
    with _model_dag(
        spec, "monitor",
        description=f"Daily data checks, drift and SLIs for model {name}",
        schedule="@daily",
        doc_md=doc,
        # No DAG params: Airflow deep-copies them into every task, which dominated parse time.
        # Callbacks read the model from the DAG's tag instead.
    ) as dag:

        @task(task_id="load", multiple_outputs=False)
        def load(ds=None, logical_date=None) -> dict:
            ds = local_ds(logical_date, tz) or ds
            from watchkeeper.airflow import runtime

            return runtime.load(name, ds)

        @task(task_id="check_ingestion", multiple_outputs=False)
        def check_ingestion(loaded: dict, ds=None, logical_date=None) -> dict:
            ds = local_ds(logical_date, tz) or ds
            from watchkeeper.airflow import runtime

            return runtime.check(name, ds, "ingestion", loaded)

        @task(task_id="check_features", multiple_outputs=False)
        def check_features(loaded: dict, ds=None, logical_date=None) -> dict:
            ds = local_ds(logical_date, tz) or ds
            from watchkeeper.airflow import runtime

            return runtime.check(name, ds, "features", loaded)

        @task(task_id="predictions", multiple_outputs=False)
        def watch_predictions(loaded: dict, ds=None, logical_date=None) -> dict:
            ds = local_ds(logical_date, tz) or ds
            from watchkeeper.airflow import runtime

            return runtime.analyze_predictions(name, ds)

        @task(task_id="record_slis", multiple_outputs=False, trigger_rule="none_failed")
        def record_slis(loaded: dict, ds=None, logical_date=None) -> dict:
            ds = local_ds(logical_date, tz) or ds
            from watchkeeper.airflow import runtime

            return runtime.record_slis(name, ds, loaded)

        loaded = load()
        ing = check_ingestion(loaded)
        feat = check_features(loaded)
        ing >> feat  # the feature suite is only meaningful on data that passed the gate of ingestion
        # The drift window is made of days whose checks ran, so the analyses follow the checks.
        groups = [{"index": i, "features": g} for i, g in enumerate(spec.drift_groups)]
        d_parts, d = _feature_group_stage(name, tz, "drift", groups)
        k_parts, k = _feature_group_stage(name, tz, "skew", groups)
        p = watch_predictions(loaded)
        feat >> [d_parts, k_parts, p]
        rs = record_slis(loaded)
        [ing, feat, d, k, p] >> rs
        _alert_and_report(name, tz, "monitor", rs)
        _fail_run_when_a_task_fails(dag)
    return dag


LABELS_DOC = """\
### Watchkeeper labels: `{name}`

Ground truth arrives late ({delay} days at most). Every day, for the logical date `ds`:

1. **ingest_labels** validates the labels that arrived on `ds` (unknown ids, duplicates,
   conflicts — the latest arrival wins —, labels from the future, missing or mistyped columns are
   counted and reported; the valid rows are kept) and merges them into the label history;
2. **restate_quality** joins the history, as known on `ds`, to the predictions of the last
   {delay} days and recomputes quality for every prediction-day of that window: metrics overall and
   per segment, label coverage and lag, maturity (coverage ≥ {maturity}), the estimate from the
   scores, suspected concept drift, business outcomes. Model-quality SLIs stay provisional until a
   day matures; budgets are re-evaluated.

Re-running a day, or running days out of order, leaves the same store.
"""


def labels_dag(spec: specmod.ModelSpec) -> DAG:
    name, tz = spec.name, spec.timezone
    with _model_dag(
        spec, "labels",
        description=f"Daily late-label join and quality restatement for model {name}",
        schedule="@daily",
        doc_md=LABELS_DOC.format(name=name, delay=spec.labels.max_delay_days,
                                 maturity=spec.labels.maturity_coverage),
    ) as dag:

        @task(task_id="ingest_labels", multiple_outputs=False)
        def ingest_labels(ds=None, logical_date=None) -> dict:
            ds = local_ds(logical_date, tz) or ds
            from watchkeeper.airflow import runtime

            return runtime.ingest_labels(name, ds)

        @task(task_id="restate_quality", multiple_outputs=False)
        def restate_quality(ingested: dict, ds=None, logical_date=None) -> dict:
            ds = local_ds(logical_date, tz) or ds
            from watchkeeper.airflow import runtime

            return runtime.restate_quality(name, ds)

        restated = restate_quality(ingest_labels())
        if spec.candidate is not None:  # issue 10: the candidate against the incumbent

            @task(task_id="compare", multiple_outputs=False)
            def compare(_restated: dict, ds=None, logical_date=None) -> dict:
                ds = local_ds(logical_date, tz) or ds
                from watchkeeper.airflow import runtime

                return runtime.compare(name, ds)

            restated = compare(restated)
        _alert_and_report(name, tz, "labels", restated)
        _fail_run_when_a_task_fails(dag)
    return dag


DEPLOY_DOC = """\
### Model deployment: `{name}` (example)

The pattern any team can copy: **gate → deploy steps → record the deployment**.

- **gate** (`ErrorBudgetGate`) asks Watchkeeper whether `{name}` may ship now. Closed fails the run
  here, with the SLOs and numbers that closed it in the log; inconclusive follows the spec's policy
  ({inconclusive}). Every question is audited in the store.
- **package** and **roll_out** stand in for your own steps (they only log here).
- **record_deployment** stores the deployment, with its model version, as an event: triage
  correlates incidents with deployments.

Trigger with `{{"version": "..."}}` to deploy a given model version. To wait for the gate
instead of failing, use `ErrorBudgetGateSensor` (reschedule mode).
"""


def deploy_dag(spec: specmod.ModelSpec) -> DAG:
    from watchkeeper.airflow.operators import ErrorBudgetGate

    name, tz = spec.name, spec.timezone
    with _model_dag(
        spec, "deploy",
        description=f"Example model deployment for {name}, gated on its error budgets",
        schedule=None,
        doc_md=DEPLOY_DOC.format(name=name, inconclusive=f"inconclusive means {spec.gate.inconclusive_means}"),
        params={"version": f"{name}-candidate"},
    ) as dag:
        gate = ErrorBudgetGate(task_id="gate", model=name, scope="model")

        @task(task_id="package")
        def package(params=None) -> str:
            import logging

            logging.getLogger(__name__).info("packaging %s", params["version"])
            return params["version"]

        @task(task_id="roll_out")
        def roll_out(version: str) -> str:
            import logging

            logging.getLogger(__name__).info("rolling out %s (simulated)", version)
            return version

        @task(task_id="record_deployment")
        def record_deployment(version: str, ds=None, logical_date=None, run_id=None) -> dict:
            ds = local_ds(logical_date, tz) or ds
            from watchkeeper.airflow import runtime

            return runtime.record_deployment(name, ds, version, run_id)

        v = package()
        gate >> v
        record_deployment(roll_out(v))
    return dag


# ---- shadow and canary rollouts (issue 10) ----------------------------------------------------

ROLLOUT_DOC = """\
### Rollout of candidate `{candidate}` for `{name}` (example)

Stages: {stages}. Every day, after the labels DAG's **compare** task has stored the day's
comparison of the candidate with the incumbent (an always-valid sequential test on labelled
rows: paired on the same ids in shadow, by traffic slice in canary; margins {margins},
alpha {alpha}, at least {min_labels} labels):

- **decide** reads that decision for the stage in force and branches:
  *promote* → **gate** (`ErrorBudgetGate`: the model's error budgets must allow a deployment)
  → **promote** (traffic moves to the next stage from the next day; at the last stage the rollout
  is complete); *rollback* → **roll_back** (never waits for the gate: traffic drains back
  through the earlier stages to 0); *hold* → **hold** (not enough evidence yet, or the gate is not
  open).
- Every stage change is stored as a `rollout_stage` event; the model page shows them with the
  daily decisions and their evidence.
"""


def rollout_dag(spec: specmod.ModelSpec) -> DAG:
    from watchkeeper.airflow.operators import ErrorBudgetGate

    name, tz = spec.name, spec.timezone
    cand = spec.candidate
    with _model_dag(
        spec, "rollout",
        description=f"Staged rollout of candidate {cand.name} for {name}, decided by the "
                    "daily comparison and the error-budget gate",
        schedule="@daily",
        doc_md=ROLLOUT_DOC.format(
            name=name, candidate=cand.name, alpha=cand.alpha, min_labels=cand.min_labels,
            stages=" → ".join("shadow" if st == "shadow" else f"{st}%" for st in cand.rollout_stages),
            margins=", ".join(f"{k} {v:g}" for k, v in cand.margins.items())),
    ) as dag:

        @task.branch(task_id="decide")
        def decide(ds=None, logical_date=None) -> str:
            ds = local_ds(logical_date, tz) or ds
            from watchkeeper.airflow import runtime

            return runtime.rollout_decide(name, ds)

        # as of the model's day (Airflow's `ds` is the UTC date of the logical date)
        gate = ErrorBudgetGate(task_id="gate", model=name, scope="model",
                               as_of="{{ logical_date.in_timezone('%s').strftime('%%Y-%%m-%%d') }}" % tz)

        @task(task_id="promote", multiple_outputs=False)
        def promote(ds=None, logical_date=None, run_id=None) -> dict:
            ds = local_ds(logical_date, tz) or ds
            from watchkeeper.airflow import runtime

            return runtime.rollout_promote(name, ds, run_id)

        @task(task_id="roll_back", multiple_outputs=False)
        def roll_back(ds=None, logical_date=None, run_id=None) -> dict:
            ds = local_ds(logical_date, tz) or ds
            from watchkeeper.airflow import runtime

            return runtime.rollout_roll_back(name, ds, run_id)

        @task(task_id="hold", multiple_outputs=False)
        def hold(ds=None, logical_date=None) -> dict:
            ds = local_ds(logical_date, tz) or ds
            from watchkeeper.airflow import runtime

            return runtime.rollout_hold(name, ds)

        branch = decide()
        branch >> gate >> promote()
        branch >> [roll_back(), hold()]
    return dag


def build_dags(models_dir: str | Path | None = None) -> dict[str, DAG]:
    """The DAGs of every valid spec.

    An invalid spec does not take the other models down with it: its DAGs are left out here and
    dags/watchkeeper_spec_errors.py raises the spec's error, so the Airflow UI lists it as an
    import error naming the file, the field and the reason.
    """
    specs, _errors = specmod.load_all(models_dir)
    dags: dict[str, DAG] = {}
    for s in specs:
        built = [monitor_dag(s), deploy_dag(s)]
        if s.labels is not None:
            built.append(labels_dag(s))
        if s.candidate is not None and s.labels is not None:
            built.append(rollout_dag(s))
        for d in built:
            dags[d.dag_id] = d
    return dags


def raise_spec_errors(models_dir: str | Path | None = None) -> None:
    _specs, errors = specmod.load_all(models_dir)
    if errors:
        raise specmod.SpecErrors(errors)
