"""Push-down: the ingestion suite of a PostgreSQL table runs in the database, not in pandas.

When a model's source is a SQL table with a DATE column on PostgreSQL, `check_in_database`
validates the day through a Great Expectations SQL datasource: a table asset with a daily batch
definition on that column. GX then sends aggregate SQL (counts, GROUP BY ... HAVING, LIMIT 20
samples) and the day's rows never enter this process. The result is the same `StageResult` the
pandas path (`quality.run_suite` on the staged batch) gives for the same suite and day: the
same expectation ids, verdicts, observed values and counts, so the store, the pages and the SLIs
cannot tell the two apart.

How "the same" is kept, and why:
- The suites are written for pandas: type checks name pandas dtypes (`float64`, `str`), and a
  range check on a text column is a finding, not a GX crash. So the batch's *shape* is rebuilt
  in pandas from the database: one query counts rows and non-null values per column, a second
  fetches one non-null value per column, and `pandas.read_sql` turns two rows built from them
  (a sample row, and a null row where the day has nulls) into a frame with exactly the dtypes
  the pandas path would see (an integer column with nulls becomes float64, a timestamptz column
  datetime64[ns, UTC], ...). Type expectations are evaluated on that frame by GX's pandas
  engine, with counts taken from the database; everything else runs in the database.
- Outcomes are built by `quality`'s own helpers (missing columns, wrong value kinds, PII
  redaction, observed values), so the two paths cannot drift apart silently; the tests compare
  them result by result on the same data.
- What cannot match exactly, by nature: `details.sample_rows` (row positions) is absent, since
  a table's rows have no position; samples of unexpected values come in the database's order,
  and ties in unexpected-value counts are ordered by value.

When push-down does not apply, `Unsupported` says why (another dialect, not a DATE column, text
timestamps that the pandas path parses, an empty day, a connection without a resolver) and the
caller runs the pandas path on the staged batch instead, saying so.

Known costs of GX 1.24's daily batch definition (see the README's Production section):
- before each validation GX lists the table's days with a DISTINCT over the whole table;
- the day filter is `EXTRACT(year/month/day FROM col) = ...`, which a plain index on the column
  cannot serve; an expression index on the three EXTRACTs can.
GX query assets would avoid both, but cannot take the day as a bound parameter.

An edge module (it talks to the database); no Airflow import.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from dataclasses import dataclass, replace
from datetime import date
from types import SimpleNamespace
from typing import Any, Iterable, Mapping

import pandas as pd

from watchkeeper import quality
from watchkeeper.quality import ExpectationOutcome, StageResult, Suite, SuiteConfigError

log = logging.getLogger(__name__)

__all__ = [
    "PushdownError",
    "Unsupported",
    "SourceUnavailable",
    "TableDay",
    "plan",
    "run_suite_in_database",
    "check_in_database",
    "expression_index_sql",
]

SUPPORTED_DIALECTS = frozenset({"postgresql"})
_SAMPLE = quality._SAMPLE  # unexpected values kept per outcome, as on the pandas path


class PushdownError(Exception):
    """Base class of this module's errors."""


class Unsupported(PushdownError):
    """Push-down does not apply to this model or day; the pandas path must run instead."""

    def __init__(self, model: str, reason: str):
        self.model = model
        self.reason = reason
        super().__init__(f"model {model!r}: push-down not used: {reason}")


class SourceUnavailable(PushdownError):
    """The table could not be read or validated in the database (a retry may fix it)."""

    def __init__(self, location: str, reason: str):
        self.location = location
        self.reason = reason
        super().__init__(f"{location}: {reason}")


@dataclass(frozen=True)
class TableDay:
    """One day of one table: what the daily batch definition selects."""

    url: str  # SQLAlchemy URL (secret included; never logged)
    schema: str | None
    table: str
    date_column: str
    ds: str
    location: str  # for messages: URL with the password masked, and the table
    timestamp_columns: tuple[str, ...] = ()  # declared timestamp columns (spec.columns)


# ----- planning -----------------------------------------------------------------------------------


