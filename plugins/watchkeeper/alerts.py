"""Slack alerts with an outbox: never twice, never lost.

The pure part (findings -> messages) is `watchkeeper.alerts_messages`, re-exported here. This
module is the shell around it:

- `raise_alerts(store, spec, ds, findings)` reads the model's open incidents from the outbox
  (`incident_states`, derived by `watchkeeper.incidents`), builds the day's alerts (one row per
  condition holding today: onset, escalation, update, reminder or folded; recoveries) and
  enqueues them.
- `enqueue(store, alerts, conn=None, spec=...)` writes each alert to the outbox table
  (wk_outbox) — in the caller's transaction, so an alert commits together with the finding that
  caused it. Keyed by (model, kind, subject, ds): a retried, cleared or re-run day enqueues
  nothing new. A day older than the spec's alert horizon behind the newest processed day is
  recorded as 'digest'; a row its incident needs no message for as 'folded'; an alert matching
  an active silence as 'silenced'. Two or more new announcements of one run sharing a severity
  become ONE group message (members 'grouped', digest_key naming the group row), in the same
  transaction.
- `close_incidents(store, spec, ds, kind=, subject=, reason=, by=)` closes open incidents by
  hand with a message in their thread (an accepted change, `watchkeeper accept`).
- `deliver(store, spec)` sends what is pending: Slack Web API (chat.postMessage with a bot token;
  thread updates under the incident's first message, recovery closes it) or an incoming webhook;
  without credentials, to the console and WATCHKEEPER_HOME/alerts/outbox.jsonl. 429 honours
  Retry-After; 5xx and timeouts retry with backoff; permanent errors (invalid_auth,
  channel_not_found, ...) are recorded with their reason and stay in the outbox for a resend.
  Digest rows roll up into ONE digest message per model per delivery. Replies of a grouped
  incident go to the group message's thread.
- Silences are wk_event rows of kind 'silence' (`add_silence`); they expire by themselves.

Tokens and webhook URLs never appear in logs, exceptions, the store or the returned reports:
everything that could carry them goes through `_Masker`.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
import urllib.error
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlparse

from watchkeeper import paths
from watchkeeper.alerts_messages import (  # noqa: F401 - re-exported: the module's public API
    ALERT_KINDS,
    INCIDENT_KINDS,
    NEXT_STEPS,
    RECOVERABLE,
    SEVERITIES,
    WORSE_FACTOR,
    Alert,
    AlertInputError,
    BudgetFinding,
    ConceptDriftFinding,
    DayFindings,
    DriftFinding,
    ExpectationFinding,
    FreshnessFinding,
    GateTransition,
    OverrideFinding,
    PredictionFinding,
    QualityFinding,
    budget_findings,
    build_alerts,
    build_digest,
    build_group,
    channel_for,
    closing_alert,
    dedupe_key,
    default_reports_url,
    drift_findings,
    expectation_findings,
    is_backfill,
    message_type,
    prediction_findings,
    split_thread_key,
    thread_key,
)
from watchkeeper.spec import ModelSpec

log = logging.getLogger("watchkeeper.alerts")
# slack_sdk logs request URLs (a webhook URL is its secret) at DEBUG and errors verbatim: give
# its clients a logger of ours, above DEBUG and masked (see _Masker.install).
_sdk_log = logging.getLogger("watchkeeper.alerts.slack_sdk")
_sdk_log.setLevel(logging.INFO)

SILENCE = "silence"  # wk_event kind
ENV_TOKEN = "WATCHKEEPER_SLACK_TOKEN"
ENV_WEBHOOK = "WATCHKEEPER_SLACK_WEBHOOK_URL"
ENV_BASE_URL = "WATCHKEEPER_SLACK_BASE_URL"

# Slack error codes no retry can fix (https://docs.slack.dev/reference/methods/chat.postMessage).
# Credential errors stop the whole delivery: every further message would be refused the same way.
CREDENTIAL_ERRORS = frozenset({
    "invalid_auth", "not_authed", "account_inactive", "token_revoked", "token_expired",
    "no_permission", "missing_scope", "ekm_access_denied", "org_login_required",
    "invalid_token", "no_service", "team_disabled", "action_prohibited",
})
TRANSIENT_ERRORS = frozenset({
    "ratelimited", "rate_limited", "internal_error", "fatal_error", "service_unavailable",
    "request_timeout",
})
_MEANING = {
    "invalid_auth": "the Slack token is invalid (check the connection's password)",
    "not_authed": "no Slack token was sent",
    "token_revoked": "the Slack token was revoked",
    "token_expired": "the Slack token expired",
    "account_inactive": "the Slack app or user behind the token is deactivated",
    "missing_scope": "the Slack app lacks the chat:write scope",
    "channel_not_found": "the channel does not exist or the app cannot see it (invite the app)",
    "not_in_channel": "the app is not a member of the channel (invite it)",
    "is_archived": "the channel is archived",
    "msg_too_long": "the message is too long for Slack",
    "invalid_blocks": "Slack rejected the message layout",
    "invalid_token": "the webhook URL is invalid or revoked",
    "no_service": "the incoming webhook was disabled or removed",
    "no_active_hooks": "the incoming webhook was disabled",
    "channel_is_archived": "the webhook's channel is archived",
    "no_route": "no Slack channel is routed for this severity in the spec's alerts.routes",
}


class AlertError(Exception):
    """An alerting problem worded for the user (never carrying a token)."""


class AlertConfigError(AlertError):
    """Slack credentials or routing are configured wrongly; names the connection/variable."""


class SilenceError(AlertError, ValueError):
    """A silence request is invalid; names the field and the reason."""


# --------------------------------------------------------------------------------------------
# Secrets: everything that leaves this module passes through a masker
# --------------------------------------------------------------------------------------------


class _Masker(logging.Filter):
    """Replaces known secrets with *** in strings and in log records of our loggers."""

    def __init__(self) -> None:
        super().__init__()
        self._secrets: set[str] = set()

    def add(self, *secrets: str | None) -> None:
        for s in secrets:
            if s and len(s) >= 4:
                self._secrets.add(s)

    def __call__(self, text: Any) -> str:
        out = str(text)
        for s in sorted(self._secrets, key=len, reverse=True):
            out = out.replace(s, "***")
        return out

    def filter(self, record: logging.LogRecord) -> bool:
        if self._secrets:
            record.msg = self(record.getMessage())
            record.args = None
        return True

    def install(self) -> None:
        for logger in (log, _sdk_log):
            if self not in logger.filters:
                logger.addFilter(self)


_mask = _Masker()
_mask.install()


def _webhook_secrets(url: str) -> list[str]:
    """The whole URL, its path, and its last segment: each alone is enough to post."""
    parsed = urlparse(url)
    path = parsed.path.strip("/")
    last = path.rsplit("/", 1)[-1] if path else ""
    return [url, path, parsed.path, last if len(last) >= 8 else ""]


@dataclass(frozen=True)
class SlackCredentials:
    """How to reach Slack. repr() never shows the token or the webhook URL."""

    kind: Literal["web", "webhook"]
    token: str | None = field(default=None, repr=False)
    webhook_url: str | None = field(default=None, repr=False)
    base_url: str | None = None
    timeout: float | None = None
    source: str = ""  # "connection slack_alerts", "environment WATCHKEEPER_SLACK_TOKEN"

    def __post_init__(self) -> None:
        _mask.add(self.token)
        if self.webhook_url:
            _mask.add(*_webhook_secrets(self.webhook_url))

    @property
    def via(self) -> str:
        return self.kind


def credentials_from_connection(
    conn_type: str | None,
    password: str | None,
    *,
    host: str | None = None,
    schema: str | None = None,
    extra: Mapping[str, Any] | None = None,
    conn_id: str = "",
) -> SlackCredentials:
    """Credentials from the fields of an Airflow connection of the Slack provider's types,
    following the provider's own rules: `slack` (password = bot token; extra `base_url`,
    `timeout`) or `slackwebhook` (password = webhook token or full URL; host/schema build the
    URL; extra `timeout`). The Airflow edge passes `BaseHook.get_connection(id)`'s fields."""
    extra = dict(extra or {})
    where = f"Airflow connection {conn_id!r}" if conn_id else "the Slack connection"

    def opt(name: str) -> Any:
        # The provider accepts both plain and prefixed extra keys.
        return extra.get(name) or extra.get(f"extra__{conn_type}__{name}")

    timeout = opt("timeout")
    try:
        timeout = float(timeout) if timeout not in (None, "") else None
    except (TypeError, ValueError):
        raise AlertConfigError(f"{where}: extra 'timeout' must be a number of seconds") from None
    secret = (password or "").strip()
    if not secret:
        raise AlertConfigError(f"{where} (type {conn_type!r}) has no password: put the bot token "
                               "(type slack) or the webhook token/URL (type slackwebhook) there")
    if conn_type == "slack":
        return SlackCredentials(kind="web", token=secret, base_url=opt("base_url") or None,
                                timeout=timeout, source=f"connection {conn_id}".strip())
    if conn_type == "slackwebhook":
        if "://" in secret:
            url = secret
        else:
            base = host if host and "://" in host else f"{schema or 'https'}://{host or 'hooks.slack.com/services'}"
            url = (base.rstrip("/") + "/" + secret.lstrip("/")).rstrip("/")
        return SlackCredentials(kind="webhook", webhook_url=url, timeout=timeout,
                                source=f"connection {conn_id}".strip())
    raise AlertConfigError(f"{where} has type {conn_type!r}; use the Slack provider's types "
                           "'slack' (bot token) or 'slackwebhook' (incoming webhook)")


