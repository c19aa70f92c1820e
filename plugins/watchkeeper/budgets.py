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
    """The newest stored snapshot per SLO on or before `as_of`."""
    newest: dict[str, object] = {}
    for m in store.metrics(model, FAMILY, until=as_of):
        if m.ds <= as_of and (m.subject not in newest or m.ds > newest[m.subject].ds):
            newest[m.subject] = m
    return [slomod.BudgetSnapshot.from_dict(m.payload) for m in newest.values()]
