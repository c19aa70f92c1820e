"""What a day's runs tell the team channel: the findings of the monitor or labels run, read back
from the store, turned into alerts and written to the outbox.

Alerts are enqueued after the findings commit; enqueueing is idempotent on (model, kind, subject,
ds), so a retry of the task after a crash in between enqueues exactly what was missing, and a
re-run of the day enqueues nothing new.
"""

from __future__ import annotations

import logging
from datetime import date, timedelta

from watchkeeper.spec import ModelSpec

log = logging.getLogger(__name__)

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
    from watchkeeper.completeness import is_partial

    if part is not None and is_partial(getattr(part, "partial", None)):
        # A partial day's distributions are stored, not judged (README "Partial days"): it
        # neither continues nor clears a drift or prediction incident.
        drift = {"drift": None, "skew": None}
        predictions = None
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
    """Concept drift and quality below its SLO, for prediction-days restated on this labels run
    (and the run's budgets, gate and label lag)."""
    from watchkeeper import alerts_messages as am

    rows = store.metrics(spec.name, "quality", as_known_on=ds)
    return am.DayFindings(quality=_quality(spec, ds, store),
                          concept_drift=_concept_drift(spec, ds, store, rows),
                          budgets=_budgets(spec, ds, store), gate=_gate_transition(spec, ds, store),
                          label_lag=_label_lag(spec, ds, store, rows))


def _quality(spec: ModelSpec, ds: str, store):
    """One finding per quality SLI on this labels run, about a prediction-day it restated as
    mature: the newest bad one if any (bad = the SLI's verdict "bad" where it says, else below
    the threshold); else a clean one (the SLI is evaluated and fine); all inconclusive: a finding
    that neither alerts nor recovers. None when no quality SLI was restated on ds."""
    from watchkeeper import alerts_messages as am

    thresholds = {s.sli: s for s in spec.slos if s.quality and s.threshold is not None}
    if not thresholds:
        return None
    # A labels run restates the prediction-days of its label window only.
    window = (spec.labels.max_delay_days + 1) if spec.labels is not None else 60
    since = (date.fromisoformat(ds) - timedelta(days=window)).isoformat()
    found = []
    for sli, slo in thresholds.items():
        restated = [r for r in store.slis(spec.name, as_known_on=ds, sli=sli, since=since)
                    if r.known_on == ds and not r.provisional and r.value is not None]
        judged = []
        for r in restated:
            details = r.details or {}
            verdict = details.get("verdict") if "verdict" in details else None
            if verdict is not None:
                below = verdict == "bad"
            else:
                below = (r.value < slo.threshold if slo.direction == "at_least"
                         else r.value > slo.threshold)
            judged.append((r, verdict, below))
        if not judged:
            continue
        bad = [j for j in judged if j[2]]
        clean = [j for j in judged if not j[2] and j[1] != "inconclusive"]
        r, verdict, below = (bad or clean or judged)[-1]  # newest prediction-day of its kind
        found.append(am.QualityFinding(
            name=sli, value=r.value, threshold=slo.threshold, below=below, mature=True,
            direction=slo.direction, coverage=(r.details or {}).get("coverage"),
            prediction_ds=r.ds, verdict=verdict if verdict is not None else None))
    return found or None


def _concept_drift(spec: ModelSpec, ds: str, store, rows):
    """Concept drift of this labels run: the prediction-days whose stored quality says
    suspected as known on ds but not as known on the previous run (each prediction-day is
    alerted once, however often later label deliveries restate it). None when no day restated
    on ds was judged (nothing evaluated, nothing recovers)."""
    from watchkeeper import alerts_messages as am

    restated = [m for m in rows if m.known_on == ds and not (m.payload or {}).get("provisional")]
    judged = [m for m in restated
              if ((m.payload or {}).get("concept_drift_detail") or {}).get("status")
              in ("suspected", "ok")]
    if not judged:
        return None
    suspected = [m for m in judged if (m.payload or {}).get("concept_drift")]
    before: set[str] = set()
    if suspected:
        prev = (date.fromisoformat(ds) - timedelta(days=1)).isoformat()
        before = {m.ds for m in store.metrics(spec.name, "quality", as_known_on=prev,
                                              since=min(m.ds for m in suspected),
                                              until=max(m.ds for m in suspected))
                  if (m.payload or {}).get("concept_drift")}
    new = sorted((m for m in suspected if m.ds not in before), key=lambda m: m.ds)
    if not new:
        return am.ConceptDriftFinding(suspected=False)
    first = new[0].payload
    detail = first.get("concept_drift_detail") or {}
    return am.ConceptDriftFinding(
        suspected=True, message=detail.get("reason", ""),
        evidence={k: v for k, v in (first.get("metrics") or {}).items()
                  if k in ("accuracy", "precision", "recall", "f1", "roc_auc")},
        prediction_days=tuple(m.ds for m in new),
        metrics=tuple(dict(r) for r in detail.get("metrics") or () if isinstance(r, dict)))


