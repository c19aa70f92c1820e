"""Feature coverage on synthetic transactions with known truth.

The reference never contains channel "pos" with country "c11"; amount and latency are strongly
correlated. Healthy days come from the same generator; incident days break one thing.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from watchkeeper.coverage import CoverageError, CoverageReference, build_coverage_reference, check_coverage

COUNTRIES = [f"c{i:02d}" for i in range(12)]
COUNTRY_P = np.array([30, 20, 10, 10, 8, 7, 5, 4, 3, 2, 0.5, 0.5]) / 100
CATEGORICAL = ["channel", "country", "segment"]
NUMERICAL = ["x1", "x2", "amount"]


def transactions(n: int, rng: np.random.Generator, correlation_break: bool = False) -> pd.DataFrame:
    x1 = rng.normal(0, 1, n)
    x2 = 0.9 * x1 + np.sqrt(1 - 0.81) * rng.normal(0, 1, n)
    if correlation_break:
        x2 = rng.permutation(x2)  # same marginal distribution, the relation to x1 is gone
    channel = rng.choice(["web", "app", "pos"], n, p=[0.5, 0.4, 0.1])
    country = rng.choice(COUNTRIES, n, p=COUNTRY_P)
    country = np.where((channel == "pos") & (country == "c11"), "c00", country)  # never in the reference
    return pd.DataFrame({
        "x1": x1, "x2": x2, "amount": np.exp(rng.normal(3, 1, n)) * np.where(channel == "pos", 2, 1),
        "channel": channel, "country": country, "segment": rng.choice(["retail", "business"], n, p=[0.8, 0.2]),
    })


def with_pair(batch: pd.DataFrame, rows: int, channel: str = "pos", country: str = "c11") -> pd.DataFrame:
    batch = batch.copy()
    batch.loc[batch.index[:rows], ["channel", "country"]] = [channel, country]
    return batch


@pytest.fixture(scope="module")
def reference() -> CoverageReference:
    rng = np.random.default_rng(1)
    days = [transactions(20_000, rng) for _ in range(10)]
    return build_coverage_reference(pd.concat(days, ignore_index=True), categorical=CATEGORICAL,
                                    numerical=NUMERICAL, reference_days=days)


def test_reference_summary(reference):
    assert reference.spread_source == "days" and len(reference.day_errors) == 10
    assert 0.9 <= reference.explained_variance < 1
    assert 1 <= len(reference.components) < len(reference.pca_mean)
    assert "c11" in reference.seen_values["country"]
    assert "pos\x1fc11" not in reference.seen_pairs["channel\x1fcountry"]


@pytest.mark.parametrize(("n", "rows"), [(200, 10), (20_000, 60)])
def test_unseen_pair_with_support_alerts(reference, n, rows):
    report = check_coverage(with_pair(transactions(n, np.random.default_rng(n)), rows), reference)
    assert report.alert and report.n_alerting_pairs == 1
    pair = report.alert_pairs[0]
    assert (pair.columns, pair.values, pair.rows, pair.kind) == (["channel", "country"], ["pos", "c11"], rows,
                                                                 "new_combination")
    assert pair.example_rows == [0, 1, 2]
    assert not report.multivariate.alert  # a handful of rows does not move the multivariate score


@pytest.mark.parametrize(("n", "rows"), [(200, 2), (20_000, 4)])
def test_chance_pair_below_support_is_listed_but_silent(reference, n, rows):
    report = check_coverage(with_pair(transactions(n, np.random.default_rng(n + 1)), rows), reference)
    assert rows < report.support
    assert [(p.values, p.rows, p.alert) for p in report.unseen_pairs] == [(["pos", "c11"], rows, False)]
    assert not report.alert and report.n_unseen_pairs == 1


def test_default_support_follows_batch_and_reference_size(reference):
    small = check_coverage(transactions(200, np.random.default_rng(3)), reference)
    large = check_coverage(transactions(20_000, np.random.default_rng(3)), reference)
    assert small.support == 5 and large.support == 20  # 0.1% share floor at 20,000 rows
    assert "Poisson" in large.support_rule
    # a small reference makes chance pairs likely: more rows are needed before alerting
    rng = np.random.default_rng(4)
    tiny = build_coverage_reference(transactions(2_000, rng), categorical=CATEGORICAL, numerical=NUMERICAL)
    assert check_coverage(transactions(20_000, rng), tiny).support > 20
    assert check_coverage(transactions(200, rng), reference, min_support=12).support == 12


def test_new_category_value_is_flagged_as_new_value(reference):
    batch = with_pair(transactions(20_000, np.random.default_rng(5)), 300, channel="kiosk", country="c01")
    report = check_coverage(batch, reference)
    kinds = {(tuple(p.columns), p.kind) for p in report.alert_pairs}
    assert (("channel", "country"), "new_value") in kinds and (("channel", "segment"), "new_value") in kinds
    assert report.multivariate.alert  # 300 rows in a never-seen category leave the PCA subspace
    assert report.multivariate.contributions and next(iter(report.multivariate.contributions)) == "channel"


@pytest.mark.parametrize("n", [200, 20_000])
def test_correlation_break_alerts_while_marginals_look_unchanged(reference, n):
    rng = np.random.default_rng(n + 7)
    batch = transactions(n, rng, correlation_break=True)
    healthy = transactions(20_000, rng)
    for col in NUMERICAL:  # every marginal is still the reference's
        assert stats.ks_2samp(batch[col], healthy[col]).pvalue > 0.01
    report = check_coverage(batch, reference)
    mv = report.multivariate
    assert mv.alert and mv.value > mv.upper and "above the band" in mv.message
    assert set(list(mv.contributions)[:2]) == {"x1", "x2"}
    assert report.n_alerting_pairs == 0


@pytest.mark.parametrize("n", [200, 20_000])
def test_same_distribution_days_stay_calm(reference, n):
    rng = np.random.default_rng(n + 11)
    mv_alerts = pair_alert_days = 0
    for _ in range(40):
        report = check_coverage(transactions(n, rng), reference)
        mv_alerts += report.multivariate.alert
        pair_alert_days += report.n_alerting_pairs > 0
    assert mv_alerts <= 2 and pair_alert_days == 0


def test_band_is_wider_for_small_batches(reference):
    small = check_coverage(transactions(200, np.random.default_rng(12)), reference).multivariate
    large = check_coverage(transactions(20_000, np.random.default_rng(12)), reference).multivariate
    assert (small.upper - small.lower) > 5 * (large.upper - large.lower)


def test_missing_columns_and_nulls_are_reported(reference):
    rng = np.random.default_rng(13)
    batch = with_pair(transactions(2_000, rng), 50).drop(columns=["segment"])
    report = check_coverage(batch, reference)
    seg = [p for p in report.problems if p.column == "segment"]
    assert {p.checks[0] for p in seg} == {"pairs", "multivariate"} and all(p.kind == "problem" for p in seg)
    assert report.multivariate is None
    assert report.n_alerting_pairs == 1  # channel x country is still checked

    batch = transactions(2_000, rng)
    batch.loc[[4, 8], "x1"] = np.nan
    batch.loc[[5], "country"] = None
    report = check_coverage(batch, reference)
    x1 = next(p for p in report.problems if p.column == "x1")
    assert x1.kind == "note" and x1.rows == 2 and x1.example_rows == [4, 8] and "median" in x1.message
    country = next(p for p in report.problems if p.column == "country")
    assert country.rows == 1 and country.example_rows == [5]
    assert report.multivariate is not None

    empty = check_coverage(transactions(0, rng), reference)
    assert empty.n_rows == 0 and empty.problems[0].kind == "problem" and not empty.alert


def test_reference_errors_are_typed():
    rng = np.random.default_rng(14)
    with pytest.raises(CoverageError, match=r"column\(s\) \['x9'\] missing"):
        build_coverage_reference(transactions(100, rng), categorical=CATEGORICAL, numerical=["x9"])
    with pytest.raises(CoverageError, match="0 rows"):
        build_coverage_reference(transactions(0, rng), categorical=CATEGORICAL, numerical=NUMERICAL)
    with pytest.raises(CoverageError, match="both categorical and numerical"):
        build_coverage_reference(transactions(100, rng), categorical=["x1"], numerical=["x1"])


def test_chunks_when_days_are_not_given_and_json_round_trip():
    rng = np.random.default_rng(15)
    ref = build_coverage_reference(transactions(20_000, rng), categorical=CATEGORICAL, numerical=NUMERICAL)
    assert ref.spread_source == "chunks" and len(ref.day_errors) == 10
    assert any("contiguous chunk" in note for note in ref.notes)
    restored = CoverageReference.from_dict(json.loads(json.dumps(ref.to_dict())))
    batch = with_pair(transactions(3_000, rng, correlation_break=True), 40)
    a, b = check_coverage(batch, ref).to_dict(), check_coverage(batch, restored).to_dict()
    assert a == b and json.loads(json.dumps(a)) == a
    assert a["alert"] and a["multivariate"]["alert"] and a["n_alerting_pairs"] == 1
