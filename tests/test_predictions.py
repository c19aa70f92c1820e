"""Prediction monitors on synthetic model output with known truth.

Healthy days are drawn from the same generator as the reference, so every alert on them is a
false alarm; incident days change one thing the monitor should see.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from watchkeeper.predictions import (
    BaselineError,
    DaySummary,
    PredictionBaseline,
    _drift_stat,
    _wasserstein_bootstrap,
    _wasserstein_from_counts,
    build_prediction_baseline,
    monitor_predictions,
)

# ---------------------------------------------------------------------------------- generators


def fraud_day(n: int, rng: np.random.Generator, fraud_rate: float = 0.05, legit_shift: float = 0.0) -> pd.DataFrame:
    """Fraud classifier output: legit rows score low, fraud rows high; label = score >= 0.5."""
    fraud = rng.random(n) < fraud_rate
    score = np.where(fraud, rng.beta(6, 2, n), rng.beta(1 + legit_shift, 14, n))
    return pd.DataFrame({"txn_id": np.arange(n), "score": score, "predicted_label": (score >= 0.5).astype(int)})


def eta_day(n: int, rng: np.random.Generator, shift: float = 0.0) -> pd.DataFrame:
    return pd.DataFrame({"predicted_minutes": rng.gamma(6.0, 5.0, n) + shift})


ITEMS = np.array([f"sku-{i:04d}" for i in range(2000)])


def popularity(exponent: float) -> np.ndarray:
    w = 1.0 / np.arange(1, ITEMS.size + 1) ** exponent
    return w / w.sum()


HEALTHY_POP = popularity(0.8)


def reco_day(queries: int, rng: np.random.Generator, pop: np.ndarray = HEALTHY_POP) -> pd.DataFrame:
    """A recommender's output: 10 items per query drawn by popularity, with a model score."""
    items = rng.choice(ITEMS.size, size=(queries, 10), p=pop)
    return pd.DataFrame({
        "query_id": np.repeat(np.arange(queries), 10),
        "item_id": ITEMS[items.ravel()],
        "score": rng.beta(2, 5, queries * 10),
    })


# ---------------------------------------------------------------------------------- baselines


@pytest.fixture(scope="module")
def fraud_baseline() -> PredictionBaseline:
    rng = np.random.default_rng(100)
    days = [fraud_day(20_000, rng) for _ in range(14)]
    return build_prediction_baseline(days, task="binary_classification", score_col="score",
                                     label_col="predicted_label")


@pytest.fixture(scope="module")
def eta_baseline() -> PredictionBaseline:
    rng = np.random.default_rng(200)
    return build_prediction_baseline([eta_day(20_000, rng) for _ in range(14)], task="regression",
                                     score_col="predicted_minutes")


@pytest.fixture(scope="module")
def reco_baseline() -> PredictionBaseline:
    rng = np.random.default_rng(300)
    return build_prediction_baseline([reco_day(2_000, rng) for _ in range(7)], task="ranking",
                                     item_col="item_id", query_col="query_id", score_col="score")


def run_days(baseline, make_day, days: int, seed: int) -> dict[str, int]:
    """Monitor `days` healthy days, each with the previous day's summary; count alerts per monitor."""
    rng = np.random.default_rng(seed)
    alerts: dict[str, int] = {}
    history: list[dict] = []
    for d in range(days):
        ds = f"2026-03-{d // 28 + 1:02d}T{d % 28:02d}"  # any sortable day label
        report = monitor_predictions(make_day(rng), baseline, history=history[-2:], ds=ds)
        history.append(report.summary.to_dict())
        for m in report.monitors:
            alerts[m.name] = alerts.get(m.name, 0) + int(m.alert)
    return alerts


# ---------------------------------------------------------------------------------- binary


@pytest.mark.parametrize("n", [200, 20_000])
def test_positive_rate_jump_from_5_to_30_percent_alerts(fraud_baseline, n):
    rng = np.random.default_rng(n)
    report = monitor_predictions(fraud_day(n, rng, fraud_rate=0.30), fraud_baseline)
    pr = report.monitor("positive_rate")
    assert pr.alert and pr.value > pr.upper
    assert "above the expected band" in pr.message
    assert pr.details["wilson_low"] > fraud_baseline.positive_rate  # Wilson interval excludes p0
    assert report.monitor("score_drift").alert
    assert report.monitor("class_mix").alert
    assert report.alert