def credentials_from_env(env: Mapping[str, str] | None = None) -> SlackCredentials | None:
    """WATCHKEEPER_SLACK_TOKEN (+ WATCHKEEPER_SLACK_BASE_URL), else WATCHKEEPER_SLACK_WEBHOOK_URL."""
    env = os.environ if env is None else env
    token = (env.get(ENV_TOKEN) or "").strip()
    if token:
        return SlackCredentials(kind="web", token=token,
                                base_url=(env.get(ENV_BASE_URL) or "").strip() or None,
                                source=f"environment {ENV_TOKEN}")
    hook = (env.get(ENV_WEBHOOK) or "").strip()
    if hook:
        if "://" not in hook:
            raise AlertConfigError(f"{ENV_WEBHOOK} must be a full https:// URL (value not shown)")
        return SlackCredentials(kind="webhook", webhook_url=hook, source=f"environment {ENV_WEBHOOK}")
    return None


Resolver = Callable[[str], "SlackCredentials | None"]


def resolve_credentials(
    spec: ModelSpec, resolver: Resolver | None = None, env: Mapping[str, str] | None = None
) -> SlackCredentials | None:
    """The spec's Airflow connection (through `resolver`, given by the Airflow edge), else the
    environment, else None (console + outbox file)."""
    conn_id = spec.alerts.slack_conn_id
    if conn_id and resolver is not None:
        try:
            creds = resolver(conn_id)
        except AlertError:
            raise
        except Exception as err:  # noqa: BLE001 - reworded, masked, typed
            raise AlertConfigError(
                f"model {spec.name!r}: cannot read Slack connection {conn_id!r} "
                f"(alerts.slack_conn_id): {_mask(err)}") from None
        if creds is not None:
            return creds
    elif conn_id:
        # Outside Airflow (the CLI) the connection cannot be read: say so rather than fall back
        # silently to the environment or the console.
        log.info("model %s names Slack connection %r, which only the Airflow tasks can read; "
                 "using %s / %s or the console here", spec.name, conn_id, ENV_TOKEN, ENV_WEBHOOK)
    return credentials_from_env(env)


