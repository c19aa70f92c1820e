"""watchkeeper.drift and watchkeeper.evidently_html against real Evidently 0.7.23 runs."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pandas as pd
import pytest

from evidently import DataDefinition, Dataset, Report
from evidently.metrics import ValueDrift
from evidently.presets import DataDriftPreset

from watchkeeper import drift as D
from watchkeeper.drift import (
    DriftInputError,
    DriftSpecError,
    FeatureSpec,
    PreparedReference,
    PreparedReferenceError,
    compare,
    correct_jointly,
    merge_results,
    prepare_reference,
)
from watchkeeper.evidently_html import render_report

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")

REGIONS = ["DE", "FR", "GB", "IT", "US"]
NUM = [f"n{i}" for i in range(12)]
CAT = [f"c{i}" for i in range(8)]
FEATURES = [FeatureSpec(c, "numerical") for c in NUM] + [FeatureSpec(c, "categorical") for c in CAT]
_CARD = [2, 3, 4, 5, 6, 8, 10, 15]


def make_frame(rng: np.random.Generator, n: int, *, region_p=None) -> pd.DataFrame:
    """20 features of assorted shapes (skewed, heavy-tailed, discrete, rare categories) + region."""
    d = {
        "n0": rng.normal(0, 1, n), "n1": rng.lognormal(0, 1, n), "n2": rng.exponential(2, n),
        "n3": rng.uniform(-1, 1, n), "n4": rng.poisson(3, n).astype(float),
        "n5": rng.binomial(4, 0.5, n).astype(float),  # 5 values: Evidently treats it with JS / chisquare
        "n6": rng.gamma(2, 1, n), "n7": rng.standard_t(3, n), "n8": rng.beta(2, 5, n),
        "n9": np.round(rng.normal(10, 2, n), 1), "n10": np.where(rng.random(n) < 0.3, 0.0, rng.normal(5, 1, n)),
        "n11": rng.integers(0, 50, n).astype(float),
    }
    for i, k in enumerate(_CARD):
        p = np.linspace(1, 0.15, k)
        d[f"c{i}"] = rng.choice([f"v{j}" for j in range(k)], n, p=p / p.sum())
    d["region"] = rng.choice(REGIONS, n, p=region_p)
    return pd.DataFrame(d)


def evidently_scores(ref: pd.DataFrame, cur: pd.DataFrame, metrics, num, cat) -> dict[str, float]:
    dd = DataDefinition(numerical_columns=num, categorical_columns=cat)
    snap = Report(metrics, include_tests=False).run(Dataset.from_pandas(cur, data_definition=dd),
                                                     Dataset.from_pandas(ref, data_definition=dd))
    out = {}
    for m in snap.dict()["metrics"]:
        if m["config"]["type"].endswith("ValueDrift"):
            out[m["config"]["column"]] = (m["value"], m["config"]["method"], m["config"]["threshold"])
    return out


DISPLAY = {st.display_name: name for name, st in D._STATTESTS.items()}


# ------------------------------------------------------------------------------------------------
# Scores are Evidently's own numbers
# ------------------------------------------------------------------------------------------------


def test_auto_methods_and_scores_equal_a_plain_datadriftpreset_run():
    rng = np.random.default_rng(1)
    ref, cur = make_frame(rng, 1500), make_frame(rng, 1200)
    cur["n0"] += 0.3
    ref.loc[::50, "n1"] = np.nan          # NaN and +-inf are dropped the way Evidently drops them
    cur.loc[::70, "n2"] = np.inf
    cur.loc[::90, "c3"] = None
    num, cat = ["n0", "n1", "n2", "n5", "n7", "n11"], ["c0", "c3", "c5", "c7"]
    specs = [f for f in FEATURES if f.name in num + cat]
    prep = prepare_reference(ref, specs, name="train")
    res = compare(prep, cur, kind="skew")
    ev = evidently_scores(ref[num + cat], cur[num + cat], [DataDriftPreset()], num, cat)
    assert set(ev) == set(num + cat)
    for col, (value, display, threshold) in ev.items():
        row = res.row(col)
        assert row.method == DISPLAY[display], col
        assert row.threshold == threshold
        assert row.score == pytest.approx(value, abs=1e-9, rel=1e-9), col
        assert row.evidently_drifted == (row.score >= threshold)
    assert prep.methods["n0"] == "wasserstein" and prep.methods["n5"] == "jensenshannon"
    assert res.row("n0").evidently_drifted and res.row("n0").drifted


@pytest.mark.parametrize("n_ref", [600, 3000])
def test_spec_methods_and_small_reference_auto_equal_valuedrift(n_ref):
    rng = np.random.default_rng(2)
    ref, cur = make_frame(rng, n_ref), make_frame(rng, 400)
    cur["c2"] = np.where(rng.random(400) < 0.2, "v0", cur["c2"])
    specs = [
        FeatureSpec("n0", "numerical", method="psi"),
        FeatureSpec("n1", "numerical", method="ks"),
        FeatureSpec("n2", "numerical", method="wasserstein", threshold=0.2),
        FeatureSpec("n3", "numerical", method="jensenshannon"),
        FeatureSpec("n4", "numerical"),                 # auto: ks (<= 1000 rows) / wasserstein
        FeatureSpec("n5", "numerical"),                 # auto: chisquare (5 values) / jensenshannon
        FeatureSpec("c0", "categorical"),               # auto: z (2 values) / jensenshannon
        FeatureSpec("c1", "categorical", method="chisquare"),
        FeatureSpec("c2", "categorical", method="psi"),
        FeatureSpec("c3", "categorical", method="jensenshannon", threshold=0.05),
    ]
    prep = prepare_reference(ref, specs, name="window")
    res = compare(prep, cur, kind="drift")
    num = [s.name for s in specs if s.kind == "numerical"]
    cat = [s.name for s in specs if s.kind == "categorical"]
    # ValueDrift with the spec's method, or method=None where the spec leaves it to Evidently; the
    # auto-chosen chisquare for a numeric column is only accepted by Evidently's auto path.
    metrics = [ValueDrift(column=s.name, method=s.method, threshold=s.threshold) for s in specs]
    ev = evidently_scores(ref, cur, metrics, num, cat)
    for s in specs:
        value, display, threshold = ev[s.name]
        row = res.row(s.name)
        assert row.method == DISPLAY.get(display, display), s.name
        assert row.threshold == pytest.approx(threshold)
        assert row.score == pytest.approx(value, abs=1e-9, rel=1e-9), s.name
    expected_auto = {600: ("ks", "chisquare", "z"), 3000: ("wasserstein", "jensenshannon", "jensenshannon")}
    assert (prep.methods["n4"], prep.methods["n5"], prep.methods["c0"]) == expected_auto[n_ref]


def test_segment_scores_equal_valuedrift_on_the_segment_rows_and_large_categoricals_use_fast_path(
        monkeypatch):
    # batches this long switch categoricals to pandas' category dtype (50k rows by default)
    monkeypatch.setattr(D, "CATEGORY_FASTPATH_MIN_ROWS", 2000)
    rng = np.random.default_rng(3)
    ref, cur = make_frame(rng, 6000), make_frame(rng, 5000)
    cur = cur.sample(frac=1.0, random_state=0)   # rows are matched by position, whatever the index
    specs = [FeatureSpec("n0", "numerical", method="ks"), FeatureSpec("c4", "categorical"),
             FeatureSpec("n9", "numerical")]
    prep = prepare_reference(ref, specs, name="big", segments=["region"])
    assert isinstance(prep._feature("c4").values.dtype, pd.CategoricalDtype)
    res = compare(prep, cur, kind="drift", segments=["region"], min_segment_rows=500)
    metrics = [ValueDrift(column=s.name, method=prep.methods[s.name]) for s in specs]
    whole = evidently_scores(ref, cur, metrics, ["n0", "n9"], ["c4"])
    for s in specs:
        assert res.row(s.name).score == pytest.approx(whole[s.name][0], abs=1e-9, rel=1e-9)
    seg = evidently_scores(ref[ref.region == "IT"], cur[cur.region == "IT"], metrics, ["n0", "n9"], ["c4"])
    for s in specs:
        assert res.row(s.name, {"region": "IT"}).score == pytest.approx(seg[s.name][0], abs=1e-9, rel=1e-9)


def test_cheap_auto_method_rule_equals_evidentlys_get_stattest():
    from evidently.legacy.calculations.stattests import get_stattest

    rng = np.random.default_rng(15)
    for n_ref in (40, 1000, 1001, 5000):
        for k_ref in (1, 2, 3, 5, 6, 40):
            for extra in (0, 1, 4):                      # distinct values only the batch brings
                base = np.arange(k_ref, dtype=float)
                ref = np.r_[base, rng.choice(base, n_ref - k_ref)]
                cur = np.r_[rng.choice(base, 60), k_ref + np.arange(extra, dtype=float)]
                for kind, r, c in (("numerical", np.sort(ref), cur),
                                   ("categorical", pd.Series(ref.astype(int).astype(str)),
                                    pd.Series(cur.astype(int).astype(str))),
                                   ("categorical", pd.Series(ref.astype(int).astype(str)).astype("category"),
                                    pd.Series(cur.astype(int).astype(str)))):
                    ctype = D._KIND_TO_COLTYPE[kind]
                    expected = get_stattest(pd.Series(r) if isinstance(r, np.ndarray) else r,
                                            pd.Series(c) if isinstance(c, np.ndarray) else c, ctype, None)
                    assert D._auto_method(ctype, r, c) == expected.name, (kind, n_ref, k_ref, extra)


def test_vectorised_null_statistic_equals_evidentlys_function_on_the_replicate_data():
    # The calibration is only as good as the null: each replicate's statistic, computed from
    # counts, must be the number Evidently's function gives for the data those counts describe.
    from scipy.stats import ks_2samp

    rng = np.random.default_rng(4)
    cases = [("categorical", m) for m in ("jensenshannon", "psi", "kl_div", "hellinger", "chisquare", "z")]
    cases += [("numerical", m) for m in ("wasserstein", "ks", "ed", "jensenshannon", "psi", "kl_div",
                                         "chisquare", "z")]
    for kind, method in cases:
        ctype = D._KIND_TO_COLTYPE[kind]
        for _ in range(6):
            m, n = int(rng.integers(40, 300)), int(rng.integers(10, 80))
            if kind == "categorical":
                k = int(rng.integers(2, 7))
                ref = pd.Series(rng.choice(list("abcdefg")[:k], m, p=rng.dirichlet(np.ones(k))))
            elif method in ("wasserstein", "ks", "ed"):
                ref = np.sort(np.round(rng.normal(0, 1, m), 1))
            else:
                ref = np.sort(rng.integers(0, int(rng.integers(2, 15)), m).astype(float))
            atoms = D._null_atoms(method, kind == "numerical", ref, m, n)
            R = D._draw_counts(rng, atoms.counts, m, 4)
            C = D._draw_counts(rng, atoms.counts, n, 4)
            t, stat = D._null_statistic(method, atoms, R, C)
            support = np.array(atoms.support, dtype=object if kind == "categorical" else float)
            for i in range(4):
                r = pd.Series(np.repeat(support, R[i].astype(int)))
                c = pd.Series(np.repeat(support, C[i].astype(int)))
                if stat == "ks_statistic":
                    expected = ks_2samp(r, c).statistic
                else:
                    score = D._STATTESTS[method](r, c, ctype, None).drift_score
                    expected = (-math.log(score) if score > 0 else math.inf) if stat == "-ln(score)" else score
                assert t[i] == pytest.approx(expected, abs=1e-9, rel=1e-9), (kind, method)


# ------------------------------------------------------------------------------------------------
# Alerts that respect sample size and multiplicity
# ------------------------------------------------------------------------------------------------


def test_same_distribution_small_batches_alert_on_at_most_5_percent_of_days():
    rng = np.random.default_rng(5)
    prep = prepare_reference(make_frame(rng, 1400), FEATURES, name="window", segments=["region"])
    days_any, days_evidently, comparisons = 0, 0, set()
    for _ in range(100):
        res = compare(prep, make_frame(rng, 200), kind="drift", segments=["region"],
                      min_segment_rows=30, daily_false_alarm_rate=0.05)
        comparisons.add(res.n_comparisons)
        days_any += res.dataset_drift
        days_evidently += any(r.evidently_drifted for r in res.rows)
    # 20 features x (whole batch + 5 regions of ~40 rows)
    assert min(comparisons) >= 100 and max(comparisons) == 120
    assert days_any <= 5, f"{days_any} of 100 same-distribution days raised an alarm"
    # ...while Evidently's fixed thresholds fire on almost every such day
    assert days_evidently >= 90


def test_a_real_shift_in_a_small_batch_is_detected_and_nothing_else_is():
    rng = np.random.default_rng(6)
    prep = prepare_reference(make_frame(rng, 1400), FEATURES, name="window", segments=["region"])
    cur = make_frame(rng, 200)
    cur["n0"] = cur["n0"] + 0.7                                            # mean shift
    cur["c5"] = rng.choice([f"v{j}" for j in range(8)], 200, p=[0.05] * 4 + [0.2] * 4)  # mix change
    res = compare(prep, cur, kind="drift", segments=["region"], min_segment_rows=30)
    assert res.row("n0").drifted and res.row("c5").drifted
    assert {r.feature for r in res.whole_batch_rows if r.drifted} == {"n0", "c5"}
    assert res.dataset_drift and res.share == pytest.approx(2 / 20)
    row = res.row("n0")
    assert row.p_adjusted <= 0.05 and row.score >= row.calibrated_threshold
    # rows of features that did not move stay below their calibrated threshold
    calm = res.row("n3")
    assert not calm.drifted and calm.score < calm.calibrated_threshold
    # Benjamini-Hochberg rejects at least what Holm does; the summary is JSON-ready
    bh = compare(prep, cur, kind="drift", segments=["region"], min_segment_rows=30, correction="bh")
    assert {r.feature for r in bh.rows if r.drifted} >= {"n0", "c5"}
    payload = json.loads(json.dumps(res.to_dict()))
    assert payload["dataset_drift"] is True and len(payload["rows"]) == len(res.rows)


def test_a_shift_confined_to_one_segment_is_named_while_the_whole_batch_stays_calm():
    rng = np.random.default_rng(7)
    p = [0.31, 0.31, 0.31, 0.04, 0.03]           # IT and US are small markets
    specs = [f for f in FEATURES if f.name in ("n0", "n4", "n9", "n11", "c2", "c6")]
    prep = prepare_reference(make_frame(rng, 14_000, region_p=p), specs, name="window",
                             segments=["region"])
    cur = make_frame(rng, 4000, region_p=p)
    it = cur["region"] == "IT"
    cur.loc[it, "n9"] = cur.loc[it, "n9"] * 1.05 + 0.6   # an offset bug in one market's feed
    res = compare(prep, cur, kind="drift", segments=["region"], min_segment_rows=100)
    assert not res.row("n9").drifted and not res.row("n9").evidently_drifted
    drifted = [(r.feature, r.segment) for r in res.rows if r.drifted]
    assert drifted == [("n9", {"region": "IT"})]
    assert res.dataset_drift


def test_small_segment_values_are_pooled_or_skipped_and_said_so():
    rng = np.random.default_rng(8)
    prep = prepare_reference(make_frame(rng, 5000, region_p=[0.45, 0.45, 0.05, 0.04, 0.01]),
                             FEATURES[:3], name="w", segments=["region"])
    cur = make_frame(rng, 1200, region_p=[0.45, 0.45, 0.05, 0.04, 0.01])
    res = compare(prep, cur, kind="drift", segments=["region"], min_segment_rows=100)
    labels = {r.segment["region"] for r in res.segment_rows}
    assert labels == {"DE", "FR", "(other)"}
    note = next(n for n in res.notes if n.startswith("segment 'region'"))
    assert "pooled into '(other)'" in note and "GB (" in note and "US (" in note
    res2 = compare(prep, cur, kind="drift", segments=["region"], min_segment_rows=300)
    note2 = next(n for n in res2.notes if n.startswith("segment 'region'"))
    assert "skipped" in note2 and {r.segment["region"] for r in res2.segment_rows} == {"DE", "FR"}


def test_a_segment_whose_values_all_fall_under_the_minimum_is_skipped_not_pooled_into_the_batch():
    """Pooling every value would make "(other)" the whole batch and repeat each comparison as
    [segment=(other)]; the segment is skipped with one note and the whole-batch scores stay
    Evidently's own."""
    rng = np.random.default_rng(11)
    ref = make_frame(rng, 1500)
    prep = prepare_reference(ref, FEATURES[:3], name="w", segments=["region"])
    cur = make_frame(rng, 300)  # 5 regions of about 60 rows each: none reaches 100
    res = compare(prep, cur, kind="drift", segments=["region"], min_segment_rows=100)
    assert res.segment_rows == ()
    notes = [n for n in res.notes if n.startswith("segment 'region'")]
    assert len(notes) == 1, res.notes
    assert "skipped, no value reaches min_segment_rows=100" in notes[0]
    assert "drift.min_segment_rows" in notes[0]
    plain = compare(prep, cur, kind="drift")  # no segments asked at all
    assert [(r.feature, r.score) for r in res.rows] == [(r.feature, r.score) for r in plain.rows]
    ev = evidently_scores(ref, cur, [ValueDrift(column=c, method=prep.methods[c]) for c in NUM[:3]],
                          NUM[:3], [])
    assert {r.feature for r in res.rows} == set(NUM[:3])
    for r in res.rows:
        assert r.score == pytest.approx(ev[r.feature][0], abs=1e-9, rel=1e-9)


