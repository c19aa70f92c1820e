"""Incidents derived from the alert outbox. Pure: rows in, frozen dataclasses out.

A condition is (model, kind, subject): drift of one feature, a prediction monitor, a stage's data
checks, an SLO's budget... Every day it holds it has exactly one outbox row (whatever was sent
for it: the onset, an escalation, a one-line update or reminder, or nothing: `folded`). An
incident is the run of a condition's rows in its thread (`thread_key`) from the first row until
a closing row (`closes_thread`: a recovery, the gate reopening, `close_incidents`). Nothing is
stored about an incident besides those rows, so the incident list, the alert builder's view of
what is open, and the backtest all read the same history and can never disagree.

The message type of a row is `facts["message"]` (onset, escalation, update, reminder, folded,
recovery, backfill); rows written before incidents existed have none and count as an onset.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import date
from typing import Any, Literal, Protocol

from watchkeeper.alerts_messages import INCIDENT_KINDS, SEVERITIES, split_thread_key

__all__ = ["INCIDENT_KINDS", "Incident", "derive", "open_incidents", "open_since", "table"]

# Statuses of a row whose message was (or is being) handed to Slack: it told someone. A failed
# row is kept for a resend, so it still counts: the next day must not announce a second time.
TOLD = frozenset({"pending", "sending", "sent", "failed"})
_RANK = {s: i for i, s in enumerate(SEVERITIES)}
MESSAGES = ("onset", "escalation", "update", "reminder", "folded", "recovery", "group", "backfill")


class OutboxRow(Protocol):
    """What derive() reads of an outbox row (StoredOutbox or OutboxIndexRow with facts)."""

    dedupe_key: str
    ds: str
    kind: str
    subject: str
    thread_key: str
    severity: str
    status: str
    closes_thread: bool
    digest_key: str | None
    facts: Mapping[str, Any] | None


@dataclass(frozen=True)
class Incident:
    """One incident of a condition. Days are model-timezone ISO days.

    severity: the highest severity the condition reached; opened: the first row's day; onset:
    the data day the first row is about (facts["onset"]; a labels alert is about an older
    prediction-day), else `opened`; last_seen: the newest day the condition held; closed: the
    closing row's day; duration_days: last_seen - opened + 1; time_to_detect_days: opened -
    onset when the onset is known; worst: the largest facts["worst"] (larger = worse) with its
    text and day; messages_sent: messages of this incident Slack (or the outbox file) accepted,
    a group message counted once per incident it carries; pages: those of severity page.
    The builder's view: announced (an onset or escalation told someone; a silenced onset does
    not count), sent_severity (the highest severity told), last_message (day of the newest told
    message) and the incident's worst at that message, root_key (the announcement's row, or the
    group row carrying it: the Slack thread of the incident).
    """

    model: str
    kind: str
    subject: str
    thread_key: str
    status: Literal["open", "closed"]
    severity: str
    opened: str
    onset: str
    last_seen: str
    closed: str | None
    closed_by: str | None
    duration_days: int
    time_to_detect_days: int | None
    worst: float | None
    worst_text: str | None
    worst_ds: str | None
    days_seen: int
    messages_sent: int
    pages: int
    announced: bool
    sent_severity: str | None = None
    last_message: str | None = None
    last_message_worst: float | None = None
    last_message_worst_text: str | None = None
    root_key: str | None = None

    @property
    def is_open(self) -> bool:
        return self.status == "open"

    def to_dict(self) -> dict[str, Any]:
        """The stable JSON shape of `watchkeeper incidents --json` (README "Alerts")."""
        d = asdict(self)
        for internal in ("sent_severity", "last_message_worst", "last_message_worst_text",
                         "root_key"):
            d.pop(internal)
        return d


@dataclass
class _Builder:
    model: str
    kind: str
    subject: str
    thread_key: str
    opened: str
    onset: str | None
    severity: str = "info"
    last_seen: str = ""
    days: set[str] = field(default_factory=set)
    worst: float | None = None
    worst_text: str | None = None
    worst_ds: str | None = None
    messages_sent: int = 0
    pages: int = 0
    announced: bool = False
    sent_severity: str | None = None
    last_message: str | None = None
    last_message_worst: float | None = None
    last_message_worst_text: str | None = None
    root_key: str | None = None

    def count(self, row: OutboxRow, severity: str, sent: bool) -> None:
        if sent:
            self.messages_sent += 1
            self.pages += severity == "page"

    def freeze(self, closed: str | None = None, closed_by: str | None = None) -> Incident:
        last = self.last_seen or self.opened
        ttd = None if self.onset is None else (
            date.fromisoformat(self.opened) - date.fromisoformat(self.onset)).days
        return Incident(
            model=self.model, kind=self.kind, subject=self.subject, thread_key=self.thread_key,
            status="closed" if closed else "open", severity=self.severity, opened=self.opened,
            onset=self.onset or self.opened, last_seen=last, closed=closed, closed_by=closed_by,
            duration_days=(date.fromisoformat(last) - date.fromisoformat(self.opened)).days + 1,
            time_to_detect_days=ttd, worst=self.worst, worst_text=self.worst_text,
            worst_ds=self.worst_ds, days_seen=len(self.days), messages_sent=self.messages_sent,
            pages=self.pages, announced=self.announced, sent_severity=self.sent_severity,
            last_message=self.last_message, last_message_worst=self.last_message_worst,
            last_message_worst_text=self.last_message_worst_text, root_key=self.root_key)


def message_of(row: OutboxRow) -> str:
    """The row's message type; rows from before incidents existed are onsets or recoveries."""
    facts = row.facts or {}
    m = facts.get("message")
    if m:
        return str(m)
    return "recovery" if row.closes_thread else "onset"


