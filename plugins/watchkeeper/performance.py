"""Model quality from joined labels, and estimates of it before the labels arrive.

Pure module: arrays / DataFrames and plain values in, dataclasses out (``to_dict()`` gives JSON-ready
dicts). No Airflow, no database, no file I/O.

What is here
============

* Realized quality on labelled rows: ``classification_metrics`` (precision, recall, f1, accuracy,
  roc_auc, pr_auc, ece), ``bucket_metrics`` (the same within score deciles), ``calibration``
  (expected calibration error and the reliability table), ``regression_metrics`` (mae, rmse, bias,
  abs_error_p50/p90/p99), ``ranking_metrics`` (map, ndcg_at_k per query group); ``evaluate`` and
  ``evaluate_by_day`` pick the right one for a model's task. Each value equals scikit-learn's on the
  same rows, or the textbook formula where scikit-learn has none (bias, error quantiles, ECE).
* Before labels: ``reference_calibration`` / ``fit_calibrator`` (isotonic regression of the
  reference's labels on its scores, or raw scores with the reason), ``cbpe_estimate`` (NannyML's
  confidence-based performance estimation: the expected confusion matrix and the expected ROC
  curve from calibrated probabilities), ``estimate_performance`` (the same, or an explicit "not
  estimated" for regression and ranking), ``compare_estimate`` and ``concept_drift_check``
  (realized quality WORSE than the estimate beyond a band learned robustly, with median and MAD,
  over the first mature days: suspected concept drift; ``robust_band``, ``difference_floor``).
* ``sudden_change``: a metric leaving its own trailing 14-day band (mean +- 3 sd of mature days).
* ``business_outcomes``: declared aggregates over the joined rows (share of fraudulent value caught,
  share of deliveries late by more than 10 minutes) with a threshold and direction.

Conventions (choices, stated once)
==================================

* A binary prediction is positive when ``score >= threshold``, or, when the model's own decision
  is given (``decision``: the spec's ``prediction.label``, 0/1), when that decision is 1: the
  threshold-dependent metrics (accuracy, precision, recall, f1) then describe what was served.
  roc_auc, pr_auc and ece always use the score.
* Undefined metrics are None with a note, never an exception and never a made-up 0: precision
  with no predicted positive, recall with no actual positive, f1 when 2TP+FP+FN = 0, roc_auc with
  one class only, pr_auc with no positive, everything on zero rows. (scikit-learn would warn and
  return 0 for some of these; a 0 would read as "the model is useless" when nothing was measured.)
* Rows whose label or score is missing (NaN) are left out and counted (``counts['excluded']``),
  with a note. A label outside {0, 1} for a binary metric is a caller error (``MetricInputError``):
  labels are validated before they get here.
* bias = mean(prediction - actual): positive means the model over-predicts.
* Quantiles (error quantiles, lags) use numpy's default linear interpolation.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any, Iterable, Literal, Mapping, Sequence

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, field_validator, model_validator

__all__ = [
    "Aggregate",
    "BucketMetrics",
    "CalibrationResult",
    "CalibrationChoice",
    "Calibrator",
    "ConceptDriftFinding",
    "LearningDay",
    "MetricInputError",
    "MetricSet",
    "MetricsReport",
    "OutcomeResult",
    "OutcomeSpec",
    "OutcomeSpecError",
    "PerformanceEstimate",
    "RobustBand",
    "SuddenChangeFlag",
    "bucket_metrics",
    "business_outcomes",
    "calibration",
    "cbpe_estimate",
    "classification_metrics",
    "compare_estimate",
    "concept_drift_check",
    "difference_floor",
    "estimate_performance",
    "evaluate",
    "evaluate_by_day",
    "expected_roc_auc",
    "fit_calibrator",
    "normalize_task",
    "ranking_metrics",
    "reference_calibration",
    "regression_metrics",
    "robust_band",
    "sudden_change",
]

BINARY_METRICS = ("precision", "recall", "f1", "accuracy", "roc_auc", "pr_auc", "ece")
REGRESSION_METRICS = ("mae", "rmse", "bias", "abs_error_p50", "abs_error_p90", "abs_error_p99")
RANKING_METRICS = ("map", "ndcg_at_k")
ESTIMATED_METRICS = ("accuracy", "precision", "recall", "f1", "roc_auc")

_TASKS = {
    "binary_classification": "binary_classification",
    "binary": "binary_classification",
    "classification": "binary_classification",
    "regression": "regression",
    "ranking": "ranking",
}


class MetricInputError(ValueError):
    """The caller passed unusable inputs (lengths differ, a binary label that is not 0/1, a score
    outside [0, 1] where a probability is needed, an unknown task or column). Names the argument,
    the position and the reason."""


class OutcomeSpecError(ValueError):
    """A business-outcome declaration cannot be read (bad expression, missing field)."""


def normalize_task(task: str) -> str:
    """The spec's task names (binary_classification, regression, ranking); 'binary' accepted."""
    try:
        return _TASKS[str(task).strip().lower()]
    except KeyError:
        raise MetricInputError(
            f"task={task!r}: expected one of binary_classification, regression, ranking"
        ) from None


def _plain(v: Any) -> Any:
    """numpy / pandas values to JSON-ready Python values (NaN and inf -> None)."""
    if v is None:
        return None
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        return float(v) if math.isfinite(v) else None
    if isinstance(v, pd.Timestamp):
        return v.isoformat()
    if isinstance(v, Mapping):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    return v


def _f(v: Any) -> float | None:
    return None if v is None or not math.isfinite(float(v)) else float(v)


# ---------------------------------------------------------------------------------------------
# result types


@dataclass
class MetricSet:
    """Metric values on one set of rows (all rows, one segment, or one score bucket)."""

    task: str
    n: int
    values: dict[str, float | None]
    counts: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    segment: dict[str, Any] | None = None  # {"column": c, "value": v} or bucket bounds

    def get(self, name: str) -> float | None:
        return self.values.get(name)

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "n": int(self.n),
            "values": _plain(self.values),
            "counts": _plain(self.counts),
            "notes": list(self.notes),
            "segment": _plain(self.segment),
        }


@dataclass
class MetricsReport:
    """Metrics on all rows, and per segment value when segments were given."""

    task: str
    overall: MetricSet
    segments: list[MetricSet] = field(default_factory=list)

    def segment(self, column: str, value: Any) -> MetricSet | None:
        for s in self.segments:
            if s.segment and s.segment.get("column") == column and s.segment.get("value") == value:
                return s
        return None

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "overall": self.overall.to_dict(),
            "segments": [s.to_dict() for s in self.segments],
        }


# ---------------------------------------------------------------------------------------------
# input handling


def _array(values: Any, name: str) -> np.ndarray:
    if isinstance(values, pd.DataFrame):
        raise MetricInputError(f"{name}: expected one column of values, got a DataFrame")
    try:
        arr = np.asarray(pd.Series(values).to_numpy(dtype="float64", na_value=np.nan), dtype="float64")
    except (TypeError, ValueError) as exc:
        s = pd.Series(values)
        bad = pd.to_numeric(s, errors="coerce").isna() & s.notna()
        pos = int(np.flatnonzero(bad.to_numpy())[0]) if bad.any() else 0
        raise MetricInputError(
            f"{name}: values must be numbers; position {pos}: {s.iloc[pos]!r} ({exc})"
        ) from None
    if arr.ndim != 1:
        raise MetricInputError(f"{name}: expected a 1-d sequence, got shape {arr.shape}")
    return arr


def _pair(y_true: Any, other: Any, names: tuple[str, str]) -> tuple[np.ndarray, np.ndarray, int]:
    """Two aligned float arrays with rows missing a value removed, and how many were removed."""
    y = _array(y_true, names[0])
    o = _array(other, names[1])
    if len(y) != len(o):
        raise MetricInputError(f"{names[0]} has {len(y)} values but {names[1]} has {len(o)}")
    ok = np.isfinite(y) & np.isfinite(o)
    return y[ok], o[ok], int(len(y) - ok.sum())


def _check_binary(y: np.ndarray, name: str = "y_true") -> None:
    bad = (y != 0) & (y != 1)
    if bad.any():
        pos = int(np.flatnonzero(bad)[0])
        raise MetricInputError(f"{name}: binary labels must be 0 or 1; position {pos} holds {float(y[pos])!r}")


def _check_probability(s: np.ndarray, name: str) -> None:
    bad = (s < 0) | (s > 1)
    if bad.any():
        pos = int(np.flatnonzero(bad)[0])
        raise MetricInputError(
            f"{name}: a probability in [0, 1] is needed here; position {pos} holds {float(s[pos])!r}"
        )


def _segment_masks(segments: pd.DataFrame | None, n: int, n_all: int, keep: np.ndarray | None):
    """(column, value, mask over the kept rows) for every value of every segment column."""
    if segments is None:
        return
    if isinstance(segments, pd.Series):
        segments = segments.to_frame()
    if not isinstance(segments, pd.DataFrame):
        raise MetricInputError(f"segments: expected a DataFrame of segment columns, got {type(segments).__name__}")
    if len(segments) != n_all:
        raise MetricInputError(f"segments has {len(segments)} rows but the metric inputs have {n_all}")
    seg = segments.reset_index(drop=True)
    if keep is not None:
        seg = seg[keep].reset_index(drop=True)
    for col in seg.columns:
        values = seg[col].astype("object").where(seg[col].notna(), "(missing)")
        for v in sorted(pd.unique(values), key=lambda x: str(x)):
            yield str(col), _plain(v), (values == v).to_numpy()


