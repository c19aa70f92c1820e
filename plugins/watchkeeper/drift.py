"""Drift (batch vs. the trailing clean window) and training-serving skew (batch vs. training set).

Pure core: DataFrames and plain values in, typed results out. No Airflow, no database.

Two verdicts per comparison
---------------------------
* ``evidently_drifted`` -- Evidently's own verdict: the stat test's score against the method's
  threshold (spec or Evidently default). ``score`` is the number Evidently's own stat-test function
  returns for that method on the same cleaned data (we call the function itself, so a plain
  ``Report([ValueDrift(column, method)])`` gives the same value).
* ``drifted`` -- the alerting verdict. A fixed distance threshold fires on noise when batches are
  small, and a day makes many comparisons, so:

  1. *Calibration (null from the reference).* For every comparison we know what the score
     looks like when nothing changed. Each of ``n_bootstrap`` replicates (default 1000) splits the
     reference (of that segment) at random into a pseudo-batch of ``n*`` rows and the rest, and
     evaluates the method's statistic on that pair. A random split is exchangeable with a real
     "reference vs. fresh batch" pair, so the pseudo-batch lands beyond the rest's range as often
     as a real batch falls outside the reference (resampling with replacement never leaves the
     reference's range and under-states heavy tails). The rest has ``m - n*`` rows instead of
     ``m``, which only widens the null (quieter). When the batch is over half the reference (first
     days of a window, or a big batch against an equally big reference), both sides are drawn
     with replacement at their real sizes instead. ``n*`` is the batch size rounded *down* to a
     grid of 2^(1/4) steps (a bucket): one cached null serves many days, erring on the wide side.
     Replicates are drawn as counts over the reference's "atoms" (its distinct values; continuous
     columns with more than ``ATOMS_MAX`` distinct values are compressed into that many
     equal-count quantile atoms) or over the method's histogram bins, so a replicate costs
     O(atoms + n*) whatever the reference size; the statistic is then computed from the counts
     exactly as Evidently's function computes it from data (a test checks this to 1e-9).
     The calibration statistic is the score for distance methods (wasserstein, ed,
     jensenshannon, psi, kl_div, hellinger), ``-ln(p)`` for chisquare and z, and the KS D
     statistic for ks (its p-value is monotone in D). P-value tests without a vectorised null
     (t_test, mannw, anderson, cramer_von_mises, es, fisher_exact, g_test, TVD, empirical_mmd) use
     their own p-value, which already accounts for the sample sizes.
     The null is conditional on the reference: a window that by chance lacks the extremes of a
     heavy-tailed feature under-states its tail (small segments of lognormal or t-distributed
     features are the hardest case); longer windows help.
  2. *P-value.* ``p_value`` is the bootstrap tail probability of the observed statistic:
     empirical ``(1 + #{null >= t}) / (B + 1)`` in the bulk and, beyond the null's 90th
     percentile, an exponential tail fitted to the exceedances (peaks over threshold) so that
     p-values far below 1/B -- needed for the day's correction -- are estimated rather than
     floored. An exponential tail is conservative for the light (Gaussian-like) tails of these
     distances and exact for ``-ln(p)`` of a calibrated test.
  3. *Multiplicity.* All comparisons of the day (features x (1 + segment groups)) are corrected
     together: Holm's step-down procedure by default, which keeps the probability that a day
     raises *any* false alarm at most ``daily_false_alarm_rate`` (family-wise error rate), or
     Benjamini-Hochberg (``correction="bh"``, false-discovery rate). ``p_adjusted`` is the
     corrected p-value and ``drifted = p_adjusted <= daily_false_alarm_rate``.
     ``calibrated_threshold`` is, in the score's own units, the value beyond which this comparison
     alone is drifted at the Bonferroni level ``rate / K`` (Holm never requires more). One compare()
     (or a merge_results() of its feature groups) is one family; ``correct_jointly`` puts a day's
     drift and skew results under one correction.

Day-to-day spread. A window of staged days (``prepare_reference(..., days=...)``) is not one
sample: real traffic moves from day to day more than sampling explains (the weather behind a
temperature, a promotion, a season's slope), and a null that draws pseudo-batches from the pooled
window rows calls every ordinary day a shift (a seasonal input at 300 rows a day drifted on 73 of
77 days so). For such a reference each feature's statistic is also computed for every window
day against the other days (leave one day out, as a batch meets its window); tau^2 = the mean of
(t_d^2 - E[t_null^2] at that day's size), less one standard error of that mean under exchangeable
days (so they leave tau at about 0), floored at 0; it needs ``MIN_SPREAD_DAYS`` usable days.
The null of every comparison of the feature (whole batch and segments) is then widened to
sqrt(t_sampling^2 + (tau z)^2), z ~ Student's t with (days - 1) degrees of freedom per replicate
(tau comes from a handful of days): a day's own shift adds in quadrature to sampling noise for
distance statistics (and the KS distance); ``-ln(p)`` statistics (chisquare,
z) keep the sampling null. Exchangeable days give tau ~ 0 and the test is unchanged; a unit change
or a broken feed is far outside any day's spread. ``DriftRow.day_spread`` records tau. The training
set (skew) has no days and keeps the sampling null.

Dataset level: ``share`` is the share of whole-batch features with ``drifted``; ``dataset_drift``
is True when *any* row (whole batch or segment) is ``drifted`` -- the correction already holds the
day's false alarms at the stated rate, so one surviving alarm is meaningful. Evidently's own
dataset rule is kept beside it (``evidently_share``, ``evidently_dataset_drift`` = share >= 0.5).

Speed: the method per feature is settled once when the reference is prepared (Evidently's auto
rule with a distinct count capped at 6 instead of hashing every value), the reference is
cleaned once (numeric columns also pre-sorted, which Evidently's sort-based tests then sort in
linear time), nulls are cached per (feature, segment group, bucket), each column is computed once,
and large categorical batches are switched to pandas' category dtype (identical scores, faster
counting). ``compare(..., features=[...])`` runs a feature group; ``merge_results`` joins groups
and re-applies the correction over the union, so fan-out gives the same verdicts as one call.
"""

from __future__ import annotations

import math
import os
import pickle
import re
import threading
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterable, Literal, Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import special
from scipy import stats as sstats

from evidently.legacy.calculations import stattests as _ev_stattests
from evidently.legacy.calculations.stattests import StatTest
from evidently.legacy.core import ColumnType

__all__ = [
    "DEFAULT_MAX_ROWS",
    "DriftError",
    "DriftInputError",
    "DriftResult",
    "DriftRow",
    "DriftSpecError",
    "FeatureSpec",
    "NullSummary",
    "PreparedReference",
    "PreparedReferenceError",
    "Problem",
    "SUPPORTED_METHODS",
    "batch_size_bucket",
    "compare",
    "correct_jointly",
    "default_reference_path",
    "merge_results",
    "prepare_reference",
]

# ---------------------------------------------------------------------------------------------
# Constants
# ---------------------------------------------------------------------------------------------

DEFAULT_MAX_ROWS = 1_000_000
DEFAULT_N_BOOTSTRAP = 1000
# Continuous columns with more distinct values are compressed into this many quantile atoms for
# the bootstrap null (the stored score always uses the raw data).
ATOMS_MAX = 2048
# Batches at least this long get their categorical columns converted to pandas' category dtype
# before Evidently counts them: identical scores, several times faster value_counts.
CATEGORY_FASTPATH_MIN_ROWS = 50_000
# Peaks-over-threshold: fit the tail above the null's 90th percentile, needing >= 10 exceedances.
_POT_QUANTILE = 0.90
_POT_MIN_EXCEED = 10
_FORMAT_VERSION = 1

Kind = Literal["drift", "skew"]
ProblemKind = Literal[
    "missing", "all_null", "constant", "new_type", "empty_reference", "method_error", "segment"
]

# Calibration families (see module docstring).
_DISTANCE_FAST = frozenset({"wasserstein", "ed", "jensenshannon", "psi", "kl_div", "hellinger"})
_PVALUE_FAST = frozenset({"ks", "chisquare", "z"})
_PVALUE_OWN = frozenset(
    {"t_test", "mannw", "anderson", "cramer_von_mises", "es", "fisher_exact", "g_test", "TVD",
     "empirical_mmd"}
)
_P_VALUE_METHODS = _PVALUE_FAST | _PVALUE_OWN
SUPPORTED_METHODS = tuple(sorted(_DISTANCE_FAST | _P_VALUE_METHODS))

_KIND_TO_COLTYPE = {"numerical": ColumnType.Numerical, "categorical": ColumnType.Categorical}


def _stattest_registry() -> dict[str, StatTest]:
    # Evidently registers each StatTest object as a module attribute; index them by registry name.
    return {v.name: v for v in vars(_ev_stattests).values() if isinstance(v, StatTest) and v.name}


_STATTESTS = _stattest_registry()


# ---------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------


class DriftError(Exception):
    """Base class of this module's errors."""


class DriftSpecError(DriftError, ValueError):
    """A feature spec (name, kind, method, threshold) or compare() option is invalid."""


class DriftInputError(DriftError, ValueError):
    """An input frame cannot be used at all (not a DataFrame, duplicate columns, ...)."""


class PreparedReferenceError(DriftError):
    """A prepared reference file cannot be written or read."""


