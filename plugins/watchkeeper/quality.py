"""Data-quality checks: Great Expectations 1.x suites run in-process on pandas batches.

Pure core: DataFrames and plain values in, typed results out. Nothing here touches Airflow, the
store or the network; the monitor step reads the batch, calls `run_suite` and stores the result.

How a run is shaped, and why:
- Suites are GX 1.x ExpectationSuite JSON files. `load_suite` builds every expectation itself
  (the GX suite constructor only *logs* an expectation it cannot build and drops it, which
  would silently shrink a suite), so each problem is a `SuiteConfigError` naming the file, the
  expectation and the reason.
- One ephemeral context, pandas datasource, dataframe asset and batch definition per process,
  created on first use. The batch is validated with the whole suite in one call
  (`batch.validate(suite)`): GX then computes shared metrics once. ValidationDefinition.run()
  is avoided because its JSON serialization fails on quantile expectations on this stack.
- A suite GX cannot evaluate (bad bound, wrong kind of kwarg, a parameter without a value) is a
  configuration error, raised, never recorded as a failed finding. Two data problems look like
  that to GX and are turned into findings before GX sees them: a column the suite expects that
  is missing from the batch (schema drift), and a column whose values are of the wrong kind for
  a range expectation (strings in a numeric column).
- Run-time values come in as GX suite parameters ({"$PARAMETER": "name"}). Timestamps inside
  the day are checked with pandas Timestamps as parameters (`day_start`, `day_end`); string
  datetime bounds fail inside GX on this stack. A Timestamp parameter is aligned to the time zone
  of the column it is compared with (naive columns are taken as UTC), because pandas refuses to
  compare naive with aware values.
- PII: for columns marked PII no data value leaves this module: unexpected-value samples and
  value-derived observations are dropped; counts and shares are kept.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, Iterable, Literal, Mapping, Sequence

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

__all__ = [
    "QualityError",
    "SuiteConfigError",
    "ExpectationSpec",
    "Suite",
    "ExpectationOutcome",
    "StageResult",
    "FeatureInfo",
    "load_suite",
    "suite_from_dict",
    "suite_columns",
    "run_suite",
    "suggest_features_suite",
    "to_jsonable",
    "bench_quality",
]


# ----- errors ----------------------------------------------------------------------------------


class QualityError(Exception):
    """Base class of this module's errors."""


class SuiteConfigError(QualityError):
    """A suite that cannot be read, built or evaluated: a problem for its owner, not a finding.

    The message names the suite file, the expectation (index, type, column) and the reason.
    """

    def __init__(self, source: str, reason: str, *, index: int | None = None,
                 expectation_type: str | None = None, column: str | None = None):
        self.source = source
        self.reason = reason
        self.index = index
        self.expectation_type = expectation_type
        self.column = column
        where = source
        if index is not None:
            where += f": expectation #{index}"
            if expectation_type:
                where += f" ({expectation_type}"
                where += f", column {column!r})" if column else ")"
        super().__init__(f"{where}: {reason}")


# ----- typed results ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ExpectationOutcome:
    """One expectation's verdict on one batch. Every field is JSON-safe."""

    expectation_id: str
    expectation_type: str
    column: str | None
    success: bool
    observed: Any = None
    unexpected_count: int | None = None
    unexpected_share: float | None = None  # 0..1, of the non-missing values GX evaluated
    element_count: int | None = None
    details: dict = field(default_factory=dict)
    # Why the expectation could not be evaluated by GX (missing column, wrong value type);
    # None when GX evaluated it. Such outcomes are failed findings, not configuration errors.
    error: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ExpectationOutcome":
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


@dataclass(frozen=True)
class StageResult:
    """A suite's verdict on one stage's batch."""

    stage: str
    success: bool
    evaluated: int
    passed: int
    row_count: int
    results: list[ExpectationOutcome]
    suite_name: str = ""
    suite_source: str = ""
    suite_notes: list[str] = field(default_factory=list)
    parameters: dict = field(default_factory=dict)

    @property
    def failed(self) -> list[ExpectationOutcome]:
        return [o for o in self.results if not o.success]

    def to_dict(self) -> dict:
        d = asdict(self)
        d["results"] = [o.to_dict() for o in self.results]
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "StageResult":
        kw = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        kw["results"] = [ExpectationOutcome.from_dict(o) for o in data.get("results", [])]
        return cls(**kw)


@dataclass(frozen=True)
class ExpectationSpec:
    """One expectation of a suite as written in its file, plus what run_suite needs to know."""

    index: int
    expectation_id: str
    type: str
    kwargs: dict
    meta: dict
    columns: tuple[str, ...]  # the batch columns it evaluates (its domain); () for table-level
    parameters: tuple[str, ...]  # names of the $PARAMETERs it references
    notes: str | None = None

    @property
    def column(self) -> str | None:
        return ", ".join(self.columns) if self.columns else None


@dataclass(frozen=True, eq=False)
class Suite:
    """A loaded suite: its expectations as written and the GX objects built from them."""

    name: str
    source: str  # the file it came from (or "<dict>")
    meta: dict
    notes: list[str]
    expectations: tuple[ExpectationSpec, ...]
    _gx_expectations: tuple = field(repr=False, default=())
    _gx_suite: Any = field(repr=False, default=None)

    @property
    def parameters(self) -> frozenset[str]:
        return frozenset(p for e in self.expectations for p in e.parameters)

    def __len__(self) -> int:
        return len(self.expectations)


@dataclass(frozen=True)
class FeatureInfo:
    """What suggest_features_suite needs to know about one feature (mirrors spec.Feature)."""

    name: str
    kind: Literal["numerical", "categorical"]
    bounds: tuple[float, float] | None = None  # the valid domain, e.g. (0, 23) for an hour
    pii: bool = False


# ----- GX runtime (one per process) ------------------------------------------------------------

_GX_LOCK = threading.Lock()
_GX: dict[str, Any] = {}


def _gx():
    """Import GX quietly (it logs hundreds of INFO lines otherwise)."""
    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    import great_expectations as gx

    return gx


def _gx_batch_definition():
    """The process-wide ephemeral context -> pandas datasource -> dataframe asset -> batch def.

    Built once: creating a context costs about a second, and a dataframe batch definition takes
    a new frame on every get_batch() call.
    """
    with _GX_LOCK:
        if "bd" not in _GX:
            gx = _gx()
            from great_expectations.data_context.types.base import ProgressBarsConfig

            context = gx.get_context(mode="ephemeral")
            # No tqdm bars in task logs.
            context.variables.progress_bars = ProgressBarsConfig(globally=False)
            ds = context.data_sources.add_pandas(name="watchkeeper")
            asset = ds.add_dataframe_asset(name="batch")
            _GX["context"] = context
            _GX["bd"] = asset.add_batch_definition_whole_dataframe(name="whole")
        return _GX["bd"]