def _keep_mask(*arrays: Any) -> np.ndarray:
    arrs = [np.asarray(pd.Series(a).to_numpy(dtype="float64", na_value=np.nan)) for a in arrays]
    ok = np.ones(len(arrs[0]), dtype=bool)
    for a in arrs:
        ok &= np.isfinite(a)
    return ok


# ---------------------------------------------------------------------------------------------
# binary classification


def roc_auc(y: np.ndarray, s: np.ndarray) -> float:
    """ROC AUC as the Mann-Whitney statistic with tied scores counted half: the same number as
    sklearn's roc_auc_score (trapezoids over distinct thresholds), without its per-call overhead,
    which dominates when a day is split into many segments and buckets."""
    pos = y == 1
    n_pos = int(pos.sum())
    n_neg = len(y) - n_pos
    ranks = _average_ranks(s)
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _average_ranks(s: np.ndarray) -> np.ndarray:
    """1-based ranks, ties sharing their mean rank (scipy's rankdata 'average', without importing scipy)."""
    order = np.argsort(s, kind="mergesort")
    s_sorted = s[order]
    starts = np.r_[0, np.flatnonzero(np.diff(s_sorted)) + 1]
    ends = np.r_[starts[1:], len(s)]
    mean_rank = (starts + ends + 1) / 2.0
    ranks = np.empty(len(s), dtype="float64")
    ranks[order] = np.repeat(mean_rank, ends - starts)
    return ranks


def average_precision(y: np.ndarray, s: np.ndarray) -> float:
    """Average precision, sum over distinct score thresholds of (R_k - R_k-1) * P_k: the same
    number as sklearn's average_precision_score (no interpolation)."""
    order = np.argsort(-s, kind="mergesort")
    s_sorted, y_sorted = s[order], y[order]
    last_of_tie = np.r_[np.flatnonzero(np.diff(s_sorted)), len(s_sorted) - 1]
    tps = np.cumsum(y_sorted)[last_of_tie]
    precision = tps / (last_of_tie + 1)
    recall = tps / tps[-1]
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def _binary_set(y: np.ndarray, s: np.ndarray, threshold: float, excluded: int = 0,
                decision: np.ndarray | None = None) -> MetricSet:
    n = len(y)
    notes: list[str] = []
    if excluded:
        notes.append(f"{excluded} row(s) without a label or score left out")
    pred = s >= threshold if decision is None else decision == 1
    pos = y == 1
    tp = int(np.sum(pred & pos))
    fp = int(np.sum(pred & ~pos))
    fn = int(np.sum(~pred & pos))
    tn = int(np.sum(~pred & ~pos))
    v: dict[str, float | None] = {}
    if n == 0:
        notes.append("no rows: every metric undefined")
    v["accuracy"] = (tp + tn) / n if n else None
    v["precision"] = tp / (tp + fp) if tp + fp else None
    if n and tp + fp == 0:
        notes.append(f"precision undefined: no score >= threshold {threshold}" if decision is None
                     else "precision undefined: no positive decision")
    v["recall"] = tp / (tp + fn) if tp + fn else None
    if n and tp + fn == 0:
        notes.append("recall undefined: no positive label")
    v["f1"] = 2 * tp / (2 * tp + fp + fn) if (2 * tp + fp + fn) else None
    if n and v["f1"] is None:
        notes.append("f1 undefined: no positive label and no positive prediction")
    both = n > 0 and 0 < int(pos.sum()) < n
    v["roc_auc"] = roc_auc(y, s) if both else None
    if n and not both:
        notes.append("roc_auc undefined: only one class among the labels")
    v["pr_auc"] = average_precision(y, s) if n and pos.any() else None
    if n and not pos.any():
        notes.append("pr_auc undefined: no positive label")
    if n and ((s < 0) | (s > 1)).any():
        v["ece"] = None
        notes.append("ece undefined: scores are not probabilities in [0, 1]")
    else:
        v["ece"] = _ece(y, s, 10) if n else None
    v["positive_rate"] = float(pos.mean()) if n else None
    v["predicted_positive_rate"] = float(pred.mean()) if n else None
    v["mean_score"] = float(s.mean()) if n else None
    counts = {
        "n": n,
        "positives": int(pos.sum()),
        "negatives": int(n - pos.sum()),
        "tp": tp,
        "fp": fp,
        "tn": tn,
        "fn": fn,
        "correct": tp + tn,
        "excluded": int(excluded),
    }
    return MetricSet("binary_classification", n, v, counts, notes)


def classification_metrics(
    y_true: Any,
    score: Any,
    threshold: float = 0.5,
    *,
    segments: pd.DataFrame | None = None,
    decision: Any = None,
) -> MetricsReport:
    """Binary metrics on all rows and per value of each segment column.

    ``segments``: a DataFrame aligned row by row with ``y_true`` (e.g. ``joined[["country"]]``).
    ``decision``: the model's own 0/1 decisions, aligned likewise; when given they, not
    ``score >= threshold``, are the predictions (rows without one are left out).
    ``counts['correct']`` / ``counts['n']`` is the ratio SLI "correct predictions".
    """
    y_all = _array(y_true, "y_true")
    s_all = _array(score, "score")
    if len(y_all) != len(s_all):
        raise MetricInputError(f"y_true has {len(y_all)} values but score has {len(s_all)}")
    keep = np.isfinite(y_all) & np.isfinite(s_all)
    d_all = None
    if decision is not None:
        d_all = _array(decision, "decision (prediction.label)")
        if len(d_all) != len(y_all):
            raise MetricInputError(f"y_true has {len(y_all)} values but decision has {len(d_all)}")
        keep &= np.isfinite(d_all)
    y, s = y_all[keep], s_all[keep]
    d = None if d_all is None else d_all[keep]
    _check_binary(y)
    if d is not None:
        _check_binary(d, "decision (prediction.label)")
    overall = _binary_set(y, s, threshold, int((~keep).sum()), d)
    segs = []
    for col, value, m in _segment_masks(segments, len(y), len(y_all), keep):
        ms = _binary_set(y[m], s[m], threshold, decision=None if d is None else d[m])
        ms.segment = {"column": col, "value": value}
        segs.append(ms)
    return MetricsReport("binary_classification", overall, segs)


@dataclass
class BucketMetrics:
    """Binary metrics within score buckets (deciles by default)."""

    edges: list[float]
    buckets: list[MetricSet]
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"edges": _plain(self.edges), "buckets": [b.to_dict() for b in self.buckets], "notes": self.notes}


def bucket_metrics(
    y_true: Any,
    score: Any,
    threshold: float = 0.5,
    *,
    bins: int = 10,
    edges: Sequence[float] | None = None,
) -> BucketMetrics:
    """Binary metrics within score buckets.

    Without ``edges`` the buckets are quantiles of these scores (``pandas.qcut``, deciles for
    bins=10; tied edges merge, with a note). With ``edges`` (e.g. the reference period's deciles)
    scores below the first or above the last edge fall into the outer buckets. A bucket holds
    scores in (low, high], the first one includes its low edge.
    """
    y, s, excluded = _pair(y_true, score, ("y_true", "score"))
    _check_binary(y)
    notes = [f"{excluded} row(s) without a label or score left out"] if excluded else []
    if len(s) == 0:
        return BucketMetrics([], [], notes + ["no rows"])
    if edges is None:
        _, cut = pd.qcut(s, q=bins, retbins=True, duplicates="drop")
        cut = [float(c) for c in cut]
        if len(cut) - 1 < bins:
            notes.append(f"{bins} quantile buckets asked, {len(cut) - 1} distinct (tied scores)")
    else:
        cut = [float(c) for c in edges]
        if len(cut) < 2 or any(b <= a for a, b in zip(cut, cut[1:])):
            raise MetricInputError(f"edges={list(edges)!r}: need at least two strictly increasing values")
    inner = np.array(cut[1:-1])
    idx = np.searchsorted(inner, s, side="left") if len(inner) else np.zeros(len(s), dtype=int)
    out = []
    for b in range(len(cut) - 1):
        m = idx == b
        ms = _binary_set(y[m], s[m], threshold)
        ms.segment = {"bucket": b, "low": cut[b], "high": cut[b + 1]}
        out.append(ms)
    return BucketMetrics(cut, out, notes)


# ---------------------------------------------------------------------------------------------
# calibration


def _calibration_bins(y: np.ndarray, s: np.ndarray, bins: int):
    edges = np.linspace(0.0, 1.0, bins + 1)
    # Same binning as sklearn.calibration.calibration_curve(strategy="uniform").
    idx = np.searchsorted(edges[1:-1], s)
    n_b = np.bincount(idx, minlength=bins)
    s_b = np.bincount(idx, weights=s, minlength=bins)
    y_b = np.bincount(idx, weights=y, minlength=bins)
    return edges, n_b, s_b, y_b


def _ece(y: np.ndarray, s: np.ndarray, bins: int) -> float | None:
    if len(y) == 0:
        return None
    _, n_b, s_b, y_b = _calibration_bins(y, s, bins)
    nz = n_b > 0
    return float(np.sum(np.abs(y_b[nz] - s_b[nz])) / len(y))


@dataclass
class CalibrationResult:
    """Expected calibration error and the reliability table; unpacks as ``ece, table``."""

    ece: float | None
    table: list[dict[str, Any]]
    n: int
    bins: int
    notes: list[str] = field(default_factory=list)

    def __iter__(self):
        return iter((self.ece, self.table))

    def to_dict(self) -> dict[str, Any]:
        return {"ece": self.ece, "table": _plain(self.table), "n": self.n, "bins": self.bins, "notes": self.notes}


