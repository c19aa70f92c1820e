"""Prediction monitors: is the model's output still what it used to be?

Pure functions, no Airflow, no database. `build_prediction_baseline` summarises reference days of
model output into a JSON-able `PredictionBaseline`; `monitor_predictions` compares one day's batch
with it and returns a `PredictionReport` (one `MonitorResult` per monitor, the problems met, and a
small `DaySummary` of today's output that later days get back as `history`).

Every threshold comes from two sources of variation, never from a fixed constant:

* sampling noise at *today's* batch size (a batch of 200 rows moves far more by chance than one of
  20,000), and
* the reference's own day-to-day spread, when the reference is given as a list of days (real
  traffic moves from day to day more than sampling alone explains; thresholds that ignore this
  fire every day on large batches).

`alpha` is the false-alarm probability per monitor on a day drawn from the reference
distribution (default 0.01: about one false alert per monitor in 100 healthy days).
z2 = Φ⁻¹(1 − alpha/2) (two-sided) and z1 = Φ⁻¹(1 − alpha) (one-sided).

The rules
---------
positive_rate (binary classification)
    Rate of the positive label (the predicted label column if given, else score >= threshold).
    p0 = pooled reference rate over N reference rows. Day-to-day excess variance
    τ² = max(0, var(day rates) − mean(p0(1−p0)/n_day)) (needs ≥ 3 reference days, else 0).
    Today's count of positives x among n rows is compared with its predictive distribution: the
    rate is p0 give or take p0(1−p0)/N (finite reference) + τ², and the count is binomial given
    the rate, which makes a beta-binomial. Alert when x is outside its alpha/2 and 1 − alpha/2
    quantiles. With τ = 0 and N → ∞ this is the exact binomial test, whose normal approximation
    is the score test ("the Wilson interval of today's rate excludes p0"); the exact tails are
    used because at p0 ≈ 5% and n = 200 the score band fires ~30% more often than alpha. The
    Wilson interval of today's rate is reported in the details. A jump from 5% to 30% is far
    outside the band at any n ≥ 20.
class_mix (classification)
    The same band for every predicted class, with alpha split over the k classes (Bonferroni).
    A class never predicted in the reference gets p0 = 0.5/(N+1) (the reference cannot rule out
    a rare class), so a new class that appears in force alerts. Value: total-variation distance
    between today's mix and the baseline mix.
mean_prediction (regression)
    μ0, σ0 of the reference predictions, τ² from day means as above.
    Band: μ0 ± q2·sqrt(σ0²·(1/n + 1/N) + τ²·(1 + 1/k)) over k reference days; q2 is the normal
    quantile when τ² = 0, else Student's t with Welch-Satterthwaite degrees of freedom
    (k - 1 when the day-to-day spread dominates): τ² from a week of days is itself uncertain.
score_drift (every task with a score column)
    An Evidently legacy stat test (default "wasserstein": Wasserstein distance normed by the
    reference's standard deviation) between a 5,000-point quantile sample of the reference and
    today's scores (batches above 20,000 rows are compressed to a 20,000-point quantile sample,
    which only lowers the noise). Threshold = max(sampling, day):
    sampling = the (1 − alpha) quantile of the same statistic over 1,000 (wasserstein, computed
    in one vectorised pass) or 300 (other methods) bootstrap batches drawn from the reference
    sample at the effective size n·N/(n+N) (the two-sample noise of a batch of n against a
    reference of N), rounded down to a 2^(1/8) grid and capped at 20,000 (both conservative:
    fewer rows, more noise; the grid lets days of similar size share one bootstrap);
    day = mean + t1·sd·sqrt(1 + 1/k) of the leave-one-day-out statistic of the k reference days
    (k ≥ 3; t1 is Student's t with k - 1 degrees of freedom: a prediction bound for one more day).
distinct_share, top_item_entropy (ranking / recommendation)
    Over "units" (queries if query_col is given, else rows), each unit contributing its
    recommended items (its top_k by score when top_k is set). Both statistics depend on how many
    units are counted, so they are measured on a random subsample of S = min(units today,
    1,000, pool/5) units (rounded down to a 2^(1/8) grid above 64); the baseline keeps a pool
    of up to 5,000 reference units. The null at size S is 200 subsamples of the pool (mean m,
    sd s, with the finite-pool correction undone); τ² is the excess spread of the reference
    days around that null. Lower threshold: m − z1·sqrt(s² + τ²). Only a *loss* of diversity alerts (feedback loops concentrate the top
    items); a rise is reported in the message but not alerted, since catalogues grow.
stagnation (needs a previous day's DaySummary in `history`)
    Outputs that stop moving. Two rules:
    1. exact: today's output multiset (sorted scores, and items for ranking) has the same SHA-256
       fingerprint as the previous day's. Disabled when the reference itself shows identical
       consecutive days, or when identical batches happen by chance in the simulation below
       (very discrete outputs).
    2. near-frozen: change = mean |Δ quantile| over 100 quantiles of the score between the two
       days, divided by the reference sd (≈ normed Wasserstein). Even two independent healthy
       days differ by sampling noise; the lower threshold is the alpha quantile of that change
       over 200 pairs of independent batches drawn from the reference at the two days' sizes
       (rounded up to a 2^(1/8) grid and capped at 20,000, so that days share a simulation,
       then rescaled to the actual sizes by the 1/sqrt(effective size) law). If ≥ 3
       consecutive reference-day changes c are known, the threshold is lowered to
       min(sampling, exp(mean(log c) − z1·sd(log c))) so that a model whose output
       legitimately moves slowly does not alert.

Input problems are findings, not exceptions: an empty batch, a missing or all-null score column,
unparseable or infinite scores become `problems` entries naming the column, row count and example
rows; every monitor that can still run does, and every monitor that cannot is listed with its
reason. Building a baseline from unusable reference data raises `BaselineError`.
"""

from __future__ import annotations

import hashlib
import math
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from watchkeeper.jsonable import jsonable
from scipy import stats

Task = Literal["binary_classification", "multiclass_classification", "regression", "ranking"]
TASKS: tuple[str, ...] = ("binary_classification", "multiclass_classification", "regression", "ranking")

# Evidently legacy stat tests whose drift_score is a distance (bigger = more drift). The p-value
# tests (ks, chisquare, ...) point the other way and would need a different null; not offered.
DISTANCE_METHODS: tuple[str, ...] = ("wasserstein", "psi", "jensenshannon", "hellinger", "kl_div", "ed")

SCHEMA_VERSION = 1
_SAMPLE_SIZE = 5_000  # reference score sample kept in the baseline (quantile sample)
_BATCH_CAP = 20_000  # batches above this are compressed to a quantile sample of this size
_DRIFT_REPS = 300  # bootstrap batches for the score-drift null (generic stat tests)
_DRIFT_REPS_FAST = 1_000  # the same for wasserstein, whose bootstrap is vectorised
_STAG_REPS = 200  # pairs of independent batches for the stagnation null
_DIV_REPS = 200  # subsamples for the diversity null
_N_QUANTILES = 100  # quantiles stored per day for stagnation
_POOL_UNITS = 5_000  # reference ranking units kept in the baseline
_DIV_UNITS = 1_000  # diversity is measured on at most this many units
_MIN_DIV_UNITS = 10  # fewer units than this: diversity is not tested
_TOP_ITEMS = 20  # items listed in the day summary
_QPROBS = (np.arange(_N_QUANTILES) + 0.5) / _N_QUANTILES