# --------------------------------------------------------------------------------------------
# Silences
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Silence:
    id: str
    model: str
    kind: str | None
    subject: str | None
    until: str  # last silenced day (model timezone), inclusive
    expires_at: datetime
    reason: str
    created_by: str
    created_at: datetime

    def is_active(self, now: datetime) -> bool:
        return self.created_at <= now < self.expires_at

    def matches(self, model: str, kind: str, subject: str) -> bool:
        return (model == self.model and (self.kind is None or self.kind == kind)
                and (self.subject is None or self.subject == subject))

    def describe(self) -> str:
        what = self.kind or "all alerts"
        if self.subject:
            what += f" ({self.subject})"
        return f"silenced {what} until {self.until} by {self.created_by}: {self.reason}"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["expires_at"] = self.expires_at.isoformat()
        d["created_at"] = self.created_at.isoformat()
        return d


def _now() -> datetime:
    return datetime.now(UTC)


def add_silence(
    store: Any,
    spec: ModelSpec,
    *,
    until: str | date,
    reason: str,
    kind: str | None = None,
    subject: str | None = None,
    by: str | None = None,
    now: datetime | None = None,
) -> Silence:
    """Silence the model's alerts (of one kind/subject, or all) through the day `until`
    (inclusive, model timezone). Stored as an audited event; expires by itself."""
    now = now or _now()
    if not (reason or "").strip():
        raise SilenceError("silence refused: --reason is required (say why, for the audit trail)")
    if kind is not None and kind not in ALERT_KINDS:
        raise SilenceError(f"silence refused: --kind {kind!r} is not an alert kind; use one of "
                           f"{', '.join(ALERT_KINDS)}")
    try:
        until_day = until if isinstance(until, date) else date.fromisoformat(str(until))
    except ValueError:
        raise SilenceError(f"silence refused: --until {until!r} is not a day YYYY-MM-DD") from None
    today = now.astimezone(spec.tz).date()
    if until_day < today:
        raise SilenceError(f"silence refused: --until {until_day} is before today ({today}) in "
                           f"the model's timezone {spec.timezone}")
    end = datetime(until_day.year, until_day.month, until_day.day, tzinfo=spec.tz) + timedelta(days=1)
    sid = uuid.uuid4().hex
    who = by or _who()
    payload = {"id": sid, "kind": kind, "subject": subject, "until": until_day.isoformat(),
               "expires_at": end.astimezone(UTC).isoformat(), "reason": reason.strip()}
    event = store.append_event(spec.name, SILENCE, today.isoformat(), payload, subject=sid,
                               created_by=who, created_at=now)
    return _silence_from_event(event)


def _who() -> str:
    import getpass

    try:
        return os.environ.get("WATCHKEEPER_USER") or getpass.getuser()
    except Exception:  # noqa: BLE001 - no passwd entry in some containers
        return "unknown"


def _silence_from_event(e: Any) -> Silence:
    p = e.payload
    return Silence(id=e.subject, model=e.model, kind=p.get("kind"), subject=p.get("subject"),
                   until=p["until"], expires_at=datetime.fromisoformat(p["expires_at"]),
                   reason=p.get("reason", ""), created_by=e.created_by or "unknown",
                   created_at=e.created_at)


def silences(store: Any, model: str, *, active_at: datetime | None = None) -> list[Silence]:
    """The model's silences (only those active at `active_at` if given), oldest first.
    A malformed stored silence is reported, not skipped silently."""
    out = []
    for e in store.events(model, kinds=SILENCE):
        try:
            s = _silence_from_event(e)
        except (KeyError, TypeError, ValueError) as err:
            log.warning("silence event %s of %s is malformed (%s); it silences nothing",
                        e.subject, model, err)
            continue
        if active_at is None or s.is_active(active_at):
            out.append(s)
    return out


def _incident_of(kind: str, subject: str) -> tuple[str, str]:
    """What a silence matches: a recovery is about the kind and subject it recovers."""
    if kind == "recovery" and ":" in subject:
        k, s = subject.split(":", 1)
        return k, s
    return kind, subject


def _silenced_by(active: Sequence[Silence], model: str, kind: str, subject: str) -> Silence | None:
    k, s = _incident_of(kind, subject)
    return next((x for x in active if x.matches(model, k, s)), None)


def _silence_for(active: Sequence[Silence], model: str, row: Any) -> Silence | None:
    """The silence holding `row` back. A group message is silenced only when a silence matches
    every incident it carries (one unsilenced incident still needs telling)."""
    direct = _silenced_by(active, model, row.kind, row.subject)
    if row.kind != "group" or direct is not None:
        return direct
    members = (row.facts or {}).get("members") or []
    found = [_silenced_by(active, model, m.get("kind", ""), m.get("subject", "")) for m in members]
    return found[0] if found and all(found) else None


# --------------------------------------------------------------------------------------------
# Enqueue (inside the finding's transaction)
# --------------------------------------------------------------------------------------------


@dataclass
class EnqueueReport:
    inserted: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    statuses: dict[str, str] = field(default_factory=dict)
    groups: dict[str, list[str]] = field(default_factory=dict)  # group row -> its members

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


ANNOUNCEMENTS = ("onset", "escalation")


def _record(a: Alert, status: str, note: str | None) -> Any:
    from watchkeeper.store import OutboxRecord

    return OutboxRecord(
        model=a.model, ds=a.ds, kind=a.kind, subject=a.subject, dedupe_key=a.dedupe_key,
        thread_key=a.thread_key, severity=a.severity, text=a.text, blocks=a.blocks,
        facts=a.facts, channel=a.channel, closes_thread=a.closes_thread, status=status,
        note=note,
    )


