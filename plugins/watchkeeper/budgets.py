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


FEATURE_DRIFT = "feature_drift"  # the monitor's SLI that acceptances of expected change excuse


def drift_days(rows) -> list:
    """feature_drift SLI rows as `acceptance.DriftDay`s: bad or not, and the drifted rows the SLI
    recorded (None for rows stored before the SLI recorded them: never excused)."""
    from watchkeeper.acceptance import DriftDay

    out = []
    for r in rows:
        found = (r.details or {}).get("drifted")
        entries = None
        if isinstance(found, dict):
            entries = tuple(e for fam in ("drift", "skew") for e in (found.get(fam) or [])
                            if isinstance(e, dict))
        out.append(DriftDay(ds=r.ds, bad=r.good is False, drifted=entries))
    return out


def excused_point(s: Slo, row) -> slomod.SliPoint:
    """A day excused by an acceptance: good, with the day's own weight and maturity."""
    if s.kind == "ratio":
        return slomod.SliPoint(ds=row.ds, good_events=row.total_events,
                               total_events=row.total_events, provisional=bool(row.provisional))
    return slomod.SliPoint(ds=row.ds, good=True, provisional=bool(row.provisional))


def points(s: Slo, rows, ds: str, excused) -> list[slomod.SliPoint]:
    """The SLO's points up to ds; feature_drift days in `excused` (acceptance.Excused) count as
    good. Pure: the caller reads the rows and the acceptances."""
    out = []
    for r in rows:
        if r.sli != s.sli or r.ds > ds:
            continue
        out.append(excused_point(s, r) if s.sli == FEATURE_DRIFT and r.ds in excused.days
                   else point(s, r))
    return out


def evaluate(spec: ModelSpec, ds: str, store, known_on: str | None = None) -> list[slomod.BudgetSnapshot]:
    """Evaluate every SLO of the model for day `ds` as known on `known_on` (default ds) and store
    the snapshots (wk_metric ds=ds, known_on=known_on).

    Acceptances of expected change known as of `known_on` excuse the feature_drift days they
    cover (watchkeeper.acceptance.excused_days); the snapshot says how many (excused_days,
    excused_by). A snapshot as known on an earlier day is never rewritten by a later acceptance.
    """
    from dataclasses import replace

    from watchkeeper.acceptance import Excused, excused_days
    from watchkeeper.store import MetricRecord

    known = known_on or ds
    if known < ds:
        raise ValueError(f"budgets.evaluate({spec.name!r}, {ds}): known_on {known} is before the "
                         "day; a budget cannot be known before its day")
    wanted = {s.sli for s in spec.slos}
    if not wanted:
        return []
    rows = store.slis(spec.name, as_known_on=known, sli=sorted(wanted))
    excused = Excused()
    if FEATURE_DRIFT in wanted:
        from watchkeeper import gatekeeper

        accepted = gatekeeper.acceptances(store, spec.name)
        if accepted:
            excused = excused_days(drift_days(r for r in rows if r.sli == FEATURE_DRIFT and r.ds <= ds),
                                   accepted, known)
    snapshots = []
    for s in spec.slos:
        snap = slomod.evaluate(slo_def(s), points(s, rows, ds, excused), ds)
        if s.sli == FEATURE_DRIFT and excused.days:
            by = excused.count_by(snap.window_start, snap.ds)
            snap = replace(snap, excused_by=by, excused_days=sum(
                1 for d in excused.days if snap.window_start <= d <= snap.ds))
        snapshots.append(snap)
    store.write_metrics(
        spec.name, ds, FAMILY, known,
        [MetricRecord(subject=snap.slo, value=snap.budget_remaining, payload=snap.to_dict())
         for snap in snapshots],
    )
    return snapshots


def _change_days(store, model: str) -> list[str]:
    """The days acceptances became known or were revoked (watchkeeper.gatekeeper events)."""
    from watchkeeper import gatekeeper

    days = set()
    for a in gatekeeper.acceptances(store, model):
        days.add(a.known_on)
        if a.revoked_on is not None:
            days.add(a.revoked_on)
    return sorted(days)


def evaluate_day(spec: ModelSpec, ds: str, store) -> list[slomod.BudgetSnapshot]:
    """What a run of `ds` evaluates: the budgets as known on ds, and again as known on every later
    day an acceptance became known or was revoked. A run that completes after an acceptance was
    made for a later day (a late run of yesterday) must not hide it from the gate of that later
    day, which reads the newest day's snapshot known by then; a re-run writes the same rows."""
    snaps = evaluate(spec, ds, store)
    if any(s.sli == FEATURE_DRIFT for s in spec.slos):
        for day in _change_days(store, spec.name):
            if day > ds:
                evaluate(spec, ds, store, known_on=day)
    return snaps


def budget_days(store, model: str) -> list[str]:
    """Every day with a stored budget snapshot, oldest first."""
    from sqlalchemy import select

    from watchkeeper.store import wk_metric as t

    q = select(t.c.ds).where(t.c.model == model, t.c.family == FAMILY).distinct().order_by(t.c.ds)
    # the store's read (not a connection of our own): inside store.atomic() it sees the block's
    # writes and takes no second connection to a locked SQLite file
    with store._read(f"reading budget days model={model}") as conn:
        return [r[0] for r in conn.execute(q).all()]


def reevaluate_after_change(spec: ModelSpec, store, known_on: str) -> list[tuple[str, str]]:
    """After an acceptance (or its revocation) known on `known_on`: re-evaluate so that the gate
    as of known_on or later reflects it while the gate as of earlier days is unchanged. The newest
    budget day before known_on is evaluated as known on known_on; days from known_on on (a change
    recorded with an --as-of in the past) are evaluated again as of themselves. Returns the
    (ds, known_on) pairs written."""
    days = budget_days(store, spec.name)
    before = [d for d in days if d < known_on]
    done = []
    if before:
        evaluate(spec, before[-1], store, known_on=known_on)
        done.append((before[-1], known_on))
    for d in days:
        if d >= known_on:
            evaluate_day(spec, d, store)
            done.append((d, d))
    return done


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