# ----- JSON safety -----------------------------------------------------------------------------


def to_jsonable(value: Any, *, max_items: int | None = None) -> Any:
    """numpy scalars -> Python, NaN/inf/NaT/NA -> None, Timestamps -> ISO text, sets -> lists."""
    if value is None or isinstance(value, (bool, str, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        v = float(value)
        return v if math.isfinite(v) else None
    if isinstance(value, (pd.Timestamp, datetime, date)):
        return None if pd.isna(value) else value.isoformat()
    if isinstance(value, (pd.Timedelta, timedelta, np.timedelta64)):
        return None if pd.isna(value) else str(pd.Timedelta(value))
    if isinstance(value, np.datetime64):
        return None if np.isnat(value) else pd.Timestamp(value).isoformat()
    if isinstance(value, Decimal):
        return to_jsonable(float(value))
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v, max_items=max_items) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset, np.ndarray, pd.Series, pd.Index)):
        items = list(value)
        if isinstance(value, (set, frozenset)):
            items = sorted(items, key=lambda x: (str(type(x)), str(x)))
        if max_items is not None:
            items = items[:max_items]
        return [to_jsonable(v, max_items=max_items) for v in items]
    if value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if hasattr(value, "to_json_dict"):
        return to_jsonable(value.to_json_dict(), max_items=max_items)
    if hasattr(value, "value") and hasattr(value, "name"):  # enums (GX ResultFormat, ...)
        return to_jsonable(value.value, max_items=max_items)
    return str(value)


# ----- loading ---------------------------------------------------------------------------------

_SUITE_KEYS = {"name", "id", "expectations", "meta", "notes", "suite_parameters"}
_EXPECTATION_KEYS = {"type", "expectation_type", "kwargs", "meta", "id", "notes", "description",
                     "rendered_content", "severity"}
# Key inside each GX expectation's meta that maps a validation result back to its expectation:
# results do not come back in suite order.
_INDEX_KEY = "_watchkeeper_index"


# Built suites per file and version (path, mtime, size): building GX's expectation objects costs
# about 0.1 s a suite, paid every day by a long-lived process (the demo, backtests, the soak).
_SUITES: dict[tuple, "Suite"] = {}


def load_suite(path: Path | str) -> Suite:
    """Read a GX 1.x suite JSON file and build it without a GX project folder (memoised per
    file version within the process)."""
    path = Path(path)
    try:
        st = path.stat()
        key = (str(path.resolve()), st.st_mtime_ns, st.st_size)
    except OSError:
        key = None
    if key is not None and key in _SUITES:
        return _SUITES[key]
    suite = _load_suite(path)
    if key is not None:
        with _GX_LOCK:
            _SUITES[key] = suite
    return suite


def _load_suite(path: Path) -> Suite:
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SuiteConfigError(source, "file not found") from None
    except (OSError, UnicodeDecodeError) as err:
        raise SuiteConfigError(source, f"cannot read: {err}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise SuiteConfigError(
            source, f"not valid JSON at line {err.lineno}, column {err.colno}: {err.msg}"
        ) from None
    return suite_from_dict(data, source=source)


def suite_from_dict(data: Any, *, source: str = "<dict>") -> Suite:
    """Build a Suite from the parsed JSON shape (what load_suite reads, what suggest returns)."""
    if not isinstance(data, dict):
        raise SuiteConfigError(source,
                               f"top level must be a JSON object, got {type(data).__name__}")
    unknown = sorted(set(data) - _SUITE_KEYS)
    if unknown:
        raise SuiteConfigError(source, f"unknown top-level key(s) {', '.join(unknown)} "
                                       f"(allowed: {', '.join(sorted(_SUITE_KEYS))})")
    name = data.get("name")
    if not isinstance(name, str) or not name.strip():
        raise SuiteConfigError(source, "field 'name' must be a non-empty string")
    raw = data.get("expectations")
    if not isinstance(raw, list):
        raise SuiteConfigError(source, "field 'expectations' must be a list")
    meta = data.get("meta") or {}
    if not isinstance(meta, dict):
        raise SuiteConfigError(source, "field 'meta' must be an object")
    notes = _notes_list(data.get("notes")) + _notes_list(meta.get("notes"))

    gx = _gx()
    from great_expectations.expectations.expectation_configuration import (
        ExpectationConfiguration,
    )

    specs: list[ExpectationSpec] = []
    built = []
    taken_ids: set[str] = set()
    explicit_ids = _explicit_ids(raw, source)
    base_counts: Counter[str] = Counter()
    for i, item in enumerate(raw):
        if not isinstance(item, dict):
            raise SuiteConfigError(source, f"must be an object, got {type(item).__name__}", index=i)
        etype = item.get("type", item.get("expectation_type"))
        if not isinstance(etype, str) or not etype:
            raise SuiteConfigError(source, "field 'type' is missing", index=i)
        kwargs = item.get("kwargs", {})
        if not isinstance(kwargs, dict):
            raise SuiteConfigError(source, "field 'kwargs' must be an object", index=i,
                                   expectation_type=etype)
        column = kwargs.get("column") if isinstance(kwargs.get("column"), str) else None
        bad_keys = sorted(set(item) - _EXPECTATION_KEYS)
        if bad_keys:
            raise SuiteConfigError(source, f"unknown key(s) {', '.join(bad_keys)}", index=i,
                                   expectation_type=etype, column=column)
        emeta = item.get("meta") or {}
        if not isinstance(emeta, dict):
            raise SuiteConfigError(source, "field 'meta' must be an object", index=i,
                                   expectation_type=etype, column=column)
        if "column" in kwargs and not isinstance(kwargs["column"], str):
            raise SuiteConfigError(source, "kwarg 'column' must be a string", index=i,
                                   expectation_type=etype)
        _check_literal_bounds(kwargs, source, i, etype, column)
        gx_meta = {**emeta, _INDEX_KEY: i}
        try:
            config = ExpectationConfiguration(type=etype, kwargs=dict(kwargs), meta=gx_meta,
                                              notes=item.get("notes"),
                                              description=item.get("description"))
            expectation = config.to_domain_obj()
        except Exception as err:  # noqa: BLE001 - GX raises pydantic, GX and plain errors alike
            raise SuiteConfigError(source, _gx_build_reason(err, etype), index=i,
                                   expectation_type=etype, column=column) from None
        columns = _domain_columns(etype, kwargs)
        if "id" in emeta:
            eid = emeta["id"]
        else:
            target = column or (",".join(columns) if columns else "table")
            base = f"{etype}:{target}"
            base_counts[base] += 1
            eid = base if base_counts[base] == 1 else f"{base}#{base_counts[base]}"
            while eid in taken_ids or eid in explicit_ids:
                base_counts[base] += 1
                eid = f"{base}#{base_counts[base]}"
        taken_ids.add(eid)
        specs.append(ExpectationSpec(
            index=i,
            expectation_id=eid,
            type=etype,
            kwargs=dict(kwargs),
            meta=dict(emeta),
            columns=columns,
            parameters=tuple(sorted(_parameters_in(kwargs))),
            notes=_joined_notes(item.get("notes"), emeta.get("notes")),
        ))
        built.append(expectation)

    try:
        gx_suite = gx.ExpectationSuite(name=name, expectations=list(built))
    except Exception as err:  # noqa: BLE001
        raise SuiteConfigError(source, f"GX refused the suite: {err}") from None
    if len(gx_suite.expectations) != len(built):  # GX drops what it cannot add; we do not
        raise SuiteConfigError(source, "GX dropped expectation(s) while building the suite")
    return Suite(name=name, source=source, meta=dict(meta), notes=notes,
                 expectations=tuple(specs), _gx_expectations=tuple(built), _gx_suite=gx_suite)


