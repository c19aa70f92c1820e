"""Reading one day's partition and when it landed: the I/O edge for model data.

A source is a file pattern with {ds} (Parquet or CSV), a SQL table with a date column, or a SQL
query that binds :ds. SQL identifiers come from the spec (validated there) and are quoted here;
the day is always a bound parameter. Failures are typed: `PartitionMissing` and
`PartitionUnreadable` carry the location and the reason, worded for the person on call.

Airflow connection ids are resolved by a resolver the caller passes in (the Airflow edge passes
BaseHook); without one, an AIRFLOW_CONN_<ID> environment variable (Airflow's own URI convention)
is used, so the CLI works outside Airflow too.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pandas as pd

from watchkeeper.spec import FileSource, ModelSpec, SqlQuerySource, SqlTableSource, day_bounds

UrlResolver = Callable[[str], str]


class SourceError(Exception):
    """A day's data could not be read. `status` is what the store records for the partition."""

    status = "unreadable"

    def __init__(self, location: str, reason: str):
        self.location = location
        self.reason = reason
        super().__init__(f"{location}: {reason}")


class PartitionMissing(SourceError):
    status = "missing"


class PartitionUnreadable(SourceError):
    status = "unreadable"


@dataclass(frozen=True)
class Partition:
    frame: pd.DataFrame
    location: str  # where it came from, secrets masked
    notes: tuple[str, ...] = ()

    @property
    def rows(self) -> int:
        return len(self.frame)


def mask_url(url: str) -> str:
    """A SQLAlchemy URL with its password replaced, for messages and logs."""
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", url)


def resolve_conn(conn_id: str, resolver: UrlResolver | None = None) -> str:
    if resolver is not None:
        return resolver(conn_id)
    env = os.environ.get(f"AIRFLOW_CONN_{conn_id.upper()}")
    if not env:
        raise PartitionUnreadable(
            f"connection {conn_id!r}",
            f"no Airflow connection resolver here and AIRFLOW_CONN_{conn_id.upper()} is not set",
        )
    # Airflow URIs say postgres://; SQLAlchemy wants postgresql://.
    return re.sub(r"^postgres://", "postgresql://", env)


def sql_url(spec: ModelSpec, src, resolver: UrlResolver | None = None) -> str:
    return spec.resolve(src.url) if src.url else resolve_conn(src.conn_id, resolver)


_ENGINES: dict[str, object] = {}


def engine_for(url: str):
    from sqlalchemy import create_engine

    eng = _ENGINES.get(url)
    if eng is None:
        eng = _ENGINES[url] = create_engine(url, pool_pre_ping=True)
    return eng


def read_partition(spec: ModelSpec, ds: str, resolver: UrlResolver | None = None) -> Partition:
    """The day's predictions (the spec's main source)."""
    return _normalize(spec, read_day(spec, spec.source, ds, resolver))


def read_day(spec: ModelSpec, src, ds: str, resolver: UrlResolver | None = None) -> Partition:
    """One day of any source of the spec (predictions, labels)."""
    date.fromisoformat(ds)  # a malformed ds must never reach a path or a query
    if isinstance(src, FileSource):
        part = _read_file(spec.resolve_path(src.path, ds), src.resolved_format)
    elif isinstance(src, SqlTableSource):
        part = _read_sql_table(spec, src, ds, resolver)
    elif isinstance(src, SqlQuerySource):
        part = _read_sql_query(spec, src, ds, resolver)
    else:  # pragma: no cover - the spec's union is closed
        raise TypeError(type(src))
    return part


def read_file(path: Path, fmt: str | None = None) -> Partition:
    """A whole file (training sets, label files)."""
    fmt = fmt or ("csv" if str(path).lower().endswith(".csv") else "parquet")
    return _read_file(path, fmt, missing="the file does not exist")


def _read_file(path: Path, fmt: str,
               missing: str = "no file for this day (the upstream job has not written it)") -> Partition:
    if not path.exists():
        raise PartitionMissing(str(path), missing)
    try:
        if fmt == "csv":
            frame = pd.read_csv(path, encoding="utf-8")
        else:
            frame = pd.read_parquet(path)
    except UnicodeDecodeError as err:
        raise PartitionUnreadable(
            str(path), f"not UTF-8 text (byte {err.start}: {err.reason}); re-export it as UTF-8"
        ) from None
    except pd.errors.EmptyDataError:
        return Partition(pd.DataFrame(), str(path), ("the file is empty (no header, no rows)",))
    except Exception as err:  # pyarrow/pandas raise many types for corrupt files
        raise PartitionUnreadable(str(path), f"cannot parse as {fmt}: {err}") from None
    return Partition(frame, str(path))