def test_positive_rate_band_widens_for_small_batches(fraud_baseline):
    rng = np.random.default_rng(7)
    small = monitor_predictions(fraud_day(200, rng), fraud_baseline).monitor("positive_rate")
    large = monitor_predictions(fraud_day(20_000, rng), fraud_baseline).monitor("positive_rate")
    assert (small.upper - small.lower) > 5 * (large.upper - large.lower)
    # about 8.5% positives instead of 4.7%: a clear change at 20,000 rows
    big = monitor_predictions(fraud_day(20_000, rng, fraud_rate=0.09), fraud_baseline).monitor("positive_rate")
    assert big.alert


@pytest.mark.parametrize("n", [200, 20_000])
def test_same_distribution_days_rarely_alert_binary(fraud_baseline, n):
    alerts = run_days(fraud_baseline, lambda rng: fraud_day(n, rng), days=100, seed=n + 1)
    assert set(alerts) == {"positive_rate", "class_mix", "score_drift", "stagnation"}
    assert all(count <= 5 for count in alerts.values()), alerts


def test_score_drift_detects_shifted_scores_with_stable_positive_rate(fraud_baseline):
    rng = np.random.default_rng(11)
    report = monitor_predictions(fraud_day(20_000, rng, legit_shift=0.6), fraud_baseline)
    drift = report.monitor("score_drift")
    assert drift.alert and drift.value > drift.upper
    assert drift.details["method"] == "wasserstein"
    assert "drifted" in drift.message
    # the shift stays below the 0.5 decision threshold: the positive rate barely moves
    assert abs(report.monitor("positive_rate").value - fraud_baseline.positive_rate) < 0.01


def test_wasserstein_fast_path_equals_evidently_stat_test():
    # the bootstrap computes the statistic from draw counts; it must equal Evidently's own test
    rng = np.random.default_rng(5)
    ref = np.sort(np.round(rng.beta(1, 12, 3000), 3))  # ties included
    counts = np.stack([np.bincount(rng.integers(0, ref.size, n), minlength=ref.size) for n in (50, 500, 5000)])
    stat = _drift_stat("wasserstein")
    slow = [stat(ref, np.repeat(ref, c)) for c in counts]
    np.testing.assert_allclose(_wasserstein_from_counts(ref, counts), slow, rtol=1e-9)
    boot = _wasserstein_bootstrap(ref, 500, 300, np.random.default_rng(1))
    assert boot.shape == (300,) and 0 < np.median(boot) < 0.5


# ---------------------------------------------------------------------------------- multiclass


def test_class_mix_alerts_on_moved_mix_and_new_class():
    rng = np.random.default_rng(21)

    def day(n, p, classes=("car", "bike", "walk")):
        return pd.DataFrame({"mode": rng.choice(list(classes), n, p=p)})

    base = build_prediction_baseline([day(5_000, [0.6, 0.3, 0.1]) for _ in range(7)],
                                     task="multiclass_classification", label_col="mode")
    calm = monitor_predictions(day(5_000, [0.6, 0.3, 0.1]), base)
    assert not calm.monitor("class_mix").alert
    assert calm.monitor("positive_rate") is None  # no positive class in a multiclass model
    moved = monitor_predictions(day(5_000, [0.45, 0.3, 0.25]), base).monitor("class_mix")
    assert moved.alert and "'walk'" in moved.message and "'car'" in moved.message
    assert {c["class"]: c["alert"] for c in moved.details["classes"]} == {"bike": False, "car": True, "walk": True}
    new = monitor_predictions(day(5_000, [0.55, 0.3, 0.1, 0.05], ("car", "bike", "walk", "scooter")), base)
    assert "never predicted in the reference" in new.monitor("class_mix").message


# ---------------------------------------------------------------------------------- regression


@pytest.mark.parametrize(("n", "shift"), [(200, 6.0), (20_000, 1.0)])
def test_regression_mean_shift_alerts(eta_baseline, n, shift):
    report = monitor_predictions(eta_day(n, np.random.default_rng(31), shift=shift), eta_baseline)
    mean = report.monitor("mean_prediction")
    assert mean.alert and mean.value > mean.upper and "above" in mean.message
    # the same shift at the other batch size is (for 1 minute at 200 rows) within noise
    if n == 20_000:
        small = monitor_predictions(eta_day(200, np.random.default_rng(32), shift=shift), eta_baseline)
        assert not small.monitor("mean_prediction").alert


