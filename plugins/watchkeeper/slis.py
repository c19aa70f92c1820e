"""The SLIs an SLO may name: one registry, read by check-config, `watchkeeper init` and the docs.

Two families:
- **monitor SLIs**, written by the monitor DAG for every day (`record_slis`);
- **quality SLIs**, written by the labels DAG per prediction-day: a metric of the model's task
  (`watchkeeper.performance`) or a business outcome the spec declares (`labels.business_outcomes`).
  An SLO on one of them is a model-quality SLO (`quality: true`, a `timeslice` with a threshold).

A new SLI is added here (and written by its DAG task); check-config then accepts it, suggests it
for misspellings and the README lists it. Standard library only: check-config imports it early.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass


@dataclass(frozen=True)
class SliInfo:
    name: str
    family: str  # "monitor" | "quality" | "business outcome"
    kinds: tuple[str, ...]  # the SLO kinds that can use it
    meaning: str


# name -> (SLO kinds that work with it, what the value is)
MONITOR_SLIS: dict[str, tuple[tuple[str, ...], str]] = {
    "data_quality": (("ratio", "timeslice"), "expectation results passing / evaluated, both stages"),
    "freshness": (("timeslice",), "hours between landing and deadline; good when landed by the deadline"),
    "prediction_stability": (("timeslice",), "good when no prediction monitor alerted"),
    "feature_drift": (("timeslice",), "good when no feature drifted (drift or skew)"),
}

# Per task: the values the labels DAG stores per prediction-day (watchkeeper.performance's
# metric sets; tests/test_onboard.py checks that these are exactly the keys it computes).
QUALITY_METRICS: dict[str, tuple[str, ...]] = {
    "binary_classification": ("precision", "recall", "f1", "accuracy", "roc_auc", "pr_auc", "ece",
                              "positive_rate", "predicted_positive_rate", "mean_score"),
    "regression": ("mae", "rmse", "bias", "abs_error_p50", "abs_error_p90", "abs_error_p99",
                   "mean_actual", "mean_prediction"),
    "ranking": ("map", "ndcg_at_k"),
}

# Which way is better, for the metrics an SLO is commonly set on (init and suggestions use it).
HIGHER_IS_BETTER = {"precision", "recall", "f1", "accuracy", "roc_auc", "pr_auc", "map",
                    "ndcg_at_k"}


def known(task: str, business_outcomes: list[str] | tuple[str, ...] = ()) -> dict[str, SliInfo]:
    """Every SLI an SLO of a model of `task` can name."""
    from watchkeeper.spec import QUALITY_RATIO_SLIS

    ratio = QUALITY_RATIO_SLIS.get(task, {})
    out = {n: SliInfo(n, "monitor", kinds, meaning) for n, (kinds, meaning) in MONITOR_SLIS.items()}
    for m in QUALITY_METRICS.get(task, ()):
        kinds = ("ratio", "timeslice") if m in ratio else ("timeslice",)
        out[m] = SliInfo(m, "quality", kinds, f"{task} metric per prediction-day")
    for m, meaning in ratio.items():  # ratio-only quality SLIs (within_tolerance)
        out.setdefault(m, SliInfo(m, "quality", ("ratio",), meaning))
    for b in business_outcomes:
        out[b] = SliInfo(b, "business outcome", ("timeslice",), "a business outcome of the spec")
    return out


def task_of_metric(name: str) -> list[str]:
    """The tasks whose labels DAG computes `name` (for "mae is a regression metric")."""
    return [t for t, ms in QUALITY_METRICS.items() if name in ms]


def did_you_mean(name: str, choices) -> str | None:
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return close[0] if close else None