def enqueue(store: Any, alerts: Sequence[Alert], conn: Any = None, *,
            now: datetime | None = None, spec: ModelSpec | None = None,
            reports_url: str | None = None) -> EnqueueReport:
    """Write `alerts` to the outbox (insert-or-ignore on the dedupe key).

    Pass the `conn` of the finding's writes (`with store.transaction() as conn`) so both commit
    together. Backfilled days (older than the alert horizon behind the newest processed day) are
    recorded as 'digest'; rows whose incident needs no message today (facts["message"] ==
    "folded") as 'folded'; alerts under an active silence as 'silenced'.

    With `spec` (the model of the alerts), the announcements (onsets and escalations) this call
    inserts are grouped: two or more of one day and severity become ONE group message, whose
    row is keyed by the set of members (a re-run that inserts no new member inserts no group);
    the members are recorded as 'grouped' with digest_key = the group row. Members and group
    are written in one transaction.
    """
    now = now or _now()
    records = []
    newest: dict[str, str | None] = {}
    active: dict[str, list[Silence]] = {}
    for a in alerts:
        if not isinstance(a, Alert):
            raise AlertInputError(f"enqueue: expected Alert items, got {type(a).__name__}")
        if a.model not in newest:
            newest[a.model] = store.newest_ds(a.model)
            active[a.model] = silences(store, a.model, active_at=now)
        note = None
        if a.backfill or is_backfill(a.ds, newest[a.model], a.horizon_days):
            status = "digest"
            note = f"backfill: more than {a.horizon_days} days behind {newest[a.model]}"
        elif a.facts.get("message") == "folded":
            status = "folded"
            note = (f"recorded in incident {a.thread_key} (open since {a.facts.get('since')}); "
                    "nothing new to tell today")
        elif a.closes_thread and a.facts.get("unannounced"):
            status = "folded"
            note = (f"closes incident {a.thread_key}, which nobody was told about (silenced, or "
                    "only in a backfill digest): recorded, not sent")
        elif (s := _silenced_by(active[a.model], a.model, a.kind, a.subject)) is not None:
            status, note = "silenced", s.describe()
        else:
            status = "pending"
        records.append(_record(a, status, note))
    report = EnqueueReport()
    fresh: list[Alert] = []
    by_key = {a.dedupe_key: a for a in alerts}
    # Without the caller's transaction, one of our own: members and their group commit together.
    with nullcontext(conn) if conn is not None else store.transaction() as c:
        for w in store.enqueue_outbox(records, conn=c):
            (report.inserted if w.inserted else report.duplicates).append(w.row.dedupe_key)
            report.statuses[w.row.dedupe_key] = w.row.status
            a = by_key.get(w.row.dedupe_key)
            if (w.inserted and w.row.status == "pending" and a is not None
                    and a.facts.get("message") in ANNOUNCEMENTS):
                fresh.append(a)
        if spec is not None:
            _group(store, spec, fresh, report, c, reports_url)
    return report


def _group(store: Any, spec: ModelSpec, fresh: Sequence[Alert], report: EnqueueReport,
           conn: Any, reports_url: str | None) -> None:
    """Announcements of this run sharing a day and severity -> one group message (Alertmanager's
    group_by model): one page for a model's day instead of one per condition."""
    buckets: dict[tuple[str, str], list[Alert]] = {}
    for a in fresh:
        if a.model == spec.name:
            buckets.setdefault((a.ds, a.severity), []).append(a)
    for (ds, _severity), members in sorted(buckets.items()):
        if len(members) < 2:
            continue
        group = build_group(spec, ds, members, reports_url=reports_url)
        keys = [m.dedupe_key for m in members]
        moved = store.transition_outbox(keys, "pending", "grouped", digest_key=group.dedupe_key,
                                        note=f"sent as part of group message {group.dedupe_key}",
                                        conn=conn)
        if not moved:
            continue
        if len(moved) != len(keys):  # a concurrent delivery claimed some: group the rest only
            kept = [m for m in members if m.dedupe_key in set(moved)]
            if len(kept) < 2:
                store.transition_outbox(moved, "grouped", "pending", conn=conn)
                continue
            group = build_group(spec, ds, kept, reports_url=reports_url)
            store.transition_outbox(moved, "grouped", "grouped", digest_key=group.dedupe_key,
                                    note=f"sent as part of group message {group.dedupe_key}",
                                    conn=conn)
        [w] = store.enqueue_outbox([_record(group, "pending", None)], conn=conn)
        if w.inserted:
            report.inserted.append(group.dedupe_key)
        report.statuses[group.dedupe_key] = w.row.status
        report.groups[group.dedupe_key] = list(moved)
        for k in moved:
            report.statuses[k] = "grouped"


def open_incidents(store: Any, model: str, as_of: str | None = None) -> dict[str, str]:
    """Thread keys of the model's open incidents (rows up to `as_of`), mapped to the day each
    started. An incident opens with its condition's first row and closes with a closing one."""
    from watchkeeper import incidents

    return incidents.open_since(store.outbox_index(model, until=as_of))


def incident_states(store: Any, model: str, as_of: str | None = None) -> dict[str, Any]:
    """The model's open incidents as of `as_of` (`watchkeeper.incidents.Incident` by thread key):
    what the alert builder needs to decide each condition's message. Reads the light outbox
    index, then the facts of the open incidents' rows only."""
    from watchkeeper import incidents

    start = incidents.open_since(store.outbox_index(model, until=as_of))
    if not start:
        return {}
    rows = [r for r in store.outbox_index(model, since=min(start.values()), until=as_of,
                                          with_facts=True)
            if r.thread_key in start or r.kind == "group"]
    return incidents.open_incidents(rows)