def plan(spec, ds: str, resolver=None) -> TableDay:
    """The table and day to validate in the database, or `Unsupported` with the reason."""
    from sqlalchemy.engine import make_url

    from watchkeeper import sources
    from watchkeeper.spec import SqlTableSource

    date.fromisoformat(ds)  # a malformed ds never reaches a query
    src = spec.source
    if not isinstance(src, SqlTableSource):
        raise Unsupported(spec.name, f"source kind is {src.kind}, not sql_table")
    try:
        url = sources.sql_url(spec, src, resolver)
    except sources.SourceError as err:
        raise Unsupported(spec.name, f"cannot resolve the connection: {err}") from None
    try:
        dialect = make_url(url).get_backend_name()
    except Exception as err:  # noqa: BLE001 - sqlalchemy raises ArgumentError and others
        raise Unsupported(spec.name, f"not a SQLAlchemy URL: {type(err).__name__}") from None
    if dialect not in SUPPORTED_DIALECTS:
        raise Unsupported(spec.name, f"dialect {dialect!r} (push-down runs on "
                                     f"{', '.join(sorted(SUPPORTED_DIALECTS))})")
    schema, _, table = src.table.rpartition(".")
    stamps = tuple(c for c in (spec.columns.timestamp, getattr(spec.columns, "feature_timestamp",
                                                                  None)) if c)
    return TableDay(url=url, schema=schema or None, table=table, date_column=src.date_column,
                    ds=ds, location=f"{sources.mask_url(url)} table {src.table}",
                    timestamp_columns=stamps)


def expression_index_sql(day: TableDay) -> str:
    """The index that serves GX's daily filter (EXTRACT year, month, day of the date column)."""
    col = _quote(day.date_column)
    target = f"{_quote(day.schema)}.{_quote(day.table)}" if day.schema else _quote(day.table)
    return (f"CREATE INDEX IF NOT EXISTS {_quote(f'ix_{day.table}_{day.date_column}_ymd')} ON "
            f"{target} ((extract(year from {col})), (extract(month from {col})), "
            f"(extract(day from {col})))")


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


# ----- the shape of the day, as the pandas path would see it --------------------------------------


@dataclass(frozen=True)
class _Shape:
    rows: int
    nonnull: dict[str, int]  # column -> non-null values in the day
    frame: pd.DataFrame  # one or two rows with the pandas path's dtypes (see module doc)


def _table(day: TableDay, conn):
    from sqlalchemy import MetaData, Table
    from sqlalchemy.exc import NoSuchTableError

    try:
        return Table(day.table, MetaData(), schema=day.schema, autoload_with=conn)
    except NoSuchTableError:
        raise SourceUnavailable(day.location, "no such table") from None


def _shape(day: TableDay, model: str) -> _Shape:
    from sqlalchemy import Date, DateTime, String, Text, func, null, select, union_all
    from sqlalchemy.exc import SQLAlchemyError

    from watchkeeper import sources

    try:
        with sources.engine_for(day.url).connect() as conn:
            tbl = _table(day, conn)
            cols = list(tbl.columns)
            if day.date_column not in tbl.columns:
                raise Unsupported(model, f"{day.location} has no column {day.date_column!r}")
            dcol = tbl.columns[day.date_column]
            if not isinstance(dcol.type, Date) or isinstance(dcol.type, DateTime):
                raise Unsupported(model, f"column {day.date_column!r} of {day.location} is "
                                         f"{dcol.type}; GX's daily batch definition needs DATE")
            for name in day.timestamp_columns:
                if name in tbl.columns and isinstance(tbl.columns[name].type, (String, Text)):
                    # The pandas path parses text timestamps (sources._normalize); the database
                    # would compare text with timestamps.
                    raise Unsupported(model, f"timestamp column {name!r} of {day.location} "
                                             "holds text")
            where = dcol == date.fromisoformat(day.ds)
            counts = conn.execute(
                select(func.count().label("__rows__"),
                       *[func.count(c).label(f"c{i}") for i, c in enumerate(cols)])
                .select_from(tbl).where(where)
            ).one()
            rows = int(counts[0])
            nonnull = {c.name: int(counts[i + 1]) for i, c in enumerate(cols)}
            if rows == 0:
                raise Unsupported(model, f"no rows for {day.ds} in {day.location}")
            # Two rows whose Python values come from the same driver and the same column types
            # as the day's: read by pandas.read_sql they get the pandas path's dtypes.
            sample = [
                select(c).select_from(tbl).where(where, c.is_not(None)).limit(1)
                .scalar_subquery().label(c.name)
                for c in cols
            ]
            nulls = [
                (null().cast(c.type) if nonnull[c.name] < rows else s).label(c.name)
                for c, s in zip(cols, sample)
            ]
            stmt = select(*sample)
            if any(nonnull[c.name] < rows for c in cols):
                stmt = union_all(select(*sample), select(*nulls))
            frame = pd.read_sql(stmt, conn)
    except SQLAlchemyError as err:
        reason = str(getattr(err, "orig", None) or err).splitlines()[0]
        raise SourceUnavailable(day.location, sources.mask_url(reason)) from None
    return _Shape(rows=rows, nonnull=nonnull, frame=_as_staged(frame))


