"""The store: everything Watchkeeper learns, per model and day, in SQLite or PostgreSQL.

One `Store` per database URL (`open_store`). Tables are prefixed `wk_` and the Alembic version
table is `watchkeeper_alembic_version`, so the store can live in the same database (or schema) as
Airflow's metadata without either migration history touching the other.

Guarantees the rest of the project builds on:
- Every write is an upsert on the table's natural key. A retried, cleared or backfilled day leaves
  the store as one clean run would; only `updated_at` may differ (`dump()` omits it to prove it).
- A stage's expectation results and a metric family's values are written as a *set*: the new rows
  replace the old set of that key in one transaction, so a re-run with fewer rows leaves no ghosts.
- Values learned later are stored with the day they became known (`known_on`); the `as_known_on`
  reads rebuild any past day as it looked then.
- `ds` is TEXT 'YYYY-MM-DD'; timestamps are timezone-aware UTC on both backends; JSON holds plain
  JSON only (numpy scalars are converted, NaN/inf become null) so both backends store the same.
- Errors are typed: `StoreUnavailable` (cannot reach/open the database), `StoreValueError` (a
  record is malformed: names the record, field and reason), `StoreMigrationError`, `StoreError`.
  Messages never contain the password.

Schema changes: add `migrations/versions/000N_*.py`, update the Table objects below to match
(tests compare the two) and bump `HEAD_REVISION`.
"""

from __future__ import annotations

import contextvars
import hashlib
import json
import math
import numbers
import os
import re
import threading
import uuid
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    Text,
    UniqueConstraint,
    and_,
    create_engine,
    delete,
    event,
    exc,
    false,
    func,
    inspect,
    select,
    text,
    union,
    update,
)
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.types import TypeDecorator

from watchkeeper import paths

__all__ = [
    "HEAD_REVISION",
    "MIGRATIONS_DIR",
    "OUTBOX_STATUSES",
    "PARTITION_STATUSES",
    "VERSION_TABLE",
    "Event",
    "EventWrite",
    "ExpectationRecord",
    "MetricRecord",
    "OutboxIndexRow",
    "OutboxRecord",
    "OutboxWrite",
    "PartitionRecord",
    "RunRecord",
    "SliRecord",
    "StageRecord",
    "Store",
    "StoreError",
    "StoreMigrationError",
    "StoreUnavailable",
    "StoreValueError",
    "StoredExpectation",
    "StoredMetric",
    "StoredOutbox",
    "StoredPartition",
    "StoredRun",
    "StoredSli",
    "StoredStage",
    "close_all_stores",
    "mask_url",
    "metadata",
    "open_store",
    "resolve_url",
]

# The newest migration in migrations/versions. Kept as a constant so that opening an up-to-date
# store is one query and never imports Alembic (the `watchkeeper gate` CLI must start fast); a
# test checks it against Alembic's own view of the scripts.
HEAD_REVISION = "0003"
VERSION_TABLE = "watchkeeper_alembic_version"
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
PARTITION_STATUSES = ("ok", "late", "missing", "unreadable", "empty")
# Life of an alert in wk_outbox (see OutboxRecord): pending -> sending -> sent | failed | pending;
# silenced and digest are decided when enqueued (or, for silences, before sending); digest rows
# become digested once rolled up into one digest message. folded: the day's row of a condition
# whose open incident needs no message today (recorded, never sent). grouped: an announcement
# carried by a group message of the same run (digest_key names the group row).
OUTBOX_STATUSES = ("pending", "sending", "sent", "failed", "silenced", "digest", "digested",
                   "folded", "grouped")
ALERT_SEVERITIES = ("info", "ticket", "page")

# Key for pg_advisory_xact_lock around migrations: first use by several processes at once (DAG
# tasks starting together) must not race on CREATE TABLE. Any fixed 64-bit value unlikely to be
# used by Airflow (whose migration locks are small integers) will do.
_MIGRATION_LOCK_KEY = 0x5741_5443_484B_0001  # "WATCHK" + 1


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------


class StoreError(Exception):
    """Any failure of the store that is not the caller's malformed input."""


class StoreUnavailable(StoreError):
    """The database cannot be reached or opened (server down, wrong host, locked file...)."""

    def __init__(self, url: str, reason: str):
        self.url = url
        self.reason = reason
        super().__init__(f"watchkeeper store {url} is unavailable: {reason}")


class StoreMigrationError(StoreError):
    """The schema could not be brought to HEAD_REVISION."""


class StoreValueError(StoreError, ValueError):
    """A record handed to the store is malformed; the message names record, field and reason."""


# --------------------------------------------------------------------------------------------
# Value normalisation: records are normalised when built, so what is read back equals what was
# written, on both backends, and bad input fails at its source with a precise message.
# --------------------------------------------------------------------------------------------

_DS_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _short(value: Any) -> str:
    text_ = repr(value)
    return text_ if len(text_) <= 80 else text_[:77] + "..."


def _bad(where: str, expected: str, value: Any) -> StoreValueError:
    return StoreValueError(
        f"{where}: expected {expected}, got {_short(value)} ({type(value).__name__})"
    )


def check_ds(value: Any, where: str = "ds") -> str:
    """Return `value` as 'YYYY-MM-DD' (accepts that string or a `date`, never a `datetime`)."""
    if isinstance(value, datetime):
        # A datetime silently truncated to its date is how off-by-one-day bugs start.
        raise _bad(where, "a 'YYYY-MM-DD' string or a date (not a datetime)", value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, str) and _DS_RE.match(value):
        try:
            date.fromisoformat(value)
        except ValueError:
            raise _bad(where, "a real calendar date 'YYYY-MM-DD'", value) from None
        return value
    raise _bad(where, "a 'YYYY-MM-DD' string", value)


