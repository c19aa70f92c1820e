"""Error budgets after every SLI write: one snapshot per model, SLO and day, built only from
what was known on that day (so re-running an old day reproduces its snapshot).

The shell around `watchkeeper.slo`: reads SLIs "as known on ds" from the store, turns them into
SLI points, evaluates, and stores the snapshots (wk_metric family 'budget', subject = SLO name).
"""

from __future__ import annotations

from watchkeeper import slo as slomod
from watchkeeper.spec import ModelSpec, Slo

FAMILY = "budget"


def slo_def(s: Slo) -> slomod.SloDef:
    return slomod.SloDef(
        name=s.name,
        sli=s.sli,
        kind=s.kind,
        objective=s.objective,
        window_days=s.window_days,
        gates=frozenset(s.gates),
        quality=s.quality,
        min_bad_days_ticket=s.min_bad_days_ticket,
    )


def slo_defs(spec: ModelSpec) -> list[slomod.SloDef]:
    return [slo_def(s) for s in spec.slos]


def point(s: Slo, row) -> slomod.SliPoint:
    """One stored SLI value as the SLO sees it.

    Ratio SLOs take the stored good/total events. Quality timeslices take the day's confident
    verdict (see `quality_verdict`): an inconclusive day adds no event but stays a mature day.
    Other timeslices with a threshold judge the day's value against it (direction from the
    spec); without one, the stored good flag is the verdict.
    """
    provisional = bool(row.provisional)
    if s.kind == "ratio":
        return slomod.SliPoint(ds=row.ds, good_events=row.good_events,
                               total_events=row.total_events, provisional=provisional)
    if s.quality and s.threshold is not None:
        verdict = quality_verdict(s, row)
        return slomod.SliPoint(ds=row.ds, good=None if verdict in (None, "inconclusive")
                               else verdict == "good", provisional=provisional,
                               inconclusive=verdict == "inconclusive")
    if s.threshold is not None:
        if row.value is None:
            good = None
        elif s.direction == "at_least":
            good = row.value >= s.threshold
        else:
            good = row.value <= s.threshold
    else:
        good = row.good
    return slomod.SliPoint(ds=row.ds, good=None if good is None else bool(good),
                           provisional=provisional)


def quality_verdict(s: Slo, row) -> str | None:
    """good | bad | inconclusive | None (no value) for a quality timeslice SLO's stored SLI row.

    The stored verdict when it was judged as this SLO judges (same threshold, direction and
    confidence); else the stored bounds against this SLO's threshold when their confidence
    matches (the spec's threshold changed since the row was written); else, for rows written
    before confident verdicts existed, the value against the threshold.
    """
    d = row.details or {}
    same_confidence = d.get("confidence") == s.confidence
    if (d.get("verdict") in slomod.VERDICTS and same_confidence
            and d.get("threshold") == s.threshold and d.get("direction") == s.direction):
        return d["verdict"]
    if same_confidence and ("lower" in d or "upper" in d):
        return slomod.day_verdict(row.value, d.get("lower"), d.get("upper"), s.threshold,
                                  s.direction)
    return slomod.day_verdict(row.value, row.value, row.value, s.threshold, s.direction)


def evaluate(spec: ModelSpec, ds: str, store) -> list[slomod.BudgetSnapshot]:
    """Evaluate every SLO of the model as known on `ds` and store the snapshots."""
    from watchkeeper.store import MetricRecord

    wanted = {s.sli for s in spec.slos}
    if not wanted:
        return []
    rows = store.slis(spec.name, as_known_on=ds, sli=sorted(wanted))
    snapshots = []
    for s in spec.slos:
        pts = [point(s, r) for r in rows if r.sli == s.sli and r.ds <= ds]
        snapshots.append(slomod.evaluate(slo_def(s), pts, ds))
    store.write_metrics(
        spec.name, ds, FAMILY, ds,
        [MetricRecord(subject=snap.slo, value=snap.budget_remaining, payload=snap.to_dict())
         for snap in snapshots],
    )
    return snapshots


def latest_snapshots(store, model: str, as_of: str) -> list[slomod.BudgetSnapshot]:
    """The newest stored snapshot per SLO on or before `as_of`.

    One indexed query that returns a handful of rows however long the history is: the gate must
    answer in milliseconds against years of snapshots.
    """
    from sqlalchemy import and_, func, select

    from watchkeeper.store import wk_metric as t

    newest_day = (
        select(t.c.subject, func.max(t.c.ds).label("ds"))
        .where(t.c.model == model, t.c.family == FAMILY, t.c.ds <= as_of)
        .group_by(t.c.subject).subquery()
    )
    q = (
        select(t.c.subject, t.c.ds, t.c.known_on, t.c.payload)
        .join(newest_day, and_(t.c.subject == newest_day.c.subject, t.c.ds == newest_day.c.ds))
        .where(t.c.model == model, t.c.family == FAMILY, t.c.known_on <= as_of)
    )
    with store.engine.connect() as conn:
        rows = conn.execute(q).all()
    best: dict[str, tuple] = {}
    for subject, ds, known_on, payload in rows:
        if subject not in best or known_on > best[subject][0]:
            best[subject] = (known_on, payload)
    return [slomod.BudgetSnapshot.from_dict(p) for _, p in best.values()]
