"""Shadow and canary comparisons: is the candidate model worse than the incumbent it would replace?

Pure: DataFrames and parameters in, a typed `Comparison` out (no I/O, no Airflow, no store).

The test is an always-valid confidence sequence, so the rollout may look at it every day (and
act on the first day it is decisive) without inflating its error rates:

- Each comparable unit gives a per-row *quality gain* q = loss(incumbent) − loss(candidate)
  (positive: the candidate is better), clipped to [−B, B] (B is exact for bounded losses: brier
  and error_rate 1, log_loss log(1/1e-3); regression losses need a bound from the spec).
  *Shadow*: a unit is one prediction id both models scored, with its label (paired).
  *Canary*: the two models served disjoint slices of traffic, so a unit is one row of the
  smaller slice against the mean loss of r rows of the other slice, r = ⌊larger / smaller⌋,
  drawn without replacement from the same label-arrival day and prediction day (within a
  segment value for the segment tests). Units are then independent with mean Δ, the difference
  of the two slices' mean losses.
- Units are ordered by the day their label arrived, then by a fixed hash of the id: the units
  known on one day are a prefix of those known the next day, which is what lets a daily look
  reuse one sequence.
- On the units, mapped to [0, 1], the predictable plug-in empirical-Bernstein confidence
  sequence of Waudby-Smith & Ramdas (2023, JRSS-B, Theorem 2), one-sided at level α per side,
  intersected over time. It holds simultaneously for every number of units (Ville's inequality),
  for any bounded distribution and any sample size: no normal approximation.

Decision per metric with margin m (`candidate.margins`):
- **rollback** when the whole sequence lies below −m (the upper bound < −m): the candidate is
  worse than the incumbent by more than the margin; tested at α / (metrics) overall and at
  α / (metrics × segment values tested) per segment value, so that a candidate within the margin
  everywhere is rolled back with probability at most α;
- **promote** when the whole sequence lies above −m (the lower bound > −m) for every metric, with
  at least `min_labels` units and no segment rolled back: a candidate worse by the margin or more
  is promoted with probability at most α (an intersection-union test needs no correction);
- **hold** otherwise (too few labels, or the sequence still straddles −m).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

DECISIONS = ("promote", "hold", "rollback")
LOG_LOSS_EPS = 1e-3
# Per-row loss of each metric a margin may name, by task. Lower is better for every one.
METRICS = {
    "binary_classification": ("brier", "log_loss", "error_rate"),
    "regression": ("mae", "mse"),
}
BOUNDED = {"brier": 1.0, "error_rate": 1.0, "log_loss": math.log(1 / LOG_LOSS_EPS)}


class CompareError(ValueError):
    """The rows handed to a comparison cannot be compared; the message says which column and why."""


# --------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SequentialTest:
    """One metric's confidence sequence on the mean quality gain Δ (candidate − incumbent)."""

    metric: str
    margin: float
    n: int  # comparable units so far
    delta: float | None  # mean quality gain; > 0: the candidate is better
    lower: float | None  # the sequence's current lower bound on Δ (level alpha_lower)
    upper: float | None  # and its upper bound (level alpha_upper)
    alpha_lower: float
    alpha_upper: float
    bound: float  # per-unit gains were clipped to [-bound, bound]
    loss_incumbent: float | None
    loss_candidate: float | None
    decision: str
    reason: str


@dataclass(frozen=True)
class SegmentTest:
    column: str
    value: str
    tests: tuple[SequentialTest, ...]
    decision: str  # rollback or hold (a segment never promotes on its own)


@dataclass(frozen=True)
class DistributionShift:
    """How far the candidate's predictions sit from the incumbent's on comparable rows."""

    psi: float | None
    ks: float | None
    ks_pvalue: float | None
    mean_incumbent: float | None
    mean_candidate: float | None
    n_incumbent: int
    n_candidate: int


@dataclass(frozen=True)
class OutcomeDiff:
    """A business outcome of the spec, computed for each model on its comparable rows."""

    name: str
    incumbent: float | None
    candidate: float | None
    difference: float | None  # candidate − incumbent
    direction: str  # at_least: higher is better; at_most: lower is better
    n_incumbent: int
    n_candidate: int


