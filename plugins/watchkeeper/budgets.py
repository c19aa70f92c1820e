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
    )


def slo_defs(spec: ModelSpec) -> list[slomod.SloDef]:
    return [slo_def(s) for s in spec.slos]


def point(s: Slo, row) -> slomod.SliPoint:
    """One stored SLI value as the SLO sees it.

    Ratio SLOs take the stored good/total events. Timeslice SLOs with a threshold judge the day's
    value against it (direction from the spec); without one, the stored good flag is the verdict.
    """
    if s.kind == "ratio":
        return slomod.SliPoint(ds=row.ds, good_events=row.good_events,
                               total_events=row.total_events, provisional=bool(row.provisional))
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
                           provisional=bool(row.provisional))


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