def _label_lag(spec: ModelSpec, ds: str, store, rows):
    """The label-lag check of the labels run on ds (None when no normal timing is known: then
    nothing is alerted and nothing recovers; the log says why).

    The check needs the prediction-days as known on ds (`rows`, already read) and the normal
    timing, learned from the versions restate stored for the model's first prediction-days: one
    read per known_on day of that learning window, of its days not matured yet, until all have.
    """
    import pandas as pd

    from watchkeeper import alerts_messages as am
    from watchkeeper import labels as lab

    ls = spec.labels
    current = [m for m in rows if m.subject == "overall"]
    if ls is None or not current:
        return None

    def row(m):
        p = m.payload or {}
        return {"prediction_ds": m.ds, "known_on": m.known_on, "coverage": p.get("coverage"),
                "mature": not p.get("provisional", True), "lag_p50_days": p.get("lag_days_p50"),
                "lag_p90_days": p.get("lag_days_p90"), "n_predictions": p.get("n_predictions")}

    first = date.fromisoformat(min(m.ds for m in current))
    learn_until = (first + timedelta(days=lab.LAG_HEALTHY_DAYS - 1)).isoformat()
    pending = {m.ds for m in current if m.ds <= learn_until}  # learning days not matured yet
    last_known = min(date.fromisoformat(ds),
                     first + timedelta(days=lab.LAG_HEALTHY_DAYS - 1 + ls.max_delay_days))
    # A quality SLI carries the same coverage and maturity as the metric set, without the
    # per-segment payload that makes a metric row costly to read; specs without one read metrics.
    quality_sli = next((s.sli for s in spec.slos if s.quality), None)
    seen: dict[tuple[str, str], dict] = {}
    k = first
    while k <= last_known and pending:
        since, until = min(pending), min(k.isoformat(), learn_until)
        if quality_sli is not None:
            found = [{"prediction_ds": r.ds, "known_on": r.known_on,
                      "coverage": (r.details or {}).get("coverage"), "mature": not r.provisional}
                     for r in store.slis(spec.name, as_known_on=k.isoformat(), sli=quality_sli,
                                         since=since, until=until)]
        else:
            found = [row(m) for m in store.metrics(spec.name, "quality", as_known_on=k.isoformat(),
                                                   since=since, until=until)
                     if m.subject == "overall"]
        for r in found:
            seen[(r["prediction_ds"], r["known_on"])] = r
            if r["mature"]:
                pending.discard(r["prediction_ds"])
        k += timedelta(days=1)
    columns = ["prediction_ds", "known_on", "coverage", "mature"]
    timing = lab.label_timing(pd.DataFrame(list(seen.values()), columns=columns),
                              maturity_threshold=ls.maturity_coverage,
                              expected_maturity_days=ls.expected_maturity_days)
    check = lab.label_lag_check(pd.DataFrame([row(m) for m in current]), timing, as_of_ds=ds,
                                max_label_delay_days=ls.max_delay_days)
    log.info("label lag of %s as known on %s: %s", spec.name, ds, check.reason)
    if not check.evaluated:
        return None
    return am.LabelLagFinding(
        days=tuple(am.LabelLagDay(prediction_ds=d.prediction_ds, age_days=d.age_days,
                                  coverage=d.coverage, milestone=d.milestone,
                                  milestone_coverage=d.milestone_coverage, normal_days=d.normal_days)
                   for d in check.days),
        maturity_days=timing.maturity_days, halfway_days=timing.halfway_days,
        maturity_threshold=timing.maturity_threshold, tolerance_days=check.tolerance_days,
        normal=timing.note)


def raise_for(spec: ModelSpec, ds: str, store, which: str) -> dict:
    from watchkeeper import alerts

    findings = monitor_findings(spec, ds, store) if which == "monitor" else labels_findings(spec, ds, store)
    report = alerts.raise_alerts(store, spec, ds, findings)
    return report.to_dict() if hasattr(report, "to_dict") else {"report": str(report)}


def deliver(spec: ModelSpec, store, resolver=None) -> dict:
    from watchkeeper import alerts

    report = alerts.deliver(store, spec, resolver=resolver, echo=lambda *_a, **_k: None)
    return report.to_dict()


# ---- shadow and canary rollouts (issue 10) ----------------------------------------------------


def raise_rollout(spec: ModelSpec, ds: str, store, decision: dict) -> dict:
    """Enqueue the message of a decisive comparison (`watchkeeper.rollout.run_compare`'s result);
    idempotent on (model, rollout_decision, candidate@stage, ds) like every alert."""
    from watchkeeper import alerts
    from watchkeeper import alerts_messages as am

    ev = decision.get("evidence") or {}
    numbers = []
    for t in ev.get("metrics", []):
        numbers.append((f"{t['metric']} gain (margin {t['margin']:g})",
                        f"{am._num(t.get('delta'))} in [{am._num(t.get('lower'))}, "
                        f"{am._num(t.get('upper'))}], n={t['n']:,}"))
    numbers.append(("alpha", f"{ev.get('alpha')}"))
    f = am.RolloutFinding(candidate=decision["candidate"], incumbent=decision.get("incumbent"),
                          stage=decision["stage"], decision=decision["decision"],
                          reasons=tuple(ev.get("reasons", [])), numbers=tuple(numbers))
    report = alerts.enqueue(store, am.rollout_alerts(spec, ds, f, newest_ds=store.newest_ds(spec.name)))
    return report.to_dict() if hasattr(report, "to_dict") else {"report": str(report)}
