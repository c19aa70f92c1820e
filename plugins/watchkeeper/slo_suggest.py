"""`watchkeeper suggest-slo`: quality SLOs the data supports at the model's batch size, and the
false alarms each one implies.

Pure module: the reference rows, the stored mature days and the batch size in; a frozen
`Suggestion` out (`to_dict()` for --json, `as_table()` / `yaml_snippet()` for people). The CLI
reads the inputs (the training set, the store) and prints.

What is computed
================

For each quality metric of the task (binary: accuracy, precision, recall, f1, roc_auc;
regression: within_tolerance, mae, rmse):

* The healthy **level**: the median of the stored mature days (when there are at least
  `MIN_STORED_DAYS`), else the metric on the reference (the training set with its labels; a
  training set flatters the model, so stored days win when there are enough of them).
* The **day model**: what a healthy day of n labelled rows measures. Proportions (accuracy,
  precision, recall, within_tolerance): Binomial(n_e, level) / n_e with n_e the proportion's
  events (precision: the day's predicted positives, n x predicted positive rate; recall: its
  actual positives). Other metrics: Normal(level, sd_n), sd_n from resampling n rows from the
  reference (`quality_sli.resampled_metric`). The confident verdict of `quality_sli` is applied
  to every possible day: exactly (Wilson over every count 0..n_e) for proportions, and for the
  others with the bootstrap bound approximated by value +- z sd_n (a day is bad when
  value < threshold - z sd_n).
* The **day-to-day spread** beyond sampling noise, from the stored mature days: tau^2 =
  (1.4826 MAD of the daily values)^2 - the median sampling variance of those days, floored at 0
  (median and MAD, so a few incident days among them do not widen it). Without enough stored days
  tau = 0 and the table says so.
* A healthy 28-day **window exhausts** a timeslice budget when its bad days reach
  (1 - O) x (judged days) (inconclusive days count in neither): the exact trinomial chance over
  W days of good / bad / inconclusive. With a spread, the window's level is drawn once per window
  from Normal(level, tau^2) (21-node Gauss-Hermite) and the chance averaged: the beta-binomial
  idea, overdispersion of the bad-day count because days of one window share their level. That
  is the headline ("window_exhaustion"); the figure for independent days, each with its own
  level, is given next to it ("window_exhaustion_independent_days").
* A ratio budget is exhausted when the pooled good share of the window is at most O: the
  binomial chance over W x n_e events, averaged over the window's level in the same way.

What is proposed
================

* Ratio SLOs (accuracy, precision, recall, within_tolerance): the highest objective, in steps of
  0.001, whose healthy-window exhaustion chance is at most `WINDOW_TARGET` (1 %); with the daily
  chances of a page-level 3-day burn and a ticket-level 7-day burn it implies (both necessary
  for the alert; the alert also needs its 1-day burn, so these are upper bounds).
  within_tolerance's tolerance is the reference's p90 absolute error rounded up to two
  significant digits.
* Timeslice SLOs: objective `TIMESLICE_OBJECTIVE` (0.9: 2.8 bad days of 28, one noisy day never
  spends the budget) and the highest threshold (at_least; the lowest for at_most metrics) whose
  healthy-window exhaustion chance is at most 1 %, rounded in the safe direction; with the chance
  a healthy day is bad (confident rule) or inconclusive, the chance it would be bad under a plain
  "below the threshold" rule, and the level a day must fall to for 9 in 10 such days to be bad.
* The spec's own quality SLOs get the same figures at their threshold and objective, and its
  boolean timeslices (feature_drift, prediction_stability) the exhaustion chance implied by the
  daily false-alarm rates of the monitors behind them (feature_drift: drift or skew, each
  family-wise at drift.daily_false_alarm_rate, so at most 1 - (1 - rate)^2 a day;
  prediction_stability: predictions.daily_false_alarm_rate) and their objective.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from statistics import NormalDist
from typing import Any, Mapping, Sequence

import numpy as np

from watchkeeper import quality_sli as qs

__all__ = [
    "BooleanRisk",
    "MetricSuggestion",
    "StoredDay",
    "Suggestion",
    "SuggestError",
    "boolean_risk",
    "suggest",
]

WINDOW_TARGET = 0.01
TIMESLICE_OBJECTIVE = 0.9
MIN_STORED_DAYS = 7
DETECT_POWER = 0.9
RESAMPLES = 400
PAGE_BURN = 2.8

BINARY, REGRESSION = "binary_classification", "regression"
METRICS = {
    BINARY: ("accuracy", "precision", "recall", "f1", "roc_auc"),
    REGRESSION: ("within_tolerance", "mae", "rmse"),
}
PROPORTIONS = {"accuracy", "precision", "recall", "within_tolerance"}
RATIO_METRICS = {"accuracy", "precision", "recall", "within_tolerance"}
TIMESLICE_METRICS = {"accuracy", "precision", "recall", "f1", "roc_auc", "mae", "rmse"}
LOWER_IS_BETTER = {"mae", "rmse"}

_NODES, _WEIGHTS = np.polynomial.hermite_e.hermegauss(21)
_WEIGHTS = _WEIGHTS / _WEIGHTS.sum()


class SuggestError(ValueError):
    """The inputs cannot support a suggestion (no labelled reference rows, unknown task, ...)."""


@dataclass(frozen=True)
class StoredDay:
    """One stored mature prediction-day: its metrics and labelled rows."""

    ds: str
    metrics: Mapping[str, float | None]
    n_labelled: int


@dataclass(frozen=True)
class TimesliceFigures:
    threshold: float
    direction: str
    objective: float
    window_days: int
    confidence: float
    bad_day: float  # chance a healthy day is bad (confident rule)
    inconclusive_day: float
    bad_day_plain_rule: float  # ... under "bad when the value misses the threshold"
    window_exhaustion: float  # a healthy window spends the budget (window-shared level)
    window_exhaustion_independent_days: float
    detects: float | None  # a day at this level is bad 9 times in 10


@dataclass(frozen=True)
class RatioFigures:
    objective: float
    window_days: int
    events_per_day: float
    window_exhaustion: float
    window_exhaustion_independent_days: float
    page_burn_chance_per_day: float  # 3-day burn >= 2.8 on a healthy day (upper bound of a page)
    ticket_burn_chance_per_day: float  # 7-day burn >= 1
    tolerance: float | None = None  # within_tolerance


@dataclass(frozen=True)
class MetricSuggestion:
    metric: str
    direction: str
    level: float
    level_source: str  # "stored mature days" | "reference"
    level_reference: float | None
    level_stored: float | None
    stored_days: int
    sampling_sd: float  # a healthy day's sd from sampling alone, at the batch size
    spread_sd: float | None  # day-to-day sd beyond sampling (None: not known)
    ratio: RatioFigures | None
    timeslice: TimesliceFigures | None
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class CurrentSlo:
    """The spec's own quality SLO, evaluated like the suggestions."""

    slo: str
    metric: str
    kind: str
    figures: TimesliceFigures | RatioFigures | None
    note: str = ""