def suite_columns(suite: Suite) -> frozenset[str]:
    """Every column a suite names: domains of column expectations and table column sets."""
    names: set[str] = set()
    for e in suite.expectations:
        names.update(e.columns)
        for key in ("column_set", "column_list"):
            val = e.kwargs.get(key)
            if isinstance(val, list):
                names.update(v for v in val if isinstance(v, str))
    return frozenset(names)


def _explicit_ids(raw: list, source: str) -> set[str]:
    seen: dict[str, int] = {}
    for i, item in enumerate(raw):
        meta = item.get("meta") if isinstance(item, dict) else None
        if isinstance(meta, dict) and "id" in meta:
            eid = meta["id"]
            if not isinstance(eid, str) or not eid:
                raise SuiteConfigError(source, "meta.id must be a non-empty string", index=i,
                                       expectation_type=item.get("type"))
            if eid in seen:
                raise SuiteConfigError(source, f"meta.id {eid!r} is also used by expectation "
                                               f"#{seen[eid]}", index=i,
                                       expectation_type=item.get("type"))
            seen[eid] = i
    return set(seen)


def _notes_list(notes: Any) -> list[str]:
    """GX notes come as a string, a list of strings, or {"format", "content": [...]}."""
    if notes is None:
        return []
    if isinstance(notes, str):
        return [notes] if notes.strip() else []
    if isinstance(notes, dict):
        return _notes_list(notes.get("content"))
    if isinstance(notes, list):
        return [str(n) for n in notes if str(n).strip()]
    return [str(notes)]


def _joined_notes(*parts: Any) -> str | None:
    lines = [n for p in parts for n in _notes_list(p)]
    return " ".join(lines) if lines else None


def _domain_columns(etype: str, kwargs: dict) -> tuple[str, ...]:
    if etype.startswith("expect_table_"):
        return ()
    cols: list[str] = []
    for key in ("column", "column_A", "column_B"):
        if isinstance(kwargs.get(key), str):
            cols.append(kwargs[key])
    if isinstance(kwargs.get("column_list"), list):
        cols.extend(c for c in kwargs["column_list"] if isinstance(c, str))
    return tuple(dict.fromkeys(cols))


def _parameters_in(value: Any) -> set[str]:
    if isinstance(value, dict):
        if set(value) == {"$PARAMETER"} and isinstance(value["$PARAMETER"], str):
            return {value["$PARAMETER"]}
        return set().union(*(_parameters_in(v) for v in value.values())) if value else set()
    if isinstance(value, list):
        return set().union(*(_parameters_in(v) for v in value)) if value else set()
    return set()


def _check_literal_bounds(kwargs: dict, source: str, i: int, etype: str, column: str | None):
    """Catch min > max at load time, before any batch is read (GX only finds it while running)."""
    lo, hi = kwargs.get("min_value"), kwargs.get("max_value")
    if _is_number(lo) and _is_number(hi) and lo > hi:
        raise SuiteConfigError(source, f"min_value {lo} is greater than max_value {hi}",
                               index=i, expectation_type=etype, column=column)
    qr = kwargs.get("quantile_ranges")
    if isinstance(qr, dict) and isinstance(qr.get("value_ranges"), list):
        for j, pair in enumerate(qr["value_ranges"]):
            if (isinstance(pair, list) and len(pair) == 2 and _is_number(pair[0])
                    and _is_number(pair[1]) and pair[0] > pair[1]):
                raise SuiteConfigError(source, f"quantile_ranges.value_ranges[{j}] {pair}: "
                                               "lower bound is greater than upper bound",
                                       index=i, expectation_type=etype, column=column)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _gx_build_reason(err: Exception, etype: str) -> str:
    name = type(err).__name__
    if name == "ExpectationNotFoundError":
        return f"unknown expectation type {etype!r}"
    if name == "ValidationError" and hasattr(err, "errors"):  # pydantic (v1 inside GX)
        parts = []
        for e in err.errors():
            loc = ".".join(str(x) for x in e.get("loc", ()))
            msg = e.get("msg", "")
            # pydantic v1 lists one error per Union member tried; "not a valid dict" is GX's
            # $PARAMETER alternative and only adds noise.
            if "valid dict" in msg:
                continue
            parts.append(f"{loc}: {msg}" if loc and loc != "__root__" else msg)
        return "invalid kwargs: " + "; ".join(dict.fromkeys(parts))
    msg = getattr(err, "message", None) or str(err)
    return f"{name}: {msg}"


# ----- running ---------------------------------------------------------------------------------

# Range-style expectations: they need numbers (or, for the first group, datetimes) in the column.
_RANGE_NUMBER_OR_TIME = {
    "expect_column_values_to_be_between",
    "expect_column_min_to_be_between",
    "expect_column_max_to_be_between",
    "expect_column_median_to_be_between",
    "expect_column_quantile_values_to_be_between",
}
_RANGE_NUMBER_ONLY = {
    "expect_column_mean_to_be_between",
    "expect_column_stdev_to_be_between",
    "expect_column_sum_to_be_between",
    "expect_column_value_z_scores_to_be_less_than",
}
# Expectations whose observed value is not a data value (safe to keep for PII columns).
_OBSERVED_NOT_A_VALUE = {
    "expect_column_values_to_be_in_type_list",
    "expect_column_values_to_be_of_type",
    "expect_column_proportion_of_unique_values_to_be_between",
    "expect_column_proportion_of_non_null_values_to_be_between",
    "expect_column_unique_value_count_to_be_between",
    "expect_column_to_exist",
}
_TYPE_EXPECTATIONS = {"expect_column_values_to_be_in_type_list",
                      "expect_column_values_to_be_of_type"}
