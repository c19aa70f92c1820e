"""Asking the gate, from any door (CLI, Airflow operator, HTTP): read the newest budget
snapshots and active overrides, decide with `watchkeeper.gate`, and audit the question.

Imports only the spec, the store (SQLAlchemy) and the pure gate: the `watchkeeper gate` CLI must
start in well under a second, so no pandas, GX, Evidently or Airflow here.
"""

from __future__ import annotations

import getpass
import logging
import os
import re
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone

from watchkeeper import acceptance as accmod
from watchkeeper import gate as gatemod
from watchkeeper.spec import ModelSpec, get_spec

log = logging.getLogger(__name__)

OVERRIDE = "override"
DECISION = "gate_decision"
ACCEPTANCE = "acceptance"  # issue 14: accepted expected change (subject = its id, ds = known_on)
ACCEPTANCE_REVOKED = "acceptance_revoked"  # its revocation (subject = the id, ds = revoked_on)


def now_utc() -> datetime:
    return datetime.now(timezone.utc)


def today(spec: ModelSpec) -> date:
    """Today in the model's timezone: the only place the gate looks at the wall clock."""
    return now_utc().astimezone(spec.tz).date()


def who() -> str:
    try:
        return os.environ.get("WATCHKEEPER_USER") or getpass.getuser()
    except Exception:  # noqa: BLE001 - no passwd entry in some containers
        return "unknown"


def policy(spec: ModelSpec) -> gatemod.GatePolicy:
    return gatemod.GatePolicy(
        inconclusive_means=spec.gate.inconclusive_means,
        min_mature_days=spec.gate.min_mature_days,
        staleness_days=spec.gate.staleness_days,
    )


def overrides(store, model: str) -> list[gatemod.Override]:
    out = []
    for e in store.events(model, kinds=OVERRIDE):
        try:
            out.append(gatemod.Override.from_dict(e.payload))
        except gatemod.GateError:
            continue  # a corrupt row must not open or close a gate; it shows in `status`
    return out


def ask(
    model: str,
    scope: str = "model",
    *,
    as_of: str | None = None,
    asked_by: str | None = None,
    via: str = "cli",
    store=None,
    record: bool = True,
) -> gatemod.GateDecision:
    """Decide and (by default) store the decision with who asked, how and when.

    An unreachable store gives an inconclusive decision that says why, never an exception.
    """
    from watchkeeper import budgets
    from watchkeeper.store import StoreError, open_store

    spec = get_spec(model)
    evaluated_at = now_utc()
    as_of_day = date.fromisoformat(as_of) if as_of else today(spec)
    slos = budgets.slo_defs(spec)
    snapshots, ovr, accepted, store_error = [], [], [], None
    try:
        store = store or open_store()
        snapshots = budgets.latest_snapshots(store, model, as_of_day.isoformat())
        ovr = overrides(store, model)
        accepted = acceptances(store, model)
    except StoreError as err:
        store_error = str(err)
    decision = gatemod.decide(
        model, scope, snapshots, slos, policy(spec),
        evaluated_at=evaluated_at, as_of=as_of_day, overrides=ovr, store_error=store_error,
        acceptances=accepted,
    )
    if record and store_error is None:
        payload = decision.to_json_dict() | {"asked_by": asked_by or who(), "via": via}
        try:
            store.append_event(model, DECISION, as_of_day.isoformat(), payload,
                               created_by=asked_by or who())
        except StoreError as err:
            decision.notes.append(f"decision not audited: {err}")
    return decision


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([mhdw])\s*$")


def parse_duration(text: str) -> timedelta:
    """'90m', '4h', '2d', '1w'."""
    m = _DURATION.match(text or "")
    if not m:
        raise gatemod.OverrideRefused(
            f"override refused: --expires {text!r} is not a duration like 90m, 4h, 2d or 1w")
    n, unit = float(m.group(1)), m.group(2)
    delta = {"m": timedelta(minutes=n), "h": timedelta(hours=n), "d": timedelta(days=n),
             "w": timedelta(weeks=n)}[unit]
    if delta <= timedelta(0):
        raise gatemod.OverrideRefused("override refused: the expiry must be in the future")
    return delta


def override(model: str, *, reason: str, expires: str | timedelta, by: str | None = None,
             scope: str = "model", store=None) -> gatemod.Override:
    """Break-glass: open the gate for a bounded time. Stored, shown in every later decision."""
    from watchkeeper.store import open_store

    spec = get_spec(model)
    now = now_utc()
    delta = expires if isinstance(expires, timedelta) else parse_duration(expires)
    o = gatemod.new_override(model, scope, reason, by or who(), now + delta, now)
    store = store or open_store()
    store.append_event(model, OVERRIDE, today(spec).isoformat(), o.to_dict(), created_by=o.created_by)
    return o


def recent_decisions(store, model: str, limit: int = 5) -> list[dict]:
    events = store.events(model, kinds=DECISION)
    events.sort(key=lambda e: e.created_at, reverse=True)
    return [
        {"at": e.created_at.isoformat(), "by": e.created_by, "via": e.payload.get("via"),
         "scope": e.payload.get("scope"), "decision": e.payload.get("decision"),
         "as_of": e.ds}
        for e in events[:limit]
    ]


# ----- expected change (issue 14): acceptances as wk_event rows, like overrides -----------------


def acceptances(store, model: str) -> list[accmod.Acceptance]:
    """Every stored acceptance of `model` with its revocation applied, oldest first."""
    return fold_acceptances(store.events(model, kinds=[ACCEPTANCE, ACCEPTANCE_REVOKED]))