@dataclass(frozen=True)
class BooleanRisk:
    slo: str
    sli: str
    daily_false_alarm_rate: float
    rate_source: str
    objective: float
    window_days: int
    window_exhaustion: float
    page_chance_per_day: float
    ticket_chance_per_day: float
    objective_for_target: float | None  # the highest objective (0.01 steps) within WINDOW_TARGET


@dataclass(frozen=True)
class Suggestion:
    model: str
    task: str
    rows_per_day: float
    rows_source: str
    reference_rows: int
    stored_mature_days: int
    window_target: float
    metrics: tuple[MetricSuggestion, ...]
    current: tuple[CurrentSlo, ...]
    boolean: tuple[BooleanRisk, ...]
    notes: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["yaml"] = self.yaml_snippet()
        return d

    def yaml_snippet(self) -> str:
        return yaml_snippet(self)

    def as_table(self) -> str:
        return as_table(self)


# ---------------------------------------------------------------------------------------------
# The day model


@dataclass(frozen=True)
class _DayModel:
    metric: str
    direction: str
    level: float
    spread: float  # tau
    events: int | None  # proportions: the proportion's events a day
    sd: float  # sampling sd of a day (normal metrics; proportions: binomial, for display)
    confidence: float

    def _levels(self) -> tuple[np.ndarray, np.ndarray]:
        """The window's possible levels and their weights (one level when there is no spread)."""
        if self.spread <= 0:
            return np.array([self.level]), np.array([1.0])
        mu = self.level + self.spread * _NODES
        if self.events is not None:
            mu = np.clip(mu, 1e-9, 1 - 1e-9)
        return mu, _WEIGHTS

    def _table(self, threshold: float):
        """Per possible day (proportions): its verdict at `threshold` (bad, inconclusive, plain-bad)."""
        n = self.events
        x = np.arange(n + 1)
        lower, upper = _wilson_table(n, self.confidence)
        value = np.round(x / n, 10)
        t = round(threshold, 10)
        if self.direction == "at_least":
            good = value >= t
            bad = ~good & (np.round(upper, 10) < t)
        else:
            good = value <= t
            bad = ~good & (np.round(lower, 10) > t)
        return x, bad, ~good & ~bad, ~good

    def probs(self, threshold: float, mu: np.ndarray) -> np.ndarray:
        """(len(mu), 3): chances of bad, inconclusive, plain-bad for a day at each level."""
        if self.events is not None:
            from scipy.stats import binom

            x, bad, inc, plain = self._table(threshold)
            pmf = binom.pmf(x[None, :], self.events, mu[:, None])
            return np.stack([(pmf * bad).sum(1), (pmf * inc).sum(1), (pmf * plain).sum(1)], axis=1)
        z = NormalDist().inv_cdf(self.confidence)
        phi = np.vectorize(NormalDist().cdf)
        u = (threshold - mu) / self.sd if self.sd > 0 else np.where(threshold > mu, np.inf, -np.inf)
        if self.direction == "at_least":
            plain = phi(u)  # value < threshold
            bad = phi(u - z)  # value + z sd < threshold
        else:
            plain = 1 - phi(u)
            bad = 1 - phi(u + z)
        return np.stack([bad, plain - bad, plain], axis=1)

    def timeslice(self, threshold: float, objective: float, window: int) -> TimesliceFigures:
        mu, w = self._levels()
        p = self.probs(threshold, mu)
        per_level = np.array([_exhaustion(pb, pi, objective, window) for pb, pi, _ in p])
        marginal = (p * w[:, None]).sum(0)
        return TimesliceFigures(
            threshold=float(threshold), direction=self.direction, objective=objective,
            window_days=window, confidence=self.confidence,
            bad_day=_r(marginal[0]), inconclusive_day=_r(marginal[1]),
            bad_day_plain_rule=_r(marginal[2]),
            window_exhaustion=_r(float((per_level * w).sum())),
            window_exhaustion_independent_days=_r(_exhaustion(marginal[0], marginal[1], objective, window)),
            detects=self._detects(threshold))

    def _detects(self, threshold: float) -> float | None:
        """The level at which DETECT_POWER of the days are bad (no spread)."""
        sign = -1 if self.direction == "at_least" else 1
        step = max(self.sd, 1e-6) / 10
        for k in range(1, 200):
            mu = threshold + sign * k * step
            if (self.metric not in LOWER_IS_BETTER and not 0 < mu < 1) or mu < 0:
                return None  # out of the metric's range: no day can be called bad reliably
            if self.probs(threshold, np.array([mu]))[0, 0] >= DETECT_POWER:
                return _nice(mu, self.sd, toward=-sign)
        return None


