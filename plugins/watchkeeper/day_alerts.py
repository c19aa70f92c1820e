"""What a day's runs tell the team channel: the findings of the monitor or labels run, read back
from the store, turned into alerts and written to the outbox.

Alerts are enqueued after the findings commit; enqueueing is idempotent on (model, kind, subject,
ds), so a retry of the task after a crash in between enqueues exactly what was missing, and a
re-run of the day enqueues nothing new.
"""

from __future__ import annotations

from datetime import date, timedelta

from watchkeeper.spec import ModelSpec

DATASET = "__dataset__"


def _day_metrics(store, model: str, family: str, ds: str):
    return [m for m in store.metrics(model, family, since=ds, until=ds)]


def monitor_findings(spec: ModelSpec, ds: str, store):
    from watchkeeper import alerts_messages as am
    from watchkeeper import budgets, gatekeeper

    exp = [am.ExpectationFinding(stage=e.stage, expectation=e.expectation_type, column=e.column,
                                 success=bool(e.success), observed=None if e.column in spec.pii_columns else e.observed,
                                 unexpected_share=e.unexpected_share, unexpected_count=e.unexpected_count)
           for e in store.expectation_results(spec.name, ds=ds)]
    stages = [s.stage for s in store.stage_results(spec.name) if s.ds == ds and s.evaluated]
    part = next((p for p in store.partitions(spec.name) if p.ds == ds), None)
    fresh = None
    if part is not None:
        fresh = am.FreshnessFinding(status=part.status, message=part.message or "",
                                    lateness_hours=part.lateness_hours)
    drift = {}
    for fam in ("drift", "skew"):
        rows = [m.payload for m in _day_metrics(store, spec.name, fam, ds) if m.subject != DATASET]
        drift[fam] = None if not rows else [
            am.DriftFinding(feature=r["feature"], drifted=bool(r.get("drifted")), score=r.get("score"),
                            threshold=r.get("threshold"), method=r.get("method"),
                            segment=r.get("segment") or None) for r in rows]
    preds = [m.payload for m in _day_metrics(store, spec.name, "prediction", ds) if m.subject != DATASET]
    predictions = None if not preds else [
        am.PredictionFinding(monitor=p.get("name"), alert=bool(p.get("alert")), value=p.get("value"),
                             baseline=p.get("baseline"), lower=p.get("lower"), upper=p.get("upper"),
                             message=p.get("message") or "") for p in preds]
    return am.DayFindings(expectations=exp, stages_checked=stages or None, drift=drift["drift"],
                          skew=drift["skew"], predictions=predictions, freshness=fresh,
                          budgets=_budgets(spec, ds, store), gate=_gate_transition(spec, ds, store))


def _budgets(spec, ds, store):
    from watchkeeper import alerts_messages as am
    from watchkeeper import budgets

    snaps = [s for s in budgets.latest_snapshots(store, spec.name, ds) if s.ds == ds]
    return am.budget_findings(snaps, spec) if snaps else None


def _gate_transition(spec, ds, store):
    """The gate as of ds against as of the day before: a closing or reopening is an event."""
    from watchkeeper import alerts_messages as am
    from watchkeeper import gatekeeper

    prev_ds = (date.fromisoformat(ds) - timedelta(days=1)).isoformat()
    out = []
    for scope in ("model",):
        now = gatekeeper.ask(spec.name, scope, as_of=ds, store=store, record=False)
        before = gatekeeper.ask(spec.name, scope, as_of=prev_ds, store=store, record=False)
        # Only closing and reopening are events: a gate that becomes decidable (inconclusive ->
        # open, e.g. once enough labelled days matured) was never closed.
        if now.decision != before.decision and "closed" in (now.decision, before.decision):
            out.append(am.GateTransition(
                scope=scope, previous=before.decision, now=now.decision,
                reasons=tuple(f"{r['slo']}: {r.get('text')}" for r in now.reasons
                              if r.get("verdict") != "open")))
    return out


def labels_findings(spec: ModelSpec, ds: str, store):
    """Concept drift and quality below its SLO, for prediction-days that matured on this run."""
    from watchkeeper import alerts_messages as am

    concept = None
    thresholds = {s.sli: s for s in spec.slos if s.quality and s.threshold is not None}
    # One finding per SLI and labels run: the newest prediction-day that is mature as known on ds.
    newest: dict[str, object] = {}
    for m in store.metrics(spec.name, "quality", as_known_on=ds):
        if m.known_on != ds or m.payload.get("provisional"):
            continue
        p = m.payload
        for sli, slo in thresholds.items():
            v = p.get("metrics", {}).get(sli)
            if v is None:
                continue
            below = v < slo.threshold if slo.direction == "at_least" else v > slo.threshold
            newest[sli] = am.QualityFinding(name=sli, value=v, threshold=slo.threshold, below=below,
                                            mature=True, direction=slo.direction,
                                            coverage=p.get("coverage"))
        if p.get("concept_drift"):
            detail = p.get("concept_drift_detail") or {}
            concept = am.ConceptDriftFinding(
                suspected=True, message=detail.get("reason", ""),
                evidence={k: v for k, v in (p.get("metrics") or {}).items()
                          if k in ("accuracy", "precision", "recall", "f1")})
    quality = list(newest.values())
    return am.DayFindings(quality=quality or None, concept_drift=concept,
                          budgets=_budgets(spec, ds, store), gate=_gate_transition(spec, ds, store))


def raise_for(spec: ModelSpec, ds: str, store, which: str) -> dict:
    from watchkeeper import alerts

    findings = monitor_findings(spec, ds, store) if which == "monitor" else labels_findings(spec, ds, store)
    report = alerts.raise_alerts(store, spec, ds, findings)
    return report.to_dict() if hasattr(report, "to_dict") else {"report": str(report)}


def deliver(spec: ModelSpec, store, resolver=None) -> dict:
    from watchkeeper import alerts

    report = alerts.deliver(store, spec, resolver=resolver, echo=lambda *_a, **_k: None)
    return report.to_dict()