def calibration(y_true: Any, score: Any, bins: int = 10) -> CalibrationResult:
    """ECE = sum over equal-width bins of (n_b / N) * |positive rate_b - mean score_b|.

    The table has one row per bin (empty bins too, with None): bin, low, high, n, mean_score,
    positive_rate, gap (= positive_rate - mean_score; positive means the model under-estimates).
    Non-empty rows match ``sklearn.calibration.calibration_curve(strategy="uniform")``.
    """
    if int(bins) < 1:
        raise MetricInputError(f"bins={bins!r}: expected an integer >= 1")
    y, s, excluded = _pair(y_true, score, ("y_true", "score"))
    _check_binary(y)
    _check_probability(s, "score")
    notes = [f"{excluded} row(s) without a label or score left out"] if excluded else []
    edges, n_b, s_b, y_b = _calibration_bins(y, s, int(bins))
    table = []
    for b in range(int(bins)):
        n = int(n_b[b])
        ms = s_b[b] / n if n else None
        pr = y_b[b] / n if n else None
        table.append(
            {
                "bin": b,
                "low": float(edges[b]),
                "high": float(edges[b + 1]),
                "n": n,
                "mean_score": _f(ms) if n else None,
                "positive_rate": _f(pr) if n else None,
                "gap": _f(pr - ms) if n else None,
            }
        )
    if len(y) == 0:
        notes.append("no rows: ece undefined")
    return CalibrationResult(_ece(y, s, int(bins)), table, int(len(y)), int(bins), notes)


# ---------------------------------------------------------------------------------------------
# regression


def _regression_set(y: np.ndarray, p: np.ndarray, excluded: int = 0) -> MetricSet:
    n = len(y)
    notes = [f"{excluded} row(s) without an actual or predicted value left out"] if excluded else []
    v: dict[str, float | None]
    if n == 0:
        notes.append("no rows: every metric undefined")
        v = {k: None for k in REGRESSION_METRICS}
    else:
        e = p - y
        a = np.abs(e)
        v = {
            "mae": float(a.mean()),
            "rmse": float(np.sqrt(np.mean(e**2))),
            "bias": float(e.mean()),
            "abs_error_p50": float(np.quantile(a, 0.5)),
            "abs_error_p90": float(np.quantile(a, 0.9)),
            "abs_error_p99": float(np.quantile(a, 0.99)),
        }
    v["mean_actual"] = float(y.mean()) if n else None
    v["mean_prediction"] = float(p.mean()) if n else None
    return MetricSet("regression", n, v, {"n": n, "excluded": int(excluded)}, notes)


def regression_metrics(y_true: Any, y_pred: Any, *, segments: pd.DataFrame | None = None) -> MetricsReport:
    """mae, rmse, bias (mean of prediction - actual), abs_error_p50/p90/p99; overall and per segment."""
    y_all = _array(y_true, "y_true")
    p_all = _array(y_pred, "y_pred")
    if len(y_all) != len(p_all):
        raise MetricInputError(f"y_true has {len(y_all)} values but y_pred has {len(p_all)}")
    keep = np.isfinite(y_all) & np.isfinite(p_all)
    y, p = y_all[keep], p_all[keep]
    overall = _regression_set(y, p, int((~keep).sum()))
    segs = []
    for col, value, m in _segment_masks(segments, len(y), len(y_all), keep):
        ms = _regression_set(y[m], p[m])
        ms.segment = {"column": col, "value": value}
        segs.append(ms)
    return MetricsReport("regression", overall, segs)


# ---------------------------------------------------------------------------------------------
# ranking


def _ranking_set(df: pd.DataFrame, query_col: str, rel_col: str, score_col: str, k: int) -> MetricSet:
    from sklearn.metrics import ndcg_score

    notes: list[str] = []
    aps: list[float] = []
    ndcgs: list[float] = []
    no_relevant = 0
    single = 0
    for _, g in df.groupby(query_col, sort=False):
        rel = g[rel_col].to_numpy(dtype="float64")
        sc = g[score_col].to_numpy(dtype="float64")
        if not (rel > 0).any():
            no_relevant += 1
            continue
        if len(g) == 1:
            # sklearn's ndcg_score refuses one document; the textbook value is 1 (DCG = IDCG).
            single += 1
            aps.append(1.0)
            ndcgs.append(1.0)
            continue
        aps.append(average_precision((rel > 0).astype("float64"), sc))
        ndcgs.append(float(ndcg_score(rel.reshape(1, -1), sc.reshape(1, -1), k=k)))
    n_q = int(df[query_col].nunique(dropna=True))
    if no_relevant:
        notes.append(
            f"{no_relevant} of {n_q} query group(s) have no relevant item: AP and NDCG are undefined "
            "there (0/0), so they are left out of map and ndcg_at_k"
        )
    if single:
        notes.append(f"{single} query group(s) have one item: AP = NDCG = 1 for them")
    if not aps:
        notes.append("no query group with a relevant item: map and ndcg_at_k undefined")
    v = {
        "map": float(np.mean(aps)) if aps else None,
        "ndcg_at_k": float(np.mean(ndcgs)) if ndcgs else None,
    }
    counts = {"n": int(len(df)), "queries": n_q, "queries_scored": len(aps), "queries_without_relevant": no_relevant, "k": int(k)}
    return MetricSet("ranking", int(len(df)), v, counts, notes)


def ranking_metrics(
    df: pd.DataFrame,
    query_col: str,
    relevance_col: str,
    score_col: str,
    k: int = 10,
    *,
    segment_cols: Sequence[str] = (),
) -> MetricsReport:
    """map (mean over query groups of sklearn's average_precision_score on relevance > 0) and
    ndcg_at_k (mean over query groups of sklearn's ndcg_score with graded relevance, k).

    Groups without a relevant item are left out of both means (noted): their AP and NDCG are 0/0.
    Rows with a missing relevance, score or query are left out and counted.
    """
    if not isinstance(df, pd.DataFrame):
        raise MetricInputError(f"ranking_metrics: expected a DataFrame, got {type(df).__name__}")
    for c in (query_col, relevance_col, score_col, *segment_cols):
        if c not in df.columns:
            raise MetricInputError(f"ranking_metrics: column {c!r} is missing (columns: {', '.join(map(str, df.columns))})")
    if int(k) < 1:
        raise MetricInputError(f"k={k!r}: expected an integer >= 1")
    rel = _array(df[relevance_col], relevance_col)
    sc = _array(df[score_col], score_col)
    keep = np.isfinite(rel) & np.isfinite(sc) & df[query_col].notna().to_numpy()
    if (rel[keep] < 0).any():
        pos = int(np.flatnonzero(keep & (rel < 0))[0])
        raise MetricInputError(f"{relevance_col}: relevance must be >= 0; row {pos} holds {rel[pos]!r}")
    data = df[keep].copy()
    data[relevance_col] = rel[keep]
    data[score_col] = sc[keep]
    overall = _ranking_set(data, query_col, relevance_col, score_col, int(k))
    excluded = int((~keep).sum())
    overall.counts["excluded"] = excluded
    if excluded:
        overall.notes.insert(0, f"{excluded} row(s) without a query, relevance or score left out")
    segs = []
    for col in segment_cols:
        values = data[col].astype("object").where(data[col].notna(), "(missing)")
        for v in sorted(pd.unique(values), key=str):
            ms = _ranking_set(data[(values == v).to_numpy()], query_col, relevance_col, score_col, int(k))
            ms.segment = {"column": col, "value": _plain(v)}
            segs.append(ms)
    return MetricsReport("ranking", overall, segs)


# ---------------------------------------------------------------------------------------------
# one entry point per task


def evaluate(
    rows: pd.DataFrame,
    *,
    task: str,
    label_col: str = "label",
    score_col: str | None = None,
    prediction_col: str | None = None,
    threshold: float = 0.5,
    segment_cols: Sequence[str] = (),
    query_col: str | None = None,
    k: int = 10,
) -> MetricsReport:
    """The task's metrics on joined rows (``JoinResult.joined`` or one day of it).

    binary_classification needs ``score_col``; regression ``prediction_col``; ranking
    ``query_col`` and ``score_col`` (the label is the relevance).
    """
    task = normalize_task(task)
    need = {"binary_classification": [score_col], "regression": [prediction_col], "ranking": [query_col, score_col]}[task]
    if any(c is None for c in need):
        raise MetricInputError(
            f"evaluate({task}): needs "
            + {"binary_classification": "score_col", "regression": "prediction_col", "ranking": "query_col and score_col"}[task]
        )
    cols = [label_col, *[c for c in need if c], *segment_cols]
    missing = [c for c in cols if c not in rows.columns]
    if missing:
        raise MetricInputError(
            f"evaluate: column(s) {', '.join(missing)} missing from the joined rows (columns: {', '.join(map(str, rows.columns))})"
        )
    seg = rows[list(segment_cols)] if segment_cols else None
    if task == "binary_classification":
        decision = rows[prediction_col] if prediction_col is not None and prediction_col in rows.columns else None
        return classification_metrics(rows[label_col], rows[score_col], threshold, segments=seg,
                                      decision=decision)
    if task == "regression":
        return regression_metrics(rows[label_col], rows[prediction_col], segments=seg)
    return ranking_metrics(rows, query_col, label_col, score_col, k, segment_cols=segment_cols)


def evaluate_by_day(joined: pd.DataFrame, *, ds_col: str = "ds", **kwargs: Any) -> dict[str, MetricsReport]:
    """``evaluate`` per prediction day (keys are the values of ``ds_col``, sorted)."""
    if ds_col not in joined.columns:
        raise MetricInputError(f"evaluate_by_day: column {ds_col!r} is missing")
    return {str(d): evaluate(g, **kwargs) for d, g in sorted(joined.groupby(ds_col), key=lambda x: str(x[0]))}