def _as_staged(frame: pd.DataFrame) -> pd.DataFrame:
    """Through Parquet and back, as monitor.load stages a batch and monitor.check reads it."""
    import io

    buf = io.BytesIO()
    frame.to_parquet(buf, index=False)
    return pd.read_parquet(io.BytesIO(buf.getvalue()))


# ----- GX objects (one ephemeral context per process) ---------------------------------------------

_LOCK = threading.Lock()
_GX: dict[Any, Any] = {}


def _batch_definition(day: TableDay):
    """Context -> PostgreSQL datasource (per URL) -> table asset -> daily batch definition.

    Built once per process and kept: a context costs about a second, a datasource a connection
    test and an asset a table reflection.
    """
    key = (day.url, day.schema, day.table, day.date_column)
    with _LOCK:
        if key in _GX:
            return _GX[key]
        gx = quality._gx()
        if "context" not in _GX:
            from great_expectations.data_context.types.base import ProgressBarsConfig

            context = gx.get_context(mode="ephemeral")
            context.variables.progress_bars = ProgressBarsConfig(globally=False)
            _GX["context"] = context
        context = _GX["context"]
        url_key = ("datasource", day.url)
        try:
            if url_key not in _GX:
                name = "wk_" + hashlib.sha1(day.url.encode()).hexdigest()[:12]
                _GX[url_key] = context.data_sources.add_postgres(name=name,
                                                                 connection_string=day.url)
            datasource = _GX[url_key]
            kwargs = {"schema_name": day.schema} if day.schema else {}
            asset_key = ("asset", day.url, day.schema, day.table)
            if asset_key not in _GX:
                _GX[asset_key] = datasource.add_table_asset(
                    name=f"{day.schema or 'default'}.{day.table}", table_name=day.table, **kwargs)
            bd = _GX[asset_key].add_batch_definition_daily(name=f"daily_{day.date_column}",
                                                           column=day.date_column)
        except Exception as err:  # noqa: BLE001 - GX wraps connection and reflection errors
            raise SourceUnavailable(day.location, _first_line(err)) from None
        _GX[key] = bd
        return bd


def _first_line(err: Exception) -> str:
    from watchkeeper.sources import mask_url

    text = str(getattr(err, "message", None) or err).strip().splitlines()
    return mask_url(f"{type(err).__name__}: {text[0] if text else ''}")


# ----- running --------------------------------------------------------------------------------------


