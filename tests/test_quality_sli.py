"""watchkeeper.quality_sli: confident daily verdicts (Wilson, bootstrap) and ratio quality events.

Textbook values for the Wilson bounds (Newcombe 1998, "Two-sided confidence intervals for the
single proportion", Table I: methods 3 and 4), coverage checked by simulation at 165 and 20,000
rows a day, and the day's SLI rows as restate stores them.
"""

from __future__ import annotations

import math
from statistics import NormalDist
from types import SimpleNamespace

import numpy as np
import pytest
from sklearn.metrics import confusion_matrix, f1_score, mean_absolute_error, roc_auc_score

from watchkeeper import quality_sli as q
from watchkeeper.performance import classification_metrics, regression_metrics
from watchkeeper.slo import day_verdict
from watchkeeper.spec import QUALITY_RATIO_SLIS

BIN, REG = "binary_classification", "regression"


# --- Wilson: textbook values ---------------------------------------------------------------------

# (x, n) -> 95 % two-sided interval, i.e. one-sided bounds at 0.975 (Newcombe 1998, Table I)
NEWCOMBE_WILSON = {(81, 263): (0.2553, 0.3662), (15, 148): (0.0624, 0.1605),
                   (0, 20): (0.0, 0.1611), (1, 29): (0.0061, 0.1718)}
NEWCOMBE_WILSON_CC = {(0, 20): (0.0, 0.2005), (1, 29): (0.0018, 0.1963)}


@pytest.mark.parametrize("case", sorted(NEWCOMBE_WILSON))
def test_wilson_bounds_match_the_textbook(case):
    lo, up = q.wilson_bounds(*case, confidence=0.975, continuity=False)
    assert (round(lo, 4), round(up, 4)) == NEWCOMBE_WILSON[case]


@pytest.mark.parametrize("case", sorted(NEWCOMBE_WILSON_CC))
def test_continuity_corrected_wilson_bounds_match_the_textbook(case):
    lo, up = q.wilson_bounds(*case, confidence=0.975)
    assert (round(lo, 4), round(up, 4)) == NEWCOMBE_WILSON_CC[case]


def test_continuity_correction_is_wilson_half_an_event_further_out():
    # Newcombe's closed form for method 4, written out independently of the implementation
    z = NormalDist().inv_cdf(0.975)
    for x, n in ((81, 263), (15, 148), (154, 165), (19_000, 20_000)):
        p = x / n
        lo = (2 * n * p + z * z - 1 - z * math.sqrt(z * z - 2 - 1 / n + 4 * p * (n * (1 - p) + 1))) / (2 * (n + z * z))
        up = (2 * n * p + z * z + 1 + z * math.sqrt(z * z + 2 - 1 / n + 4 * p * (n * (1 - p) - 1))) / (2 * (n + z * z))
        assert q.wilson_bounds(x, n, 0.975) == pytest.approx((lo, up), abs=1e-12)
        plain = q.wilson_bounds(x, n, 0.975, continuity=False)
        assert lo < plain[0] and up > plain[1]


def test_wilson_agrees_with_statsmodels_at_other_confidences():
    sm = pytest.importorskip("statsmodels.stats.proportion")
    for x, n, c in ((154, 165, 0.95), (3, 10, 0.9), (18_600, 20_000, 0.99)):
        lo, up = sm.proportion_confint(x, n, alpha=2 * (1 - c), method="wilson")
        assert q.wilson_bounds(x, n, c, continuity=False) == pytest.approx((lo, up), abs=1e-9)


def test_wilson_edge_cases_and_errors():
    assert q.wilson_bounds(0, 0) is None
    lo, up = q.wilson_bounds(10, 10)
    assert up == 1.0 and 0.7 < lo < 1.0
    with pytest.raises(q.QualitySliError, match="0 <= successes <= n"):
        q.wilson_bounds(11, 10)
    with pytest.raises(q.QualitySliError, match="strictly between 0.5 and 1"):
        q.wilson_bounds(5, 10, confidence=0.3)


# --- verdicts ------------------------------------------------------------------------------------