# ---------------------------------------------------------------------------------------------
# estimates before labels (CBPE)

# A calibrator fitted on fewer labelled rows, or on fewer rows of either class, is a handful of
# steps: its probabilities would be worse than the raw scores it replaces.
MIN_CALIBRATION_ROWS = 100
MIN_CALIBRATION_CLASS_ROWS = 10


@dataclass
class Calibrator:
    """A monotone map from raw scores to probabilities (isotonic regression on reference data).

    CBPE needs calibrated probabilities; a model whose scores are not calibrated gets one fitted on
    a labelled reference period. JSON-serializable (``to_dict`` / ``from_dict``).
    """

    x: list[float]
    y: list[float]
    n: int = 0
    notes: list[str] = field(default_factory=list)

    def apply(self, score: Any) -> np.ndarray:
        s = _array(score, "score")
        # np.interp clips outside the fitted range, as IsotonicRegression(out_of_bounds="clip").
        return np.interp(s, self.x, self.y)

    @property
    def id(self) -> str:
        """A short digest of the fitted curve: the same reference gives the same id, so estimates
        made with one calibrator can be told from estimates made with another."""
        raw = json.dumps([[repr(float(v)) for v in self.x], [repr(float(v)) for v in self.y]])
        return "iso-" + hashlib.sha256(raw.encode()).hexdigest()[:12]

    def to_dict(self) -> dict[str, Any]:
        return {"x": list(self.x), "y": list(self.y), "n": self.n, "notes": list(self.notes)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Calibrator":
        return cls([float(v) for v in d["x"]], [float(v) for v in d["y"]], int(d.get("n", 0)), list(d.get("notes", [])))


def fit_calibrator(y_true: Any, score: Any) -> Calibrator:
    """Isotonic regression of labels on scores (sklearn ``IsotonicRegression``, clipped to [0, 1]).

    Between the fitted points the map is linear, outside them it is clipped to the end values
    (scikit-learn's convention, which NannyML's CBPE inherits)."""
    from sklearn.isotonic import IsotonicRegression

    y, s, excluded = _pair(y_true, score, ("y_true", "score"))
    _check_binary(y)
    if len(y) < 2:
        raise MetricInputError(f"fit_calibrator: needs at least 2 labelled rows, got {len(y)}")
    notes = [f"{excluded} row(s) without a label or score left out"] if excluded else []
    if len(np.unique(y)) < 2:
        notes.append("only one class in the reference labels: the calibrator is constant")
    iso = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(s, y)
    return Calibrator([float(v) for v in iso.X_thresholds_], [float(v) for v in iso.y_thresholds_], int(len(y)), notes)


@dataclass
class CalibrationChoice:
    """What CBPE uses as probabilities: a calibrator fitted on labelled reference rows
    (``status`` "calibrated"), or the raw scores (``status`` "raw") with the reason none could be
    fitted. ``id`` names the choice ("raw" or the calibrator's digest)."""

    status: Literal["calibrated", "raw"]
    calibrator: Calibrator | None = None
    reason: str = ""
    n: int = 0
    positives: int = 0
    source: str = ""

    @property
    def id(self) -> str:
        return self.calibrator.id if self.calibrator is not None else "raw"

    def summary(self) -> dict[str, Any]:
        """The JSON-ready description stored with each estimate (without the curve itself)."""
        return {"status": self.status, "id": self.id, "reason": self.reason, "n": self.n,
                "positives": self.positives, "source": self.source}

    def to_dict(self) -> dict[str, Any]:
        return {**self.summary(), "calibrator": None if self.calibrator is None else self.calibrator.to_dict()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "CalibrationChoice":
        cal = d.get("calibrator")
        return cls(status=d["status"], calibrator=None if cal is None else Calibrator.from_dict(cal),
                   reason=str(d.get("reason", "")), n=int(d.get("n", 0)),
                   positives=int(d.get("positives", 0)), source=str(d.get("source", "")))


def reference_calibration(
    y_true: Any,
    score: Any,
    *,
    source: str = "reference",
    min_rows: int = MIN_CALIBRATION_ROWS,
    min_class_rows: int = MIN_CALIBRATION_CLASS_ROWS,
) -> CalibrationChoice:
    """The calibrator CBPE should use, fitted on the reference's labelled rows, or "raw" with the
    reason when the reference cannot support one: no label or score column (``None``), labels
    that are not 0/1, fewer than ``min_rows`` labelled rows or fewer than ``min_class_rows`` of
    either class. ``source`` names the reference in the reasons (e.g. the training file)."""
    if y_true is None or score is None:
        missing = "labels" if y_true is None else "scores"
        return CalibrationChoice("raw", reason=f"{source} has no {missing}: raw scores used as probabilities", source=source)
    try:
        y, s, _excluded = _pair(y_true, score, (f"{source} labels", f"{source} scores"))
        _check_binary(y, f"{source} labels")
    except MetricInputError as err:
        return CalibrationChoice("raw", reason=f"cannot calibrate on {source}: {err}; raw scores used as probabilities", source=source)
    n, pos = int(len(y)), int(y.sum())
    small = [f"{n} labelled row(s) < {min_rows}"] if n < min_rows else []
    small += [f"{c} {name} row(s) < {min_class_rows}" for c, name in ((pos, "positive"), (n - pos, "negative"))
              if c < min_class_rows]
    if small:
        return CalibrationChoice("raw", reason=f"cannot calibrate on {source}: {', '.join(small)}; raw scores used "
                                 "as probabilities", n=n, positives=pos, source=source)
    cal = fit_calibrator(y, s)
    return CalibrationChoice("calibrated", cal, reason=f"isotonic calibration on {n} labelled rows of {source} "
                             f"({pos} positive)", n=n, positives=pos, source=source)


@dataclass
class PerformanceEstimate:
    """Estimated quality before labels. ``status`` is "estimated" or "not_estimated" (with reason).

    ``calibration``: which probabilities the estimate used ({"status": "calibrated" | "raw", "id"}).
    """

    task: str
    status: Literal["estimated", "not_estimated"]
    values: dict[str, float | None]
    n: int = 0
    expected_counts: dict[str, float] = field(default_factory=dict)
    threshold: float | None = None
    method: str = ""
    reason: str = ""
    notes: list[str] = field(default_factory=list)
    calibration: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "status": self.status,
            "values": _plain(self.values),
            "n": self.n,
            "expected_counts": _plain(self.expected_counts),
            "threshold": self.threshold,
            "method": self.method,
            "reason": self.reason,
            "notes": list(self.notes),
            "calibration": _plain(self.calibration),
        }


def expected_roc_auc(p: Any) -> float | None:
    """CBPE's ROC AUC: the area under the expected ROC curve of rows whose probability of being
    positive is ``p`` (calibrated). At a threshold t the expected TP is the sum of p over rows with
    p >= t and the expected FP the sum of 1 - p; TPR and FPR divide by the expected positives and
    negatives. The trapezoids over all thresholds are computed here as the weighted Mann-Whitney
    sum: each row is p of a positive and 1 - p of a negative, rows tied in p count half (a row with
    itself too, as on the curve). None when the expected positives or negatives are 0.

    Ranking by calibrated p or by the raw score gives the same area: a calibrator is monotone, and
    rows it maps to one value add collinear points to the curve.
    """
    p = _array(p, "p")
    p = p[np.isfinite(p)]
    pos_mass, neg_mass = float(p.sum()), float((1.0 - p).sum())
    if len(p) == 0 or pos_mass <= 0.0 or neg_mass <= 0.0:
        return None
    ps = np.sort(p, kind="mergesort")
    starts = np.r_[0, np.flatnonzero(np.diff(ps)) + 1]
    pos_g = np.add.reduceat(ps, starts)
    neg_g = np.add.reduceat(1.0 - ps, starts)
    neg_below = np.cumsum(neg_g) - neg_g
    return float(np.sum(pos_g * (neg_below + 0.5 * neg_g)) / (pos_mass * neg_mass))


def cbpe_estimate(score: Any, threshold: float = 0.5, *, calibrator: Calibrator | None = None,
                  decision: Any = None) -> PerformanceEstimate:
    """Expected accuracy, precision, recall, f1 and roc_auc from the scores alone.

    With p the calibrated probability of the positive class (the raw score without a calibrator)
    and a prediction positive when the served decision (``decision``, prediction.label) is 1, or
    without one when the raw score >= threshold: E[TP] = sum of p over predicted
    positives, E[FP] = sum of (1 - p) over them, E[FN] = sum of p over predicted negatives, E[TN] =
    sum of (1 - p) over them; the metrics follow from that expected confusion matrix, roc_auc from
    the expected ROC curve (``expected_roc_auc``). Valid while the relation between inputs and
    outcome is unchanged (no concept drift) and p is calibrated.
    """
    s_all = _array(score, "score")
    keep = np.isfinite(s_all)
    d_all = None if decision is None else _array(decision, "decision (prediction.label)")
    if d_all is not None:
        keep &= np.isfinite(d_all)
    s = s_all[keep]
    notes = [f"{int((~keep).sum())} row(s) without a score left out"] if (~keep).any() else []
    p = calibrator.apply(s) if calibrator is not None else s
    _check_probability(p, "score" if calibrator is None else "calibrated score")
    pred = s >= threshold if d_all is None else d_all[keep] == 1
    etp = float(p[pred].sum())
    efp = float((1 - p[pred]).sum())
    efn = float(p[~pred].sum())
    etn = float((1 - p[~pred]).sum())
    n = int(len(s))
    v: dict[str, float | None] = {
        "accuracy": (etp + etn) / n if n else None,
        "precision": etp / (etp + efp) if (etp + efp) > 0 else None,
        "recall": etp / (etp + efn) if (etp + efn) > 0 else None,
        "f1": 2 * etp / (2 * etp + efp + efn) if (2 * etp + efp + efn) > 0 else None,
        "roc_auc": expected_roc_auc(p),
    }
    if n == 0:
        notes.append("no scored rows: nothing to estimate")
    elif not pred.any():
        notes.append(f"precision not estimated: no score >= threshold {threshold}")
    if n and v["recall"] is None:
        notes.append("recall not estimated: expected positives are 0")
    if n and v["roc_auc"] is None:
        notes.append("roc_auc not estimated: expected positives or negatives are 0")
    if calibrator is not None:
        method = f"CBPE: expected confusion matrix and ROC curve from scores calibrated on {calibrator.n} reference rows (isotonic)"
        calibration = {"status": "calibrated", "id": calibrator.id}
    else:
        method = "CBPE: expected confusion matrix and ROC curve from raw scores (assumed calibrated)"
        calibration = {"status": "raw", "id": "raw"}
    return PerformanceEstimate(
        task="binary_classification",
        status="estimated",
        values=v,
        n=n,
        expected_counts={"tp": etp, "fp": efp, "fn": efn, "tn": etn},
        threshold=float(threshold),
        method=method,
        notes=notes,
        calibration=calibration,
    )


def estimate_performance(
    task: str, score: Any = None, threshold: float = 0.5, *, calibrator: Calibrator | None = None
) -> PerformanceEstimate:
    """CBPE for binary classifiers; an explicit "not_estimated" for regression and ranking."""
    task = normalize_task(task)
    if task == "binary_classification":
        if score is None:
            raise MetricInputError("estimate_performance(binary_classification): score is required")
        return cbpe_estimate(score, threshold, calibrator=calibrator)
    reason = {
        "regression": "not estimated: a regression model's output carries no probability of being "
        "right, so quality cannot be estimated from predictions alone; wait for labels",
        "ranking": "not estimated: ranking scores are not calibrated relevance probabilities; wait for labels",
    }[task]
    return PerformanceEstimate(task=task, status="not_estimated", values={}, reason=reason)


def _values_of(x: Any, what: str) -> dict[str, float | None]:
    if isinstance(x, (MetricSet, PerformanceEstimate)):
        return dict(x.values)
    if isinstance(x, MetricsReport):
        return dict(x.overall.values)
    if isinstance(x, Mapping):
        return dict(x)
    raise MetricInputError(f"{what}: expected a dict of metric values, got {type(x).__name__}")


def compare_estimate(
    estimated: PerformanceEstimate | Mapping[str, Any],
    realized: MetricSet | MetricsReport | Mapping[str, Any],
    metrics: Sequence[str] = ESTIMATED_METRICS,
) -> list[dict[str, Any]]:
    """Estimate beside realized value: rows of metric, estimated, realized, difference (realized - estimated)."""
    e = _values_of(estimated, "estimated")
    r = _values_of(realized, "realized")
    out = []
    for m in metrics:
        ev, rv = _f(e.get(m)) if e.get(m) is not None else None, _f(r.get(m)) if r.get(m) is not None else None
        out.append(
            {"metric": m, "estimated": ev, "realized": rv, "difference": (rv - ev) if ev is not None and rv is not None else None}
        )
    return out


# ---------------------------------------------------------------------------------------------
# concept drift: realized quality worse than its estimate, beyond a robustly learned band

MAD_TO_SD = 1.4826  # 1 / Phi^-1(3/4): MAD times this estimates the sd of normal data
CONCEPT_DRIFT_K = 4.0  # band half-width in robust sd; one-sided (worse only), so ~3e-5 per metric-day by chance
CONCEPT_LEARNING_DAYS = 14
CONCEPT_MIN_LEARNING_DAYS = 5
CONCEPT_ITERATIONS = 2
CONCEPT_MIN_SD = 0.001  # a tenth of a percentage point: below this a difference is rounding
CONCEPT_POOL_DAYS = 3  # a day inside its band is also judged together with the 2 mature days before it
HIGHER_IS_BETTER = frozenset(ESTIMATED_METRICS)


def difference_floor(
    estimated: PerformanceEstimate | Mapping[str, Any],
    *,
    n: int | float | None,
    positives: int | float | None,
    predicted_positives: int | float | None,
    metrics: Sequence[str] = ESTIMATED_METRICS,
) -> dict[str, float | None]:
    """Per metric, the sd of realized - estimated that sampling alone gives at the day's counts:
    the binomial sd sqrt(v (1 - v) / m) of a proportion v (the estimate) measured on m rows, with
    m = the labelled rows (accuracy), the predicted positives (precision), the positives (recall),
    their mean (f1, the harmonic mean of the two); roc_auc uses Hanley and McNeil's (1982) sd at
    the day's positives and negatives. None where the count is 0 or unknown.

    It is the floor of the concept-drift band: a day's difference is not judged against a spread
    narrower than what its own label count allows.
    """
    e = _values_of(estimated, "estimated")

    def num(x):
        return None if x is None or not math.isfinite(float(x)) else float(x)

    n_, pos, pp = num(n), num(positives), num(predicted_positives)
    counts = {
        "accuracy": n_,
        "precision": pp,
        "recall": pos,
        "f1": None if pos is None or pp is None else (pos + pp) / 2.0,
    }
    out: dict[str, float | None] = {}
    for m in metrics:
        v = e.get(m)
        v = None if v is None or not math.isfinite(float(v)) else min(max(float(v), 0.0), 1.0)
        if v is None:
            out[m] = None
        elif m == "roc_auc":
            neg = None if n_ is None or pos is None else n_ - pos
            if pos is None or neg is None or pos <= 0 or neg <= 0:
                out[m] = None
            else:
                q1, q2 = v / (2.0 - v), 2.0 * v * v / (1.0 + v)
                var = (v * (1 - v) + (pos - 1) * (q1 - v * v) + (neg - 1) * (q2 - v * v)) / (pos * neg)
                out[m] = math.sqrt(max(var, 0.0))
        else:
            c = counts.get(m)
            out[m] = math.sqrt(v * (1.0 - v) / c) if c is not None and c > 0 else None
    return out


@dataclass(frozen=True)
class LearningDay:
    """One mature prediction-day the concept-drift band learns from: realized - estimated per
    metric, and the sd of that difference at the day's label count (``difference_floor``)."""

    ds: str
    differences: Mapping[str, float | None]
    floors: Mapping[str, float | None] = field(default_factory=dict)


@dataclass(frozen=True)
class RobustBand:
    """The centre and spread of one metric's realized - estimated over the learning days, with the
    outlier days left out. ``status`` "learned" or "insufficient" (fewer usable days than needed)."""

    metric: str
    status: str
    median: float | None
    mad_sd: float | None  # 1.4826 x MAD of the days kept
    used_days: tuple[str, ...]
    excluded_days: tuple[str, ...]  # learning days outside the band: outliers, not normal
    reason: str = ""
    # 1.4826 x MAD of the kept days' (difference - median) / floor: how much more the days vary
    # than their label counts alone explain (about 1 when sampling is all there is)
    dispersion: float | None = None


def robust_band(
    metric: str,
    days: Sequence[LearningDay],
    *,
    k: float = CONCEPT_DRIFT_K,
    iterations: int = CONCEPT_ITERATIONS,
    min_days: int = CONCEPT_MIN_LEARNING_DAYS,
    min_sd: float = CONCEPT_MIN_SD,
) -> RobustBand:
    """Median and 1.4826 x MAD of ``metric``'s differences over ``days``, leaving out days that
    are themselves outliers: a day whose difference lies outside median +- k x spread (spread =
    the larger of 1.4826 x MAD, that day's floor and ``min_sd``) is dropped and the median and MAD
    recomputed, up to ``iterations`` times. Fewer than ``min_days`` usable days: "insufficient".
    """
    pts = [(d.ds, float(d.differences[metric]), d.floors.get(metric)) for d in days
           if d.differences.get(metric) is not None and math.isfinite(float(d.differences[metric]))]
    if len(pts) < min_days:
        return RobustBand(metric, "insufficient", None, None, tuple(p[0] for p in pts), (),
                          f"{len(pts)} learning day(s) < {min_days}")
    vals = np.array([p[1] for p in pts])
    floors = np.array([float(p[2]) if p[2] is not None else 0.0 for p in pts])
    keep = np.ones(len(pts), dtype=bool)

    def stats(mask):
        med = float(np.median(vals[mask]))
        return med, MAD_TO_SD * float(np.median(np.abs(vals[mask] - med)))

    for _ in range(int(iterations)):
        med, mad_sd = stats(keep)
        spread = np.maximum(np.maximum(floors, min_sd), mad_sd)
        inside = np.abs(vals - med) <= k * spread
        if (inside == keep).all():
            break
        keep = inside
        if keep.sum() < min_days:
            break
    used = tuple(p[0] for p, m in zip(pts, keep) if m)
    excluded = tuple(p[0] for p, m in zip(pts, keep) if not m)
    if len(used) < min_days:
        # Too few days agree on a normal: no band is better than one learned from outliers.
        return RobustBand(metric, "insufficient", None, None, used, excluded,
                          f"{len(used)} of {len(pts)} learning day(s) agree, < {min_days} (the others are outliers)")
    med, mad_sd = stats(keep)
    z = (vals[keep] - med) / np.maximum(floors[keep], min_sd)
    dispersion = MAD_TO_SD * float(np.median(np.abs(z - np.median(z))))
    return RobustBand(metric, "learned", med, mad_sd, used, excluded, dispersion=dispersion)


@dataclass
class ConceptDriftFinding:
    """Realized quality against its estimate on one prediction-day.

    ``status``: suspected | ok | inconclusive | not_estimated. ``suspected`` is True only when a
    metric's realized value is WORSE than its estimate beyond the learned band. ``metrics``: one row
    per metric (realized, estimated, difference, median, spread, low, high, direction "worse" /
    "better" / None, ...). ``worst``: the largest shortfall (estimated - realized) of a worse
    metric (larger = worse), ``worst_text`` the same in words; None unless suspected.
    ``learning_days``: the days the bands were learned over (before outliers were left out).
    """

    status: str
    suspected: bool
    reason: str
    metrics: list[dict[str, Any]]
    k: float
    prediction_ds: str | None = None
    worst: float | None = None
    worst_metric: str | None = None
    worst_text: str | None = None
    learning_days: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"status": self.status, "suspected": self.suspected, "reason": self.reason,
                "metrics": _plain(self.metrics), "k": self.k, "prediction_ds": self.prediction_ds,
                "worst": _plain(self.worst), "worst_metric": self.worst_metric, "worst_text": self.worst_text,
                "learning_days": list(self.learning_days)}