# ------------------------------------------------------------------------------------------------
# Bad input is a finding, not a crash
# ------------------------------------------------------------------------------------------------


def test_missing_all_null_constant_and_new_type_are_findings_and_the_rest_is_measured():
    rng = np.random.default_rng(9)
    prep = prepare_reference(make_frame(rng, 2000), FEATURES, name="window")
    cur = make_frame(rng, 300).drop(columns=["n1"])
    cur["n2"] = np.nan
    cur["n3"] = 0.25
    cur["n4"] = "7"                      # a numeric feature arriving as text
    cur["c0"] = rng.integers(0, 2, 300)  # a categorical arriving as numbers
    res = compare(prep, cur, kind="drift")
    kinds = {(p.feature, p.kind) for p in res.problems}
    assert kinds == {("n1", "missing"), ("n2", "all_null"), ("n3", "constant"), ("n4", "new_type"),
                     ("c0", "new_type")}
    msgs = {p.feature: p.message for p in res.problems}
    assert "'n1' is missing from the batch" in msgs["n1"]
    assert "'n4' is numerical" in msgs["n4"] and "'7'" in msgs["n4"]
    assert "constant" in msgs["n3"] and "0.25" in msgs["n3"]
    for f in ("n1", "n2", "n4", "c0"):
        assert res.row(f).score is None and res.row(f).drifted is None and res.row(f).note
    assert res.row("n3").score is not None and res.row("n3").drifted     # constant: measured, drifted
    measured = [r for r in res.whole_batch_rows if r.score is not None]
    assert len(measured) == 16 and res.n_comparisons == 16