@dataclass(frozen=True)
class Comparison:
    mode: str  # shadow (paired) | canary (by slice)
    stage: str  # "shadow" or "5%", "25%", ...
    decision: str
    reasons: tuple[str, ...]
    alpha: float
    min_labels: int
    n_units: int
    n_labelled_candidate: int
    n_labelled_incumbent: int
    metrics: tuple[SequentialTest, ...]
    segments: tuple[SegmentTest, ...] = ()
    distribution: DistributionShift | None = None
    outcomes: tuple[OutcomeDiff, ...] = ()
    traffic: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return _clean(asdict(self))


def _clean(obj):
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        f = float(obj)
        return None if math.isnan(f) or math.isinf(f) else f
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


# --------------------------------------------------------------------------------------------
# The confidence sequence
# --------------------------------------------------------------------------------------------


def eb_sequence(x: np.ndarray, alpha: float, c: float = 0.75) -> tuple[np.ndarray, np.ndarray]:
    """One-sided (lower, upper) bounds on the mean of x ∈ [0, 1] after each observation.

    Each bound holds for all t at once with probability ≥ 1 − alpha (lower and upper each at
    alpha). The predictable plug-in empirical-Bernstein sequence (Waudby-Smith & Ramdas 2023):
        bound_t = Σλᵢxᵢ/Σλᵢ ∓ (log(1/α) + Σ vᵢ ψ(λᵢ)) / Σλᵢ,
        vᵢ = 4 (xᵢ − μ̂ᵢ₋₁)², ψ(λ) = (−log(1 − λ) − λ) / 4,
        λᵢ = min(c, sqrt(2 log(1/α) / (σ̂²ᵢ₋₁ · i · log(1 + i)))),
    with μ̂ and σ̂² the regularised running mean and variance of the earlier observations, then
    intersected over time (the running max of lower bounds, min of upper bounds). c = 3/4, the
    larger of the paper's two suggestions: per-row quality differences are mostly tiny with rare
    large ones (a missed fraud), so the cap, not the variance, limits λ. Works on the last axis,
    so a (simulations × rows) array is many independent sequences at once.
    """
    x = np.asarray(x, dtype="float64")
    if x.shape[-1] == 0:
        empty = np.zeros(x.shape)
        return empty, empty
    if np.nanmin(x) < 0 or np.nanmax(x) > 1:
        raise CompareError("eb_sequence: observations must lie in [0, 1]")
    if not 0 < alpha < 1:
        raise CompareError(f"eb_sequence: alpha={alpha!r} must be in (0, 1)")
    n = x.shape[-1]
    t = np.arange(1, n + 1, dtype="float64")
    mu = (0.5 + np.cumsum(x, axis=-1)) / (t + 1)
    sig2 = (0.25 + np.cumsum((x - mu) ** 2, axis=-1)) / (t + 1)
    pad = [(0, 0)] * (x.ndim - 1) + [(1, 0)]
    mu_prev = np.pad(mu[..., :-1], pad, constant_values=0.5)
    sig2_prev = np.pad(sig2[..., :-1], pad, constant_values=0.25)
    log_a = math.log(1 / alpha)
    lam = np.minimum(np.sqrt(2 * log_a / (sig2_prev * t * np.log1p(t))), c)
    psi = (-np.log1p(-lam) - lam) / 4
    v = 4 * (x - mu_prev) ** 2
    s = np.cumsum(lam, axis=-1)
    center = np.cumsum(lam * x, axis=-1) / s
    width = (log_a + np.cumsum(v * psi, axis=-1)) / s
    lower = np.maximum.accumulate(center - width, axis=-1)
    upper = np.minimum.accumulate(center + width, axis=-1)
    return np.clip(lower, 0, 1), np.clip(upper, 0, 1)