def _as_bool(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    cls = type(value)
    if cls.__module__ == "numpy" and cls.__name__ in ("bool", "bool_"):  # numpy.bool_ (1.x/2.x)
        return bool(value)
    return None


def json_safe(value: Any, where: str = "value") -> Any:
    """Plain-JSON copy of `value`: numpy scalars/arrays -> Python, NaN/inf -> None, tuples and
    sets -> lists, dates -> ISO strings, Decimal -> float, non-string keys -> str."""
    if value is None or isinstance(value, str):
        return value
    as_bool = _as_bool(value)
    if as_bool is not None:
        return as_bool
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, (numbers.Real, Decimal)):
        f = float(value)
        # JSON has no NaN/inf (PostgreSQL rejects them); "not computable" is stored as null.
        return f if math.isfinite(f) else None
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise _bad(where, "a timezone-aware datetime", value)
        return value.astimezone(UTC).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            if isinstance(k, bool) or not isinstance(k, (str, numbers.Number)):
                raise _bad(f"{where} key", "a string (or number) key", k)
            out[str(k)] = json_safe(v, f"{where}[{k!r}]")
        return out
    if isinstance(value, (list, tuple)):
        return [json_safe(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, (set, frozenset)):
        items = [json_safe(v, f"{where}{{}}") for v in value]
        return sorted(items, key=lambda v: json.dumps(v, sort_keys=True))
    if hasattr(value, "tolist"):  # numpy arrays, pandas Series
        return json_safe(value.tolist(), where)
    if hasattr(value, "item"):  # other numpy scalars
        return json_safe(value.item(), where)
    raise _bad(where, "a JSON-serialisable value", value)


def _coerce(kind: str, value: Any, where: str) -> Any:
    optional = kind.startswith("opt_")
    base = kind[4:] if optional else kind
    if value is None:
        if optional:
            return None
        if base == "json_obj":
            return {}
        raise _bad(where, f"a value (field is required, kind {base})", value)
    if base == "key":
        if isinstance(value, str) and value.strip():
            return value
        raise _bad(where, "a non-empty string", value)
    if base == "text":
        if isinstance(value, str):
            return value
        raise _bad(where, "a string", value)
    if base == "ds":
        return check_ds(value, where)
    if base == "status":
        if value in PARTITION_STATUSES:
            return value
        raise _bad(where, f"one of {', '.join(PARTITION_STATUSES)}", value)
    if base == "bool":
        as_bool = _as_bool(value)
        if as_bool is None:
            raise _bad(where, "a bool", value)
        return as_bool
    if base == "int":
        if _as_bool(value) is None:
            if isinstance(value, numbers.Integral):
                return int(value)
            if isinstance(value, numbers.Real) and float(value).is_integer():
                return int(value)  # 12.0 from a pandas sum is lossless
        raise _bad(where, "an integer", value)
    if base == "float":
        if _as_bool(value) is None and isinstance(value, (numbers.Real, Decimal)):
            f = float(value)
            if math.isnan(f):
                # SQLite stores NaN as NULL, PostgreSQL as NaN: normalise so both read alike.
                if optional:
                    return None
                raise _bad(where, "a number (NaN is not allowed here)", value)
            return f
        raise _bad(where, "a number", value)
    if base == "dt":
        if isinstance(value, datetime):
            if value.tzinfo is None or value.utcoffset() is None:
                raise _bad(where, "a timezone-aware datetime (naive times are ambiguous)", value)
            utc = value.astimezone(UTC)
            # A plain datetime (not pendulum/pandas) so records compare equal after a round trip.
            return datetime(
                utc.year, utc.month, utc.day, utc.hour, utc.minute, utc.second,
                utc.microsecond, tzinfo=UTC,
            )
        raise _bad(where, "a timezone-aware datetime", value)
    if base == "json":
        return json_safe(value, where)
    if base == "json_obj":
        if not isinstance(value, Mapping):
            raise _bad(where, "a mapping (JSON object)", value)
        return json_safe(value, where)
    raise AssertionError(f"unknown field kind {kind}")  # programming error in this module


class _Record:
    """Validates and normalises the fields listed in `_kinds` after dataclass __init__."""

    _kinds: ClassVar[dict[str, str]] = {}
    _label_fields: ClassVar[tuple[str, ...]] = ()

    def _label(self) -> str:
        parts = ", ".join(
            f"{name}={getattr(self, name, None)!r}" for name in self._label_fields
        )
        return f"{type(self).__name__}({parts})"

    def __post_init__(self) -> None:
        for name, kind in self._kinds.items():
            value = _coerce(kind, getattr(self, name), f"{self._label()}.{name}")
            object.__setattr__(self, name, value)


# --------------------------------------------------------------------------------------------
# Records. Write records carry what a stage produces; Stored* add the keys the store knows
# (model, ds, known_on, ...) and updated_at. All keyword-only: these records have many fields of
# the same type, and positional construction would invite silent swaps.
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class PartitionRecord(_Record):
    """What happened to one day's input partition (freshness and readability)."""

    model: str
    ds: str
    source: str
    status: str  # one of PARTITION_STATUSES
    message: str = ""
    rows: int | None = None
    landed_at: datetime | None = None
    deadline: datetime | None = None
    lateness_hours: float | None = None
    # The completeness judgment (watchkeeper.completeness.PartialDay.to_dict()); None when the
    # day has no rows to judge.
    partial: dict[str, Any] | None = None

    _kinds: ClassVar[dict[str, str]] = {
        "model": "key", "ds": "ds", "source": "text", "status": "status", "message": "text",
        "rows": "opt_int", "landed_at": "opt_dt", "deadline": "opt_dt",
        "lateness_hours": "opt_float", "partial": "opt_json_obj",
    }
    _label_fields: ClassVar[tuple[str, ...]] = ("model", "ds")


@dataclass(frozen=True, kw_only=True)
class StoredPartition(PartitionRecord):
    updated_at: datetime

    _kinds: ClassVar[dict[str, str]] = {**PartitionRecord._kinds, "updated_at": "dt"}


@dataclass(frozen=True, kw_only=True)
class StageRecord(_Record):
    """Summary of one validation stage (e.g. 'ingestion', 'features') of one day."""

    stage: str
    success: bool
    evaluated: int
    passed: int
    row_count: int | None = None
    error: str | None = None
    report_path: str | None = None

    _kinds: ClassVar[dict[str, str]] = {
        "stage": "key", "success": "bool", "evaluated": "int", "passed": "int",
        "row_count": "opt_int", "error": "opt_text", "report_path": "opt_text",
    }
    _label_fields: ClassVar[tuple[str, ...]] = ("stage",)


@dataclass(frozen=True, kw_only=True)
class StoredStage(StageRecord):
    model: str
    ds: str
    updated_at: datetime

    _kinds: ClassVar[dict[str, str]] = {
        **StageRecord._kinds, "model": "key", "ds": "ds", "updated_at": "dt",
    }
    _label_fields: ClassVar[tuple[str, ...]] = ("model", "ds", "stage")


@dataclass(frozen=True, kw_only=True)
class ExpectationRecord(_Record):
    """One expectation's outcome within a stage."""

    expectation_id: str
    expectation_type: str
    success: bool
    column: str | None = None
    observed: Any = None
    unexpected_count: int | None = None
    unexpected_share: float | None = None
    element_count: int | None = None
    details: dict[str, Any] = field(default_factory=dict)

    _kinds: ClassVar[dict[str, str]] = {
        "expectation_id": "key", "expectation_type": "key", "success": "bool",
        "column": "opt_text", "observed": "opt_json", "unexpected_count": "opt_int",
        "unexpected_share": "opt_float", "element_count": "opt_int", "details": "json_obj",
    }
    _label_fields: ClassVar[tuple[str, ...]] = ("expectation_id",)


@dataclass(frozen=True, kw_only=True)
class StoredExpectation(ExpectationRecord):
    model: str
    ds: str
    stage: str
    updated_at: datetime

    _kinds: ClassVar[dict[str, str]] = {
        **ExpectationRecord._kinds, "model": "key", "ds": "ds", "stage": "key",
        "updated_at": "dt",
    }
    _label_fields: ClassVar[tuple[str, ...]] = ("model", "ds", "stage", "expectation_id")


@dataclass(frozen=True, kw_only=True)
class SliRecord(_Record):
    """One SLI value for prediction/data day `ds` (which may be earlier than the day it is known).

    Ratio SLIs fill good_events/total_events; timeslice SLIs fill value/good. `provisional` marks
    values that may still change (labels not mature); budgets count them in neither good nor total.
    """

    ds: str
    sli: str
    value: float | None = None
    good: bool | None = None
    good_events: float | None = None
    total_events: float | None = None
    provisional: bool = False
    details: dict[str, Any] = field(default_factory=dict)

    _kinds: ClassVar[dict[str, str]] = {
        "ds": "ds", "sli": "key", "value": "opt_float", "good": "opt_bool",
        "good_events": "opt_float", "total_events": "opt_float", "provisional": "bool",
        "details": "json_obj",
    }
    _label_fields: ClassVar[tuple[str, ...]] = ("ds", "sli")


@dataclass(frozen=True, kw_only=True)
class StoredSli(SliRecord):
    model: str
    known_on: str
    updated_at: datetime

    _kinds: ClassVar[dict[str, str]] = {
        **SliRecord._kinds, "model": "key", "known_on": "ds", "updated_at": "dt",
    }
    _label_fields: ClassVar[tuple[str, ...]] = ("model", "ds", "sli", "known_on")


@dataclass(frozen=True, kw_only=True)
class MetricRecord(_Record):
    """One number of a metric family for one subject ('amount', 'amount|country=DE', ...)."""

    subject: str
    value: float | None = None
    payload: dict[str, Any] = field(default_factory=dict)

    _kinds: ClassVar[dict[str, str]] = {
        "subject": "key", "value": "opt_float", "payload": "json_obj",
    }
    _label_fields: ClassVar[tuple[str, ...]] = ("subject",)


@dataclass(frozen=True, kw_only=True)
class StoredMetric(MetricRecord):
    model: str
    ds: str
    family: str
    known_on: str
    updated_at: datetime

    _kinds: ClassVar[dict[str, str]] = {
        **MetricRecord._kinds, "model": "key", "ds": "ds", "family": "key", "known_on": "ds",
        "updated_at": "dt",
    }
    _label_fields: ClassVar[tuple[str, ...]] = ("model", "ds", "family", "subject", "known_on")


@dataclass(frozen=True, kw_only=True)
class Event(_Record):
    """An audited happening: deployment, override, silence, gate decision, alert sent, ..."""

    id: int
    model: str
    ds: str
    kind: str
    subject: str
    payload: dict[str, Any]
    created_at: datetime
    created_by: str | None = None

    _kinds: ClassVar[dict[str, str]] = {
        "id": "int", "model": "key", "ds": "ds", "kind": "key", "subject": "key",
        "payload": "json_obj", "created_at": "dt", "created_by": "opt_text",
    }
    _label_fields: ClassVar[tuple[str, ...]] = ("model", "kind", "subject", "ds")


class EventWrite(NamedTuple):
    """Result of `record_event`: the stored event and whether this call inserted it."""

    event: Event
    inserted: bool


@dataclass(frozen=True, kw_only=True)
class RunRecord(_Record):
    """One task's latest attempt for a model and day (infrastructure health, for triage)."""

    model: str
    ds: str
    dag_id: str
    task_id: str
    state: str
    try_number: int
    started_at: datetime | None = None
    duration_seconds: float | None = None
    error: str | None = None

    _kinds: ClassVar[dict[str, str]] = {
        "model": "key", "ds": "ds", "dag_id": "key", "task_id": "key", "state": "key",
        "try_number": "int", "started_at": "opt_dt", "duration_seconds": "opt_float",
        "error": "opt_text",
    }
    _label_fields: ClassVar[tuple[str, ...]] = ("model", "ds", "dag_id", "task_id")


@dataclass(frozen=True, kw_only=True)
class StoredRun(RunRecord):
    updated_at: datetime

    _kinds: ClassVar[dict[str, str]] = {**RunRecord._kinds, "updated_at": "dt"}


@dataclass(frozen=True, kw_only=True)
class OutboxRecord(_Record):
    """One alert message to deliver, keyed by (model, kind, subject, ds) for deduplication.

    Written in the same transaction as the finding that caused it (`enqueue_outbox(conn=...)`),
    so a finding never exists without its alert, nor an alert without its finding. `thread_key`
    names the ongoing incident the message belongs to (updates thread under its first message;
    `closes_thread` marks the message that ends it). `text` is the plain fallback, `blocks` the
    Block Kit layout, `facts` the key numbers (for `watchkeeper alerts list` and reports).
    """

    model: str
    ds: str
    kind: str
    subject: str
    dedupe_key: str
    thread_key: str
    severity: str  # one of ALERT_SEVERITIES
    text: str
    blocks: list[Any] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)
    channel: str | None = None
    closes_thread: bool = False
    status: str = "pending"  # one of OUTBOX_STATUSES
    note: str | None = None

    _kinds: ClassVar[dict[str, str]] = {
        "model": "key", "ds": "ds", "kind": "key", "subject": "key", "dedupe_key": "key",
        "thread_key": "key", "severity": "key", "text": "text", "blocks": "json",
        "facts": "json_obj", "channel": "opt_text", "closes_thread": "bool", "status": "key",
        "note": "opt_text",
    }
    _label_fields: ClassVar[tuple[str, ...]] = ("model", "kind", "subject", "ds")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.severity not in ALERT_SEVERITIES:
            raise _bad(f"{self._label()}.severity", f"one of {', '.join(ALERT_SEVERITIES)}",
                       self.severity)
        if self.status not in OUTBOX_STATUSES:
            raise _bad(f"{self._label()}.status", f"one of {', '.join(OUTBOX_STATUSES)}",
                       self.status)
        if not isinstance(self.blocks, list):
            raise _bad(f"{self._label()}.blocks", "a list of Block Kit blocks", self.blocks)


