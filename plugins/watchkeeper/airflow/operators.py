"""ErrorBudgetGate: the deployment gate as an Airflow task any team can drop into its DAG.

`ErrorBudgetGate` asks once and fails the task with the reasons when the gate is not open;
`ErrorBudgetGateSensor` waits in reschedule mode (no worker slot held) until the gate opens or
its timeout passes. Both are thin: the decision and its audit record come from
watchkeeper.gatekeeper, exactly as for the CLI and the HTTP endpoint.
"""

from __future__ import annotations

from airflow.sdk import BaseOperator, BaseSensorOperator, PokeReturnValue
from airflow.sdk.exceptions import AirflowFailException


def _asker(context) -> str:
    ti = context.get("ti")
    return f"airflow:{ti.dag_id}.{ti.task_id}" if ti is not None else "airflow"


def _log_decision(log, decision) -> None:
    log.info("%s", decision.verdict_text())
    for r in decision.reasons:
        log.info("  %s: %s", r.get("slo"), r.get("text"))


class ErrorBudgetGate(BaseOperator):
    """Fail (without retries) unless the model's error-budget gate is open for `scope`."""

    template_fields = ("model", "scope", "as_of")
    ui_color = "#f4d35e"

    def __init__(self, *, model: str, scope: str = "model", as_of: str | None = None, **kwargs):
        kwargs.setdefault("retries", 0)  # a closed gate is an answer, not a transient error
        super().__init__(**kwargs)
        self.model, self.scope, self.as_of = model, scope, as_of

    def execute(self, context) -> dict:
        from watchkeeper import gatekeeper

        d = gatekeeper.ask(self.model, self.scope, as_of=self.as_of or None,
                           asked_by=_asker(context), via="airflow-operator")
        _log_decision(self.log, d)
        if d.effective != "open":
            reasons = "; ".join(f"{r.get('slo')}: {r.get('text')}" for r in d.reasons
                                if r.get("verdict") != "open")
            raise AirflowFailException(f"{d.verdict_text()} {reasons}".strip())
        return d.to_json_dict()


class ErrorBudgetGateSensor(BaseSensorOperator):
    """Wait until the gate opens; each poke is an audited decision."""

    template_fields = ("model", "scope")

    def __init__(self, *, model: str, scope: str = "model", **kwargs):
        kwargs.setdefault("mode", "reschedule")
        kwargs.setdefault("poke_interval", 15 * 60)
        kwargs.setdefault("timeout", 24 * 3600)
        super().__init__(**kwargs)
        self.model, self.scope = model, scope

    def poke(self, context) -> PokeReturnValue:
        from watchkeeper import gatekeeper

        d = gatekeeper.ask(self.model, self.scope, asked_by=_asker(context), via="airflow-sensor")
        _log_decision(self.log, d)
        return PokeReturnValue(is_done=d.effective == "open", xcom_value=d.to_json_dict())