# ---------------------------------------------------------------------------------------------
# Public value types
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FeatureSpec:
    """One monitored feature: its kind and, optionally, a fixed Evidently method and threshold.

    ``method=None`` means Evidently's own automatic choice, settled once per reference.
    """

    name: str
    kind: Literal["numerical", "categorical"]
    method: str | None = None
    threshold: float | None = None

    def __post_init__(self) -> None:
        where = f"feature {self.name!r}"
        if not isinstance(self.name, str) or not self.name:
            raise DriftSpecError(f"feature name must be a non-empty string, got {self.name!r}")
        if self.kind not in _KIND_TO_COLTYPE:
            raise DriftSpecError(
                f"{where}: field 'kind' must be 'numerical' or 'categorical', got {self.kind!r}"
            )
        if self.method is not None:
            if self.method not in _STATTESTS or self.method not in SUPPORTED_METHODS:
                raise DriftSpecError(
                    f"{where}: field 'method' {self.method!r} is not a supported Evidently method; "
                    f"choose one of {list(SUPPORTED_METHODS)} (registry names, not display names)"
                )
            allowed = _STATTESTS[self.method].allowed_feature_types
            if _KIND_TO_COLTYPE[self.kind] not in allowed:
                raise DriftSpecError(
                    f"{where}: method {self.method!r} does not apply to {self.kind} features "
                    f"(Evidently allows it for {[t.value for t in allowed]})"
                )
        if self.threshold is not None:
            thr = self.threshold
            if isinstance(thr, bool) or not isinstance(thr, (int, float)) or not math.isfinite(thr):
                raise DriftSpecError(f"{where}: field 'threshold' must be a finite number, got {thr!r}")
            if thr <= 0:
                raise DriftSpecError(f"{where}: field 'threshold' must be > 0, got {thr!r}")
            if self.method in _P_VALUE_METHODS and thr >= 1:
                raise DriftSpecError(
                    f"{where}: method {self.method!r} returns a p-value; field 'threshold' must be "
                    f"in (0, 1), got {thr!r}"
                )


@dataclass(frozen=True)
class Problem:
    """A finding about one feature's input (not a drift verdict)."""

    feature: str
    kind: ProblemKind
    message: str
    segment: dict[str, Any] | None = None


@dataclass(frozen=True)
class NullSummary:
    """The part of a bootstrap null a row needs to recompute its threshold after a merge.

    mode 'pot': exponential tail above ``u`` with mean excess ``beta``; ``p_u`` is the tail
    probability at ``u``. mode 'degenerate': the null hardly varies; only values above ``t_max``
    count as drift. mode 'own_p': the method's own p-value is used (no bootstrap).
    """

    mode: Literal["pot", "degenerate", "own_p"]
    statistic: str
    n_bootstrap: int = 0
    bucket_rows: int = 0
    u: float = 0.0
    beta: float = 0.0
    p_u: float = 1.0
    t_max: float = 0.0

    def t_at_level(self, level: float) -> float:
        """The calibration statistic at which the tail probability equals ``level``."""
        if self.mode == "degenerate":
            return self.t_max
        if level >= self.p_u:
            return self.u
        return self.u + self.beta * math.log(self.p_u / level)


@dataclass(frozen=True)
class DriftRow:
    """One comparison: a feature over the whole batch (``segment=None``) or one segment group."""

    feature: str
    method: str | None
    score: float | None
    threshold: float | None
    evidently_drifted: bool | None
    drifted: bool | None
    p_value: float | None
    p_adjusted: float | None
    calibrated_threshold: float | None
    segment: dict[str, Any] | None
    n_current: int
    n_reference: int
    note: str = ""
    null: NullSummary | None = None
    # The reference's own day-to-day spread of this feature's statistic beyond sampling noise
    # (a window of staged days only; see "Day-to-day spread" in the module docstring).
    day_spread: float | None = None

    @property
    def measured(self) -> bool:
        return self.p_value is not None


@dataclass(frozen=True)
class DriftResult:
    """All comparisons of one batch against one prepared reference (or a merge of groups)."""

    kind: Kind
    reference_name: str
    rows: tuple[DriftRow, ...]
    problems: tuple[Problem, ...]
    notes: tuple[str, ...]
    n_current: int
    n_reference: int
    daily_false_alarm_rate: float
    correction: Literal["holm", "bh"]
    n_comparisons: int
    share: float | None
    dataset_drift: bool
    evidently_share: float | None
    evidently_dataset_drift: bool
    reference_empty: bool = False

    @property
    def whole_batch_rows(self) -> tuple[DriftRow, ...]:
        return tuple(r for r in self.rows if r.segment is None)

    @property
    def segment_rows(self) -> tuple[DriftRow, ...]:
        return tuple(r for r in self.rows if r.segment is not None)

    @property
    def drifted_rows(self) -> tuple[DriftRow, ...]:
        return tuple(r for r in self.rows if r.drifted)

    def row(self, feature: str, segment: Mapping[str, Any] | None = None) -> DriftRow:
        """The row of ``feature`` (whole batch, or the given segment); KeyError names what is missing."""
        want = None if segment is None else dict(segment)
        for r in self.rows:
            if r.feature == feature and r.segment == want:
                return r
        raise KeyError(f"no row for feature {feature!r} segment {want!r} in result '{self.reference_name}'")

    def to_frame(self) -> pd.DataFrame:
        cols = ["feature", "segment", "method", "score", "threshold", "evidently_drifted", "drifted",
                "p_value", "p_adjusted", "calibrated_threshold", "n_current", "n_reference", "note"]
        return pd.DataFrame([{c: getattr(r, c) for c in cols} for r in self.rows], columns=cols)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (rows without their null summaries)."""
        rows = []
        for r in self.rows:
            d = {k: getattr(r, k) for k in ("feature", "segment", "method", "score", "threshold",
                                             "evidently_drifted", "drifted", "p_value", "p_adjusted",
                                             "calibrated_threshold", "n_current", "n_reference", "note",
                                             "day_spread")}
            rows.append({k: _jsonable(v) for k, v in d.items()})
        return {
            "kind": self.kind, "reference_name": self.reference_name, "rows": rows,
            "problems": [{"feature": p.feature, "kind": p.kind, "message": p.message,
                          "segment": _jsonable(p.segment)} for p in self.problems],
            "notes": list(self.notes), "n_current": self.n_current, "n_reference": self.n_reference,
            "daily_false_alarm_rate": self.daily_false_alarm_rate, "correction": self.correction,
            "n_comparisons": self.n_comparisons, "share": self.share,
            "dataset_drift": self.dataset_drift, "evidently_share": self.evidently_share,
            "evidently_dataset_drift": self.evidently_dataset_drift,
            "reference_empty": self.reference_empty,
        }


def _jsonable(v: Any) -> Any:
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None if math.isnan(v) else ("inf" if v > 0 else "-inf")
    return v


# ---------------------------------------------------------------------------------------------
# Column helpers
# ---------------------------------------------------------------------------------------------


def _family(s: pd.Series) -> str:
    """Coarse value type of a column, to tell a changed type from changed values."""
    dt = s.dtype
    if isinstance(dt, pd.CategoricalDtype):
        return _family(pd.Series(dt.categories)) if len(dt.categories) else "empty"
    if pd.api.types.is_bool_dtype(dt):
        return "bool"
    if pd.api.types.is_numeric_dtype(dt):
        return "numeric"
    if pd.api.types.is_datetime64_any_dtype(dt):
        return "datetime"
    inferred = pd.api.types.infer_dtype(s, skipna=True)
    return {
        "string": "string", "unicode": "string", "bytes": "string",
        "integer": "numeric", "floating": "numeric", "mixed-integer-float": "numeric",
        "decimal": "numeric", "boolean": "bool", "datetime64": "datetime", "datetime": "datetime",
        "date": "datetime", "empty": "empty",
    }.get(inferred, "mixed")


def _clean_numeric(s: pd.Series) -> np.ndarray:
    """What Evidently does before each stat test (+-inf -> NaN, drop NaN), as a numpy array."""
    dt = s.dtype
    if isinstance(dt, np.dtype) and dt.kind in "iu":
        return s.to_numpy()  # integers hold neither NaN nor inf
    arr = s.to_numpy() if isinstance(dt, np.dtype) and dt.kind == "f" \
        else s.to_numpy(dtype=np.float64, na_value=np.nan)
    keep = np.isfinite(arr)
    return arr if keep.all() else arr[keep]


def _clean_categorical(s: pd.Series, family: str) -> pd.Series:
    """Evidently's cleaning for a categorical column; long string columns become category dtype."""
    if pd.api.types.is_float_dtype(s.dtype):
        return s[np.isfinite(s.to_numpy())]
    if s.dtype == object:
        if family in ("string", "bool"):
            if len(s) >= CATEGORY_FASTPATH_MIN_ROWS:
                s = s.astype("category")  # NaN-aware codes make dropna and counting cheap
        elif family != "empty":
            s = s.replace([-np.inf, np.inf], np.nan)
    return s.dropna()


def _as_category_if_large(s: pd.Series) -> pd.Series:
    if len(s) >= CATEGORY_FASTPATH_MIN_ROWS and not isinstance(s.dtype, pd.CategoricalDtype):
        return s.astype("category")
    return s


def _n_distinct(s: pd.Series | np.ndarray) -> int:
    if isinstance(s, np.ndarray):
        if s.size == 0:
            return 0
        # sorted numeric arrays (the prepared whole-batch reference) count in one pass
        if s.size > 1 and bool(np.all(s[1:] >= s[:-1])):
            return int(1 + np.count_nonzero(s[1:] != s[:-1]))
        return int(pd.unique(s).size)
    if isinstance(s.dtype, pd.CategoricalDtype):
        return int(np.unique(s.cat.codes.to_numpy()).size)
    return int(s.nunique())