@dataclass(frozen=True, kw_only=True)
class StoredOutbox(OutboxRecord):
    """An outbox row with its delivery state: attempts, the last error (secrets masked by the
    sender), how and where it went (`delivered_via`, Slack channel id and message ts)."""

    attempts: int
    last_error: str | None = None
    delivered_via: str | None = None
    slack_channel: str | None = None
    slack_ts: str | None = None
    digest_key: str | None = None
    created_at: datetime
    updated_at: datetime
    claimed_at: datetime | None = None
    sent_at: datetime | None = None

    _kinds: ClassVar[dict[str, str]] = {
        **OutboxRecord._kinds, "attempts": "int", "last_error": "opt_text",
        "delivered_via": "opt_text", "slack_channel": "opt_text", "slack_ts": "opt_text",
        "digest_key": "opt_text", "created_at": "dt", "updated_at": "dt", "claimed_at": "opt_dt",
        "sent_at": "opt_dt",
    }


class OutboxIndexRow(NamedTuple):
    """The light columns of an outbox row (`Store.outbox_index`)."""

    dedupe_key: str
    ds: str
    kind: str
    subject: str
    thread_key: str
    severity: str
    status: str
    closes_thread: bool
    delivered_via: str | None
    slack_channel: str | None
    slack_ts: str | None
    digest_key: str | None = None  # the digest or group row that carries this one
    facts: dict[str, Any] | None = None  # only with outbox_index(with_facts=True)


class OutboxWrite(NamedTuple):
    """Result of `enqueue_outbox` per record: the stored row and whether this call inserted it
    (False: the same (model, kind, subject, ds) was already there; the first write wins)."""

    row: StoredOutbox
    inserted: bool


# --------------------------------------------------------------------------------------------
# Tables. Must match migrations/versions (a test runs Alembic's compare_metadata on both).
# --------------------------------------------------------------------------------------------