def list_incidents(store: Any, model: str, *, as_of: str | None = None) -> list[Any]:
    """Every incident of the model (open and closed) as of `as_of`, oldest first."""
    from watchkeeper import incidents

    return incidents.derive(store.outbox_index(model, until=as_of, with_facts=True), as_of=as_of)


def raise_alerts(store: Any, spec: ModelSpec, ds: str, findings: DayFindings, conn: Any = None,
                 *, reports_url: str | None = None, now: datetime | None = None) -> EnqueueReport:
    """build_alerts + enqueue for one day: the call a DAG task makes after writing findings."""
    alerts = build_alerts(spec, ds, findings, incident_states(store, spec.name, ds),
                          newest_ds=store.newest_ds(spec.name), reports_url=reports_url)
    return enqueue(store, alerts, conn, now=now, spec=spec, reports_url=reports_url)


def close_incidents(store: Any, spec: ModelSpec, ds: str, *, kind: str, subject: str | None,
                    reason: str, by: str | None = None, now: datetime | None = None,
                    reports_url: str | None = None) -> list[str]:
    """Close the model's open incidents of `kind` (and `subject`; None: every subject) as of
    `ds` with a closing message in each one's thread (kind recovery, closes_thread), saying who
    closed it and why. Returns the dedupe keys enqueued: [] when nothing of that kind is open
    (or its closing row for `ds` exists already). A later occurrence opens a new incident."""
    if not (reason or "").strip():
        raise AlertError("closing an incident needs a reason (it is posted in the incident's "
                         "thread and kept for the audit trail)")
    try:
        date.fromisoformat(ds)
    except (TypeError, ValueError):
        raise AlertError(f"close_incidents: ds {ds!r} is not a day YYYY-MM-DD") from None
    if kind not in INCIDENT_KINDS:
        raise AlertError(f"close_incidents: {kind!r} is not a kind of incident; use one of "
                         f"{', '.join(INCIDENT_KINDS)}")
    who = by or _who()
    targets = [st for _key, st in sorted(incident_states(store, spec.name, ds).items())
               if st.kind == kind and (subject is None or st.subject == subject)]
    closing = [closing_alert(spec, ds, st, reason=reason.strip(), by=who, reports_url=reports_url)
               for st in targets]
    if not closing:
        return []
    return enqueue(store, closing, now=now).inserted


# --------------------------------------------------------------------------------------------
# Delivery
# --------------------------------------------------------------------------------------------


@dataclass
class DeliveryReport:
    model: str
    via: str  # web | webhook | file
    sent: list[str] = field(default_factory=list)
    failed: list[dict[str, str]] = field(default_factory=list)  # permanent: stays for resend
    retry_later: list[dict[str, str]] = field(default_factory=list)  # transient: next delivery
    silenced: list[str] = field(default_factory=list)
    digested: list[str] = field(default_factory=list)
    digest: str | None = None
    released: list[str] = field(default_factory=list)  # stale claims put back
    posts: int = 0
    durations_ms: list[float] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        parts = [f"{len(self.sent)} sent via {self.via}"]
        if self.failed:
            parts.append(f"{len(self.failed)} failed (kept for resend)")
        if self.retry_later:
            parts.append(f"{len(self.retry_later)} to retry")
        if self.silenced:
            parts.append(f"{len(self.silenced)} silenced")
        if self.digested:
            parts.append(f"{len(self.digested)} rolled into digest {self.digest}")
        return f"{self.model}: " + ", ".join(parts)


@dataclass
class _Outcome:
    ok: bool
    permanent: bool = False
    error: str = ""
    code: str = ""
    retry_after: float | None = None
    ts: str | None = None
    channel: str | None = None


def outbox_path() -> Path:
    return paths.home() / "alerts" / "outbox.jsonl"


def _client_kwargs(timeout: float) -> dict[str, Any]:
    # retry_handlers=[]: retries are ours (bounded, recorded per row, Retry-After honoured).
    return {"timeout": timeout, "retry_handlers": [], "logger": _sdk_log}


def default_client_factory(creds: SlackCredentials, timeout: float = 10.0) -> Any:
    """The real slack_sdk client for `creds`: WebClient (base_url honoured) or WebhookClient."""
    if creds.kind == "web":
        from slack_sdk import WebClient

        base = creds.base_url or WebClient.BASE_URL
        # The SDK joins base_url and the method name: without a trailing slash the last path
        # segment of a custom base_url would be replaced.
        return WebClient(token=creds.token, base_url=base.rstrip("/") + "/",
                         **_client_kwargs(creds.timeout or timeout))
    from slack_sdk.webhook import WebhookClient

    return WebhookClient(url=creds.webhook_url, **_client_kwargs(creds.timeout or timeout))


def _classify_api_error(err: Any) -> _Outcome:
    resp = getattr(err, "response", None)
    status = getattr(resp, "status_code", None) or 0
    data = getattr(resp, "data", None)
    code = data.get("error", "") if isinstance(data, dict) else ""
    headers = getattr(resp, "headers", None) or {}
    if status == 429 or code in ("ratelimited", "rate_limited"):
        return _Outcome(False, code="429", error="rate limited (HTTP 429)",
                        retry_after=_retry_after(headers))
    if status >= 500 or code in TRANSIENT_ERRORS:
        # A 5xx body is usually an HTML page (the SDK wraps it as the "error"): not shown.
        shown = f", {code}" if code in TRANSIENT_ERRORS else ""
        return _Outcome(False, code=str(status or code),
                        error=f"Slack server error (HTTP {status}{shown})")
    code = code or f"http_{status}"
    meaning = _MEANING.get(code)
    return _Outcome(False, permanent=True, code=code,
                    error=f"{code}: {meaning}" if meaning else f"{code} (HTTP {status})")