def run_suite_in_database(day: TableDay, suite: Suite, *, stage: str, model: str = "",
                          parameters: Mapping[str, Any] | None = None,
                          pii_columns: Iterable[str] = frozenset()) -> StageResult:
    """Validate one table-day with one suite in the database; same result as quality.run_suite.

    Raises Unsupported (run the pandas path instead), SourceUnavailable (the database failed),
    or SuiteConfigError (the suite cannot be evaluated), like run_suite.
    """
    params = dict(parameters or {})
    pii = frozenset(pii_columns)
    quality.require_parameters(suite, params, "run_suite_in_database")

    shape = _shape(day, model or day.table)
    frame, dtypes = shape.frame, shape.frame.dtypes
    present = set(frame.columns)

    pre: dict[int, ExpectationOutcome] = {}
    for spec in suite.expectations:
        absent = [c for c in spec.columns if c not in present]
        if absent:
            pre[spec.index] = quality._not_evaluated(
                spec, "column missing from batch",
                f"column(s) {', '.join(absent)} not in the batch", params, pii)
            continue
        mismatch = quality._kind_mismatch(spec, frame, dtypes, params)
        if mismatch:
            pre[spec.index] = quality._not_evaluated(spec, *mismatch, params, pii)
    params = quality._align_timestamp_parameters(suite, dtypes, params, skip=pre)

    outcomes: dict[int, ExpectationOutcome] = dict(pre)
    typed = [(s, e) for s, e in zip(suite.expectations, suite._gx_expectations)
             if s.index not in pre and s.type in quality._TYPE_EXPECTATIONS]
    in_db = [(s, e) for s, e in zip(suite.expectations, suite._gx_expectations)
             if s.index not in pre and s.type not in quality._TYPE_EXPECTATIONS]
    if typed:
        outcomes.update(_type_outcomes(typed, shape, suite, stage, params, pii))
    if in_db:
        outcomes.update(_database_outcomes(day, in_db, suite, stage, params, pii))

    ordered = [outcomes[s.index] for s in suite.expectations]
    passed = sum(1 for o in ordered if o.success)
    return StageResult(
        stage=stage,
        success=passed == len(ordered),
        evaluated=len(ordered),
        passed=passed,
        row_count=shape.rows,
        results=ordered,
        suite_name=suite.name,
        suite_source=suite.source,
        suite_notes=list(suite.notes),
        parameters=quality.to_jsonable({k: params[k] for k in sorted(suite.parameters)}),
    )


def check_in_database(spec, ds: str, suite: Suite, *, stage: str = "ingestion",
                      parameters: Mapping[str, Any] | None = None,
                      resolver=None) -> StageResult:
    """plan + run_suite_in_database for a model's day (PII columns from the spec)."""
    day = plan(spec, ds, resolver)
    log.info("model %s: validating %s for %s in the database (suite %s)", spec.name,
             day.location, ds, suite.source)
    return run_suite_in_database(day, suite, stage=stage, model=spec.name,
                                 parameters=parameters, pii_columns=spec.pii_columns)


def _gx_suite(name: str, pairs) -> Any:
    gx = quality._gx()
    return gx.ExpectationSuite(name=name, expectations=[e for _s, e in pairs])


def _raise_problems(suite: Suite, problems: list, params: Mapping[str, Any]) -> None:
    spec, reason = problems[0]
    more = "" if len(problems) == 1 else " (and " + "; ".join(
        f"#{s.index} {s.type}: {m}" for s, m in problems[1:]) + ")"
    raise SuiteConfigError(suite.source, "Great Expectations could not evaluate it: "
                                         f"{quality._hint(spec, reason, params)}{more}",
                           index=spec.index, expectation_type=spec.type, column=spec.column)


def _type_outcomes(pairs, shape: _Shape, suite: Suite, stage: str, params, pii) -> dict:
    """Type checks on the rebuilt frame (pandas dtypes), with the day's counts from the database.

    For a column of a non-object dtype the verdict depends on the dtype alone. For an object
    column GX checks value by value; a database column holds one Python type, so every non-null
    value is unexpected or none is, which the one-row verdict tells.
    """
    from great_expectations.expectations.expectation import _format_map_output, _mostly_success
    from great_expectations.expectations.expectation_configuration import parse_result_format

    batch = quality._gx_batch_definition().get_batch(batch_parameters={"dataframe": shape.frame})
    try:
        res = batch.validate(_gx_suite(suite.name, pairs), expectation_parameters=params or None)
    except Exception as err:  # noqa: BLE001 - everything GX raises here is about the suite
        raise SuiteConfigError(
            suite.source, f"Great Expectations could not run the suite on stage {stage!r}: "
                          f"{type(err).__name__}: {err}") from None
    by_index = {s.index: s for s, _e in pairs}
    out: dict[int, ExpectationOutcome] = {}
    problems = []
    empty = shape.frame.iloc[0:0]
    for r in res.results:
        spec = by_index[r.expectation_config.meta[quality._INDEX_KEY]]
        failure = quality._exception_message(r.exception_info)
        if failure is not None:
            problems.append((spec, failure))
            continue
        result = r.result or {}
        if "observed_value" not in result:  # object column: the value-by-value version
            column = spec.columns[0]
            nonnull = shape.nonnull[column]
            wrong = bool(result.get("unexpected_count"))
            unexpected = nonnull if wrong else 0
            if nonnull == 0:
                success = True  # vacuously, as GX says of a column without values
            else:
                mostly = quality._resolved(spec.kwargs.get("mostly"), params)
                success = _mostly_success(nonnull, unexpected, 1.0 if mostly is None else mostly)
            sample = shape.frame[column].dropna()
            values = [sample.iloc[0]] * min(unexpected, 20) if wrong and len(sample) else []
            formatted = _format_map_output(
                result_format=parse_result_format("SUMMARY"), success=success,
                element_count=shape.rows, nonnull_count=nonnull, unexpected_count=unexpected,
                unexpected_list=values)
            r = SimpleNamespace(success=formatted["success"], result=formatted["result"])
        out[spec.index] = quality._outcome(spec, r, empty, params, pii)
    if problems:
        _raise_problems(suite, problems, params)
    return out