def _learning(days: Iterable[LearningDay | Mapping[str, Any]]) -> list[LearningDay]:
    out = []
    for i, d in enumerate(days):
        out.append(d if isinstance(d, LearningDay) else LearningDay(f"day {i + 1}", dict(d)))
    return out


def _pooled(difference: float, floor: float | None, earlier: Sequence[tuple[str, float, float | None]],
            min_sd: float) -> tuple[float, float, int]:
    """Inverse-variance weighted mean of the day's difference and the earlier days', the sd
    sampling alone gives it, and the number of days pooled (a day's weight is 1 / its floor^2:
    a day with few labels counts less)."""
    items = [(difference, floor)] + [(d, f) for _, d, f in earlier]
    w = np.array([1.0 / max(float(f or 0.0), min_sd) ** 2 for _, f in items])
    d = np.array([v for v, _ in items])
    return float(np.sum(w * d) / np.sum(w)), float(1.0 / math.sqrt(np.sum(w))), len(items)


def _side(difference: float, low: float, high: float) -> str | None:
    """Which edge of the band a difference is past ("low" / "high"), counting it only when it is
    also on that side of 0: realized below (above) the estimate, so the words match the numbers
    even when the estimate's normal error is large."""
    if difference < low and difference < 0:
        return "low"
    if difference > high and difference > 0:
        return "high"
    return None