def gain_sequence(q: np.ndarray, bound: float, alpha_lower: float, alpha_upper: float
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Bounds on the mean quality gain of units q ∈ [−bound, bound] (clipped) after each unit."""
    q = np.clip(np.asarray(q, dtype="float64"), -bound, bound)
    x = (q + bound) / (2 * bound)
    lo, hi = eb_sequence(x, alpha_lower)
    if alpha_upper != alpha_lower:
        hi = eb_sequence(x, alpha_upper)[1]
    return lo * 2 * bound - bound, hi * 2 * bound - bound


def verdict(lower: float | None, upper: float | None, n: int, margin: float, min_labels: int
            ) -> tuple[str, str]:
    """The rule of the module docstring for one sequence's current bounds."""
    if n == 0 or lower is None or upper is None:
        return "hold", "no comparable labelled rows yet"
    if upper < -margin:
        return "rollback", (f"worse than the incumbent by more than the margin {margin:g}: "
                            f"the quality gain is at most {upper:.4g} (< −{margin:g})")
    if lower > -margin and n >= min_labels:
        return "promote", (f"not worse than the incumbent by more than {margin:g}: the quality "
                           f"gain is at least {lower:.4g} (> −{margin:g}) on {n:,} labelled units")
    if lower > -margin:
        return "hold", f"not worse so far, but only {n:,} of the {min_labels:,} labelled units required"
    return "hold", (f"undecided: the quality gain lies in [{lower:.4g}, {upper:.4g}], "
                    f"which still contains −{margin:g}")


# --------------------------------------------------------------------------------------------
# Per-row losses
# --------------------------------------------------------------------------------------------


def metric_bound(metric: str, bounds: Mapping[str, float] | None = None) -> float:
    if bounds and metric in bounds:
        return float(bounds[metric])
    if metric in BOUNDED:
        return BOUNDED[metric]
    raise CompareError(f"metric {metric!r} is unbounded per row: give candidate.difference_bounds.{metric}")


def row_loss(metric: str, label: np.ndarray, score: np.ndarray | None, pred: np.ndarray | None
             ) -> np.ndarray:
    """The per-row loss of `metric` (lower is better)."""
    y = np.asarray(label, dtype="float64")
    if metric == "brier":
        return (np.asarray(score, dtype="float64") - y) ** 2
    if metric == "log_loss":
        p = np.clip(np.asarray(score, dtype="float64"), LOG_LOSS_EPS, 1 - LOG_LOSS_EPS)
        return -(y * np.log(p) + (1 - y) * np.log(1 - p))
    if metric == "error_rate":
        return (np.asarray(pred, dtype="float64") != y).astype("float64")
    if metric == "mae":
        return np.abs(np.asarray(pred, dtype="float64") - y)
    if metric == "mse":
        return (np.asarray(pred, dtype="float64") - y) ** 2
    raise CompareError(f"unknown metric {metric!r}; known: {sorted(BOUNDED) + ['mae', 'mse']}")


def _order_key(ids: pd.Series) -> np.ndarray:
    # A fixed hash (pandas' siphash with its constant key): the same id sorts the same way on
    # every run and machine, and the order carries no information about the rows.
    return pd.util.hash_array(ids.astype(str).to_numpy(dtype=object))


# --------------------------------------------------------------------------------------------
# Units
# --------------------------------------------------------------------------------------------


def paired_units(rows: pd.DataFrame, metric: str) -> np.ndarray:
    """Shadow: one unit per labelled id, loss(incumbent) − loss(candidate), in arrival order.

    Columns: id, label, arrived, score_incumbent, score_candidate, pred_incumbent, pred_candidate.
    """
    if not len(rows):
        return np.zeros(0)
    if "_h" not in rows.columns:
        rows = rows.assign(_h=_order_key(rows["id"]))
    rows = rows.sort_values(["arrived", "_h"], kind="mergesort")
    li = row_loss(metric, rows["label"], rows.get("score_incumbent"), rows.get("pred_incumbent"))
    lc = row_loss(metric, rows["label"], rows.get("score_candidate"), rows.get("pred_candidate"))
    return li - lc


def sliced_units(cand: pd.DataFrame, inc: pd.DataFrame, metric: str,
                 by: Sequence[str] = ("arrived", "ds")) -> np.ndarray:
    """Canary: units from two disjoint slices (columns id, label, arrived, ds, score, pred).

    Within each (arrival day, prediction day) group, each row of the smaller slice is set against
    the mean loss of r = ⌊larger / smaller⌋ rows of the larger one, both in hash order; rows
    left over are not used. Units come out in arrival order.
    """
    by = list(by)
    if not len(cand) or not len(inc):
        return np.zeros(0)
    cand = cand.assign(_loss=row_loss(metric, cand["label"], cand.get("score"), cand.get("pred")))
    inc = inc.assign(_loss=row_loss(metric, inc["label"], inc.get("score"), inc.get("pred")))
    if "_h" not in cand.columns:
        cand = cand.assign(_h=_order_key(cand["id"]))
    if "_h" not in inc.columns:
        inc = inc.assign(_h=_order_key(inc["id"]))
    inc_groups = {k: g for k, g in inc.groupby(by, sort=False)}
    out: list[tuple[tuple, np.ndarray]] = []
    for key, c in cand.groupby(by, sort=True):
        i = inc_groups.get(key)
        if i is None:
            continue
        lc = c.sort_values("_h", kind="mergesort")["_loss"].to_numpy()
        li = i.sort_values("_h", kind="mergesort")["_loss"].to_numpy()
        if len(lc) <= len(li):
            r = len(li) // len(lc)
            q = li[: len(lc) * r].reshape(len(lc), r).mean(axis=1) - lc
        else:
            r = len(lc) // len(li)
            q = li - lc[: len(li) * r].reshape(len(li), r).mean(axis=1)
        out.append((key if isinstance(key, tuple) else (key,), q))
    if not out:
        return np.zeros(0)
    return np.concatenate([q for _, q in out])


# --------------------------------------------------------------------------------------------
# Distribution and business outcomes
# --------------------------------------------------------------------------------------------


def psi(reference: np.ndarray, current: np.ndarray, bins: int = 10) -> float | None:
    """Population stability index of `current` against `reference` (quantile bins of the
    reference; shares floored at 1e-4 so an empty bin does not give infinity)."""
    ref = np.asarray(reference, dtype="float64")
    cur = np.asarray(current, dtype="float64")
    ref, cur = ref[np.isfinite(ref)], cur[np.isfinite(cur)]
    if len(ref) < bins or len(cur) == 0:
        return None
    edges = np.unique(np.quantile(ref, np.linspace(0, 1, bins + 1)[1:-1]))
    r = np.bincount(np.searchsorted(edges, ref, side="right"), minlength=len(edges) + 1) / len(ref)
    c = np.bincount(np.searchsorted(edges, cur, side="right"), minlength=len(edges) + 1) / len(cur)
    r, c = np.maximum(r, 1e-4), np.maximum(c, 1e-4)
    return float(np.sum((c - r) * np.log(c / r)))


def distribution_shift(incumbent: np.ndarray, candidate: np.ndarray) -> DistributionShift:
    from scipy.stats import ks_2samp

    inc = np.asarray(incumbent, dtype="float64")
    cand = np.asarray(candidate, dtype="float64")
    inc, cand = inc[np.isfinite(inc)], cand[np.isfinite(cand)]
    ks = pv = None
    if len(inc) and len(cand):
        res = ks_2samp(cand, inc)
        ks, pv = float(res.statistic), float(res.pvalue)
    return DistributionShift(
        psi=psi(inc, cand), ks=ks, ks_pvalue=pv,
        mean_incumbent=float(inc.mean()) if len(inc) else None,
        mean_candidate=float(cand.mean()) if len(cand) else None,
        n_incumbent=int(len(inc)), n_candidate=int(len(cand)))


def outcome_diffs(inc_rows: pd.DataFrame, cand_rows: pd.DataFrame, outcomes: Sequence[Any],
                  threshold: float) -> list[OutcomeDiff]:
    """Each business outcome on each model's labelled rows (columns label, score, pred and the
    outcomes' value columns)."""
    from watchkeeper import performance as perf

    if not outcomes:
        return []

    def values(rows):
        if not len(rows):
            return {}
        res = perf.business_outcomes(rows, outcomes, label_col="label", prediction_col="pred"
                                     if "pred" in rows.columns else None,
                                     score_col="score" if "score" in rows.columns else None,
                                     threshold=threshold)
        return {r.name: r.value for r in res}

    vi, vc = values(inc_rows), values(cand_rows)
    out = []
    for o in outcomes:
        d = o.model_dump() if hasattr(o, "model_dump") else dict(o)
        a, b = vi.get(d["name"]), vc.get(d["name"])
        out.append(OutcomeDiff(name=d["name"], incumbent=a, candidate=b,
                               difference=None if a is None or b is None else b - a,
                               direction=d.get("direction", "at_least"),
                               n_incumbent=len(inc_rows), n_candidate=len(cand_rows)))
    return out


# --------------------------------------------------------------------------------------------
# The comparison
# --------------------------------------------------------------------------------------------


def _test(metric: str, q: np.ndarray, margin: float, bound: float, a_lo: float, a_hi: float,
          min_labels: int, li: float | None, lc: float | None) -> SequentialTest:
    n = int(len(q))
    lo = hi = delta = None
    if n:
        lo_s, hi_s = gain_sequence(q, bound, a_lo, a_hi)
        lo, hi = float(lo_s[-1]), float(hi_s[-1])
        delta = float(np.clip(q, -bound, bound).mean())
    decision, reason = verdict(lo, hi, n, margin, min_labels)
    return SequentialTest(metric=metric, margin=float(margin), n=n, delta=delta, lower=lo, upper=hi,
                          alpha_lower=a_lo, alpha_upper=a_hi, bound=bound, loss_incumbent=li,
                          loss_candidate=lc, decision=decision, reason=reason)


def _combine(metrics: Sequence[SequentialTest], segments: Sequence[SegmentTest]
             ) -> tuple[str, list[str]]:
    reasons = []
    bad = [t for t in metrics if t.decision == "rollback"]
    bad_segments = [s for s in segments if s.decision == "rollback"]
    if bad or bad_segments:
        reasons += [f"{t.metric}: {t.reason}" for t in bad]
        for s in bad_segments:
            for t in s.tests:
                if t.decision == "rollback":
                    reasons.append(f"{t.metric} in {s.column}={s.value}: {t.reason}")
        return "rollback", reasons
    if metrics and all(t.decision == "promote" for t in metrics):
        return "promote", [f"{t.metric}: {t.reason}" for t in metrics]
    return "hold", [f"{t.metric}: {t.reason}" for t in metrics if t.decision != "promote"] or [
        "no metric to compare"]


def _mean(x) -> float | None:
    x = np.asarray(x, dtype="float64")
    return float(x.mean()) if len(x) else None


def compare_shadow(rows: pd.DataFrame, *, margins: Mapping[str, float], alpha: float,
                   min_labels: int, bounds: Mapping[str, float] | None = None,
                   segments: Sequence[str] = (), min_segment_labels: int = 200,
                   scores: pd.DataFrame | None = None, outcomes: Sequence[Any] = (),
                   threshold: float = 0.5, stage: str = "shadow") -> Comparison:
    """Paired comparison on the same ids.

    rows: labelled ids with id, label, arrived, ds, score_/pred_ incumbent and candidate, the
    segment columns and the outcomes' value columns. scores: every scored id of the stage
    (labelled or not) with score_incumbent and score_candidate, for the distribution shift.
    """
    _require(rows, ["id", "label", "arrived"], "shadow rows")
    rows = rows.assign(_h=_order_key(rows["id"])).sort_values(["arrived", "_h"], kind="mergesort")
    m = len(margins)
    tests = []
    for metric, margin in margins.items():
        q = paired_units(rows, metric)
        b = metric_bound(metric, bounds)
        li = _mean(row_loss(metric, rows["label"], rows.get("score_incumbent"), rows.get("pred_incumbent")))
        lc = _mean(row_loss(metric, rows["label"], rows.get("score_candidate"), rows.get("pred_candidate")))
        tests.append(_test(metric, q, margin, b, alpha, alpha / m, min_labels, li, lc))
    seg_groups = [(col, str(v), g) for col in segments if col in rows.columns
                  for v, g in rows.groupby(col, sort=True) if len(g) >= min_segment_labels]
    k = max(1, len(seg_groups)) * m
    seg_tests = []
    for col, v, g in seg_groups:
        ts = []
        for metric, margin in margins.items():
            q = paired_units(g, metric)
            ts.append(_test(metric, q, margin, metric_bound(metric, bounds), alpha / k, alpha / k,
                            min_segment_labels, None, None))
        seg_tests.append(SegmentTest(col, v, tuple(ts), "rollback" if any(
            t.decision == "rollback" for t in ts) else "hold"))
    decision, reasons = _combine(tests, seg_tests)
    dist = None
    src = scores if scores is not None else rows
    if "score_incumbent" in src.columns and "score_candidate" in src.columns:
        dist = distribution_shift(src["score_incumbent"], src["score_candidate"])
    inc_rows = _side(rows, "incumbent")
    cand_rows = _side(rows, "candidate")
    return Comparison(
        mode="shadow", stage=stage, decision=decision, reasons=tuple(reasons), alpha=alpha,
        min_labels=min_labels, n_units=tests[0].n if tests else 0,
        n_labelled_candidate=len(rows), n_labelled_incumbent=len(rows), metrics=tuple(tests),
        segments=tuple(seg_tests), distribution=dist,
        outcomes=tuple(outcome_diffs(inc_rows, cand_rows, outcomes, threshold)),
        traffic={"candidate_share": 0.0, "note": "shadow: the candidate scores every id, serves none"})


def compare_canary(cand: pd.DataFrame, inc: pd.DataFrame, *, margins: Mapping[str, float],
                   alpha: float, min_labels: int, bounds: Mapping[str, float] | None = None,
                   segments: Sequence[str] = (), min_segment_labels: int = 200,
                   scores: tuple[pd.DataFrame, pd.DataFrame] | None = None,
                   outcomes: Sequence[Any] = (), threshold: float = 0.5, stage: str = "canary",
                   traffic: Mapping[str, Any] | None = None) -> Comparison:
    """Two-sample comparison of the slices each model served (labelled rows: id, label, arrived,
    ds, score, pred, segment and value columns). scores: every served row of each slice, for the
    distribution shift."""
    for name, f in (("candidate rows", cand), ("incumbent rows", inc)):
        _require(f, ["id", "label", "arrived", "ds"], name)
    cand = cand.assign(_h=_order_key(cand["id"]))
    inc = inc.assign(_h=_order_key(inc["id"]))
    m = len(margins)
    tests = []
    for metric, margin in margins.items():
        q = sliced_units(cand, inc, metric)
        li = _mean(row_loss(metric, inc["label"], inc.get("score"), inc.get("pred")))
        lc = _mean(row_loss(metric, cand["label"], cand.get("score"), cand.get("pred")))
        tests.append(_test(metric, q, margin, metric_bound(metric, bounds), alpha, alpha / m,
                           min_labels, li, lc))
    seg_groups = []
    for col in segments:
        if col not in cand.columns or col not in inc.columns:
            continue
        inc_by = {str(v): g for v, g in inc.groupby(col, sort=True)}
        for v, g in cand.groupby(col, sort=True):
            other = inc_by.get(str(v))
            if other is not None and min(len(g), len(other)) >= min_segment_labels:
                seg_groups.append((col, str(v), g, other))
    k = max(1, len(seg_groups)) * m
    seg_tests = []
    for col, v, g, other in seg_groups:
        ts = [_test(metric, sliced_units(g, other, metric), margin, metric_bound(metric, bounds),
                    alpha / k, alpha / k, min_segment_labels, None, None)
              for metric, margin in margins.items()]
        seg_tests.append(SegmentTest(col, v, tuple(ts), "rollback" if any(
            t.decision == "rollback" for t in ts) else "hold"))
    decision, reasons = _combine(tests, seg_tests)
    sc, si = scores if scores is not None else (cand, inc)
    dist = distribution_shift(si["score"], sc["score"]) if "score" in sc.columns and "score" in si.columns else None
    return Comparison(
        mode="canary", stage=stage, decision=decision, reasons=tuple(reasons), alpha=alpha,
        min_labels=min_labels, n_units=tests[0].n if tests else 0,
        n_labelled_candidate=len(cand), n_labelled_incumbent=len(inc), metrics=tuple(tests),
        segments=tuple(seg_tests), distribution=dist,
        outcomes=tuple(outcome_diffs(inc, cand, outcomes, threshold)), traffic=dict(traffic or {}))


def _side(rows: pd.DataFrame, who: str) -> pd.DataFrame:
    """The paired rows as one model saw them (score, pred), for the business outcomes."""
    out = rows.drop(columns=[c for c in rows.columns if c.endswith(("_incumbent", "_candidate"))])
    for c in ("score", "pred"):
        if f"{c}_{who}" in rows.columns:
            out[c] = rows[f"{c}_{who}"].to_numpy()
    return out


def _require(frame: pd.DataFrame, cols: Sequence[str], what: str) -> None:
    if not isinstance(frame, pd.DataFrame):
        raise CompareError(f"{what}: expected a DataFrame, got {type(frame).__name__}")
    missing = [c for c in cols if c not in frame.columns]
    if missing:
        raise CompareError(f"{what}: column(s) {', '.join(missing)} missing "
                           f"(have: {', '.join(map(str, frame.columns))})")