def test_all_null_reference_column_is_a_finding_and_empty_reference_says_so():
    rng = np.random.default_rng(10)
    ref = make_frame(rng, 500)
    ref["n0"] = np.nan
    prep = prepare_reference(ref, FEATURES[:4], name="window")
    res = compare(prep, make_frame(rng, 200), kind="drift")
    assert [(p.feature, p.kind) for p in res.problems] == [("n0", "empty_reference")]
    assert res.n_comparisons == 3

    empty = prepare_reference(ref.iloc[:0], FEATURES[:4], name="window", segments=["region"])
    res = compare(empty, make_frame(rng, 200), kind="drift", segments=["region"])
    assert res.reference_empty and res.rows == () and not res.dataset_drift and res.share is None
    assert {p.kind for p in res.problems} == {"empty_reference"} and len(res.problems) == 4
    assert any("empty" in n and "nothing was compared" in n for n in res.notes)


def test_spec_and_option_errors_name_the_field():
    with pytest.raises(DriftSpecError, match="'kind'"):
        FeatureSpec("x", "text")
    with pytest.raises(DriftSpecError, match="'method'.*Wasserstein distance"):
        FeatureSpec("x", "numerical", method="Wasserstein distance (normed)")
    with pytest.raises(DriftSpecError, match="chisquare.*does not apply to numerical"):
        FeatureSpec("x", "numerical", method="chisquare")
    with pytest.raises(DriftSpecError, match="'threshold'.*\\(0, 1\\)"):
        FeatureSpec("x", "numerical", method="ks", threshold=1.5)
    rng = np.random.default_rng(11)
    prep = prepare_reference(make_frame(rng, 300), FEATURES[:2], name="w")
    with pytest.raises(DriftSpecError, match="daily_false_alarm_rate"):
        compare(prep, make_frame(rng, 50), kind="drift", daily_false_alarm_rate=0)
    with pytest.raises(DriftSpecError, match=r"features \['nope'\]"):
        compare(prep, make_frame(rng, 50), kind="drift", features=["nope"])
    with pytest.raises(DriftInputError, match="duplicate column names"):
        compare(prep, pd.concat([make_frame(rng, 5)[["n0"]]] * 2, axis=1), kind="drift")