def test_day_verdict_good_bad_inconclusive():
    assert day_verdict(0.95, 0.9, 0.97, 0.93) == "good"  # meets the threshold
    assert day_verdict(0.93, 0.9, 0.96, 0.93) == "good"  # exactly at it
    assert day_verdict(0.91, 0.88, 0.94, 0.93) == "inconclusive"  # misses, interval reaches it
    assert day_verdict(0.85, 0.80, 0.90, 0.93) == "bad"  # even the upper bound misses
    assert day_verdict(3.4, 3.1, 3.7, 3.0, "at_most") == "bad"  # mae: even the lower bound > 3
    assert day_verdict(3.2, 2.9, 3.5, 3.0, "at_most") == "inconclusive"
    assert day_verdict(2.5, 2.2, 2.8, 3.0, "at_most") == "good"
    assert day_verdict(0.85, None, None, 0.93) == "inconclusive"  # no bounds: cannot exclude
    assert day_verdict(None, None, None, 0.93) is None


# --- coverage by simulation: a healthy day is bad at most ~(1 - confidence) of the time ---------


def _bad_rate_wilson(n: int, p: float, threshold: float, sims: int, seed: int) -> float:
    rng = np.random.default_rng(seed)
    bad = 0
    for x in rng.binomial(n, p, size=sims):
        lo, up = q.wilson_bounds(int(x), n, 0.95)
        bad += day_verdict(x / n, lo, up, threshold) == "bad"
    return bad / sims


@pytest.mark.parametrize("n", [165, 20_000])
def test_wilson_accuracy_day_at_the_threshold_is_rarely_bad(n):
    # the worst healthy day: true accuracy exactly at the 0.93 threshold
    assert _bad_rate_wilson(n, 0.93, 0.93, 20_000, seed=1) <= 0.06
    # a margin above it: at most 1 - confidence
    assert _bad_rate_wilson(n, 0.94, 0.93, 20_000, seed=2) <= 0.05


def test_wilson_exact_false_alarm_rate_over_batch_sizes():
    # exact binomial probabilities (no simulation noise) over 50..400 labels a day
    from scipy.stats import binom

    for threshold in (0.5, 0.93, 0.98):
        rates = []
        for n in range(50, 401, 7):
            xs = np.arange(n + 1)
            bad = np.array([day_verdict(x / n, *q.wilson_bounds(int(x), n, 0.95), threshold) == "bad"
                            for x in xs])
            rates.append(binom.pmf(xs[bad], n, threshold).sum())
        assert max(rates) <= 0.065 and np.mean(rates) <= 0.05, (threshold, max(rates))


@pytest.mark.parametrize("n", [165, 20_000])
def test_a_real_fall_is_bad(n):
    # 0.93 threshold, true accuracy 0.85: bad on nearly every day at either size
    assert _bad_rate_wilson(n, 0.85, 0.93, 2_000, seed=3) >= (0.9 if n == 165 else 0.999)
    if n == 20_000:  # at 20,000 rows even a one-point fall is certain
        assert _bad_rate_wilson(n, 0.92, 0.93, 2_000, seed=4) >= 0.99


def _mae_day(rng, n: int, sigma: float):
    y = rng.normal(30.0, 5.0, n)
    return y, y + rng.normal(0.0, sigma, n)


def test_bootstrap_mae_day_at_the_threshold_is_rarely_bad():
    rng = np.random.default_rng(11)
    sigma = 3.0
    threshold = sigma * math.sqrt(2 / math.pi)  # the population mae of N(0, sigma) errors
    bad = at_margin = 0
    sims = 400
    for _ in range(sims):
        y, p = _mae_day(rng, 165, sigma)
        iv = q.bootstrap_interval("mae", REG, y, p)
        bad += day_verdict(float(np.mean(np.abs(p - y))), iv.lower, iv.upper, threshold, "at_most") == "bad"
        y, p = _mae_day(rng, 165, sigma * 0.95)
        iv = q.bootstrap_interval("mae", REG, y, p)
        at_margin += day_verdict(float(np.mean(np.abs(p - y))), iv.lower, iv.upper, threshold, "at_most") == "bad"
    assert bad / sims <= 0.08  # 0.05 plus three simulation standard errors
    assert at_margin / sims <= 0.05


