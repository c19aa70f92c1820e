"""The sequential comparison of a candidate with the incumbent (watchkeeper.compare): the
confidence sequence's error rates over many simulated rollouts, the decisions, the units of
shadow (paired) and canary (by slice) comparisons, segments, prediction shift and outcomes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from watchkeeper import compare as cmp

ALPHA = 0.05
MARGIN = 0.005


def _fraud_like_gains(rng, n_rollouts: int, n: int, mean: float) -> np.ndarray:
    """Per-row brier gains shaped like fraud: mostly tiny, a few large (the 3% that are fraud),
    centred exactly on `mean` for every rollout."""
    fraud = rng.random((n_rollouts, n)) < 0.03
    q = np.where(fraud, rng.normal(0, 0.3, (n_rollouts, n)), rng.normal(0, 0.01, (n_rollouts, n)))
    q = np.clip(q, -0.9, 0.9)
    return q - q.mean(axis=1, keepdims=True) + mean


def test_a_candidate_worse_by_exactly_the_margin_is_promoted_at_most_at_alpha():
    rng = np.random.default_rng(20261204)
    runs, n, min_labels = 2000, 3000, 1000
    q = _fraud_like_gains(rng, runs, n, -MARGIN)
    lower, upper = cmp.gain_sequence(q, 1.0, ALPHA, ALPHA)
    # A rollout that looks every day acts on the first decisive look: here it may look after
    # every single unit, the most it could ever peek.
    promoted = (lower[:, min_labels - 1:] > -MARGIN).any(axis=1)
    rate = promoted.mean()
    print(f"\nworse by exactly the margin: promoted in {promoted.sum()} of {runs} rollouts "
          f"({rate:.2%}; alpha {ALPHA:.0%})")
    assert rate <= ALPHA
    # The same rollouts are not rolled back either: Δ = −margin is not *more* than the margin.
    assert (upper < -MARGIN).any(axis=1).mean() <= ALPHA


def test_a_clearly_better_candidate_is_promoted_and_a_clearly_worse_one_rolled_back():
    rng = np.random.default_rng(7)
    better = _fraud_like_gains(rng, 200, 3000, +0.004)
    lo, hi = cmp.gain_sequence(better, 1.0, ALPHA, ALPHA)
    assert (lo[:, -1] > -MARGIN).mean() >= 0.95
    assert not (hi < -MARGIN).any()
    worse = _fraud_like_gains(rng, 200, 3000, -0.03)
    lo, hi = cmp.gain_sequence(worse, 1.0, ALPHA, ALPHA)
    first = np.argmax(hi < -MARGIN, axis=1)
    assert (hi[:, -1] < -MARGIN).mean() >= 0.95
    assert np.median(first) < 1500  # caught long before the end


def test_the_sequence_covers_the_mean_of_skewed_bounded_data_at_every_size():
    rng = np.random.default_rng(3)
    x = (rng.random((1000, 2000)) < 0.02).astype(float)  # rare events, mean 0.02
    lo, hi = cmp.eb_sequence(x, ALPHA)
    assert ((lo > 0.02).any(axis=1)).mean() <= ALPHA
    assert ((hi < 0.02).any(axis=1)).mean() <= ALPHA
    # intersected over time: bounds never loosen
    assert (np.diff(lo, axis=1) >= 0).all() and (np.diff(hi, axis=1) <= 0).all()
    with pytest.raises(cmp.CompareError, match=r"\[0, 1\]"):
        cmp.eb_sequence(np.array([0.5, 1.5]), ALPHA)


def test_verdict_rules():
    assert cmp.verdict(-0.004, 0.01, 5000, MARGIN, 1000)[0] == "promote"
    assert cmp.verdict(-0.004, 0.01, 500, MARGIN, 1000) == (
        "hold", "not worse so far, but only 500 of the 1,000 labelled units required")
    assert cmp.verdict(-0.02, -0.006, 50, MARGIN, 1000)[0] == "rollback"  # no minimum to roll back
    d, why = cmp.verdict(-0.02, 0.01, 5000, MARGIN, 1000)
    assert d == "hold" and "still contains" in why
    assert cmp.verdict(None, None, 0, MARGIN, 1000)[0] == "hold"


# --------------------------------------------------------------------------------------------
# Shadow (paired) and canary (by slice) on rows
# --------------------------------------------------------------------------------------------


def _world(rng, n: int, days: int = 6):
    ids = [f"t{i:06d}" for i in range(n)]
    p = rng.beta(0.6, 18, n)
    y = (rng.random(n) < p).astype(float)
    ds = rng.integers(0, days, n)
    arrived = ds + rng.integers(2, 6, n)
    return pd.DataFrame({
        "id": ids, "label": y, "p": p,
        "ds": [f"2026-01-{d + 1:02d}" for d in ds],
        "arrived": [f"2026-01-{a + 1:02d}" for a in arrived],
        "country": rng.choice(["US", "DE", "FR"], n, p=[0.5, 0.3, 0.2]),
        "amount": rng.lognormal(3.5, 1, n),
    })


def _shadow_rows(w: pd.DataFrame, cand_score: np.ndarray) -> pd.DataFrame:
    inc = np.clip(w["p"] * 1.6, 0, 1)  # the incumbent over-scores: miscalibrated
    return w.assign(score_incumbent=inc, pred_incumbent=(inc >= 0.5).astype(float),
                    score_candidate=cand_score, pred_candidate=(cand_score >= 0.5).astype(float))


OUTCOME = [{"name": "value_caught", "kind": "share_of_value_caught", "value_column": "amount",
            "threshold": 0.5, "direction": "at_least"}]


def test_shadow_promotes_a_calibrated_candidate_with_its_evidence():
    rng = np.random.default_rng(11)
    w = _world(rng, 20000)
    rows = _shadow_rows(w, w["p"].to_numpy())
    res = cmp.compare_shadow(rows, margins={"brier": MARGIN, "error_rate": 0.01}, alpha=ALPHA,
                             min_labels=2000, segments=["country"], min_segment_labels=500,
                             outcomes=OUTCOME)
    assert res.decision == "promote", res.reasons
    assert {t.metric for t in res.metrics} == {"brier", "error_rate"}
    brier = next(t for t in res.metrics if t.metric == "brier")
    assert brier.delta > 0 and brier.lower > -MARGIN and brier.n == len(rows)
    assert brier.loss_candidate < brier.loss_incumbent
    assert brier.alpha_upper == ALPHA / 2  # two metrics: rollback at alpha / 2 each
    assert {s.value for s in res.segments} == {"US", "DE", "FR"}
    assert res.distribution.psi > 0 and 0 < res.distribution.ks < 1
    assert res.outcomes[0].name == "value_caught" and res.outcomes[0].difference is not None
    d = res.to_dict()
    assert d["decision"] == "promote" and d["metrics"][0]["metric"] == "brier"


def test_shadow_rolls_back_when_one_segment_is_much_worse():
    rng = np.random.default_rng(12)
    w = _world(rng, 20000)
    cand = w["p"].to_numpy().copy()
    de = (w["country"] == "DE").to_numpy()
    cand[de] = np.clip(cand[de] + 0.35, 0, 1)  # broken for one country only
    res = cmp.compare_shadow(_shadow_rows(w, cand), margins={"brier": 0.05}, alpha=ALPHA,
                             min_labels=1000, segments=["country"], min_segment_labels=500)
    overall = res.metrics[0]
    assert overall.decision != "rollback"  # diluted over all rows it is within the margin
    assert res.decision == "rollback"
    assert [s.value for s in res.segments if s.decision == "rollback"] == ["DE"]
    assert any("country=DE" in r for r in res.reasons)


def test_units_known_on_a_day_are_a_prefix_of_those_known_later():
    rng = np.random.default_rng(5)
    w = _shadow_rows(_world(rng, 3000), rng.random(3000) * 0.2)
    early = w[w["arrived"] <= "2026-01-05"]
    q_early = cmp.paired_units(early, "brier")
    q_all = cmp.paired_units(w, "brier")
    assert 0 < len(q_early) < len(q_all)
    np.testing.assert_array_equal(q_all[: len(q_early)], q_early)


def test_canary_units_pair_each_row_of_the_small_slice_with_the_mean_of_the_large_one():
    cand = pd.DataFrame({"id": ["c1", "c2"], "label": [1.0, 0.0], "score": [0.5, 0.5],
                         "arrived": ["d1", "d1"], "ds": ["p1", "p1"]})
    inc = pd.DataFrame({"id": [f"i{k}" for k in range(7)], "label": [0.0] * 7,
                        "score": [0.1] * 7, "arrived": ["d1"] * 7, "ds": ["p1"] * 7})
    q = cmp.sliced_units(cand, inc, "brier")
    # r = 7 // 2 = 3 incumbent rows per candidate row (one left over); gains = 0.01 - 0.25
    np.testing.assert_allclose(np.sort(q), [-0.24, -0.24])
    # one candidate row against two incumbent rows: gain = mean(0.25, 0.25) - 0.01
    q2 = cmp.sliced_units(inc.iloc[:1], cand, "brier")
    np.testing.assert_allclose(q2, [0.25 - 0.01])
    # the other way round: the incumbent's slice is the small one (r = 7 // 2 = 3)
    q3 = cmp.sliced_units(inc, cand.iloc[:1].assign(label=0.0), "brier")
    np.testing.assert_allclose(q3, [0.25 - 0.01])
    # rows of different arrival days are never set against each other
    assert len(cmp.sliced_units(cand, inc.assign(arrived="d2"), "brier")) == 0


def test_canary_rolls_back_a_candidate_served_through_a_broken_path():
    rng = np.random.default_rng(21)
    w = _world(rng, 40000, days=10)
    served = rng.random(len(w)) < 0.25
    logit = np.log(w["p"] / (1 - w["p"])) + 3.0  # the serving artifact's missing prior correction
    cand = w[served].assign(score=1 / (1 + np.exp(-logit[served])))
    inc = w[~served].assign(score=w["p"][~served])
    for f in (cand, inc):
        f["pred"] = (f["score"] >= 0.5).astype(float)
    res = cmp.compare_canary(cand, inc, margins={"brier": MARGIN}, alpha=ALPHA, min_labels=1000,
                             segments=["country"], outcomes=OUTCOME, stage="25%",
                             traffic={"expected_percent": 25})
    assert res.decision == "rollback" and res.mode == "canary" and res.stage == "25%"
    t = res.metrics[0]
    assert t.upper < -MARGIN and t.n == len(cand)  # every candidate row is a unit
    assert res.distribution.mean_candidate > res.distribution.mean_incumbent
    assert res.traffic == {"expected_percent": 25}
    same = cmp.compare_canary(w[served].assign(score=w["p"][served], pred=0.0),
                              inc, margins={"brier": 0.01}, alpha=ALPHA, min_labels=1000)
    assert same.decision == "promote", same.reasons


def test_bad_input_is_named():
    with pytest.raises(cmp.CompareError, match="column.*arrived"):
        cmp.compare_shadow(pd.DataFrame({"id": [], "label": []}), margins={"brier": 0.01},
                           alpha=ALPHA, min_labels=10)
    with pytest.raises(cmp.CompareError, match="difference_bounds.mae"):
        cmp.metric_bound("mae")
    assert cmp.metric_bound("mae", {"mae": 30}) == 30