def _retry_after(headers: Mapping[str, Any]) -> float:
    for k, v in headers.items():
        if k.lower() == "retry-after":
            v = v[0] if isinstance(v, (list, tuple)) else v
            try:
                return max(0.0, float(v))
            except (TypeError, ValueError):
                break
    return 1.0


def _classify_exception(err: BaseException) -> _Outcome:
    reason = getattr(err, "reason", err)
    if isinstance(err, (TimeoutError, socket.timeout)) or isinstance(reason, (TimeoutError, socket.timeout)):
        return _Outcome(False, code="timeout", error="timed out waiting for Slack")
    if isinstance(err, (urllib.error.URLError, ConnectionError, OSError)):
        return _Outcome(False, code="connection",
                        error=f"cannot reach Slack: {_mask(type(err).__name__)}: {_mask(reason)}")
    return _Outcome(False, permanent=True, code=type(err).__name__,
                    error=f"{type(err).__name__}: {_mask(err)}")


def _post_web(client: Any, channel: str, row: Any, thread: tuple[str, str, bool] | None) -> _Outcome:
    from slack_sdk.errors import SlackApiError

    kwargs: dict[str, Any] = {"channel": channel, "text": row.text, "blocks": row.blocks,
                              "unfurl_links": False, "unfurl_media": False}
    if thread is not None:
        kwargs["thread_ts"] = thread[1]
        if thread[2]:
            kwargs["reply_broadcast"] = True  # an escalation must be seen outside the thread
    try:
        resp = client.chat_postMessage(**kwargs)
    except SlackApiError as err:
        return _classify_api_error(err)
    except Exception as err:  # noqa: BLE001 - classified: transient network or permanent
        return _classify_exception(err)
    return _Outcome(True, ts=resp.get("ts"), channel=resp.get("channel") or channel)


def _post_webhook(client: Any, row: Any) -> _Outcome:
    try:
        resp = client.send(text=row.text, blocks=row.blocks)
    except Exception as err:  # noqa: BLE001 - classified: transient network or permanent
        return _classify_exception(err)
    status, body = resp.status_code, (resp.body or "").strip()
    if status == 200:
        return _Outcome(True)
    if status == 429:
        return _Outcome(False, code="429", error="rate limited (HTTP 429)",
                        retry_after=_retry_after(resp.headers or {}))
    if status >= 500:
        return _Outcome(False, code=str(status), error=f"Slack server error (HTTP {status})")
    code = body if body and len(body) < 60 and " " not in body else f"http_{status}"
    meaning = _MEANING.get(code)
    return _Outcome(False, permanent=True, code=code,
                    error=f"{code}: {meaning}" if meaning else f"{code} (HTTP {status})")


_RANK = {s: i for i, s in enumerate(SEVERITIES)}


def _thread_target(rows: Sequence[Any], row: Any, groups: Mapping[str, Any] | None = None
                   ) -> tuple[str | None, tuple[str, str, bool] | None, str]:
    """For `row`, from the rows of its thread (delivery order) and the group rows carrying some
    of them: the channel and thread_ts of the incident's announcement as sent (its own message,
    or the group message that carried it; None: post top level), and the state of the incident
    ('announced', 'silenced' when nothing of it was sent but some of it was silenced, 'new')."""
    from watchkeeper.incidents import message_of

    groups = groups or {}
    segment: list[Any] = []
    for r in rows:
        if r.dedupe_key == row.dedupe_key:
            break
        segment = [] if r.closes_thread else [*segment, r]
    # What went out for each row: itself, or the group message that carried it.
    carried = [(r, groups.get(r.digest_key or "") if r.status == "grouped" else r) for r in segment]
    carried = [(r, c) for r, c in carried if c is not None]
    root = next((c for r, c in carried
                 if c.delivered_via == "web" and c.slack_ts and c.status == "sent"
                 and (c is not r or message_of(r) in ("onset", "escalation"))), None)
    if root is not None:
        facts = getattr(row, "facts", None) or {}
        if "message" in facts:
            escalates = facts["message"] == "escalation"
        else:  # a row from before incidents: an escalation is a severity above the thread's
            escalates = _RANK.get(row.severity, 0) > max(_RANK.get(r.severity, 0) for r in segment)
        return root.slack_channel, (root.slack_channel, root.slack_ts, escalates), "announced"
    if any(c.status == "sent" for _r, c in carried):
        return None, None, "announced"
    if any(c.status == "silenced" for _r, c in carried):
        return None, None, "silenced"
    return None, None, "new"


def deliver(
    store: Any,
    spec: ModelSpec,
    *,
    client_factory: Callable[[SlackCredentials], Any] | None = None,
    resolver: Resolver | None = None,
    env: Mapping[str, str] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    now: Callable[[], datetime] = _now,
    max_attempts: int = 5,
    backoff_base: float = 1.0,
    backoff_cap: float = 30.0,
    max_retry_after: float = 120.0,
    timeout: float = 10.0,
    claim_timeout: timedelta = timedelta(minutes=15),
    resend_failed: bool = False,
    echo: Callable[[str], None] | None = print,
) -> DeliveryReport:
    """Send the model's pending outbox rows; see the module docstring for the guarantees.

    Every wait goes through `sleep` and every clock read through `now`, so tests run the whole
    retry schedule in milliseconds. Raises AlertConfigError (masked) when the configured
    connection cannot be read; Slack errors never raise, they are recorded per row.
    """
    creds = resolve_credentials(spec, resolver, env)
    model = spec.name
    report = DeliveryReport(model=model, via=creds.kind if creds else "file")
    t0 = now()
    if resend_failed:
        requeue_failed(store, model)
    report.released = store.transition_outbox(
        [r.dedupe_key for r in store.outbox(model, statuses="sending")], "sending", "pending",
        claimed_before=t0 - claim_timeout,
        note="a delivery was interrupted after claiming this message; it is sent again and may "
             "have reached Slack once already")
    active = silences(store, model, active_at=t0)
    for row in store.outbox(model, statuses="pending"):
        if (s := _silence_for(active, model, row)) is not None:
            if store.transition_outbox(row.dedupe_key, "pending", "silenced", note=s.describe()):
                report.silenced.append(row.dedupe_key)
    _roll_up_digest(store, spec, report, active)

    pending = store.outbox(model, statuses="pending")
    if creds is None:
        _deliver_to_file(store, pending, report, t0, echo)
        _log_report(report)
        return report
    client = (client_factory or (lambda c: default_client_factory(c, timeout)))(creds)
    stop: str | None = None
    for row in pending:
        if stop is not None:
            report.retry_later.append({"dedupe_key": row.dedupe_key, "reason": stop})
            continue
        stop = _deliver_row(store, spec, client, creds, row, report, sleep=sleep, now=now,
                            max_attempts=max_attempts, backoff_base=backoff_base,
                            backoff_cap=backoff_cap, max_retry_after=max_retry_after)
    _log_report(report)
    return report