class UTCDateTime(TypeDecorator):
    """TIMESTAMP WITH TIME ZONE on PostgreSQL, naive-UTC text on SQLite; aware UTC in Python."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Any) -> Any:
        if value is None:
            return None
        if not isinstance(value, datetime) or value.tzinfo is None:
            raise StoreValueError(f"timestamp {_short(value)} must be a timezone-aware datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Any) -> Any:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


metadata = MetaData()


def _keys(*names: str) -> list[Column]:
    return [Column(name, Text, nullable=False) for name in names]


wk_partition = Table(
    "wk_partition", metadata,
    *_keys("model", "ds"),
    Column("source", Text, nullable=False),
    Column("rows", BigInteger),
    Column("landed_at", UTCDateTime),
    Column("deadline", UTCDateTime),
    Column("lateness_hours", Float),
    Column("status", Text, nullable=False),
    Column("message", Text, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    # none_as_null: "not judged" is SQL NULL on both backends, never the JSON text 'null'.
    Column("partial", JSON(none_as_null=True)),
    PrimaryKeyConstraint("model", "ds", name="pk_wk_partition"),
)

wk_stage_result = Table(
    "wk_stage_result", metadata,
    *_keys("model", "ds", "stage"),
    Column("success", Boolean, nullable=False),
    Column("evaluated", Integer, nullable=False),
    Column("passed", Integer, nullable=False),
    Column("row_count", BigInteger),
    Column("error", Text),
    Column("report_path", Text),
    Column("updated_at", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("model", "ds", "stage", name="pk_wk_stage_result"),
)

wk_expectation_result = Table(
    "wk_expectation_result", metadata,
    *_keys("model", "ds", "stage", "expectation_id"),
    Column("expectation_type", Text, nullable=False),
    Column("column", Text),
    Column("success", Boolean, nullable=False),
    Column("observed", JSON),
    Column("unexpected_count", BigInteger),
    Column("unexpected_share", Float),
    Column("element_count", BigInteger),
    Column("details", JSON, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    PrimaryKeyConstraint(
        "model", "ds", "stage", "expectation_id", name="pk_wk_expectation_result"
    ),
)

wk_sli_value = Table(
    "wk_sli_value", metadata,
    *_keys("model", "ds", "sli", "known_on"),
    Column("value", Float),
    Column("good", Boolean),
    Column("good_events", Float),
    Column("total_events", Float),
    Column("provisional", Boolean, nullable=False, server_default=false()),
    Column("details", JSON, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("model", "ds", "sli", "known_on", name="pk_wk_sli_value"),
)

wk_metric = Table(
    "wk_metric", metadata,
    *_keys("model", "ds", "family", "subject", "known_on"),
    Column("value", Float),
    Column("payload", JSON, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("model", "ds", "family", "subject", "known_on", name="pk_wk_metric"),
    # metrics(model, family) reads one family across days; the PK leads with ds instead.
    Index("ix_wk_metric_model_family_ds", "model", "family", "ds", "known_on"),
)

wk_event = Table(
    "wk_event", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    *_keys("model", "ds", "kind", "subject"),
    Column("payload", JSON, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("created_by", Text),
    UniqueConstraint("model", "kind", "subject", "ds", name="uq_wk_event_key"),
)

wk_run = Table(
    "wk_run", metadata,
    *_keys("model", "ds", "dag_id", "task_id"),
    Column("state", Text, nullable=False),
    Column("try_number", Integer, nullable=False),
    Column("started_at", UTCDateTime),
    Column("duration_seconds", Float),
    Column("error", Text),
    Column("updated_at", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("model", "ds", "dag_id", "task_id", name="pk_wk_run"),
)

wk_outbox = Table(
    "wk_outbox", metadata,
    *_keys("dedupe_key", "model", "ds", "kind", "subject", "thread_key", "severity"),
    Column("channel", Text),
    Column("text", Text, nullable=False),
    Column("blocks", JSON, nullable=False),
    Column("facts", JSON, nullable=False),
    Column("closes_thread", Boolean, nullable=False, server_default=false()),
    Column("status", Text, nullable=False),
    Column("note", Text),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("last_error", Text),
    Column("delivered_via", Text),
    Column("slack_channel", Text),
    Column("slack_ts", Text),
    Column("digest_key", Text),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("claimed_at", UTCDateTime),
    Column("sent_at", UTCDateTime),
    PrimaryKeyConstraint("dedupe_key", name="pk_wk_outbox"),
    UniqueConstraint("model", "kind", "subject", "ds", name="uq_wk_outbox_key"),
    Index("ix_wk_outbox_model_status", "model", "status"),
    Index("ix_wk_outbox_model_thread", "model", "thread_key"),
)

# The outbox is delivery state, not a finding: it stays out of dump() (whose equality proves
# that re-runs change no finding) and out of models().
# dump() order and per-table sort keys (the event's surrogate id is not stable across re-runs:
# PostgreSQL consumes a sequence value even for an ignored duplicate).
_DUMP_TABLES: tuple[tuple[Table, tuple[str, ...]], ...] = (
    (wk_partition, ("model", "ds")),
    (wk_stage_result, ("model", "ds", "stage")),
    (wk_expectation_result, ("model", "ds", "stage", "expectation_id")),
    (wk_sli_value, ("model", "ds", "sli", "known_on")),
    (wk_metric, ("model", "ds", "family", "subject", "known_on")),
    (wk_event, ("model", "kind", "subject", "ds")),
    (wk_run, ("model", "ds", "dag_id", "task_id")),
)
_DUMP_OMIT = {"updated_at", "created_at", "id"}


# --------------------------------------------------------------------------------------------
# URLs and engines
# --------------------------------------------------------------------------------------------


def resolve_url(url: str | None = None) -> str:
    """`url`, else WATCHKEEPER_DB_URL, else SQLite at <WATCHKEEPER_HOME>/watchkeeper.db."""
    if url:
        return url
    env = os.environ.get("WATCHKEEPER_DB_URL", "").strip()
    if env:
        return env
    return f"sqlite:///{paths.home() / 'watchkeeper.db'}"


_URL_PASSWORD_RE = re.compile(r"(://[^:/@?#]*:)([^@/?#]*)(@)")
_QUERY_PASSWORD_RE = re.compile(r"((?:^|[?&])password=)[^&]*", re.IGNORECASE)


def mask_url(url: str | URL) -> str:
    """The URL with any password (userinfo or `?password=`) replaced by ***."""
    if isinstance(url, URL):
        shown = url.render_as_string(hide_password=True)
    else:
        shown = _URL_PASSWORD_RE.sub(r"\1***\3", url)
    return _QUERY_PASSWORD_RE.sub(r"\1***", shown)


def _secrets(url: URL) -> list[str]:
    found = [url.password] if url.password else []
    query_pw = url.query.get("password")
    found += [query_pw] if isinstance(query_pw, str) else list(query_pw or ())
    return [s for s in found if s]


def _reason(err: BaseException, secrets: Iterable[str] = ()) -> str:
    """One-line driver reason, without SQLAlchemy's statement dump and without secrets."""
    orig = getattr(err, "orig", None) or err
    reason = " ".join(str(orig).split()) or type(orig).__name__
    for secret in secrets:
        reason = reason.replace(secret, "***")
    return reason


_SQLITE_UNAVAILABLE = (
    "unable to open database", "database is locked", "disk i/o error", "not a database",
    "readonly database", "database or disk is full", "database disk image is malformed",
)


def _is_unavailable(err: exc.DBAPIError, dialect: str) -> bool:
    if err.connection_invalidated or isinstance(err, exc.InterfaceError):
        return True
    if not isinstance(err, exc.OperationalError):
        return False
    if dialect == "sqlite":
        # sqlite3 also reports SQL mistakes ("no such table") as OperationalError.
        return any(s in str(err.orig).lower() for s in _SQLITE_UNAVAILABLE)
    return True


def _json_dumps(value: Any) -> str:
    # allow_nan=False: a NaN that slipped past json_safe fails loudly instead of being stored
    # as invalid JSON (PostgreSQL would reject it with a less helpful message).
    return json.dumps(value, sort_keys=True, allow_nan=False, ensure_ascii=False)


def _make_engine(url: URL) -> Engine:
    dialect = url.get_backend_name()
    kwargs: dict[str, Any] = {"json_serializer": _json_dumps}
    if dialect == "sqlite":
        # Writers wait for each other instead of failing with "database is locked".
        kwargs["connect_args"] = {"timeout": 30}
    elif dialect == "postgresql":
        # Fail within seconds, not minutes, when the server is unreachable: the gate must
        # answer "inconclusive" promptly. Long-lived processes (API server) need pre-ping.
        if "connect_timeout" not in url.query:
            kwargs["connect_args"] = {"connect_timeout": 10}
        kwargs["pool_pre_ping"] = True
    else:
        raise StoreError(
            f"watchkeeper store {mask_url(url)}: unsupported database {dialect!r}; "
            "use sqlite:///... or postgresql+psycopg://..."
        )
    engine = create_engine(url, **kwargs)
    if dialect == "sqlite":
        _configure_sqlite(engine)
    return engine


def _configure_sqlite(engine: Engine) -> None:
    # pysqlite's own transaction handling skips BEGIN before DDL and cannot BEGIN IMMEDIATE;
    # take over (SQLAlchemy's documented recipe) so migrations are atomic and writers take the
    # write lock up front (a deferred reader upgrading to writer can fail with SQLITE_BUSY
    # without waiting for the busy timeout).
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        try:
            # WAL: readers (the gate, report rendering) never block the DAG's writer.
            cur.execute("PRAGMA journal_mode=WAL")
        finally:
            cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        mode = conn.get_execution_options().get("watchkeeper_sqlite_begin", "DEFERRED")
        conn.exec_driver_sql(f"BEGIN {mode}")