# ------------------------------------------------------------------------------------------------
# Fan-out, persistence
# ------------------------------------------------------------------------------------------------


def test_merging_feature_group_results_equals_one_call():
    rng = np.random.default_rng(12)
    prep = prepare_reference(make_frame(rng, 2000), FEATURES, name="window", segments=["region"])
    cur = make_frame(rng, 600)
    cur["n0"] += 0.25
    cur.loc[cur.region == "FR", "n6"] += 0.6
    one = compare(prep, cur, kind="drift", segments=["region"], min_segment_rows=100)
    names = [f.name for f in FEATURES]
    groups = [compare(prep, cur, kind="drift", segments=["region"], min_segment_rows=100,
                      features=names[i::3]) for i in range(3)]
    merged = merge_results(groups)
    assert merged.rows == one.rows
    assert (merged.share, merged.dataset_drift, merged.n_comparisons, merged.problems) == \
           (one.share, one.dataset_drift, one.n_comparisons, one.problems)
    assert any(r.drifted for r in one.rows)
    # each group alone corrects over fewer comparisons: its adjusted p-values are smaller
    alone = {(r.feature, str(r.segment)): r.p_adjusted for g in groups for r in g.rows}
    assert all(alone[(r.feature, str(r.segment))] <= r.p_adjusted for r in one.rows if r.p_adjusted)
    threaded = compare(prep, cur, kind="drift", segments=["region"], min_segment_rows=100, max_workers=2)
    assert threaded.rows == one.rows
    with pytest.raises(DriftInputError, match="more than one group"):
        merge_results([groups[0], groups[0]])
    # drift and skew of one day under one correction: the family is the union of both
    skew = compare(prepare_reference(make_frame(rng, 2000), FEATURES, name="training"), cur, kind="skew")
    drift_j, skew_j = correct_jointly([one, skew])
    assert drift_j.n_comparisons == skew_j.n_comparisons == one.n_comparisons + skew.n_comparisons
    assert all(a.p_adjusted >= b.p_adjusted for a, b in zip(drift_j.rows, one.rows) if b.p_adjusted)
    assert [r.score for r in drift_j.rows] == [r.score for r in one.rows]