def test_bootstrap_f1_and_roc_auc_days_at_the_threshold_are_rarely_bad():
    rng = np.random.default_rng(12)
    probs = (0.3, 0.1, 0.1, 0.5)  # tp, fp, fn, tn shares: population f1 = 0.75
    f1_pop = 2 * 0.3 / (2 * 0.3 + 0.1 + 0.1)
    auc_pop = NormalDist().cdf(1.0 / math.sqrt(2))  # binormal scores, shift 1
    bad_f1 = bad_auc = 0
    sims = 250
    for _ in range(sims):
        c = rng.choice(4, size=165, p=probs)
        y = np.isin(c, (0, 2)).astype(float)
        s = np.where(np.isin(c, (0, 1)), 0.9, 0.1)
        iv = q.bootstrap_interval("f1", BIN, y, s)
        bad_f1 += day_verdict(f1_score(y, s >= 0.5), iv.lower, iv.upper, f1_pop) == "bad"
        y = (rng.random(165) < 0.3).astype(float)
        s = rng.normal(0.0, 1.0, 165) + y
        iv = q.bootstrap_interval("roc_auc", BIN, y, s)
        bad_auc += day_verdict(roc_auc_score(y, s), iv.lower, iv.upper, auc_pop) == "bad"
    assert bad_f1 / sims <= 0.09 and bad_auc / sims <= 0.09


def test_bootstrap_catches_a_real_fall_at_20000_rows():
    rng = np.random.default_rng(13)
    y, p = _mae_day(rng, 20_000, 3.3)  # mae 2.63 against a 2.5 threshold
    iv = q.bootstrap_interval("mae", REG, y, p)
    assert iv.lower > 2.5 and iv.n == 20_000
    assert day_verdict(mean_absolute_error(y, p), iv.lower, iv.upper, 2.5, "at_most") == "bad"


# --- the bootstrap itself -------------------------------------------------------------------------


def test_bootstrap_is_deterministic_and_ignores_row_order():
    rng = np.random.default_rng(21)
    y = (rng.random(500) < 0.4).astype(float)
    s = np.clip(rng.normal(0.4 + 0.3 * y, 0.2), 0, 1)
    order = rng.permutation(500)
    for metric in ("f1", "roc_auc", "pr_auc", "mean_score"):
        a = q.bootstrap_interval(metric, BIN, y, s)
        assert a == q.bootstrap_interval(metric, BIN, y, s)
        assert a == q.bootstrap_interval(metric, BIN, y[order], s[order]), metric
    yr, pr = _mae_day(rng, 500, 3.0)
    for metric in ("mae", "rmse", "bias", "abs_error_p90", "mean_actual", "mean_prediction"):
        a = q.bootstrap_interval(metric, REG, yr, pr)
        assert a == q.bootstrap_interval(metric, REG, yr[order], pr[order]), metric


def test_bootstrap_bounds_bracket_the_value_of_every_metric():
    rng = np.random.default_rng(22)
    y = (rng.random(3000) < 0.3).astype(float)
    s = np.clip(rng.normal(0.3 + 0.3 * y, 0.2), 0, 1)
    values = classification_metrics(y, s).overall.values
    for metric in q.BOOTSTRAP_METRICS[BIN]:
        iv = q.bootstrap_interval(metric, BIN, y, s)
        assert iv.method == "bootstrap" and iv.lower < values[metric] < iv.upper, metric
    yr, pr = _mae_day(rng, 3000, 3.0)
    values = regression_metrics(yr, pr).overall.values
    for metric in q.BOOTSTRAP_METRICS[REG]:
        iv = q.bootstrap_interval(metric, REG, yr, pr)
        assert iv.lower <= values[metric] <= iv.upper, metric


def test_bootstrap_on_too_few_rows_or_one_class_gives_no_bounds():
    iv = q.bootstrap_interval("mae", REG, np.arange(10.0), np.arange(10.0) + 5)
    assert (iv.lower, iv.upper, iv.n) == (None, None, 10) and "too few to bootstrap" in iv.note
    # one class only: roc_auc is undefined in every resample
    y = np.zeros(25)
    iv = q.bootstrap_interval("roc_auc", BIN, y, np.linspace(0, 1, 25))
    assert iv.lower is None and "undefined in most resamples" in iv.note
    # one positive in 25: about (24/25)^25 = 36 % of the resamples hold none; they are left out
    y[0] = 1
    iv = q.bootstrap_interval("roc_auc", BIN, y, np.linspace(0, 1, 25))
    assert iv.lower == 0.0 and "resamples left out (roc_auc undefined)" in iv.note
    with pytest.raises(q.QualitySliError, match="no bootstrap for 'accuracy'"):
        q.bootstrap_interval("accuracy", BIN, y, y)


# --- ratio events ----------------------------------------------------------------------------------