def _distinct_upto(values: Any, cap: int) -> set | None:
    """The distinct values if there are fewer than ``cap``, else None (without counting them all)."""
    if isinstance(values, np.ndarray):
        v = values
        if v.size == 0:
            return set()
        if v.size > 1 and not bool(np.all(v[1:] >= v[:-1])):
            u = pd.unique(v)
            return set(u.tolist()) if u.size < cap else None
        starts = np.r_[0, np.flatnonzero(v[1:] != v[:-1]) + 1]  # sorted: one pass
        return set(v[starts].tolist()) if starts.size < cap else None
    s = values
    if isinstance(s.dtype, pd.CategoricalDtype):
        u = s.cat.categories[np.unique(s.cat.codes.to_numpy())]
        u = u[u.notna()] if hasattr(u, "notna") else u
        return set(u.tolist()) if len(u) < cap else None
    u = pd.unique(s.dropna().to_numpy())
    return set(u.tolist()) if u.size < cap else None


def _auto_method(ctype: ColumnType, ref_values: Any, batch_values: Any) -> str:
    """Evidently's automatic method choice, registry._get_default_stattest, for our column types.

    Evidently evaluates ``pd.concat([reference, batch]).nunique()`` (twice for large numeric
    references) only to compare it with 2 and 5; counting distinct values up to 6 gives the same
    answer without hashing a million floats per column. A test pins this to get_stattest.
    """
    ref_set = _distinct_upto(ref_values, 6)
    if ref_set is None:
        n_values = 6
    else:
        batch_set = _distinct_upto(batch_values, 6)
        n_values = 6 if batch_set is None else len(ref_set | batch_set)
    n_ref = len(ref_values)
    if n_ref <= 1000:
        if ctype == ColumnType.Numerical and n_values > 5:
            return "ks"
        return "chisquare" if n_values > 2 else "z"
    if ctype == ColumnType.Numerical:
        return "jensenshannon" if n_values <= 5 else "wasserstein"
    return "jensenshannon"


def _is_constant(s: pd.Series | np.ndarray) -> bool:
    if isinstance(s, np.ndarray):
        return bool(s.min() == s.max())
    return _n_distinct(s) == 1


def batch_size_bucket(n: int) -> int:
    """Batch size rounded down to a 2^(1/4) grid (exact below 17): one cached null per bucket."""
    if n <= 16:
        return max(int(n), 1)
    b = int(2 ** (math.floor(4 * math.log2(n) + 1e-9) / 4))
    return max(min(b, n), 16)


def _seed_for(base: int, key: tuple) -> np.random.Generator:
    return np.random.default_rng([base, zlib.crc32(repr(key).encode("utf-8"))])


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._") or "reference"


def default_reference_path(name: str) -> Path:
    """Where a prepared reference named ``name`` lives: $WATCHKEEPER_HOME/drift/references/<name>.pkl."""
    from watchkeeper import paths

    return paths.home() / "drift" / "references" / f"{_safe_name(name)}.pkl"


# ---------------------------------------------------------------------------------------------
# Prepared reference
# ---------------------------------------------------------------------------------------------


@dataclass
class _FeatureRef:
    spec: FeatureSpec
    ctype: ColumnType
    method: str | None
    threshold: float | None
    family: str
    values: Any  # cleaned whole reference: sorted float ndarray (numerical) or Series (categorical)
    n: int
    problem: Problem | None = None


@dataclass(frozen=True)
class _Null:
    t_sorted: np.ndarray
    summary: NullSummary

    def p_value(self, t: float) -> float:
        s, B = self.t_sorted, self.t_sorted.size
        if math.isnan(t):
            return float("nan")
        if math.isinf(t):
            return 0.0 if t > 0 else 1.0
        tol = 1e-12 * max(1.0, abs(t))  # our vectorised null vs Evidently's float ops
        summ = self.summary
        if summ.mode == "degenerate":
            return 0.0 if t > summ.t_max + tol else 1.0
        if t <= summ.u:
            ge = B - int(np.searchsorted(s, t - tol, side="left"))
            return min(1.0, (1 + ge) / (B + 1))
        return summ.p_u * math.exp(-(t - summ.u) / summ.beta) if summ.beta > 0 else 0.0


def _summarize_null(t: np.ndarray, statistic: str, bucket: int) -> _Null:
    t = np.sort(np.where(np.isnan(t), 0.0, t))
    B = t.size
    finite = t[np.isfinite(t)]
    if finite.size < B * _POT_QUANTILE:  # a method that often returns inf/0 under no change
        return _Null(t, NullSummary("degenerate", statistic, B, bucket, t_max=float("inf")))
    u = float(t[int(math.floor(_POT_QUANTILE * (B - 1)))])
    # Ties at the top (discrete statistics): lower u until enough values strictly exceed it.
    distinct = np.unique(t)
    while np.count_nonzero(t > u) < _POT_MIN_EXCEED:
        lower = distinct[distinct < u]
        if lower.size == 0:
            return _Null(t, NullSummary("degenerate", statistic, B, bucket, t_max=float(t[-1])))
        u = float(lower[-1])
    exceed = t[t > u] - u
    exceed = exceed[np.isfinite(exceed)]
    beta = float(exceed.mean()) if exceed.size else 0.0
    k = int(np.count_nonzero(t > u))
    return _Null(t, NullSummary("pot", statistic, B, bucket, u=u, beta=beta,
                                p_u=(1 + k) / (B + 1), t_max=float(t[-1])))


class PreparedReference:
    """A reference (recent clean window or training set) prepared once for daily comparisons.

    Holds cleaned columns, the method settled per feature, and cached bootstrap nulls per
    (feature, segment group, batch-size bucket). Nulls computed during compare() are added to the
    cache (deterministic, seeded per key), so saving the object after a compare keeps them.
    """

    def __init__(self, *, name: str, features: Sequence[FeatureSpec], refs: dict[str, _FeatureRef],
                 n_rows: int, n_rows_source: int, seed: int, n_bootstrap: int,
                 row_values: dict[str, Any], segment_values: dict[str, pd.Series], notes: list[str],
                 resolved_with: str) -> None:
        self.name = name
        self.features = tuple(features)
        self._refs = refs
        self.n_rows = n_rows
        self.n_rows_source = n_rows_source
        self.seed = seed
        self.n_bootstrap = n_bootstrap
        self._row_values = row_values
        self._segment_values = segment_values
        self.notes = list(notes)
        self.resolved_with = resolved_with
        self._nulls: dict[tuple, _Null] = {}
        self._group_cache: dict[tuple, Any] = {}
        self._lock = threading.Lock()
        self._day_codes: np.ndarray | None = None  # the day of each row (windows of whole days)
        self._day_spread: dict[str, float | None] = {}

    # -- read-only views ---------------------------------------------------------------------
    @property
    def methods(self) -> dict[str, str | None]:
        """Method per feature (registry names), as settled at preparation."""
        return {n: r.method for n, r in self._refs.items()}

    @property
    def thresholds(self) -> dict[str, float | None]:
        """Evidently threshold per feature (spec or the method's default)."""
        return {n: r.threshold for n, r in self._refs.items()}

    @property
    def segment_columns(self) -> tuple[str, ...]:
        return tuple(self._segment_values)

    @property
    def problems(self) -> tuple[Problem, ...]:
        return tuple(r.problem for r in self._refs.values() if r.problem is not None)

    @property
    def is_empty(self) -> bool:
        return self.n_rows == 0

    def __repr__(self) -> str:
        return (f"PreparedReference(name={self.name!r}, rows={self.n_rows}, "
                f"features={len(self.features)}, segments={list(self._segment_values)}, "
                f"cached_nulls={len(self._nulls)})")

    # -- persistence -------------------------------------------------------------------------
    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state.pop("_lock", None)
        state["_group_cache"] = {}  # cheap to rebuild; keeps the file small
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._group_cache = {}
        self._lock = threading.Lock()
        # references saved before day-to-day spreads existed (cached training sets) have no days
        self.__dict__.setdefault("_day_codes", None)
        self.__dict__.setdefault("_day_spread", {})

    def save(self, path: str | os.PathLike | None = None) -> Path:
        """Write the prepared reference (pickle) atomically; default under WATCHKEEPER_HOME."""
        target = Path(path) if path is not None else default_reference_path(self.name)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "wb") as f:
                pickle.dump({"format": "watchkeeper.drift.PreparedReference",
                             "version": _FORMAT_VERSION, "reference": self}, f,
                            protocol=pickle.HIGHEST_PROTOCOL)
            os.replace(tmp, target)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise PreparedReferenceError(f"{target}: cannot write prepared reference: {exc}") from exc
        return target

    @classmethod
    def load(cls, path: str | os.PathLike) -> "PreparedReference":
        """Read a file written by save(); errors name the file and the reason."""
        p = Path(path)
        try:
            with open(p, "rb") as f:
                payload = pickle.load(f)
        except FileNotFoundError as exc:
            raise PreparedReferenceError(f"{p}: no prepared reference at this path") from exc
        except (OSError, pickle.UnpicklingError, EOFError, AttributeError, ImportError) as exc:
            raise PreparedReferenceError(f"{p}: not a readable prepared reference ({exc})") from exc
        if not isinstance(payload, dict) or payload.get("format") != "watchkeeper.drift.PreparedReference":
            raise PreparedReferenceError(f"{p}: not a prepared reference file (unexpected content)")
        if payload.get("version") != _FORMAT_VERSION:
            raise PreparedReferenceError(
                f"{p}: prepared reference format version {payload.get('version')!r}, this code reads "
                f"{_FORMAT_VERSION}; prepare the reference again")
        ref = payload.get("reference")
        if not isinstance(ref, cls):
            raise PreparedReferenceError(f"{p}: field 'reference' is {type(ref).__name__}, not {cls.__name__}")
        return ref

    # -- internals used by compare() -----------------------------------------------------------
    def _feature(self, name: str) -> _FeatureRef:
        return self._refs[name]

    def _group_values(self, name: str, gkey: tuple, ref_rows: np.ndarray) -> Any:
        """Cleaned reference values of a feature within one segment group (memoised per group)."""
        key = (name, gkey)
        hit = self._group_cache.get(key)
        if hit is not None:
            return hit
        fr = self._refs[name]
        raw = self._row_values[name]
        if fr.ctype == ColumnType.Numerical:
            v = raw[ref_rows]
            v = v[np.isfinite(v)]
        else:
            v = raw.iloc[ref_rows].dropna()
        self._group_cache[key] = v
        return v

    def day_spread(self, name: str) -> tuple[float, int] | None:
        """The feature's day-to-day spread (tau, in its statistic's units) beyond sampling
        noise and the number of days it was estimated from, or None when it cannot be told (no
        days, fewer than MIN_SPREAD_DAYS usable days, or a p-value statistic); memoised."""
        if name in self._day_spread:
            return self._day_spread[name]
        est = _estimate_day_spread(self, self._refs[name]) if self._day_codes is not None else None
        with self._lock:
            return self._day_spread.setdefault(name, est)

    def _null(self, key: tuple, build) -> _Null:
        hit = self._nulls.get(key)
        if hit is not None:
            return hit
        built = build()
        with self._lock:
            return self._nulls.setdefault(key, built)