def test_prepared_reference_saves_under_watchkeeper_home_and_loads(tmp_path, monkeypatch):
    monkeypatch.setenv("WATCHKEEPER_HOME", str(tmp_path / "home"))
    rng = np.random.default_rng(13)
    prep = prepare_reference(make_frame(rng, 2000), FEATURES, name="fraud/training set",
                             segments=["region"], typical_batch_rows=300)
    cur = make_frame(rng, 300)
    path = prep.save()
    assert path == tmp_path / "home" / "drift" / "references" / "fraud_training_set.pkl"
    loaded = PreparedReference.load(path)
    assert loaded.methods == prep.methods and loaded.n_rows == 2000
    kw = dict(kind="skew", segments=["region"], min_segment_rows=50)
    assert compare(loaded, cur, **kw).rows == compare(prep, cur, **kw).rows
    bad = tmp_path / "bad.pkl"
    bad.write_bytes(b"not a pickle")
    with pytest.raises(PreparedReferenceError, match=re.escape(str(bad))):
        PreparedReference.load(bad)
    with pytest.raises(PreparedReferenceError, match="no prepared reference"):
        PreparedReference.load(tmp_path / "nope.pkl")


# ------------------------------------------------------------------------------------------------
# HTML report sharing one JS bundle
# ------------------------------------------------------------------------------------------------