def _lock_key(*parts: str) -> int:
    digest = hashlib.blake2b("\x1f".join(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


# --------------------------------------------------------------------------------------------
# Migrations
# --------------------------------------------------------------------------------------------


def _current_revision(conn: Connection) -> str | None:
    if not inspect(conn).has_table(VERSION_TABLE):
        return None
    revs = sorted(conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars())
    return ",".join(revs) if revs else None


def _alembic_config(conn: Connection) -> Any:
    from alembic.config import Config

    cfg = Config()
    # ConfigParser interpolation: a '%' in the checkout path would otherwise break Alembic.
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    cfg.attributes["connection"] = conn
    cfg.attributes["version_table"] = VERSION_TABLE
    return cfg


def _migrate(engine: Engine) -> None:
    """Bring the schema to HEAD_REVISION, safely when several processes try at once."""
    from alembic import command

    with engine.connect() as conn:
        conn.execution_options(watchkeeper_sqlite_begin="IMMEDIATE")
        with conn.begin():
            if conn.dialect.name == "postgresql":
                # Held to the end of this transaction; PostgreSQL DDL is transactional, so
                # the second process sees either nothing or the complete schema.
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"),
                             {"k": _MIGRATION_LOCK_KEY})
            # Re-check under the lock (BEGIN IMMEDIATE on SQLite): another process may have
            # finished while we waited.
            if _current_revision(conn) == HEAD_REVISION:
                return
            command.upgrade(_alembic_config(conn), "head")


def _ensure_schema(engine: Engine, shown_url: str, secrets: list[str]) -> None:
    dialect = engine.dialect.name
    try:
        with engine.connect() as conn:
            revision = _current_revision(conn)
    except exc.DBAPIError as err:
        if _is_unavailable(err, dialect):
            raise StoreUnavailable(shown_url, _reason(err, secrets)) from err
        raise StoreError(
            f"watchkeeper store {shown_url}: reading {VERSION_TABLE} failed: "
            f"{_reason(err, secrets)}"
        ) from err
    if revision == HEAD_REVISION:
        return
    try:
        _migrate(engine)
    except Exception as err:  # noqa: BLE001 - re-checked below, then re-raised typed
        # Belt and braces for the first-use race: if someone else completed the migration
        # (e.g. our CREATE TABLE lost against theirs), the store is fine to use.
        try:
            with engine.connect() as conn:
                if _current_revision(conn) == HEAD_REVISION:
                    return
        except exc.DBAPIError:
            pass
        if isinstance(err, exc.DBAPIError) and _is_unavailable(err, dialect):
            raise StoreUnavailable(shown_url, _reason(err, secrets)) from err
        raise StoreMigrationError(
            f"watchkeeper store {shown_url}: migrating from revision {revision or 'none'} to "
            f"{HEAD_REVISION} failed: {_reason(err, secrets)} (scripts in {MIGRATIONS_DIR}; "
            f"version table {VERSION_TABLE})"
        ) from err


# --------------------------------------------------------------------------------------------
# The store
# --------------------------------------------------------------------------------------------


def _as_list(value: str | Iterable[str] | None) -> list[str] | None:
    if value is None:
        return None
    return [value] if isinstance(value, str) else list(value)


class Store:
    """Typed access to the wk_* tables of one database. Build it with `open_store`."""

    def __init__(self, url: str, origin: str = "the url argument"):
        try:
            parsed = make_url(url)
        except exc.ArgumentError as err:
            # Not echoed: an unparseable URL cannot be masked reliably and may hold a password.
            raise StoreError(
                f"invalid watchkeeper store URL in {origin} (value not shown, it may contain a "
                f"password): {err}; expected e.g. sqlite:////abs/path/watchkeeper.db or "
                "postgresql+psycopg://user@host:5432/dbname"
            ) from None
        self._url = parsed
        self._secrets = _secrets(parsed)
        self.url: str = mask_url(parsed)  # safe to print, log and put in messages
        try:
            self.engine: Engine = _make_engine(parsed)
        except exc.NoSuchModuleError as err:
            raise StoreError(f"watchkeeper store {self.url}: {err}") from None
        self.dialect: str = self.engine.dialect.name
        try:
            _ensure_schema(self.engine, self.url, self._secrets)
        except BaseException:
            self.engine.dispose()  # a failed open must not leave pooled connections behind
            raise

    def __repr__(self) -> str:
        return f"Store({self.url!r})"

    def close(self) -> None:
        """Release pooled connections and forget this store in open_store's cache."""
        with _CACHE_LOCK:
            for key, store in list(_CACHE.items()):
                if store is self:
                    del _CACHE[key]
        self.engine.dispose()

    # -- connections and error translation -----------------------------------------------

    @contextmanager
    def _errors(self, action: str) -> Iterator[None]:
        try:
            yield
        except StoreError:
            raise
        except exc.DBAPIError as err:
            if _is_unavailable(err, self.dialect):
                raise StoreUnavailable(self.url, _reason(err, self._secrets)) from err
            raise StoreError(
                f"watchkeeper store {self.url}: {action} failed: {_reason(err, self._secrets)}"
            ) from err
        except exc.SQLAlchemyError as err:
            raise StoreError(
                f"watchkeeper store {self.url}: {action} failed: {_reason(err, self._secrets)}"
            ) from err

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """One transaction; pass the connection as `conn=` to several writes to make them atomic.

        Commits when the block exits normally, rolls back on any exception.
        """
        with self._errors("transaction"), self._begin() as conn:
            yield conn

    @contextmanager
    def atomic(self) -> Iterator[Connection]:
        """Every read and write of this store inside the block (in this thread) is one transaction.

        For a step that writes, reads back what it wrote and writes again (the SLIs, then the
        budgets evaluated from them): a task killed or failing half-way leaves all of it or none.
        Commits when the block exits normally, rolls back on any exception; nests.
        """
        pinned = self._pinned()
        if pinned is not None:
            yield pinned
            return
        with self.transaction() as conn:
            token = _ATOMIC.set((self, conn))
            try:
                yield conn
            finally:
                _ATOMIC.reset(token)

    def _pinned(self) -> Connection | None:
        held = _ATOMIC.get()
        return held[1] if held is not None and held[0] is self else None

    @contextmanager
    def _begin(self) -> Iterator[Connection]:
        pinned = self._pinned()
        if pinned is not None:  # inside atomic(): the outer transaction commits
            yield pinned
            return
        with self.engine.connect() as conn:
            conn.execution_options(watchkeeper_sqlite_begin="IMMEDIATE")
            with conn.begin():
                yield conn

    @contextmanager
    def _write(self, conn: Connection | None, action: str) -> Iterator[Connection]:
        # Errors are translated once, here, so the message names the write, not "transaction".
        if conn is not None:
            with self._errors(action):
                yield conn
        else:
            with self._errors(action), self._begin() as own:
                yield own

    @contextmanager
    def _read(self, action: str) -> Iterator[Connection]:
        pinned = self._pinned()
        if pinned is not None:  # inside atomic(): see its own uncommitted writes
            with self._errors(action):
                yield pinned
            return
        with self._errors(action), self.engine.connect() as conn:
            yield conn

    def _upsert(self, conn: Connection, table: Table, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        if self.dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:
            from sqlalchemy.dialects.sqlite import insert
        stmt = insert(table)
        keys = [c.name for c in table.primary_key.columns]
        stmt = stmt.on_conflict_do_update(
            index_elements=keys,
            set_={c.name: stmt.excluded[c.name] for c in table.columns if c.name not in keys},
        )
        conn.execute(stmt, rows)

    def _lock_set(self, conn: Connection, *key: str) -> None:
        # Two writers replacing the same set concurrently (an overlapping retry) must not
        # interleave their upserts and deletes. SQLite writers are already serialised by
        # BEGIN IMMEDIATE; PostgreSQL gets a transaction-scoped advisory lock on the set's key.
        if self.dialect == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _lock_key(*key)})

    # -- writes ---------------------------------------------------------------------------

    def write_partition(self, rec: PartitionRecord, conn: Connection | None = None) -> None:
        """Upsert the partition record of (rec.model, rec.ds)."""
        if not isinstance(rec, PartitionRecord):
            raise _bad("write_partition(rec)", "a PartitionRecord", rec)
        row = {k: getattr(rec, k) for k in _fields_of(PartitionRecord)}
        row["updated_at"] = _now()
        with self._write(conn, f"writing wk_partition model={rec.model} ds={rec.ds}") as c:
            self._upsert(c, wk_partition, [row])

    def write_stage(
        self,
        model: str,
        ds: str,
        stage: StageRecord,
        outcomes: list[ExpectationRecord],
        conn: Connection | None = None,
    ) -> None:
        """Upsert the stage summary and replace the stage's set of expectation results."""
        model = _coerce("key", model, "write_stage(model)")
        ds = check_ds(ds, "write_stage(ds)")
        if not isinstance(stage, StageRecord):
            raise _bad("write_stage(stage)", "a StageRecord", stage)
        where = f"write_stage(model={model!r}, ds={ds!r}, stage={stage.stage!r})"
        ids = _unique_keys(outcomes, ExpectationRecord, "expectation_id", where)
        now = _now()
        stage_row = {k: getattr(stage, k) for k in _fields_of(StageRecord)}
        stage_row.update(model=model, ds=ds, updated_at=now)
        rows = [
            {**{k: getattr(o, k) for k in _fields_of(ExpectationRecord)},
             "model": model, "ds": ds, "stage": stage.stage, "updated_at": now}
            for o in outcomes
        ]
        t = wk_expectation_result
        with self._write(conn, f"writing {where}") as c:
            self._lock_set(c, "stage", model, ds, stage.stage)
            self._upsert(c, wk_stage_result, [stage_row])
            self._upsert(c, t, rows)
            c.execute(delete(t).where(
                t.c.model == model, t.c.ds == ds, t.c.stage == stage.stage,
                t.c.expectation_id.not_in(ids),
            ))

    def write_slis(
        self,
        model: str,
        ds_known_on: str,
        records: list[SliRecord],
        conn: Connection | None = None,
    ) -> None:
        """Upsert SLI values (each for its own rec.ds) as known on `ds_known_on`.

        The monitor DAG writes known_on == ds; the labels DAG restates earlier days with
        known_on == its own ds. A value cannot be known before its day: rec.ds <= ds_known_on.
        """
        model = _coerce("key", model, "write_slis(model)")
        known_on = check_ds(ds_known_on, "write_slis(ds_known_on)")
        where = f"write_slis(model={model!r}, ds_known_on={known_on!r})"
        _unique_keys(records, SliRecord, ("ds", "sli"), where)
        for rec in records:
            if rec.ds > known_on:
                raise StoreValueError(
                    f"{where}: {rec._label()}.ds is after ds_known_on; a value cannot be known "
                    "before the day it describes"
                )
        now = _now()
        rows = [
            {**{k: getattr(r, k) for k in _fields_of(SliRecord)},
             "model": model, "known_on": known_on, "updated_at": now}
            for r in records
        ]
        with self._write(conn, f"writing {where}") as c:
            self._upsert(c, wk_sli_value, rows)

    def write_metrics(
        self,
        model: str,
        ds: str,
        family: str,
        known_on: str,
        records: list[MetricRecord],
        conn: Connection | None = None,
    ) -> None:
        """Replace the set of `family` metrics of (model, ds) as known on `known_on`."""
        model = _coerce("key", model, "write_metrics(model)")
        ds = check_ds(ds, "write_metrics(ds)")
        family = _coerce("key", family, "write_metrics(family)")
        known_on = check_ds(known_on, "write_metrics(known_on)")
        where = (f"write_metrics(model={model!r}, ds={ds!r}, family={family!r}, "
                 f"known_on={known_on!r})")
        if ds > known_on:
            raise StoreValueError(
                f"{where}: ds is after known_on; a value cannot be known before its day"
            )
        subjects = _unique_keys(records, MetricRecord, "subject", where)
        now = _now()
        rows = [
            {**{k: getattr(r, k) for k in _fields_of(MetricRecord)}, "model": model, "ds": ds,
             "family": family, "known_on": known_on, "updated_at": now}
            for r in records
        ]
        t = wk_metric
        with self._write(conn, f"writing {where}") as c:
            self._lock_set(c, "metric", model, ds, family, known_on)
            self._upsert(c, t, rows)
            c.execute(delete(t).where(
                t.c.model == model, t.c.ds == ds, t.c.family == family,
                t.c.known_on == known_on, t.c.subject.not_in(subjects),
            ))

    def record_event(
        self,
        model: str,
        kind: str,
        subject: str,
        ds: str,
        payload: Mapping[str, Any] | None = None,
        *,
        created_by: str | None = None,
        created_at: datetime | None = None,
        conn: Connection | None = None,
    ) -> EventWrite:
        """Insert the event unless (model, kind, subject, ds) exists; the first write wins."""
        row = _event_row(model, kind, subject, ds, payload, created_by, created_at)
        where = (f"recording wk_event model={row['model']} kind={row['kind']} "
                 f"subject={row['subject']} ds={row['ds']}")
        if self.dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:
            from sqlalchemy.dialects.sqlite import insert
        t = wk_event
        # RETURNING, not rowcount: SQLAlchemy adds an implicit RETURNING id on PostgreSQL,
        # after which psycopg reports rowcount -1. An ignored duplicate returns no row.
        stmt = (
            insert(t).values(**row)
            .on_conflict_do_nothing(index_elements=["model", "kind", "subject", "ds"])
            .returning(t.c.id)
        )
        with self._write(conn, where) as c:
            inserted = c.execute(stmt).first() is not None
            stored = c.execute(select(t).where(
                t.c.model == row["model"], t.c.kind == row["kind"],
                t.c.subject == row["subject"], t.c.ds == row["ds"],
            )).one()
        return EventWrite(Event(**stored._mapping), inserted)

    def append_event(
        self,
        model: str,
        kind: str,
        ds: str,
        payload: Mapping[str, Any] | None = None,
        *,
        subject: str | None = None,
        created_by: str | None = None,
        created_at: datetime | None = None,
        conn: Connection | None = None,
    ) -> Event:
        """Insert an always-new event (subject defaults to a fresh uuid4 hex)."""
        row = _event_row(model, kind, subject or uuid.uuid4().hex, ds, payload, created_by,
                         created_at)
        where = (f"appending wk_event model={row['model']} kind={row['kind']} "
                 f"subject={row['subject']} ds={row['ds']}")
        with self._write(conn, where) as c:
            try:
                new_id = c.execute(wk_event.insert().values(**row)).inserted_primary_key[0]
            except exc.IntegrityError as err:
                raise StoreError(
                    f"watchkeeper store {self.url}: {where} failed: an event with this "
                    "(model, kind, subject, ds) already exists; append_event needs a unique "
                    "subject (omit it for a uuid), record_event is the idempotent variant"
                ) from err
        return Event(id=new_id, **row)

    def record_run(self, rec: RunRecord, conn: Connection | None = None) -> None:
        """Upsert one task's attempt for (model, ds, dag_id, task_id)."""
        if not isinstance(rec, RunRecord):
            raise _bad("record_run(rec)", "a RunRecord", rec)
        row = {k: getattr(rec, k) for k in _fields_of(RunRecord)}
        row["updated_at"] = _now()
        with self._write(conn, f"writing wk_run {rec._label()}") as c:
            self._upsert(c, wk_run, [row])

    # -- reads ----------------------------------------------------------------------------

    def partitions(self, model: str) -> list[StoredPartition]:
        """All partition records of `model`, oldest day first."""
        t = wk_partition
        with self._read(f"reading wk_partition model={model}") as c:
            rows = c.execute(select(t).where(t.c.model == model).order_by(t.c.ds)).all()
        return [StoredPartition(**r._mapping) for r in rows]

    def partition(self, model: str, ds: str) -> StoredPartition | None:
        """The partition record of (model, ds), or None."""
        day = check_ds(ds, "partition(ds)")
        t = wk_partition
        with self._read(f"reading wk_partition model={model} ds={day}") as c:
            row = c.execute(select(t).where(t.c.model == model, t.c.ds == day)).first()
        return None if row is None else StoredPartition(**row._mapping)

    def stage_results(self, model: str) -> list[StoredStage]:
        """All stage summaries of `model`, by day then stage."""
        t = wk_stage_result
        with self._read(f"reading wk_stage_result model={model}") as c:
            rows = c.execute(
                select(t).where(t.c.model == model).order_by(t.c.ds, t.c.stage)
            ).all()
        return [StoredStage(**r._mapping) for r in rows]

    def expectation_results(self, model: str, ds: str | None = None) -> list[StoredExpectation]:
        """Expectation outcomes of `model` (one day if `ds`), by day, stage, expectation id."""
        t = wk_expectation_result
        q = select(t).where(t.c.model == model)
        if ds is not None:
            q = q.where(t.c.ds == check_ds(ds, "expectation_results(ds)"))
        q = q.order_by(t.c.ds, t.c.stage, t.c.expectation_id)
        with self._read(f"reading wk_expectation_result model={model}") as c:
            rows = c.execute(q).all()
        return [StoredExpectation(**r._mapping) for r in rows]

    def slis(
        self,
        model: str,
        as_known_on: str | None = None,
        *,
        sli: str | Iterable[str] | None = None,
        since: str | None = None,
        until: str | None = None,
    ) -> list[StoredSli]:
        """Per (ds, sli), the value with the greatest known_on <= as_known_on (newest if None).

        Optional filters: `sli` names, `since`/`until` bound ds (both inclusive).
        """
        t = wk_sli_value
        conds = [t.c.model == model]
        if as_known_on is not None:
            conds.append(t.c.known_on <= check_ds(as_known_on, "slis(as_known_on)"))
        if (names := _as_list(sli)) is not None:
            conds.append(t.c.sli.in_(names))
        conds += _ds_range(t, since, until, "slis")
        latest = (
            select(t.c.ds, t.c.sli, func.max(t.c.known_on).label("known_on"))
            .where(*conds).group_by(t.c.ds, t.c.sli).subquery()
        )
        q = (
            select(t)
            .join_from(t, latest, and_(
                t.c.ds == latest.c.ds, t.c.sli == latest.c.sli,
                t.c.known_on == latest.c.known_on,
            ))
            .where(t.c.model == model)
            .order_by(t.c.ds, t.c.sli)
        )
        with self._read(f"reading wk_sli_value model={model}") as c:
            rows = c.execute(q).all()
        return [StoredSli(**r._mapping) for r in rows]

    def metrics(
        self,
        model: str,
        family: str,
        as_known_on: str | None = None,
        *,
        since: str | None = None,
        until: str | None = None,
    ) -> list[StoredMetric]:
        """Per ds, the family's metric set with the greatest known_on <= as_known_on.

        Sets, not single subjects: write_metrics replaces a whole set, so a subject missing from
        a restatement is gone as of that restatement rather than shown with its older value.
        """
        t = wk_metric
        conds = [t.c.model == model, t.c.family == family]
        if as_known_on is not None:
            conds.append(t.c.known_on <= check_ds(as_known_on, "metrics(as_known_on)"))
        conds += _ds_range(t, since, until, "metrics")
        latest = (
            select(t.c.ds, func.max(t.c.known_on).label("known_on"))
            .where(*conds).group_by(t.c.ds).subquery()
        )
        q = (
            select(t)
            .join_from(t, latest, and_(t.c.ds == latest.c.ds, t.c.known_on == latest.c.known_on))
            .where(t.c.model == model, t.c.family == family)
            .order_by(t.c.ds, t.c.subject)
        )
        with self._read(f"reading wk_metric model={model} family={family}") as c:
            rows = c.execute(q).all()
        return [StoredMetric(**r._mapping) for r in rows]

    def events(
        self,
        model: str,
        kinds: str | Iterable[str] | None = None,
        since: str | None = None,
        until: str | None = None,
    ) -> list[Event]:
        """Events of `model`, optionally of some kinds and ds in [since, until], oldest first."""
        t = wk_event
        q = select(t).where(t.c.model == model, *_ds_range(t, since, until, "events"))
        if (names := _as_list(kinds)) is not None:
            q = q.where(t.c.kind.in_(names))
        with self._read(f"reading wk_event model={model}") as c:
            rows = c.execute(q.order_by(t.c.ds, t.c.id)).all()
        return [Event(**r._mapping) for r in rows]

    def runs(self, model: str, ds: str | None = None) -> list[StoredRun]:
        """Task attempts recorded for `model` (one day if `ds`)."""
        t = wk_run
        q = select(t).where(t.c.model == model)
        if ds is not None:
            q = q.where(t.c.ds == check_ds(ds, "runs(ds)"))
        with self._read(f"reading wk_run model={model}") as c:
            rows = c.execute(q.order_by(t.c.ds, t.c.dag_id, t.c.task_id)).all()
        return [StoredRun(**r._mapping) for r in rows]

    def models(self) -> list[str]:
        """Every model the store has anything about, sorted."""
        q = union(*(select(t.c.model) for t, _ in _DUMP_TABLES))
        with self._read("listing models") as c:
            return sorted(c.execute(q).scalars())

    def newest_ds(self, model: str) -> str | None:
        """The newest day the monitor processed for `model` (a partition or stage row), or None.

        Backfill detection compares a run's ds with this.
        """
        q = union(
            select(wk_partition.c.ds).where(wk_partition.c.model == model),
            select(wk_stage_result.c.ds).where(wk_stage_result.c.model == model),
        ).subquery()
        with self._read(f"reading newest ds model={model}") as c:
            return c.execute(select(func.max(q.c.ds))).scalar()

    def trailing_row_counts(self, model: str, before_ds: str, n: int = 7) -> list[int]:
        """Row counts of the last `n` ok/late partitions strictly before `before_ds`, newest
        first (missing, empty and unreadable days are not a baseline)."""
        before = check_ds(before_ds, "trailing_row_counts(before_ds)")
        t = wk_partition
        q = (
            select(t.c.rows)
            .where(t.c.model == model, t.c.ds < before, t.c.status.in_(("ok", "late")),
                   t.c.rows.is_not(None))
            .order_by(t.c.ds.desc())
            .limit(n)
        )
        with self._read(f"reading trailing row counts model={model}") as c:
            return [int(v) for v in c.execute(q).scalars()]

    def dump(self, model: str | None = None) -> dict[str, list[dict[str, Any]]]:
        """Every table as sorted row dicts without updated_at/created_at/id: equal dumps mean
        equal content (tests use it to prove re-runs change nothing)."""
        out: dict[str, list[dict[str, Any]]] = {}
        with self._read("dumping the store") as c:
            for table, order in _DUMP_TABLES:
                cols = [col for col in table.c if col.name not in _DUMP_OMIT]
                q = select(*cols).order_by(*(table.c[name] for name in order))
                if model is not None:
                    q = q.where(table.c.model == model)
                out[table.name] = [dict(r._mapping) for r in c.execute(q)]
        return out

    # -- alerts outbox (watchkeeper.alerts) -------------------------------------------------

    def enqueue_outbox(
        self, records: list[OutboxRecord], conn: Connection | None = None
    ) -> list[OutboxWrite]:
        """Insert each record unless its dedupe_key or its (model, kind, subject, ds) exists.

        The first write wins: a retried, cleared or re-run day enqueues nothing new and leaves
        the delivery state of the existing row alone. Pass the finding's `conn` so the alert
        commits (or rolls back) together with the finding.
        """
        where = "enqueue_outbox"
        _unique_keys(records, OutboxRecord, ("model", "kind", "subject", "ds"), where)
        _unique_keys(records, OutboxRecord, "dedupe_key", where)
        if self.dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:
            from sqlalchemy.dialects.sqlite import insert
        t = wk_outbox
        now = _now()
        out: list[OutboxWrite] = []
        with self._write(conn, f"writing wk_outbox ({len(records)} alerts)") as c:
            for i, rec in enumerate(records):
                row = {k: getattr(rec, k) for k in _fields_of(OutboxRecord)}
                # created_at orders delivery within a day; one microsecond apart keeps the
                # caller's order (a thread's first message before its update) on both backends.
                created = now + timedelta(microseconds=i)
                row.update(attempts=0, created_at=created, updated_at=created)
                # No conflict target: either unique key (dedupe_key or the tuple) means "exists".
                # RETURNING, not rowcount (see record_event).
                stmt = (insert(t).values(**row).on_conflict_do_nothing()
                        .returning(t.c.dedupe_key))
                inserted = c.execute(stmt).first() is not None
                stored = c.execute(select(t).where(t.c.dedupe_key == rec.dedupe_key)).first()
                if stored is None:  # the tuple exists under another key (a changed key format)
                    stored = c.execute(select(t).where(
                        t.c.model == rec.model, t.c.kind == rec.kind,
                        t.c.subject == rec.subject, t.c.ds == rec.ds,
                    )).one()
                out.append(OutboxWrite(StoredOutbox(**stored._mapping), inserted))
        return out

    def outbox(
        self,
        model: str | None = None,
        *,
        statuses: str | Iterable[str] | None = None,
        kinds: str | Iterable[str] | None = None,
        thread_key: str | None = None,
        keys: Iterable[str] | None = None,
        since: str | None = None,
        until: str | None = None,
        conn: Connection | None = None,
    ) -> list[StoredOutbox]:
        """Outbox rows, optionally filtered, in delivery order (day, then as enqueued)."""
        t = wk_outbox
        q = select(t).where(*_ds_range(t, since, until, "outbox"))
        if model is not None:
            q = q.where(t.c.model == model)
        if (names := _as_list(statuses)) is not None:
            q = q.where(t.c.status.in_(names))
        if (names := _as_list(kinds)) is not None:
            q = q.where(t.c.kind.in_(names))
        if thread_key is not None:
            q = q.where(t.c.thread_key == thread_key)
        if keys is not None:
            q = q.where(t.c.dedupe_key.in_(_as_list(keys)))
        q = q.order_by(t.c.ds, t.c.created_at, t.c.dedupe_key)
        action = f"reading wk_outbox model={model}"
        if conn is not None:
            with self._errors(action):
                rows = conn.execute(q).all()
        else:
            with self._read(action) as c:
                rows = c.execute(q).all()
        return [StoredOutbox(**r._mapping) for r in rows]

    def outbox_index(
        self,
        model: str,
        *,
        thread_key: str | None = None,
        since: str | None = None,
        until: str | None = None,
        with_facts: bool = False,
    ) -> list[OutboxIndexRow]:
        """The light columns of the model's outbox rows (no text or blocks; facts only
        `with_facts`), in delivery order: what threading and incident tracking need, cheap to
        read every time."""
        t = wk_outbox
        names = [n for n in OutboxIndexRow._fields if n != "facts"] + (["facts"] if with_facts else [])
        q = (select(*(t.c[name] for name in names))
             .where(t.c.model == model, *_ds_range(t, since, until, "outbox_index")))
        if thread_key is not None:
            q = q.where(t.c.thread_key == thread_key)
        q = q.order_by(t.c.ds, t.c.created_at, t.c.dedupe_key)
        with self._read(f"reading wk_outbox index model={model}") as c:
            return [OutboxIndexRow(*r) for r in c.execute(q).all()]

    def outbox_models(self) -> list[str]:
        """Every model with an outbox row, sorted (`models()` leaves the outbox out)."""
        t = wk_outbox
        with self._read("listing outbox models") as c:
            return list(c.execute(select(t.c.model).distinct().order_by(t.c.model)).scalars())

    _OUTBOX_CHANGES: ClassVar[dict[str, str]] = {
        "channel": "opt_text", "note": "opt_text", "last_error": "opt_text",
        "delivered_via": "opt_text", "slack_channel": "opt_text", "slack_ts": "opt_text",
        "digest_key": "opt_text", "claimed_at": "opt_dt", "sent_at": "opt_dt",
    }

    def transition_outbox(
        self,
        keys: str | Iterable[str],
        from_statuses: str | Iterable[str],
        to_status: str,
        *,
        add_attempts: int = 0,
        claimed_before: datetime | None = None,
        conn: Connection | None = None,
        **changes: Any,
    ) -> list[str]:
        """Compare-and-set: move those rows of `keys` (dedupe keys) whose status is one of
        `from_statuses` (and, with `claimed_before`, whose claim is older) to `to_status`,
        applying `changes` and adding `add_attempts`.

        Returns the keys that moved, sorted. Two deliverers racing for a row cannot both claim
        it: only one UPDATE still finds it 'pending'.
        """
        key_list = _as_list(keys) or []
        froms = _as_list(from_statuses) or []
        where = f"transition_outbox({key_list[:3]}, {froms} -> {to_status!r})"
        for status in [*froms, to_status]:
            if status not in OUTBOX_STATUSES:
                raise _bad(f"{where}: status", f"one of {', '.join(OUTBOX_STATUSES)}", status)
        unknown = sorted(set(changes) - set(self._OUTBOX_CHANGES))
        if unknown:
            raise StoreValueError(f"{where}: cannot change field(s) {unknown}; allowed: "
                                  f"{sorted(self._OUTBOX_CHANGES)}")
        values = {name: _coerce(self._OUTBOX_CHANGES[name], value, f"{where}.{name}")
                  for name, value in changes.items()}
        if not key_list:
            return []
        t = wk_outbox
        stmt = update(t).where(t.c.dedupe_key.in_(key_list), t.c.status.in_(froms))
        if claimed_before is not None:
            cutoff = _coerce("dt", claimed_before, f"{where}.claimed_before")
            stmt = stmt.where(t.c.claimed_at < cutoff)
        stmt = stmt.values(status=to_status, updated_at=_now(),
                           attempts=t.c.attempts + int(add_attempts), **values)
        with self._write(conn, f"updating wk_outbox {where}") as c:
            return sorted(c.execute(stmt.returning(t.c.dedupe_key)).scalars())