def prepare_reference(
    df: pd.DataFrame,
    features: Sequence[FeatureSpec],
    *,
    name: str,
    max_rows: int | None = DEFAULT_MAX_ROWS,
    segments: Sequence[str] = (),
    typical_batch_rows: int | None = None,
    resolve_with: pd.DataFrame | None = None,
    n_bootstrap: int = DEFAULT_N_BOOTSTRAP,
    seed: int = 0,
    days: Sequence[Any] | None = None,
) -> PreparedReference:
    """Clean the reference once, settle each feature's method once, precompute nulls.

    ``days``: when the reference is made of whole days (a trailing window of staged batches),
    the day of each row, aligned with ``df``: the nulls then also carry the reference's own
    day-to-day spread (see "Day-to-day spread" in the module docstring).

    Method choice (auto = ``FeatureSpec.method is None``): Evidently's own rule
    (``get_stattest(reference, batch, type, None)``, i.e. registry._get_default_stattest), evaluated
    once with ``reference`` = the cleaned reference column and ``batch`` = the cleaned column of
    ``resolve_with`` when given, else of a seeded sample of ``typical_batch_rows`` reference rows
    (default min(rows, 1000)). The rule looks at the reference row count (<= 1000: ks / chisquare /
    z; more: wasserstein / jensenshannon) and at whether reference + batch hold <= 5 (or <= 2)
    distinct values; we count distinct values only up to 6 (see _auto_method; a test pins it to
    get_stattest), which is what makes settling the methods cheap. A sample of the reference adds
    no distinct values, so the choice equals a preset run's unless a batch brings new values to a
    numeric column with <= 5 distinct reference values; we keep the frozen choice so the scores
    stay comparable day to day. (The bench passes its batch as ``resolve_with``: it resolves with
    exactly the data the preset sees, which is why the bare-preset equality holds there.)

    ``max_rows``: references longer than this are sampled (seeded) to this many rows and a note says
    so; ``None`` keeps all rows. ``segments``: columns kept row-aligned for segment comparisons.
    ``typical_batch_rows``: also precompute the whole-batch nulls for batches of that size (other
    sizes are computed on first use and cached in the object).
    """
    if not isinstance(df, pd.DataFrame):
        raise DriftInputError(f"reference '{name}': expected a pandas DataFrame, got {type(df).__name__}")
    if not isinstance(name, str) or not name:
        raise DriftSpecError(f"reference name must be a non-empty string, got {name!r}")
    _check_columns_unique(df, f"reference '{name}'")
    features = list(features)
    for f in features:
        if not isinstance(f, FeatureSpec):
            raise DriftSpecError(f"reference '{name}': features must be FeatureSpec, got {f!r}")
    dupes = sorted({f.name for f in features if sum(g.name == f.name for g in features) > 1})
    if dupes:
        raise DriftSpecError(f"reference '{name}': duplicate feature names {dupes}")
    if n_bootstrap < 200:
        raise DriftSpecError(f"reference '{name}': n_bootstrap must be >= 200, got {n_bootstrap}")
    if max_rows is not None and max_rows < 1:
        raise DriftSpecError(f"reference '{name}': max_rows must be >= 1 or None, got {max_rows}")
    segments = list(dict.fromkeys(segments))
    missing_seg = [s for s in segments if s not in df.columns]
    if missing_seg and len(df.columns):
        raise DriftInputError(f"reference '{name}': segment columns {missing_seg} not in the reference "
                              f"(columns: {list(df.columns)[:30]})")

    notes: list[str] = []
    n_source = len(df)
    day_codes: np.ndarray | None = None
    if days is not None:
        day_arr = np.asarray(days)
        if len(day_arr) != n_source:
            raise DriftInputError(f"reference '{name}': days has {len(day_arr)} labels for "
                                  f"{n_source} rows")
        _labels, day_codes = np.unique(day_arr.astype(str), return_inverse=True)
        day_codes = day_codes.astype(np.int32)
    if max_rows is not None and n_source > max_rows:
        pick = np.sort(np.random.default_rng(seed).choice(n_source, size=max_rows, replace=False))
        df = df.iloc[pick]
        if day_codes is not None:
            day_codes = day_codes[pick]
        notes.append(f"reference '{name}' sampled to {max_rows} of {n_source} rows (seed {seed}); "
                     f"scores use the sample")
    df = df.reset_index(drop=True)
    n_rows = len(df)

    if resolve_with is not None:
        if not isinstance(resolve_with, pd.DataFrame):
            raise DriftInputError(f"reference '{name}': resolve_with must be a DataFrame")
        resolver, resolved_with = resolve_with, f"given batch of {len(resolve_with)} rows"
    else:
        # a sample of the reference adds no distinct values, so its size hardly matters here
        k = min(n_rows, typical_batch_rows or 1000, 10_000)
        pick = np.random.default_rng(seed + 1).choice(n_rows, size=k, replace=False) if n_rows else []
        resolver = df.iloc[np.sort(pick)] if n_rows else df
        resolved_with = f"seeded sample of {k} reference rows"

    refs: dict[str, _FeatureRef] = {}
    row_values: dict[str, Any] = {}
    keep_rows = bool(segments) or day_codes is not None
    for spec in features:
        ctype = _KIND_TO_COLTYPE[spec.kind]
        st = _STATTESTS.get(spec.method) if spec.method else None
        threshold = spec.threshold if spec.threshold is not None else (st.default_threshold if st else None)
        base = dict(spec=spec, ctype=ctype, method=spec.method, threshold=threshold)
        if n_rows == 0:
            refs[spec.name] = _FeatureRef(**base, family="empty", values=None, n=0, problem=Problem(
                spec.name, "empty_reference",
                f"reference '{name}' has no rows (e.g. the first days of a trailing window): "
                f"nothing to compare '{spec.name}' against"))
            continue
        if spec.name not in df.columns:
            refs[spec.name] = _FeatureRef(**base, family="empty", values=None, n=0, problem=Problem(
                spec.name, "missing", f"reference '{name}': column '{spec.name}' is missing"))
            continue
        col = df[spec.name]
        family = _family(col)
        if ctype == ColumnType.Numerical and family not in ("numeric", "empty"):
            refs[spec.name] = _FeatureRef(**base, family=family, values=None, n=0, problem=Problem(
                spec.name, "new_type",
                f"reference '{name}': numerical feature '{spec.name}' holds {family} values "
                f"(dtype {col.dtype}); declare it categorical or fix the source"))
            continue
        clean = _clean_numeric(col) if ctype == ColumnType.Numerical else _clean_categorical(col, family)
        if len(clean) == 0:
            refs[spec.name] = _FeatureRef(**base, family=family, values=None, n=0, problem=Problem(
                spec.name, "empty_reference",
                f"reference '{name}': column '{spec.name}' is entirely null/inf ({n_rows} rows)"))
            continue
        if ctype == ColumnType.Numerical:
            values: Any = np.sort(clean)
            if keep_rows:
                row_values[spec.name] = col.to_numpy(dtype=np.float64, na_value=np.nan)
        else:
            values = _as_category_if_large(clean.reset_index(drop=True))
            if keep_rows:
                row_values[spec.name] = col.reset_index(drop=True).astype("category") \
                    if n_rows >= CATEGORY_FASTPATH_MIN_ROWS else col.reset_index(drop=True)
        method = spec.method
        if method is None:
            rclean: Any = None
            if spec.name in resolver.columns:
                rcol = resolver[spec.name]
                rclean = _clean_numeric(rcol) if ctype == ColumnType.Numerical \
                    else _clean_categorical(rcol, _family(rcol))
            if rclean is None or len(rclean) == 0:
                rclean = values
            method = _auto_method(ctype, values, rclean)
            threshold = _STATTESTS[method].default_threshold if spec.threshold is None else spec.threshold
        refs[spec.name] = _FeatureRef(spec=spec, ctype=ctype, method=method, threshold=threshold,
                                      family=family, values=values, n=len(clean))

    seg_values = {s: df[s].reset_index(drop=True).astype("category") for s in segments} if n_rows else {}
    ref = PreparedReference(name=name, features=features, refs=refs, n_rows=n_rows,
                            n_rows_source=n_source, seed=seed, n_bootstrap=n_bootstrap,
                            row_values=row_values, segment_values=seg_values, notes=notes,
                            resolved_with=resolved_with)
    ref._day_codes = day_codes if n_rows else None
    if typical_batch_rows and n_rows:
        for fname, fr in refs.items():
            if fr.problem is None and fr.method in _DISTANCE_FAST | _PVALUE_FAST:
                # the batch's non-null count decides the bucket; expect the reference's null share
                bucket = batch_size_bucket(max(1, round(typical_batch_rows * fr.n / n_rows)))
                ref._null(_null_key(fname, None, bucket, fr.method),
                          lambda fr=fr, b=bucket: _build_null(fr, fr.values, fr.n, b, ref,
                                                              (fr.spec.name, None)))
    return ref


