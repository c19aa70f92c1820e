"""Feature coverage: does today's batch sit inside the region of feature space the reference covered?

Pure functions, no Airflow, no database. `build_coverage_reference` learns from reference data;
`check_coverage` compares one day's batch with it. Both results are JSON-able (to_dict/from_dict).

Two checks, each with a threshold derived from the reference itself:

Unseen categorical pairs
    For every pair of categorical columns, the value pairs seen in the reference are stored with
    their counts (columns with more than `max_pair_levels` distinct values are left out of the
    pair check, with a note: their pairs are mostly unseen by construction). A batch pair never
    seen in the reference alerts when it has at least `support` rows, where

        support = max(min_support, ceil(min_share · n))

    and, when min_support is None (the default), min_support is the smallest s ≥ 5 such that a
    pair that *could* have gone unseen by chance would reach s rows with probability below
    alpha / C. A pair absent from N reference rows has a rate of at most 3/N (the "rule of
    three", 95% upper bound), so its batch count is at most Poisson(λ = 3n/N); C is the number of
    value combinations the reference leaves unseen (a Bonferroni count). min_share (default 0.1%
    of the batch) keeps a handful of rows in a large batch from paging anyone. Examples at N =
    280,000 reference rows: n = 200 gives support 5, n = 20,000 gives support 20 (the share
    floor; chance alone would need ~5). A pair below support is still listed, with alert False.
    Pairs that involve a value never seen at all in its column are marked kind "new_value";
    pairs of two known values, "new_combination".

Multivariate drift (PCA reconstruction error, after NannyML's data-reconstruction drift)
    Encoding: numerical columns standardised with the reference mean and sd (nulls imputed with
    the reference median); each categorical column one-hot encoded over its `top_categories`
    most frequent reference values plus "__other__" and "__missing__", centred on the reference
    shares and divided by the block's total standard deviation, so that every original column
    weighs as much as one standardised numeric column. A PCA (scikit-learn) is fitted on the
    reference (at most 100,000 rows) keeping the fewest components that explain `variance`
    (default 90%) of it, at most d − 1. Each row's score is the Euclidean distance between its
    encoding and its reconstruction from those components; a batch's score is the mean.
    A correlation break (two features that moved together stop doing so) raises the error even
    when every marginal distribution is unchanged.

    Threshold: from the per-day mean errors e_d of `reference_days` (or of 10 contiguous chunks
    of the reference when days are not given) and the per-row error sd σ:
    τ² = max(0, var(e_d) − mean(σ²/n_d)) is the day-to-day spread beyond sampling, and the band
    is mean(e) ± sigmas·sqrt(σ²/n + τ²) (sigmas = 3). At n equal to the reference day size
    this is the usual "mean ± 3 sd of per-day errors"; at smaller n it widens with the sampling
    noise of a small batch. Both sides alert (a drop means rows collapsed onto the principal
    subspace, e.g. a feature stuck at its mean), as in NannyML.

Input problems (missing columns, nulls, an empty batch) are reported as `problems` entries naming
the column, the number of rows and example row labels; the checks that can still run do.
Unusable reference data raises `CoverageError`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from itertools import combinations
from typing import Any, Literal

import numpy as np
import pandas as pd

from watchkeeper.jsonable import jsonable
from scipy import stats

SCHEMA_VERSION = 1
OTHER = "__other__"
MISSING = "__missing__"
_SEP = "\x1f"  # joins the two values of a pair in the stored keys; not expected in category values
_MAX_FIT_ROWS = 100_000
_MAX_LISTED_PAIRS = 100
_KEY_BASE = 1 << 31  # pair key = code_a * base + code_b


class CoverageError(ValueError):
    """The reference data or a stored coverage reference cannot be used; the message says why."""


@dataclass
class CoverageProblem:
    kind: Literal["problem", "note"]
    message: str
    column: str | None = None
    rows: int | None = None
    example_rows: list[Any] = field(default_factory=list)
    checks: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return _jsonable(asdict(self))


@dataclass
class UnseenPair:
    columns: list[str]
    values: list[str]
    rows: int
    share: float
    kind: Literal["new_combination", "new_value"]
    alert: bool
    example_rows: list[Any] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return _jsonable(asdict(self))


@dataclass
class MultivariateResult:
    """Mean PCA reconstruction error of the batch against its healthy band."""

    value: float
    baseline: float
    lower: float
    upper: float
    alert: bool
    message: str
    n_components: int
    # share of the growth in squared residual (vs the reference) carried by each column, top 5
    contributions: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return _jsonable(asdict(self))


@dataclass
class CoverageReport:
    n_rows: int
    support: int | None
    support_rule: str
    unseen_pairs: list[UnseenPair]
    multivariate: MultivariateResult | None
    problems: list[CoverageProblem]
    n_unseen_pairs: int = 0  # before the listing is cut to the largest 100
    n_alerting_pairs: int = 0

    @property
    def alert_pairs(self) -> list[UnseenPair]:
        return [p for p in self.unseen_pairs if p.alert]

    @property
    def alert(self) -> bool:
        return self.n_alerting_pairs > 0 or bool(self.multivariate and self.multivariate.alert)

    def to_dict(self) -> dict[str, Any]:
        return {
            "n_rows": int(self.n_rows),
            "alert": self.alert,
            "support": self.support,
            "support_rule": self.support_rule,
            "n_unseen_pairs": int(self.n_unseen_pairs),
            "n_alerting_pairs": int(self.n_alerting_pairs),
            "unseen_pairs": [p.to_dict() for p in self.unseen_pairs],
            "multivariate": self.multivariate.to_dict() if self.multivariate else None,
            "problems": [p.to_dict() for p in self.problems],
        }


@dataclass
class CoverageReference:
    categorical: list[str]
    numerical: list[str]
    n_rows: int
    # pairs
    pair_columns: list[list[str]] = field(default_factory=list)
    seen_pairs: dict[str, dict[str, int]] = field(default_factory=dict)
    seen_values: dict[str, list[str]] = field(default_factory=dict)
    # encoder
    num_center: dict[str, float] = field(default_factory=dict)
    num_scale: dict[str, float] = field(default_factory=dict)
    num_fill: dict[str, float] = field(default_factory=dict)
    cat_levels: dict[str, list[str]] = field(default_factory=dict)
    cat_shares: dict[str, list[float]] = field(default_factory=dict)
    cat_scale: dict[str, float] = field(default_factory=dict)
    # pca and the error's spread
    pca_mean: list[float] = field(default_factory=list)
    components: list[list[float]] = field(default_factory=list)
    explained_variance: float | None = None
    column_residuals: dict[str, float] = field(default_factory=dict)  # mean squared residual per column
    error_mean: float | None = None
    error_row_sd: float | None = None
    day_errors: list[float] = field(default_factory=list)
    day_sizes: list[int] = field(default_factory=list)
    spread_source: str = "days"
    notes: list[str] = field(default_factory=list)
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        data = {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "_cache"}
        data["schema_version"] = SCHEMA_VERSION
        return _jsonable(data)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CoverageReference:
        data = dict(data)
        version = data.pop("schema_version", None)
        if version != SCHEMA_VERSION:
            raise CoverageError(
                f"CoverageReference.from_dict: schema_version {version!r} is not {SCHEMA_VERSION}; rebuild it")
        fields = {f for f in cls.__dataclass_fields__ if f != "_cache"}
        missing = sorted(f for f in ("categorical", "numerical", "n_rows") if f not in data)
        unknown = sorted(set(data) - fields)
        if missing or unknown:
            raise CoverageError(
                f"CoverageReference.from_dict: missing field(s) {missing}, unknown field(s) {unknown}")
        return cls(**data)

    @property
    def has_pca(self) -> bool:
        return bool(self.components)

    def _arrays(self) -> tuple[np.ndarray, np.ndarray]:
        if "pca" not in self._cache:
            self._cache["pca"] = (np.asarray(self.pca_mean, dtype=float), np.asarray(self.components, dtype=float))
        return self._cache["pca"]


def build_coverage_reference(
    reference: pd.DataFrame,
    *,
    categorical: list[str],
    numerical: list[str],
    reference_days: list[pd.DataFrame] | None = None,
    top_categories: int = 20,
    variance: float = 0.9,
    max_pair_levels: int = 1_000,
    n_chunks: int = 10,
) -> CoverageReference:
    """Learn seen categorical pairs and a PCA of the reference, with the error's day-to-day spread."""
    if not isinstance(reference, pd.DataFrame):
        raise CoverageError(f"reference is a {type(reference).__name__}, not a pandas DataFrame")
    if len(reference) == 0:
        raise CoverageError("reference has 0 rows")
    if not categorical and not numerical:
        raise CoverageError("give at least one categorical or numerical column")
    overlap = sorted(set(categorical) & set(numerical))
    if overlap:
        raise CoverageError(f"column(s) {overlap} are listed as both categorical and numerical")
    missing = [c for c in categorical + numerical if c not in reference.columns]
    if missing:
        raise CoverageError(f"reference: column(s) {missing} missing (columns present: {list(reference.columns)})")
    if not 0 < variance < 1:
        raise CoverageError(f"variance must be in (0, 1), got {variance}")
    ref = CoverageReference(categorical=list(categorical), numerical=list(numerical), n_rows=int(len(reference)))

    # --- pairs
    cats = {c: _as_str(reference[c]) for c in categorical}
    for c, s in cats.items():
        ref.seen_values[c] = sorted(s.dropna().unique().tolist())
    eligible = []
    for c in categorical:
        k = len(ref.seen_values[c])
        if k > max_pair_levels:
            ref.notes.append(f"column {c!r} has {k} distinct values (> max_pair_levels={max_pair_levels}); "
                             "left out of the pair check")
        else:
            eligible.append(c)
    for a, b in combinations(eligible, 2):
        both = pd.DataFrame({"a": cats[a], "b": cats[b]}).dropna()
        counts = both.groupby(["a", "b"], sort=True).size()
        ref.pair_columns.append([a, b])
        ref.seen_pairs[_SEP.join((a, b))] = {_SEP.join(k): int(v) for k, v in counts.items()}

    # --- encoder
    for c in numerical:
        col = pd.to_numeric(reference[c], errors="coerce").replace([np.inf, -np.inf], np.nan)
        bad = int(col.isna().sum() - reference[c].isna().sum())
        if bad:
            ref.notes.append(f"reference column {c!r}: {bad} value(s) are not finite numbers; treated as null")
        if col.notna().sum() == 0:
            raise CoverageError(f"reference numerical column {c!r} has no finite value")
        sd = float(col.std(ddof=0))
        if not sd > 0:
            ref.notes.append(f"reference numerical column {c!r} is constant; any other value raises the error")
            sd = 1.0
        ref.num_center[c] = float(col.mean())
        ref.num_scale[c] = sd
        ref.num_fill[c] = float(col.median())
    for c in categorical:
        s = cats[c]
        top = s.dropna().value_counts().head(top_categories).index.tolist()
        levels = [str(v) for v in top] + [OTHER, MISSING]
        enc = _level_codes(s, levels)
        shares = np.bincount(enc, minlength=len(levels)) / len(s)
        ref.cat_levels[c] = levels
        ref.cat_shares[c] = shares.tolist()
        block = math.sqrt(float(np.sum(shares * (1 - shares))))
        ref.cat_scale[c] = block if block > 0 else 1.0

    x = _encode(reference, ref)
    d = x.shape[1]
    if d < 2:
        ref.notes.append("only one encoded dimension: no multivariate (PCA) score")
        return ref
    from sklearn.decomposition import PCA  # imported here: sklearn costs seconds to import

    fit_rows = x
    if len(x) > _MAX_FIT_ROWS:
        pick = np.random.default_rng(0).choice(len(x), _MAX_FIT_ROWS, replace=False)
        fit_rows = x[np.sort(pick)]
        ref.notes.append(f"PCA fitted on a random {_MAX_FIT_ROWS:,} of {len(x):,} reference rows")
    pca = PCA(svd_solver="full").fit(fit_rows)
    cum = np.cumsum(pca.explained_variance_ratio_)
    k = int(np.searchsorted(cum, variance) + 1)
    if k >= d:
        k = d - 1
        ref.notes.append(f"{variance:.0%} of the variance needs all {d} dimensions; kept {k} so that the "
                         "error stays informative")
    ref.pca_mean = pca.mean_.tolist()
    ref.components = pca.components_[:k].tolist()
    ref.explained_variance = float(cum[k - 1])
    ref.column_residuals = _column_residuals(_residuals(fit_rows, ref), ref)

    # --- the error's spread over reference days (or contiguous chunks of the reference)
    if reference_days:
        frames = []
        for i, day in enumerate(reference_days):
            absent = [c for c in categorical + numerical if c not in day.columns]
            if absent:
                raise CoverageError(f"reference_days[{i}]: column(s) {absent} missing")
            if len(day):
                frames.append(day)
            else:
                ref.notes.append(f"reference_days[{i}] has 0 rows; left out of the error spread")
        ref.spread_source = "days"
        parts = [_row_errors(_encode(day, ref), ref) for day in frames]
    else:
        chunks = max(1, min(n_chunks, len(x) // 50))
        ref.spread_source = "chunks"
        ref.notes.append(f"no reference_days: the error spread comes from {chunks} contiguous chunk(s) "
                         "of the reference")
        parts = np.array_split(_row_errors(x, ref), chunks)
    all_errors = np.concatenate(parts)
    ref.error_mean = float(all_errors.mean())
    ref.error_row_sd = float(all_errors.std())
    ref.day_errors = [float(p.mean()) for p in parts]
    ref.day_sizes = [int(p.size) for p in parts]
    if len(parts) < 3:
        ref.notes.append("fewer than 3 days/chunks: the band covers sampling noise only")
    return ref


def check_coverage(
    batch: pd.DataFrame,
    ref: CoverageReference,
    *,
    min_support: int | None = None,
    min_share: float = 0.001,
    alpha: float = 0.01,
    sigmas: float = 3.0,
) -> CoverageReport:
    """Unseen categorical pairs (with support) and the PCA reconstruction score of one batch."""
    if not isinstance(batch, pd.DataFrame):
        raise CoverageError(f"batch is a {type(batch).__name__}, not a pandas DataFrame")
    if min_support is not None and min_support < 1:
        raise CoverageError(f"min_support must be >= 1, got {min_support}")
    problems: list[CoverageProblem] = []
    n = int(len(batch))
    if n == 0:
        problems.append(CoverageProblem("problem", "the batch has 0 rows: no coverage check can run", rows=0,
                                        checks=["pairs", "multivariate"]))
        return CoverageReport(0, None, "no rows", [], None, problems)

    support, rule = _support(n, ref, min_support, min_share, alpha)
    pairs, n_unseen, n_alerting = _unseen_pairs(batch, ref, support, problems)
    multivariate = _multivariate(batch, ref, sigmas, problems)
    return CoverageReport(n, support, rule, pairs, multivariate, problems, n_unseen, n_alerting)


# --------------------------------------------------------------------------------------------


def _support(n: int, ref: CoverageReference, min_support: int | None, min_share: float,
             alpha: float) -> tuple[int, str]:
    share_floor = math.ceil(min_share * n)
    if min_support is not None:
        s = max(min_support, share_floor)
        return s, f"max(min_support={min_support}, ceil({min_share}·{n}))"
    unseen = 0
    for a, b in ref.pair_columns:
        possible = len(ref.seen_values[a]) * len(ref.seen_values[b])
        unseen += possible - len(ref.seen_pairs[_SEP.join((a, b))])
    unseen = max(unseen, 1)
    lam = 3.0 * n / ref.n_rows
    s = 5
    while stats.poisson.sf(s - 1, lam) > alpha / unseen:
        s += 1
    return max(s, share_floor), (
        f"max({s}, ceil({min_share}·{n})={share_floor}): a pair unseen in {ref.n_rows:,} reference rows has "
        f"rate ≤ 3/N, so at most Poisson({lam:.3g}) rows here; {s} rows has chance ≤ alpha/{unseen} "
        f"(alpha {alpha}, {unseen} unseen combinations)")


def _unseen_pairs(batch: pd.DataFrame, ref: CoverageReference, support: int,
                  problems: list[CoverageProblem]) -> tuple[list[UnseenPair], int, int]:
    missing = [c for c in ref.categorical if c not in batch.columns]
    for c in missing:
        problems.append(CoverageProblem("problem", f"categorical column {c!r} is missing from the batch; "
                                        "pairs involving it are not checked", column=c, checks=["pairs"]))
    used = sorted({c for pair in ref.pair_columns for c in pair} - set(missing))
    # integer codes per column: reference values first (their index in seen_values), then values
    # new to the reference; -1 for null. Pairs become int64 keys, so the check is vectorised.
    codes: dict[str, np.ndarray] = {}
    names: dict[str, list[str]] = {}
    for c in used:
        codes[c], names[c] = _batch_codes(batch[c], ref, c)
        nulls = codes[c] < 0
        if nulls.any():
            problems.append(CoverageProblem(
                "note", f"{int(nulls.sum())} row(s) have a null {c!r}; left out of the pairs with {c!r}",
                column=c, rows=int(nulls.sum()), example_rows=_examples(batch.index[nulls])))
    out: list[UnseenPair] = []
    n = len(batch)
    for a, b in ref.pair_columns:
        if a not in codes or b not in codes:
            continue
        ca, cb = codes[a], codes[b]
        valid = (ca >= 0) & (cb >= 0)
        keys = ca.astype(np.int64) * _KEY_BASE + cb
        new = valid & ~np.isin(keys, _seen_keys(ref, a, b))
        if not new.any():
            continue
        rows = np.flatnonzero(new)
        uniq, inverse, counts = np.unique(keys[rows], return_inverse=True, return_counts=True)
        na, nb = len(ref.seen_values[a]), len(ref.seen_values[b])
        for j, key in enumerate(uniq):
            ia, ib = divmod(int(key), _KEY_BASE)
            kind = "new_combination" if ia < na and ib < nb else "new_value"
            where = rows[inverse == j]
            out.append(UnseenPair([a, b], [names[a][ia], names[b][ib]], int(counts[j]), int(counts[j]) / n,
                                  kind, int(counts[j]) >= support, _examples(batch.index[where], 3)))
    out.sort(key=lambda p: (-p.rows, p.columns, p.values))
    total, alerting = len(out), sum(p.alert for p in out)
    if total > _MAX_LISTED_PAIRS:
        dropped = out[_MAX_LISTED_PAIRS:]
        problems.append(CoverageProblem(
            "note", f"{total} unseen pairs; listing the {_MAX_LISTED_PAIRS} largest "
                    f"({sum(p.alert for p in dropped)} of the {len(dropped)} not listed also reach support)"))
        out = out[:_MAX_LISTED_PAIRS]
    return out, total, alerting


def _batch_codes(values: pd.Series, ref: CoverageReference, column: str) -> tuple[np.ndarray, list[str]]:
    index = ref._cache.setdefault("value_index", {}).get(column)
    if index is None:
        index = {v: i for i, v in enumerate(ref.seen_values[column])}
        ref._cache["value_index"][column] = index
    names = list(ref.seen_values[column])
    raw, uniques = pd.factorize(values)
    lookup = np.empty(len(uniques) + 1, dtype=np.int64)
    for j, u in enumerate(uniques):
        v = _norm_value(u)
        i = index.get(v)
        if i is None:
            i = len(names)
            names.append(v)
        lookup[j] = i
    lookup[-1] = -1  # factorize gives -1 for nulls
    return lookup[raw], names


def _seen_keys(ref: CoverageReference, a: str, b: str) -> np.ndarray:
    cache = ref._cache.setdefault("seen_keys", {})
    if (a, b) not in cache:
        ia = {v: i for i, v in enumerate(ref.seen_values[a])}
        ib = {v: i for i, v in enumerate(ref.seen_values[b])}
        keys = []
        for k in ref.seen_pairs[_SEP.join((a, b))]:
            va, vb = k.split(_SEP, 1)
            keys.append(ia[va] * _KEY_BASE + ib[vb])
        cache[(a, b)] = np.sort(np.asarray(keys, dtype=np.int64))
    return cache[(a, b)]


def _multivariate(batch: pd.DataFrame, ref: CoverageReference, sigmas: float,
                  problems: list[CoverageProblem]) -> MultivariateResult | None:
    if not ref.has_pca:
        problems.append(CoverageProblem("note", "the reference has no PCA (fewer than 2 encoded dimensions)",
                                        checks=["multivariate"]))
        return None
    missing = [c for c in ref.numerical + ref.categorical if c not in batch.columns]
    if missing:
        problems.append(CoverageProblem(
            "problem", f"column(s) {missing} missing from the batch: the multivariate score needs every "
                       "reference column", column=missing[0], checks=["multivariate"]))
        return None
    for c in ref.numerical:
        raw = batch[c]
        col = pd.to_numeric(raw, errors="coerce").replace([np.inf, -np.inf], np.nan)
        bad = col.isna() & raw.notna()
        if bad.any():
            problems.append(CoverageProblem(
                "problem",
                f"{int(bad.sum())} row(s) of {c!r} are not finite numbers; imputed with the reference median",
                column=c, rows=int(bad.sum()), example_rows=_examples(batch.index[bad.to_numpy()])))
        nulls = raw.isna()
        if nulls.any():
            problems.append(CoverageProblem(
                "note", f"{int(nulls.sum())} null(s) in {c!r} imputed with the reference median for the PCA",
                column=c, rows=int(nulls.sum()), example_rows=_examples(batch.index[nulls.to_numpy()])))
    resid = _residuals(_encode(batch, ref), ref)
    errors = np.sqrt((resid ** 2).sum(axis=1))
    value = float(errors.mean())
    n = len(errors)
    tau2 = 0.0
    if len(ref.day_errors) >= 3:
        sampling = float(np.mean([ref.error_row_sd ** 2 / m for m in ref.day_sizes]))
        tau2 = max(0.0, float(np.var(ref.day_errors, ddof=1)) - sampling)
    sd = math.sqrt(ref.error_row_sd ** 2 / n + tau2)
    lower, upper = ref.error_mean - sigmas * sd, ref.error_mean + sigmas * sd
    # Only the high side alerts: rows the training set cannot explain are what coverage is for.
    # A lower error (the day is more typical than training) is reported in the message; on a
    # band estimated from a few reference days, alerting on it was a false alarm on healthy days.
    alert = value > upper
    # where the residual grew compared with the reference: tells the reviewer where to look
    today = _column_residuals(resid, ref)
    excess = {c: today[c] - ref.column_residuals.get(c, 0.0) for c in today}
    total = sum(v for v in excess.values() if v > 0)
    contributions = {}
    if total > 0:
        ranked = sorted(((c, v / total) for c, v in excess.items() if v > 0), key=lambda kv: -kv[1])
        contributions = dict(ranked[:5])
    where = ("above" if value > upper else
             "below (more typical than training; not alerted)" if value < lower else "within")
    top = ", ".join(f"{c} {v:.0%}" for c, v in list(contributions.items())[:3]) or "none"
    msg = (f"PCA reconstruction error {value:.4g} over {n:,} rows is {where} the band {lower:.4g}–{upper:.4g} "
           f"(reference {ref.error_mean:.4g}, {ref._arrays()[1].shape[0]} components); "
           f"residual growth by column: {top}")
    return MultivariateResult(value, ref.error_mean, lower, upper, alert, msg, ref._arrays()[1].shape[0],
                              contributions)


def _residuals(x: np.ndarray, ref: CoverageReference) -> np.ndarray:
    mean, comps = ref._arrays()
    centred = x - mean
    return centred - (centred @ comps.T) @ comps


def _column_residuals(resid: np.ndarray, ref: CoverageReference) -> dict[str, float]:
    sq = (resid ** 2).mean(axis=0) if len(resid) else np.zeros(resid.shape[1])
    return {col: float(sq[idx].sum()) for col, idx in _column_slices(ref).items()}


def _column_slices(ref: CoverageReference) -> dict[str, np.ndarray]:
    out, start = {}, 0
    for c in ref.numerical:
        out[c] = np.arange(start, start + 1)
        start += 1
    for c in ref.categorical:
        k = len(ref.cat_levels[c])
        out[c] = np.arange(start, start + k)
        start += k
    return out


def _encode(frame: pd.DataFrame, ref: CoverageReference) -> np.ndarray:
    blocks = []
    for c in ref.numerical:
        col = pd.to_numeric(frame[c], errors="coerce").replace([np.inf, -np.inf], np.nan)
        col = col.fillna(ref.num_fill[c]).to_numpy(dtype=float)
        blocks.append(((col - ref.num_center[c]) / ref.num_scale[c])[:, None])
    for c in ref.categorical:
        levels = ref.cat_levels[c]
        codes = _level_codes(_as_str(frame[c]), levels)
        onehot = np.zeros((len(frame), len(levels)))
        onehot[np.arange(len(frame)), codes] = 1.0
        blocks.append((onehot - np.asarray(ref.cat_shares[c])) / ref.cat_scale[c])
    return np.hstack(blocks) if blocks else np.zeros((len(frame), 0))


def _row_errors(x: np.ndarray, ref: CoverageReference) -> np.ndarray:
    return np.sqrt((_residuals(x, ref) ** 2).sum(axis=1))


def _level_codes(values: pd.Series, levels: list[str]) -> np.ndarray:
    """Index of each value in levels: known top values, else OTHER; nulls MISSING."""
    index = {v: i for i, v in enumerate(levels)}
    other, missing = index[OTHER], index[MISSING]
    codes, uniques = pd.factorize(values)  # nulls get code -1
    lookup = np.array([index.get(u, other) for u in uniques] + [missing], dtype=np.int64)
    return lookup[codes]  # code -1 picks the last entry: MISSING


def _norm_value(v: Any) -> str:
    """One spelling per category: booleans and integral floats become ints (True == 1 == 1.0)."""
    if isinstance(v, (bool, np.bool_)):
        v = int(v)
    elif isinstance(v, (float, np.floating)) and float(v).is_integer():
        v = int(v)
    elif isinstance(v, np.integer):
        v = int(v)
    return str(v)


def _as_str(values: pd.Series) -> pd.Series:
    """Categorical values as normalised strings, nulls kept as None (normalises distinct values only)."""
    codes, uniques = pd.factorize(values)
    names = np.array([_norm_value(u) for u in uniques] + [None], dtype=object)
    return pd.Series(names[codes], index=values.index, dtype=object)


def _examples(index: pd.Index, k: int = 5) -> list[Any]:
    return [_jsonable(v) for v in list(index[:k])]


_jsonable = jsonable  # one encoder for every core module (watchkeeper.jsonable)