def _log_report(report: DeliveryReport) -> None:
    log.info("%s", report.summary())
    for f in report.failed:
        log.warning("alert %s not delivered: %s (kept in the outbox; `watchkeeper alerts "
                    "resend` after fixing)", f["dedupe_key"], f["reason"])


def _deliver_row(store: Any, spec: ModelSpec, client: Any, creds: SlackCredentials, row: Any,
                 report: DeliveryReport, *, sleep: Callable[[float], None],
                 now: Callable[[], datetime], max_attempts: int, backoff_base: float,
                 backoff_cap: float, max_retry_after: float) -> str | None:
    """Claim, post with retries, record. Returns a reason to stop this delivery, or None."""
    key = row.dedupe_key
    started = time.perf_counter()
    if not store.transition_outbox(key, "pending", "sending", claimed_at=now()):
        return None  # another deliverer took it
    thread_rows = store.outbox_index(spec.name, thread_key=row.thread_key, with_facts=True)
    carried = [r.digest_key for r in thread_rows if r.status == "grouped" and r.digest_key]
    groups = {g.dedupe_key: g for g in store.outbox(spec.name, keys=carried)} if carried else {}
    root_channel, thread, state = _thread_target(thread_rows, row, groups)
    if row.closes_thread and state == "silenced":
        store.transition_outbox(key, "sending", "silenced",
                                note="the incident it closes was silenced and never announced")
        report.silenced.append(key)
        return None
    channel = root_channel or row.channel
    transient: list[str] = []  # what each failed attempt met, kept on the row for the record
    if creds.kind == "web" and not channel:
        outcome = _Outcome(False, permanent=True, code="no_route",
                           error=f"no_route: {_MEANING['no_route']} ({row.severity})")
        attempts = 0
    else:
        attempts, outcome = 0, _Outcome(False)
        for attempt in range(1, max_attempts + 1):
            attempts = attempt
            report.posts += 1
            outcome = (_post_web(client, channel, row, thread) if creds.kind == "web"
                       else _post_webhook(client, row))
            if outcome.ok or outcome.permanent:
                break
            transient.append(outcome.error)
            if attempt == max_attempts:
                break
            if outcome.retry_after is not None:
                if outcome.retry_after > max_retry_after:
                    break
                wait = outcome.retry_after
            else:
                wait = min(backoff_cap, backoff_base * 2 ** (attempt - 1))
            log.info("alert %s: %s; retrying in %.1f s (attempt %d of %d)", key,
                     outcome.error, wait, attempt + 1, max_attempts)
            sleep(wait)
    error = _mask(outcome.error) if outcome.error else None
    if outcome.ok:
        store.transition_outbox(key, "sending", "sent", add_attempts=attempts,
                                delivered_via=creds.kind, slack_ts=outcome.ts,
                                slack_channel=outcome.channel, sent_at=now(),
                                last_error=_mask(f"delivered after: {'; '.join(transient)}")
                                if transient else None)
        report.sent.append(key)
        report.durations_ms.append((time.perf_counter() - started) * 1000)
        log.info("alert %s sent via %s%s", key, creds.kind,
                 f" to {outcome.channel}" if outcome.channel else "")
        return None
    if outcome.permanent:
        store.transition_outbox(key, "sending", "failed", add_attempts=attempts, last_error=error)
        report.failed.append({"dedupe_key": key, "reason": error or ""})
        if outcome.code in CREDENTIAL_ERRORS:
            return f"not attempted: Slack refused the credentials ({outcome.code}) from {creds.source}"
        return None
    gave_up = (f"gave up for now after {attempts} attempt{'s' if attempts != 1 else ''}: {error}"
               if attempts else error)
    store.transition_outbox(key, "sending", "pending", add_attempts=attempts, last_error=gave_up)
    report.retry_later.append({"dedupe_key": key, "reason": gave_up or ""})
    if outcome.retry_after is not None and outcome.retry_after > max_retry_after:
        return f"not attempted: Slack asked to wait {outcome.retry_after:.0f} s (rate limited)"
    if outcome.code == "connection":
        # Slack is unreachable (chaos suite): the next rows would each sit through the same
        # backoff, holding the alert task for minutes; they stay pending for the next delivery.
        return f"not attempted: Slack unreachable ({error})"
    return None