_NOT_NULL = "expect_column_values_to_not_be_null"
_SET_EXPECTATIONS = {"expect_column_values_to_be_in_set", "expect_column_values_to_not_be_in_set"}
_SAMPLE = 10  # unexpected values / rows kept per outcome
_SKIP_KWARGS = {"column", "result_format", "catch_exceptions", "meta", "condition_parser",
                "row_condition"}


def require_parameters(suite: Suite, params: Mapping[str, Any], caller: str) -> None:
    """SuiteConfigError naming the first expectation whose $PARAMETER has no value."""
    missing_params = sorted(suite.parameters - set(params))
    if missing_params:
        users = [e for e in suite.expectations if set(e.parameters) & set(missing_params)]
        first = users[0]
        raise SuiteConfigError(
            suite.source,
            f"no value for $PARAMETER {', '.join(missing_params)} "
            f"({caller} got: {', '.join(sorted(params)) or 'no parameters'})",
            index=first.index, expectation_type=first.type, column=first.column)


def run_suite(df: pd.DataFrame, suite: Suite, *, stage: str,
              parameters: Mapping[str, Any] | None = None,
              pii_columns: Iterable[str] = frozenset()) -> StageResult:
    """Validate one batch with one suite; failed expectations are findings in the result.

    Raises SuiteConfigError when the suite cannot be evaluated (GX raised for an expectation,
    or a $PARAMETER has no value). A missing column or a column of the wrong value type is a
    failed outcome instead, and the rest of the suite still runs.
    """
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"run_suite needs a pandas DataFrame, got {type(df).__name__}")
    params = dict(parameters or {})
    pii = frozenset(pii_columns)
    require_parameters(suite, params, "run_suite")

    present = set(df.columns)
    # A column name that appears twice cannot be checked (pandas cannot say which is meant);
    # like a missing column it is schema drift, so a finding rather than a crash.
    doubled = Counter(df.columns[df.columns.duplicated(keep=False)])
    dtypes = df.dtypes
    pre: dict[int, ExpectationOutcome] = {}
    for spec in suite.expectations:
        absent = [c for c in spec.columns if c not in present]
        if absent:
            pre[spec.index] = _not_evaluated(
                spec, "column missing from batch",
                f"column(s) {', '.join(absent)} not in the batch", params, pii)
            continue
        twice = [c for c in spec.columns if c in doubled]
        if twice:
            reason = "; ".join(f"column {c!r} appears {doubled[c]} times in the batch"
                               for c in twice)
            pre[spec.index] = _not_evaluated(spec, "column name duplicated in batch", reason,
                                             params, pii)
            continue
        mismatch = _kind_mismatch(spec, df, dtypes, params)
        if mismatch:
            pre[spec.index] = _not_evaluated(spec, *mismatch, params, pii)

    params = _align_timestamp_parameters(suite, dtypes, params, skip=pre)

    outcomes: dict[int, ExpectationOutcome] = dict(pre)
    if len(pre) < len(suite.expectations):
        if pre:
            gx = _gx()
            gx_suite = gx.ExpectationSuite(
                name=suite.name,
                expectations=[e for spec, e in zip(suite.expectations, suite._gx_expectations)
                              if spec.index not in pre])
        else:
            gx_suite = suite._gx_suite
        batch = _gx_batch_definition().get_batch(batch_parameters={"dataframe": df})
        try:
            res = batch.validate(gx_suite, expectation_parameters=params or None)
        except Exception as err:  # noqa: BLE001 - everything GX raises here is about the suite
            raise SuiteConfigError(
                suite.source, f"Great Expectations could not run the suite on stage {stage!r}: "
                              f"{type(err).__name__}: {err}") from None
        by_index = {s.index: s for s in suite.expectations}
        problems = []
        for r in res.results:
            spec = by_index[r.expectation_config.meta[_INDEX_KEY]]
            failure = _exception_message(r.exception_info)
            if failure is not None:
                problems.append((spec, failure))
                continue
            outcomes[spec.index] = _outcome(spec, r, df, params, pii)
        if problems:
            spec, reason = problems[0]
            more = "" if len(problems) == 1 else " (and " + "; ".join(
                f"#{s.index} {s.type}: {m}" for s, m in problems[1:]) + ")"
            raise SuiteConfigError(suite.source, f"Great Expectations could not evaluate it: "
                                                 f"{_hint(spec, reason, params)}{more}",
                                   index=spec.index, expectation_type=spec.type,
                                   column=spec.column)

    ordered = [outcomes[s.index] for s in suite.expectations]
    passed = sum(1 for o in ordered if o.success)
    return StageResult(
        stage=stage,
        success=passed == len(ordered),
        evaluated=len(ordered),
        passed=passed,
        row_count=len(df),
        results=ordered,
        suite_name=suite.name,
        suite_source=suite.source,
        suite_notes=list(suite.notes),
        parameters=to_jsonable({k: params[k] for k in sorted(suite.parameters)}),
    )


def _column_kind(df: pd.DataFrame, dtypes: pd.Series, column: str) -> str:
    """number | time | text | other, looking at values only for object columns."""
    dtype = dtypes[column]
    if pd.api.types.is_bool_dtype(dtype) or pd.api.types.is_numeric_dtype(dtype):
        return "number"
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return "time"
    if dtype == object:
        inferred = pd.api.types.infer_dtype(df[column], skipna=True)
        if inferred in ("integer", "floating", "mixed-integer-float", "decimal", "boolean",
                        "empty"):
            return "number"
        if inferred in ("datetime", "datetime64", "date"):
            return "time"
        return "text" if inferred in ("string", "bytes") else "mixed"
    return "text" if pd.api.types.is_string_dtype(dtype) else "other"


def _bound_values(spec: ExpectationSpec, params: Mapping[str, Any]) -> list[Any]:
    kw = spec.kwargs
    vals = [kw.get("min_value"), kw.get("max_value")]
    qr = kw.get("quantile_ranges")
    if isinstance(qr, dict) and isinstance(qr.get("value_ranges"), list):
        vals += [v for pair in qr["value_ranges"] if isinstance(pair, list) for v in pair]
    out = []
    for v in vals:
        if isinstance(v, dict) and "$PARAMETER" in v:
            v = params.get(v["$PARAMETER"])
        if v is not None:
            out.append(v)
    return out