def concept_drift_check(
    realized: MetricSet | MetricsReport | Mapping[str, Any],
    estimated: PerformanceEstimate | Mapping[str, Any],
    learning: Iterable[LearningDay | Mapping[str, Any]],
    *,
    floors: Mapping[str, float | None] | None = None,
    recent: Sequence[LearningDay] = (),
    k: float = CONCEPT_DRIFT_K,
    metrics: Sequence[str] = ESTIMATED_METRICS,
    min_learning_days: int = CONCEPT_MIN_LEARNING_DAYS,
    iterations: int = CONCEPT_ITERATIONS,
    min_sd: float = CONCEPT_MIN_SD,
    pool_days: int = CONCEPT_POOL_DAYS,
    prediction_ds: str | None = None,
) -> ConceptDriftFinding:
    """Suspected concept drift: realized quality WORSE than its estimate beyond a robust band.

    Per metric, the difference realized - estimated is compared with the band median +- k x spread
    learned over ``learning`` (the model's first mature days; ``robust_band`` leaves out days that
    are outliers themselves). The spread is the largest of 1.4826 x MAD, this day's ``floors``
    entry (the sd its label count allows, ``difference_floor``) and ``min_sd``.

    A day inside its band is also judged pooled with the newest ``pool_days - 1`` days of
    ``recent`` (the mature days just before it, oldest first) that are inside the band too: the
    inverse-variance weighted mean of their differences (weights 1 / floor^2) against median +- k
    x spread, spread = the pooled sampling sd times the learning days' dispersion (1.4826 x MAD
    of their differences in units of their own floors, at least 1), at least ``min_sd``. At a few
    hundred rows a day one day's labels cannot show a fall that three days together do; days
    outside the band are left out of the pool so one bad day does not taint its neighbours, and
    the day itself must be below (above) the median for a pooled worse (better) verdict.

    For these higher-is-better metrics a difference below the low edge (and below 0: realized
    under the estimate) is "worse" and makes the day suspected; above the high edge (and above 0)
    is "better": reported, never suspected (the model doing better than it expects is no reason
    to page anybody). Metrics without a realized or estimated
    value, or with fewer than ``min_learning_days`` usable learning days, are not judged; when
    none can be judged the status is "inconclusive".
    """
    where = f"prediction-day {prediction_ds}: " if prediction_ds else ""
    if isinstance(estimated, PerformanceEstimate) and estimated.status != "estimated":
        return ConceptDriftFinding("not_estimated", False, where + (estimated.reason or "no estimate"), [], float(k), prediction_ds)
    days = _learning(learning)
    seen = [d.ds for d in days]
    floors = dict(floors or {})
    rows = compare_estimate(estimated, realized, metrics)
    judged, worse, better, unjudged = [], [], [], []
    for r in rows:
        m = r["metric"]
        band = robust_band(m, days, k=k, iterations=iterations, min_days=min_learning_days, min_sd=min_sd)
        floor = floors.get(m)
        r.update({"median": band.median, "mad_sd": band.mad_sd, "floor_sd": _f(floor) if floor is not None else None,
                  "n_learning": len(band.used_days), "excluded_days": list(band.excluded_days),
                  "spread": None, "low": None, "high": None, "direction": None, "basis": None,
                  "outside": None, "judged": False, "pooled": None})
        if r["difference"] is None or band.status != "learned":
            why = "no realized or estimated value" if r["difference"] is None else band.reason
            r["why_not_judged"] = why
            unjudged.append(f"{m} ({why})")
            continue
        med, mad_sd = float(band.median), float(band.mad_sd)
        spread = max(mad_sd, float(floor or 0.0), float(min_sd))
        lo, hi = med - k * spread, med + k * spread
        d = float(r["difference"])
        low_is_worse = m in HIGHER_IS_BETTER
        named = {"low": "worse" if low_is_worse else "better", "high": "better" if low_is_worse else "worse"}
        direction, basis = None, None
        if (side := _side(d, lo, hi)) is not None:
            direction, basis = named[side], "day"
        elif pool_days > 1:
            earlier = []
            for x in recent:
                v, f = x.differences.get(m), x.floors.get(m)
                if v is None or not math.isfinite(float(v)):
                    continue
                # a recent day outside its own spread of this band is an outlier: not pooled
                if abs(float(v) - med) <= k * max(mad_sd, float(f or 0.0), float(min_sd)):
                    earlier.append((x.ds, float(v), f))
            earlier = earlier[-(int(pool_days) - 1):]
            if earlier:
                pd_, pf, n_p = _pooled(d, floor, earlier, float(min_sd))
                # the pooled sampling sd, widened by how much more than sampling the learning days
                # vary (with equal floors this is 1.4826 x MAD / sqrt(days pooled))
                p_spread = max(max(float(band.dispersion or 0.0), 1.0) * pf, float(min_sd))
                p_lo, p_hi = med - k * p_spread, med + k * p_spread
                p_side = _side(pd_, p_lo, p_hi)
                # the day itself must lean the same way, past the median and past the estimate
                if p_side == "low" and not d < min(med, 0.0) or p_side == "high" and not d > max(med, 0.0):
                    p_side = None
                p_dir = named.get(p_side)
                r["pooled"] = {"days": [ds for ds, _, _ in earlier] + [prediction_ds or "this day"],
                               "difference": pd_, "floor_sd": pf, "dispersion": band.dispersion,
                               "spread": p_spread, "low": p_lo, "high": p_hi, "direction": p_dir}
                if p_dir is not None:
                    direction, basis = p_dir, "pooled"
        r.update({"spread": spread, "low": lo, "high": hi, "direction": direction, "basis": basis,
                  "outside": direction is not None, "judged": True})
        judged.append(r)
        (worse if direction == "worse" else better if direction == "better" else []).append(r)

    def told(r):
        excl = f", {len(r['excluded_days'])} outlier day(s) left out" if r["excluded_days"] else ""
        learned = f"learned over {r['n_learning']} mature day(s){excl}"
        if r["basis"] == "pooled":
            p = r["pooled"]
            edge = "below" if p["difference"] < p["low"] else "above"
            return (f"realized {r['metric']} {r['realized']:.4f} vs estimated {r['estimated']:.4f}: difference "
                    f"{r['difference']:+.4f}; pooled with the {len(p['days']) - 1} mature day(s) before it "
                    f"({', '.join(p['days'][:-1])}) the difference is "
                    f"{p['difference']:+.4f}, {edge} the pooled band [{p['low']:+.4f}, {p['high']:+.4f}] "
                    f"(median {r['median']:+.4f} +- {k:g} x {p['spread']:.4f}, {learned})")
        edge = "below" if r["difference"] < r["low"] else "above"
        return (f"realized {r['metric']} {r['realized']:.4f} vs estimated {r['estimated']:.4f}: difference "
                f"{r['difference']:+.4f}, {edge} the band [{r['low']:+.4f}, {r['high']:+.4f}] (median "
                f"{r['median']:+.4f} +- {k:g} x {r['spread']:.4f}, {learned})")

    tail = ""
    if better:
        tail = "; better than estimated (not a concept-drift concern): " + "; ".join(told(r) for r in better)
    if unjudged:
        tail += "; not judged: " + ", ".join(unjudged)
    if worse:
        top = max(worse, key=lambda r: r["estimated"] - r["realized"])
        reason = (where + "worse than estimated: " + "; ".join(told(r) for r in worse)
                  + ". The relation between inputs and outcome seems to have changed (suspected concept drift)" + tail)
        return ConceptDriftFinding(
            "suspected", True, reason, rows, float(k), prediction_ds,
            worst=float(top["estimated"] - top["realized"]), worst_metric=top["metric"],
            worst_text=(f"{top['metric']} {top['realized']:.4f} vs estimated {top['estimated']:.4f} "
                        f"({top['difference']:+.4f})" + (f" on {prediction_ds}" if prediction_ds else "")),
            learning_days=seen)
    if not judged:
        return ConceptDriftFinding("inconclusive", False, where + "nothing to judge: " + ", ".join(unjudged), rows,
                                   float(k), prediction_ds, learning_days=seen)
    calm = [r["metric"] for r in judged if r["direction"] is None]
    reason = where + (("realized quality is within the estimate's band for " + ", ".join(calm)) if calm
                      else "no metric falls short of its estimate beyond the band")
    return ConceptDriftFinding("ok", False, reason + tail, rows, float(k), prediction_ds, learning_days=seen)