@pytest.mark.parametrize("n", [200, 20_000])
def test_same_distribution_days_rarely_alert_regression(eta_baseline, n):
    alerts = run_days(eta_baseline, lambda rng: eta_day(n, rng), days=100, seed=n + 2)
    assert set(alerts) == {"mean_prediction", "score_drift", "stagnation"}
    assert all(count <= 5 for count in alerts.values()), alerts


# ---------------------------------------------------------------------------------- ranking


@pytest.mark.parametrize("queries", [20, 2_000])  # 200 and 20,000 recommendation rows
def test_same_distribution_days_rarely_alert_ranking(reco_baseline, queries):
    alerts = run_days(reco_baseline, lambda rng: reco_day(queries, rng), days=100, seed=queries + 3)
    assert set(alerts) == {"distinct_share", "top_item_entropy", "score_drift", "stagnation"}
    assert all(count <= 5 for count in alerts.values()), alerts


@pytest.mark.parametrize("queries", [20, 2_000])
def test_ranking_diversity_collapse_alerts(reco_baseline, queries):
    # a feedback loop: popular items get shown more, so get clicked more, so get shown more
    report = monitor_predictions(reco_day(queries, np.random.default_rng(41), pop=popularity(1.5)), reco_baseline)
    for name in ("distinct_share", "top_item_entropy"):
        m = report.monitor(name)
        assert m.alert and m.value < m.lower and "concentrate" in m.message
    assert not report.monitor("score_drift").alert  # the scores themselves did not move
    assert report.summary.top_items[0][0] == "sku-0000"


def test_ranking_diversity_rise_is_reported_not_alerted(reco_baseline):
    report = monitor_predictions(reco_day(2_000, np.random.default_rng(42), pop=popularity(0.3)), reco_baseline)
    m = report.monitor("distinct_share")
    assert not m.alert and "rose" in m.message


# ---------------------------------------------------------------------------------- stagnation


def test_identical_outputs_on_consecutive_days_alert(fraud_baseline):
    rng = np.random.default_rng(51)
    day = fraud_day(20_000, rng)
    first = monitor_predictions(day, fraud_baseline, ds="2026-04-01")
    assert first.monitor("stagnation") is None
    assert any("stagnation needs a previous day" in p.message for p in first.problems)
    # same outputs served again, rows in another order (a cache that stopped refreshing)
    second = monitor_predictions(day.sample(frac=1.0, random_state=1), fraud_baseline,
                                 history=[first.summary], ds="2026-04-02")
    stag = second.monitor("stagnation")
    assert stag.alert and stag.value == 0.0 and stag.details["identical_streak_days"] == 2
    assert "identical to the previous day (2026-04-01)" in stag.message
    third = monitor_predictions(day, fraud_baseline, history=[first.summary.to_dict(), second.summary.to_dict()],
                                ds="2026-04-03")
    assert third.monitor("stagnation").details["identical_streak_days"] == 3
    # a normal next day moves
    fresh = monitor_predictions(fraud_day(20_000, rng), fraud_baseline, history=[first.summary], ds="2026-04-02")
    assert not fresh.monitor("stagnation").alert


def test_nearly_frozen_outputs_alert(eta_baseline):
    rng = np.random.default_rng(52)
    day = eta_day(20_000, rng)
    first = monitor_predictions(day, eta_baseline, ds="2026-04-01")
    frozen = day.copy()
    frozen.loc[:199, "predicted_minutes"] = eta_day(200, rng)["predicted_minutes"].to_numpy()  # 1% refreshed
    report = monitor_predictions(frozen, eta_baseline, history=[first.summary], ds="2026-04-02")
    stag = report.monitor("stagnation")
    # one quiet day is not yet a frozen model: the state must hold two days running
    assert stag.value < stag.lower and not stag.alert
    still = frozen.copy()
    still.loc[200:399, "predicted_minutes"] = eta_day(200, rng)["predicted_minutes"].to_numpy()
    report = monitor_predictions(still, eta_baseline, history=[first.summary, report.summary], ds="2026-04-03")
    stag = report.monitor("stagnation")
    assert stag.alert and not stag.details["identical_to_previous"]
    assert stag.value < stag.lower and "nearly frozen two days running" in stag.message
    assert stag.details["previous_change"] < stag.details["previous_lower"]


def test_history_on_or_after_today_is_ignored(fraud_baseline):
    rng = np.random.default_rng(53)
    day = fraud_day(2_000, rng)
    today = monitor_predictions(day, fraud_baseline, ds="2026-04-02")
    # a retry of 2026-04-02 sees its own earlier summary in the store: not a previous day
    retry = monitor_predictions(day, fraud_baseline, history=[today.summary], ds="2026-04-02")
    assert retry.monitor("stagnation") is None
    assert any("ignored for stagnation" in p.message for p in retry.problems)