def _kind_mismatch(spec: ExpectationSpec, df: pd.DataFrame, dtypes: pd.Series,
                   params: Mapping[str, Any]) -> tuple[str, str] | None:
    """A range expectation on a column whose values are not of the bounds' kind is a finding.

    Returns (observed, reason) for such a column, None when GX can evaluate the expectation.
    """
    if spec.type not in _RANGE_NUMBER_OR_TIME and spec.type not in _RANGE_NUMBER_ONLY:
        return None
    column = spec.columns[0] if spec.columns else None
    if column is None:
        return None
    kind = _column_kind(df, dtypes, column)
    bounds = _bound_values(spec, params)
    wants_time = any(isinstance(b, (datetime, date, np.datetime64)) for b in bounds)
    if spec.type in _RANGE_NUMBER_ONLY:
        wanted = "number"
    else:
        wanted = "time" if wants_time else "number"
    if kind == wanted:
        return None
    desc = {"number": "numbers", "time": "timestamps", "text": "text",
            "mixed": "values of mixed types", "other": f"dtype {dtypes[column]}"}[kind]
    need = "numbers" if wanted == "number" else "timestamps"
    observed = f"{desc} (dtype {dtypes[column]})" if kind != "other" else desc
    return observed, (f"column {column!r} holds {observed}; this check needs {need}, so it "
                      "cannot be evaluated")


def _align_timestamp_parameters(suite: Suite, dtypes: pd.Series, params: dict,
                                skip: Mapping[int, Any]) -> dict:
    """Give each Timestamp parameter the time zone of the column it is compared with.

    Naive columns are taken as UTC (how sources store them). A parameter used on columns of
    different zones is left as it is; GX then reports the clash as a configuration error.
    """
    zones: dict[str, set] = {}
    for spec in suite.expectations:
        if spec.index in skip or not spec.columns or spec.columns[0] not in dtypes.index:
            continue
        dtype = dtypes[spec.columns[0]]
        if not pd.api.types.is_datetime64_any_dtype(dtype):
            continue
        tz = getattr(dtype, "tz", None)
        for name in spec.parameters:
            zones.setdefault(name, set()).add(str(tz) if tz is not None else None)
    out = dict(params)
    for name, tzs in zones.items():
        value = out.get(name)
        if len(tzs) != 1 or not isinstance(value, (pd.Timestamp, datetime)):
            continue
        ts = pd.Timestamp(value)
        (tz,) = tzs
        if tz is None and ts.tzinfo is not None:
            out[name] = ts.tz_convert("UTC").tz_localize(None)
        elif tz is not None:
            out[name] = (ts.tz_localize("UTC") if ts.tzinfo is None else ts).tz_convert(tz)
        else:
            out[name] = ts
    return out


def _exception_message(info: Any) -> str | None:
    """GX reports an exception either flat or keyed by the metric that raised it."""
    if not isinstance(info, dict) or not info:
        return None
    if "raised_exception" in info:
        return (info.get("exception_message") or "exception") if info["raised_exception"] else None
    msgs = [v.get("exception_message") or "exception" for v in info.values()
            if isinstance(v, dict) and v.get("raised_exception")]
    return "; ".join(dict.fromkeys(msgs)) if msgs else None


def _hint(spec: ExpectationSpec, reason: str, params: Mapping[str, Any]) -> str:
    if any(isinstance(b, str) for b in _bound_values(spec, params)):
        reason += (" (string datetime bounds do not work on this stack: pass a pandas Timestamp "
                   "as a $PARAMETER instead)")
    return reason


def _resolved(value: Any, params: Mapping[str, Any]) -> Any:
    if isinstance(value, dict):
        if set(value) == {"$PARAMETER"}:
            return params.get(value["$PARAMETER"])
        return {k: _resolved(v, params) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolved(v, params) for v in value]
    return value


def _expected(spec: ExpectationSpec, params: Mapping[str, Any]) -> dict:
    """The expectation's kwargs with parameters resolved, small enough for a page or an alert."""
    out = {}
    for key, value in spec.kwargs.items():
        if key in _SKIP_KWARGS:
            continue
        value = _resolved(value, params)
        if isinstance(value, list) and len(value) > 25:
            out[f"{key}_size"] = len(value)
            value = value[:25]
        out[key] = value
    return to_jsonable(out)


def _base_details(spec: ExpectationSpec, params: Mapping[str, Any]) -> dict:
    details: dict[str, Any] = {"expected": _expected(spec, params)}
    if spec.parameters:
        details["parameters"] = to_jsonable({p: params.get(p) for p in spec.parameters})
    if spec.notes:
        details["notes"] = spec.notes
    return details


def _not_evaluated(spec: ExpectationSpec, observed: str, reason: str,
                   params: Mapping[str, Any], pii: frozenset[str]) -> ExpectationOutcome:
    details = _base_details(spec, params)
    details["reason"] = reason
    return ExpectationOutcome(
        expectation_id=spec.expectation_id,
        expectation_type=spec.type,
        column=spec.column,
        success=False,
        observed=observed,
        details=details,
        error=reason,
    )


def _hashable(v: Any) -> Any:
    try:
        hash(v)
        return v
    except TypeError:
        return json.dumps(to_jsonable(v), sort_keys=True)


def _unexpected_value_counts(df: pd.DataFrame, spec: ExpectationSpec,
                             params: Mapping[str, Any]) -> list[dict]:
    col = df[spec.columns[0]]
    value_set = _resolved(spec.kwargs.get("value_set"), params) or []
    try:
        inside = col.isin(list(value_set))
    except TypeError:
        return []
    if spec.type == "expect_column_values_to_not_be_in_set":
        inside = ~inside
    counts = col[~inside & col.notna()].value_counts().head(_SAMPLE)
    return [{"value": k, "count": int(v)} for k, v in counts.items()]