@lru_cache(maxsize=64)
def _wilson_table(n: int, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    """Wilson bounds of every possible count 0..n (the search asks for the same n many times)."""
    return qs.wilson_bounds_array(np.arange(n + 1), n, confidence)


def _r(x: float) -> float:
    return round(float(x), 6)


def _exhaustion(p_bad: float, p_inc: float, objective: float, window: int) -> float:
    """Chance W days of (bad, inconclusive, good) spend a timeslice budget: bad >= (1-O) x judged."""
    from scipy.special import gammaln

    p_good = max(0.0, 1.0 - p_bad - p_inc)
    b = np.arange(window + 1)[:, None]
    i = np.arange(window + 1)[None, :]
    g = window - b - i
    ok = g >= 0
    g0 = np.where(ok, g, 0)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        logp = (gammaln(window + 1) - gammaln(b + 1) - gammaln(i + 1) - gammaln(g0 + 1)
                + b * _log(p_bad) + i * _log(p_inc) + g0 * _log(p_good))
    pmf = np.where(ok, np.exp(logp), 0.0)
    judged = window - i
    allowed = np.round((1 - objective) * judged, 10)
    spent = ok & (judged > 0) & (b >= 1) & (b >= allowed)
    return float(np.clip((pmf * spent).sum(), 0.0, 1.0))


def _log(p: float) -> float:
    return math.log(p) if p > 0 else -1e300


def _nice(x: float, sd: float, toward: int) -> float:
    """x rounded to a precision that fits sd, toward -1 (down) or +1 (up)."""
    decimals = max(2, min(6, 1 - math.floor(math.log10(max(sd, 1e-9)))))
    f = 10 ** decimals
    return (math.floor(x * f) if toward < 0 else math.ceil(x * f)) / f


# ---------------------------------------------------------------------------------------------
# Ratio budgets


def _ratio(level: float, spread: float, events_per_day: float, objective: float, window: int,
           tolerance: float | None = None) -> RatioFigures:
    from scipy.stats import binom, norm

    mu, w = (np.array([level]), np.array([1.0])) if spread <= 0 else (
        np.clip(level + spread * _NODES, 1e-9, 1 - 1e-9), _WEIGHTS)

    def chance_share_at_most(share: float, days: int) -> float:
        n = max(1, int(round(events_per_day * days)))
        if share < 0:
            return 0.0
        return float((binom.cdf(math.floor(round(share * n, 9)), n, mu) * w).sum())

    n_window = events_per_day * window
    sd_indep = math.sqrt(level * (1 - level) / max(n_window, 1) + spread ** 2 / window)
    indep = float(norm.cdf((objective - level) / sd_indep)) if sd_indep > 0 else float(level <= objective)
    return RatioFigures(
        objective=objective, window_days=window, events_per_day=round(events_per_day, 2),
        window_exhaustion=_r(chance_share_at_most(objective, window)),
        window_exhaustion_independent_days=_r(indep),
        page_burn_chance_per_day=_r(chance_share_at_most(1 - PAGE_BURN * (1 - objective), 3)),
        ticket_burn_chance_per_day=_r(chance_share_at_most(objective, 7)),
        tolerance=tolerance)


def _propose_ratio(level, spread, events, window, tolerance=None) -> RatioFigures:
    """The highest objective within WINDOW_TARGET, in steps that fit the pooled window's sd."""
    sd_pool = math.sqrt(level * (1 - level) / max(events * window, 1) + spread ** 2)
    decimals = max(3, min(6, 1 - math.floor(math.log10(max(sd_pool, 1e-9)))))
    step = 10.0 ** -decimals
    o = round(math.floor(min(level, 1 - step) / step) * step, decimals)
    while o > step and _ratio(level, spread, events, o, window).window_exhaustion > WINDOW_TARGET:
        o = round(o - step, decimals)
    return _ratio(level, spread, events, o, window, tolerance)


def _propose_timeslice(day: _DayModel, window: int) -> TimesliceFigures:
    sign = -1 if day.direction == "at_least" else 1
    total_sd = math.sqrt(day.sd ** 2 + day.spread ** 2) or 1e-6
    step = total_sd / 20
    best = None
    for k in range(0, 400):
        t = day.level + sign * k * step
        if day.events is not None and not 0 < t < 1:
            break
        if day.direction == "at_most" and t < 0:
            break
        if day.timeslice(t, TIMESLICE_OBJECTIVE, window).window_exhaustion <= WINDOW_TARGET:
            best = t
            break
    if best is None:
        best = day.level + sign * 400 * step
    return day.timeslice(_nice(best, total_sd, toward=sign), TIMESLICE_OBJECTIVE, window)


# ---------------------------------------------------------------------------------------------
# Putting it together


def _reference_level(metric: str, task: str, y: np.ndarray, other: np.ndarray, threshold: float,
                     tolerance: float | None) -> float | None:
    from watchkeeper import performance as perf

    if metric == "within_tolerance":
        return float(np.mean(np.abs(other - y) <= tolerance)) if len(y) else None
    rep = (perf.classification_metrics(y, other, threshold) if task == BINARY
           else perf.regression_metrics(y, other))
    return rep.overall.values.get(metric)


def _events_share(metric: str, task: str, y: np.ndarray, other: np.ndarray, threshold: float) -> float:
    """Share of a day's labelled rows that are the proportion's events (precision: flagged)."""
    if metric not in ("precision", "recall") or not len(y):
        return 1.0
    good, total = qs.ratio_events(metric, task, y, other, threshold=threshold)
    return total / len(y)


def _stored_share(metric: str, day: StoredDay) -> float | None:
    m = day.metrics
    if metric == "precision":
        return m.get("predicted_positive_rate")
    if metric == "recall":
        return m.get("positive_rate")
    return 1.0


def _mad_sd(values: np.ndarray) -> float:
    return float(1.4826 * np.median(np.abs(values - np.median(values))))


def suggest(
    *,
    model: str,
    task: str,
    y: Any,
    other: Any,
    rows_per_day: float,
    rows_source: str,
    stored_days: Sequence[StoredDay] = (),
    decision_threshold: float = 0.5,
    slos: Sequence[Any] = (),
    window_days: int = 28,
    confidence: float = 0.95,
    boolean: Sequence[BooleanRisk] = (),
) -> Suggestion:
    """Suggest quality SLOs for `model` (see the module docstring).

    `y`, `other`: the reference's labels and scores (binary) or actual and predicted values
    (regression). `slos`: the spec's SLOs (its quality ones are evaluated too).
    """
    if task not in METRICS:
        raise SuggestError(f"suggest-slo supports {' and '.join(METRICS)} models, not {task}")
    y, other = qs._finite_pair(y, other)
    if len(y) < qs.MIN_BOOTSTRAP_ROWS:
        raise SuggestError(f"the reference has {len(y)} labelled rows with a prediction; at least "
                           f"{qs.MIN_BOOTSTRAP_ROWS} are needed to estimate a day's spread")
    if not rows_per_day or rows_per_day < 1:
        raise SuggestError(f"rows per day must be at least 1, got {rows_per_day!r}")
    n = float(rows_per_day)
    notes = []
    tolerance = None
    if task == REGRESSION:  # the reference's p90 absolute error, rounded up to 2 significant digits
        p90 = float(np.quantile(np.abs(other - y), 0.9))
        unit = 10.0 ** (math.floor(math.log10(max(p90, 1e-9))) - 1)
        tolerance = round(math.ceil(p90 / unit - 1e-9) * unit, 10)
    out: list[MetricSuggestion] = []
    models: dict[str, _DayModel] = {}
    for metric in METRICS[task]:
        direction = "at_most" if metric in LOWER_IS_BETTER else "at_least"
        ref = _reference_level(metric, task, y, other, decision_threshold, tolerance)
        if ref is None:
            notes.append(f"{metric}: undefined on the reference, not suggested")
            continue
        share = _events_share(metric, task, y, other, decision_threshold)
        values = np.array([d.metrics[metric] for d in stored_days
                           if d.metrics.get(metric) is not None], dtype="float64")
        metric_notes = []
        level, source, spread = ref, "reference", None
        stored_level = float(np.median(values)) if len(values) else None
        if metric in PROPORTIONS:
            events = max(1, int(round(n * share)))
            sd = math.sqrt(max(ref * (1 - ref), 1e-12) / events)
        else:
            draws = qs.resampled_metric(metric, task, y, other, size=max(int(round(n)), 1),
                                        threshold=decision_threshold, resamples=RESAMPLES)
            sd = float(np.nanstd(draws))
            events = None
        if len(values) >= MIN_STORED_DAYS:
            level, source = stored_level, "stored mature days"
            sampling = []
            for d in stored_days:
                v = d.metrics.get(metric)
                if v is None or not d.n_labelled:
                    continue
                if metric in PROPORTIONS:
                    s = _stored_share(metric, d) or share
                    sampling.append(max(v * (1 - v), 1e-12) / max(d.n_labelled * s, 1))
                else:
                    sampling.append(sd ** 2 * n / d.n_labelled)
            spread = math.sqrt(max(0.0, _mad_sd(values) ** 2 - float(np.median(sampling))))
            if metric in PROPORTIONS:
                sd = math.sqrt(max(level * (1 - level), 1e-12) / events)
        elif metric == "within_tolerance":
            metric_notes.append("within_tolerance is not stored per day: level from the reference")
        elif len(values):
            metric_notes.append(f"{len(values)} stored mature days with {metric} (fewer than "
                                f"{MIN_STORED_DAYS}): level from the reference, day-to-day spread "
                                "unknown (days assumed to differ by sampling noise only)")
        elif f"fewer than {MIN_STORED_DAYS}" not in " ".join(notes):
            notes.append(f"fewer than {MIN_STORED_DAYS} stored mature days: levels from the "
                         "reference, day-to-day spread unknown (days assumed to differ by "
                         "sampling noise only)")
        day = _DayModel(metric=metric, direction=direction, level=float(level),
                        spread=spread or 0.0, events=events, sd=sd, confidence=confidence)
        models[metric] = day
        ratio = None
        if metric in RATIO_METRICS:
            ratio = _propose_ratio(level, spread or 0.0, n * share, window_days, tolerance
                                   if metric == "within_tolerance" else None)
        timeslice = _propose_timeslice(day, window_days) if metric in TIMESLICE_METRICS else None
        if timeslice is not None and timeslice.detects is None:
            what = f"{events} events" if events is not None else f"{n:,.0f} rows"
            metric_notes.append(
                f"{metric}: at {what} a day no fall within the metric's range makes 9 of 10 days "
                "bad with confidence, so a daily timeslice would hardly ever fire: use the ratio "
                "SLO" + ("" if metric in RATIO_METRICS else " on accuracy, precision or recall")
                + " (not in the YAML below)")
        out.append(MetricSuggestion(
            metric=metric, direction=direction, level=_r(level), level_source=source,
            level_reference=_r(ref), level_stored=None if stored_level is None else _r(stored_level),
            stored_days=int(len(values)), sampling_sd=_r(sd),
            spread_sd=None if spread is None else _r(spread), ratio=ratio, timeslice=timeslice,
            notes=tuple(metric_notes)))
    current = []
    for s in slos:
        if not getattr(s, "quality", False):
            continue
        day = models.get(s.sli)
        if day is None:
            current.append(CurrentSlo(s.name, s.sli, s.kind, None,
                                      f"{s.sli} is not among the metrics suggest-slo models"))
            continue
        if s.kind == "timeslice" and s.threshold is not None:
            own = _DayModel(day.metric, s.direction, day.level, day.spread, day.events, day.sd,
                            s.confidence)
            current.append(CurrentSlo(s.name, s.sli, s.kind,
                                      own.timeslice(s.threshold, s.objective, s.window_days)))
        elif s.kind == "ratio" and s.sli in RATIO_METRICS:
            share = _events_share(s.sli, task, y, other, decision_threshold)
            current.append(CurrentSlo(s.name, s.sli, s.kind, _ratio(
                day.level, day.spread, n * share, s.objective, s.window_days)))
    return Suggestion(model=model, task=task, rows_per_day=n, rows_source=rows_source,
                      reference_rows=int(len(y)), stored_mature_days=len(stored_days),
                      window_target=WINDOW_TARGET, metrics=tuple(out), current=tuple(current),
                      boolean=tuple(boolean), notes=tuple(notes))


def boolean_risk(slo: str, sli: str, rate: float, rate_source: str, objective: float,
                 window: int) -> BooleanRisk:
    """What a boolean timeslice's daily false-alarm rate implies for its budget and alerts."""
    def exhaustion(o: float) -> float:
        return _exhaustion(rate, 0.0, o, window)

    target = None
    for k in range(99, 49, -1):
        if exhaustion(k / 100) <= WINDOW_TARGET:
            target = k / 100
            break
    return BooleanRisk(
        slo=slo, sli=sli, daily_false_alarm_rate=_r(rate), rate_source=rate_source,
        objective=objective, window_days=window, window_exhaustion=_r(exhaustion(objective)),
        # a page: today bad and another of the last 3; a ticket: today and another of the last 7
        page_chance_per_day=_r(rate * (1 - (1 - rate) ** 2)),
        ticket_chance_per_day=_r(rate * (1 - (1 - rate) ** 6)),
        objective_for_target=target)


# ---------------------------------------------------------------------------------------------
# Output


def _pct(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x * 100:.2f}%" if x < 0.1 else f"{x * 100:.1f}%"


def _num(x: float | None) -> str:
    return "-" if x is None else f"{x:.4g}"


def as_table(s: Suggestion) -> str:
    rel = {"at_least": ">=", "at_most": "<="}
    lines = [
        f"{s.model} ({s.task}): {s.rows_per_day:,.0f} labelled rows a day ({s.rows_source}); "
        f"reference {s.reference_rows:,} rows; {s.stored_mature_days} stored mature days",
        f"false alarms of a healthy model; a suggestion keeps the chance that a healthy 28-day "
        f"window spends its budget at most {_pct(s.window_target)}",
        "",
        f"{'metric':<17}{'level':>8} {'source':<8}{'day sd':>9}{'spread':>9}   ratio objective "
        f"(exhaust, page/d)      timeslice threshold / objective (bad day, exhaust, plain rule)",
    ]
    for m in s.metrics:
        ratio = "-"
        if m.ratio:
            r = m.ratio
            tol = f" tol {r.tolerance:g}" if r.tolerance is not None else ""
            ratio = f"{r.objective:g}{tol} ({_pct(r.window_exhaustion)}, {_pct(r.page_burn_chance_per_day)})"
        ts = "-"
        if m.timeslice and m.timeslice.detects is None:
            ts = "none: a day is hardly ever surely bad at this size (see the note)"
        elif m.timeslice:
            t = m.timeslice
            ts = (f"{rel[t.direction]} {t.threshold:g} / {t.objective:g} ({_pct(t.bad_day)}, "
                  f"{_pct(t.window_exhaustion)}, {_pct(t.bad_day_plain_rule)}) bad at {_num(t.detects)}")
        src = "stored" if m.level_source.startswith("stored") else "ref"
        spread = "?" if m.spread_sd is None else _num(m.spread_sd)
        lines.append(f"{m.metric:<17}{m.level:>8.4g} {src:<8}{m.sampling_sd:>9.3g}{spread:>9}   "
                     f"{ratio:<32} {ts}")
    if s.current:
        lines += ["", "the spec's quality SLOs at this batch size:"]
        for c in s.current:
            f = c.figures
            if f is None:
                lines.append(f"  {c.slo}: {c.note}")
            elif isinstance(f, TimesliceFigures):
                lines.append(
                    f"  {c.slo} ({c.metric} {rel[f.direction]} {f.threshold:g}, objective "
                    f"{f.objective:g}): a healthy day is bad {_pct(f.bad_day)} (plain rule: "
                    f"{_pct(f.bad_day_plain_rule)}), inconclusive {_pct(f.inconclusive_day)}; a "
                    f"healthy window spends the budget {_pct(f.window_exhaustion)} "
                    f"(independent days: {_pct(f.window_exhaustion_independent_days)})")
            else:
                lines.append(
                    f"  {c.slo} ({c.metric}, ratio, objective {f.objective:g}): a healthy window "
                    f"spends the budget {_pct(f.window_exhaustion)}; page-level 3-day burn "
                    f"{_pct(f.page_burn_chance_per_day)} of days")
    if s.boolean:
        lines += ["", "boolean timeslices (from the monitors' daily false-alarm rates):"]
        for b in s.boolean:
            tip = (f"; objective {b.objective_for_target:g} keeps it within {_pct(s.window_target)}"
                   if b.objective_for_target is not None and b.objective_for_target < b.objective
                   else "")
            lines.append(
                f"  {b.slo} ({b.sli}): false alarms at most {_pct(b.daily_false_alarm_rate)} a day "
                f"({b.rate_source}); objective {b.objective:g} over {b.window_days} days: a healthy "
                f"window spends the budget {_pct(b.window_exhaustion)}, pages on "
                f"{_pct(b.page_chance_per_day)} of days, tickets on {_pct(b.ticket_chance_per_day)}{tip}")
    seen = []
    for n in [n for m in s.metrics for n in m.notes] + list(s.notes):
        if n not in seen:
            seen.append(n)
            lines.append(f"  note: {n}")
    lines += ["", "exhaust: chance a healthy 28-day window spends the budget (days of a window "
              "share their level; see --json for independent days); page/d: days with a "
              "page-level 3-day burn; bad day: confident rule; plain rule: bad whenever the value "
              "misses the threshold; bad at: a day at this level is bad 9 times in 10", "",
              "# paste into the spec's slos: (replace an SLO on the same metric)",
              yaml_snippet(s)]
    return "\n".join(lines)


def yaml_snippet(s: Suggestion) -> str:
    """SLO entries to paste under `slos:`, one ratio and one timeslice per metric: pick what the
    model needs (an SLI is stored once per day, so keep at most one timeslice per metric)."""
    out = []
    for m in s.metrics:
        src = "stored mature days" if m.level_source.startswith("stored") else "the reference"
        out.append(f"# {m.metric}: healthy level {m.level:.4g} ({src}), {s.rows_per_day:,.0f} "
                   "labelled rows a day")
        if m.ratio:
            r = m.ratio
            out += [f"- name: {m.metric.replace('_', '-')}-pooled",
                    f"  sli: {m.metric}",
                    "  kind: ratio",
                    f"  objective: {r.objective:g}"]
            if r.tolerance is not None:
                out.append(f"  threshold: {r.tolerance:g}")
            out += ["  quality: true", "  gates: [model]",
                    f"  description: \"{m.metric} pooled over {r.window_days} days; a healthy window "
                    f"spends it {_pct(r.window_exhaustion)} of the time at {s.rows_per_day:,.0f} "
                    "rows a day\""]
        if m.timeslice and m.timeslice.detects is not None:
            t = m.timeslice
            out += [f"- name: {m.metric.replace('_', '-')}-daily",
                    f"  sli: {m.metric}",
                    "  kind: timeslice",
                    f"  objective: {t.objective:g}",
                    f"  threshold: {t.threshold:g}",
                    f"  direction: {t.direction}",
                    f"  confidence: {t.confidence:g}",
                    "  quality: true", "  gates: [model]",
                    f"  description: \"a mature day is bad when {m.metric} is surely "
                    f"{'below' if t.direction == 'at_least' else 'above'} {t.threshold:g}; "
                    f"a healthy day is bad {_pct(t.bad_day)} of the time\""]
    return "\n".join(out)