def _check_columns_unique(df: pd.DataFrame, where: str) -> None:
    dup = df.columns[df.columns.duplicated()].tolist()
    if dup:
        raise DriftInputError(f"{where}: duplicate column names {dup}")


# ---------------------------------------------------------------------------------------------
# Bootstrap null: replicate counts over atoms / bins, statistics vectorised over replicates
# ---------------------------------------------------------------------------------------------


def _null_key(feature: str, group: tuple | None, bucket: int, method: str) -> tuple:
    return (feature, group, bucket, method)


def _draw_counts(rng: np.random.Generator, cnt: np.ndarray, n: int, B: int) -> np.ndarray:
    """B x G counts of n draws with replacement from a reference with ``cnt`` rows per atom."""
    G = cnt.size
    if G == 1:
        return np.full((B, 1), float(n))
    total = float(cnt.sum())
    prob = cnt / total
    if G > 64 and n > 20 * G and n * prob[prob > 0].min() >= 25:
        # many atoms, every cell large (big continuous references and batches): the multinomial's
        # exact covariance with Gaussian noise, O(B*G) instead of O(B*G) binomial draws
        sq = np.sqrt(prob)
        z = rng.standard_normal((B, G))
        c = n * prob + math.sqrt(n) * (sq * z - np.outer(z @ sq, prob))
        return np.clip(c, 0.0, None)
    if (n <= 20 * G or n * B <= 20_000_000) and total <= 5_000_000:
        # draw reference rows uniformly and map them to their atom: O(B*n), no search
        row_atom = np.repeat(np.arange(G), cnt.astype(np.int64))
        out = np.empty((B, G))
        step = max(1, 4_000_000 // max(n, 1))
        for a in range(0, B, step):
            b = min(B, a + step)
            idx = row_atom[rng.integers(0, row_atom.size, size=(b - a, n))]
            idx += (np.arange(b - a) * G)[:, None]
            out[a:b] = np.bincount(idx.ravel(), minlength=(b - a) * G).reshape(b - a, G)
        return out
    return rng.multinomial(n, prob / prob.sum(), size=B).astype(float)


def _numeric_atoms(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    v = np.asarray(values, dtype=np.float64)
    if v.size > 1 and not bool(np.all(v[1:] >= v[:-1])):
        v = np.sort(v)
    starts = np.r_[0, np.flatnonzero(v[1:] != v[:-1]) + 1]
    if starts.size <= ATOMS_MAX:
        return v[starts], np.diff(np.r_[starts, v.size]).astype(float)
    edges = np.linspace(0, v.size, ATOMS_MAX + 1).round().astype(np.int64)
    sums = np.add.reduceat(v, edges[:-1])
    counts = np.diff(edges).astype(float)
    return sums / counts, counts


def _value_atoms(values: Any) -> tuple[list, np.ndarray]:
    s = values if isinstance(values, pd.Series) else pd.Series(values)
    vc = s.value_counts(sort=False)
    vc = vc[vc > 0]
    return list(vc.index), vc.to_numpy(dtype=float)


def _sturges_edges(lo: float, hi: float, n_total: int) -> np.ndarray:
    # numpy's "sturges" rule over [lo, hi] for n_total points, as Evidently's binning uses it
    if hi <= lo:
        return np.array([lo - 0.5, hi + 0.5])
    width = (hi - lo) / (np.log2(n_total) + 1.0)
    k = int(np.ceil((hi - lo) / width))
    return np.linspace(lo, hi, k + 1)


@dataclass(frozen=True)
class _Atoms:
    """What a bootstrap replicate is drawn over: reference row counts per atom.

    kind 'cdf': sorted numeric atom values (distinct values, or quantile-chunk means);
    'values': distinct values (categories, or a numeric column with few values);
    'bins': the method's histogram bins over the reference range (``support`` = edges).
    """

    kind: Literal["cdf", "values", "bins"]
    support: Any
    counts: np.ndarray


def _null_atoms(method: str, numeric: bool, ref_values: Any, m: int, n: int) -> _Atoms:
    if method in ("wasserstein", "ks", "ed"):
        v, cnt = _numeric_atoms(ref_values)
        return _Atoms("cdf", v, cnt)
    if numeric and method in ("jensenshannon", "psi", "kl_div") and _n_distinct(ref_values) > 20:
        # Evidently bins numeric columns with > 20 reference values: numpy "sturges" over the
        # combined range for m + n points. A batch drawn from the reference has its range.
        arr = np.asarray(ref_values, dtype=np.float64)
        edges = _sturges_edges(float(arr.min()), float(arr.max()), m + n)
        return _Atoms("bins", edges, np.histogram(arr, edges)[0].astype(float))
    if numeric and method == "hellinger":
        # Evidently's numeric Hellinger bins the distinct values with "sturges"
        arr = np.asarray(ref_values, dtype=np.float64)
        edges = _sturges_edges(float(arr.min()), float(arr.max()), _n_distinct(arr))
        return _Atoms("bins", edges, np.histogram(arr, edges)[0].astype(float))
    keys, cnt = _value_atoms(ref_values)
    present = cnt > 0
    return _Atoms("values", [k for k, p in zip(keys, present) if p], cnt[present])


def _draw_split(rng: np.random.Generator, cnt: np.ndarray, n: int, B: int) -> tuple[np.ndarray, np.ndarray]:
    """Counts of B random splits of the reference into a pseudo-batch of n rows and the rest.

    A split (sampling without replacement) is exchangeable with a fresh batch: the pseudo-batch
    can hold values beyond the rest's range as often as a real batch falls outside the reference
    -- which matters for heavy tails, where resampling the reference never leaves its range.
    When the batch is over half the reference, both sides are drawn with replacement instead.
    """
    m = int(round(cnt.sum()))
    if n > m // 2:
        return _draw_counts(rng, cnt, m, B), _draw_counts(rng, cnt, n, B)
    G = cnt.size
    prob = cnt / cnt.sum()
    pmin = prob[prob > 0].min()
    if G > 64 and n > 20 * G and n * pmin >= 25 and (m - n) * pmin >= 25:
        # large cells: the multivariate hypergeometric's exact covariance with Gaussian noise
        sq = np.sqrt(prob)
        z = rng.standard_normal((B, G))
        scale = math.sqrt(n * (m - n) / max(m - 1, 1))
        C = np.clip(n * prob + scale * (sq * z - np.outer(z @ sq, prob)), 0.0, cnt)
    else:
        # "marginals" draws each category from a univariate hypergeometric: O(categories) per
        # replicate instead of O(batch rows) for "count" (~100x faster at 20k rows), same law.
        C = rng.multivariate_hypergeometric(np.rint(cnt).astype(np.int64), n, size=B,
                                            method="marginals").astype(float)
    return cnt[None, :] - C, C


def _build_null(fr: _FeatureRef, ref_values: Any, m: int, bucket: int, owner: PreparedReference,
                key: tuple) -> _Null:
    rng = _seed_for(owner.seed, (key, bucket, fr.method))
    atoms = _null_atoms(fr.method, fr.ctype == ColumnType.Numerical, ref_values, m, bucket)
    R, C = _draw_split(rng, atoms.counts, bucket, owner.n_bootstrap)
    t, stat = _null_statistic(fr.method, atoms, R, C)
    return _summarize_null(t, stat, bucket)


MIN_SPREAD_DAYS = 5  # days a window needs before its day-to-day spread is estimated
_MIN_DAY_ROWS = 20  # a day with fewer clean values says nothing about the spread
# Statistics that add up in quadrature with a day's own shift (distances, and the KS distance);
# -ln(p) statistics (chisquare, z) do not, and keep the sampling null alone.
_SPREAD_STATISTICS = _DISTANCE_FAST | {"ks"}


def _estimate_day_spread(ref: PreparedReference, fr: _FeatureRef) -> tuple[float, int] | None:
    """tau^2 = mean over the window's days of (t_d^2 - E[t_null^2 at the day's size]), where
    t_d is the feature's statistic of day d against the other days (leave one day out, exactly
    as a batch is compared with its window) and the null is the sampling-only bootstrap at that
    day's size. Real traffic moves from day to day more than sampling explains (weather, a
    promotion, the season's slope): tau is that excess, and 0 when the days are exchangeable."""
    if fr.problem is not None or fr.method not in _SPREAD_STATISTICS:
        return None
    raw = ref._row_values.get(fr.spec.name)
    codes = ref._day_codes
    if raw is None or codes is None:
        return None
    numeric = fr.ctype == ColumnType.Numerical
    if numeric:
        ok = np.isfinite(raw)
    else:
        ok = ~pd.isna(raw.to_numpy()) if isinstance(raw, pd.Series) else ~pd.isna(np.asarray(raw))
    excess, noise = [], []
    st = _STATTESTS[fr.method]
    for d in np.unique(codes):
        day = (codes == d) & ok
        rest = (codes != d) & ok
        n_d, m_d = int(day.sum()), int(rest.sum())
        if n_d < _MIN_DAY_ROWS or m_d < _MIN_DAY_ROWS:
            continue
        if numeric:
            rv, cv = np.sort(raw[rest]), np.sort(raw[day])
            if fr.method == "ks":
                t = _ks_statistic(rv, cv)
            else:
                t = float(st(pd.Series(rv), pd.Series(cv), fr.ctype, fr.threshold).drift_score)
            rvals = rv
        else:
            rvals = _clean_categorical(raw[rest], fr.family)
            cvals = _clean_categorical(raw[day], fr.family)
            t = float(st(rvals, cvals, fr.ctype, fr.threshold).drift_score)
        if not math.isfinite(t):
            continue
        bucket = batch_size_bucket(n_d)
        group = ("__day__", int(d))
        nul = _build_null(fr, rvals, m_d, bucket, ref, (fr.spec.name, group))
        t2 = nul.t_sorted[np.isfinite(nul.t_sorted)] ** 2
        excess.append(t * t - float(np.mean(t2)))
        noise.append(float(np.var(t2)))
    if len(excess) < MIN_SPREAD_DAYS:
        return None
    # Exchangeable days still give a positive mean excess half the time: one standard error of
    # that mean under no day effect is taken off, so they leave tau at (nearly) 0 and the test
    # keeps its power, while a real day-to-day spread is far above it.
    se = math.sqrt(float(np.mean(noise)) / len(excess))
    tau = math.sqrt(max(0.0, float(np.mean(excess)) - se))
    return tau, len(excess)


def _with_day_spread(nul: _Null, tau: float, days: int, rng: np.random.Generator) -> _Null:
    """The sampling null widened by a day's own shift: t = sqrt(t_sampling^2 + (tau z)^2) per
    replicate (day shifts add in quadrature to sampling noise for distances). tau is estimated
    from a handful of days, so z is Student's t with days - 1 degrees of freedom rather than
    normal: the predictive spread of a new day when the spread itself is uncertain."""
    t = nul.t_sorted
    z = rng.standard_t(max(days - 1, 1), size=t.size)
    return _summarize_null(np.sqrt(t * t + (tau * z) ** 2), nul.summary.statistic,
                           nul.summary.bucket_rows)


def _null_statistic(method: str, atoms: _Atoms, R: np.ndarray, C: np.ndarray) -> tuple[np.ndarray, str]:
    """The method's calibration statistic for each replicate (row) of counts R (reference), C (batch).

    Mirrors Evidently's stat-test functions on the data those counts describe.
    """
    B = R.shape[0]
    if atoms.kind == "cdf":
        v = atoms.support
        Fr = np.cumsum(R, axis=1) / R.sum(axis=1, keepdims=True)
        Fc = np.cumsum(C, axis=1) / C.sum(axis=1, keepdims=True)
        diff = np.abs(Fr - Fc)
        if method == "ks":
            return diff.max(axis=1), "ks_statistic"
        dv = np.diff(v)
        if method == "wasserstein":
            w = diff[:, :-1] @ dv
            mr = R.sum(axis=1)
            mean = (R @ v) / mr
            var = np.maximum((R @ (v * v)) / mr - mean * mean, 0.0)
            return w / np.maximum(np.sqrt(var), 0.001), "score"
        if method == "ed":
            return math.sqrt(2.0) * np.sqrt((diff[:, :-1] ** 2) @ dv), "score"
        raise DriftSpecError(f"no vectorised null for method {method!r}")

    mr = R.sum(axis=1, keepdims=True)
    nc = C.sum(axis=1, keepdims=True)
    P, Q = R / mr, C / nc
    # Evidently keeps every histogram bin, but only the values seen in reference or batch
    union = np.ones_like(P, dtype=bool) if atoms.kind == "bins" else (R + C) > 0
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        if method == "jensenshannon":
            M = (P + Q) / 2
            js = (special.rel_entr(P, M).sum(1) + special.rel_entr(Q, M).sum(1)) / 2
            t, stat = np.sqrt(np.maximum(js, 0)), "score"
        elif method in ("psi", "kl_div"):
            Pf, Qf = _fill_zeros(P, union), _fill_zeros(Q, union)
            if method == "psi":
                t = np.where(union, (Pf - Qf) * np.log(Pf / Qf), 0.0).sum(1)
            else:
                Pf = np.where(union, Pf, 0.0)
                Qf = np.where(union, Qf, 0.0)
                t = special.rel_entr(Pf / Pf.sum(1, keepdims=True), Qf / Qf.sum(1, keepdims=True)).sum(1)
            stat = "score"
        elif method == "hellinger":
            t, stat = np.sqrt(1 - np.clip(np.sqrt(P * Q).sum(1), 0, 1)), "score"
        elif method == "chisquare":
            E = R * (nc / mr)
            chi = np.where(union, (C - E) ** 2 / E, 0.0).sum(1)
            df = union.sum(1) - 1
            t = np.where(df < 1, 0.0, -sstats.chi2.logsf(chi, np.maximum(df, 1)))
            stat = "-ln(score)"
        elif method == "z":
            keys = atoms.support
            order = np.asarray(sorted(range(len(keys)), key=lambda i: keys[i]), dtype=np.int64)
            Ro, Co, Uo = R[:, order], C[:, order], union[:, order]
            first = Uo.argmax(axis=1)  # Evidently: sorted(keys)[0] among the values seen
            r0 = Ro[np.arange(B), first]
            c0 = Co[np.arange(B), first]
            m_, n_ = mr[:, 0], nc[:, 0]
            p1, p2 = (m_ - r0) / m_, (n_ - c0) / n_
            pool = (p1 * m_ + p2 * n_) / (m_ + n_)
            z = (p1 - p2) / np.sqrt(pool * (1 - pool) * (1 / m_ + 1 / n_))
            t = -(math.log(2.0) + sstats.norm.logsf(np.abs(z)))
            t = np.where(Uo.sum(1) <= 1, 0.0, t)  # one value on both sides: p = 1
            stat = "-ln(score)"
        else:
            raise DriftSpecError(f"no vectorised null for method {method!r}")
    return np.where(np.isnan(t), 0.0, t), stat


def _fill_zeros(P: np.ndarray, union: np.ndarray) -> np.ndarray:
    # Evidently's feel_zeroes: zero shares become min(non-zero)/1e6 if that min <= 1e-4, else 1e-4
    nz = np.where((P > 0) & union, P, np.inf).min(axis=1, keepdims=True)
    fill = np.where(nz <= 1e-4, nz / 1e6, 1e-4)
    return np.where((P == 0) & union, fill, P)


def _ks_statistic(ref_sorted: np.ndarray, cur_sorted: np.ndarray) -> float:
    # scipy.stats.ks_2samp's statistic, from already sorted samples
    allv = np.concatenate([ref_sorted, cur_sorted])
    cdf1 = np.searchsorted(ref_sorted, allv, side="right") / ref_sorted.size
    cdf2 = np.searchsorted(cur_sorted, allv, side="right") / cur_sorted.size
    d = cdf1 - cdf2
    return float(max(np.clip(-d.min(), 0, 1), d.max()))


def _ks_pvalue(d: float, n1: int, n2: int) -> float | None:
    """The two-sided p-value scipy's ks_2samp(method='auto') reports for statistic d."""
    try:
        if max(n1, n2) <= 10000:
            from scipy.stats._stats_py import _attempt_exact_2kssamp  # scipy's own exact path

            ok, _, prob = _attempt_exact_2kssamp(n1, n2, math.gcd(n1, n2), d, "two-sided")
            if ok:
                return float(np.clip(prob, 0, 1))
        m, n = sorted([float(n1), float(n2)], reverse=True)
        return float(np.clip(sstats.kstwo.sf(d, np.round(m * n / (m + n))), 0, 1))
    except Exception:  # noqa: BLE001 - only a display value; the verdict does not depend on it
        return None


# ---------------------------------------------------------------------------------------------
# compare()
# ---------------------------------------------------------------------------------------------


@dataclass
class _Comparison:
    row: DriftRow
    t_obs: float | None = None


def _score_to_threshold(method: str, t_thr: float, m: int, n: int) -> float | None:
    if method in _DISTANCE_FAST:
        return t_thr
    if method in ("chisquare", "z"):
        return math.exp(-t_thr) if math.isfinite(t_thr) else 0.0
    if method == "ks":
        return _ks_pvalue(min(max(t_thr, 0.0), 1.0), m, n) if math.isfinite(t_thr) else 0.0
    return None


def _measure(ref: PreparedReference, fr: _FeatureRef, ref_vals: Any, cur_vals: Any,
             segment: dict | None, group: tuple | None) -> _Comparison:
    """One Evidently stat test plus its calibration; never raises for data problems."""
    m, n = len(ref_vals), len(cur_vals)
    method = fr.method
    st = _STATTESTS[method]
    base = dict(feature=fr.spec.name, method=method, threshold=fr.threshold, segment=segment,
                n_current=n, n_reference=m, p_adjusted=None, drifted=None, calibrated_threshold=None)
    numeric = fr.ctype == ColumnType.Numerical
    if numeric:
        r_arr = np.asarray(ref_vals)
        c_arr = np.sort(np.asarray(cur_vals)) if method in ("wasserstein", "ks", "ed") else np.asarray(cur_vals)
        r_ser, c_ser = pd.Series(r_arr, copy=False), pd.Series(c_arr, copy=False)
    else:
        r_ser = ref_vals
        c_ser = _as_category_if_large(cur_vals)
    try:
        res = st(r_ser, c_ser, fr.ctype, fr.threshold)
    except Exception as exc:  # noqa: BLE001 - Evidently's message becomes the finding
        return _Comparison(DriftRow(**base, score=None, evidently_drifted=None, p_value=None,
                                    note=f"Evidently {method} failed: {type(exc).__name__}: {exc}"))
    score = float(res.drift_score)
    ev = bool(res.drifted)
    note = ""
    if method in _PVALUE_OWN:
        p = score if math.isfinite(score) else None
        note = "" if p is not None else "score is NaN; not counted as a comparison"
        null = NullSummary("own_p", "own_p_value")
        return _Comparison(DriftRow(**{**base, "score": score, "evidently_drifted": ev, "p_value": p,
                                       "null": null, "note": note}), None)
    if method == "ks":
        t_obs = _ks_statistic(np.sort(r_arr) if group is not None else r_arr, c_arr)
    elif method in ("chisquare", "z"):
        t_obs = -math.log(score) if score > 0 else float("inf")
    else:
        t_obs = score
    bucket = batch_size_bucket(n)
    values_for_null = ref_vals if not numeric else r_arr
    key = _null_key(fr.spec.name, group, bucket, method)
    nul = ref._null(key, lambda: _build_null(fr, values_for_null, m, bucket, ref, (fr.spec.name, group)))
    spread = ref.day_spread(fr.spec.name)
    tau = spread[0] if spread else None
    if tau:
        base_null, n_days = nul, spread[1]
        nul = ref._null((*key, "day_spread", round(tau, 12), n_days),
                        lambda: _with_day_spread(base_null, tau, n_days,
                                                 _seed_for(ref.seed, (key, "day", tau))))
    p = nul.p_value(t_obs)
    if math.isnan(p):
        note = "score is NaN; not counted as a comparison"
        p_out = None
    else:
        p_out = p
    return _Comparison(DriftRow(**{**base, "score": score, "evidently_drifted": ev, "p_value": p_out,
                                   "null": nul.summary, "note": note, "day_spread": tau}), t_obs)


def _problem_row(fr: _FeatureRef | None, feature: str, note: str, n_current: int,
                 segment: dict | None = None) -> DriftRow:
    return DriftRow(feature=feature, method=fr.method if fr else None, score=None,
                    threshold=fr.threshold if fr else None, evidently_drifted=None, drifted=None,
                    p_value=None, p_adjusted=None, calibrated_threshold=None, segment=segment,
                    n_current=n_current, n_reference=fr.n if fr else 0, note=note)


def _segment_label(v: Any) -> Any:
    if isinstance(v, float) and math.isnan(v):
        return "(null)"
    if isinstance(v, np.generic):
        return v.item()
    return v


def _plan_segments(ref: PreparedReference, current: pd.DataFrame, segments: Sequence[str],
                   min_rows: int) -> tuple[list[tuple[str, Any, tuple, np.ndarray, np.ndarray]],
                                           list[str], list[Problem]]:
    """Segment groups to compare: (column, label, group key, batch rows, reference rows)."""
    groups, notes, problems = [], [], []
    for col in segments:
        if col not in current.columns:
            problems.append(Problem(col, "missing", f"segment column '{col}' is missing from the batch; "
                                                    f"no segment rows for it"))
            continue
        if col not in ref._segment_values:
            problems.append(Problem(col, "segment",
                                    f"segment column '{col}' was not kept when reference '{ref.name}' was "
                                    f"prepared (pass segments=[...] to prepare_reference); no segment rows"))
            continue
        seg_values = pd.Series(current[col].to_numpy(), dtype=current[col].dtype)  # positional index
        cur_idx = seg_values.groupby(seg_values, dropna=False, observed=True).indices
        ref_seg = ref._segment_values[col]
        ref_idx = ref_seg.groupby(ref_seg, dropna=False, observed=True).indices
        ref_by_label = {_segment_label(k): v for k, v in ref_idx.items()}
        ok, pooled = [], []
        for raw, rows in sorted(cur_idx.items(), key=lambda kv: str(_segment_label(kv[0]))):
            label = _segment_label(raw)
            r_rows = ref_by_label.get(label, np.empty(0, dtype=np.int64))
            if len(rows) >= min_rows and len(r_rows) >= min_rows:
                ok.append((label, rows, r_rows))
            else:
                pooled.append((label, rows, r_rows))
        if not ok and not pooled:
            notes.append(f"segment '{col}': skipped, the batch has no rows")
            continue
        if not ok:
            # Pooling every value would make "(other)" the whole batch: each comparison would be
            # repeated as [segment=(other)] with nothing learned. The segment is skipped instead.
            biggest = max(pooled, key=lambda p: (min(len(p[1]), len(p[2])), str(p[0])))
            notes.append(f"segment '{col}': skipped, no value reaches min_segment_rows={min_rows} "
                         f"in both the batch and the reference (largest: {biggest[0]} with "
                         f"{len(biggest[1])} batch / {len(biggest[2])} reference rows); lower "
                         "drift.min_segment_rows to compare its values")
            continue
        for label, rows, r_rows in ok:
            groups.append((col, label, (col, (label,)), rows, r_rows))
        msg = f"segment '{col}': {len(ok)} values compared"
        if pooled:
            p_cur = np.concatenate([p[1] for p in pooled])
            p_ref = np.concatenate([p[2] for p in pooled]) if pooled else np.empty(0, dtype=np.int64)
            detail = ", ".join(f"{p[0]} ({len(p[1])} batch / {len(p[2])} reference rows)" for p in pooled)
            if len(p_cur) >= min_rows and len(p_ref) >= min_rows:
                labels = tuple(sorted((p[0] for p in pooled), key=str))
                groups.append((col, "(other)", (col, labels), np.sort(p_cur), np.sort(p_ref)))
                msg += f"; values under {min_rows} rows pooled into '(other)': {detail}"
            else:
                msg += (f"; values under {min_rows} rows skipped (even pooled they have "
                        f"{len(p_cur)} batch / {len(p_ref)} reference rows): {detail}")
        notes.append(msg)
    return groups, notes, problems


def compare(
    reference: PreparedReference,
    current: pd.DataFrame,
    *,
    kind: Kind,
    segments: Sequence[str] = (),
    min_segment_rows: int = 500,
    daily_false_alarm_rate: float = 0.05,
    correction: Literal["holm", "bh"] = "holm",
    features: Sequence[str] | None = None,
    max_workers: int = 1,
) -> DriftResult:
    """Compare one batch with a prepared reference: per feature, whole batch and per segment group.

    ``features`` restricts the run to a feature group (fan-out); join groups with merge_results().
    ``max_workers`` > 1 measures features on threads (the heavy parts release the GIL).
    """
    if not isinstance(reference, PreparedReference):
        raise DriftInputError(f"reference must be a PreparedReference, got {type(reference).__name__}")
    if not isinstance(current, pd.DataFrame):
        raise DriftInputError(f"current batch must be a pandas DataFrame, got {type(current).__name__}")
    if kind not in ("drift", "skew"):
        raise DriftSpecError(f"kind must be 'drift' or 'skew', got {kind!r}")
    if not (0 < daily_false_alarm_rate < 1):
        raise DriftSpecError(f"daily_false_alarm_rate must be in (0, 1), got {daily_false_alarm_rate!r}")
    if correction not in ("holm", "bh"):
        raise DriftSpecError(f"correction must be 'holm' or 'bh', got {correction!r}")
    if min_segment_rows < 2:
        raise DriftSpecError(f"min_segment_rows must be >= 2, got {min_segment_rows!r}")
    _check_columns_unique(current, "current batch")
    names = [f.name for f in reference.features]
    if features is not None:
        unknown = [f for f in features if f not in names]
        if unknown:
            raise DriftSpecError(f"features {unknown} are not in reference '{reference.name}' "
                                 f"(it has {names})")
        names = [n for n in names if n in set(features)]
    n_current = len(current)  # rows are addressed by position below; the index is left alone
    problems: list[Problem] = []
    notes: list[str] = list(reference.notes)

    if reference.is_empty:
        problems = [Problem(n, "empty_reference",
                            f"reference '{reference.name}' has no rows (e.g. the first days of a "
                            f"trailing window): '{n}' not compared") for n in names]
        notes.append(f"{kind}: reference '{reference.name}' is empty; nothing was compared")
        return _finish(kind, reference.name, [], problems, notes, n_current, 0,
                       daily_false_alarm_rate, correction, reference_empty=True)

    groups, seg_notes, seg_problems = _plan_segments(reference, current, list(dict.fromkeys(segments)),
                                                     min_segment_rows)
    notes.extend(seg_notes)
    problems.extend(seg_problems)

    def one_feature(fname: str) -> tuple[list[DriftRow], list[Problem]]:
        fr = reference._feature(fname)
        rows: list[DriftRow] = []
        probs: list[Problem] = []
        if fr.problem is not None:
            probs.append(fr.problem)
            return [_problem_row(fr, fname, fr.problem.message, 0)], probs
        if fname not in current.columns:
            msg = f"feature '{fname}' is missing from the batch ({n_current} rows)"
            probs.append(Problem(fname, "missing", msg))
            return [_problem_row(fr, fname, msg, 0)], probs
        col = current[fname]
        fam = _family(col)
        numeric = fr.ctype == ColumnType.Numerical
        if numeric and fam not in ("numeric", "empty"):
            bad = _first_bad_value(col)
            msg = (f"feature '{fname}' is numerical in reference '{reference.name}' but the batch column "
                   f"holds {fam} values (dtype {col.dtype}{bad})")
            probs.append(Problem(fname, "new_type", msg))
            return [_problem_row(fr, fname, msg, n_current)], probs
        if fam not in ("empty", fr.family) and fr.family not in ("empty", "mixed"):
            msg = (f"feature '{fname}': batch values are {fam} (dtype {col.dtype}) where reference "
                   f"'{reference.name}' had {fr.family}")
            probs.append(Problem(fname, "new_type", msg))
            return [_problem_row(fr, fname, msg, n_current)], probs
        clean = _clean_numeric(col) if numeric else _as_category_if_large(_clean_categorical(col, fam))
        if len(clean) == 0:
            msg = f"feature '{fname}' is entirely null/inf in the batch ({n_current} rows)"
            probs.append(Problem(fname, "all_null", msg))
            return [_problem_row(fr, fname, msg, 0)], probs
        if _is_constant(clean):
            value = clean[0] if numeric else clean.iloc[0]
            value = value.item() if isinstance(value, np.generic) else value
            ref_distinct = _n_distinct(fr.values)
            probs.append(Problem(fname, "constant",
                                 f"feature '{fname}' is constant in the batch (every one of {len(clean)} "
                                 f"non-null values is {value!r}); the reference has {ref_distinct} distinct "
                                 f"values. Still measured."))
        comp = _measure(reference, fr, fr.values, clean, None, None)
        rows.append(comp.row)
        if comp.row.score is None:
            probs.append(Problem(fname, "method_error", comp.row.note))
            return rows, probs
        # segment rows for this feature
        col_num = col.to_numpy(dtype=np.float64, na_value=np.nan) if numeric and groups else col
        for seg_col, label, gkey, cur_rows, ref_rows in groups:
            if seg_col == fname:
                continue
            seg = {seg_col: label}
            if numeric:
                cv = col_num[cur_rows]
                cv = cv[np.isfinite(cv)]
            else:
                cv = _clean_categorical(col.iloc[cur_rows], fam)
            rv = reference._group_values(fname, gkey, ref_rows)
            if len(cv) == 0 or len(rv) == 0:
                rows.append(_problem_row(fr, fname, f"no non-null values in this segment "
                                         f"({len(cv)} batch / {len(rv)} reference); not compared",
                                         len(cv), seg))
                continue
            rows.append(_measure(reference, fr, rv, cv, seg, gkey).row)
        return rows, probs

    if max_workers and max_workers > 1 and len(names) > 1:
        with ThreadPoolExecutor(max_workers=max_workers) as pool:
            outs = list(pool.map(one_feature, names))
    else:
        outs = [one_feature(n) for n in names]
    rows = [r for out in outs for r in out[0]]
    problems.extend(p for out in outs for p in out[1])
    return _finish(kind, reference.name, rows, problems, notes, n_current, reference.n_rows,
                   daily_false_alarm_rate, correction)


def _first_bad_value(col: pd.Series) -> str:
    for v in col.dropna().head(1000):
        if not isinstance(v, (int, float, np.number)) or isinstance(v, bool):
            row = col.index[col.astype(object).eq(v)][0] if len(col) else "?"
            return f"; e.g. row {row}: {v!r}"
    return ""


def _row_key(r: DriftRow) -> tuple:
    if r.segment is None:
        return (0, "", "", r.feature)
    (col, label), = r.segment.items()
    return (1, str(col), (label == "(other)", str(label)), r.feature)


def _adjust(p: np.ndarray, correction: str) -> np.ndarray:
    """Holm (step-down, family-wise) or Benjamini-Hochberg (step-up, FDR) adjusted p-values."""
    K = p.size
    order = np.argsort(p, kind="mergesort")
    ps = p[order]
    if correction == "holm":
        adj_sorted = np.maximum.accumulate(np.minimum(1.0, (K - np.arange(K)) * ps))
    else:
        adj_sorted = np.minimum.accumulate(np.minimum(1.0, K * ps / np.arange(1, K + 1))[::-1])[::-1]
    adj = np.empty(K)
    adj[order] = adj_sorted
    return adj


def _finish(kind: str, reference_name: str, rows: list[DriftRow], problems: list[Problem],
            notes: list[str], n_current: int, n_reference: int, rate: float, correction: str,
            reference_empty: bool = False,
            pooled: tuple[list[float], int] | None = None) -> DriftResult:
    """Apply the day's multiplicity correction and the dataset-level rules.

    ``pooled`` = (adjusted p-values of this result's measured rows, in row order; family size)
    when the correction was made over a larger family (correct_jointly).
    """
    rows = sorted(rows, key=_row_key)
    idx = [i for i, r in enumerate(rows) if r.p_value is not None]
    adjusted: dict[int, float] = {}
    if pooled is not None:
        adj_list, K = pooled
        adjusted = dict(zip(idx, adj_list))
    else:
        K = len(idx)
        if K:
            adj = _adjust(np.array([rows[i].p_value for i in idx], dtype=float), correction)
            adjusted = {i: float(a) for i, a in zip(idx, adj)}
    level = rate / K if K else rate
    out = []
    for i, r in enumerate(rows):
        if i in adjusted:
            thr = None
            if r.null is not None:
                if r.null.mode == "own_p":
                    thr = level
                else:
                    thr = _score_to_threshold(r.method, r.null.t_at_level(level), r.n_reference, r.n_current)
            out.append(replace(r, p_adjusted=adjusted[i], drifted=bool(adjusted[i] <= rate),
                               calibrated_threshold=thr))
        else:
            out.append(replace(r, p_adjusted=None, drifted=None, calibrated_threshold=None))
    whole = [r for r in out if r.segment is None and r.drifted is not None]
    share = sum(r.drifted for r in whole) / len(whole) if whole else None
    ev_share = sum(bool(r.evidently_drifted) for r in whole) / len(whole) if whole else None
    unique: dict[tuple, Problem] = {}
    for p in problems:  # groups of a fan-out repeat batch-level findings (segment columns)
        unique.setdefault((p.feature, p.kind, p.message), p)
    problems = [unique[k] for k in sorted(unique)]
    return DriftResult(
        kind=kind, reference_name=reference_name, rows=tuple(out), problems=tuple(problems),
        notes=tuple(dict.fromkeys(notes)), n_current=n_current, n_reference=n_reference,
        daily_false_alarm_rate=rate, correction=correction, n_comparisons=K, share=share,
        dataset_drift=any(r.drifted for r in out), evidently_share=ev_share,
        evidently_dataset_drift=bool(ev_share is not None and ev_share >= 0.5),
        reference_empty=reference_empty)


def merge_results(results: Iterable[DriftResult], *, mixed_references: bool = False) -> DriftResult:
    """Join the results of feature-group compares (mapped tasks) into one day's result.

    The multiplicity correction is applied again over the union of comparisons, so the merged
    verdicts equal those of a single compare() over all features. Groups must share kind,
    reference, batch, rate and correction. ``mixed_references=True`` joins compares of the same
    batch against different references (features measured against an accepted window or the
    previous season, issue 14): the day stays one family of comparisons, and the merged
    ``reference_name`` lists every reference once (" + ").
    """
    results = list(results)
    if not results:
        raise DriftInputError("merge_results: no results to merge")
    for r in results:
        if not isinstance(r, DriftResult):
            raise DriftInputError(f"merge_results: expected DriftResult, got {type(r).__name__}")
    first = results[0]
    checked = ("kind", "n_current", "daily_false_alarm_rate", "correction") if mixed_references \
        else ("kind", "reference_name", "n_current", "daily_false_alarm_rate", "correction")
    for i, r in enumerate(results[1:], start=1):
        for fld in checked:
            if getattr(r, fld) != getattr(first, fld):
                raise DriftInputError(
                    f"merge_results: result {i} has {fld}={getattr(r, fld)!r} but result 0 has "
                    f"{getattr(first, fld)!r}; only groups of one compare can be merged")
    seen: set[tuple] = set()
    for r in results:
        for row in r.rows:
            key = (row.feature, tuple(sorted((row.segment or {}).items(), key=str)))
            if key in seen:
                raise DriftInputError(f"merge_results: feature {row.feature!r} segment {row.segment!r} "
                                      f"appears in more than one group")
            seen.add(key)
    rows = [row for r in results for row in r.rows]
    problems = [p for r in results for p in r.problems]
    notes = [n for r in results for n in r.notes]
    name = first.reference_name
    if mixed_references:
        name = " + ".join(dict.fromkeys(n for r in results for n in r.reference_name.split(" + ")))
    return _finish(first.kind, name, rows, problems, notes, first.n_current,
                   max(r.n_reference for r in results), first.daily_false_alarm_rate,
                   first.correction, reference_empty=all(r.reference_empty for r in results))


def correct_jointly(results: Sequence[DriftResult]) -> tuple[DriftResult, ...]:
    """One multiplicity correction over several results of the same day (e.g. drift and skew).

    compare() and merge_results() correct within one reference; a day that runs both drift and
    skew makes both families of comparisons. This re-adjusts every measured row against the union
    (same rate and correction required) and returns the results in the given order, each with
    ``n_comparisons`` = the size of the joint family.
    """
    results = list(results)
    if not results:
        raise DriftInputError("correct_jointly: no results")
    first = results[0]
    for i, r in enumerate(results):
        if not isinstance(r, DriftResult):
            raise DriftInputError(f"correct_jointly: result {i} is {type(r).__name__}, not DriftResult")
        for fld in ("daily_false_alarm_rate", "correction"):
            if getattr(r, fld) != getattr(first, fld):
                raise DriftInputError(f"correct_jointly: result {i} has {fld}={getattr(r, fld)!r}, "
                                      f"result 0 has {getattr(first, fld)!r}")
    per_result = [[row.p_value for row in sorted(r.rows, key=_row_key) if row.p_value is not None]
                  for r in results]
    flat = np.array([p for ps in per_result for p in ps], dtype=float)
    K = flat.size
    adj = _adjust(flat, first.correction) if K else np.empty(0)
    out, start = [], 0
    for r, ps in zip(results, per_result):
        part = [float(a) for a in adj[start:start + len(ps)]]
        start += len(ps)
        note = (f"{r.kind} '{r.reference_name}': corrected jointly with {len(results) - 1} other "
                f"result(s), {K} comparisons in all")
        out.append(_finish(r.kind, r.reference_name, list(r.rows), list(r.problems),
                           [*r.notes, note], r.n_current, r.n_reference,
                           r.daily_false_alarm_rate, r.correction, r.reference_empty, pooled=(part, K)))
    return tuple(out)