def _outcome(spec: ExpectationSpec, r: Any, df: pd.DataFrame, params: Mapping[str, Any],
             pii: frozenset[str]) -> ExpectationOutcome:
    result = r.result or {}
    is_pii = bool(set(spec.columns) & pii)
    details = _base_details(spec, params)
    unexpected_count = result.get("unexpected_count")
    element_count = result.get("element_count")
    pct = result.get("unexpected_percent")
    share = None if pct is None or not math.isfinite(float(pct)) else float(pct) / 100.0

    if "observed_value" in result:
        observed = result["observed_value"]
        if is_pii and spec.type not in _OBSERVED_NOT_A_VALUE:
            observed = None
            details["redacted"] = "observed value withheld: PII column"
    elif spec.type == _NOT_NULL:
        observed = {"null_count": unexpected_count, "null_share": share}
    elif spec.type in _TYPE_EXPECTATIONS:
        # object column checked value by value: say which Python types were found, not values
        observed = sorted({type(v).__name__ for v in result.get("partial_unexpected_list") or []})
    elif is_pii:
        observed = None
        if result.get("partial_unexpected_counts") or result.get("partial_unexpected_list"):
            details["redacted"] = "unexpected values withheld: PII column"
    elif spec.type in _SET_EXPECTATIONS and not r.success:
        # GX counts values only within its 20-row sample ("crypto: 20" when 610 rows have it);
        # the real counts per unexpected value are what a reviewer needs, and cheap to get.
        observed = _unexpected_value_counts(df, spec, params)
        details["observed_is"] = "unexpected values with their row counts"
    else:
        sample = result.get("partial_unexpected_list") or []
        observed = list(dict.fromkeys(_hashable(v) for v in sample))[:_SAMPLE] or None
        if observed:
            details["observed_is"] = (f"distinct values among the first {len(sample)} "
                                      "unexpected rows")

    for key in ("missing_count", "details"):
        if key in result and result[key] is not None:
            if key == "details":
                sub = result["details"]
                # GX "details" may echo values (e.g. value counts); keep only verdict flags
                if isinstance(sub, dict) and "success_details" in sub:
                    details["success_details"] = sub["success_details"]
                elif not is_pii:
                    details["gx_details"] = sub
            else:
                details[key] = result[key]
    if result.get("missing_percent") is not None:
        details["missing_share"] = float(result["missing_percent"]) / 100.0
    rows = result.get("partial_unexpected_index_list")
    # Row positions/labels point a reviewer at the rows; only integer labels are kept, since
    # a frame indexed by a data column would otherwise leak its values here.
    if rows and all(isinstance(x, (int, np.integer)) for x in rows):
        details["sample_rows"] = list(rows[:_SAMPLE])
    return ExpectationOutcome(
        expectation_id=spec.expectation_id,
        expectation_type=spec.type,
        column=spec.column,
        success=bool(r.success),
        observed=to_jsonable(observed, max_items=50),
        unexpected_count=None if unexpected_count is None else int(unexpected_count),
        unexpected_share=share,
        element_count=None if element_count is None else int(element_count),
        details=to_jsonable(details, max_items=50),
        error=None,
    )


# ----- suggesting a features suite from the training set ----------------------------------------

_DAILY_ROWS = 20_000  # the batch size bounds are sized for when the caller does not say
# The chance that one expectation fails on a healthy day, that the suggested bounds aim at: one day
# in 10,000 per check, so a suite of ~30 checks fails a healthy day about once a year.
FALSE_FAILURE_RATE = 1e-4
_BOOT_ROWS = 4_000_000  # draws x rows per feature for the bootstrap of a day's statistics


def _binomial_allowance(n: int, p: float, alpha: float, floor: float) -> tuple[float, float]:
    """The share of a day's n rows a check should tolerate when each row is "unexpected" with
    probability p on healthy days: the smallest k/n (at least `floor`) whose binomial tail
    P(X > k) is at most alpha. Returns (share, that tail probability)."""
    from scipy.stats import binom

    if p <= 0:
        return floor, 0.0
    k = int(binom.isf(alpha, n, p))  # P(X > k) <= alpha
    while k > 0 and binom.sf(k - 1, n, p) <= alpha:
        k -= 1
    share = max(floor, k / n)
    return share, float(binom.sf(math.floor(share * n + 1e-9), n, p))


def _upper_rate(count: int, total: int) -> float:
    """A cautious upper value of a rate seen `count` times in `total` rows (about 95%: the rule of
    three for 0, else the observed rate plus two binomial standard errors)."""
    if total <= 0:
        return 0.0
    if count == 0:
        return 3.0 / total
    p = count / total
    return min(1.0, p + 2.0 * math.sqrt(p * (1 - p) / total))


def _mostly(share: float) -> float:
    return math.floor((1.0 - share) * 10_000) / 10_000