def _roll_up_digest(store: Any, spec: ModelSpec, report: DeliveryReport,
                    active: Sequence[Silence]) -> None:
    """All 'digest' rows of the model -> ONE pending digest message, atomically."""
    from watchkeeper.store import OutboxRecord

    with store.transaction() as conn:
        rows = store.outbox(spec.name, statuses="digest", conn=conn)
        if not rows:
            return
        digest = build_digest(spec, rows)
        moved = set(store.transition_outbox([r.dedupe_key for r in rows], "digest", "digested",
                                            digest_key=digest.dedupe_key, conn=conn))
        if not moved:
            return  # a concurrent delivery rolled them up
        if len(moved) != len(rows):
            rows = [r for r in rows if r.dedupe_key in moved]
            digest = build_digest(spec, rows)
            store.transition_outbox(sorted(moved), "digested", "digested",
                                    digest_key=digest.dedupe_key, conn=conn)
        s = _silenced_by(active, spec.name, "digest", digest.subject)
        store.enqueue_outbox([OutboxRecord(
            model=digest.model, ds=digest.ds, kind=digest.kind, subject=digest.subject,
            dedupe_key=digest.dedupe_key, thread_key=digest.thread_key,
            severity=digest.severity, text=digest.text, blocks=digest.blocks,
            facts=digest.facts, channel=digest.channel, closes_thread=False,
            status="silenced" if s else "pending", note=s.describe() if s else None,
        )], conn=conn)
    report.digested = sorted(moved)
    report.digest = digest.dedupe_key


def _file_keys(path: Path) -> set[str]:
    keys: set[str] = set()
    if not path.exists():
        return keys
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                keys.add(json.loads(line)["dedupe_key"])
            except (ValueError, KeyError, TypeError):
                log.warning("%s line %d is not an alert JSON object; ignored for deduplication",
                            path, n)
    return keys


def _deliver_to_file(store: Any, rows: Sequence[Any], report: DeliveryReport, now: datetime,
                     echo: Callable[[str], None] | None) -> None:
    """No Slack configured: console + outbox.jsonl, one line per row moving pending -> sent.

    The line is written inside the transaction that marks the row sent (a failed write rolls
    the mark back), and a key already in the file is never written again (a commit that failed
    after the write cannot cause a duplicate line on the next delivery).
    """
    path = outbox_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    seen = _file_keys(path)
    for row in rows:
        started = time.perf_counter()
        with store.transaction() as conn:
            moved = store.transition_outbox(row.dedupe_key, "pending", "sent", add_attempts=1,
                                            delivered_via="file", sent_at=now, conn=conn)
            if not moved:
                continue
            if row.dedupe_key not in seen:
                line = json.dumps({
                    "model": row.model, "kind": row.kind, "subject": row.subject,
                    "severity": row.severity, "ds": row.ds, "dedupe_key": row.dedupe_key,
                    "thread_key": row.thread_key, "closes_thread": row.closes_thread,
                    "channel": row.channel, "text": row.text, "blocks": row.blocks,
                    "facts": row.facts, "sent_at": now.isoformat(),
                }, ensure_ascii=False, sort_keys=True) + "\n"
                # One write() of the whole line in append mode: concurrent writers never
                # interleave within a line.
                fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
                try:
                    os.write(fd, line.encode("utf-8"))
                    os.fsync(fd)
                finally:
                    os.close(fd)
                seen.add(row.dedupe_key)
        report.sent.append(row.dedupe_key)
        report.durations_ms.append((time.perf_counter() - started) * 1000)
        if echo is not None:
            echo(f"[alert {row.severity} -> {row.channel or '(no channel)'}] {row.text}\n")


# --------------------------------------------------------------------------------------------
# Operations: resend, problems for `watchkeeper status`, listing
# --------------------------------------------------------------------------------------------


def requeue_failed(store: Any, model: str, keys: Iterable[str] | None = None) -> list[str]:
    """Put failed rows (all of the model's, or `keys`) back to pending for the next delivery."""
    failed = [r.dedupe_key for r in store.outbox(model, statuses="failed")]
    if keys is not None:
        wanted = set(keys)
        unknown = sorted(wanted - set(failed))
        if unknown:
            raise AlertError(f"cannot resend {', '.join(unknown)}: not a failed alert of {model!r} "
                             "(see `watchkeeper alerts list MODEL --status failed`)")
        failed = [k for k in failed if k in wanted]
    return store.transition_outbox(failed, "failed", "pending",
                                   note="re-queued for resend after a permanent error")


def delivery_problems(store: Any, model: str) -> list[dict[str, Any]]:
    """Alerts that did not reach Slack, with the reason: permanent failures (kept for resend)
    and pending ones whose last attempt failed. For `watchkeeper status`."""
    out = []
    for r in store.outbox(model, statuses=("failed", "pending", "sending")):
        if r.status == "pending" and not r.last_error:
            continue
        out.append({
            "dedupe_key": r.dedupe_key, "kind": r.kind, "severity": r.severity, "ds": r.ds,
            "channel": r.channel, "status": r.status, "reason": r.last_error or r.note or "",
            "attempts": r.attempts, "since": r.updated_at.isoformat(),
            "permanent": r.status == "failed",
        })
    return out


def list_alerts(store: Any, model: str, *, statuses: Iterable[str] | None = None,
                limit: int | None = None) -> list[dict[str, Any]]:
    """The model's outbox rows, newest first, as plain dicts (no blocks)."""
    rows = store.outbox(model, statuses=list(statuses) if statuses else None)
    rows = list(reversed(rows))[:limit] if limit else list(reversed(rows))
    return [{
        "dedupe_key": r.dedupe_key, "ds": r.ds, "kind": r.kind, "subject": r.subject,
        "severity": r.severity, "status": r.status, "channel": r.slack_channel or r.channel,
        "attempts": r.attempts, "delivered_via": r.delivered_via, "slack_ts": r.slack_ts,
        "thread_key": r.thread_key, "closes_thread": r.closes_thread, "note": r.note,
        "last_error": r.last_error, "digest_key": r.digest_key,
        "message": (r.facts or {}).get("message"),
        "headline": r.text.splitlines()[0] if r.text else "",
    } for r in rows]
