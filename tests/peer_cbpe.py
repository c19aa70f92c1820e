"""An independent CBPE (confidence-based performance estimation), the yardstick Watchkeeper's
estimate is tested against.

Written from the method's published description (NannyML's "Estimation of Performance of the
Monitored Model", binary classification, and its appendix on probability calibration), not from
Watchkeeper's code: it imports numpy only, nothing from watchkeeper, scikit-learn or scipy.

* Calibration: isotonic regression of the reference labels on the reference scores by the
  pool-adjacent-violators algorithm (tied scores pooled first). The fitted function is constant
  on each pooled block and linear between the last score of a block and the first score of the
  next; outside the reference's scores it keeps the end values. (That is the convention of the
  isotonic regression NannyML calibrates with, so the two estimates differ only by floating-point
  summation order.)
* Per row j, with p_j the calibrated probability and yhat_j the predicted class (raw score >=
  threshold): P(correct)_j = 1 - |yhat_j - p_j|; TP_j = P(correct)_j when yhat_j = 1, TN_j = the
  same when yhat_j = 0, FP_j / FN_j the complements; the set's TP, FP, TN, FN are the sums, and
  accuracy, precision, recall and f1 follow from them.
* ROC AUC: for every distinct calibrated probability t (and one threshold above them all), the
  predictions p_j >= t give TP(t), FP(t), TN(t), FN(t) as above; TPR = TP / (TP + FN) and FPR =
  FP / (FP + TN) trace the expected ROC curve from (0, 0) to (1, 1), whose area is summed by
  trapezoids.
"""

from __future__ import annotations

import numpy as np

METRICS = ("accuracy", "precision", "recall", "f1", "roc_auc")


class PeerCalibrator:
    """Isotonic calibration by pool-adjacent-violators."""

    def __init__(self, scores, labels):
        s = np.asarray(scores, dtype=float)
        y = np.asarray(labels, dtype=float)
        ok = np.isfinite(s) & np.isfinite(y)
        s, y = s[ok], y[ok]
        distinct, group = np.unique(s, return_inverse=True)  # sorted distinct scores
        weight = np.bincount(group).astype(float)
        total = np.bincount(group, weights=y)
        # Each block: [sum of labels, rows, index of its first distinct score, index of its last]
        blocks: list[list[float]] = []
        for i in range(len(distinct)):
            blocks.append([total[i], weight[i], i, i])
            # Merge backwards while the previous block's mean exceeds the new one's.
            while len(blocks) > 1 and blocks[-2][0] * blocks[-1][1] > blocks[-1][0] * blocks[-2][1]:
                last = blocks.pop()
                blocks[-1][0] += last[0]
                blocks[-1][1] += last[1]
                blocks[-1][3] = last[3]
        xs, ys = [], []
        for label_sum, rows, first, last in blocks:
            mean = label_sum / rows
            xs.append(distinct[int(first)])
            ys.append(mean)
            if last != first:
                xs.append(distinct[int(last)])
                ys.append(mean)
        self.knots_x = np.array(xs)
        self.knots_y = np.array(ys)

    def __call__(self, scores) -> np.ndarray:
        x = np.asarray(scores, dtype=float)
        kx, ky = self.knots_x, self.knots_y
        if len(kx) == 1:
            return np.full(len(x), ky[0])
        left = np.clip(np.searchsorted(kx, x, side="right") - 1, 0, len(kx) - 2)
        x0, x1, y0, y1 = kx[left], kx[left + 1], ky[left], ky[left + 1]
        t = np.clip((x - x0) / (x1 - x0), 0.0, 1.0)  # outside the knots: the end value
        return y0 + t * (y1 - y0)


def _confusion(p: np.ndarray, yhat: np.ndarray) -> dict[str, float]:
    correct = 1.0 - np.abs(yhat - p)
    wrong = 1.0 - correct
    pos = yhat == 1
    return {"tp": float(correct[pos].sum()), "fp": float(wrong[pos].sum()),
            "tn": float(correct[~pos].sum()), "fn": float(wrong[~pos].sum())}


def _ratio(a: float, b: float) -> float | None:
    return a / b if b > 0 else None


def expected_roc_auc(p: np.ndarray) -> float | None:
    thresholds = np.unique(p)  # ascending
    # Sums over p >= t for each threshold, from the largest threshold down (suffix sums).
    order = np.argsort(p)
    sp = p[order]
    first = np.searchsorted(sp, thresholds, side="left")
    suffix_pos = np.concatenate([np.cumsum(sp[::-1])[::-1], [0.0]])
    suffix_neg = np.concatenate([np.cumsum((1.0 - sp)[::-1])[::-1], [0.0]])
    tp, fp = suffix_pos[first], suffix_neg[first]
    all_pos, all_neg = float(p.sum()), float((1.0 - p).sum())
    if all_pos <= 0 or all_neg <= 0:
        return None
    # TP + FN is every row's p: the expected positives, whatever the threshold.
    tpr = np.concatenate([tp / all_pos, [0.0]])  # last point: a threshold above every p
    fpr = np.concatenate([fp / all_neg, [0.0]])
    area = 0.0
    for i in range(len(tpr) - 1):
        area += (fpr[i] - fpr[i + 1]) * (tpr[i] + tpr[i + 1]) / 2.0
    return float(area)


def estimate(scores, threshold: float, calibrator: PeerCalibrator | None = None) -> dict[str, float | None]:
    """CBPE's accuracy, precision, recall, f1 and roc_auc for one set of predictions."""
    s = np.asarray(scores, dtype=float)
    s = s[np.isfinite(s)]
    p = calibrator(s) if calibrator is not None else s
    yhat = (s >= threshold).astype(float)
    c = _confusion(p, yhat)
    n = len(s)
    return {
        "accuracy": _ratio(c["tp"] + c["tn"], n),
        "precision": _ratio(c["tp"], c["tp"] + c["fp"]),
        "recall": _ratio(c["tp"], c["tp"] + c["fn"]),
        "f1": _ratio(2 * c["tp"], 2 * c["tp"] + c["fp"] + c["fn"]),
        "roc_auc": expected_roc_auc(p),
    }