def _now() -> datetime:
    return datetime.now(UTC)


def _fields_of(cls: type) -> list[str]:
    # Only the write record's own fields: a Stored* record passed back in must not smuggle
    # its model/ds/updated_at into the row.
    return [f.name for f in fields(cls)]


def _unique_keys(records: list[Any], cls: type, key: str | tuple[str, ...], where: str) -> list:
    if not isinstance(records, (list, tuple)):
        raise _bad(f"{where} records", f"a list of {cls.__name__}", records)
    names = (key,) if isinstance(key, str) else key
    seen: dict[Any, int] = {}
    for i, rec in enumerate(records):
        if not isinstance(rec, cls):
            raise _bad(f"{where} item {i}", f"a {cls.__name__}", rec)
        k = tuple(getattr(rec, n) for n in names)
        if k in seen:
            shown = ", ".join(f"{n}={v!r}" for n, v in zip(names, k, strict=True))
            raise StoreValueError(
                f"{where}: items {seen[k]} and {i} share {shown}; each must be unique"
            )
        seen[k] = i
    return [k[0] if len(k) == 1 else k for k in seen]


def _ds_range(t: Table, since: str | None, until: str | None, what: str) -> list:
    conds = []
    if since is not None:
        conds.append(t.c.ds >= check_ds(since, f"{what}(since)"))
    if until is not None:
        conds.append(t.c.ds <= check_ds(until, f"{what}(until)"))
    return conds