# ---------------------------------------------------------------------------------------------
# sudden change against a metric's own trailing band


@dataclass
class SuddenChangeFlag:
    """One day of a metric against the band of its trailing mature days."""

    ds: str
    value: float | None
    mature: bool
    status: str  # flagged | ok | insufficient_history | provisional | no_value
    flagged: bool
    mean: float | None = None
    sd: float | None = None
    low: float | None = None
    high: float | None = None
    n_points: int = 0
    direction: str | None = None  # up | down
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {k: _plain(v) for k, v in self.__dict__.items()}


def sudden_change(
    series: pd.DataFrame | Iterable[Sequence[Any]],
    *,
    window_days: int = 14,
    k: float = 3.0,
    min_points: int = 7,
    min_sd: float = 0.0,
    include_provisional: bool = False,
) -> list[SuddenChangeFlag]:
    """Flag days whose value leaves mean +- k sd of the mature values in the previous ``window_days``.

    ``series``: rows of (ds, value, mature) (mature optional, default True), or a DataFrame with
    those columns. The band for day d uses mature days in [d - window_days, d - 1] with a value
    (sample sd, ddof=1, floored at ``min_sd``); fewer than ``min_points`` of them: "insufficient_history".
    Provisional (not mature) days are not judged unless ``include_provisional``.
    """
    if isinstance(series, pd.DataFrame):
        if "ds" not in series.columns or "value" not in series.columns:
            raise MetricInputError("sudden_change: the DataFrame needs columns ds and value (and optionally mature)")
        recs = [
            (r["ds"], r["value"], r["mature"] if "mature" in series.columns else True)
            for r in series.to_dict("records")
        ]
    else:
        recs = [(t[0], t[1], t[2] if len(t) > 2 else True) for t in series]
    rows = []
    for ds, v, mature in recs:
        d = pd.Timestamp(ds).date() if not isinstance(ds, date) else ds
        val = None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)
        rows.append((d, val, bool(mature)))
    rows.sort(key=lambda r: r[0])
    days = [r[0] for r in rows]
    if len(set(days)) != len(days):
        dup = sorted({d for d in days if days.count(d) > 1})
        raise MetricInputError(f"sudden_change: day(s) listed twice: {', '.join(map(str, dup))}")
    out = []
    for d, val, mature in rows:
        ds = d.isoformat()
        if val is None:
            out.append(SuddenChangeFlag(ds, None, mature, "no_value", False, reason="no value this day"))
            continue
        if not mature and not include_provisional:
            out.append(SuddenChangeFlag(ds, val, mature, "provisional", False, reason="labels not mature: not judged"))
            continue
        lo_day = d - timedelta(days=window_days)
        hist = [v for (dd, v, m) in rows if lo_day <= dd < d and m and v is not None]
        if len(hist) < min_points:
            out.append(
                SuddenChangeFlag(
                    ds, val, mature, "insufficient_history", False, n_points=len(hist),
                    reason=f"{len(hist)} mature day(s) in the previous {window_days} < {min_points}",
                )
            )
            continue
        a = np.array(hist)
        mean = float(a.mean())
        sd = max(float(a.std(ddof=1)), float(min_sd))
        lo, hi = mean - k * sd, mean + k * sd
        flagged = not (lo <= val <= hi)
        direction = ("up" if val > hi else "down") if flagged else None
        reason = (
            f"{val:.4g} is {'above' if direction == 'up' else 'below'} its trailing {window_days}-day band "
            f"[{lo:.4g}, {hi:.4g}] (mean {mean:.4g} +- {k:g} sd {sd:.4g}, {len(hist)} mature days)"
            if flagged
            else f"within [{lo:.4g}, {hi:.4g}]"
        )
        out.append(SuddenChangeFlag(ds, val, mature, "flagged" if flagged else "ok", flagged, mean, sd, lo, hi, len(hist), direction, reason))
    return out


# ---------------------------------------------------------------------------------------------
# business outcomes: a small declarative form over the joined rows
#
# An expression language, parsed here (never eval'd): numbers, 'text', true/false, column names
# (or `any name` in backticks), + - * /, comparisons == != > >= < <=, and/or/not, parentheses.
# The role names `label`, `prediction` and `score` mean the joined label, the model's predicted
# class or value, and its score (see business_outcomes).

_TOKEN = re.compile(
    r"\s*(?:(?P<num>\d+\.?\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?)"
    r"|(?P<str>'[^']*'|\"[^\"]*\")"
    r"|(?P<name>[A-Za-z_][A-Za-z0-9_]*|`[^`]+`)"
    r"|(?P<op>==|!=|>=|<=|>|<|\+|-|\*|/|\(|\)))"
)
_KEYWORDS = {"and", "or", "not", "true", "false"}


def _tokenize(text: str) -> list[tuple[str, str]]:
    pos, out = 0, []
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise OutcomeSpecError(f"cannot read {text!r} at position {pos}: {text[pos:pos + 10]!r}")
        kind = m.lastgroup
        val = m.group(kind)
        if kind == "name" and val in _KEYWORDS:
            kind = "kw"
        out.append((kind, val))
        pos = m.end()
    return out


class _Parser:
    def __init__(self, text: str):
        self.text = text
        self.toks = _tokenize(text)
        self.i = 0

    def peek(self):
        return self.toks[self.i] if self.i < len(self.toks) else (None, None)

    def take(self, value: str | None = None):
        tok = self.peek()
        if tok[0] is None or (value is not None and tok[1] != value):
            raise OutcomeSpecError(f"{self.text!r}: expected {value or 'more'} at token {self.i + 1}")
        self.i += 1
        return tok

    def parse(self):
        node = self.or_()
        if self.i != len(self.toks):
            raise OutcomeSpecError(f"{self.text!r}: unexpected {self.toks[self.i][1]!r}")
        return node

    def or_(self):
        node = self.and_()
        while self.peek() == ("kw", "or"):
            self.take()
            node = ("or", node, self.and_())
        return node

    def and_(self):
        node = self.not_()
        while self.peek() == ("kw", "and"):
            self.take()
            node = ("and", node, self.not_())
        return node

    def not_(self):
        if self.peek() == ("kw", "not"):
            self.take()
            return ("not", self.not_())
        return self.cmp()

    def cmp(self):
        node = self.arith()
        if self.peek()[0] == "op" and self.peek()[1] in ("==", "!=", ">", ">=", "<", "<="):
            op = self.take()[1]
            node = ("cmp", op, node, self.arith())
        return node

    def arith(self):
        node = self.term()
        while self.peek()[0] == "op" and self.peek()[1] in ("+", "-"):
            op = self.take()[1]
            node = ("bin", op, node, self.term())
        return node

    def term(self):
        node = self.factor()
        while self.peek()[0] == "op" and self.peek()[1] in ("*", "/"):
            op = self.take()[1]
            node = ("bin", op, node, self.factor())
        return node

    def factor(self):
        kind, val = self.peek()
        if kind is None:
            raise OutcomeSpecError(f"{self.text!r}: ends too early")
        if (kind, val) == ("op", "("):
            self.take()
            node = self.or_()
            self.take(")")
            return node
        if (kind, val) == ("op", "-"):
            self.take()
            return ("neg", self.factor())
        self.take()
        if kind == "num":
            return ("lit", float(val))
        if kind == "str":
            return ("lit", val[1:-1])
        if kind == "kw" and val in ("true", "false"):
            return ("lit", val == "true")
        if kind == "name":
            return ("name", val.strip("`"))
        raise OutcomeSpecError(f"{self.text!r}: unexpected {val!r}")


def _names(node) -> set[str]:
    if node[0] == "name":
        return {node[1]}
    if node[0] == "lit":
        return set()
    return set().union(*(_names(c) for c in node[1:] if isinstance(c, tuple)))


def _eval(node, env: Mapping[str, pd.Series]):
    kind = node[0]
    if kind == "lit":
        return node[1]
    if kind == "name":
        return env[node[1]]
    if kind == "neg":
        return -_eval(node[1], env)
    if kind == "not":
        return ~_truth(_eval(node[1], env))
    if kind in ("and", "or"):
        a, b = _truth(_eval(node[1], env)), _truth(_eval(node[2], env))
        return (a & b) if kind == "and" else (a | b)
    a, b = _eval(node[2], env), _eval(node[3], env)
    op = node[1]
    if kind == "bin":
        return {"+": lambda: a + b, "-": lambda: a - b, "*": lambda: a * b, "/": lambda: a / b}[op]()
    return {"==": lambda: a == b, "!=": lambda: a != b, ">": lambda: a > b, ">=": lambda: a >= b, "<": lambda: a < b, "<=": lambda: a <= b}[op]()