def fold_acceptances(events) -> list[accmod.Acceptance]:
    """Acceptances from wk_event rows (other kinds are ignored), revocations applied. A corrupt
    row is skipped (logged): it must neither silence nor un-silence a feature by accident."""
    made: dict[str, accmod.Acceptance] = {}
    revoked: dict[str, dict] = {}
    for e in events:
        if e.kind not in (ACCEPTANCE, ACCEPTANCE_REVOKED):
            continue
        if e.kind == ACCEPTANCE:
            try:
                made[e.subject] = accmod.Acceptance.from_dict(e.payload)
            except accmod.AcceptanceError as err:
                log.warning("ignoring a stored acceptance: %s", err)
        else:
            revoked.setdefault(e.subject, e.payload)
    out = []
    for key, a in made.items():
        r = revoked.get(key)
        if r is not None:
            try:
                a = accmod.revoke(a, on=r.get("revoked_on"), by=r.get("revoked_by"),
                                  reason=r.get("revoke_reason"))
            except accmod.AcceptanceError as err:
                log.warning("ignoring a stored revocation of %s: %s", key, err)
        out.append(a)
    return sorted(out, key=lambda a: (a.known_on, a.created_at, a.id))


def incident_onset(store, spec: ModelSpec, feature: str, as_of: str) -> str | None:
    """The onset of the feature's open drift or skew incident as of `as_of` (the earliest of the
    two), read from the outbox; None when neither is open. Incidents are per feature: subject =
    the feature name (issue 14 interface with the incidents part)."""
    from watchkeeper import alerts

    opened = alerts.open_incidents(store, spec.name, as_of)
    onsets = [opened[k] for kind in ("drift", "skew")
              if (k := alerts.thread_key(spec.name, kind, feature)) in opened]
    return min(onsets) if onsets else None


def close_feature_incidents(store, spec: ModelSpec, ds: str, feature: str, *, reason: str,
                            by: str) -> list[str]:
    """Close the feature's open drift and skew incidents (one closing message each, in its
    thread): the change they were about is accepted as the new normal."""
    from watchkeeper import alerts

    closed: list[str] = []
    for kind in ("drift", "skew"):
        closed += list(alerts.close_incidents(store, spec, ds, kind=kind, subject=feature,
                                              reason=reason, by=by))
    return closed


@dataclass
class AcceptOutcome:
    """What `watchkeeper accept` did: the acceptance, the closing messages of the incidents it
    closed (their outbox keys), and the budget snapshots re-evaluated ((ds, known_on) pairs)."""

    acceptance: accmod.Acceptance
    closed_incidents: list[str] | None = None
    reevaluated: list[tuple[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"acceptance": self.acceptance.to_dict(), "closed_incidents": self.closed_incidents,
                "reevaluated": [{"ds": d, "known_on": k} for d, k in self.reevaluated]}


def accept(model: str, *, feature: str | None, reason: str | None, segment=None,
           since: str | None = None, until: str | None = None, as_of: str | None = None,
           by: str | None = None, store=None) -> AcceptOutcome:
    """Accept a feature's change as the new normal (see watchkeeper.acceptance): validate, store
    it (wk_event 'acceptance'), close the feature's drift and skew incidents and re-evaluate the
    newest budgets as known on its known_on, all in one transaction."""
    from watchkeeper import budgets
    from watchkeeper.store import open_store

    spec = get_spec(model)
    store = store or open_store()
    now = now_utc()
    day = today(spec).isoformat()
    known_on = accmod.parse_day(as_of, "acceptance refused, as_of") if as_of else day
    onset = None
    if since in (None, "") and feature:
        onset = incident_onset(store, spec, str(feature).strip(), known_on)
    a = accmod.new_acceptance(
        spec, id=f"acc-{uuid.uuid4().hex[:8]}", feature=feature, reason=reason, segment=segment,
        since=since, until=until, known_on=known_on, today=day, created_by=by or who(),
        created_at=now.isoformat(), default_since=onset)
    with store.atomic():
        store.append_event(model, ACCEPTANCE, a.known_on, a.to_dict(), subject=a.id,
                           created_by=a.created_by, created_at=now)
        closed = close_feature_incidents(
            store, spec, a.known_on, a.feature, by=a.created_by,
            reason=f"accepted as expected change ({a.id}): {a.reason}")
        done = budgets.reevaluate_after_change(spec, store, a.known_on)
    return AcceptOutcome(a, closed, done)


def revoke_acceptance(model: str, acceptance_id: str, *, reason: str | None = None,
                      as_of: str | None = None, by: str | None = None, store=None) -> AcceptOutcome:
    """Revoke an acceptance as of a day (wk_event 'acceptance_revoked'): runs and budgets as of
    that day or later measure the feature against its usual reference again."""
    from watchkeeper import budgets
    from watchkeeper.store import open_store

    spec = get_spec(model)
    store = store or open_store()
    day = today(spec).isoformat()
    on = accmod.parse_day(as_of, "revocation refused, as_of") if as_of else day
    if on > day:
        raise accmod.AcceptanceError(f"revocation refused, as_of: {on} is after today ({day})")
    stored = {a.id: a for a in acceptances(store, model)}
    if acceptance_id not in stored:
        raise accmod.AcceptanceError(
            f"revocation refused, id: no acceptance {acceptance_id!r} for model {model!r} "
            f"(ids: {', '.join(stored) or 'none'}; see `watchkeeper accept {model} --list`)")
    r = accmod.revoke(stored[acceptance_id], on=on, by=by or who(), reason=reason)
    with store.atomic():
        store.record_event(model, ACCEPTANCE_REVOKED, r.id, r.revoked_on,
                           {"id": r.id, "revoked_on": r.revoked_on, "revoked_by": r.revoked_by,
                            "revoke_reason": r.revoke_reason}, created_by=r.revoked_by)
        done = budgets.reevaluate_after_change(spec, store, r.revoked_on)
    return AcceptOutcome(r, None, done)