def _event_row(
    model: Any, kind: Any, subject: Any, ds: Any, payload: Any, created_by: Any, created_at: Any
) -> dict[str, Any]:
    label = f"event(model={model!r}, kind={kind!r}, subject={subject!r}, ds={ds!r})"
    return {
        "model": _coerce("key", model, f"{label}.model"),
        "kind": _coerce("key", kind, f"{label}.kind"),
        "subject": _coerce("key", subject, f"{label}.subject"),
        "ds": check_ds(ds, f"{label}.ds"),
        "payload": _coerce("json_obj", payload, f"{label}.payload"),
        "created_by": _coerce("opt_text", created_by, f"{label}.created_by"),
        "created_at": _coerce("dt", created_at if created_at is not None else _now(),
                              f"{label}.created_at"),
    }


# --------------------------------------------------------------------------------------------
# open_store: one Store per URL per process
# --------------------------------------------------------------------------------------------

_CACHE: dict[str, Store] = {}
# The store and connection of the innermost Store.atomic() block of this thread (or task).
_ATOMIC: contextvars.ContextVar[tuple[Store, Connection] | None] = contextvars.ContextVar(
    "watchkeeper_store_atomic", default=None)
_CACHE_LOCK = threading.Lock()


def open_store(url: str | None = None) -> Store:
    """The Store for `url` (default: resolve_url()), migrated on first use, cached per URL.

    Raises StoreUnavailable when the database cannot be reached, StoreMigrationError when the
    schema cannot be brought up to date, StoreError for an invalid or unsupported URL.
    """
    key = resolve_url(url)
    if url:
        origin = "the url argument"
    elif os.environ.get("WATCHKEEPER_DB_URL", "").strip():
        origin = "WATCHKEEPER_DB_URL"
    else:
        origin = "the default WATCHKEEPER_HOME location"
    with _CACHE_LOCK:
        store = _CACHE.get(key)
        if store is None:
            store = Store(key, origin)
            _CACHE[key] = store
        return store


def close_all_stores() -> None:
    """Dispose every cached store (tests, and before dropping a database)."""
    with _CACHE_LOCK:
        stores = list(_CACHE.values())
        _CACHE.clear()
    for store in stores:
        store.engine.dispose()


def _after_fork_in_child() -> None:
    # Pooled connections must not be shared with a forked child (Airflow's task runner forks):
    # drop them without closing, so the parent's sockets stay intact.
    for store in list(_CACHE.values()):
        store.engine.dispose(close=False)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