class PredictionMonitorError(ValueError):
    """Base class of the errors raised by watchkeeper.predictions."""


class BaselineError(PredictionMonitorError):
    """The reference data or a stored baseline cannot be used; the message says where and why."""


# --------------------------------------------------------------------------------------------
# result types


@dataclass
class MonitorResult:
    """One monitor's verdict for one day. lower/upper bound the healthy band (None = unbounded)."""

    name: str
    value: float | None
    baseline: float | None
    lower: float | None
    upper: float | None
    alert: bool
    message: str
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return _jsonable(asdict(self))


@dataclass
class Problem:
    """Something in the input that stopped or limited a monitor (kind: 'problem' or 'note')."""

    kind: Literal["problem", "note"]
    message: str
    column: str | None = None
    monitors: list[str] = field(default_factory=list)
    rows: int | None = None
    example_rows: list[Any] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return _jsonable(asdict(self))


@dataclass
class DaySummary:
    """Small JSON-able statistics of one day's output; pass earlier days back as `history`."""

    ds: str | None = None
    n_rows: int = 0
    n_scores: int = 0
    score_mean: float | None = None
    score_sd: float | None = None
    score_quantiles: list[float] | None = None
    fingerprint: str | None = None
    positive_rate: float | None = None
    class_shares: dict[str, float] = field(default_factory=dict)
    n_units: int | None = None
    distinct_share: float | None = None
    top_item_entropy: float | None = None
    top_items: list[list[Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return _jsonable(asdict(self))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DaySummary:
        known = {f for f in cls.__dataclass_fields__}
        unknown = sorted(set(data) - known)
        if unknown:
            raise PredictionMonitorError(f"DaySummary.from_dict: unknown field(s) {unknown}")
        return cls(**data)


@dataclass
class PredictionReport:
    task: str
    n_rows: int
    monitors: list[MonitorResult]
    problems: list[Problem]
    summary: DaySummary
    alpha: float

    @property
    def alert(self) -> bool:
        return any(m.alert for m in self.monitors)

    @property
    def alerts(self) -> list[MonitorResult]:
        return [m for m in self.monitors if m.alert]

    def monitor(self, name: str) -> MonitorResult | None:
        return next((m for m in self.monitors if m.name == name), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "n_rows": int(self.n_rows),
            "alpha": float(self.alpha),
            "alert": self.alert,
            "monitors": [m.to_dict() for m in self.monitors],
            "problems": [p.to_dict() for p in self.problems],
            "summary": self.summary.to_dict(),
        }


# --------------------------------------------------------------------------------------------
# baseline


@dataclass
class PredictionBaseline:
    """Summary of the reference output. JSON-able through to_dict()/from_dict()."""

    task: str
    score_col: str | None
    label_col: str | None
    item_col: str | None
    query_col: str | None
    positive_label: Any
    decision_threshold: float
    top_k: int | None
    method: str
    n_rows: int
    n_days: int
    # score
    score_n: int = 0
    score_sample: list[float] | None = None
    score_mean: float | None = None
    score_sd: float | None = None
    score_day_stats: list[float] = field(default_factory=list)
    score_consecutive_changes: list[float] = field(default_factory=list)
    identical_consecutive_days: bool = False
    # classification
    label_n: int = 0
    positive_rate: float | None = None
    class_counts: dict[str, int] = field(default_factory=dict)
    class_day_shares: list[dict[str, float]] = field(default_factory=list)
    label_day_sizes: list[int] = field(default_factory=list)
    # regression
    day_means: list[float] = field(default_factory=list)
    day_sizes: list[int] = field(default_factory=list)
    # ranking: a pool of reference units (vocabulary + codes + offsets) and per-day diversity
    pool_items: list[str] = field(default_factory=list)
    pool_codes: list[int] = field(default_factory=list)
    pool_offsets: list[int] = field(default_factory=list)
    day_diversity: list[dict[str, float]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        data = {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "_cache"}
        data["schema_version"] = SCHEMA_VERSION
        return _jsonable(data)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PredictionBaseline:
        data = dict(data)
        version = data.pop("schema_version", None)
        if version != SCHEMA_VERSION:
            raise BaselineError(
                f"PredictionBaseline.from_dict: schema_version {version!r} is not {SCHEMA_VERSION}; "
                "rebuild the baseline"
            )
        fields = {f for f in cls.__dataclass_fields__ if f != "_cache"}
        missing = sorted(f for f in ("task", "method", "n_rows", "n_days") if f not in data)
        unknown = sorted(set(data) - fields)
        if missing or unknown:
            raise BaselineError(
                f"PredictionBaseline.from_dict: missing field(s) {missing}, unknown field(s) {unknown}"
            )
        return cls(**data)

    # the reference score sample as an array, cached (from_dict gives lists)
    def _sample(self) -> np.ndarray:
        if "sample" not in self._cache:
            self._cache["sample"] = np.asarray(self.score_sample or [], dtype=float)
        return self._cache["sample"]


def build_prediction_baseline(
    reference_days: Sequence[pd.DataFrame] | pd.DataFrame,
    *,
    task: Task,
    score_col: str | None = None,
    label_col: str | None = None,
    item_col: str | None = None,
    query_col: str | None = None,
    positive_label: Any = 1,
    decision_threshold: float = 0.5,
    top_k: int | None = None,
    method: str = "wasserstein",
) -> PredictionBaseline:
    """Summarise reference output (one DataFrame, or a list of days for day-to-day spread).

    binary_classification: score_col and/or label_col (the *predicted* label); without
    label_col the positive label is score >= decision_threshold.
    multiclass_classification: label_col (predicted class), score_col optional.
    regression: score_col (the prediction). ranking: item_col, optional query_col and score_col.
    """
    if task not in TASKS:
        raise BaselineError(f"task {task!r} is not one of {TASKS}")
    if method not in DISTANCE_METHODS:
        raise BaselineError(f"method {method!r} is not one of the distance stat tests {DISTANCE_METHODS}")
    if task == "regression" and not score_col:
        raise BaselineError("task 'regression' needs score_col (the prediction column)")
    if task == "binary_classification" and not (score_col or label_col):
        raise BaselineError("task 'binary_classification' needs score_col or label_col")
    if task == "multiclass_classification" and not label_col:
        raise BaselineError("task 'multiclass_classification' needs label_col (the predicted class)")
    if task == "ranking" and not item_col:
        raise BaselineError("task 'ranking' needs item_col (the recommended item)")
    if top_k is not None and top_k < 1:
        raise BaselineError(f"top_k must be >= 1, got {top_k}")

    days = [reference_days] if isinstance(reference_days, pd.DataFrame) else list(reference_days)
    if not days:
        raise BaselineError("reference_days is empty: give at least one DataFrame of reference output")
    notes: list[str] = []
    needed = [c for c in (score_col, label_col, item_col, query_col) if c]
    kept: list[pd.DataFrame] = []
    for i, day in enumerate(days):
        if not isinstance(day, pd.DataFrame):
            raise BaselineError(f"reference day {i} is a {type(day).__name__}, not a pandas DataFrame")
        missing = [c for c in needed if c not in day.columns]
        if missing:
            raise BaselineError(
                f"reference day {i}: column(s) {missing} missing (columns present: {list(day.columns)})"
            )
        if len(day) == 0:
            notes.append(f"reference day {i} has 0 rows and was left out of the baseline")
            continue
        kept.append(day)
    if not kept:
        raise BaselineError("every reference day has 0 rows")
    if len(kept) < 3:
        notes.append(
            f"{len(kept)} reference day(s): fewer than 3, so thresholds cover sampling noise only "
            "(no day-to-day spread); give a list of daily frames for day-to-day spread"
        )

    n_rows = int(sum(len(d) for d in kept))
    base = PredictionBaseline(
        task=task, score_col=score_col, label_col=label_col, item_col=item_col, query_col=query_col,
        positive_label=_norm_label(positive_label), decision_threshold=float(decision_threshold),
        top_k=top_k, method=method, n_rows=n_rows, n_days=len(kept), notes=notes,
    )

    # --- scores
    if score_col:
        day_scores = []
        for i, day in enumerate(kept):
            values, bad, n_null = _clean_scores(day[score_col])
            if bad.size:
                notes.append(f"reference day {i}: {bad.size} row(s) of {score_col!r} are not finite numbers; dropped")
            if n_null:
                notes.append(f"reference day {i}: {n_null} null value(s) in {score_col!r}; dropped")
            day_scores.append(values)
        pooled = np.concatenate(day_scores)
        if pooled.size == 0:
            raise BaselineError(f"reference column {score_col!r} has no finite numeric value in any day")
        base.score_n = int(pooled.size)
        sample = _quantile_sample(pooled, _SAMPLE_SIZE)
        base.score_sample = sample.tolist()
        base.score_mean = float(pooled.mean())
        base.score_sd = float(pooled.std())
        usable = [s for s in day_scores if s.size]
        if len(usable) >= 3:
            stat = _drift_stat(method)
            for j, s in enumerate(usable):
                others = np.concatenate([o for k, o in enumerate(usable) if k != j])
                base.score_day_stats.append(stat(_quantile_sample(others, _SAMPLE_SIZE), _compress(s)))
        # consecutive-day changes in the order given: how fast this model's output moves anyway
        qs = [np.quantile(s, _QPROBS, method="inverted_cdf") for s in day_scores if s.size]
        fps = [_fingerprint(s, None) for s in day_scores if s.size]
        sd = base.score_sd if base.score_sd and base.score_sd > 0 else None
        if sd:
            base.score_consecutive_changes = [
                float(np.mean(np.abs(qs[j + 1] - qs[j])) / sd) for j in range(len(qs) - 1)
            ]
        base.identical_consecutive_days = any(fps[j + 1] == fps[j] for j in range(len(fps) - 1))
        if base.identical_consecutive_days:
            notes.append("the reference has identical consecutive days: the exact stagnation rule is off")

    # --- labels / classes
    if task in ("binary_classification", "multiclass_classification"):
        total: dict[str, int] = {}
        for i, day in enumerate(kept):
            labels, n_missing = _labels(day, base)
            if n_missing:
                notes.append(f"reference day {i}: {n_missing} row(s) without a predicted label; dropped")
            counts = labels.value_counts()
            n = int(counts.sum())
            if n == 0:
                continue
            shares = {str(k): int(v) / n for k, v in counts.items()}
            base.class_day_shares.append(shares)
            base.label_day_sizes.append(n)
            for k, v in counts.items():
                total[str(k)] = total.get(str(k), 0) + int(v)
        base.label_n = int(sum(total.values()))
        if base.label_n == 0:
            raise BaselineError("no reference row has a predicted label (label column all null, or no valid score)")
        base.class_counts = dict(sorted(total.items()))
        if task == "binary_classification":
            base.positive_rate = total.get(str(base.positive_label), 0) / base.label_n
            if len(total) > 2:
                raise BaselineError(
                    f"task 'binary_classification' but the reference predicts {len(total)} classes "
                    f"{sorted(total)[:10]} in column {label_col!r}; use 'multiclass_classification'"
                )
            if str(base.positive_label) not in total:
                # a misspelt positive label would otherwise monitor a rate that is always 0
                message = (f"positive_label {base.positive_label!r} never appears among the predicted labels "
                           f"{sorted(total)} of column {label_col or score_col!r}")
                if len(total) == 2:
                    raise BaselineError(message + "; set positive_label to one of them")
                notes.append(message + "; the reference predicts a single class")

    # --- regression day means
    if task == "regression":
        for day in kept:
            values, _, _ = _clean_scores(day[score_col])
            if values.size:
                base.day_means.append(float(values.mean()))
                base.day_sizes.append(int(values.size))

    # --- ranking pool and per-day diversity
    if task == "ranking":
        units_per_day = [_units(day, base) for day in kept]
        all_units = _Units.concat(units_per_day)
        if len(all_units) == 0:
            raise BaselineError(f"no reference row has an item in {item_col!r}")
        if len(all_units) > _POOL_UNITS:
            pool_items = all_units.subsample(_POOL_UNITS, _seed("pool"))
        else:
            pool_items = all_units
        codes, vocab = pd.factorize(pool_items.items, sort=True)
        base.pool_items = [str(v) for v in vocab]
        base.pool_codes = codes.tolist()
        base.pool_offsets = pool_items.offsets.tolist()
        pool_size = len(pool_items)
        if pool_size < 5 * _MIN_DIV_UNITS:
            notes.append(f"only {pool_size} reference units: too few to test output diversity")
        for i, units in enumerate(units_per_day):
            size = _div_size(len(units), pool_size)
            if size < _MIN_DIV_UNITS:
                continue
            metrics = _diversity(units.subsample(size, _seed(f"day{i}")).items)
            base.day_diversity.append({"units": size, **metrics})
    return base


# --------------------------------------------------------------------------------------------
# monitoring


def monitor_predictions(
    batch: pd.DataFrame,
    baseline: PredictionBaseline,
    *,
    history: Iterable[DaySummary | dict] = (),
    alpha: float = 0.01,
    ds: str | None = None,
) -> PredictionReport:
    """Run every monitor that fits the baseline's task on one day's batch.

    history: earlier days' summaries (DaySummary or its dict); the newest one before `ds` is the
    "previous day" for stagnation (entries on or after `ds` are ignored, so a retry or a backfill
    sees the day as it was). alpha: false-alarm probability per monitor on a healthy day.
    A day-level false-alarm rate is split over planned_monitors(baseline) by the caller.
    """
    if not 0 < alpha < 0.5:
        raise PredictionMonitorError(f"alpha must be in (0, 0.5), got {alpha}")
    if not isinstance(batch, pd.DataFrame):
        raise PredictionMonitorError(f"batch is a {type(batch).__name__}, not a pandas DataFrame")
    b = baseline
    history = list(history)
    problems: list[Problem] = []
    monitors: list[MonitorResult] = []
    summary = DaySummary(ds=ds, n_rows=int(len(batch)))
    planned = _planned_monitors(b)

    if len(batch) == 0:
        problems.append(Problem("problem", "the batch has 0 rows: no prediction monitor can run",
                                monitors=planned, rows=0))
        return PredictionReport(b.task, 0, monitors, problems, summary, alpha)

    # --- scores
    scores: np.ndarray | None = None
    score_monitors = [m for m in planned if m in ("score_drift", "mean_prediction", "stagnation")]
    if b.task == "binary_classification" and not b.label_col:
        score_monitors += ["positive_rate", "class_mix"]  # labels are derived from the score
    if b.score_col:
        if b.score_col not in batch.columns:
            problems.append(Problem(
                "problem",
                f"score column {b.score_col!r} is missing from the batch (columns: {list(batch.columns)[:20]})",
                column=b.score_col, monitors=score_monitors))
        else:
            values, bad, n_null = _clean_scores(batch[b.score_col])
            if bad.size:
                problems.append(Problem(
                    "problem", f"{bad.size} row(s) of {b.score_col!r} are not finite numbers (text or ±inf); left out",
                    column=b.score_col, rows=int(bad.size), example_rows=_examples(bad)))
            if n_null:
                null_rows = batch.index[batch[b.score_col].isna().to_numpy()]
                all_null = n_null == len(batch)
                problems.append(Problem(
                    "problem" if all_null else "note",
                    (f"score column {b.score_col!r} is null in every row" if all_null
                     else f"{n_null} of {len(batch)} row(s) have a null {b.score_col!r}; left out"),
                    column=b.score_col, monitors=score_monitors if all_null else [], rows=int(n_null),
                    example_rows=_examples(null_rows)))
            if values.size:
                scores = values
            elif not n_null == len(batch):
                problems.append(Problem("problem", f"no usable value in {b.score_col!r}", column=b.score_col,
                                        monitors=score_monitors))
    if scores is not None:
        summary.n_scores = int(scores.size)
        summary.score_mean = float(scores.mean())
        summary.score_sd = float(scores.std())
        summary.score_quantiles = np.quantile(scores, _QPROBS, method="inverted_cdf").tolist()

    # --- classification
    if b.task in ("binary_classification", "multiclass_classification"):
        labels = None
        if b.label_col and b.label_col not in batch.columns:
            problems.append(Problem(
                "problem", f"predicted-label column {b.label_col!r} is missing from the batch",
                column=b.label_col, monitors=[m for m in planned if m in ("positive_rate", "class_mix")]))
        elif b.label_col or scores is not None:
            labels, n_missing = _labels(batch, b)
            if n_missing:
                col = b.label_col or b.score_col
                problems.append(Problem(
                    "note" if n_missing < len(batch) else "problem",
                    f"{n_missing} row(s) have no predicted label (null {col!r}); left out of the class monitors",
                    column=col, rows=int(n_missing),
                    monitors=[] if n_missing < len(batch) else ["positive_rate", "class_mix"]))
            if labels.empty:
                labels = None
        if labels is not None:
            counts = {str(k): int(v) for k, v in labels.value_counts().items()}
            n = int(sum(counts.values()))
            summary.class_shares = {k: v / n for k, v in sorted(counts.items())}
            if b.task == "binary_classification":
                monitors.append(_positive_rate(counts, n, b, alpha))
                summary.positive_rate = counts.get(str(b.positive_label), 0) / n
            monitors.append(_class_mix(counts, n, b, alpha))

    # --- regression
    if b.task == "regression" and scores is not None:
        monitors.append(_mean_prediction(scores, b, alpha))

    # --- score drift
    if scores is not None:
        monitors.append(_score_drift(scores, b, alpha))

    # --- ranking diversity
    units = None
    if b.task == "ranking":
        missing = [c for c in (b.item_col, b.query_col) if c and c not in batch.columns]
        if missing:
            problems.append(Problem(
                "problem", f"column(s) {missing} missing from the batch", column=missing[0],
                monitors=["distinct_share", "top_item_entropy"]))
        else:
            if b.top_k and b.score_col and scores is None:
                problems.append(Problem(
                    "note", f"top_k={b.top_k} needs {b.score_col!r} to rank; the batch order is used instead",
                    column=b.score_col))
            units = _units(batch, b, use_scores=scores is not None)
            n_null_items = int(batch[b.item_col].isna().sum())
            if n_null_items:
                problems.append(Problem(
                    "note", f"{n_null_items} row(s) have a null {b.item_col!r}; left out", column=b.item_col,
                    rows=n_null_items, example_rows=_examples(batch.index[batch[b.item_col].isna().to_numpy()])))
            monitors.extend(_diversity_monitors(units, b, alpha, problems, summary))

    summary.fingerprint = _day_fingerprint(scores, units)

    # --- stagnation
    prev, ignored = _previous(history, ds)
    if ignored:
        problems.append(Problem(
            "note", f"{ignored} history summar{'y' if ignored == 1 else 'ies'} dated on or after {ds} "
                    "ignored for stagnation (a rerun compares with earlier days only)"))
    if prev is None:
        problems.append(Problem("note", "stagnation needs a previous day's summary in history; none given",
                                monitors=["stagnation"]))
    else:
        result = _stagnation(summary, prev, history, b, alpha, problems)
        if result is not None:
            monitors.append(result)
    return PredictionReport(b.task, int(len(batch)), monitors, problems, summary, alpha)


def planned_monitors(b: PredictionBaseline) -> list[str]:
    """The monitors monitor_predictions runs for this baseline's task."""
    return _planned_monitors(b)


def _planned_monitors(b: PredictionBaseline) -> list[str]:
    names = []
    if b.task == "binary_classification":
        names += ["positive_rate", "class_mix"]
    if b.task == "multiclass_classification":
        names += ["class_mix"]
    if b.task == "regression":
        names += ["mean_prediction"]
    if b.score_col:
        names += ["score_drift"]
    if b.task == "ranking":
        names += ["distinct_share", "top_item_entropy"]
    return names + ["stagnation"]


# --------------------------------------------------------------------------------------------
# the monitors


def _excess_var(values: Sequence[float], sampling_vars: Sequence[float]) -> float:
    """Day-to-day variance beyond sampling noise (0 with fewer than 3 days)."""
    if len(values) < 3:
        return 0.0
    return max(0.0, float(np.var(values, ddof=1)) - float(np.mean(sampling_vars)))


def _predictive_quantile(q: float, sd2: float, tau2: float, days: int) -> float:
    """The q quantile multiplier for a new day when part of its variance (tau2, of sd2 in all)
    is a day-to-day spread estimated from only `days` reference days.

    A handful of days pins that spread down poorly (with 7 days its estimate is off by 2x
    often), so a Gaussian band around it alerts far more than alpha on healthy days whenever
    the days genuinely differ (weather moves a seasonal model's output by more than sampling
    does). Welch-Satterthwaite degrees of freedom: days - 1 when the spread dominates, infinite
    (the normal quantile) when sampling noise dominates, as it does on exchangeable days."""
    if tau2 <= 0 or days < 2 or sd2 <= 0:
        return float(stats.norm.ppf(q))
    df = (days - 1) * (sd2 / tau2) ** 2
    return float(stats.t.ppf(q, df))


def _count_band(n: int, k0: int, N: int, tau2: float, alpha: float) -> tuple[int, int, float]:
    """Healthy range [lo, hi] of today's count of a class among n rows, two-sided alpha.

    The class was seen k0 times in N reference rows (rate p0). Today's true rate is uncertain by
    p0(1-p0)/N (a finite reference) plus τ² (day-to-day spread); the count is binomial given the
    rate. That mixture is a beta-binomial with mean p0 and rate variance v; its exact tails cope
    with small counts (a score/Wilson band at p0 = 5% and n = 200 fires ~30% too often).
    """
    p0 = (k0 + 0.5) / (N + 1) if k0 in (0, N) else k0 / N  # a class never seen may still exist
    q0 = 1 - p0
    v = p0 * q0 / N + tau2
    ab = p0 * q0 / v - 1  # a + b of the beta distribution of the rate
    if n > 2_000_000:  # the exact pmf gets slow; counts this large are close to normal
        sd = math.sqrt(n * p0 * q0 * (1 + (n - 1) / (ab + 1)))
        z = stats.norm.ppf(1 - alpha / 2)
        lo, hi = max(0, math.ceil(n * p0 - z * sd - 0.5)), min(n, math.floor(n * p0 + z * sd + 0.5))
    else:
        dist = stats.binom(n, p0) if ab > 1e9 else stats.betabinom(n, p0 * max(ab, 1e-6), q0 * max(ab, 1e-6))
        # quantiles from the pmf over mean ± 12 sd at once (scipy's generic ppf re-sums the pmf
        # for every probe: slow); the mass left outside is negligible (< 1e-15)
        sd = math.sqrt(n * p0 * q0 * (1 + (n - 1) / (ab + 1)))
        start = max(0, int(n * p0 - 12 * sd - 20))
        stop = min(n, int(n * p0 + 12 * sd + 20))
        cdf = np.cumsum(dist.pmf(np.arange(start, stop + 1)))
        lo = start + int(min(stop - start, np.searchsorted(cdf, alpha / 2)))
        hi = start + int(min(stop - start, np.searchsorted(cdf, 1 - alpha / 2)))
    return lo, hi, math.sqrt(v)


def _positive_rate(counts: dict[str, int], n: int, b: PredictionBaseline, alpha: float) -> MonitorResult:
    pos = str(b.positive_label)
    x = counts.get(pos, 0)
    rate = x / n
    p0 = float(b.positive_rate)
    k0 = b.class_counts.get(pos, 0)
    tau2 = _excess_var([d.get(pos, 0.0) for d in b.class_day_shares],
                       [p0 * (1 - p0) / m for m in b.label_day_sizes])
    lo, hi, rate_sd = _count_band(n, k0, b.label_n, tau2, alpha)
    lower, upper = lo / n, hi / n
    wl, wu = _wilson(x, n, stats.norm.ppf(1 - alpha / 2))
    alert = bool(not lo <= x <= hi)
    where = "above" if x > hi else "below" if x < lo else "within"
    msg = (f"positive rate {rate:.2%} ({x:,}/{n:,} rows) is {where} the expected band "
           f"{lower:.2%}–{upper:.2%} ({lo:,}–{hi:,} rows) around the baseline {p0:.2%}")
    return MonitorResult("positive_rate", rate, p0, lower, upper, alert, msg, {
        "positives": x, "rows": n, "wilson_low": wl, "wilson_high": wu, "day_to_day_sd": math.sqrt(tau2),
        "rate_sd": rate_sd,
        "rule": "count outside the two-sided alpha tails of its beta-binomial predictive distribution "
                "(mean p0, rate variance p0(1-p0)/N + tau²)",
    })


def _class_mix(counts: dict[str, int], n: int, b: PredictionBaseline, alpha: float) -> MonitorResult:
    classes = sorted(set(b.class_counts) | set(counts))
    k = max(len(classes), 2)
    N = b.label_n
    per_class = []
    out = []
    tvd = 0.0
    for c in classes:
        k0 = b.class_counts.get(c, 0)
        p0 = k0 / N
        tau2 = _excess_var([d.get(c, 0.0) for d in b.class_day_shares],
                           [p0 * (1 - p0) / m for m in b.label_day_sizes])
        lo, hi, _ = _count_band(n, k0, N, tau2, alpha / k)
        x = counts.get(c, 0)
        share = x / n
        tvd += abs(share - p0) / 2
        bad = not lo <= x <= hi
        per_class.append({"class": c, "share": share, "baseline": p0, "lower": lo / n, "upper": hi / n,
                          "rows": x, "alert": bad})
        if bad:
            new = " (never predicted in the reference)" if k0 == 0 else ""
            out.append(f"class {c!r}{new} {share:.2%} ({x:,} rows) outside {lo / n:.2%}–{hi / n:.2%} "
                       f"(baseline {p0:.2%})")
    alert = bool(out)
    msg = ("class mix moved: " + "; ".join(out)) if alert else (
        f"class mix within its bands ({len(classes)} classes, total-variation distance {tvd:.3f})")
    return MonitorResult("class_mix", tvd, 0.0, None, None, alert, msg, {
        "classes": per_class, "rows": n,
        "rule": "per-class beta-binomial band as for positive_rate, alpha split over the classes "
                "(Bonferroni); value = total-variation distance to the baseline mix",
    })


def _mean_prediction(scores: np.ndarray, b: PredictionBaseline, alpha: float) -> MonitorResult:
    n = scores.size
    mean = float(scores.mean())
    mu0, sd0, N = float(b.score_mean), float(b.score_sd), b.score_n
    tau2 = _excess_var(b.day_means, [sd0 ** 2 / m for m in b.day_sizes])
    k = len(b.day_means)
    # a new day's own shift, plus the baseline's: mu0 averages k days that each carry one
    day_var = tau2 * (1 + 1 / k) if k else 0.0
    sd2 = sd0 ** 2 * (1 / n + 1 / N) + day_var
    z = _predictive_quantile(1 - alpha / 2, sd2, day_var, k)
    sd = math.sqrt(sd2)
    lower, upper = mu0 - z * sd, mu0 + z * sd
    alert = bool(not lower <= mean <= upper)
    where = "above" if mean > upper else "below" if mean < lower else "within"
    msg = (f"mean prediction {mean:.4g} over {n:,} rows is {where} the expected band "
           f"{lower:.4g}–{upper:.4g} around the baseline {mu0:.4g}")
    return MonitorResult("mean_prediction", mean, mu0, lower, upper, alert, msg, {
        "rows": n, "day_to_day_sd": math.sqrt(tau2), "reference_days": k, "quantile": z,
        "rule": "mu0 ± q·sqrt(sd0²(1/n+1/N) + tau²(1+1/k)), two-sided alpha; q is Student's t "
                "with Welch-Satterthwaite degrees of freedom when tau² comes from k days",
    })


def _score_drift(scores: np.ndarray, b: PredictionBaseline, alpha: float) -> MonitorResult:
    stat = _drift_stat(b.method)
    ref = b._sample()
    value = stat(ref, _compress(scores))
    n = scores.size
    # effective size of a two-sample comparison, rounded down (more noise: conservative) so that
    # days of similar size share one bootstrap
    n_eff = _grid_down(int(min(_BATCH_CAP, max(2, round(1 / (1 / n + 1 / b.score_n))))))
    key = ("drift", b.method, n_eff)
    if key not in b._cache:
        rng = np.random.default_rng(_seed(f"drift:{b.method}:{n_eff}"))
        if b.method == "wasserstein":
            b._cache[key] = _wasserstein_bootstrap(ref, n_eff, _DRIFT_REPS_FAST, rng)
        else:
            b._cache[key] = np.array([stat(ref, rng.choice(ref, n_eff, replace=True)) for _ in range(_DRIFT_REPS)])
    null = b._cache[key]
    sampling = float(np.quantile(null, 1 - alpha))
    day = None
    if len(b.score_day_stats) >= 3:
        # a prediction bound for one more day from k days: Student's t, k - 1 degrees of freedom
        k = len(b.score_day_stats)
        day = float(np.mean(b.score_day_stats) + stats.t.ppf(1 - alpha, k - 1)
                    * np.std(b.score_day_stats, ddof=1) * math.sqrt(1 + 1 / k))
    threshold = max(sampling, day) if day is not None else sampling
    typical = float(np.median(null))
    alert = bool(value > threshold)
    msg = (f"score distribution {'drifted' if alert else 'stable'}: {b.method} {value:.4g} "
           f"{'>' if alert else '<='} threshold {threshold:.4g} (typical for {n:,} rows: {typical:.4g})")
    return MonitorResult("score_drift", value, typical, None, threshold, alert, msg, {
        "method": b.method, "rows": n, "effective_rows": n_eff, "sampling_threshold": sampling,
        "day_threshold": day, "batch_mean": float(scores.mean()), "baseline_mean": b.score_mean,
        "rule": "Evidently stat test vs reference sample; threshold = max(bootstrap (1-alpha) quantile "
                "at the effective size, mean + t·sd·sqrt(1+1/k) of k leave-one-day-out reference stats)",
    })


def _diversity_monitors(units: _Units, b: PredictionBaseline, alpha: float,
                        problems: list[Problem], summary: DaySummary) -> list[MonitorResult]:
    names = ["distinct_share", "top_item_entropy"]
    pool_size = len(b.pool_offsets) - 1
    summary.n_units = len(units)
    if units.items.size:
        codes, uniques = pd.factorize(units.items)
        counts = np.bincount(codes)
        top = np.argsort(-counts, kind="stable")[:_TOP_ITEMS]
        summary.top_items = [[str(uniques[i]), int(counts[i]) / units.items.size] for i in top]
    size = _div_size(len(units), pool_size)
    if size < _MIN_DIV_UNITS:
        problems.append(Problem(
            "note", f"diversity needs at least {_MIN_DIV_UNITS} units (queries/rows) in the batch and "
                    f"{5 * _MIN_DIV_UNITS} in the reference pool; got {len(units)} and {pool_size}",
            column=b.query_col or b.item_col, monitors=names))
        return []
    today = _diversity(units.subsample(size, _seed("today")).items)
    summary.distinct_share = today["distinct_share"]
    summary.top_item_entropy = today["top_item_entropy"]
    null = _diversity_null(b, size)
    z = stats.norm.ppf(1 - alpha)
    out = []
    for name in names:
        m, s = null[name]
        resid = [d[name] - _diversity_null(b, int(d["units"]))[name][0] for d in b.day_diversity]
        sds = [_diversity_null(b, int(d["units"]))[name][1] ** 2 for d in b.day_diversity]
        tau2 = _excess_var(resid, sds)
        lower = m - z * math.sqrt(s ** 2 + tau2)
        value = today[name]
        alert = bool(value < lower)
        unit = "" if name == "distinct_share" else " bits"
        if alert:
            msg = f"{name} fell to {value:.4g}{unit}, below {lower:.4g} (typical {m:.4g}): recommendations concentrate"
        elif value > m + z * math.sqrt(s ** 2 + tau2):
            msg = f"{name} rose to {value:.4g}{unit} (typical {m:.4g}); a rise is reported, not alerted"
        else:
            msg = f"{name} {value:.4g}{unit} is within the healthy range (lower bound {lower:.4g}, typical {m:.4g})"
        out.append(MonitorResult(name, value, m, lower, None, alert, msg, {
            "units_measured": size, "units_in_batch": len(units), "day_to_day_sd": math.sqrt(tau2),
            "rule": "measured on a subsample of S units; null from S-subsamples of the reference pool; "
                    "lower = mean - z·sqrt(sd² + tau²), one-sided alpha",
        }))
    return out


def _stagnation(today: DaySummary, prev: DaySummary, history: list, b: PredictionBaseline, alpha: float,
                problems: list[Problem]) -> MonitorResult | None:
    same = today.fingerprint is not None and today.fingerprint == prev.fingerprint
    # how many consecutive days (today included) carried the same outputs
    streak = 1
    if same:
        hist = sorted((_as_summary(h) for h in history), key=lambda h: (h.ds or ""))
        hist = [h for h in hist if not (today.ds and h.ds and h.ds >= today.ds)]
        for h in reversed(hist):
            if h.fingerprint == today.fingerprint:
                streak += 1
            else:
                break
    z = stats.norm.ppf(1 - alpha)
    if today.score_quantiles and prev.score_quantiles and b.score_sd:
        delta = np.asarray(today.score_quantiles) - np.asarray(prev.score_quantiles)
        change = float(np.mean(np.abs(delta)) / b.score_sd)
        n1, n2 = int(prev.n_scores), int(today.n_scores)
        lower_s, chance_identical, typical = _stagnation_null(b, n1, n2, alpha)
        day_lower = None
        c = b.score_consecutive_changes
        if len(c) >= 3:
            day_lower = 0.0 if min(c) <= 0 else float(np.exp(np.mean(np.log(c)) - z * np.std(np.log(c), ddof=1)))
        lower = min(lower_s, day_lower) if day_lower is not None else lower_s
        exact_on = not chance_identical and not b.identical_consecutive_days
        # "Nearly frozen" is a state, not an event: it must hold for the previous day too (a
        # stuck model stays stuck; one quiet healthy day is a 1-in-alpha tail draw). Identical
        # outputs alert at once.
        prev_change = _previous_change(prev, history, today, b, alpha, day_lower)
        soft = bool(change < lower and prev_change is not None and prev_change[0] < prev_change[1])
        alert = bool((same and exact_on) or soft)
        if same and exact_on:
            msg = (f"outputs identical to the previous day ({prev.ds or 'last summary'}) — "
                   f"{streak} day(s) in a row with the same fingerprint")
        elif alert:
            msg = (f"outputs nearly frozen two days running: change vs {prev.ds or 'the previous day'} is "
                   f"{change:.4g} (reference sd units), below {lower:.4g}, and the day before moved "
                   f"{prev_change[0]:.4g} (below {prev_change[1]:.4g}); independent days typically "
                   f"differ by {typical:.4g}")
        else:
            msg = (f"outputs moved by {change:.4g} reference sd vs {prev.ds or 'the previous day'} "
                   f"(lower bound {lower:.4g})")
        return MonitorResult("stagnation", change, typical, lower, None, bool(alert), msg, {
            "identical_to_previous": same, "identical_streak_days": streak if same else 0,
            "exact_rule": exact_on, "previous_ds": prev.ds, "sampling_lower": lower_s, "day_lower": day_lower,
            "previous_change": None if prev_change is None else prev_change[0],
            "previous_lower": None if prev_change is None else prev_change[1],
            "rule": "exact fingerprint match, or quantile change below the alpha quantile of "
                    "independent days on two consecutive days",
        })
    if today.fingerprint and prev.fingerprint and b.task == "ranking" and b.pool_items:
        exact_on = (len(b.pool_items) >= 20 and today.n_rows >= 20 and not b.identical_consecutive_days)
        alert = bool(same and exact_on)
        msg = (f"recommended items identical to the previous day ({prev.ds or 'last summary'}), "
               f"{streak} day(s) in a row" if alert else "recommended items changed since the previous day")
        return MonitorResult("stagnation", 0.0 if same else 1.0, 1.0, None, None, alert, msg, {
            "identical_to_previous": same, "identical_streak_days": streak if same else 0,
            "exact_rule": exact_on, "previous_ds": prev.ds,
            "rule": "exact fingerprint match of the recommended items (no score column for the quantile rule)",
        })
    problems.append(Problem(
        "note", "stagnation not tested: today or the previous day has no usable score summary",
        column=b.score_col, monitors=["stagnation"]))
    return None


# --------------------------------------------------------------------------------------------
# nulls (cached on the baseline object; deterministic seeds so a rerun gives the same thresholds)


def _previous_change(prev: DaySummary, history: list, today: DaySummary, b: PredictionBaseline,
                     alpha: float, day_lower: float | None) -> tuple[float, float] | None:
    """(change, lower bound) between the previous day and the one before it, or None."""
    hist = sorted((_as_summary(h) for h in history), key=lambda h: (h.ds or ""))
    before = [h for h in hist if h.ds and prev.ds and h.ds < prev.ds and h.score_quantiles]
    if not before or not prev.score_quantiles:
        return None
    pp = before[-1]
    delta = np.asarray(prev.score_quantiles) - np.asarray(pp.score_quantiles)
    change = float(np.mean(np.abs(delta)) / b.score_sd)
    lower, _, _ = _stagnation_null(b, int(pp.n_scores), int(prev.n_scores), alpha)
    return change, (min(lower, day_lower) if day_lower is not None else lower)


def _stagnation_null(b: PredictionBaseline, n1: int, n2: int, alpha: float) -> tuple[float, bool, float]:
    # sizes rounded up to a grid so that days of similar size share one simulation; the result
    # is rescaled to the actual sizes below
    c1, c2 = _grid_up(min(n1, _BATCH_CAP)), _grid_up(min(n2, _BATCH_CAP))
    key = ("stag", c1, c2)
    if key not in b._cache:
        ref = b._sample()
        rng = np.random.default_rng(_seed(f"stag:{c1}:{c2}"))
        changes = np.empty(_STAG_REPS)
        identical = False
        for r in range(_STAG_REPS):
            x = np.sort(rng.choice(ref, c1, replace=True))
            y = np.sort(rng.choice(ref, c2, replace=True))
            if c1 == c2 and np.array_equal(x, y):
                identical = True
            qx = np.quantile(x, _QPROBS, method="inverted_cdf")
            qy = np.quantile(y, _QPROBS, method="inverted_cdf")
            changes[r] = np.mean(np.abs(qx - qy)) / b.score_sd
        b._cache[key] = (changes, identical)
    changes, identical = b._cache[key]
    # the change shrinks like 1/sqrt(effective size): rescale from the simulated (grid, capped)
    # sizes to the actual ones
    scale = math.sqrt((1 / max(n1, 1) + 1 / max(n2, 1)) / (1 / c1 + 1 / c2)) if c1 and c2 else 1.0
    return float(np.quantile(changes, alpha)) * scale, identical, float(np.median(changes)) * scale


def _wasserstein_bootstrap(ref: np.ndarray, n: int, reps: int, rng: np.random.Generator) -> np.ndarray:
    """Evidently's normed Wasserstein distance between `ref` and `reps` resamples of size n of it.

    Same statistic as the stat test (W1 / max(std(ref), 0.001)), computed from how often each
    point of the sorted `ref` is drawn instead of sorting every resample (see
    _wasserstein_from_counts): vectorised, ~100x faster, identical up to rounding.
    """
    m = ref.size
    out = []
    chunk = max(1, min(reps, 200, 2_000_000 // max(n, 1)))  # at most ~8 MB per array
    for start in range(0, reps, chunk):
        k = min(chunk, reps - start)
        idx = rng.integers(0, m, size=(k, n), dtype=np.int32) + (np.arange(k, dtype=np.int32) * m)[:, None]
        counts = np.bincount(idx.ravel(), minlength=k * m).reshape(k, m)
        out.append(_wasserstein_from_counts(ref, counts))
    return np.concatenate(out)


def _wasserstein_from_counts(ref: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Normed W1 between sorted `ref` (equal weights) and the samples np.repeat(ref, counts[r])."""
    m = ref.size
    if m < 2:
        return np.zeros(counts.shape[0])
    n = counts.sum(axis=1, keepdims=True)
    cdf_ref = np.arange(1, m) / m
    cdf_cur = np.cumsum(counts, axis=1)[:, :-1] / n
    w1 = np.abs(cdf_cur - cdf_ref) @ np.diff(ref)
    return w1 / max(float(np.std(ref)), 0.001)


def _diversity_null(b: PredictionBaseline, size: int) -> dict[str, tuple[float, float]]:
    key = ("div", size)
    if key not in b._cache:
        matrix = b._cache.get("pool_matrix")
        if matrix is None:
            offsets = np.asarray(b.pool_offsets)
            codes = np.asarray(b.pool_codes)
            lengths = np.diff(offsets)
            matrix = np.full((lengths.size, int(lengths.max())), -1, dtype=np.int64)
            for i in range(lengths.size):
                matrix[i, : lengths[i]] = codes[offsets[i]: offsets[i + 1]]
            b._cache["pool_matrix"] = matrix
        m = matrix.shape[0]
        rng = np.random.default_rng(_seed(f"div:{size}"))
        values = {"distinct_share": [], "top_item_entropy": []}
        for _ in range(_DIV_REPS):
            flat = matrix[rng.choice(m, size, replace=False)].ravel()
            flat = flat[flat >= 0]
            res = _diversity_codes(flat)
            for k in values:
                values[k].append(res[k])
        fpc = math.sqrt(max(1e-9, 1 - size / m))  # undo the finite-pool shrinkage of the spread
        b._cache[key] = {k: (float(np.mean(v)), float(np.std(v, ddof=1)) / fpc) for k, v in values.items()}
    return b._cache[key]


# --------------------------------------------------------------------------------------------
# helpers


def _drift_stat(method: str):
    """The Evidently legacy stat test `method` as f(reference array, current array) -> distance."""
    # Imported here: importing evidently costs ~12 s, which only score_drift should pay.
    from evidently.legacy.calculations.stattests import get_stattest
    from evidently.legacy.core import ColumnType

    test = get_stattest(pd.Series([0.0, 1.0]), pd.Series([0.0, 1.0]), ColumnType.Numerical, method)

    def stat(ref: np.ndarray, cur: np.ndarray) -> float:
        res = test(pd.Series(ref, dtype=float), pd.Series(cur, dtype=float), ColumnType.Numerical, None)
        return float(res.drift_score)

    return stat


def _clean_scores(col: pd.Series) -> tuple[np.ndarray, pd.Index, int]:
    """(finite float values, index of rows that are not null but not finite numbers, null count)."""
    n_null = int(col.isna().sum())
    if pd.api.types.is_bool_dtype(col):
        num = col.astype(float)
    else:
        num = pd.to_numeric(col, errors="coerce")
    arr = num.to_numpy(dtype=float, na_value=np.nan)
    finite = np.isfinite(arr)
    bad = col.index[~finite & ~col.isna().to_numpy()]
    return arr[finite], bad, n_null


def _norm_label(v: Any) -> Any:
    """One spelling per class: booleans and integral floats become ints, so True == 1 == 1.0."""
    if isinstance(v, (bool, np.bool_)):
        return int(v)
    if isinstance(v, (float, np.floating)) and float(v).is_integer():
        return int(v)
    if isinstance(v, np.integer):
        return int(v)
    return v


def _as_str(values: pd.Series) -> pd.Series:
    """Normalised string spelling of each value (normalising the distinct values only: fast)."""
    codes, uniques = pd.factorize(values)
    names = np.array([str(_norm_label(u)) for u in uniques], dtype=object)
    return pd.Series(names[codes] if len(codes) else np.array([], dtype=object), index=values.index, dtype=object)


def _labels(frame: pd.DataFrame, b: PredictionBaseline) -> tuple[pd.Series, int]:
    """Predicted labels as normalised strings, and the number of rows without one."""
    if b.label_col:
        raw = frame[b.label_col]
        missing = int(raw.isna().sum())
        return _as_str(raw.dropna()), missing
    values = pd.to_numeric(frame[b.score_col], errors="coerce")
    ok = np.isfinite(values.to_numpy(dtype=float, na_value=np.nan))
    labels = (values[ok] >= b.decision_threshold).astype(int).astype(str)
    return labels, int((~ok).sum())


@dataclass
class _Units:
    """Recommendation lists: all items flat, unit i is items[offsets[i]:offsets[i + 1]]."""

    items: np.ndarray  # object array of item names
    offsets: np.ndarray  # int64, len = units + 1

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @staticmethod
    def concat(parts: list[_Units]) -> _Units:
        items = np.concatenate([p.items for p in parts]) if parts else np.array([], dtype=object)
        sizes = np.concatenate([np.diff(p.offsets) for p in parts]) if parts else np.array([], dtype=np.int64)
        return _Units(items, np.r_[0, np.cumsum(sizes)].astype(np.int64))

    def subsample(self, size: int, seed: int) -> _Units:
        """`size` units drawn without replacement (all of them, in order, if size >= len)."""
        if size >= len(self):
            return self
        pick = np.sort(np.random.default_rng(seed).choice(len(self), size, replace=False))
        return self.take(pick)

    def take(self, pick: np.ndarray) -> _Units:
        starts, lengths = self.offsets[pick], np.diff(self.offsets)[pick]
        ends = np.cumsum(lengths)
        # position j of picked unit u sits at starts[u] + j
        within = np.arange(ends[-1] if len(ends) else 0) - np.repeat(ends - lengths, lengths)
        positions = within + np.repeat(starts, lengths)
        return _Units(self.items[positions], np.r_[0, ends].astype(np.int64))


def _units(frame: pd.DataFrame, b: PredictionBaseline, use_scores: bool = True) -> _Units:
    """Recommended items grouped per query (or one row = one unit), top_k by score if set."""
    rank_by_score = bool(b.top_k and b.score_col and use_scores and b.score_col in frame.columns)
    keep = frame[b.item_col].notna().to_numpy()
    items = _as_str(frame[b.item_col][keep]).to_numpy(dtype=object)
    if not b.query_col:
        return _Units(items, np.arange(len(items) + 1, dtype=np.int64))
    queries, _ = pd.factorize(frame[b.query_col][keep], use_na_sentinel=False)
    if rank_by_score:
        score = pd.to_numeric(frame[b.score_col][keep], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
        order = np.lexsort((np.nan_to_num(-score, nan=np.inf), queries))  # by query, best score first
    else:
        order = np.argsort(queries, kind="stable")  # by query, batch order within
    queries, items = queries[order], items[order]
    if b.top_k:  # rank within its query, 0-based; keep the first top_k
        starts = np.flatnonzero(np.r_[True, queries[1:] != queries[:-1]]) if len(queries) else np.array([], np.int64)
        rank = np.arange(len(queries)) - np.repeat(starts, np.diff(np.r_[starts, len(queries)]))
        keep_top = rank < b.top_k
        queries, items = queries[keep_top], items[keep_top]
    starts = np.flatnonzero(np.r_[True, queries[1:] != queries[:-1]]) if len(queries) else np.array([], np.int64)
    return _Units(items, np.r_[starts, len(queries)].astype(np.int64))


def _grid_down(n: int) -> int:
    """n rounded down to a grid of 2^(1/8) steps (~9%), exact below 64: lets days share a null."""
    if n <= 64:
        return int(n)
    return int(2 ** (math.floor(8 * math.log2(n) + 1e-9) / 8))


def _grid_up(n: int) -> int:
    if n <= 64:
        return int(n)
    return int(math.ceil(2 ** (math.ceil(8 * math.log2(n) - 1e-9) / 8)))


def _div_size(units: int, pool: int) -> int:
    return _grid_down(int(min(units, _DIV_UNITS, pool // 5)))


def _diversity(items: np.ndarray) -> dict[str, float]:
    codes, _ = pd.factorize(items)
    return _diversity_codes(np.asarray(codes))


def _diversity_codes(codes: np.ndarray) -> dict[str, float]:
    if codes.size == 0:
        return {"distinct_share": 0.0, "top_item_entropy": 0.0}
    counts = np.bincount(codes)
    counts = counts[counts > 0]
    p = counts / codes.size
    return {"distinct_share": counts.size / codes.size, "top_item_entropy": float(-(p * np.log2(p)).sum())}


def _quantile_sample(values: np.ndarray, size: int) -> np.ndarray:
    """At most `size` observed values spread evenly over the distribution (keeps its shape)."""
    v = np.sort(np.asarray(values, dtype=float))
    if v.size <= size:
        return v
    return np.quantile(v, (np.arange(size) + 0.5) / size, method="inverted_cdf")


def _compress(values: np.ndarray) -> np.ndarray:
    return _quantile_sample(values, _BATCH_CAP)


def _fingerprint(scores: np.ndarray | None, items: np.ndarray | None) -> str | None:
    if scores is None and (items is None or not items.size):
        return None
    h = hashlib.sha256()
    if scores is not None:
        h.update(np.sort(np.asarray(scores, dtype=np.float64)).tobytes())
    if items is not None and items.size:
        # the multiset of items: sorted distinct items and their counts (cheaper than sorting all)
        codes, uniques = pd.factorize(items, sort=True)
        h.update(b"\x00items\x00")
        h.update("\x1f".join(uniques).encode())
        h.update(np.bincount(codes).astype(np.int64).tobytes())
    return h.hexdigest()


def _day_fingerprint(scores: np.ndarray | None, units: _Units | None) -> str | None:
    return _fingerprint(scores, units.items if units is not None else None)


def _as_summary(h: DaySummary | dict) -> DaySummary:
    return h if isinstance(h, DaySummary) else DaySummary.from_dict(h)


def _previous(history: Iterable[DaySummary | dict], ds: str | None) -> tuple[DaySummary | None, int]:
    items = [_as_summary(h) for h in history]
    ignored = 0
    if ds:
        kept = [h for h in items if not (h.ds and h.ds >= ds)]
        ignored = len(items) - len(kept)
        items = kept
    if not items:
        return None, ignored
    if all(h.ds for h in items):
        return max(items, key=lambda h: h.ds), ignored
    return items[-1], ignored


def _wilson(x: int, n: int, z: float) -> tuple[float, float]:
    p = x / n
    denom = 1 + z ** 2 / n
    centre = (p + z ** 2 / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z ** 2 / (4 * n ** 2)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def _examples(index: pd.Index, k: int = 5) -> list[Any]:
    return [_jsonable(v) for v in list(index[:k])]


def _seed(text: str) -> int:
    return zlib.crc32(text.encode())


_jsonable = jsonable  # one encoder for every core module (watchkeeper.jsonable)
