"""Triage: the on-call checklist for one model and day, answered from data.

Pure module: DataFrames and plain values in, a `TriageResult` out. No Airflow, no database, no
file I/O (the shell in `watchkeeper.reports.triage_page` gathers the inputs and writes the page).

The checklist, in the order a person on call asks it
====================================================

1. **Timing.** Did it start right after a deployment, or has it grown over days? Each candidate
   series (every feature's distance from the training set per day, and the data-quality SLI as
   "share of checks failing", whose floor is the SLO's error budget 1 - objective) is compared
   with its own quiet start: baseline ``b`` = median of
   its earliest days, noise = 1.4826 x their MAD (with a floor). A series is *elevated* on a day
   when it exceeds ``b + max(4 x noise, floor)``. On an elevated day the onset is:

   * **sudden** when one day's step (the value minus the median of the 3 days before it)
     accounts for at least half of today's elevation; the onset is that day. A one-day jump on
     top of a slow drift is therefore sudden (the jump dominates), as it should be: the slow
     drift did not cause today's page;
   * **gradual** otherwise; the onset is the first day of the run of elevated days that leads
     to today (one quiet day inside the run is tolerated: noise).

   The verdict comes from the series of the feature that moved most today (the top of step 3);
   when no feature series is elevated, from the data-quality series. The nearest deployment is
   the newest deployment event (or model-version change seen in the data) on or before the day;
   the incident is "after a deployment" when the onset falls within `DEPLOYMENT_WINDOW_DAYS`
   days after it.
2. **Predictions** against the same weekday one and four weeks earlier (weekly seasonality makes
   yesterday a poor comparison): mean, quantiles, positive rate (binary) and the distance between
   the two distributions.
3. **Features ranked by how far they moved**: for each feature, the larger of its distance from
   the trailing window of recent days (a sudden change) and from the training set (slow drift).
   Distance: numerical features, the Wasserstein-1 distance between the two distributions
   divided by the baseline's standard deviation (Evidently's "normed Wasserstein", computed on a
   199-point quantile grid); categorical features, the total-variation distance between the
   value shares (new values count in full); for both, a change in the share of nulls counts as
   its absolute difference, and the score is the larger of the two. One unit means "moved by a
   whole standard deviation" or "all of the mass moved".
4. **Impact by segment**: for every value of every segment column, the same distance inside the
   segment (today vs the segment in the recent window) minus the distance in the rest of the
   batch (today vs the rest in the recent window), less the sampling noise expected at the
   segment's size (2 x sqrt(1/rows today + 1/rows before)), for every feature and the model's
   output; the impact is the largest such excess (at least 0) and names the feature that carries
   it. A segment where a
   feature broke scores high; a problem spread evenly over all segments scores near zero
   everywhere (no segment carries it).
5. **Infrastructure**: task failures and retries of the day, task durations against their median
   over the previous days, the partition's freshness, the model's load (rows scored against the
   trailing median) and the model versions serving.

Every answer carries its evidence (plain sentences with the numbers) and, where the shell gave
one, a link.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import date, timedelta
from typing import Any, Literal

import numpy as np
import pandas as pd

__all__ = [
    "DEPLOYMENT_WINDOW_DAYS",
    "DaySummary",
    "FeatureMove",
    "Onset",
    "Profile",
    "SegmentImpact",
    "SeriesOnset",
    "TriageConfig",
    "TriageError",
    "TriageInputs",
    "TriageResult",
    "distance",
    "onset_of_series",
    "profile",
    "summarize_day",
    "triage",
]

# A quantile grid for Wasserstein-1 between two numerical samples: W1 = integral of
# |F_a^-1(p) - F_b^-1(p)| dp, averaged over these p (the extreme 0.5% tails are left out so that
# one absurd value cannot dominate the score of a 20,000-row day).
_GRID = np.linspace(0.005, 0.995, 199)
ELEVATED_Z = 4.0
SUDDEN_SHARE = 0.5
STEP_CONTEXT_DAYS = 3
BASELINE_DAYS = 7
MIN_SEGMENT_ROWS = 30
RECENT_DAYS = 7
DEPLOYMENT_WINDOW_DAYS = 1
SLOW_TASK_FACTOR = 2.0
SLOW_TASK_MIN_SECONDS = 5.0
# Elevation floors: below these absolute changes a series is "quiet" however small its noise
# (a series that never moved has zero noise; the first wobble must not read as an incident).
FEATURE_FLOOR = 0.05
DQ_FLOOR = 0.01


class TriageError(ValueError):
    """Triage inputs are unusable (names the input, the field and the reason)."""


# ---------------------------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TriageConfig:
    """What triage needs to know about the model (taken from its spec by the shell)."""

    model: str
    ds: str
    task: str = "binary_classification"
    features: tuple[tuple[str, str], ...] = ()  # (name, "numerical" | "categorical")
    segments: tuple[str, ...] = ()
    score_column: str | None = None
    prediction_column: str | None = None
    threshold: float = 0.5
    model_version_column: str | None = None
    pii_columns: frozenset[str] = frozenset()
    # The data-quality SLO's objective: a share of failing checks within its error budget
    # (1 - objective) is not an incident, however flat the series was before.
    dq_objective: float | None = None

    def __post_init__(self) -> None:
        where = f"triage config for model {self.model!r}"
        try:
            date.fromisoformat(self.ds)
        except (TypeError, ValueError):
            raise TriageError(f"{where}, field 'ds': expected 'YYYY-MM-DD', got {self.ds!r}") from None
        for i, item in enumerate(self.features):
            if (not isinstance(item, tuple) or len(item) != 2
                    or item[1] not in ("numerical", "categorical")):
                raise TriageError(
                    f"{where}, field 'features[{i}]': expected (name, 'numerical'|'categorical'), "
                    f"got {item!r}")

    @property
    def output_column(self) -> str | None:
        """The model output compared across days: the score, else the predicted value."""
        return self.score_column or self.prediction_column

    @property
    def kinds(self) -> dict[str, str]:
        return dict(self.features)


@dataclass(frozen=True)
class Profile:
    """A column's distribution, small enough to keep one per feature and day.

    Numerical: quantiles on `_GRID`, mean and standard deviation of the non-null values.
    Categorical: the share of each non-null value. Both: row count and share of nulls.
    """

    kind: Literal["numerical", "categorical"]
    n: int
    null_share: float
    quantiles: tuple[float, ...] | None = None
    mean: float | None = None
    std: float | None = None
    shares: dict[str, float] | None = None

    @property
    def empty(self) -> bool:
        """No non-null value to compare."""
        return self.n == 0 or self.null_share >= 1.0


def _numeric(s: pd.Series) -> np.ndarray:
    values = pd.to_numeric(s, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
    return values[np.isfinite(values)]


@dataclass(frozen=True)
class Column:
    """One column prepared once for many profiles (whole batch, segments): numbers as float64
    with NaN for anything not a finite number; categories as integer codes (-1 = null)."""

    kind: str
    values: np.ndarray
    categories: tuple[str, ...] = ()

    @classmethod
    def of(cls, s: pd.Series, kind: str) -> Column:
        if kind == "numerical":
            values = pd.to_numeric(s, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
            values = np.where(np.isfinite(values), values, np.nan)
            return cls("numerical", values)
        if kind != "categorical":
            raise TriageError(f"column {s.name!r}: kind must be 'numerical' or 'categorical', "
                              f"got {kind!r}")
        if isinstance(s.dtype, pd.CategoricalDtype):
            return cls("categorical", s.cat.codes.to_numpy(dtype="int64"),
                       tuple(str(c) for c in s.cat.categories))
        codes, uniques = pd.factorize(s, use_na_sentinel=True)
        # Values are compared as text ("1" and 1 are one category), as the shares are keyed.
        labels = [str(u) for u in uniques]
        if len(set(labels)) != len(labels):
            codes, uniques = pd.factorize(s.map(lambda v: v if pd.isna(v) else str(v)),
                                          use_na_sentinel=True)
            labels = [str(u) for u in uniques]
        return cls("categorical", np.asarray(codes, dtype="int64"), tuple(labels))

    def profile(self, mask: np.ndarray | None = None) -> Profile:
        v = self.values if mask is None else self.values[mask]
        n = int(len(v))
        if self.kind == "numerical":
            finite = v[~np.isnan(v)]
            null_share = 1.0 - len(finite) / n if n else 1.0
            if len(finite) == 0:
                return Profile("numerical", n, null_share)
            q = _quantiles(np.sort(finite))
            return Profile("numerical", n, float(null_share), tuple(q.tolist()),
                           float(finite.mean()), float(finite.std()))
        present = v[v >= 0]
        null_share = 1.0 - len(present) / n if n else 1.0
        counts = np.bincount(present, minlength=len(self.categories)) if len(present) else []
        shares = {self.categories[i]: float(c) / len(present) for i, c in enumerate(counts) if c}
        return Profile("categorical", n, float(null_share), shares=shares)


def _quantiles(ordered: np.ndarray) -> np.ndarray:
    """np.quantile(values, _GRID) ('linear' method) from sorted values: one sort serves all 199
    quantiles, several times faster than numpy's partition per quantile."""
    pos = _GRID * (len(ordered) - 1)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def profile(s: pd.Series, kind: str) -> Profile:
    """The `Profile` of one column (text in a numerical column counts as null: it cannot be
    placed on the axis, and the data-quality checks report it)."""
    return Column.of(s, kind).profile()


