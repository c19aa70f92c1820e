"""Asking the gate, from any door (CLI, Airflow operator, HTTP): read the newest budget
snapshots and active overrides, decide with `watchkeeper.gate`, and audit the question.

Imports only the spec, the store (SQLAlchemy) and the pure gate: the `watchkeeper gate` CLI must
start in well under a second, so no pandas, GX, Evidently or Airflow here.
"""

from __future__ import annotations

import getpass
import os
import re
from datetime import date, datetime, timedelta, timezone

from watchkeeper import gate as gatemod
from watchkeeper.spec import ModelSpec, get_spec

OVERRIDE = "override"
DECISION = "gate_decision"


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
    snapshots, ovr, store_error = [], [], None
    try:
        store = store or open_store()
        snapshots = budgets.latest_snapshots(store, model, as_of_day.isoformat())
        ovr = overrides(store, model)
    except StoreError as err:
        store_error = str(err)
    decision = gatemod.decide(
        model, scope, snapshots, slos, policy(spec),
        evaluated_at=evaluated_at, as_of=as_of_day, overrides=ovr, store_error=store_error,
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