def test_html_report_references_the_shared_bundle_and_drops_all_null_columns(tmp_path):
    rng = np.random.default_rng(14)
    ref, cur = make_frame(rng, 3000), make_frame(rng, 30_000)
    cur["n1"] = np.nan
    specs = FEATURES[:3] + FEATURES[12:14]
    prep = prepare_reference(ref, specs, name="w")
    root = tmp_path / "reports"
    paths = [render_report(ref, cur, specs, prep.methods, root / "fraud" / ds / "drift.html",
                           title=f"fraud drift {ds}", reports_root=root, max_rows=5000)
             for ds in ("2026-03-01", "2026-03-02")]
    bundles = list(root.rglob("*.js"))
    assert bundles == [root / "_static" / "evidently" / "evidently.0.7.23.js"]
    assert bundles[0].stat().st_size > 3_000_000
    for p in paths:
        page = p.read_text(encoding="utf-8")
        assert len(page) < 1_000_000                      # no inline 3.5 MB bundle
        assert '<script src="../../_static/evidently/evidently.0.7.23.js"></script>' in page
        assert "url(../../_static/evidently/material-ui-icons.woff2)" in page
        assert not re.search(r"https?://", page), re.findall(r"https?://\S{0,40}", page)[:3]
        assert "sampled: 5,000 of 30,000 batch rows" in page and "n1 (all null)" in page
        assert '"n0"' in page and '"n1"' not in page