def prepare(frame: pd.DataFrame | None, kinds: Mapping[str, str]) -> dict[str, Column]:
    """The columns of `frame` named in `kinds`, prepared (missing columns are left out)."""
    if frame is None:
        return {}
    return {n: Column.of(frame[n], k) for n, k in kinds.items() if n in frame.columns}


def distance(now: Profile, base: Profile) -> float | None:
    """How far `now` moved from `base` (see the module docstring); None when either is empty of
    rows. A column that became entirely null moved by its change in null share."""
    if now.n == 0 or base.n == 0:
        return None
    null_move = abs(now.null_share - base.null_share)
    if now.empty or base.empty:
        return null_move
    if now.kind == "numerical" and base.kind == "numerical":
        qa, qb = np.asarray(now.quantiles), np.asarray(base.quantiles)
        w1 = float(np.mean(np.abs(qa - qb)))
        scale = base.std if base.std and math.isfinite(base.std) and base.std > 0 else None
        if scale is None:
            # A constant baseline: any spread or offset is a move; scale by the magnitude.
            scale = max(abs(base.mean or 0.0), 1.0)
        dist = w1 / scale
    else:
        a, b = now.shares or {}, base.shares or {}
        dist = 0.5 * sum(abs(a.get(k, 0.0) - b.get(k, 0.0)) for k in set(a) | set(b))
    return float(max(dist, null_move))