def test_ratio_events_match_the_confusion_matrix():
    rng = np.random.default_rng(31)
    y = (rng.random(400) < 0.3).astype(float)
    s = rng.random(400)
    tn, fp, fn, tp = confusion_matrix(y, s >= 0.5).ravel()
    assert q.ratio_events("accuracy", BIN, y, s) == (tp + tn, 400)
    assert q.ratio_events("precision", BIN, y, s) == (tp, tp + fp)
    assert q.ratio_events("recall", BIN, y, s) == (tp, tp + fn)
    y_reg = rng.normal(30, 5, 400)
    p_reg = y_reg + rng.normal(0, 4, 400)
    good = float(np.sum(np.abs(p_reg - y_reg) <= 5.0))
    assert q.ratio_events("within_tolerance", REG, y_reg, p_reg, tolerance=5.0) == (good, 400)
    with pytest.raises(q.QualitySliError, match="'f1' of a binary_classification model has no good/total"):
        q.ratio_events("f1", BIN, y, s)


def test_every_ratio_sli_the_spec_accepts_decomposes():
    rng = np.random.default_rng(32)
    y, s = (rng.random(50) < 0.5).astype(float), rng.random(50)
    for task, slis in QUALITY_RATIO_SLIS.items():
        for sli in slis:
            good, total = q.ratio_events(sli, task, y, s, tolerance=0.5)
            assert 0 <= good <= total == (total if sli in ("precision", "recall") else 50)


# --- one day's SLI rows ----------------------------------------------------------------------------


def _slo(**kw):
    base = dict(name="q", sli="accuracy", kind="timeslice", quality=True, threshold=0.93,
                direction="at_least", confidence=0.95)
    return SimpleNamespace(**(base | kw))


def _day(n=165, acc=0.95, seed=41):
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.3).astype(float)
    correct = rng.random(n) < acc
    s = np.where(correct == (y == 1), 0.8, 0.2)
    return y, s, classification_metrics(y, s).overall.values


def test_day_slis_ratio_and_timeslice_on_one_sli():
    y, s, metrics = _day()
    (row,) = q.day_slis([_slo(name="ts"), _slo(name="ratio", kind="ratio", threshold=None)],
                        task=BIN, y=y, other=s, metrics=metrics)
    assert row.sli == "accuracy" and row.value == metrics["accuracy"]
    assert (row.good_events, row.total_events) == q.ratio_events("accuracy", BIN, y, s)
    d = row.details
    assert d["method"] == "wilson" and d["n"] == 165 and d["confidence"] == 0.95
    assert (d["lower"], d["upper"]) == pytest.approx(q.wilson_bounds(row.good_events, 165))
    assert d["verdict"] == ("good" if row.value >= 0.93 else "inconclusive" if d["upper"] >= 0.93 else "bad")
    assert row.good is {"good": True, "bad": False}.get(d["verdict"])


def test_day_slis_verdicts_at_165_rows():
    # a healthy day measured just under the threshold is inconclusive; a real fall is bad
    verdicts = {}
    for acc in (0.95, 0.80):
        for seed in range(60):
            y, s, m = _day(acc=acc, seed=seed)
            (row,) = q.day_slis([_slo()], task=BIN, y=y, other=s, metrics=m)
            verdicts.setdefault(acc, []).append(row.details["verdict"])
    healthy, fallen = verdicts[0.95], verdicts[0.80]
    assert "bad" not in healthy and "inconclusive" in healthy and "good" in healthy
    assert fallen.count("bad") >= 55


def test_day_slis_precision_uses_predicted_positives_and_undefined_is_inconclusive():
    y, s, m = _day()
    (row,) = q.day_slis([_slo(sli="precision", threshold=0.5)], task=BIN, y=y, other=s, metrics=m)
    tp, predicted = q.ratio_events("precision", BIN, y, s)
    assert row.details["n"] == predicted and row.value == pytest.approx(tp / predicted)
    # nothing flagged: precision is undefined, so nothing can be bad
    (row,) = q.day_slis([_slo(sli="precision", threshold=0.5)], task=BIN, y=y, other=np.zeros(165),
                        metrics={"precision": None})
    assert row.value is None and row.good is None and row.details["verdict"] == "inconclusive"
    assert "undefined" in row.details["note"]