def _truth(v):
    if isinstance(v, pd.Series):
        return v.astype(bool) if pd.api.types.is_bool_dtype(v) else (v != 0)
    return bool(v)


def _parse(text: str, where: str):
    try:
        return _Parser(str(text)).parse()
    except OutcomeSpecError as exc:
        raise OutcomeSpecError(f"{where}: {exc}") from None


class Aggregate(BaseModel):
    """Rows matching every ``where`` condition; their count, or the sum of ``sum`` (an expression)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    where: list[str] = []
    sum: str | None = None

    @field_validator("where", mode="before")
    @classmethod
    def _listify(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v

    @model_validator(mode="after")
    def _parses(self):
        for i, w in enumerate(self.where):
            _parse(w, f"where[{i}]")
        if self.sum is not None:
            _parse(self.sum, "sum")
        return self


_DIRECTIONS = {"at_least": "at_least", "higher_is_better": "at_least", "at_most": "at_most", "lower_is_better": "at_most"}


class OutcomeSpec(BaseModel):
    """A business-outcome SLI over joined rows: value = numerator / denominator.

    Shorthands (the spec's ``labels.business_outcomes``):
      * ``share_of_value_caught`` with ``value_column``: sum of value where label == 1 and
        prediction == 1, over the sum of value where label == 1 (fraud: share of fraudulent amount
        the model flagged).
      * ``share_late`` with ``minutes``: share of rows where label - prediction > minutes (eta:
        deliveries later than promised by more than that).
    The generic form, ``kind: ratio``: ``numerator`` and ``denominator`` Aggregates, e.g.
    ``{name: x, numerator: {where: ["label == 1", "prediction == 1"], sum: amount},
    denominator: {where: ["label == 1"], sum: amount}, threshold: 0.5, direction: at_least}``.
    ``direction``: at_least (good when value >= threshold) or at_most (good when value <= threshold).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str
    kind: Literal["ratio", "share_of_value_caught", "share_late"] = "ratio"
    numerator: Aggregate | None = None
    denominator: Aggregate | None = None
    value_column: str | None = None
    minutes: float | None = None
    threshold: float | None = None
    direction: str = "at_least"
    description: str = ""

    @field_validator("direction")
    @classmethod
    def _direction(cls, v: str) -> str:
        if v not in _DIRECTIONS:
            raise ValueError(f"direction {v!r}: expected at_least or at_most")
        return _DIRECTIONS[v]

    @model_validator(mode="after")
    def _expand(self):
        if self.kind == "share_of_value_caught":
            if not self.value_column:
                raise ValueError(f"{self.name}: share_of_value_caught needs value_column (e.g. amount)")
            col = f"`{self.value_column}`"
            object.__setattr__(self, "numerator", Aggregate(where=["label == 1", "prediction == 1"], sum=col))
            object.__setattr__(self, "denominator", Aggregate(where=["label == 1"], sum=col))
        elif self.kind == "share_late":
            if self.minutes is None:
                raise ValueError(f"{self.name}: share_late needs minutes (e.g. 10)")
            object.__setattr__(self, "numerator", Aggregate(where=[f"label - prediction > {float(self.minutes)!r}"]))
            object.__setattr__(self, "denominator", Aggregate())
        elif self.numerator is None or self.denominator is None:
            raise ValueError(f"{self.name}: a ratio outcome needs numerator and denominator")
        return self


@dataclass
class OutcomeResult:
    """One business outcome on one set of rows. status: met | breached | no_threshold | undefined | error."""

    name: str
    value: float | None
    numerator: float | None
    denominator: float | None
    n_rows: int
    threshold: float | None
    direction: str
    status: str
    met: bool | None
    reason: str = ""
    excluded: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {k: _plain(v) for k, v in self.__dict__.items()}


def business_outcomes(
    rows: pd.DataFrame,
    specs: Sequence[OutcomeSpec | Mapping[str, Any] | Any],
    *,
    label_col: str = "label",
    prediction_col: str | None = None,
    score_col: str | None = None,
    threshold: float = 0.5,
) -> list[OutcomeResult]:
    """Evaluate business-outcome specs on joined rows (call per prediction day).

    Role names in expressions: ``label`` = ``rows[label_col]``; ``prediction`` = ``rows[prediction_col]``,
    or, when only ``score_col`` is given, 1 where score >= ``threshold`` else 0; ``score`` =
    ``rows[score_col]``. Any other name is a column of ``rows``. Rows with a missing value in any
    column the outcome uses are left out of both numerator and denominator (counted in
    ``excluded``). A spec naming an unknown column gives status "error" with the reason; the other
    outcomes are still computed. Specs may be OutcomeSpec, dicts, or objects with ``model_dump``.
    """
    if not isinstance(rows, pd.DataFrame):
        raise MetricInputError(f"business_outcomes: expected a DataFrame, got {type(rows).__name__}")
    env: dict[str, pd.Series] = {c: rows[c] for c in rows.columns if isinstance(c, str)}
    if label_col in rows.columns:
        env["label"] = rows[label_col]
    if prediction_col is not None:
        if prediction_col not in rows.columns:
            raise MetricInputError(f"business_outcomes: prediction column {prediction_col!r} is missing")
        env["prediction"] = rows[prediction_col]
    elif score_col is not None and score_col in rows.columns:
        sc = pd.to_numeric(rows[score_col], errors="coerce")
        env["prediction"] = (sc >= threshold).astype("float64").where(sc.notna())
    if score_col is not None and score_col in rows.columns:
        env["score"] = rows[score_col]
    results = []
    for raw in specs:
        if isinstance(raw, OutcomeSpec):
            spec = raw
        else:
            data = raw.model_dump() if hasattr(raw, "model_dump") else dict(raw)
            try:
                spec = OutcomeSpec.model_validate(data)
            except Exception as exc:  # pydantic's ValidationError, or OutcomeSpecError from a parser
                raise OutcomeSpecError(f"business outcome {data.get('name', '?')!r}: {exc}") from None
        results.append(_outcome(rows, spec, env))
    return results


def _outcome(rows: pd.DataFrame, spec: OutcomeSpec, env: Mapping[str, pd.Series]) -> OutcomeResult:
    assert spec.numerator is not None and spec.denominator is not None
    parts = {
        "numerator": spec.numerator,
        "denominator": spec.denominator,
    }
    trees = {
        side: ([_parse(w, f"{spec.name}.{side}.where") for w in agg.where], _parse(agg.sum, f"{spec.name}.{side}.sum") if agg.sum else None)
        for side, agg in parts.items()
    }
    used: set[str] = set()
    for conds, s in trees.values():
        for c in conds:
            used |= _names(c)
        if s is not None:
            used |= _names(s)
    base = dict(name=spec.name, threshold=spec.threshold, direction=spec.direction, n_rows=int(len(rows)))
    unknown = sorted(u for u in used if u not in env)
    if unknown:
        roles = {"prediction": "pass prediction_col or score_col", "label": "pass label_col", "score": "pass score_col"}
        hint = "; ".join(f"{u}: {roles[u]}" for u in unknown if u in roles)
        return OutcomeResult(
            value=None, numerator=None, denominator=None, status="error", met=None,
            reason=f"column(s) {', '.join(unknown)} not in the joined rows" + (f" ({hint})" if hint else ""),
            **base,
        )
    known = pd.Series(True, index=rows.index)
    for u in used:
        known &= env[u].notna()
    excluded = int((~known).sum())
    sub_env = {u: env[u][known] for u in used}
    try:
        totals = {}
        for side, (conds, s) in trees.items():
            mask = pd.Series(True, index=rows.index[known.to_numpy()])
            for c in conds:
                m = _truth(_eval(c, sub_env))
                mask &= m if isinstance(m, pd.Series) else bool(m)
            if s is None:
                totals[side] = float(mask.sum())
            else:
                val = _eval(s, sub_env)
                val = val if isinstance(val, pd.Series) else pd.Series(float(val), index=mask.index)
                totals[side] = float(pd.to_numeric(val[mask], errors="raise").sum())
    except (TypeError, ValueError) as exc:
        return OutcomeResult(
            value=None, numerator=None, denominator=None, status="error", met=None,
            reason=f"cannot compute: {exc}", excluded=excluded, **base,
        )
    num, den = totals["numerator"], totals["denominator"]
    note = f"{excluded} row(s) with a missing {', '.join(sorted(used))} left out" if excluded else ""
    if den == 0:
        return OutcomeResult(
            value=None, numerator=num, denominator=den, status="undefined", met=None,
            reason="denominator is 0 (no rows match)" + (f"; {note}" if note else ""), excluded=excluded, **base,
        )
    value = num / den
    if spec.threshold is None:
        status, met, reason = "no_threshold", None, "no threshold declared"
    else:
        met = value >= spec.threshold if spec.direction == "at_least" else value <= spec.threshold
        word = "at least" if spec.direction == "at_least" else "at most"
        status = "met" if met else "breached"
        reason = f"{value:.4g} {'meets' if met else 'breaches'} the objective: {word} {spec.threshold:g}"
    if note:
        reason += f"; {note}"
    return OutcomeResult(value=value, numerator=num, denominator=den, status=status, met=met, reason=reason, excluded=excluded, **base)