def _read_sql_table(spec: ModelSpec, src: SqlTableSource, ds: str, resolver) -> Partition:
    from sqlalchemy import column, literal_column, select, table

    url = sql_url(spec, src, resolver)
    schema, _, name = src.table.rpartition(".")
    tbl = table(name, schema=schema or None)
    # Bound as a date: SQLite's Date type stores 'YYYY-MM-DD', PostgreSQL compares to DATE.
    stmt = select(literal_column("*")).select_from(tbl).where(
        column(src.date_column) == date.fromisoformat(ds)
    )
    return _run_sql(url, stmt, f"{mask_url(url)} table {src.table}")


def _read_sql_query(spec: ModelSpec, src: SqlQuerySource, ds: str, resolver) -> Partition:
    from sqlalchemy import text

    url = sql_url(spec, src, resolver)
    stmt = text(src.query).bindparams(ds=ds)
    return _run_sql(url, stmt, f"{mask_url(url)} query")


def _run_sql(url: str, stmt, location: str) -> Partition:
    from sqlalchemy.exc import SQLAlchemyError

    try:
        with engine_for(url).connect() as conn:
            frame = pd.read_sql(stmt, conn)
    except SQLAlchemyError as err:
        reason = str(getattr(err, "orig", None) or err).splitlines()[0]
        raise PartitionUnreadable(location, mask_url(reason)) from None
    return Partition(frame, location)


def _normalize(spec: ModelSpec, part: Partition) -> Partition:
    """SQL sources hand timestamps back as text on SQLite: parse the declared timestamp columns.

    Values that do not parse become NaT and are counted in the notes, so the ingestion suite's
    null check reports them instead of the reader hiding them.
    """
    frame, notes = part.frame, list(part.notes)
    for col in (spec.columns.timestamp, spec.columns.feature_timestamp):
        if col and col in frame.columns and frame[col].dtype == object:
            parsed = pd.to_datetime(frame[col], errors="coerce", utc=True).dt.tz_convert(None)
            bad = int(parsed.isna().sum() - frame[col].isna().sum())
            if bad:
                notes.append(f"{bad} value(s) of {col} are not timestamps")
            frame = frame.assign(**{col: parsed})
    return Partition(frame, part.location, tuple(notes))


# ----- landing time and freshness ----------------------------------------------------------------


@dataclass(frozen=True)
class Freshness:
    ds: str
    landed_at: datetime | None
    deadline: datetime
    lateness_hours: float | None  # > 0 when late; None when unknown
    good: bool | None
    message: str


def landing_time(spec: ModelSpec, ds: str, frame: pd.DataFrame | None = None) -> datetime | None:
    lc = spec.landing
    if lc.kind == "manifest":
        path = spec.resolve_path(lc.path)
        if not path.exists():
            return None
        try:
            value = json.loads(path.read_text(encoding="utf-8")).get(ds)
        except (json.JSONDecodeError, OSError, AttributeError) as err:
            raise PartitionUnreadable(str(path), f"landing manifest is not a JSON object: {err}")
        return _parse_ts(value) if value else None
    if lc.kind == "marker":
        path = spec.resolve_path(lc.path, ds)
        if not path.exists():
            return None
        content = path.read_text(encoding="utf-8").strip()
        if content:
            return _parse_ts(content)
        return datetime.fromtimestamp(path.stat().st_mtime, tz=timezone.utc)
    if lc.kind == "column":
        if frame is None or lc.column not in frame.columns or frame.empty:
            return None
        value = pd.to_datetime(frame[lc.column], errors="coerce", utc=True).max()
        return None if pd.isna(value) else value.to_pydatetime()
    return None


def _parse_ts(value: str) -> datetime:
    ts = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return ts if ts.tzinfo else ts.replace(tzinfo=timezone.utc)


def freshness(spec: ModelSpec, ds: str, landed_at: datetime | None, *, status: str) -> Freshness:
    """A day is fresh when its partition landed by the deadline (hours after the day ends)."""
    _, day_end = day_bounds(spec, ds)
    deadline = day_end + timedelta(hours=spec.landing.deadline_hours)
    if status in ("missing", "unreadable"):
        return Freshness(ds, None, deadline, None, False, f"partition {status}")
    if landed_at is None:
        if spec.landing.kind == "none":
            return Freshness(ds, None, deadline, None, True, "no landing time configured; present")
        return Freshness(ds, None, deadline, None, None, "landing time unknown")
    late = (landed_at - deadline).total_seconds() / 3600
    if late > 0:
        msg = f"landed {late:.1f} h after the deadline {deadline.isoformat()}"
    else:
        msg = f"landed {-late:.1f} h before the deadline"
    return Freshness(ds, landed_at, deadline, round(late, 4), late <= 0, msg)