def _number(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    f = float(v)
    return f if f == f else None  # NaN is no value


def derive(rows: Iterable[OutboxRow], *, as_of: str | None = None) -> list[Incident]:
    """Every incident in `rows` (one model's outbox rows, in delivery order, group rows
    included so a grouped announcement knows whether its group went out), oldest first.
    Rows after `as_of` are ignored."""
    rows = [r for r in rows if as_of is None or r.ds <= as_of]
    groups = {r.dedupe_key: r for r in rows if r.kind == "group"}

    def carrier(r: OutboxRow) -> OutboxRow | None:
        if r.status == "grouped":
            return groups.get(r.digest_key or "")
        return r

    open_: dict[str, _Builder] = {}
    out: list[Incident] = []
    for r in rows:
        facts = r.facts or {}
        c = carrier(r)
        told = c is not None and c.status in TOLD
        sent = c is not None and c.status == "sent"
        if r.closes_thread:
            b = open_.pop(r.thread_key, None)
            if b is None:
                continue  # a stray closing row (its incident was closed before, or is older)
            b.count(r, r.severity, sent)
            by = facts.get("closed_by") or ("gate reopened" if r.kind == "gate_reopened"
                                            else "recovery")
            out.append(b.freeze(closed=r.ds, closed_by=str(by)))
            continue
        if r.kind not in INCIDENT_KINDS:
            continue
        b = open_.get(r.thread_key)
        if b is None:
            try:
                model, _k, _s = split_thread_key(r.thread_key)
            except ValueError:
                continue
            onset = facts.get("onset")
            b = open_[r.thread_key] = _Builder(
                model=model, kind=r.kind, subject=r.subject, thread_key=r.thread_key,
                opened=r.ds, onset=str(onset) if onset else None)
        b.days.add(r.ds)
        b.last_seen = max(b.last_seen, r.ds)
        severity = str(facts.get("incident_severity") or r.severity)
        if _RANK.get(severity, 0) > _RANK.get(b.severity, 0):
            b.severity = severity
        worst = _number(facts.get("worst"))
        if worst is not None and (b.worst is None or worst > b.worst):
            b.worst, b.worst_ds = worst, r.ds
            b.worst_text = str(facts.get("worst_text") or worst)
        message = message_of(r)
        b.count(r, r.severity, sent)
        if not told:
            continue
        if message in ("onset", "escalation"):
            b.announced = True
            if b.sent_severity is None or _RANK.get(r.severity, 0) > _RANK[b.sent_severity]:
                b.sent_severity = r.severity if r.severity in _RANK else "ticket"
            if b.root_key is None:
                b.root_key = c.dedupe_key if c is not None else r.dedupe_key
        if message in ("onset", "escalation", "update", "reminder"):
            b.last_message = r.ds
            b.last_message_worst, b.last_message_worst_text = b.worst, b.worst_text
    out += [b.freeze() for b in open_.values()]
    return sorted(out, key=lambda i: (i.opened, i.kind, i.subject, i.closed or "9999"))


def open_incidents(rows: Iterable[OutboxRow], *, as_of: str | None = None) -> dict[str, Incident]:
    """The open incidents of `rows`, by thread key."""
    return {i.thread_key: i for i in derive(rows, as_of=as_of) if i.is_open}


def open_since(rows: Iterable[OutboxRow]) -> dict[str, str]:
    """Thread key -> first day of each open incident, from light rows (no facts needed): which
    rows a full derive() must read."""
    start: dict[str, str] = {}
    for r in rows:
        if r.closes_thread:
            start.pop(r.thread_key, None)
        elif r.kind in INCIDENT_KINDS:
            start.setdefault(r.thread_key, r.ds)
    return start


def table(incidents: list[Incident]) -> str:
    """The incidents as a text table (`watchkeeper incidents`), newest first."""
    head = ("model", "kind", "subject", "status", "severity", "opened", "onset", "last seen",
            "closed", "days", "ttd", "msgs", "pages", "worst")
    rows = [(i.model, i.kind, i.subject, i.status, i.severity, i.opened, i.onset, i.last_seen,
             i.closed or "-", str(i.duration_days),
             "-" if i.time_to_detect_days is None else str(i.time_to_detect_days),
             str(i.messages_sent), str(i.pages), (i.worst_text or "-")[:60])
            for i in sorted(incidents, key=lambda i: (i.opened, i.model, i.kind, i.subject),
                            reverse=True)]
    widths = [max(len(x[n]) for x in [head, *rows]) for n in range(len(head) - 1)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)) + "  " + row[-1]
                     for row in [head, *rows])