# ---------------------------------------------------------------------------------- problems


def test_empty_batch_is_a_problem_not_an_exception(fraud_baseline):
    report = monitor_predictions(fraud_day(0, np.random.default_rng(0)), fraud_baseline)
    assert report.monitors == [] and report.n_rows == 0
    assert report.problems[0].kind == "problem" and "0 rows" in report.problems[0].message
    assert "positive_rate" in report.problems[0].monitors
    json.dumps(report.to_dict())


def test_missing_score_column_keeps_label_monitors(fraud_baseline):
    batch = fraud_day(2_000, np.random.default_rng(61)).drop(columns=["score"])
    report = monitor_predictions(batch, fraud_baseline)
    assert {m.name for m in report.monitors} == {"positive_rate", "class_mix"}
    problem = next(p for p in report.problems if p.column == "score")
    assert "missing from the batch" in problem.message and "score_drift" in problem.monitors


def test_all_null_and_bad_scores_are_reported(fraud_baseline):
    rng = np.random.default_rng(62)
    batch = fraud_day(1_000, rng)
    batch["score"] = np.nan
    report = monitor_predictions(batch, fraud_baseline)
    assert report.monitor("score_drift") is None and report.monitor("positive_rate") is not None
    problem = next(p for p in report.problems if p.column == "score")
    assert problem.kind == "problem" and "null in every row" in problem.message and problem.rows == 1_000

    batch = fraud_day(1_000, rng)
    batch["score"] = batch["score"].astype(object)
    batch.loc[[3, 5], "score"] = "n/a"
    batch.loc[7, "score"] = np.inf
    batch.loc[[8, 9], "score"] = None
    report = monitor_predictions(batch, fraud_baseline)
    assert report.monitor("score_drift") is not None and report.summary.n_scores == 995
    bad = next(p for p in report.problems if "not finite numbers" in p.message)
    assert bad.rows == 3 and bad.example_rows == [3, 5, 7]
    nulls = next(p for p in report.problems if "null" in p.message)
    assert nulls.kind == "note" and nulls.rows == 2 and nulls.example_rows == [8, 9]


def test_baseline_errors_name_day_and_column():
    rng = np.random.default_rng(71)
    days = [fraud_day(100, rng), fraud_day(100, rng).rename(columns={"score": "p"})]
    with pytest.raises(BaselineError, match=r"reference day 1: column\(s\) \['score'\] missing"):
        build_prediction_baseline(days, task="binary_classification", score_col="score")
    with pytest.raises(BaselineError, match="task 'forecast'"):
        build_prediction_baseline(days[0], task="forecast", score_col="score")
    with pytest.raises(BaselineError, match="distance stat tests"):
        build_prediction_baseline(days[0], task="regression", score_col="score", method="ks")
    with pytest.raises(BaselineError, match="positive_label 1 never appears among the predicted labels"):
        build_prediction_baseline(pd.DataFrame({"label": ["fraud", "ok", "ok"]}), task="binary_classification",
                                  label_col="label")
    with pytest.raises(BaselineError, match="schema_version"):
        PredictionBaseline.from_dict({"task": "regression"})


# ---------------------------------------------------------------------------------- storage


def test_baseline_and_report_round_trip_through_json(fraud_baseline, reco_baseline):
    for base, make in ((fraud_baseline, lambda r: fraud_day(5_000, r)), (reco_baseline, lambda r: reco_day(300, r))):
        restored = PredictionBaseline.from_dict(json.loads(json.dumps(base.to_dict())))
        rng = np.random.default_rng(81)
        prev = make(rng)
        batch = make(rng)
        history = [monitor_predictions(prev, base, ds="2026-05-01").summary]
        restored_history = [DaySummary.from_dict(json.loads(json.dumps(h.to_dict()))) for h in history]
        a = monitor_predictions(batch, base, history=history, ds="2026-05-02").to_dict()
        b = monitor_predictions(batch, restored, history=restored_history, ds="2026-05-02").to_dict()
        assert a == b
        assert json.loads(json.dumps(a)) == a
        assert {m["name"] for m in a["monitors"]} >= {"score_drift", "stagnation"}
        assert all({"value", "baseline", "alert"} <= set(m) for m in a["monitors"])