def _sql_parameters(params: Mapping[str, Any]) -> dict:
    """pandas Timestamps as datetimes for the driver (psycopg adapts datetime, not Timestamp)."""
    out = {}
    for k, v in params.items():
        if isinstance(v, pd.Timestamp):
            v = v.to_pydatetime()
        out[k] = v
    return out


def _database_outcomes(day: TableDay, pairs, suite: Suite, stage: str, params, pii) -> dict:
    d = date.fromisoformat(day.ds)
    bd = _batch_definition(day)
    try:
        batch = bd.get_batch(batch_parameters={"year": d.year, "month": d.month, "day": d.day})
    except Exception as err:  # noqa: BLE001 - NoAvailableBatchesError, connection errors
        raise SourceUnavailable(day.location, f"GX could not select day {day.ds}: "
                                              f"{_first_line(err)}") from None
    try:
        res = batch.validate(_gx_suite(suite.name, pairs),
                             expectation_parameters=_sql_parameters(params) or None)
    except Exception as err:  # noqa: BLE001 - everything GX raises here is about the suite
        raise SuiteConfigError(
            suite.source, f"Great Expectations could not run the suite on stage {stage!r} "
                          f"in the database: {type(err).__name__}: {err}") from None
    by_index = {s.index: s for s, _e in pairs}
    out: dict[int, ExpectationOutcome] = {}
    problems = []
    empty = pd.DataFrame({c: pd.Series(dtype=object) for c in _columns_of(pairs)})
    for r in res.results:
        spec = by_index[r.expectation_config.meta[quality._INDEX_KEY]]
        failure = quality._exception_message(r.exception_info)
        if failure is not None:
            problems.append((spec, failure))
            continue
        outcome = quality._outcome(spec, r, empty, params, pii)
        if (spec.type in quality._SET_EXPECTATIONS and not outcome.success
                and not (set(spec.columns) & pii)):
            # The pandas path counts every unexpected value in the batch; so does the database.
            outcome = replace(outcome, observed=quality.to_jsonable(
                _unexpected_value_counts(day, spec, params), max_items=50))
        out[spec.index] = outcome
    if problems:
        _raise_problems(suite, problems, params)
    return out


def _columns_of(pairs) -> list[str]:
    return sorted({c for s, _e in pairs for c in s.columns})


def _unexpected_value_counts(day: TableDay, spec, params) -> list[dict]:
    from sqlalchemy import func, select
    from sqlalchemy.exc import SQLAlchemyError

    from watchkeeper import sources

    value_set = quality._resolved(spec.kwargs.get("value_set"), params) or []
    try:
        with sources.engine_for(day.url).connect() as conn:
            tbl = _table(day, conn)
            col = tbl.columns[spec.columns[0]]
            cond = col.in_(list(value_set)) if value_set else None
            if spec.type == "expect_column_values_to_not_be_in_set":
                unexpected = cond if cond is not None else col.is_(None) & col.is_not(None)
            else:
                unexpected = ~cond if cond is not None else col.is_not(None)
            n = func.count().label("n")
            rows = conn.execute(
                select(col, n).select_from(tbl)
                .where(tbl.columns[day.date_column] == date.fromisoformat(day.ds),
                       col.is_not(None), unexpected)
                .group_by(col).order_by(n.desc(), col).limit(_SAMPLE)
            ).all()
    except SQLAlchemyError as err:
        reason = str(getattr(err, "orig", None) or err).splitlines()[0]
        raise SourceUnavailable(day.location, sources.mask_url(reason)) from None
    return [{"value": v, "count": int(c)} for v, c in rows]