def _profiles(frame: pd.DataFrame | None, kinds: Mapping[str, str]) -> dict[str, Profile]:
    return {name: col.profile() for name, col in prepare(frame, kinds).items()}


def _median(values: Iterable[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return float(np.median(vals)) if vals else None


@dataclass(frozen=True)
class DaySummary:
    """One day, reduced to what the timing question needs: each feature's distance from the
    training set, the model output's distance, rows, and the model versions serving."""

    ds: str
    rows: int
    skew: dict[str, float | None]
    output_skew: float | None = None
    model_versions: dict[str, int] = field(default_factory=dict)


def summarize_day(ds: str, frame: pd.DataFrame, config: TriageConfig,
                  reference: Mapping[str, Profile]) -> DaySummary:
    """Reduce one day's batch against the reference profiles (computed once by the caller with
    `profile` for every feature and the output column)."""
    kinds = config.kinds
    skew: dict[str, float | None] = {}
    for name, kind in kinds.items():
        if name in frame.columns and name in reference:
            skew[name] = distance(Column.of(frame[name], kind).profile(), reference[name])
        else:
            skew[name] = None
    out = config.output_column
    output_skew = None
    if out and out in frame.columns and out in reference:
        output_skew = distance(Column.of(frame[out], "numerical").profile(), reference[out])
    versions: dict[str, int] = {}
    mv = config.model_version_column
    if mv and mv in frame.columns:
        versions = {str(k): int(v) for k, v in frame[mv].dropna().astype(str).value_counts().items()}
    return DaySummary(ds=ds, rows=int(len(frame)), skew=skew, output_skew=output_skew,
                      model_versions=versions)


@dataclass
class TriageInputs:
    """Everything triage reads, gathered by the shell.

    `current`: the day's batch (None when the partition is missing). `recent`: the batches of
    the trailing `RECENT_DAYS` days before it, one frame per day (a distance "from the recent
    days" is the median of the distances to each of them, so one bad day in the window cannot
    pass for normal). `reference`: the training set. `week_ago`,
    `four_weeks_ago`: the batches of ds-7 and ds-28. `history`: a `DaySummary` per day up to and
    including ds (any days available). `sli`: SLI name -> ds -> value. `stored_scores`: the
    monitor's own drift/skew scores, family -> ds -> subject -> score (used when batches are
    missing, and shown as evidence). `deployments`, `runs`, `partitions`: plain dicts from the
    store. `links`: checklist step -> relative URL of its evidence page.
    """

    config: TriageConfig
    current: pd.DataFrame | None = None
    recent: Sequence[pd.DataFrame] = ()
    reference: pd.DataFrame | None = None
    week_ago: pd.DataFrame | None = None
    four_weeks_ago: pd.DataFrame | None = None
    history: Sequence[DaySummary] = ()
    sli: Mapping[str, Mapping[str, float | None]] = field(default_factory=dict)
    stored_scores: Mapping[str, Mapping[str, Mapping[str, float | None]]] = field(default_factory=dict)
    deployments: Sequence[Mapping[str, Any]] = ()
    runs: Sequence[Mapping[str, Any]] = ()
    partitions: Sequence[Mapping[str, Any]] = ()
    links: Mapping[str, str] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SeriesOnset:
    """The timing verdict of one series."""

    series: str
    verdict: Literal["sudden", "gradual", "quiet", "unknown"]
    onset_ds: str | None
    value: float | None
    baseline: float | None
    threshold: float | None
    step: float | None
    step_ds: str | None
    text: str


@dataclass(frozen=True)
class Onset:
    kind: Literal["sudden", "gradual"]
    onset_ds: str | None
    primary: str | None
    series: tuple[SeriesOnset, ...]
    text: str


@dataclass(frozen=True)
class FeatureMove:
    feature: str
    kind: str
    score: float
    drift: float | None  # vs the recent window
    skew: float | None  # vs the training set
    null_share: float | None
    null_share_before: float | None
    stored: dict[str, float | None]
    text: str


@dataclass(frozen=True)
class SegmentImpact:
    segment: dict[str, Any]
    impact: float
    feature: str | None
    inside: float | None
    elsewhere: float | None
    rows: int
    share: float
    text: str


@dataclass
class TriageResult:
    model: str
    ds: str
    onset: Onset
    nearest_deployment: dict[str, Any] | None
    after_deployment: bool
    predictions: dict[str, Any]
    features: list[FeatureMove]
    segments: list[SegmentImpact]
    infrastructure: dict[str, Any]
    links: dict[str, str]
    notes: list[str]

    def to_json(self) -> dict[str, Any]:
        """The `watchkeeper triage --json` object: the documented keys first, then the evidence.

        features and segments are worst first; numbers are rounded to 6 significant digits.
        """
        out = {
            "model": self.model,
            "ds": self.ds,
            "onset": self.onset.kind,
            "onset_ds": self.onset.onset_ds,
            "nearest_deployment": self.nearest_deployment,
            "predictions": self.predictions,
            "features": [
                {"feature": f.feature, "score": f.score, "kind": f.kind, "drift": f.drift,
                 "skew": f.skew, "null_share": f.null_share,
                 "null_share_before": f.null_share_before, "stored": f.stored, "text": f.text}
                for f in self.features
            ],
            "segments": [
                {"segment": s.segment, "impact": s.impact, "feature": s.feature,
                 "inside": s.inside, "elsewhere": s.elsewhere, "rows": s.rows, "share": s.share,
                 "text": s.text}
                for s in self.segments
            ],
            "infrastructure": self.infrastructure,
            "after_deployment": self.after_deployment,
            "timing": {"text": self.onset.text, "primary": self.onset.primary,
                       "series": [asdict(s) for s in self.onset.series]},
            "links": self.links,
            "notes": self.notes,
        }
        return _round_json(out)


def _round_json(v: Any) -> Any:
    if isinstance(v, dict):
        return {str(k): _round_json(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_round_json(x) for x in v]
    if isinstance(v, (np.floating, float)):
        f = float(v)
        if not math.isfinite(f):
            return None
        return float(f"{f:.6g}")
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.bool_):
        return bool(v)
    return v


# ---------------------------------------------------------------------------------------------
# 1. Timing
# ---------------------------------------------------------------------------------------------


def _fmt(x: float | None, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    return f"{x:.{digits}g}"


def onset_of_series(name: str, series: Mapping[str, float | None], ds: str, *,
                    floor: float = FEATURE_FLOOR) -> SeriesOnset:
    """Timing verdict of one daily series (higher = worse) as of `ds` (module docstring, step 1)."""
    days = sorted(d for d, v in series.items() if d <= ds and v is not None
                  and math.isfinite(float(v)))
    if ds not in days:
        return SeriesOnset(name, "unknown", None, None, None, None, None, None,
                           f"{name}: no value on {ds}")
    before = [d for d in days if d < ds]
    if len(before) < 3:
        return SeriesOnset(name, "unknown", None, float(series[ds]), None, None, None, None,
                           f"{name}: only {len(before)} earlier day(s); too little history to "
                           "tell a jump from a trend")
    vals = {d: float(series[d]) for d in days}
    base_days = before[:min(BASELINE_DAYS, max(3, len(before) // 3))]
    base_vals = np.array([vals[d] for d in base_days])
    b = float(np.median(base_vals))
    noise = 1.4826 * float(np.median(np.abs(base_vals - b)))
    thr = b + max(ELEVATED_Z * noise, floor)
    cur = vals[ds]
    if cur <= thr:
        return SeriesOnset(name, "quiet", None, cur, b, thr, None, None,
                           f"{name}: {_fmt(cur)} on {ds}, within its usual range "
                           f"(baseline {_fmt(b)}, elevated above {_fmt(thr)})")
    # The run of elevated days leading to ds, tolerating one quiet day inside it; then extended
    # back over days still clearly above the baseline (a trend crosses the strict line late).
    idx = days.index(ds)
    run = _run_back(days[:idx], vals, thr, [ds])
    lower = b + max(2.0 * noise, floor / 2.0)
    run = _run_back([d for d in days if d < min(run)], vals, lower, run)
    run_start = min(run)
    elevation = cur - b

    def step(d: str) -> float:
        # A step that lasted: the lowest value from d to ds, against the days just before d.
        # A one-day spike that has since gone (yesterday's incident) is not today's onset.
        i = days.index(d)
        prior = [vals[x] for x in days[max(0, i - STEP_CONTEXT_DAYS):i]]
        after = min(vals[x] for x in days[i:idx + 1])
        return after - (float(np.median(prior)) if prior else b)

    steps = {d: step(d) for d in run if d > base_days[-1]}
    if not steps:
        steps = {ds: cur - b}
    step_ds = max(steps, key=lambda d: (steps[d], d))
    biggest = steps[step_ds]
    if biggest >= SUDDEN_SHARE * elevation:
        share = biggest / elevation if elevation > 0 else 1.0
        return SeriesOnset(
            name, "sudden", step_ds, cur, b, thr, biggest, step_ds,
            f"{name}: {_fmt(cur)} on {ds} against a baseline of {_fmt(b)}; it jumped by "
            f"{_fmt(biggest)} on {step_ds} ({share:.0%} of the rise in one day)")
    return SeriesOnset(
        name, "gradual", run_start, cur, b, thr, biggest, step_ds,
        f"{name}: {_fmt(cur)} on {ds} against a baseline of {_fmt(b)}; above it since "
        f"{run_start} and no lasting one-day step above {_fmt(max(biggest, 0.0))} "
        f"({max(biggest, 0.0) / elevation:.0%} of the rise): it grew over days")


def _run_back(earlier: list[str], vals: Mapping[str, float], line: float, run: list[str]
              ) -> list[str]:
    """Extend `run` backwards over `earlier` (sorted days) while values exceed `line`, allowing
    one day at or below it between two days above."""
    run = list(run)
    gap = 0
    for d in reversed(earlier):
        if vals[d] > line:
            run.append(d)
            gap = 0
        else:
            gap += 1
            if gap > 1:
                break
    return run


def _onset(inputs: TriageInputs, ranked: list[FeatureMove]) -> Onset:
    cfg = inputs.config
    ds = cfg.ds
    results: list[SeriesOnset] = []
    by_feature: dict[str, SeriesOnset] = {}
    feature_series: dict[str, dict[str, float | None]] = {}
    for summary in inputs.history:
        for name, value in summary.skew.items():
            feature_series.setdefault(name, {})[summary.ds] = value
    source = "distance from the training set"
    if not any(v is not None for s in feature_series.values() for v in s.values()):
        # No batches: fall back to the monitor's stored skew (else drift) scores per feature.
        for family in ("skew", "drift"):
            per_day = inputs.stored_scores.get(family) or {}
            for day, subjects in per_day.items():
                for subject, value in subjects.items():
                    if "|" not in subject and not subject.startswith("__"):
                        feature_series.setdefault(subject, {})[day] = value
            if feature_series:
                source = f"stored {family} score"
                break
    for name in sorted(feature_series):
        r = onset_of_series(f"{name} ({source})", feature_series[name], ds)
        by_feature[name] = r
    dq = inputs.sli.get("data_quality") or {}
    dq_bad = {d: (None if v is None else 1.0 - float(v)) for d, v in dq.items()}
    floor = DQ_FLOOR if cfg.dq_objective is None else max(DQ_FLOOR, 1.0 - cfg.dq_objective)
    dq_result = onset_of_series("share of data-quality checks failing", dq_bad, ds, floor=floor) \
        if dq_bad else None

    primary: SeriesOnset | None = None
    order = [f.feature for f in ranked] + sorted(set(by_feature) - {f.feature for f in ranked})
    for name in order:
        r = by_feature.get(name)
        if r is not None and r.verdict in ("sudden", "gradual"):
            primary = r
            break
    if primary is None and dq_result is not None and dq_result.verdict in ("sudden", "gradual"):
        primary = dq_result
    results = [by_feature[n] for n in order if n in by_feature]
    if dq_result is not None:
        results.insert(0, dq_result)
    if primary is None:
        return Onset("gradual", None, None, tuple(results),
                     f"Nothing stands out on {ds}: no feature and no data-quality series is "
                     "above its usual range, so there is no onset to date (reported as gradual).")
    kind = primary.verdict
    others = [r for r in results if r is not primary and r.verdict in ("sudden", "gradual")]
    agree = [r.series for r in others if r.verdict == kind]
    text = (f"{'Sudden' if kind == 'sudden' else 'Gradual'} onset on {primary.onset_ds}: "
            f"{primary.text}.")
    if agree:
        text += f" Also {kind}: {', '.join(agree[:4])}."
    return Onset(kind, primary.onset_ds, primary.series, tuple(results), text)


def _nearest_deployment(inputs: TriageInputs, onset_ds: str | None
                        ) -> tuple[dict[str, Any] | None, bool, str]:
    ds = inputs.config.ds
    candidates: list[dict[str, Any]] = []
    for e in inputs.deployments:
        d = str(e.get("ds"))
        if d <= ds:
            payload = dict(e.get("payload") or {})
            candidates.append({"ds": d, "version": payload.get("version") or e.get("subject"),
                               "source": "deployment event", "by": e.get("created_by"),
                               "payload": payload})
    # A change of the model version seen in the data is a deployment too, recorded or not.
    previous: str | None = None
    for s in sorted(inputs.history, key=lambda x: x.ds):
        if s.ds > ds or not s.model_versions:
            continue
        main = max(s.model_versions, key=lambda k: (s.model_versions[k], k))
        if previous is not None and main != previous:
            candidates.append({"ds": s.ds, "version": main, "source": "model_version column",
                               "by": None, "payload": {"previous": previous}})
        previous = main
    if not candidates:
        return None, False, f"No deployment on or before {ds} (no deployment event, and the model " \
                            "version in the data did not change)."
    nearest = max(candidates, key=lambda c: (c["ds"], c["source"] == "deployment event"))
    ref = onset_ds or ds
    gap = (date.fromisoformat(ref) - date.fromisoformat(nearest["ds"])).days
    nearest["days_before_onset"] = gap
    after = 0 <= gap <= DEPLOYMENT_WINDOW_DAYS
    if after:
        text = (f"The onset ({ref}) came {gap} day(s) after deploying {nearest['version']} on "
                f"{nearest['ds']} ({nearest['source']}): suspect the deployment first.")
    else:
        text = (f"The nearest deployment ({nearest['version']} on {nearest['ds']}, "
                f"{nearest['source']}) is {gap} day(s) before the onset ({ref}): not a deployment "
                "effect." if gap >= 0 else
                f"The nearest deployment ({nearest['version']} on {nearest['ds']}) came after the "
                f"onset ({ref}).")
    return nearest, after, text


# ---------------------------------------------------------------------------------------------
# 2. Predictions
# ---------------------------------------------------------------------------------------------


def _output_stats(frame: pd.DataFrame | None, cfg: TriageConfig) -> dict[str, Any] | None:
    col = cfg.output_column
    if frame is None or col is None or col not in frame.columns:
        return None
    values = _numeric(frame[col])
    out: dict[str, Any] = {"rows": int(len(frame)), "scored": int(len(values))}
    if len(values):
        q = np.quantile(values, [0.1, 0.5, 0.9])
        out.update(mean=float(values.mean()), p10=float(q[0]), p50=float(q[1]), p90=float(q[2]))
        if cfg.task == "binary_classification" and cfg.score_column:
            out["positive_rate"] = float((values >= cfg.threshold).mean())
    return out


def _predictions(inputs: TriageInputs) -> dict[str, Any]:
    cfg = inputs.config
    col = cfg.output_column
    ds = date.fromisoformat(cfg.ds)
    today = _output_stats(inputs.current, cfg)
    result: dict[str, Any] = {"column": col, "today": today}
    now_profile = (profile(inputs.current[col], "numerical")
                   if today and inputs.current is not None else None)
    sentences = []
    worst = None
    for key, frame, weeks in (("one_week_before", inputs.week_ago, 1),
                              ("four_weeks_before", inputs.four_weeks_ago, 4)):
        day = (ds - timedelta(days=7 * weeks)).isoformat()
        stats = _output_stats(frame, cfg)
        entry: dict[str, Any] = {"ds": day, "available": stats is not None}
        if stats is not None:
            entry.update(stats)
            if now_profile is not None and frame is not None:
                d = distance(now_profile, profile(frame[col], "numerical"))
                entry["distance"] = d
                if d is not None:
                    worst = d if worst is None else max(worst, d)
                if today and "mean" in today and "mean" in stats:
                    part = (f"mean {_fmt(today['mean'])} vs {_fmt(stats['mean'])} on {day} "
                            f"(distance {_fmt(d)})")
                    if "positive_rate" in today and "positive_rate" in stats:
                        part += (f", positive rate {today['positive_rate']:.1%} vs "
                                 f"{stats['positive_rate']:.1%}")
                    sentences.append(part)
        else:
            sentences.append(f"no batch on {day} (same weekday, {weeks} week(s) earlier)")
        result[key] = entry
    result["distance"] = worst
    if col is None:
        result["text"] = "The spec names no score or prediction column: nothing to compare."
    elif today is None:
        result["text"] = f"No batch for {cfg.ds}: the model's output cannot be compared."
    else:
        verdict = ("moved" if worst is not None and worst >= 0.1 else "steady"
                   if worst is not None else "not comparable")
        result["text"] = (f"The output ({col}) is {verdict} against the same weekday: "
                          + "; ".join(sentences) + ".")
    result["verdict"] = ("not comparable" if worst is None else
                         "moved" if worst >= 0.1 else "steady")
    return result


# ---------------------------------------------------------------------------------------------
# 3. Features
# ---------------------------------------------------------------------------------------------


def _features(inputs: TriageInputs) -> list[FeatureMove]:
    cfg = inputs.config
    kinds = cfg.kinds
    now = _profiles(inputs.current, kinds)
    recent = [_profiles(f, kinds) for f in inputs.recent]
    ref = _profiles(inputs.reference, kinds)
    stored_today = {fam: dict((inputs.stored_scores.get(fam) or {}).get(cfg.ds) or {})
                    for fam in ("drift", "skew")}
    moves = []
    for name, kind in kinds.items():
        stored = {fam: stored_today[fam].get(name) for fam in ("drift", "skew")
                  if name in stored_today[fam]}
        p = now.get(name)
        drift = (_median(distance(p, day[name]) for day in recent if name in day)
                 if p is not None else None)
        skew = distance(p, ref[name]) if p is not None and name in ref else None
        measured = [x for x in (drift, skew) if x is not None]
        if measured:
            score = max(measured)
            basis = "batches"
        else:
            fallback = [v for v in stored.values() if v is not None]
            if not fallback:
                continue
            score = float(max(fallback))
            basis = "stored"
        before = next((day[name] for day in reversed(recent) if name in day), None) or ref.get(name)
        text = _feature_text(name, kind, drift, skew, p, before, stored, basis,
                             pii=name in cfg.pii_columns)
        moves.append(FeatureMove(
            feature=name, kind=kind, score=float(score), drift=drift, skew=skew,
            null_share=None if p is None else p.null_share,
            null_share_before=None if before is None else before.null_share,
            stored=stored, text=text))
    moves.sort(key=lambda m: (-m.score, m.feature))
    return moves


def _feature_text(name: str, kind: str, drift: float | None, skew: float | None,
                  now: Profile | None, before: Profile | None, stored: Mapping[str, Any],
                  basis: str, pii: bool = False) -> str:
    if basis == "stored":
        shown = ", ".join(f"{k} {_fmt(v)}" for k, v in stored.items())
        return f"{name}: no batch to measure; the monitor stored {shown}"
    parts = [f"{name} ({kind}): {_fmt(drift)} from the recent days, {_fmt(skew)} from training"]
    if now is not None and before is not None and abs(now.null_share - before.null_share) >= 0.01:
        parts.append(f"nulls {before.null_share:.1%} -> {now.null_share:.1%}")
    if (kind == "numerical" and now is not None and before is not None
            and now.quantiles and before.quantiles):
        med_now, med_before = now.quantiles[99], before.quantiles[99]
        parts.append(f"median {_fmt(med_before)} -> {_fmt(med_now)}")
    if kind == "categorical" and now is not None and before is not None and now.shares is not None:
        new = sorted(k for k in now.shares if k not in (before.shares or {}))
        if new and pii:  # a pii column's values never reach a page: their number only
            parts.append(f"{len(new)} new value(s) (not shown: pii)")
        elif new:
            parts.append(f"new values: {', '.join(new[:5])}"
                         + (f" (+{len(new) - 5})" if len(new) > 5 else ""))
    return "; ".join(parts)


# ---------------------------------------------------------------------------------------------
# 4. Segments
# ---------------------------------------------------------------------------------------------


def _segments(inputs: TriageInputs) -> list[SegmentImpact]:
    cfg = inputs.config
    cur = inputs.current
    bases = [f for f in inputs.recent if f is not None and len(f)]
    if not bases and inputs.reference is not None and len(inputs.reference):
        bases = [inputs.reference]
    if cur is None or not bases or not len(cur):
        return []
    kinds = dict(cfg.kinds)
    out = cfg.output_column
    if out and out in cur.columns and out not in kinds:
        kinds[out] = "numerical"
    now_cols = prepare(cur, kinds)
    base_cols = [prepare(b, kinds) for b in bases]
    impacts: list[SegmentImpact] = []
    for col in cfg.segments:
        if col not in cur.columns:
            continue
        cur_key = cur[col].astype("string").to_numpy(dtype=object, na_value=None)
        base_keys = [b[col].astype("string").to_numpy(dtype=object, na_value=None)
                     if col in b.columns else None for b in bases]
        present = [v for v in cur_key if v is not None]
        values, counts = np.unique(np.asarray(present, dtype=object), return_counts=True)
        for value, rows in zip(values.tolist(), counts.tolist()):
            inside_now = cur_key == value
            if rows < MIN_SEGMENT_ROWS or (~inside_now).sum() < MIN_SEGMENT_ROWS:
                continue
            masks = []
            for key in base_keys:
                if key is None:
                    masks.append(None)
                    continue
                m = key == value
                ok = m.sum() >= MIN_SEGMENT_ROWS and (~m).sum() >= MIN_SEGMENT_ROWS
                masks.append(m if ok else None)
            if not any(m is not None for m in masks):
                continue
            rows_before = float(np.median([m.sum() for m in masks if m is not None]))
            # Sampling noise: a small segment moves by chance more than a large one.
            noise = 2.0 * math.sqrt(1.0 / rows + 1.0 / rows_before)
            best: tuple[float, str | None, float | None, float | None] = (0.0, None, None, None)
            for name, c in now_cols.items():
                if name == col:
                    continue
                p_in, p_out = c.profile(inside_now), c.profile(~inside_now)
                ins, outs = [], []
                for cols, m in zip(base_cols, masks):
                    if m is None or name not in cols:
                        continue
                    ins.append(distance(p_in, cols[name].profile(m)))
                    outs.append(distance(p_out, cols[name].profile(~m)))
                inside, elsewhere = _median(ins), _median(outs)
                if inside is None or elsewhere is None:
                    continue
                excess = inside - elsewhere - noise
                if best[1] is None or excess > best[0]:
                    best = (excess, name, inside, elsewhere)
            impact, feature, inside, elsewhere = best
            impact = max(0.0, impact)
            shown = "<masked>" if col in cfg.pii_columns else str(value)
            segment = {col: shown}
            share = float(rows) / len(cur)
            if feature is None:
                text = f"{col}={shown}: nothing comparable"
            elif impact > 0:
                text = (f"{col}={shown} ({int(rows)} rows, {share:.0%}): {feature} moved "
                        f"{_fmt(inside)} inside the segment vs {_fmt(elsewhere)} elsewhere")
            else:
                text = f"{col}={shown} ({int(rows)} rows, {share:.0%}): moved no more than the rest"
            impacts.append(SegmentImpact(segment=segment, impact=float(impact), feature=feature,
                                         inside=inside, elsewhere=elsewhere, rows=int(rows),
                                         share=share, text=text))
    impacts.sort(key=lambda s: (-s.impact, -s.rows, str(s.segment)))
    return impacts


# ---------------------------------------------------------------------------------------------
# 5. Infrastructure
# ---------------------------------------------------------------------------------------------


def _infrastructure(inputs: TriageInputs) -> dict[str, Any]:
    cfg = inputs.config
    ds = cfg.ds
    problems: list[str] = []
    tasks = []
    past: dict[tuple[str, str], list[float]] = {}
    for r in inputs.runs:
        key = (str(r.get("dag_id")), str(r.get("task_id")))
        d = str(r.get("ds"))
        dur = r.get("duration_seconds")
        if d < ds and dur is not None:
            past.setdefault(key, []).append(float(dur))
    for r in sorted((r for r in inputs.runs if str(r.get("ds")) == ds),
                    key=lambda r: (str(r.get("dag_id")), str(r.get("task_id")))):
        key = (str(r.get("dag_id")), str(r.get("task_id")))
        dur = r.get("duration_seconds")
        med = float(np.median(past[key])) if past.get(key) else None
        slow = bool(dur is not None and med is not None and dur > SLOW_TASK_FACTOR * med
                    and dur > SLOW_TASK_MIN_SECONDS)
        entry = {"dag_id": key[0], "task_id": key[1], "state": r.get("state"),
                 "try_number": r.get("try_number"), "duration_seconds": dur,
                 "median_duration_seconds": med, "slow": slow, "error": r.get("error")}
        tasks.append(entry)
        if r.get("state") not in ("success", "skipped"):
            problems.append(f"task {key[0]}.{key[1]} {r.get('state')}"
                            + (f": {r.get('error')}" if r.get("error") else ""))
        elif (r.get("try_number") or 1) > 1:
            problems.append(f"task {key[0]}.{key[1]} needed {r.get('try_number')} tries")
        if slow:
            problems.append(f"task {key[0]}.{key[1]} took {dur:.0f} s, {dur / med:.1f}x its "
                            f"median of {med:.0f} s")
    part = next((p for p in inputs.partitions if str(p.get("ds")) == ds), None)
    freshness = None
    if part is not None:
        freshness = {"status": part.get("status"), "lateness_hours": part.get("lateness_hours"),
                     "rows": part.get("rows"), "message": part.get("message")}
        if part.get("status") not in ("ok",):
            problems.append(f"partition {part.get('status')}: {part.get('message')}")
    else:
        problems.append(f"no partition recorded for {ds}")
    history = sorted((s for s in inputs.history if s.ds < ds), key=lambda s: s.ds)[-RECENT_DAYS:]
    today = next((s for s in inputs.history if s.ds == ds), None)
    rows = today.rows if today else (part or {}).get("rows")
    past_rows = [s.rows for s in history if s.rows]
    median_rows = float(np.median(past_rows)) if past_rows else None
    ratio = (rows / median_rows) if rows is not None and median_rows else None
    if ratio is not None and not 0.5 <= ratio <= 2.0:
        problems.append(f"load: {rows} rows scored, {ratio:.2f}x the median of the previous "
                        f"{len(past_rows)} days ({median_rows:.0f})")
    versions = today.model_versions if today else {}
    prev_versions = history[-1].model_versions if history else {}
    changed = bool(versions and prev_versions and set(versions) != set(prev_versions))
    if changed:
        problems.append(f"model versions changed: {sorted(prev_versions)} -> {sorted(versions)}")
    healthy = not problems
    text = ("Infrastructure healthy: every task succeeded at its usual speed, the partition "
            f"landed on time, {rows} rows were scored ({'n/a' if ratio is None else f'{ratio:.2f}x'} "
            "the usual load)." if healthy else "Infrastructure: " + "; ".join(problems) + ".")
    return {"healthy": healthy, "problems": problems, "tasks": tasks, "freshness": freshness,
            "rows": rows, "rows_median": median_rows, "load_ratio": ratio,
            "model_versions": versions, "model_version_changed": changed, "text": text}


# ---------------------------------------------------------------------------------------------
# The whole checklist
# ---------------------------------------------------------------------------------------------


def triage(inputs: TriageInputs) -> TriageResult:
    """Answer the checklist for `inputs.config.model` on `inputs.config.ds`."""
    if not isinstance(inputs, TriageInputs):
        raise TriageError(f"triage: expected TriageInputs, got {type(inputs).__name__}")
    cfg = inputs.config
    notes: list[str] = []
    frames = [("current", inputs.current), ("reference", inputs.reference)]
    frames += [(f"recent[{i}]", f) for i, f in enumerate(inputs.recent)]
    for label, frame in frames:
        if frame is not None and not isinstance(frame, pd.DataFrame):
            raise TriageError(f"triage inputs for {cfg.model} {cfg.ds}, field '{label}': expected "
                              f"a DataFrame or None, got {type(frame).__name__}")
    if inputs.current is None:
        notes.append(f"No batch for {cfg.ds}: features and segments fall back to stored scores.")
    if inputs.reference is None:
        notes.append("No training set: features are compared with recent days only.")
    missing = [n for n, _ in cfg.features if inputs.current is not None
               and n not in inputs.current.columns]
    if missing:
        notes.append(f"Columns missing from the batch of {cfg.ds}: {', '.join(missing)}.")
    features = _features(inputs)
    onset = _onset(inputs, features)
    nearest, after, dep_text = _nearest_deployment(inputs, onset.onset_ds)
    onset = Onset(onset.kind, onset.onset_ds, onset.primary, onset.series,
                  onset.text + " " + dep_text)
    return TriageResult(
        model=cfg.model, ds=cfg.ds, onset=onset, nearest_deployment=nearest,
        after_deployment=after, predictions=_predictions(inputs), features=features,
        segments=_segments(inputs), infrastructure=_infrastructure(inputs),
        links=dict(inputs.links), notes=notes)


def series_from_rows(rows: Iterable[Any], name_attr: str = "sli") -> dict[str, dict[str, float | None]]:
    """{name: {ds: value}} from store rows with .ds, .value and a name attribute."""
    out: dict[str, dict[str, float | None]] = {}
    for r in rows:
        out.setdefault(getattr(r, name_attr), {})[r.ds] = r.value
    return out
