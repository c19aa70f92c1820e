"""The deployment gate: may this model (or its feature pipeline) ship now, and why.

Pure module: budget snapshots, SLO definitions, a policy and overrides in; a GateDecision out.
Standard library only (plus watchkeeper.slo, itself stdlib only), because the `watchkeeper gate`
CLI imports it and must answer in well under a second.

Rules, per SLO that gates the asked scope ("model" or "features"; other SLOs do not count):

1. closed  - its newest snapshot shows the budget spent (remaining <= 0) or a page-level burn.
             Checked first and regardless of the snapshot's age or maturity: evidence that the
             budget is gone does not become less true because it is old or thin, and a gate that
             errs should err closed.
2. inconclusive - the store could not be read (`store_error`); or there is no snapshot on or
             before the evaluation date; or the newest snapshot is older than
             `policy.staleness_days` at the evaluation date (age = as_of - snapshot.ds, in days;
             age 2 with the default limit 2 is still fresh); or it is a model-quality SLO with fewer
             mature days in its window than `policy.min_mature_days`; or its window holds no data
             at all (budget_remaining None).
3. open    - otherwise (a ticket-level burn is reported but does not block).

A model-quality SLO's burn rates are measured over its newest mature days (labels arrive late,
so the evaluation day itself never is): its reason says where they end, e.g. "burn over the
newest mature days, to 2026-11-20".

The decision is closed if any SLO is closed, else inconclusive if any is inconclusive (or the store
failed, or no SLO gates the scope: fail closed rather than wave through a spec that forgot its
gates), else open. `effective` is what the caller should do: an open decision is open; an
inconclusive one follows `policy.inconclusive_means` (default "closed"); an active break-glass
override for the same model and scope turns a closed or inconclusive decision into an effective
open, and is named in the decision whenever it is active. Expired overrides are ignored.

Accepted expected change (issue 14) does not open a gate by itself: the budgets already count
the drifted days it covers as good. Every decision whose gating SLOs it affected names it under
`acceptances` (and in the verdict): the acceptances known as of `as_of` that excused days in a
gating snapshot or whose since..until overlaps the window of a gating feature_drift SLO (whose
drift and skew were measured against the accepted window).

The evaluation date `as_of` is the CLI's --as-of or today (the caller decides; nothing here reads
the clock).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Literal

from watchkeeper.acceptance import Acceptance
from watchkeeper.slo import GATE_SCOPES, BudgetSnapshot, SloDef, SloError, parse_ds

__all__ = [
    "GateDecision",
    "GateError",
    "GatePolicy",
    "Override",
    "OverrideRefused",
    "decide",
    "new_override",
    "validate_override",
]

Decision = Literal["open", "closed", "inconclusive"]
DECISION_KEYS = ("model", "scope", "decision", "reasons", "evaluated_at", "data_as_of", "override")
# to_json_dict() also carries effective, as_of, exit_code, verdict, inconclusive_means,
# store_error, notes and (issue 14) acceptances
FEATURE_DRIFT = "feature_drift"  # the SLI accepted change affects (watchkeeper.budgets)


class GateError(ValueError):
    """The gate was asked something it cannot answer (bad scope, date, snapshot or policy)."""


class OverrideRefused(GateError):
    """A break-glass override was refused (no reason, expiry not in the future, bad scope)."""


def _check_scope(scope: Any, what: str) -> str:
    if scope not in GATE_SCOPES:
        raise GateError(f"{what}: scope must be one of {sorted(GATE_SCOPES)}, got {scope!r}")
    return scope


def _check_aware(value: Any, what: str, error: type[GateError] = GateError) -> datetime:
    if not isinstance(value, datetime):
        raise error(f"{what}: expected a datetime, got {value!r}")
    if value.tzinfo is None or value.utcoffset() is None:
        # Comparing naive and aware datetimes raises TypeError; and a naive time is ambiguous.
        raise error(f"{what}: datetime {value.isoformat()} has no timezone; pass an aware UTC datetime")
    return value


@dataclass(frozen=True)
class GatePolicy:
    """What the gate needs besides the SLOs: how to treat "don't know", maturity and staleness."""

    inconclusive_means: Literal["closed", "open"] = "closed"
    min_mature_days: int = 7
    staleness_days: int = 2

    def __post_init__(self) -> None:
        if self.inconclusive_means not in ("closed", "open"):
            raise GateError(
                f"gate policy, field 'inconclusive_means': must be 'closed' or 'open', "
                f"got {self.inconclusive_means!r}"
            )
        for name in ("min_mature_days", "staleness_days"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise GateError(f"gate policy, field '{name}': must be a whole number >= 0, got {value!r}")


@dataclass(frozen=True)
class Override:
    """A break-glass override: opens a closed or inconclusive gate until `expires_at`."""

    model: str
    scope: str
    reason: str
    created_by: str
    created_at: datetime
    expires_at: datetime

    def __post_init__(self) -> None:
        where = f"override for {self.model!r}"
        _check_scope(self.scope, where)
        _check_aware(self.created_at, f"{where}, field 'created_at'")
        _check_aware(self.expires_at, f"{where}, field 'expires_at'")

    def is_active(self, at: datetime) -> bool:
        """Active from its creation until (not including) its expiry."""
        return self.created_at <= at < self.expires_at

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "scope": self.scope,
            "reason": self.reason,
            "created_by": self.created_by,
            "created_at": self.created_at.isoformat(),
            "expires_at": self.expires_at.isoformat(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Override:
        """Read a stored override back (no expiry check: stored ones may have expired since)."""
        keys = ("model", "scope", "reason", "created_by", "created_at", "expires_at")
        missing = [k for k in keys if k not in data]
        if missing:
            raise GateError(f"stored override {data.get('model')!r}: missing field(s) {missing}")
        values = dict((k, data[k]) for k in keys)
        for k in ("created_at", "expires_at"):
            if isinstance(values[k], str):
                try:
                    values[k] = datetime.fromisoformat(values[k])
                except ValueError:
                    raise GateError(
                        f"stored override {data.get('model')!r}, field '{k}': "
                        f"not an ISO datetime: {values[k]!r}"
                    ) from None
        return cls(**values)


def validate_override(reason: str | None, expires_at: datetime, now: datetime) -> None:
    """Refuse an override without a reason or whose expiry is not after `now` (OverrideRefused)."""
    if reason is None or not isinstance(reason, str) or not reason.strip():
        raise OverrideRefused("override refused: a reason is required (say why the gate must be opened)")
    _check_aware(expires_at, "override refused: expires_at", OverrideRefused)
    _check_aware(now, "override refused: now", OverrideRefused)
    if expires_at <= now:
        raise OverrideRefused(
            f"override refused: expires_at {expires_at.isoformat()} is not after now ({now.isoformat()}); "
            "an override must expire in the future"
        )


def new_override(
    model: str, scope: str, reason: str, created_by: str, expires_at: datetime, now: datetime
) -> Override:
    """Validate and build an override created at `now` (what the CLI stores)."""
    validate_override(reason, expires_at, now)
    if not isinstance(created_by, str) or not created_by.strip():
        raise OverrideRefused("override refused: created_by is required (who opens the gate)")
    try:
        _check_scope(scope, f"override refused for {model!r}")
    except GateError as exc:
        raise OverrideRefused(str(exc)) from None
    return Override(model, scope, reason.strip(), created_by.strip(), now, expires_at)


@dataclass
class GateDecision:
    """The answer for one model and scope, with per-SLO reasons; see the module docstring."""

    model: str
    scope: str
    decision: Decision
    effective: Literal["open", "closed"]
    reasons: list[dict[str, Any]]
    evaluated_at: datetime
    as_of: date
    data_as_of: str | None
    override: dict[str, Any] | None = None
    inconclusive_means: Literal["closed", "open"] = "closed"
    store_error: str | None = None
    notes: list[str] = field(default_factory=list)
    # issue 14: accepted expected change affecting the gating SLOs (id, feature, segment, reason,
    # since, until, created_by, known_on, excused_days)
    acceptances: list[dict[str, Any]] = field(default_factory=list)

    def exit_code(self) -> int:
        """0 open (or effective open after policy or override), 1 closed, 2 inconclusive."""
        if self.effective == "open":
            return 0
        return 1 if self.decision == "closed" else 2

    def verdict_text(self) -> str:
        """A short verdict for a release manager, e.g. "CLOSED: fraud may not ship. 1 of 3 ..."."""
        n = len(self.reasons)
        slos = f"{n} gating SLO{'' if n == 1 else 's'}"
        when = f"({self.scope} scope, as of {self.as_of.isoformat()})"

        def listed(verdict: str) -> str:
            return " ".join(f"{r['slo']}: {r['text']}" for r in self.reasons if r["verdict"] == verdict)

        if self.decision == "open":
            every = f"All {slos} are" if n > 1 else f"The {slos[2:]} is"
            text = f"OPEN: {self.model} may ship {when}. {every} within budget."
            tickets = [r["slo"] for r in self.reasons if r["alert"] == "ticket"]
            if tickets:
                text += f" Ticket-level burn, not blocking: {', '.join(tickets)}."
        elif self.decision == "closed":
            k = sum(r["verdict"] == "closed" for r in self.reasons)
            text = f"CLOSED: {self.model} may not ship {when}. {k} of {slos} block it. {listed('closed')}"
        else:
            if self.store_error is not None:
                cause = f"Store unreachable: {self.store_error}."
            else:
                cause = listed("inconclusive") or " ".join(self.notes)
            text = (
                f"INCONCLUSIVE: cannot tell whether {self.model} may ship {when}; the policy treats "
                f"that as {self.inconclusive_means}. {cause}"
            )
        if self.acceptances:
            listed = "; ".join(
                f"{a['feature']}" + (f" [{', '.join(f'{k}={v}' for k, v in a['segment'].items())}]"
                                     if a.get("segment") else "")
                + f" since {a['since']}, " + (f"until {a['until']}" if a.get("until") else "open-ended")
                + f" (by {a['created_by']}: {a['reason']!r}"
                + (f"; {a['excused_days']} drifted day{'s' if a['excused_days'] != 1 else ''} excused"
                   if a.get("excused_days") else "") + ")"
                for a in self.acceptances)
            text += f" Accepted expected change: {listed}."
        o = self.override
        if o is not None and self.decision != "open":
            text = (
                f"OPEN BY OVERRIDE until {o['expires_at']} (break-glass by {o['created_by']}: "
                f"{o['reason']!r}). Without it: {text}"
            )
        elif o is not None:
            text += f" A break-glass override by {o['created_by']} is active until {o['expires_at']}."
        return text

    def to_json_dict(self) -> dict[str, Any]:
        """JSON-ready: the keys of DECISION_KEYS plus effective, as_of, exit_code, verdict, ..."""
        return {
            "model": self.model,
            "scope": self.scope,
            "decision": self.decision,
            "reasons": [dict(r) for r in self.reasons],
            "evaluated_at": self.evaluated_at.isoformat(),
            "data_as_of": self.data_as_of,
            "override": dict(self.override) if self.override is not None else None,
            "effective": self.effective,
            "as_of": self.as_of.isoformat(),
            "exit_code": self.exit_code(),
            "verdict": self.verdict_text(),
            "inconclusive_means": self.inconclusive_means,
            "store_error": self.store_error,
            "notes": list(self.notes),
            "acceptances": [dict(a) for a in self.acceptances],
        }


def _fmt(value: float | None, pct: bool = False) -> str:
    if value is None:
        return "n/a"
    return f"{value * 100:.0f}%" if pct else f"{value:.1f}"


def _burn_where(slo: SloDef, snap: BudgetSnapshot) -> str:
    """Where a quality SLO's burn windows end (empty for the others: they end on the snapshot's day)."""
    if not slo.quality:
        return ""
    if snap.burn_as_of is None:
        return " (no mature day in the window to measure burn on)"
    return f" (burn over the newest mature days, to {snap.burn_as_of})"


def _judge(
    slo: SloDef, snap: BudgetSnapshot | None, policy: GatePolicy, as_of: date, store_error: str | None
) -> tuple[Decision, str]:
    """Verdict and one sentence for one gating SLO (rules in the module docstring)."""
    unit = "days" if slo.kind == "timeslice" else "events"
    if snap is None:
        if store_error is not None:
            return "inconclusive", f"Store unreachable, no budget known ({store_error})."
        return "inconclusive", f"No budget snapshot on or before {as_of.isoformat()}."
    age = (as_of - date.fromisoformat(snap.ds)).days
    caveat = ""
    if age > policy.staleness_days:
        caveat = f" (snapshot of {snap.ds}, {age} days old)"
    if snap.budget_spent:
        return "closed", (
            f"Error budget spent: {snap.bad:g} bad of {snap.total:g} {unit} in the {slo.window_days}-day "
            f"window against {snap.allowed_bad:g} allowed ({_fmt(snap.budget_remaining, True)} remaining)"
            f"{caveat}."
        )
    if snap.alert == "page":
        return "closed", (
            f"Burning at page level: 3-day burn {_fmt(snap.burn_3d)} and 1-day burn {_fmt(snap.burn_1d)} "
            f"(page at {slo.page_burn:g}){_burn_where(slo, snap)}; "
            f"{_fmt(snap.budget_remaining, True)} of the budget left{caveat}."
        )
    if age > policy.staleness_days:
        return "inconclusive", (
            f"Newest snapshot is of {snap.ds}, {age} days before the evaluation date "
            f"{as_of.isoformat()} (limit {policy.staleness_days} days)."
        )
    if slo.quality and snap.mature_days < policy.min_mature_days:
        return "inconclusive", (
            f"Only {snap.mature_days} mature day{'s' if snap.mature_days != 1 else ''} in the "
            f"{slo.window_days}-day window (needs {policy.min_mature_days}); "
            "model quality cannot be judged yet."
        )
    if snap.budget_remaining is None:
        return "inconclusive", f"No data in the {slo.window_days}-day window ending {snap.ds}."
    text = (
        f"Within budget: {_fmt(snap.budget_remaining, True)} remaining, burn 1d {_fmt(snap.burn_1d)}, "
        f"3d {_fmt(snap.burn_3d)}, 7d {_fmt(snap.burn_7d)}{_burn_where(slo, snap)}"
    )
    if snap.alert == "ticket":
        text += "; ticket-level burn, not blocking"
    if snap.excused_days:
        text += (f"; {snap.excused_days} drifted day{'s' if snap.excused_days != 1 else ''} "
                 f"excused by accepted expected change ({', '.join(sorted(snap.excused_by))})")
    return "open", text + "."


def decide(
    model: str,
    scope: str,
    snapshots: list[BudgetSnapshot],
    slos: list[SloDef],
    policy: GatePolicy,
    *,
    evaluated_at: datetime,
    as_of: date | str,
    overrides: list[Override],
    store_error: str | None = None,
    acceptances: list[Acceptance] | tuple[Acceptance, ...] = (),
) -> GateDecision:
    """Decide whether `model` may ship in `scope` on `as_of`.

    `snapshots` are the newest per gating SLO (if several are given for one SLO the newest counts);
    a snapshot dated after `as_of` is a GateError (it could not have been known then). Snapshots of
    SLOs that do not gate `scope` are not considered.
    """
    _check_scope(scope, f"gate for {model!r}")
    _check_aware(evaluated_at, f"gate for {model!r}: evaluated_at")
    if not isinstance(policy, GatePolicy):
        raise GateError(f"gate for {model!r}: policy must be a GatePolicy, got {type(policy).__name__}")
    try:
        as_of_day = parse_ds(as_of, f"gate for {model!r}: as_of")
    except SloError as exc:
        raise GateError(str(exc)) from None

    for slo in slos:
        if not isinstance(slo, SloDef):
            raise GateError(f"gate for {model!r}: expected SloDef values, got {type(slo).__name__}")
    for o in overrides:
        if not isinstance(o, Override):
            raise GateError(f"gate for {model!r}: expected Override values, got {type(o).__name__}")
    for a in acceptances:
        if not isinstance(a, Acceptance):
            raise GateError(f"gate for {model!r}: expected Acceptance values, got {type(a).__name__}")
    gating = [s for s in slos if scope in s.gates]
    names = [s.name for s in slos]
    if len(set(names)) != len(names):
        dupes = sorted({n for n in names if names.count(n) > 1})
        raise GateError(f"gate for {model!r}: SLO name(s) defined twice: {dupes}")

    newest: dict[str, BudgetSnapshot] = {}
    if store_error is None:
        for snap in snapshots:
            if not isinstance(snap, BudgetSnapshot):
                kind = type(snap).__name__
                raise GateError(f"gate for {model!r}: expected BudgetSnapshot values, got {kind}")
            if date.fromisoformat(snap.ds) > as_of_day:
                raise GateError(
                    f"gate for {model!r}: snapshot of SLO {snap.slo!r} is dated {snap.ds}, after the "
                    f"evaluation date {as_of_day.isoformat()}; pass the newest snapshot on or before it"
                )
            if snap.slo not in newest or snap.ds > newest[snap.slo].ds:
                newest[snap.slo] = snap

    reasons: list[dict[str, Any]] = []
    for slo in gating:
        snap = newest.get(slo.name)
        verdict, text = _judge(slo, snap, policy, as_of_day, store_error)
        reasons.append(
            {
                "slo": slo.name,
                "sli": slo.sli,
                "budget_remaining": snap.budget_remaining if snap else None,
                "burn_1d": snap.burn_1d if snap else None,
                "burn_3d": snap.burn_3d if snap else None,
                "burn_7d": snap.burn_7d if snap else None,
                "alert": snap.alert if snap else None,
                "data_as_of": snap.data_as_of if snap else None,
                "burn_as_of": snap.burn_as_of if snap else None,
                "snapshot_ds": snap.ds if snap else None,
                "mature_days": snap.mature_days if snap else None,
                "excused_days": snap.excused_days if snap else 0,
                "verdict": verdict,
                "text": text,
            }
        )
    affecting = _affecting(model, gating, newest, acceptances, as_of_day)
    for r in reasons:
        ids = [a["id"] for a in affecting if r["slo"] in a["slos"]]
        if ids:
            r["acceptances"] = ids

    notes: list[str] = []
    verdicts = {r["verdict"] for r in reasons}
    if "closed" in verdicts:
        decision: Decision = "closed"
    elif "inconclusive" in verdicts or store_error is not None:
        decision = "inconclusive"
    elif not gating:
        decision = "inconclusive"
        notes.append(
            f"No SLO of {model!r} gates the {scope!r} scope, so there is nothing to judge; "
            "declare the scope in the SLOs' gates."
        )
    else:
        decision = "open"

    active = [
        o for o in overrides if o.model == model and o.scope == scope and o.is_active(evaluated_at)
    ]
    chosen = max(active, key=lambda o: o.expires_at) if active else None

    if decision == "open" or chosen is not None:
        effective: Literal["open", "closed"] = "open"
    elif decision == "inconclusive":
        effective = policy.inconclusive_means
    else:
        effective = "closed"

    # The decision is only as current as its stalest input.
    # (SLOs without data show None in their own reason.)
    known = [r["data_as_of"] for r in reasons if r["data_as_of"] is not None]
    data_as_of = min(known) if known else None

    return GateDecision(
        model=model,
        scope=scope,
        decision=decision,
        effective=effective,
        reasons=reasons,
        evaluated_at=evaluated_at,
        as_of=as_of_day,
        data_as_of=data_as_of,
        override=chosen.to_dict() if chosen else None,
        inconclusive_means=policy.inconclusive_means,
        store_error=store_error,
        notes=notes,
        acceptances=affecting,
    )


def _affecting(model: str, gating: list[SloDef], newest: dict[str, BudgetSnapshot],
               acceptances, as_of: date) -> list[dict[str, Any]]:
    """The acceptances known as of `as_of` that affected a gating SLO: they excused days in its
    snapshot, or (feature_drift SLOs) their since..until overlaps the snapshot's window."""
    day = as_of.isoformat()
    out = []
    for a in acceptances:
        if a.model != model or not a.known_as_of(day):
            continue
        slos, excused = [], 0
        for slo in gating:
            snap = newest.get(slo.name)
            if snap is None:
                continue
            n = snap.excused_by.get(a.id, 0)
            if n or (slo.sli == FEATURE_DRIFT and a.overlaps(snap.window_start, snap.ds)):
                slos.append(slo.name)
                excused = max(excused, n)
        if slos:
            d = a.to_dict()
            out.append({k: d[k] for k in ("id", "feature", "segment", "reason", "since", "until",
                                          "created_by", "known_on")}
                       | {"excused_days": excused, "slos": slos})
    return out