# ---- day-to-day spread of a window of whole days (issue 14: seasonal inputs) ------------------

def _days_with_weather(rng, n_days: int, rows: int, day_sd: float):
    """Days of a temperature reading whose level moves from day to day (the weather) by
    `day_sd`, with readings spread 3 degrees around the day's level."""
    frames = []
    for _ in range(n_days):
        level = 12.0 + rng.normal(0.0, day_sd)
        frames.append(pd.DataFrame({"temp": rng.normal(level, 3.0, rows),
                                    "hour": rng.integers(0, 24, rows).astype(float)}))
    return frames


def _window(frames):
    ref = pd.concat(frames, ignore_index=True)
    return ref, np.repeat(np.arange(len(frames)), [len(f) for f in frames])


def test_a_window_of_days_carries_its_day_to_day_spread_into_the_null():
    specs = [FeatureSpec("temp", "numerical"), FeatureSpec("hour", "numerical")]
    false_pooled = false_days = 0
    taus, hours = [], []
    for seed in range(40):
        rng = np.random.default_rng([14, seed])
        frames = _days_with_weather(rng, 8, 300, day_sd=2.0)
        ref, days = _window(frames[:7])
        today = frames[7]  # an ordinary day: the same weather process
        pooled = prepare_reference(ref, specs, name="pooled", n_bootstrap=200)
        by_day = prepare_reference(ref, specs, name="by-day", n_bootstrap=200, days=days)
        a = compare(pooled, today, kind="drift").row("temp")
        b = compare(by_day, today, kind="drift").row("temp")
        false_pooled += bool(a.drifted)
        false_days += bool(b.drifted)
        assert a.day_spread is None and b.day_spread is not None
        taus.append(b.day_spread)
        # a feature without day effects keeps (about) the sampling null
        hours.append(compare(by_day, today, kind="drift").row("hour").day_spread)
    # the pooled null calls most ordinary weather days a shift; the day-aware one rarely does
    assert false_pooled >= 20, false_pooled
    assert false_days <= 4, false_days
    assert 0.3 < float(np.median(taus)) < 1.0  # ~ 2 degrees of weather over a 3.6-degree spread
    assert float(np.median(hours)) < 0.02 and max(hours) < 0.1 * float(np.median(taus))

    # a unit change (Fahrenheit) is far outside any day's spread
    rng = np.random.default_rng([14, 99])
    frames = _days_with_weather(rng, 8, 300, day_sd=2.0)
    ref, days = _window(frames[:7])
    fahrenheit = frames[7].assign(temp=frames[7]["temp"] * 1.8 + 32)
    row = compare(prepare_reference(ref, specs, name="w", n_bootstrap=200, days=days),
                  fahrenheit, kind="drift").row("temp")
    assert row.drifted and row.p_value < 1e-6


def test_exchangeable_days_leave_the_verdicts_as_without_days():
    """Days drawn from one distribution: tau ~ 0, so the test keeps its power on a real shift."""
    specs = [FeatureSpec("temp", "numerical")]
    rng = np.random.default_rng(7)
    frames = _days_with_weather(rng, 8, 300, day_sd=0.0)
    ref, days = _window(frames[:7])
    shifted = frames[7].assign(temp=frames[7]["temp"] + 1.2)  # 0.4 sd: a modest, real shift
    a = compare(prepare_reference(ref, specs, name="p", n_bootstrap=200), shifted, kind="drift")
    b = compare(prepare_reference(ref, specs, name="d", n_bootstrap=200, days=days), shifted,
                kind="drift")
    assert a.row("temp").drifted and b.row("temp").drifted
    assert b.row("temp").day_spread < 0.06
    with pytest.raises(DriftInputError, match="days has 3 labels"):
        prepare_reference(ref, specs, name="bad", days=["a", "b", "c"])
