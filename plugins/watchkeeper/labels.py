"""Delayed labels: validate label files, keep every valid label, join them to predictions as known on a day.

Pure module: DataFrames and plain values in, DataFrames and dataclasses out. No Airflow, no
database, no file I/O. The `labels` DAG wires it to the sources and the store.

The three steps
===============

1. ``validate_labels(raw, ...)`` checks one label file (the labels that arrived on ``arrived_ds``)
   and returns the clean rows in a fixed schema plus a ``LabelIssues`` list. A missing or mistyped
   column rejects the file (no rows, one issue naming the file and column); a bad value rejects
   only its row (counted, with sample row numbers); a label observed after the end of
   ``arrived_ds`` is "from the future" and rejected.
2. ``merge_labels(known, new)`` adds the clean rows of one file to the label *history* (the DAG's
   per-model "joined labels" table). The history keeps every valid label row, superseded ones
   included, because a view "as known on ds" needs the value that was current on ds. Merging the
   same file again (a retry, a cleared task, a backfill) first removes that file's previous rows,
   so the history after any sequence of (re)runs is the union of the files' clean rows, in a
   canonical order: it depends on which files arrived, not on the order they were processed.
   Repeated ids are reported: the same value again is a ``duplicate``; a different value is a
   ``conflict`` resolved by the rule below.
3. ``join_labels(predictions, history, as_of_ds=..., max_label_delay_days=...)`` builds the view
   as known on ``as_of_ds``: only labels that arrived on or before it count; each label is matched
   by id to its prediction; labels for ids never predicted, labels that arrived more than
   ``max_label_delay_days`` after their prediction day, and labels that arrived before their
   prediction day are counted per arrival day and left out; the remaining labels resolve to one
   value per id; per prediction day it reports coverage, label lag and maturity.

The conflict rule: among an id's valid labels, the latest wins, ordered by ``label_ts``, then
``arrived_ds``, then ``source`` (file name), then row position in the file. Every key is data, so
the winner never depends on processing order. The lag of a labelled prediction counts from the
first arrival of the value that finally won (a same-value re-delivery does not make a label later).

Because a label that arrived too late is never joined, a prediction day's numbers stop changing
``max_label_delay_days`` after it (``DayCoverage.final``).

Ids are compared as text: integral numbers lose a trailing ``.0`` (``17``, ``17.0`` and ``"17"``
match), text is stripped of surrounding blanks. Dates (``ds``) are ``YYYY-MM-DD`` strings.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, timedelta
from enum import StrEnum
from typing import Any, Iterable, Iterator, Sequence

import numpy as np
import pandas as pd

from watchkeeper.performance import _plain, normalize_task

__all__ = [
    "HISTORY_COLUMNS",
    "DayCoverage",
    "IssueKind",
    "JoinResult",
    "LabelInputError",
    "LabelIssue",
    "LabelIssues",
    "empty_history",
    "join_labels",
    "merge_labels",
    "normalize_ids",
    "resolve_labels",
    "validate_labels",
]

# Columns of the label history (and of validate_labels' clean output), before any extra columns.
HISTORY_COLUMNS = ["id", "label", "label_ts", "arrived_ds", "source", "row"]
# Columns join_labels adds to the prediction rows; a prediction frame must not already have them.
JOINED_LABEL_COLUMNS = ["label", "label_ts", "label_arrived_ds", "label_lag_days", "label_source"]

SAMPLE = 10  # row numbers / ids / examples kept per issue: enough to find them, small for XCom
DS_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class LabelInputError(ValueError):
    """The caller passed something unusable (not the label data itself: that yields LabelIssues).

    Examples: a malformed ``arrived_ds``, a prediction frame without its id column, a history
    table missing a column. The message names the argument, column and reason.
    """


class IssueKind(StrEnum):
    MISSING_COLUMN = "missing_column"  # file rejected
    MISTYPED_COLUMN = "mistyped_column"  # file rejected
    MISSING_VALUE = "missing_value"  # row rejected: empty id, label or timestamp
    BAD_VALUE = "bad_value"  # row rejected: label not valid for the task
    BAD_TIMESTAMP = "bad_timestamp"  # row rejected: label timestamp unreadable
    FUTURE = "future"  # row rejected: observed after the end of its arrival day
    DUPLICATE = "duplicate"  # same id, same value again: counted, changes nothing
    CONFLICT = "conflict"  # same id, different value: the latest arrival wins
    UNKNOWN_ID = "unknown_id"  # not joined: no prediction has this id
    TOO_OLD = "too_old"  # not joined: arrived more than max_label_delay after its prediction day
    BEFORE_PREDICTION = "before_prediction"  # not joined: arrived before its prediction day
    DUPLICATE_PREDICTION = "duplicate_prediction"  # a prediction id seen twice: the latest is used


# Kinds after which no row of the file is used.
REJECTS_FILE = frozenset({IssueKind.MISSING_COLUMN, IssueKind.MISTYPED_COLUMN})


@dataclass(frozen=True)
class LabelIssue:
    """One kind of problem in one label file (or one arrival day), with a count and a reason."""

    kind: str
    count: int
    reason: str
    source: str | None = None
    arrived_ds: str | None = None
    column: str | None = None
    rows: tuple[int, ...] = ()  # sample of 1-based data-row positions in the file
    ids: tuple[str, ...] = ()  # sample of ids concerned
    examples: tuple[str, ...] = ()  # sample of human-readable cases

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": str(self.kind),
            "count": int(self.count),
            "reason": self.reason,
            "source": self.source,
            "arrived_ds": self.arrived_ds,
            "column": self.column,
            "rows": list(self.rows),
            "ids": list(self.ids),
            "examples": list(self.examples),
        }

    def message(self) -> str:
        where = self.source or "labels"
        if self.arrived_ds:
            where += f" (arrived {self.arrived_ds})"
        text = f"{where}: {self.kind}: {self.count} row(s): {self.reason}"
        if self.rows:
            text += f"; rows {', '.join(map(str, self.rows))}"
        return text


@dataclass
class LabelIssues:
    """The issues of a step; empty means clean. Iterable, addable, JSON-ready via to_dict."""

    items: list[LabelIssue] = field(default_factory=list)

    def add(self, issue: LabelIssue) -> None:
        if issue.count > 0:
            self.items.append(issue)

    def extend(self, other: "LabelIssues | Iterable[LabelIssue]") -> None:
        for issue in other:
            self.add(issue)

    def __add__(self, other: "LabelIssues") -> "LabelIssues":
        return LabelIssues(list(self.items) + list(other.items))

    def __iter__(self) -> Iterator[LabelIssue]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)

    def of_kind(self, kind: str) -> list[LabelIssue]:
        return [i for i in self.items if i.kind == kind]

    def count(self, kind: str) -> int:
        """Rows affected by one kind of issue."""
        return sum(i.count for i in self.items if i.kind == kind)

    def counts(self) -> dict[str, int]:
        """Rows affected per kind, kinds with no issue left out."""
        out: dict[str, int] = {}
        for i in self.items:
            out[str(i.kind)] = out.get(str(i.kind), 0) + i.count
        return out

    def for_day(self, arrived_ds: str) -> "LabelIssues":
        """The issues of one arrival day (what the DAG reports for its ds)."""
        return LabelIssues([i for i in self.items if i.arrived_ds == arrived_ds])

    def by_day(self) -> dict[str, dict[str, int]]:
        """Rows affected per arrival day and kind: the per-day report."""
        out: dict[str, dict[str, int]] = {}
        for i in self.items:
            day = out.setdefault(i.arrived_ds or "", {})
            day[str(i.kind)] = day.get(str(i.kind), 0) + i.count
        return out

    @property
    def file_rejected(self) -> bool:
        return any(i.kind in REJECTS_FILE for i in self.items)

    def messages(self) -> list[str]:
        return [i.message() for i in self.items]

    def to_dict(self) -> dict[str, Any]:
        return {"counts": self.counts(), "issues": [i.to_dict() for i in self.items]}


@dataclass(frozen=True)
class DayCoverage:
    """Label coverage of one prediction day, as known on ``as_of_ds``."""

    prediction_ds: str
    as_of_ds: str
    n_predictions: int
    n_labelled: int
    coverage: float | None  # labelled share; None when the day has no predictions
    lag_p50_days: float | None  # median days from prediction day to label arrival
    lag_p90_days: float | None
    mature: bool  # coverage >= maturity_threshold: metrics count in SLOs
    maturity_threshold: float
    final: bool  # as_of_ds >= prediction day + max_label_delay: no valid label can still arrive
    new_labels: int  # labels of this day that arrived on as_of_ds (the day is restated when > 0)

    def to_dict(self) -> dict[str, Any]:
        return {k: _plain(v) for k, v in self.__dict__.items()}


@dataclass
class JoinResult:
    """The labels joined to predictions as known on ``as_of_ds``.

    ``joined`` holds one row per labelled prediction: the prediction's own columns plus ``label``,
    ``label_ts``, ``label_arrived_ds`` (first arrival of the winning value), ``label_lag_days`` and
    ``label_source`` (and any extra label columns); its prediction-day column ``ds_col`` holds
    'YYYY-MM-DD' text. It is not part of ``to_dict`` (it is data, not a summary).
    """

    as_of_ds: str
    max_label_delay_days: int
    maturity_threshold: float
    joined: pd.DataFrame
    days: list[DayCoverage]
    issues: LabelIssues
    unknown_ids: int
    too_old: int
    before_prediction: int
    labels_considered: int  # history rows arrived on or before as_of_ds
    predictions_after_as_of: int  # prediction rows dated after as_of_ds, left out
    ds_col: str = "ds"  # the prediction-day column of `joined`, as 'YYYY-MM-DD' text

    def day(self, ds: str) -> DayCoverage | None:
        return next((d for d in self.days if d.prediction_ds == ds), None)

    def rows_for_day(self, ds: str) -> pd.DataFrame:
        return self.joined[self.joined[self.ds_col] == ds].reset_index(drop=True)

    @property
    def touched_days(self) -> list[str]:
        """Prediction days that received a label arriving on as_of_ds: the days to restate."""
        return [d.prediction_ds for d in self.days if d.new_labels > 0]

    def to_dict(self) -> dict[str, Any]:
        return {
            "as_of_ds": self.as_of_ds,
            "max_label_delay_days": self.max_label_delay_days,
            "maturity_threshold": self.maturity_threshold,
            "n_joined": int(len(self.joined)),
            "days": [d.to_dict() for d in self.days],
            "touched_days": self.touched_days,
            "unknown_ids": self.unknown_ids,
            "too_old": self.too_old,
            "before_prediction": self.before_prediction,
            "labels_considered": self.labels_considered,
            "predictions_after_as_of": self.predictions_after_as_of,
            "issues": self.issues.to_dict(),
        }


# ---------------------------------------------------------------------------------------------
# helpers


def _check_ds(value: Any, name: str) -> str:
    if isinstance(value, (pd.Timestamp,)):
        value = value.date()
    if isinstance(value, date):
        return value.isoformat()
    if not isinstance(value, str) or not DS_RE.match(value):
        raise LabelInputError(f"{name}={value!r}: expected a date as 'YYYY-MM-DD'")
    try:
        date.fromisoformat(value)
    except ValueError as exc:
        raise LabelInputError(f"{name}={value!r}: not a calendar date ({exc})") from None
    return value


def _ds_series(values: pd.Series, what: str) -> pd.Series:
    """Prediction days as 'YYYY-MM-DD' strings, whatever the column holds (str, date, datetime)."""
    # A window holds a handful of distinct days in hundreds of thousands of rows: parse each once.
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    if len(uniques) < len(values) and (codes >= 0).all():
        try:
            days = _ds_series_distinct(pd.Series(uniques), what)
        except LabelInputError:
            pass  # parse every row: the error names the bad rows
        else:
            return pd.Series(days.to_numpy(dtype=object)[codes], index=values.index)
    return _ds_series_distinct(values, what)


def _ds_series_distinct(values: pd.Series, what: str) -> pd.Series:
    if pd.api.types.is_datetime64_any_dtype(values):
        parsed = values
    else:
        parsed = pd.to_datetime(values.astype("string"), errors="coerce", format="ISO8601")
    bad = parsed.isna()
    if bad.any():
        pos = np.flatnonzero(bad.to_numpy())[:SAMPLE] + 1
        raise LabelInputError(
            f"{what}: {int(bad.sum())} value(s) are not dates (rows {', '.join(map(str, pos))}, "
            f"e.g. {values.iloc[pos[0] - 1]!r})"
        )
    if getattr(parsed.dt, "tz", None) is not None:
        parsed = parsed.dt.tz_convert("UTC").dt.tz_localize(None)
    return parsed.dt.strftime("%Y-%m-%d")


_ID_DTYPE = "string[pyarrow]"


def normalize_ids(values: pd.Series) -> pd.Series:
    """Ids as text so label and prediction ids compare equal across file formats.

    Integral numbers lose a trailing '.0' (a CSV read may turn int ids into floats when a value is
    missing); text is stripped. Missing ids stay missing (<NA>).
    """
    s = pd.Series(values)
    if pd.api.types.is_bool_dtype(s):
        return s.astype(_ID_DTYPE)
    if pd.api.types.is_numeric_dtype(s):
        arr = s.to_numpy(dtype="float64", na_value=np.nan)
        finite = np.isfinite(arr)
        integral = finite & (np.mod(arr, 1) == 0)
        out = pd.Series(pd.NA, index=s.index, dtype=_ID_DTYPE)
        if integral.any():
            out[integral] = pd.Series(arr[integral], index=s.index[integral]).astype("int64").astype(_ID_DTYPE)
        other = finite & ~integral
        if other.any():
            out[other] = s[other].astype(_ID_DTYPE)
        return out
    # Arrow-backed strings: strip/match run vectorized instead of once per id in Python.
    out = s.astype(_ID_DTYPE).str.strip()
    # A text column may still hold numbers written as '17.0'.
    m = out.str.fullmatch(r"-?\d+\.0+").fillna(False)
    if m.any():
        out[m] = out[m].str.replace(r"\.0+$", "", regex=True)
    return out.mask(out == "", pd.NA)


def _positions(mask: np.ndarray) -> tuple[int, ...]:
    return tuple(int(p) + 1 for p in np.flatnonzero(mask)[:SAMPLE])


def empty_history(extra_cols: Sequence[str] = ()) -> pd.DataFrame:
    """An empty label history with the right dtypes (the DAG's table before its first file)."""
    df = pd.DataFrame(
        {
            "id": pd.Series(dtype="string"),
            "label": pd.Series(dtype="float64"),
            "label_ts": pd.Series(dtype="datetime64[ns]"),
            "arrived_ds": pd.Series(dtype="object"),
            "source": pd.Series(dtype="object"),
            "row": pd.Series(dtype="int64"),
        }
    )
    for c in extra_cols:
        df[c] = pd.Series(dtype="object")
    return df


# ---------------------------------------------------------------------------------------------
# 1. validate one label file

_TRUE = {"1", "1.0", "true", "t", "yes", "y"}
_FALSE = {"0", "0.0", "false", "f", "no", "n"}


def _coerce_labels(s: pd.Series, task: str) -> tuple[pd.Series, np.ndarray, str]:
    """Label values as float64, a mask of values invalid for the task, and the expected form."""
    if task == "binary_classification":
        expected = "0 or 1 (also true/false)"
        if pd.api.types.is_bool_dtype(s):
            num = s.astype("float64")
        elif pd.api.types.is_numeric_dtype(s):
            num = pd.to_numeric(s, errors="coerce").astype("float64")
        else:
            text = s.astype("string").str.strip().str.lower()
            num = pd.Series(np.nan, index=s.index, dtype="float64")
            num[text.isin(_TRUE).fillna(False).to_numpy()] = 1.0
            num[text.isin(_FALSE).fillna(False).to_numpy()] = 0.0
        bad = s.notna().to_numpy() & ~num.isin([0.0, 1.0]).to_numpy()
        return num.where(~bad), bad, expected
    if pd.api.types.is_bool_dtype(s):
        num = s.astype("float64")
    else:
        num = pd.to_numeric(s, errors="coerce").astype("float64")
    arr = num.to_numpy()
    if task == "ranking":
        expected = "a relevance number >= 0"
        bad = s.notna().to_numpy() & ~(np.isfinite(arr) & (arr >= 0))
    else:
        expected = "a finite number"
        bad = s.notna().to_numpy() & ~np.isfinite(arr)
    return num.where(~bad), bad, expected


def _parse_ts(s: pd.Series) -> pd.Series:
    """Timestamps to naive datetime64 (aware ones converted to UTC); unreadable -> NaT."""
    if pd.api.types.is_datetime64_any_dtype(s):
        parsed = s
    else:
        parsed = pd.to_datetime(s.astype("string"), errors="coerce", format="ISO8601", utc=True)
    if getattr(parsed.dt, "tz", None) is not None:
        parsed = parsed.dt.tz_convert("UTC").dt.tz_localize(None)
    return parsed.astype("datetime64[ns]")


def validate_labels(
    raw: pd.DataFrame,
    *,
    id_col: str,
    label_col: str,
    arrived_ds: str,
    task: str,
    source: str,
    ts_col: str | None = None,
    extra_cols: Sequence[str] = (),
) -> tuple[pd.DataFrame, LabelIssues]:
    """Check one label file; return its clean rows (HISTORY_COLUMNS + extra_cols) and the issues.

    ``task``: binary_classification (labels 0/1, true/false), regression (finite numbers) or
    ranking (relevance >= 0). ``ts_col``: when the outcome was observed; None means the file has
    no such column and the arrival day stands in for it. A label observed after the end of
    ``arrived_ds`` is from the future. Timestamps with a zone are compared in UTC, naive ones as
    they are (the clock ``ds`` is in). ``source`` (the file name) appears in every message.
    """
    arrived_ds = _check_ds(arrived_ds, "arrived_ds")
    task = normalize_task(task)
    if not isinstance(raw, pd.DataFrame):
        raise LabelInputError(f"{source}: expected a DataFrame of labels, got {type(raw).__name__}")
    issues = LabelIssues()
    n = len(raw)
    required = [id_col, label_col] + ([ts_col] if ts_col else []) + list(extra_cols)
    missing = [c for c in required if c not in raw.columns]
    for c in missing:
        issues.add(
            LabelIssue(
                IssueKind.MISSING_COLUMN,
                max(n, 1),
                f"column {c!r} is missing (columns present: {', '.join(map(str, raw.columns)) or 'none'}); "
                f"the file's {n} row(s) are not used",
                source=source,
                arrived_ds=arrived_ds,
                column=c,
            )
        )
    if missing:
        return empty_history(extra_cols), issues

    raw = raw.reset_index(drop=True)
    row = np.arange(1, n + 1, dtype="int64")
    keep = np.ones(n, dtype=bool)

    ids = normalize_ids(raw[id_col])
    labels, bad_label, expected = _coerce_labels(raw[label_col], task)
    present = raw[label_col].notna().to_numpy()
    if present.any() and not (present & ~bad_label).any():
        first = int(np.flatnonzero(present)[0])
        issues.add(
            LabelIssue(
                IssueKind.MISTYPED_COLUMN,
                n,
                f"column {label_col!r} holds no value readable as {expected} for a {task} model "
                f"(dtype {raw[label_col].dtype}, e.g. {raw[label_col].iloc[first]!r} in row {first + 1}); "
                f"the file's {n} row(s) are not used",
                source=source,
                arrived_ds=arrived_ds,
                column=label_col,
                rows=(first + 1,),
            )
        )
        return empty_history(extra_cols), issues

    if ts_col:
        ts_raw = raw[ts_col]
        ts = _parse_ts(ts_raw)
        ts_present = ts_raw.notna().to_numpy()
        ts_bad = ts_present & ts.isna().to_numpy()
        numeric_ts = pd.api.types.is_numeric_dtype(ts_raw) and not pd.api.types.is_bool_dtype(ts_raw)
        if ts_present.any() and (numeric_ts or not (ts_present & ~ts_bad).any()):
            first = int(np.flatnonzero(ts_present)[0])
            issues.add(
                LabelIssue(
                    IssueKind.MISTYPED_COLUMN,
                    n,
                    f"column {ts_col!r} holds no readable timestamp (dtype {ts_raw.dtype}, e.g. "
                    f"{ts_raw.iloc[first]!r} in row {first + 1}; expected ISO 8601 such as "
                    f"'2024-05-01T13:45:00'); the file's {n} row(s) are not used",
                    source=source,
                    arrived_ds=arrived_ds,
                    column=ts_col,
                    rows=(first + 1,),
                )
            )
            return empty_history(extra_cols), issues
    else:
        ts = pd.Series(pd.Timestamp(arrived_ds), index=raw.index, dtype="datetime64[ns]")
        ts_present = np.ones(n, dtype=bool)
        ts_bad = np.zeros(n, dtype=bool)

    def reject(mask: np.ndarray, kind: str, column: str | None, reason: str, examples=()) -> None:
        nonlocal keep
        mask = mask & keep  # a row is counted once, under its first problem
        if mask.any():
            issues.add(
                LabelIssue(
                    kind,
                    int(mask.sum()),
                    reason,
                    source=source,
                    arrived_ds=arrived_ds,
                    column=column,
                    rows=_positions(mask),
                    ids=tuple(str(i) for i in ids[mask].dropna().head(SAMPLE)),
                    examples=tuple(examples),
                )
            )
            keep = keep & ~mask

    reject(ids.isna().to_numpy(), IssueKind.MISSING_VALUE, id_col, f"column {id_col!r} is empty")
    reject(~present, IssueKind.MISSING_VALUE, label_col, f"column {label_col!r} is empty")
    bad_examples = [
        f"row {p + 1}: {raw[label_col].iloc[p]!r}" for p in np.flatnonzero(bad_label & keep)[:SAMPLE]
    ]
    reject(
        bad_label,
        IssueKind.BAD_VALUE,
        label_col,
        f"column {label_col!r} must be {expected} for a {task} model",
        bad_examples,
    )
    if ts_col:
        reject(~ts_present, IssueKind.MISSING_VALUE, ts_col, f"column {ts_col!r} is empty")
        ts_examples = [
            f"row {p + 1}: {raw[ts_col].iloc[p]!r}" for p in np.flatnonzero(ts_bad & keep)[:SAMPLE]
        ]
        reject(
            ts_bad,
            IssueKind.BAD_TIMESTAMP,
            ts_col,
            f"column {ts_col!r} is not a readable timestamp (expected ISO 8601)",
            ts_examples,
        )
        day_end = pd.Timestamp(arrived_ds) + pd.Timedelta(days=1)
        future = (ts >= day_end).fillna(False).to_numpy()
        fut_examples = [
            f"row {p + 1}: {ts.iloc[p].isoformat()}" for p in np.flatnonzero(future & keep)[:SAMPLE]
        ]
        reject(
            future,
            IssueKind.FUTURE,
            ts_col,
            f"observed after the end of its arrival day {arrived_ds} (label from the future)",
            fut_examples,
        )

    clean = pd.DataFrame(
        {
            "id": ids[keep].reset_index(drop=True),
            "label": labels[keep].reset_index(drop=True).astype("float64"),
            "label_ts": ts[keep].reset_index(drop=True).astype("datetime64[ns]"),
            "arrived_ds": arrived_ds,
            "source": source,
            "row": row[keep],
        }
    )
    for c in extra_cols:
        clean[c] = raw[c][keep].reset_index(drop=True)
    clean["arrived_ds"] = clean["arrived_ds"].astype("object")
    clean["source"] = clean["source"].astype("object")
    return clean, issues


# ---------------------------------------------------------------------------------------------
# 2. merge a file into the history

_ORDER = ["label_ts", "arrived_ds", "source", "row"]  # the conflict rule: last in this order wins


def _check_history(df: pd.DataFrame, name: str) -> pd.DataFrame:
    if not isinstance(df, pd.DataFrame):
        raise LabelInputError(f"{name}: expected a DataFrame, got {type(df).__name__}")
    missing = [c for c in HISTORY_COLUMNS if c not in df.columns]
    if missing:
        raise LabelInputError(
            f"{name}: label history lacks column(s) {', '.join(missing)} "
            f"(expected {', '.join(HISTORY_COLUMNS)}; build it with validate_labels/merge_labels)"
        )
    out = df.copy()
    out["id"] = normalize_ids(out["id"])
    try:
        out["label"] = pd.to_numeric(out["label"], errors="raise").astype("float64")
    except (ValueError, TypeError) as exc:
        raise LabelInputError(f"{name}: column 'label' must be numeric ({exc})") from None
    out["label_ts"] = _parse_ts(out["label_ts"])
    for v in pd.unique(out["arrived_ds"]):
        _check_ds(v, f"{name}.arrived_ds")
    out["arrived_ds"] = out["arrived_ds"].astype("object")
    out["source"] = out["source"].astype("object")
    out["row"] = out["row"].astype("int64")
    return out


def _canonical(df: pd.DataFrame) -> pd.DataFrame:
    return df.sort_values(["arrived_ds", "source", "row"], kind="mergesort").reset_index(drop=True)


def merge_labels(
    known: pd.DataFrame | None,
    new: pd.DataFrame,
    *,
    replace_file: tuple[str, str] | None = None,
) -> tuple[pd.DataFrame, LabelIssues]:
    """Add one or more files' clean rows to the label history; report repeated ids.

    Rows already in ``known`` from the same (arrived_ds, source) are replaced, so re-running a day
    is idempotent. ``replace_file=(arrived_ds, source)`` names the file this merge stands for, so
    that its earlier rows go even when ``new`` is empty (the file is now rejected or empty). The result holds every valid label row in canonical order (arrived_ds, source,
    row); superseded values stay, because ``join_labels`` needs them for earlier as-of views.
    Issues (per new file): ``duplicate`` for an id repeated with the same value, ``conflict`` for
    an id with a different value (the winner is named; the latest arrival wins, see module doc).
    Counts are extra rows: the rows this file adds for ids that already had a label.
    """
    new = _check_history(new, "new labels")
    known = empty_history() if known is None else _check_history(known, "known labels")
    extra = [c for c in new.columns if c not in HISTORY_COLUMNS]
    for c in extra:
        if c not in known.columns:
            known[c] = pd.Series(dtype="object", index=known.index)
    files = set(zip(new["arrived_ds"], new["source"]))
    if replace_file is not None:
        files.add((_check_ds(replace_file[0], "replace_file[0]"), str(replace_file[1])))
    if len(known):
        same_file = pd.Series(list(zip(known["arrived_ds"], known["source"])), index=known.index).isin(files)
        known = known[~same_file.to_numpy()]
    combined = _canonical(pd.concat([known, new], ignore_index=True)) if len(known) else _canonical(new)
    issues = LabelIssues()
    if not len(new):
        return combined, issues

    touched = combined[combined["id"].isin(set(new["id"]))]
    total = touched.groupby("id").size()
    rep = touched[touched["id"].map(total).to_numpy() > 1]
    if len(rep):
        n_values = rep.groupby("id")["label"].nunique()
        ordered = rep.sort_values(["id"] + _ORDER, kind="mergesort")
        winners = ordered.groupby("id").tail(1).set_index("id")
        is_new = pd.Series(list(zip(rep["arrived_ds"], rep["source"])), index=rep.index).isin(files)
        for (ds, src), part in rep[is_new.to_numpy()].groupby(["arrived_ds", "source"], sort=True):
            mine = part.groupby("id").size()
            # extra rows this file adds: all of its rows for an id labelled elsewhere too, all but
            # one when the file alone repeats the id
            extra = mine - (mine == total.reindex(mine.index)).astype(int)
            for conflict, kind in ((False, IssueKind.DUPLICATE), (True, IssueKind.CONFLICT)):
                ids_k = extra[(extra > 0) & ((n_values.reindex(extra.index) > 1) == conflict)]
                count = int(ids_k.sum())
                if count <= 0:
                    continue
                sample_ids = list(ids_k.index[:SAMPLE])
                examples = []
                if conflict:
                    for i in sample_ids:
                        rows = ordered[ordered["id"] == i]
                        vals = "; ".join(
                            f"{_fmt_label(r.label)} ({r.source} row {r.row}, arrived {r.arrived_ds}, "
                            f"label_ts {r.label_ts.isoformat() if pd.notna(r.label_ts) else '-'})"
                            for r in rows.itertuples()
                        )
                        w = winners.loc[i]
                        examples.append(
                            f"id {i}: {vals} -> {_fmt_label(w['label'])} from {w['source']} row {w['row']}"
                        )
                    reason = (
                        "id already labelled with a different value; the latest arrival wins "
                        "(ordered by label_ts, then arrived_ds, then file, then row)"
                    )
                else:
                    reason = "id already labelled with the same value; counted, nothing changes"
                issues.add(
                    LabelIssue(
                        kind,
                        count,
                        reason,
                        source=str(src),
                        arrived_ds=str(ds),
                        column="label",
                        rows=tuple(int(r) for r in part[part["id"].isin(sample_ids)]["row"].head(SAMPLE)),
                        ids=tuple(str(i) for i in sample_ids),
                        examples=tuple(examples),
                    )
                )
    return combined, issues


def _fmt_label(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else repr(float(v))


def resolve_labels(history: pd.DataFrame, *, as_of_ds: str | None = None) -> pd.DataFrame:
    """One label per id from the history, as known on ``as_of_ds`` (all of it when None).

    Columns: HISTORY_COLUMNS (+ extras) of the winning row, with ``arrived_ds`` replaced by the
    first arrival of the winning value (in the run of equal values that ends with the winner),
    and the winner's own arrival in ``winner_arrived_ds``.
    """
    h = _check_history(history, "label history")
    if as_of_ds is not None:
        as_of_ds = _check_ds(as_of_ds, "as_of_ds")
        h = h[h["arrived_ds"] <= as_of_ds]
    return _resolve(h)


def _resolve(h: pd.DataFrame, id_col: str = "id") -> pd.DataFrame:
    if not len(h):
        out = h.copy()
        out["winner_arrived_ds"] = pd.Series(dtype="object")
        return out.reset_index(drop=True)
    ordered = h.sort_values([id_col] + _ORDER, kind="mergesort").reset_index(drop=True)
    n = len(ordered)
    ids = ordered[id_col].to_numpy()
    lab = ordered["label"].to_numpy(dtype="float64")
    id_change = np.r_[True, ids[1:] != ids[:-1]]
    starts = np.flatnonzero(id_change)
    ends = np.r_[starts[1:] - 1, n - 1]  # the winner: last row of each id in winning order
    codes = np.cumsum(id_change) - 1
    # Runs of equal values per id, in winning order; the last run holds the winner. Its first
    # arrival is when the winning value became known. (Numeric group-bys: object ones are slow.)
    run = np.cumsum(id_change | np.r_[True, lab[1:] != lab[:-1]])
    in_last = run == run[ends][codes]
    days = pd.to_datetime(ordered["arrived_ds"], format="%Y-%m-%d").to_numpy().astype("datetime64[D]").astype("int64")
    first = pd.Series(days[in_last]).groupby(codes[in_last]).min().to_numpy()
    winners = ordered.iloc[ends].reset_index(drop=True)
    winners["winner_arrived_ds"] = winners["arrived_ds"]
    # format each distinct day once, not every winner's
    distinct, inverse = np.unique(first, return_inverse=True)
    text = pd.Series(distinct.astype("datetime64[D]")).dt.strftime("%Y-%m-%d").to_numpy(dtype=object)
    winners["arrived_ds"] = pd.Series(text[inverse.ravel()], index=winners.index, dtype="object")
    return winners


# ---------------------------------------------------------------------------------------------
# 3. join to predictions as known on a day


def join_labels(
    predictions: pd.DataFrame,
    labels: pd.DataFrame,
    *,
    as_of_ds: str,
    max_label_delay_days: int,
    id_col: str = "id",
    ds_col: str = "ds",
    maturity_threshold: float = 0.9,
) -> JoinResult:
    """Join the label history to predictions as known on ``as_of_ds``.

    ``predictions``: one row per prediction with ``id_col`` and ``ds_col`` (its prediction day)
    and any other columns (score, predicted label, segments, amounts), all carried into
    ``joined``. Pass the predictions of at least the last ``max_label_delay_days`` days; a label
    whose id is in none of the given predictions counts as ``unknown_id``, so passing a longer
    range lets a late label for an older prediction count as ``too_old`` instead.

    ``labels``: the history from ``merge_labels`` (or clean rows from ``validate_labels``). Rows
    that arrived after ``as_of_ds`` are ignored, which is what makes past views reproducible.

    A label is joined when its id was predicted on a day d with d <= arrived_ds <= d + delay.
    Per prediction day (every day in ``predictions`` up to ``as_of_ds``): coverage = labelled /
    predictions, lag p50/p90 in days (linear-interpolated quantiles), mature = coverage >=
    ``maturity_threshold``.

    ``issues`` covers every arrival day up to ``as_of_ds`` (a view is rebuilt whole); the DAG
    reports ``result.issues.for_day(ds)`` for the file of its own day.
    """
    as_of_ds = _check_ds(as_of_ds, "as_of_ds")
    if not isinstance(max_label_delay_days, (int, np.integer)) or max_label_delay_days < 0:
        raise LabelInputError(f"max_label_delay_days={max_label_delay_days!r}: expected an integer >= 0")
    if not 0 < maturity_threshold <= 1:
        raise LabelInputError(f"maturity_threshold={maturity_threshold!r}: expected a share in (0, 1]")
    if not isinstance(predictions, pd.DataFrame):
        raise LabelInputError(f"predictions: expected a DataFrame, got {type(predictions).__name__}")
    for c in (id_col, ds_col):
        if c not in predictions.columns:
            raise LabelInputError(
                f"predictions: column {c!r} is missing (columns: {', '.join(map(str, predictions.columns))})"
            )
    clash = [c for c in JOINED_LABEL_COLUMNS + ["_prediction_ds"] if c in predictions.columns]
    if clash:
        raise LabelInputError(
            f"predictions: column(s) {', '.join(clash)} would be overwritten by the joined labels; rename them"
        )
    hist = _check_history(labels, "labels")
    issues = LabelIssues()

    preds = predictions.reset_index(drop=True).copy()
    preds["_prediction_ds"] = _ds_series(preds[ds_col], f"predictions.{ds_col}")
    after = preds["_prediction_ds"] > as_of_ds
    n_after = int(after.sum())
    preds = preds[~after.to_numpy()]
    preds["_key"] = normalize_ids(preds[id_col])
    no_id = preds["_key"].isna().to_numpy()
    if no_id.any():
        issues.add(
            LabelIssue(
                IssueKind.MISSING_VALUE,
                int(no_id.sum()),
                f"prediction(s) without an id in column {id_col!r} cannot receive a label; left out "
                "of coverage",
                source="predictions",
                arrived_ds=as_of_ds,
                column=id_col,
                rows=_positions(no_id),
            )
        )
    preds = preds[~no_id]
    # Ids are matched as integer codes, factorized once over predictions and labels together:
    # hashing (Arrow) strings in every map, merge, sort and uniqueness check below cost seconds
    # a day on a 15-day window.
    h = hist[hist["arrived_ds"] <= as_of_ds].copy()
    codes, _uniques = pd.factorize(pd.concat([preds["_key"], h["id"]], ignore_index=True), use_na_sentinel=True)
    preds["_code"] = codes[:len(preds)]
    h["_code"] = codes[len(preds):]
    # The same id predicted twice: keep the latest prediction (by day, then row), and say so.
    preds["_pos"] = np.arange(len(preds))
    preds = preds.sort_values(["_prediction_ds", "_pos"], kind="mergesort")
    dup = preds.duplicated("_code", keep="last")
    if dup.any():
        issues.add(
            LabelIssue(
                IssueKind.DUPLICATE_PREDICTION,
                int(dup.sum()),
                f"prediction id(s) appear more than once in column {id_col!r}; labels join to the "
                "latest prediction of each id",
                source="predictions",
                arrived_ds=as_of_ds,
                column=id_col,
                ids=tuple(preds.loc[dup, "_key"].head(SAMPLE).astype(str)),
            )
        )
    all_preds = preds.sort_values("_pos", kind="mergesort")
    preds_unique = preds[~dup.to_numpy()].sort_values("_pos", kind="mergesort")

    # Classify every label row known on as_of_ds.
    pred_day = preds_unique.set_index("_code")["_prediction_ds"]
    h["_pred_ds"] = h["_code"].map(pred_day)
    arrived = pd.to_datetime(h["arrived_ds"])
    lag = (arrived - pd.to_datetime(h["_pred_ds"])).dt.days
    unknown = h["_pred_ds"].isna().to_numpy()
    before = (~unknown) & (lag < 0).to_numpy()
    too_old = (~unknown) & (lag > max_label_delay_days).to_numpy()
    for mask, kind, reason in (
        (unknown, IssueKind.UNKNOWN_ID, "no prediction has this id; the label is not joined"),
        (
            too_old,
            IssueKind.TOO_OLD,
            f"arrived more than max_label_delay ({max_label_delay_days} days) after its prediction day; "
            "not joined",
        ),
        (before, IssueKind.BEFORE_PREDICTION, "arrived before its prediction day; not joined"),
    ):
        if not mask.any():
            continue
        sub = h[mask]
        for (ds, src), part in sub.groupby(["arrived_ds", "source"], sort=True):
            examples = ()
            if kind != IssueKind.UNKNOWN_ID:
                examples = tuple(
                    f"id {i}: predicted {p}, arrived {a}"
                    for i, p, a in part[["id", "_pred_ds", "arrived_ds"]].head(SAMPLE).itertuples(index=False)
                )
            issues.add(
                LabelIssue(
                    kind,
                    len(part),
                    reason,
                    source=str(src),
                    arrived_ds=str(ds),
                    column="id",
                    rows=tuple(int(r) for r in part["row"].head(SAMPLE)),
                    ids=tuple(part["id"].head(SAMPLE).astype(str)),
                    examples=examples,
                )
            )
    valid = h[~(unknown | before | too_old)].drop(columns="_pred_ds")
    resolved = _resolve(valid, id_col="_code")

    # Extra label columns (validate_labels' extra_cols) travel along; a name also used by a
    # prediction column is an error rather than a silent choice of one side.
    extras = [c for c in resolved.columns if c not in HISTORY_COLUMNS + ["winner_arrived_ds", "_code"]]
    clash = [c for c in extras if c in preds.columns]
    if clash:
        raise LabelInputError(
            f"labels: extra column(s) {', '.join(clash)} also exist in predictions; rename one side"
        )
    lab = resolved.rename(
        columns={"arrived_ds": "label_arrived_ds", "source": "label_source"}
    )[["_code", "label", "label_ts", "label_arrived_ds", "label_source", "winner_arrived_ds"] + extras]
    # one row per code on both sides (duplicates were dropped, _resolve keeps one winner per id)
    joined = preds_unique.merge(lab, on="_code", how="inner")
    joined["label_lag_days"] = (
        pd.to_datetime(joined["label_arrived_ds"]) - pd.to_datetime(joined["_prediction_ds"])
    ).dt.days.astype("int64")
    joined = joined.sort_values("_pos", kind="mergesort")

    # Per prediction day. Duplicated prediction ids count once (their latest prediction).
    days: list[DayCoverage] = []
    n_pred = preds_unique.groupby("_prediction_ds").size()
    extra_days = sorted(set(all_preds["_prediction_ds"]) - set(n_pred.index))
    by_day = {d: g for d, g in joined.groupby("_prediction_ds")}
    for d in sorted(list(n_pred.index) + extra_days):
        g = by_day.get(d)
        n = int(n_pred.get(d, 0))
        k = 0 if g is None else len(g)
        lags = None if g is None else g["label_lag_days"].to_numpy(dtype="float64")
        cov = (k / n) if n else None
        final = date.fromisoformat(as_of_ds) >= date.fromisoformat(d) + timedelta(days=max_label_delay_days)
        new = 0 if g is None else int((g["winner_arrived_ds"] == as_of_ds).sum())
        days.append(
            DayCoverage(
                prediction_ds=d,
                as_of_ds=as_of_ds,
                n_predictions=n,
                n_labelled=k,
                coverage=cov,
                lag_p50_days=float(np.quantile(lags, 0.5)) if k else None,
                lag_p90_days=float(np.quantile(lags, 0.9)) if k else None,
                mature=bool(cov is not None and cov >= maturity_threshold),
                maturity_threshold=float(maturity_threshold),
                final=bool(final),
                new_labels=new,
            )
        )

    joined[ds_col] = joined["_prediction_ds"]
    joined = joined.drop(columns=["_key", "_code", "_pos", "winner_arrived_ds", "_prediction_ds"]).reset_index(drop=True)
    return JoinResult(
        as_of_ds=as_of_ds,
        max_label_delay_days=int(max_label_delay_days),
        maturity_threshold=float(maturity_threshold),
        joined=joined,
        days=days,
        issues=issues,
        unknown_ids=int(unknown.sum()),
        too_old=int(too_old.sum()),
        before_prediction=int(before.sum()),
        labels_considered=int(len(h)),
        predictions_after_as_of=n_after,
        ds_col=ds_col,
    )


# ---------------------------------------------------------------------------------------------
# 4. label lag: are the labels arriving later than this model's own normal?
#
# Appended for the label_lag alert; nothing above depends on it. Two pure steps: `label_timing`
# learns how long labels normally take from the versions restate stored (one coverage per
# prediction-day and known_on day), `label_lag_check` compares the prediction-days as known on
# ds with it. The shell (watchkeeper.day_alerts) reads the store and raises the alert.
#
# Two milestones per prediction-day: *half-way* (coverage >= maturity threshold / 2) and
# *mature* (coverage >= maturity threshold). A day is late when it is older than the normal age
# at a milestone plus a tolerance and has not reached it. The stored lag p50/p90 are not used:
# they describe the labels that have arrived, so a day whose labels are missing looks fast (and
# a day with none has no lag at all); the age of a day that has not reached a milestone is a
# lower bound on its true time to it.

__all__ += ["LAG_TOLERANCE_DAYS", "LabelLagCheck", "LabelTiming", "LateLabelDay",
            "label_lag_check", "label_timing"]

LAG_TOLERANCE_DAYS = 1  # label timing jitters by a day (arrival hour vs the run); two days is news
LAG_HEALTHY_DAYS = 14  # like the estimate's normal error: learned from the model's first days
LAG_MIN_HEALTHY_DAYS = 3  # fewer matured days is not a normal, it is an anecdote
LAG_QUANTILE = 0.9  # the normal covers the model's slower healthy days, not only its typical one


@dataclass(frozen=True)
class LabelTiming:
    """How long this model's labels normally take, in days after the prediction-day.

    ``maturity_days`` and ``halfway_days`` are the p90 (linear) over the healthy days of the age
    at which a day first reached maturity / half of it; ``maturity_days`` is the spec's
    ``labels.expected_maturity_days`` when set. None: not known (see ``note``).
    """

    maturity_threshold: float
    maturity_days: float | None
    halfway_days: float | None
    maturity_source: str  # 'spec', 'history' or 'none'
    healthy_days: tuple[str, ...] = ()  # the prediction-days the history part was learned from
    left_out_days: tuple[str, ...] = ()  # first days that were themselves late: not healthy
    note: str = ""

    @property
    def halfway_coverage(self) -> float:
        return self.maturity_threshold / 2

    @property
    def known(self) -> bool:
        return self.maturity_days is not None or self.halfway_days is not None

    def to_dict(self) -> dict[str, Any]:
        return {"maturity_threshold": self.maturity_threshold, "maturity_days": self.maturity_days,
                "halfway_days": self.halfway_days, "halfway_coverage": self.halfway_coverage,
                "maturity_source": self.maturity_source, "healthy_days": list(self.healthy_days),
                "left_out_days": list(self.left_out_days), "note": self.note}


@dataclass(frozen=True)
class LateLabelDay:
    """A prediction-day whose labels are behind the normal: it is ``age_days`` old and has not
    reached ``milestone`` ('halfway' or 'mature', i.e. ``milestone_coverage``), which healthy days
    reach by ``normal_days``."""

    prediction_ds: str
    age_days: int
    coverage: float
    milestone: str
    milestone_coverage: float
    normal_days: float
    lag_p50_days: float | None = None
    lag_p90_days: float | None = None
    n_predictions: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: _plain(v) for k, v in self.__dict__.items()}


@dataclass(frozen=True)
class LabelLagCheck:
    """The label-lag verdict as known on ``as_of_ds``.

    ``evaluated`` is False when no normal timing is known (no spec value, too little history):
    nothing can be late then, and ``reason`` says why. ``days``: the late prediction-days, oldest
    first; ``late`` when there is at least one.
    """

    as_of_ds: str
    evaluated: bool
    timing: LabelTiming
    tolerance_days: int
    checked_days: int
    days: tuple[LateLabelDay, ...] = ()
    reason: str = ""

    @property
    def late(self) -> bool:
        return bool(self.days)

    @property
    def since(self) -> str | None:
        """The oldest late prediction-day."""
        return self.days[0].prediction_ds if self.days else None

    def to_dict(self) -> dict[str, Any]:
        return {"as_of_ds": self.as_of_ds, "evaluated": self.evaluated, "late": self.late,
                "since": self.since, "tolerance_days": self.tolerance_days,
                "checked_days": self.checked_days, "reason": self.reason,
                "timing": self.timing.to_dict(), "days": [d.to_dict() for d in self.days]}


def _lag_frame(frame: Any, what: str, needed: Sequence[str]) -> pd.DataFrame:
    if not isinstance(frame, pd.DataFrame):
        raise LabelInputError(f"{what}: expected a DataFrame, got {type(frame).__name__}")
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise LabelInputError(f"{what}: column(s) {', '.join(missing)} missing (columns: "
                              f"{', '.join(map(str, frame.columns)) or 'none'})")
    out = frame.reset_index(drop=True).copy()
    for c in ("prediction_ds", "known_on"):
        if c in out.columns and len(out):
            out[c] = _ds_series(out[c], f"{what}.{c}")
    out["coverage"] = pd.to_numeric(out["coverage"], errors="coerce").astype("float64")
    bad = out["mature"].isna()
    if bad.any():
        rows = ", ".join(str(int(i) + 1) for i in np.flatnonzero(bad.to_numpy())[:SAMPLE])
        raise LabelInputError(f"{what}.mature: missing on row(s) {rows}; expected true/false")
    out["mature"] = out["mature"].astype(bool)
    return out


def _age(ds: str, of: str) -> int:
    return (date.fromisoformat(ds) - date.fromisoformat(of)).days


def _missed_milestone(age: int, coverage: float, mature: bool, maturity_days: float | None,
                      halfway_days: float | None, halfway: float, tolerance: int) -> str | None:
    """The milestone a day of this age and coverage is late for, if any (half-way first: a day
    without even half its labels is the stronger sign)."""
    if np.isnan(coverage):
        return None  # no predictions that day: nothing to wait for
    if halfway_days is not None and coverage < halfway and age > halfway_days + tolerance:
        return "halfway"
    if maturity_days is not None and not mature and age > maturity_days + tolerance:
        return "mature"
    return None


def _normal(values: list[int], quantile: float) -> float:
    return float(np.quantile(np.asarray(values, dtype="float64"), quantile))


def label_timing(
    observations: pd.DataFrame,
    *,
    maturity_threshold: float,
    expected_maturity_days: int | None = None,
    tolerance_days: int = LAG_TOLERANCE_DAYS,
    healthy_days: int = LAG_HEALTHY_DAYS,
    min_days: int = LAG_MIN_HEALTHY_DAYS,
    quantile: float = LAG_QUANTILE,
) -> LabelTiming:
    """Learn this model's normal label timing from its first prediction-days.

    ``observations``: one row per prediction-day and day it was known on, with columns
    ``prediction_ds``, ``known_on``, ``coverage`` and ``mature`` (the versions the labels DAG
    stored; a missing run is just a missing row). Only the first ``healthy_days`` prediction-days
    are used. A day that has matured gives two ages: the first ``known_on`` age with coverage at
    half the threshold, and the first with ``mature``; a day not matured yet teaches nothing.

    Walking the days in order, the first ``min_days`` matured ones are taken as they are; a later
    one joins the healthy days only if it reached both milestones within the normal of the healthy
    days before it plus ``tolerance_days``: labels that were already slow in the model's first
    weeks must not teach the monitor that slow is normal. The normal is the ``quantile`` of the healthy days' ages (with
    fewer than ``min_days``: none). ``expected_maturity_days`` replaces the learned time to
    maturity (and judges the first days) when given.
    """
    if not 0 < maturity_threshold <= 1:
        raise LabelInputError(f"maturity_threshold={maturity_threshold!r}: expected a share in (0, 1]")
    if expected_maturity_days is not None and (
            not isinstance(expected_maturity_days, (int, np.integer)) or expected_maturity_days < 0):
        raise LabelInputError(f"expected_maturity_days={expected_maturity_days!r}: expected an "
                              "integer >= 0 or None")
    obs = _lag_frame(observations, "observations", ("prediction_ds", "known_on", "coverage", "mature"))
    halfway = maturity_threshold / 2
    spec_days = None if expected_maturity_days is None else float(expected_maturity_days)
    mat_ages: list[int] = []
    half_ages: list[int] = []
    healthy: list[str] = []
    left_out: list[str] = []
    first = sorted(obs["prediction_ds"].unique())[:healthy_days] if len(obs) else []
    for d in first:
        g = obs[obs["prediction_ds"] == d]
        ages = np.array([_age(k, d) for k in g["known_on"]])
        order = np.argsort(ages, kind="stable")
        ages, cov, mat = ages[order], g["coverage"].to_numpy()[order], g["mature"].to_numpy()[order]
        if not mat.any():
            continue
        t_mat = int(ages[mat][0])
        t_half = int(ages[(cov >= halfway) | mat][0])  # a mature day is past half-way
        learned = len(healthy) >= min_days
        norm_mat = spec_days if spec_days is not None else (_normal(mat_ages, quantile) if learned else None)
        norm_half = _normal(half_ages, quantile) if learned else None
        # Continuous time, unlike the check, which sees a day once a day: a day that reached a
        # milestone two days past the normal was late, though no daily look caught it.
        if ((norm_mat is not None and t_mat > norm_mat + tolerance_days)
                or (norm_half is not None and t_half > norm_half + tolerance_days)):
            left_out.append(d)
            continue
        healthy.append(d)
        mat_ages.append(t_mat)
        half_ages.append(t_half)
    learned = len(healthy) >= min_days
    maturity_days = spec_days if spec_days is not None else (_normal(mat_ages, quantile) if learned else None)
    halfway_days = _normal(half_ages, quantile) if learned else None
    source = "spec" if spec_days is not None else ("history" if learned else "none")
    if learned:
        note = (f"p{round(quantile * 100)} over {len(healthy)} healthy prediction-day(s) "
                f"{healthy[0]} .. {healthy[-1]}"
                + (f"; {len(left_out)} early day(s) left out as late ({', '.join(left_out)})" if left_out else ""))
        if spec_days is not None:
            note = f"time to maturity from labels.expected_maturity_days; time to half-way {note}"
    else:
        note = (f"{len(healthy)} of the model's first {healthy_days} prediction-days matured so far; "
                f"{min_days} are needed to learn its normal label timing")
        note += ("; time to maturity from labels.expected_maturity_days" if spec_days is not None
                 else "; set labels.expected_maturity_days to check maturity until then")
    return LabelTiming(maturity_threshold=float(maturity_threshold), maturity_days=maturity_days,
                       halfway_days=halfway_days, maturity_source=source,
                       healthy_days=tuple(healthy), left_out_days=tuple(left_out), note=note)


def label_lag_check(
    rows: pd.DataFrame,
    timing: LabelTiming,
    *,
    as_of_ds: str,
    max_label_delay_days: int,
    tolerance_days: int = LAG_TOLERANCE_DAYS,
) -> LabelLagCheck:
    """Which prediction-days, as known on ``as_of_ds``, are later than the normal ``timing``.

    ``rows``: one row per prediction-day as known on ``as_of_ds`` with ``prediction_ds``,
    ``coverage`` and ``mature`` (optional ``lag_p50_days``, ``lag_p90_days``, ``n_predictions``,
    carried into the result). Only the days labels can still reach are judged (age 0 ..
    ``max_label_delay_days``); a day without predictions (coverage missing) waits for nothing.
    A day is late when its age exceeds the normal age at a milestone plus ``tolerance_days`` and it
    has not reached that milestone: half-way (coverage >= threshold / 2) or mature.
    """
    as_of_ds = _check_ds(as_of_ds, "as_of_ds")
    if not isinstance(max_label_delay_days, (int, np.integer)) or max_label_delay_days < 0:
        raise LabelInputError(f"max_label_delay_days={max_label_delay_days!r}: expected an integer >= 0")
    if not isinstance(tolerance_days, (int, np.integer)) or tolerance_days < 0:
        raise LabelInputError(f"tolerance_days={tolerance_days!r}: expected an integer >= 0")
    frame = _lag_frame(rows, "rows", ("prediction_ds", "coverage", "mature"))
    if not timing.known:
        return LabelLagCheck(as_of_ds=as_of_ds, evaluated=False, timing=timing,
                             tolerance_days=int(tolerance_days), checked_days=0,
                             reason=f"not evaluated: {timing.note}")
    frame = frame.sort_values("prediction_ds", kind="mergesort")
    late: list[LateLabelDay] = []
    checked = 0
    halfway = timing.halfway_coverage

    def opt(r: Any, c: str) -> Any:
        v = getattr(r, c, None)
        return None if v is None or (isinstance(v, float) and np.isnan(v)) else v

    for r in frame.itertuples(index=False):
        age = _age(as_of_ds, r.prediction_ds)
        if not 0 <= age <= max_label_delay_days or np.isnan(r.coverage):
            continue
        checked += 1
        milestone = _missed_milestone(age, float(r.coverage), bool(r.mature), timing.maturity_days,
                                      timing.halfway_days, halfway, tolerance_days)
        if milestone is None:
            continue
        n = opt(r, "n_predictions")
        late.append(LateLabelDay(
            prediction_ds=r.prediction_ds, age_days=age, coverage=float(r.coverage),
            milestone=milestone,
            milestone_coverage=halfway if milestone == "halfway" else timing.maturity_threshold,
            normal_days=float(timing.halfway_days if milestone == "halfway" else timing.maturity_days),
            lag_p50_days=opt(r, "lag_p50_days"), lag_p90_days=opt(r, "lag_p90_days"),
            n_predictions=None if n is None else int(n)))
    if late:
        d = late[0]
        what = "half-way to maturity" if d.milestone == "halfway" else "mature"
        reason = (f"{len(late)} prediction-day(s) behind the normal label timing; the oldest, "
                  f"{d.prediction_ds}, has {d.coverage:.1%} of its labels at {d.age_days} days "
                  f"old and is not {what} ({d.milestone_coverage:.0%}), which healthy days reach "
                  f"by {d.normal_days:g} days (+{tolerance_days} day tolerance)")
    else:
        reason = f"all {checked} prediction-day(s) within the normal label timing"
    return LabelLagCheck(as_of_ds=as_of_ds, evaluated=True, timing=timing,
                         tolerance_days=int(tolerance_days), checked_days=checked,
                         days=tuple(late), reason=reason)