def test_day_slis_regression_within_tolerance_and_mae():
    rng = np.random.default_rng(42)
    y, p = _mae_day(rng, 165, 3.0)
    m = regression_metrics(y, p).overall.values
    rows = q.day_slis([_slo(name="ratio", sli="within_tolerance", kind="ratio", threshold=5.0),
                       _slo(name="mae", sli="mae", threshold=3.0, direction="at_most")],
                      task=REG, y=y, other=p, metrics=m)
    tol, mae = rows
    assert tol.value == tol.good_events / tol.total_events and tol.total_events == 165
    assert tol.details == {}  # a ratio SLI carries events, no daily verdict
    assert mae.details["method"] == "bootstrap" and mae.details["direction"] == "at_most"
    assert mae.details["verdict"] == "good" and mae.good is True


def test_day_slis_provisional_days_are_not_judged_and_other_metrics_fall_back_to_the_value():
    y, s, m = _day()
    (row,) = q.day_slis([_slo()], task=BIN, y=y, other=s, metrics=m, judge=False)
    assert row.good is None and "verdict" not in row.details
    (row,) = q.day_slis([_slo(sli="map", threshold=0.5)], task="ranking", y=y, other=s,
                        metrics={"map": 0.4})
    assert row.details["method"] == "point" and row.details["verdict"] == "bad"
    # a share_late business outcome is a proportion: Wilson on its own counts
    (row,) = q.day_slis([_slo(sli="late_over_10_min", threshold=0.1, direction="at_most")],
                        task=REG, y=y, other=s, metrics={"late_over_10_min": 0.12},
                        proportions={"late_over_10_min": (20, 165)})
    assert row.details["method"] == "wilson" and row.details["n"] == 165
    assert row.details["verdict"] == "inconclusive"  # 20/165 = 0.12 is not surely above 0.1


# --- budgets.point reads the stored verdict (real store) -------------------------------------------


def test_budget_points_use_the_stored_verdict(sqlite_url):
    from watchkeeper import budgets
    from watchkeeper.spec import Slo
    from watchkeeper.store import SliRecord, open_store

    store = open_store(sqlite_url)
    base = {"confidence": 0.95, "threshold": 0.5, "direction": "at_least", "method": "wilson"}
    store.write_slis("fraud", "2025-03-10", [
        SliRecord(ds="2025-03-01", sli="precision", value=0.45, good=None, good_events=45.0,
                  total_events=100.0, details=base | {"verdict": "inconclusive", "lower": 0.37,
                                                        "upper": 0.53}),
        SliRecord(ds="2025-03-02", sli="precision", value=0.30, good=False, good_events=30.0,
                  total_events=100.0, details=base | {"verdict": "bad", "lower": 0.23, "upper": 0.38}),
        SliRecord(ds="2025-03-03", sli="precision", value=0.70, good=True, good_events=70.0,
                  total_events=100.0, details=base | {"verdict": "good", "lower": 0.62, "upper": 0.77}),
        SliRecord(ds="2025-03-04", sli="precision", value=0.45, good=False,  # written before verdicts
                  details={"coverage": 0.95, "n_labelled": 400}),
    ])
    rows = {r.ds: r for r in store.slis("fraud", sli="precision")}
    ts = Slo(name="q", sli="precision", kind="timeslice", objective=0.9, threshold=0.5, quality=True)
    pts = {d: budgets.point(ts, r) for d, r in rows.items()}
    assert pts["2025-03-01"].good is None and pts["2025-03-01"].inconclusive
    assert pts["2025-03-02"].good is False and pts["2025-03-03"].good is True
    assert pts["2025-03-04"].good is False and not pts["2025-03-04"].inconclusive  # old row: value
    # the spec's threshold changed since: the stored bounds are judged against the new one
    lower = Slo(name="q", sli="precision", kind="timeslice", objective=0.9, threshold=0.4, quality=True)
    assert budgets.point(lower, rows["2025-03-02"]).good is False  # upper 0.38 < 0.4: still bad
    assert budgets.point(lower, rows["2025-03-01"]).good is True  # 0.45 meets 0.4
    strict = Slo(name="q", sli="precision", kind="timeslice", objective=0.9, threshold=0.6, quality=True)
    assert budgets.point(strict, rows["2025-03-03"]).good is True
    assert budgets.point(strict, rows["2025-03-02"]).good is False
    assert budgets.point(strict, rows["2025-03-01"]).good is False  # upper 0.53 < 0.6
    # a ratio SLO on the same rows takes the events
    ratio = Slo(name="r", sli="precision", kind="ratio", objective=0.6, quality=True)
    p = budgets.point(ratio, rows["2025-03-02"])
    assert (p.good_events, p.total_events) == (30.0, 100.0)
