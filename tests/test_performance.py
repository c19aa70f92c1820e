"""watchkeeper.performance: metrics equal scikit-learn's, CBPE, concept drift, sudden change, outcomes."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.calibration import calibration_curve
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    f1_score,
    mean_absolute_error,
    ndcg_score,
    precision_score,
    recall_score,
    roc_auc_score,
    root_mean_squared_error,
)

from watchkeeper.performance import (
    MetricInputError,
    OutcomeSpec,
    OutcomeSpecError,
    bucket_metrics,
    business_outcomes,
    calibration,
    cbpe_estimate,
    classification_metrics,
    compare_estimate,
    concept_drift_check,
    estimate_performance,
    evaluate,
    evaluate_by_day,
    LearningDay,
    difference_floor,
    expected_roc_auc,
    fit_calibrator,
    ranking_metrics,
    reference_calibration,
    robust_band,
    regression_metrics,
    sudden_change,
)


def _calibrated(n, seed, a=2.0, b=3.0):
    rng = np.random.default_rng(seed)
    s = rng.beta(a, b, n)
    y = (rng.random(n) < s).astype(int)
    return y, s, rng


def _sk_binary(y, s, t):
    yp = (np.asarray(s) >= t).astype(int)
    return {
        "precision": precision_score(y, yp),
        "recall": recall_score(y, yp),
        "f1": f1_score(y, yp),
        "accuracy": accuracy_score(y, yp),
        "roc_auc": roc_auc_score(y, s),
        "pr_auc": average_precision_score(y, s),
    }


# --------------------------------------------------------------------------------------------
# classification


@pytest.mark.parametrize("threshold", [0.5, 0.3])
def test_classification_metrics_equal_sklearn_overall_and_per_segment(threshold):
    y, s, rng = _calibrated(3000, 1)
    seg = pd.DataFrame({"country": rng.choice(["DE", "FR", "IT"], len(y)), "tier": rng.choice(["gold", "std"], len(y))})
    rep = classification_metrics(y, s, threshold, segments=seg)
    for name, expected in _sk_binary(y, s, threshold).items():
        assert rep.overall.values[name] == pytest.approx(expected, abs=1e-12), name
    assert rep.overall.counts["correct"] == round(accuracy_score(y, s >= threshold) * len(y))
    assert {(m.segment["column"], m.segment["value"]) for m in rep.segments} == {
        ("country", "DE"), ("country", "FR"), ("country", "IT"), ("tier", "gold"), ("tier", "std")
    }
    for m in rep.segments:
        mask = (seg[m.segment["column"]] == m.segment["value"]).to_numpy()
        assert m.n == mask.sum()
        for name, expected in _sk_binary(y[mask], s[mask], threshold).items():
            assert m.values[name] == pytest.approx(expected, abs=1e-12), (m.segment, name)
    json.dumps(rep.to_dict())


def test_binary_metrics_use_the_served_decision_when_the_spec_names_one():
    """prediction.label of a binary model: the served 0/1 decision (a rule engine, another
    threshold) is what precision, recall, f1 and accuracy describe; the AUCs stay on the score."""
    y, s, rng = _calibrated(3000, 21)
    served = (s >= 0.7).astype(int)          # the serving system thresholds at 0.7, not 0.5
    served[rng.random(len(s)) < 0.05] ^= 1   # and overrides a few by hand
    rows = pd.DataFrame({"label": y, "score": s, "predicted_label": served,
                         "country": rng.choice(["DE", "FR"], len(y))})
    rep = evaluate(rows, task="binary_classification", score_col="score",
                   prediction_col="predicted_label", threshold=0.5, segment_cols=["country"])
    v = rep.overall.values
    assert v["precision"] == pytest.approx(precision_score(y, served), abs=1e-12)
    assert v["recall"] == pytest.approx(recall_score(y, served), abs=1e-12)
    assert v["f1"] == pytest.approx(f1_score(y, served), abs=1e-12)
    assert v["accuracy"] == pytest.approx(accuracy_score(y, served), abs=1e-12)
    assert v["roc_auc"] == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert v["precision"] != pytest.approx(precision_score(y, s >= 0.5), abs=1e-3)
    de = next(m for m in rep.segments if m.segment["value"] == "DE")
    mask = (rows.country == "DE").to_numpy()
    assert de.values["precision"] == pytest.approx(precision_score(y[mask], served[mask]), abs=1e-12)
    # without a decision column the threshold decides, as before
    plain = evaluate(rows, task="binary_classification", score_col="score", threshold=0.5)
    assert plain.overall.values["precision"] == pytest.approx(precision_score(y, s >= 0.5), abs=1e-12)
    # the estimate before labels counts the same decisions as predicted positives
    est = cbpe_estimate(s, 0.5, decision=served)
    assert est.expected_counts["tp"] == pytest.approx(float(s[served == 1].sum()))
    with pytest.raises(MetricInputError, match=r"decision \(prediction.label\): binary labels must be 0 or 1"):
        classification_metrics(y, s, decision=np.where(served == 1, 2, 0))


def test_tied_scores_equal_sklearn():
    # heavy ties: the AUCs must treat tied scores exactly as sklearn does
    y, s, _ = _calibrated(2000, 12)
    coarse = np.round(s, 1)
    v = classification_metrics(y, coarse).overall.values
    assert v["roc_auc"] == pytest.approx(roc_auc_score(y, coarse), abs=1e-12)
    assert v["pr_auc"] == pytest.approx(average_precision_score(y, coarse), abs=1e-12)
    v = classification_metrics([1, 0, 1, 1], [0.5, 0.5, 0.5, 0.5]).overall.values
    assert v["roc_auc"] == roc_auc_score([1, 0, 1, 1], [0.5] * 4) == 0.5
    assert v["pr_auc"] == pytest.approx(average_precision_score([1, 0, 1, 1], [0.5] * 4))


def test_degenerate_classification_returns_none_with_notes():
    one_class = classification_metrics([0, 0, 0], [0.1, 0.7, 0.2])
    v = one_class.overall.values
    assert v["roc_auc"] is None and v["pr_auc"] is None and v["recall"] is None
    assert v["precision"] == 0.0 and v["accuracy"] == pytest.approx(2 / 3)
    assert any("roc_auc undefined" in n for n in one_class.overall.notes)
    no_pred_pos = classification_metrics([1, 0, 1], [0.1, 0.2, 0.3])
    v = no_pred_pos.overall.values
    assert v["precision"] is None and v["recall"] == 0.0
    assert v["f1"] == f1_score([1, 0, 1], [0, 0, 0], zero_division=0)
    assert any("precision undefined" in n for n in no_pred_pos.overall.notes)
    empty = classification_metrics([], [])
    assert all(v is None for k, v in empty.overall.values.items()) and empty.overall.n == 0


def test_rows_missing_a_value_are_left_out_and_counted():
    rep = classification_metrics([1, 0, np.nan, 1], [0.9, np.nan, 0.3, 0.8])
    assert rep.overall.n == 2 and rep.overall.counts["excluded"] == 2
    assert "2 row(s) without a label or score left out" in rep.overall.notes


def test_classification_caller_errors_are_typed():
    with pytest.raises(MetricInputError, match="position 1 holds 2.0"):
        classification_metrics([1, 2], [0.5, 0.5])
    with pytest.raises(MetricInputError, match="3 values but score has 2"):
        classification_metrics([1, 0, 1], [0.5, 0.5])
    with pytest.raises(MetricInputError, match="segments has 1 rows"):
        classification_metrics([1, 0], [0.5, 0.5], segments=pd.DataFrame({"c": ["a"]}))


def test_bucket_metrics_are_deciles_and_equal_sklearn_within_each():
    y, s, _ = _calibrated(2000, 2)
    b = bucket_metrics(y, s, 0.5)
    assert len(b.buckets) == 10 and sum(m.n for m in b.buckets) == 2000
    assert all(m.n == 200 for m in b.buckets)
    assert b.edges == pytest.approx(list(np.quantile(s, np.linspace(0, 1, 11))))
    for m in b.buckets:
        lo, hi = m.segment["low"], m.segment["high"]
        mask = (s > lo) & (s <= hi) if m.segment["bucket"] else (s >= lo) & (s <= hi)
        assert m.n == mask.sum()
        assert m.values["accuracy"] == pytest.approx(accuracy_score(y[mask], s[mask] >= 0.5))
        if 0 < y[mask].sum() < mask.sum():
            assert m.values["roc_auc"] == pytest.approx(roc_auc_score(y[mask], s[mask]))
    fixed = bucket_metrics(y, s, edges=[0.2, 0.5, 0.8])
    assert [m.n for m in fixed.buckets] == [int((s <= 0.5).sum()), int((s > 0.5).sum())]


def test_calibration_matches_sklearn_curve_and_textbook_ece():
    y, s, _ = _calibrated(5000, 3)
    skewed = s**2  # over-confident in the negative direction: not calibrated
    ece, table = calibration(y, skewed, bins=10)
    prob_true, prob_pred = calibration_curve(y, skewed, n_bins=10, strategy="uniform")
    filled = [r for r in table if r["n"]]
    assert [r["positive_rate"] for r in filled] == pytest.approx(list(prob_true))
    assert [r["mean_score"] for r in filled] == pytest.approx(list(prob_pred))
    assert len(table) == 10 and sum(r["n"] for r in table) == 5000
    expected = sum(r["n"] / 5000 * abs(r["positive_rate"] - r["mean_score"]) for r in filled)
    assert ece == pytest.approx(expected)
    assert ece > calibration(y, s).ece  # the calibrated scores are better calibrated
    with pytest.raises(MetricInputError, match="probability in \\[0, 1\\]"):
        calibration([1, 0], [1.5, 0.2])


# --------------------------------------------------------------------------------------------
# regression and ranking


def test_regression_metrics_equal_sklearn_and_textbook():
    rng = np.random.default_rng(4)
    y = rng.gamma(3, 10, 1000)
    p = y + rng.normal(2, 5, 1000)
    seg = pd.DataFrame({"weather": rng.choice(["rain", "sun"], 1000)})
    rep = regression_metrics(y, p, segments=seg)
    v = rep.overall.values
    assert v["mae"] == pytest.approx(mean_absolute_error(y, p))
    assert v["rmse"] == pytest.approx(root_mean_squared_error(y, p))
    assert v["bias"] == pytest.approx(np.mean(p - y)) and v["bias"] > 0
    for q in (50, 90, 99):
        assert v[f"abs_error_p{q}"] == pytest.approx(np.quantile(np.abs(p - y), q / 100))
    rain = rep.segment("weather", "rain")
    m = (seg["weather"] == "rain").to_numpy()
    assert rain.values["mae"] == pytest.approx(mean_absolute_error(y[m], p[m]))
    assert regression_metrics([], []).overall.values["mae"] is None


def test_ranking_metrics_equal_sklearn():
    rng = np.random.default_rng(5)
    q, n_items = 40, 8
    rel = rng.integers(0, 4, (q, n_items)).astype(float)
    rel[:, 0] = np.maximum(rel[:, 0], 1)  # every query has a relevant item
    score = rel + rng.normal(0, 1.5, (q, n_items))
    df = pd.DataFrame({"query": np.repeat(np.arange(q), n_items), "rel": rel.ravel(), "score": score.ravel()})
    rep = ranking_metrics(df, "query", "rel", "score", k=5)
    assert rep.overall.values["ndcg_at_k"] == pytest.approx(ndcg_score(rel, score, k=5))
    expected_map = np.mean([average_precision_score(rel[i] > 0, score[i]) for i in range(q)])
    assert rep.overall.values["map"] == pytest.approx(expected_map)


def test_ranking_groups_without_relevant_items_are_left_out_with_a_note():
    df = pd.DataFrame(
        {"query": ["a", "a", "a", "b", "b", "c"], "rel": [2, 0, 1, 0, 0, 1], "score": [0.2, 0.9, 0.5, 0.3, 0.1, 0.7]}
    )
    rep = ranking_metrics(df, "query", "rel", "score", k=10)
    ndcg_a = ndcg_score([[2, 0, 1]], [[0.2, 0.9, 0.5]], k=10)
    ap_a = average_precision_score([1, 0, 1], [0.2, 0.9, 0.5])
    assert rep.overall.values["ndcg_at_k"] == pytest.approx((ndcg_a + 1.0) / 2)
    assert rep.overall.values["map"] == pytest.approx((ap_a + 1.0) / 2)
    assert rep.overall.counts["queries_without_relevant"] == 1
    assert any("no relevant item" in n for n in rep.overall.notes)


def test_evaluate_by_day_dispatches_per_task():
    y, s, _ = _calibrated(400, 6)
    joined = pd.DataFrame({"ds": ["2024-03-01"] * 200 + ["2024-03-02"] * 200, "label": y, "score": s})
    per_day = evaluate_by_day(joined, task="binary_classification", score_col="score")
    assert list(per_day) == ["2024-03-01", "2024-03-02"]
    assert per_day["2024-03-02"].overall.values["roc_auc"] == pytest.approx(roc_auc_score(y[200:], s[200:]))
    with pytest.raises(MetricInputError, match="needs prediction_col"):
        evaluate(joined, task="regression")


# --------------------------------------------------------------------------------------------
# CBPE and concept drift


def test_cbpe_estimate_is_close_to_realized_on_calibrated_scores():
    y, s, _ = _calibrated(100_000, 7)
    est = cbpe_estimate(s, 0.5)
    real = classification_metrics(y, s, 0.5).overall.values
    assert est.status == "estimated" and est.n == 100_000
    for m in ("accuracy", "precision", "recall", "f1", "roc_auc"):
        assert abs(est.values[m] - real[m]) < 0.02, m
    assert est.calibration == {"status": "raw", "id": "raw"} and "raw scores" in est.method
    rows = compare_estimate(est, real)
    assert [r["metric"] for r in rows] == ["accuracy", "precision", "recall", "f1", "roc_auc"]
    assert rows[0]["difference"] == pytest.approx(real["accuracy"] - est.values["accuracy"])
    json.dumps(est.to_dict())


def test_cbpe_with_a_calibrator_fitted_on_reference():
    y_ref, s_ref, _ = _calibrated(50_000, 8)
    y, s, _ = _calibrated(50_000, 9)
    raw_ref, raw = np.sqrt(s_ref), np.sqrt(s)  # a model whose scores are not probabilities
    cal = fit_calibrator(y_ref, raw_ref)
    naive = cbpe_estimate(raw, 0.5)
    est = cbpe_estimate(raw, 0.5, calibrator=cal)
    real = classification_metrics(y, raw, 0.5).overall.values
    for m in ("accuracy", "precision", "recall", "f1", "roc_auc"):
        assert abs(est.values[m] - real[m]) < 0.02, m
    assert abs(naive.values["accuracy"] - real["accuracy"]) > 0.05  # without calibration it is off
    assert est.calibration == {"status": "calibrated", "id": cal.id} and "calibrated on 50000" in est.method
    again = type(cal).from_dict(json.loads(json.dumps(cal.to_dict())))
    assert np.allclose(again.apply(raw[:100]), cal.apply(raw[:100]))


def test_regression_is_not_estimated():
    est = estimate_performance("regression", None)
    assert est.status == "not_estimated" and est.values == {} and "not estimated" in est.reason
    finding = concept_drift_check({"mae": 3.0}, est, [])
    assert finding.status == "not_estimated" and not finding.suspected


def test_expected_roc_auc_is_the_area_under_the_expected_roc_curve():
    # Each row is p of a positive and 1 - p of a negative: scikit-learn's weighted ROC AUC over
    # every row counted once as each is the area of that curve (rounded p: many ties).
    rng = np.random.default_rng(21)
    p = np.round(rng.beta(2, 5, 400), 2)
    both = np.r_[np.ones(400), np.zeros(400)]
    assert expected_roc_auc(p) == pytest.approx(roc_auc_score(both, np.r_[p, p], sample_weight=np.r_[p, 1 - p]), abs=1e-12)
    # Ranking by the raw score instead of the calibrated p gives the same area: the calibrator is
    # monotone and the rows it maps to one value lie on one straight piece of the curve.
    raw = rng.random(3000)
    cal = fit_calibrator((rng.random(3000) < raw**2).astype(int), raw)
    q = cal.apply(raw[:500])
    assert len(np.unique(q)) < 100  # isotonic steps: ties
    by_raw = roc_auc_score(
        np.r_[np.ones(500), np.zeros(500)], np.r_[raw[:500], raw[:500]], sample_weight=np.r_[q, 1 - q])
    assert expected_roc_auc(q) == pytest.approx(by_raw, abs=1e-12)
    assert expected_roc_auc(np.zeros(5)) is None and expected_roc_auc(np.ones(5)) is None
    est = cbpe_estimate(np.zeros(10))
    assert est.values["roc_auc"] is None and any("roc_auc not estimated" in n for n in est.notes)


def test_estimated_roc_auc_tracks_realized_auc_on_calibrated_data():
    y, s, _ = _calibrated(100_000, 31)
    assert cbpe_estimate(s).values["roc_auc"] == pytest.approx(roc_auc_score(y, s), abs=0.004)
    diffs, sds = [], []
    for day in range(40):
        y, s, _ = _calibrated(2000, 200 + day)
        est = cbpe_estimate(s).values["roc_auc"]
        diffs.append(roc_auc_score(y, s) - est)
        sds.append(difference_floor({"roc_auc": est}, n=2000, positives=int(y.sum()),
                                    predicted_positives=None)["roc_auc"])
    diffs, sds = np.array(diffs), np.array(sds)
    # unbiased: the mean error is within its standard error's noise
    assert abs(diffs.mean()) < 3 * diffs.std(ddof=1) / np.sqrt(len(diffs))
    # and Hanley-McNeil's sd (the concept-drift floor) is the size of the day-to-day error
    assert 0.67 < diffs.std(ddof=1) / sds.mean() < 1.5
    assert np.all(np.abs(diffs) < 4 * sds)


def test_reference_calibration_falls_back_to_raw_scores_and_says_why():
    from watchkeeper.performance import CalibrationChoice

    y, s, _ = _calibrated(5000, 41)
    ok = reference_calibration(y, s, source="train.parquet")
    assert ok.status == "calibrated" and ok.id == ok.calibrator.id and ok.id.startswith("iso-")
    assert "isotonic calibration on 5000 labelled rows of train.parquet" in ok.reason
    back = CalibrationChoice.from_dict(json.loads(json.dumps(ok.to_dict())))
    assert back.id == ok.id and np.array_equal(back.calibrator.apply(s[:50]), ok.calibrator.apply(s[:50]))
    cases = [
        (None, s, "train.parquet has no labels"),
        (y[:50], s[:50], "50 labelled row(s) < 100"),
        (np.zeros(500), s[:500], "0 positive row(s) < 10"),
        (np.where(y == 1, 2, 0), s, "binary labels must be 0 or 1"),
        (y, None, "train.parquet has no scores"),
    ]
    for labels, scores, why in cases:
        c = reference_calibration(labels, scores, source="train.parquet")
        assert (c.status, c.calibrator, c.id) == ("raw", None, "raw"), why
        assert why in c.reason and "raw scores used as probabilities" in c.reason, c.reason


METRICS5 = ("accuracy", "precision", "recall", "f1", "roc_auc")


def _floor_of(est, realized):
    c = realized.counts
    return difference_floor(est, n=c["n"], positives=c["positives"], predicted_positives=c["tp"] + c["fp"])


def _healthy_days(n_days=14, n=5000, seed=100):
    """Calibrated days: realized - estimated is sampling noise only."""
    days = []
    for day in range(n_days):
        y, s, _ = _calibrated(n, seed + day)
        real = classification_metrics(y, s).overall
        est = cbpe_estimate(s).values
        days.append(LearningDay(f"2024-03-{day + 1:02d}", {m: real.values[m] - est[m] for m in METRICS5},
                                _floor_of(est, real)))
    return days


def test_concept_drift_is_suspected_only_when_realized_is_worse_than_estimated():
    healthy = _healthy_days()
    # same inputs, new concept: for a third of the population the outcome flipped
    y, s, rng = _calibrated(5000, 500)
    y_new = np.where(rng.random(5000) < 1 / 3, 1 - y, y)
    est = cbpe_estimate(s)
    real = classification_metrics(y_new, s).overall
    f = concept_drift_check(real, est, healthy, floors=_floor_of(est.values, real), prediction_ds="2024-04-02")
    assert (f.status, f.suspected, f.prediction_ds) == ("suspected", True, "2024-04-02")
    acc = next(r for r in f.metrics if r["metric"] == "accuracy")
    assert acc["direction"] == "worse" and acc["difference"] < acc["low"] < 0 < acc["high"]
    assert acc["realized"] < acc["estimated"] and acc["n_learning"] == 14
    assert f.reason.startswith("prediction-day 2024-04-02: worse than estimated: realized ")
    assert (f"realized accuracy {acc['realized']:.4f} vs estimated {acc['estimated']:.4f}: difference "
            f"{acc['difference']:+.4f}, below the band [{acc['low']:+.4f}, {acc['high']:+.4f}] (median "
            f"{acc['median']:+.4f} +- 4 x {acc['spread']:.4f}, learned over 14 mature day(s))") in f.reason
    assert "suspected concept drift" in f.reason
    worse = [r for r in f.metrics if r["direction"] == "worse"]
    top = max(worse, key=lambda r: r["estimated"] - r["realized"])
    assert f.worst == pytest.approx(top["estimated"] - top["realized"]) and f.worst > 0
    assert f.worst_metric == top["metric"] and f.worst_text.endswith("on 2024-04-02")
    json.dumps(f.to_dict())

    # The model doing BETTER than it expects (outcomes follow the score more sharply than its
    # probabilities say): reported as "better", never suspected, never worded as a fall.
    y_sharp = np.where(rng.random(5000) < 0.9, (s >= 0.5).astype(int), y)
    real = classification_metrics(y_sharp, s).overall
    g = concept_drift_check(real, est, healthy, floors=_floor_of(est.values, real), prediction_ds="2024-04-03")
    assert (g.status, g.suspected, g.worst) == ("ok", False, None)
    assert {r["metric"]: r["direction"] for r in g.metrics}["accuracy"] == "better"
    assert all(r["direction"] in ("better", None) for r in g.metrics)
    assert "better than estimated (not a concept-drift concern)" in g.reason
    assert "worse than estimated" not in g.reason and "suspected" not in g.reason

    y, s, _ = _calibrated(5000, 501)
    est = cbpe_estimate(s)
    real = classification_metrics(y, s).overall
    calm = concept_drift_check(real, est, healthy, floors=_floor_of(est.values, real))
    assert calm.status == "ok" and not calm.suspected and all(r["direction"] is None for r in calm.metrics)
    assert calm.reason.startswith("realized quality is within the estimate's band for accuracy, precision")

    few = concept_drift_check(real, est, healthy[:4])
    assert few.status == "inconclusive" and not few.suspected
    assert "accuracy (4 learning day(s) < 5)" in few.reason


def test_the_band_leaves_out_learning_days_that_are_outliers_themselves():
    healthy = _healthy_days()
    clean = robust_band("accuracy", healthy)
    assert clean.status == "learned" and clean.excluded_days == () and len(clean.used_days) == 14
    # one learning day 30 points better than its estimate (a bad label file, say): mean +- 3 sd
    # would have widened the band to about +-0.25; the robust band leaves that day out
    odd = LearningDay("2024-03-07", {**healthy[6].differences, "accuracy": 0.30}, healthy[6].floors)
    days = healthy[:6] + [odd] + healthy[7:]
    diffs = np.array([d.differences["accuracy"] for d in days])
    assert 3 * diffs.std(ddof=1) > 0.2
    band = robust_band("accuracy", days)
    assert band.excluded_days == ("2024-03-07",) and len(band.used_days) == 13
    assert band.mad_sd < 0.01 and abs(band.median - clean.median) < 0.003
    # so a day 4 points worse than estimated is still caught, the outlier day notwithstanding
    f = concept_drift_check({"accuracy": 0.66}, {"accuracy": 0.70}, days, metrics=("accuracy",),
                            floors=difference_floor({"accuracy": 0.70}, n=5000, positives=2000, predicted_positives=1500))
    [row] = f.metrics
    assert f.suspected and row["excluded_days"] == ["2024-03-07"] and row["n_learning"] == 13
    assert "1 outlier day(s) left out" in f.reason
    # when most learning days disagree there is no band at all, rather than one learned from outliers
    wild = [LearningDay(f"d{i}", {"accuracy": v}) for i, v in enumerate([0, 0, 0, 0, 1e-4, 1, 2, 3, -1])]
    b = robust_band("accuracy", wild, min_days=6)
    assert b.status == "insufficient" and b.median is None and "5 of 9 learning day(s) agree, < 6" in b.reason


def test_near_identical_learning_days_do_not_make_rounding_a_finding():
    days = [LearningDay(f"d{i}", {"accuracy": 0.001 * (i % 2)}, {"accuracy": 0.0}) for i in range(14)]
    floors = difference_floor({"accuracy": 0.9}, n=1000, positives=100, predicted_positives=100)
    assert floors["accuracy"] == pytest.approx(np.sqrt(0.9 * 0.1 / 1000))
    # the MAD (0.0005) would make a 2-point gap a finding; at 1,000 labelled rows a binomial sd is
    # about a point, so the band is +-4 of those
    f = concept_drift_check({"accuracy": 0.88}, {"accuracy": 0.90}, days, floors=floors, metrics=("accuracy",))
    [row] = f.metrics
    assert f.status == "ok" and row["spread"] == pytest.approx(floors["accuracy"])
    # without the day's counts the absolute floor (0.001) still holds
    g = concept_drift_check({"accuracy": 0.88}, {"accuracy": 0.90}, days, metrics=("accuracy",))
    assert g.suspected and g.metrics[0]["spread"] == pytest.approx(0.001)


def test_a_sustained_fall_too_small_for_one_day_is_caught_pooled_with_the_days_before_it():
    """At a few hundred labels a day one day cannot show a 7-point accuracy fall; three days can."""
    rng = np.random.default_rng(61)
    acc, n = 0.85, 400
    sd = np.sqrt(acc * (1 - acc) / n)  # 0.0179; with these learning days the day's band is about +-0.09

    def day(ds, diff):
        return LearningDay(ds, {"accuracy": diff}, {"accuracy": sd})

    healthy = [day(f"2024-03-{i + 1:02d}", float(v)) for i, v in enumerate(rng.normal(0, sd, 14))]
    floors = {"accuracy": sd}

    def check(diff, recent):
        return concept_drift_check({"accuracy": acc + diff}, {"accuracy": acc}, healthy, floors=floors,
                                   recent=recent, metrics=("accuracy",), prediction_ds="2024-04-03")

    falling = [day("2024-04-01", -0.07), day("2024-04-02", -0.075)]
    alone = check(-0.07, [])
    assert alone.status == "ok" and alone.metrics[0]["low"] < -0.075  # each inside the day's band
    f = check(-0.07, falling)
    [row] = f.metrics
    assert f.suspected and row["direction"] == "worse" and row["basis"] == "pooled"
    p = row["pooled"]
    assert p["days"] == ["2024-04-01", "2024-04-02", "2024-04-03"]
    assert p["difference"] == pytest.approx((-0.07 - 0.075 - 0.07) / 3)  # equal floors: the mean
    assert p["floor_sd"] == pytest.approx(sd / np.sqrt(3)) and p["difference"] < p["low"]
    assert p["spread"] == pytest.approx(max(row["mad_sd"] / np.sqrt(3), sd / np.sqrt(3)), rel=1e-9)
    assert ("pooled with the 2 mature day(s) before it (2024-04-01, 2024-04-02) the difference is "
            f"{p['difference']:+.4f}, below the pooled band [{p['low']:+.4f}, {p['high']:+.4f}]") in f.reason
    assert f.reason.startswith("prediction-day 2024-04-03: worse than estimated: realized accuracy")
    # only the newest pool_days - 1 recent days are pooled
    assert check(-0.07, [day("2024-03-30", 0.0)] + falling).metrics[0]["pooled"]["days"][0] == "2024-04-01"
    # a recent day outside the band is an outlier judged on its own: not pooled, so it does not
    # make its neighbours suspect
    bad_day = [day("2024-04-01", 0.0), day("2024-04-02", -0.30)]
    g = check(-0.01, bad_day)
    assert not g.suspected and g.metrics[0]["pooled"]["days"] == ["2024-04-01", "2024-04-03"]
    # the day itself above the median: the fall of the days before it does not make it suspect
    h = check(+0.02, falling)
    assert not h.suspected and h.metrics[0]["direction"] is None
    # pooled better than estimated: reported, never suspected
    b = check(+0.06, [day("2024-04-01", 0.065), day("2024-04-02", 0.06)])
    assert not b.suspected and b.metrics[0]["direction"] == "better" and b.metrics[0]["basis"] == "pooled"
    assert "worse than estimated" not in b.reason and "better than estimated" in b.reason

def test_below_a_pessimistic_estimates_normal_but_above_the_estimate_is_not_worse():
    # A model that usually beats its estimate by 5 points: realized 2 points above the estimate
    # is below its normal, but it is not worse than estimated, and is not called so.
    days = [LearningDay(f"d{i}", {"accuracy": 0.05 + 0.001 * (i % 3)}) for i in range(14)]
    f = concept_drift_check({"accuracy": 0.92}, {"accuracy": 0.90}, days, metrics=("accuracy",))
    [row] = f.metrics
    assert row["difference"] < row["low"] and row["difference"] > 0
    assert (f.status, f.suspected, row["direction"]) == ("ok", False, None)
    assert "worse than estimated" not in f.reason

def test_difference_floor_is_the_binomial_sd_at_the_days_counts():
    est = {"accuracy": 0.9, "precision": 0.5, "recall": 0.8, "f1": 0.6, "roc_auc": 0.85}
    f = difference_floor(est, n=2000, positives=100, predicted_positives=160)
    assert f["accuracy"] == pytest.approx(np.sqrt(0.09 / 2000))
    assert f["precision"] == pytest.approx(np.sqrt(0.25 / 160))
    assert f["recall"] == pytest.approx(np.sqrt(0.16 / 100))
    assert f["f1"] == pytest.approx(np.sqrt(0.24 / 130))
    a, q1, q2 = 0.85, 0.85 / 1.15, 2 * 0.85**2 / 1.85
    assert f["roc_auc"] == pytest.approx(np.sqrt((a * (1 - a) + 99 * (q1 - a * a) + 1899 * (q2 - a * a)) / (100 * 1900)))
    none = difference_floor(est, n=2000, positives=0, predicted_positives=0)
    assert none["precision"] is None and none["recall"] is None and none["roc_auc"] is None


# --------------------------------------------------------------------------------------------
# sudden change


def test_sudden_change_flags_a_jump_out_of_the_trailing_band():
    rng = np.random.default_rng(11)
    days = pd.date_range("2024-03-01", periods=25).strftime("%Y-%m-%d")
    values = list(0.90 + rng.normal(0, 0.005, 25))
    values[20] = 0.80  # a sudden drop
    mature = [True] * 25
    mature[22] = False
    flags = {f.ds: f for f in sudden_change(list(zip(days, values, mature)))}
    drop = flags[days[20]]
    assert drop.flagged and drop.direction == "down" and drop.status == "flagged"
    assert drop.n_points == 14 and drop.low > 0.80
    assert "below its trailing 14-day band" in drop.reason
    assert flags[days[3]].status == "insufficient_history"
    assert flags[days[22]].status == "provisional" and not flags[days[22]].flagged
    # the drop is in the band of later days; with it the band is wide, so no cascade of flags
    assert [f.ds for f in flags.values() if f.flagged] == [days[20]]
    # the band was computed from mature days only, on the days before
    hist = [v for d, v, m in zip(days, values, mature) if days[5] <= d < days[19] and m]
    f19 = flags[days[19]]
    assert f19.mean == pytest.approx(np.mean(hist)) and f19.sd == pytest.approx(np.std(hist, ddof=1))


def test_sudden_change_accepts_a_dataframe_and_rejects_duplicate_days():
    df = pd.DataFrame({"ds": ["2024-03-01", "2024-03-02"], "value": [1.0, None]})
    out = sudden_change(df)
    assert [f.status for f in out] == ["insufficient_history", "no_value"]
    with pytest.raises(MetricInputError, match="listed twice: 2024-03-01"):
        sudden_change([("2024-03-01", 1.0), ("2024-03-01", 2.0)])


# --------------------------------------------------------------------------------------------
# business outcomes


def test_share_of_fraudulent_value_caught_hand_computed():
    rows = pd.DataFrame(
        {
            "label": [1, 1, 1, 0, 0, 1],
            "predicted_label": [1, 0, 1, 1, 0, np.nan],  # the last row's prediction is missing
            "amount": [100.0, 50.0, 250.0, 999.0, 5.0, 70.0],
        }
    )
    spec = {"name": "fraud_value_caught", "kind": "share_of_value_caught", "value_column": "amount",
            "threshold": 0.8, "direction": "at_least"}
    (r,) = business_outcomes(rows, [spec], prediction_col="predicted_label")
    # caught fraud 100 + 250 of all fraud 100 + 50 + 250 (the row without a prediction left out)
    assert (r.numerator, r.denominator) == (350.0, 400.0)
    assert r.value == pytest.approx(0.875) and r.status == "met" and r.met
    assert r.excluded == 1 and "1 row(s) with a missing" in r.reason
    # derived from the score when no predicted-label column is given
    rows["score"] = [0.9, 0.4, 0.7, 0.8, 0.1, 0.2]
    (r2,) = business_outcomes(rows.drop(columns="predicted_label"), [spec], score_col="score", threshold=0.5)
    assert (r2.numerator, r2.denominator) == (350.0, 470.0)
    assert r2.status == "breached" and r2.met is False


def test_share_of_late_deliveries_hand_computed():
    rows = pd.DataFrame({"actual_minutes": [30, 45, 22, 60, 31], "predicted_minutes": [25, 30, 30, 49, 21]})
    # late by more than 10 minutes: 45-30=15, 60-49=11; 31-21=10 is not more than 10
    spec = {"name": "late_over_10_min", "kind": "share_late", "minutes": 10, "threshold": 0.1, "direction": "at_most"}
    (r,) = business_outcomes(rows, [spec], label_col="actual_minutes", prediction_col="predicted_minutes")
    assert (r.numerator, r.denominator, r.value) == (2.0, 5.0, 0.4)
    assert r.status == "breached" and "at most 0.1" in r.reason
    json.dumps(r.to_dict())


def test_generic_ratio_form_and_errors():
    rows = pd.DataFrame({"label": [1, 0, 1, 1], "score": [0.9, 0.6, 0.2, 0.7], "country": ["DE", "DE", "FR", "DE"]})
    spec = OutcomeSpec(
        name="de_recall",
        numerator={"where": ["label == 1 and score >= 0.5", "country == 'DE'"]},
        denominator={"where": "label == 1 and country == 'DE'"},
        threshold=0.9,
        direction="higher_is_better",
    )
    (r,) = business_outcomes(rows, [spec], score_col="score")
    assert (r.numerator, r.denominator, r.value, r.status) == (2.0, 2.0, 1.0, "met")
    (missing,) = business_outcomes(rows, [{"name": "v", "kind": "share_of_value_caught", "value_column": "amount", "threshold": 0.5}], score_col="score")
    assert missing.status == "error" and "amount" in missing.reason
    (empty,) = business_outcomes(rows[rows["label"] == 0], [spec], score_col="score")
    assert empty.status == "undefined" and empty.value is None
    with pytest.raises(OutcomeSpecError, match="late"):
        business_outcomes(rows, [{"name": "late", "numerator": {"where": "label >> 2"}, "denominator": {}}])
    with pytest.raises(OutcomeSpecError, match="needs value_column"):
        business_outcomes(rows, [{"name": "x", "kind": "share_of_value_caught"}])