def _day_statistic_bounds(values: np.ndarray, stat, center: float, n: int, n_train: int,
                          alpha: float, seed: int) -> tuple[float, float, int, float]:
    """Bounds a healthy day's statistic (of n rows) leaves with probability about alpha.

    A bootstrap: B draws of n training rows give the statistic's day-to-day spread (skew
    included). Its 0.5% and 99.5% points are scaled from z = 2.576 to the z of alpha (two-sided),
    or, with fewer than 1,000 draws (large n), its standard deviation times that z; then widened
    by sqrt(1 + n / n_train) for the training set's own sampling error. Returns (lo, hi, B, z).
    """
    from scipy.stats import norm

    rng = np.random.default_rng(seed)
    draws = int(min(2000, max(200, _BOOT_ROWS // max(n, 1))))
    chunk = max(1, min(draws, _BOOT_ROWS // 4 // max(n, 1)))
    out = []
    done = 0
    while done < draws:
        m = min(chunk, draws - done)
        idx = rng.integers(0, len(values), size=(m, n))
        out.append(stat(values[idx]))
        done += m
    boot = np.concatenate(out)
    z = float(norm.isf(alpha / 2))
    widen = math.sqrt(1.0 + n / max(n_train, 1))
    if draws >= 1000:
        lo_q, hi_q = (float(x) for x in np.quantile(boot, [0.005, 0.995]))
        scale = z / 2.5758293035489
        lo = center - (center - lo_q) * scale * widen
        hi = center + (hi_q - center) * scale * widen
    else:
        sd = float(np.std(boot, ddof=1))
        lo, hi = center - z * sd * widen, center + z * sd * widen
    return min(lo, center), max(hi, center), draws, z


def _seed(name: str) -> int:
    import zlib

    return zlib.crc32(name.encode("utf-8"))


def suggest_features_suite(training: pd.DataFrame, features: Sequence[FeatureInfo], name: str,
                           *, daily_rows: int = _DAILY_ROWS,
                           false_failure_rate: float = FALSE_FAILURE_RATE) -> dict:
    """Derive a features suite (GX 1.x JSON shape, JSON-ready) from the training set, sized to a
    day of `daily_rows` rows.

    Every bound is set so that a healthy day (drawn like the training set) fails it with
    probability at most about `false_failure_rate`, and each expectation's notes say how
    (its meta carries the estimated rate as `false_failure_rate`):

    - not-null: the day's null count is binomial at the training null rate (its cautious upper
      value); `mostly` allows the smallest share whose tail is below the rate, at least 1%;
    - categories (not PII): the training values; strict, unless training holds values seen once
      (Good-Turing: unseen values then have a chance of singletons / rows), when `mostly` allows
      the share a healthy day reaches;
    - domain from the spec's bounds: strict (a value outside is never healthy);
    - range: training q0.001..q0.999 widened by 10% of its width; `mostly` allows the share of
      rows outside it that a healthy day reaches (binomial, at least 1%);
    - mean, p50 and p90: the day's statistic at `daily_rows` rows, from a bootstrap of the
      training values (see `_day_statistic_bounds`), at least 1% of |mean| / 5% of p90-p10
      (integer features: at least one step).

    PII features get only value-free checks (not-null, domain), so no training value is written
    into the suite.
    """
    if not isinstance(training, pd.DataFrame):
        raise TypeError("training must be a pandas DataFrame")
    missing = [f.name for f in features if f.name not in training.columns]
    if missing:
        raise QualityError(f"training set lacks feature column(s) {', '.join(missing)}")
    if len(training) == 0:
        raise QualityError("training set has no rows")
    n_day = int(daily_rows)
    if n_day < 1:
        raise QualityError(f"daily_rows must be a positive number of rows, got {daily_rows!r}")
    alpha = float(false_failure_rate)
    if not 0 < alpha < 0.5:
        raise QualityError(f"false_failure_rate must be in (0, 0.5), got {false_failure_rate!r}")
    exps: list[dict] = []
    n = len(training)
    per_day = f"{n_day} rows a day"

    def rate_text(r: float) -> str:
        if r == 0:
            return "0 (never on healthy data)"
        return f"{'below 1e-9' if r < 1e-9 else f'{r:.2g}'} a day at {per_day}"

    for f in features:
        col = training[f.name]
        nulls = int(col.isna().sum())
        share, tail = _binomial_allowance(n_day, _upper_rate(nulls, n), alpha, 0.01)
        mostly = _mostly(share)
        exps.append(_exp("expect_column_values_to_not_be_null", f.name, f"{f.name}.not_null",
                         f"training null rate {nulls / n:.4f}; allows {1 - mostly:.2%} missing; "
                         f"false-failure rate {rate_text(tail)} (binomial)",
                         mostly=mostly, _rate=tail))
        if f.kind == "categorical":
            if f.pii:
                continue
            counts = col.dropna().value_counts()
            values = sorted({to_jsonable(v) for v in counts.index},
                            key=lambda v: (str(type(v)), v))
            singletons = int((counts == 1).sum())
            unseen = _upper_rate(singletons, n) if singletons else 0.0
            kwargs: dict[str, Any] = {"value_set": values}
            if unseen:
                share, tail = _binomial_allowance(n_day, unseen, alpha, 0.0)
                if share > 0:
                    kwargs["mostly"] = _mostly(share)
                how = (f"{singletons} training values occur once, so a healthy day may hold "
                       f"values training never showed; allows {share:.2%} of them")
            else:
                tail, how = 0.0, "strict: every training value occurs more than once"
            exps.append(_exp("expect_column_values_to_be_in_set", f.name, f"{f.name}.categories",
                             f"the {len(values)} values seen in training; {how}; false-failure "
                             f"rate {rate_text(tail)}", _rate=tail, **kwargs))
            continue
        if f.kind != "numerical":
            raise QualityError(f"feature {f.name!r}: kind must be numerical or categorical, "
                               f"got {f.kind!r}")
        s = pd.to_numeric(col, errors="coerce").dropna()
        if f.bounds is not None:
            lo_b, hi_b = float(f.bounds[0]), float(f.bounds[1])
            exps.append(_exp("expect_column_values_to_be_between", f.name, f"{f.name}.domain",
                             f"valid domain [{lo_b:g}, {hi_b:g}] from the model spec; strict, "
                             "false-failure rate 0 (a value outside is never healthy)",
                             min_value=_num(lo_b), max_value=_num(hi_b), _rate=0.0))
        if f.pii or s.empty:
            continue
        v = s.to_numpy(dtype=float)
        discrete = bool(np.all(np.isclose(v % 1.0, 0.0)))
        q_lo, q_hi = (float(x) for x in s.quantile([0.001, 0.999]))
        width = max(q_hi - q_lo, 1.0 if discrete else abs(q_hi) * 0.01 or 1e-9)
        lo, hi = q_lo - 0.1 * width, q_hi + 0.1 * width
        if float(s.min()) >= 0 and lo < 0:
            lo = 0.0  # never negative in training: a negative value is out of range
        if discrete:
            lo, hi = math.floor(lo), math.ceil(hi)
        if f.bounds is not None:
            lo, hi = max(lo, float(f.bounds[0])), min(hi, float(f.bounds[1]))
        outside = int(((v < _num(lo)) | (v > _num(hi))).sum())
        share, tail = _binomial_allowance(n_day, _upper_rate(outside, len(v)), alpha, 0.01)
        exps.append(_exp("expect_column_values_to_be_between", f.name, f"{f.name}.range",
                         f"training q0.001..q0.999 = [{q_lo:.4g}, {q_hi:.4g}] widened by 10%; "
                         f"{outside} of {len(v)} training values outside; allows {share:.2%} "
                         f"outliers; false-failure rate {rate_text(tail)} (binomial)",
                         min_value=_num(lo), max_value=_num(hi), mostly=_mostly(share),
                         _rate=tail))
        mean = float(v.mean())
        m_lo, m_hi, draws, z = _day_statistic_bounds(v, lambda a: a.mean(axis=1), mean, n_day,
                                                     len(v), alpha, _seed(f.name + ".mean"))
        floor = max(0.01 * abs(mean), 1e-9)
        m_lo, m_hi = min(m_lo, mean - floor), max(m_hi, mean + floor)
        exps.append(_exp("expect_column_mean_to_be_between", f.name, f"{f.name}.mean",
                         f"training mean {mean:.4g}; a day of {n_day} rows falls outside "
                         f"[{m_lo:.4g}, {m_hi:.4g}] on about {alpha:.2g} of healthy days "
                         f"({draws} bootstrap days of {n_day} training rows, z {z:.2f}, widened "
                         f"for the {len(v)}-row training sample; at least 1% of |mean|)",
                         min_value=_num(m_lo), max_value=_num(m_hi), _rate=alpha))
        p10, p50, p90 = (float(x) for x in np.quantile(v, [0.1, 0.5, 0.9], method="nearest"))
        spread = max(p90 - p10, 1e-9)
        ranges = []
        for q, center in ((0.5, p50), (0.9, p90)):
            q_lo_b, q_hi_b, draws, z = _day_statistic_bounds(
                v, lambda a, q=q: np.quantile(a, q, axis=1, method="nearest"), center, n_day,
                len(v), alpha, _seed(f"{f.name}.p{int(q * 100)}"))
            m = 0.05 * spread
            if discrete:
                m = max(m, 1.0)  # integer quantiles jump by whole steps
            ranges.append([_num(min(q_lo_b, center - m)), _num(max(q_hi_b, center + m))])
        exps.append(_exp("expect_column_quantile_values_to_be_between", f.name,
                         f"{f.name}.quantiles",
                         f"training p50 {p50:.4g}, p90 {p90:.4g}; a day of {n_day} rows leaves "
                         f"each range on about {alpha:.2g} of healthy days ({draws} bootstrap "
                         f"days, GX's 'nearest' quantiles; at least 5% of p90-p10"
                         + (", one step" if discrete else "") + ")",
                         quantile_ranges={"quantiles": [0.5, 0.9], "value_ranges": ranges},
                         _rate=2 * alpha))
    total = sum(e["meta"]["false_failure_rate"] for e in exps)
    return {
        "name": name,
        "expectations": exps,
        "meta": {
            "generated_by": "watchkeeper.quality.suggest_features_suite",
            "training_rows": n,
            "rows_per_day": n_day,
            "false_failure_rate_per_day": total,
            "notes": [
                f"Derived from {n} training rows for days of {n_day} rows; review before use.",
                f"Each bound fails a healthy day with probability about {alpha:.2g} or less "
                f"(see each expectation's notes); all together about {total:.2g} of healthy "
                "days have a failed check. Unseen categories fail unless training shows rare "
                "values.",
            ],
        },
    }


def _exp(etype: str, column: str, eid: str, note: str, _rate: float | None = None,
         **kwargs) -> dict:
    meta: dict[str, Any] = {"id": eid, "notes": note}
    if _rate is not None:
        meta["false_failure_rate"] = float(f"{_rate:.3g}")
    return {"type": etype, "kwargs": {"column": column, **kwargs}, "meta": meta}


def _num(x: float) -> float | int:
    """Round to 6 significant digits so suites stay readable; ints stay ints."""
    if float(x).is_integer() and abs(x) < 1e15:
        return int(x)
    return float(f"{x:.6g}")


# ----- benchmark -------------------------------------------------------------------------------


def _bench_frame(rows: int, seed: int = 7) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    day = pd.Timestamp("2026-03-01")
    cats = ["grocery", "electronics", "travel", "fashion", "gaming", "restaurants", "fuel",
            "pharmacy"]
    data: dict[str, Any] = {
        "txn_id": pd.Series(np.arange(rows)).map("t{:08d}".format),
        "event_ts": day + pd.to_timedelta(rng.integers(0, 86_400, rows), unit="s"),
        "merchant_category": rng.choice(cats, rows),
        "country": rng.choice(["US", "DE", "FR", "GB", "ES", "IT", "NL"], rows),
        "customer_tier": rng.choice(["bronze", "silver", "gold"], rows),
        "hour": rng.integers(0, 24, rows),
        "txn_count_24h": rng.poisson(3, rows),
    }
    for j in range(13):
        data[f"x{j:02d}"] = rng.normal(10 * j, 1 + j, rows)
    return pd.DataFrame(data)


def _bench_suite_dict(frame: pd.DataFrame) -> dict:
    cat = ["merchant_category", "country", "customer_tier"]
    feats = [FeatureInfo(c, "categorical") for c in cat]
    feats += [FeatureInfo("hour", "numerical", (0, 23)), FeatureInfo("txn_count_24h", "numerical")]
    feats += [FeatureInfo(f"x{j:02d}", "numerical") for j in range(5)]
    suite = suggest_features_suite(frame.head(50_000), feats, name="bench")
    suite["expectations"] += [
        {"type": "expect_table_row_count_to_be_between",
         "kwargs": {"min_value": {"$PARAMETER": "min_rows"}}},
        {"type": "expect_table_columns_to_match_set",
         "kwargs": {"column_set": list(frame.columns), "exact_match": False}},
        {"type": "expect_column_values_to_be_between",
         "kwargs": {"column": "event_ts", "min_value": {"$PARAMETER": "day_start"},
                    "max_value": {"$PARAMETER": "day_end"}, "strict_max": True}},
        {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "event_ts"}},
    ] + [
        {"type": "expect_column_values_to_be_in_type_list",
         "kwargs": {"column": f"x{j:02d}", "type_list": ["float64"]}} for j in range(5)
    ]
    return suite


def bench_quality(rows: int = 1_000_000, *, repeats: int = 2, seed: int = 7) -> dict:
    """Time run_suite against bare GX (same suite, same frame) in this process.

    Both are warmed up on a small frame first so import and first-use costs count for neither;
    then they run interleaved `repeats` times and the best time of each is reported.
    """
    gx = _gx()
    from great_expectations.data_context.types.base import ProgressBarsConfig

    frame = _bench_frame(rows, seed)
    suite_dict = _bench_suite_dict(frame)
    ours = suite_from_dict(suite_dict, source="<bench>")
    params = {"min_rows": rows // 2, "day_start": pd.Timestamp("2026-03-01"),
              "day_end": pd.Timestamp("2026-03-02")}

    ctx = gx.get_context(mode="ephemeral")
    ctx.variables.progress_bars = ProgressBarsConfig(globally=False)
    bare_bd = (ctx.data_sources.add_pandas(name="bare").add_dataframe_asset(name="frame")
               .add_batch_definition_whole_dataframe(name="whole"))
    bare_suite = gx.ExpectationSuite(name="bare", expectations=[
        {"type": e["type"], "kwargs": e["kwargs"]} for e in suite_dict["expectations"]])

    def bare(df):
        return bare_bd.get_batch(batch_parameters={"dataframe": df}).validate(
            bare_suite, expectation_parameters=params)

    def wrapped(df):
        return run_suite(df, ours, stage="bench", parameters=params)

    small = frame.head(2_000)
    bare(small)
    wrapped(small)
    t_bare, t_ours = [], []
    success = None
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        bare(frame)
        t_bare.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        result = wrapped(frame)
        t_ours.append(time.perf_counter() - t0)
        success = result.success
    return {
        "quality_seconds_1m_rows": round(min(t_ours), 3),
        "quality_seconds_1m_rows_bare_gx": round(min(t_bare), 3),
        "quality_ratio_to_bare_gx": round(min(t_ours) / min(t_bare), 3),
        "quality_bench_rows": rows,
        "quality_bench_expectations": len(ours),
        "quality_bench_suite_success": success,
    }
