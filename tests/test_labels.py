"""watchkeeper.labels: label validation, history merge, join as known on a day, restatement."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score, precision_score, recall_score

from watchkeeper.labels import (
    IssueKind,
    LabelInputError,
    join_labels,
    merge_labels,
    normalize_ids,
    resolve_labels,
    validate_labels,
)
from watchkeeper.performance import classification_metrics, evaluate_by_day

BIN = "binary_classification"


def _validate(raw, arrived_ds, source=None, task=BIN, ts_col="label_ts", **kw):
    return validate_labels(
        raw,
        id_col="txn_id",
        label_col="is_fraud",
        arrived_ds=arrived_ds,
        task=task,
        source=source or f"arrived={arrived_ds}.parquet",
        ts_col=ts_col,
        **kw,
    )


def _file(rows, arrived_ds, source=None):
    """Clean rows of a label file given as (id, label, label_ts)."""
    raw = pd.DataFrame(rows, columns=["txn_id", "is_fraud", "label_ts"])
    clean, issues = _validate(raw, arrived_ds, source)
    assert len(issues) == 0, issues.messages()
    return clean


# --------------------------------------------------------------------------------------------
# validate_labels


@pytest.mark.parametrize("missing", ["txn_id", "is_fraud", "label_ts"])
def test_missing_column_rejects_file_naming_file_and_column(missing):
    raw = pd.DataFrame({"txn_id": [1, 2], "is_fraud": [0, 1], "label_ts": ["2024-03-01", "2024-03-01"]})
    clean, issues = _validate(raw.drop(columns=missing), "2024-03-02", source="labels/arrived=2024-03-02.parquet")
    assert clean.empty
    assert issues.file_rejected
    (issue,) = issues.of_kind(IssueKind.MISSING_COLUMN)
    assert issue.column == missing
    assert issue.count == 2
    assert issue.source == "labels/arrived=2024-03-02.parquet"
    assert f"'{missing}' is missing" in issue.message() and "labels/arrived=2024-03-02.parquet" in issue.message()


def test_mistyped_label_column_rejects_file():
    raw = pd.DataFrame({"txn_id": [1, 2, 3], "is_fraud": ["late", "early", "late"], "label_ts": ["2024-03-01"] * 3})
    clean, issues = _validate(raw, "2024-03-02", task="regression")
    assert clean.empty and issues.file_rejected
    (issue,) = issues.of_kind(IssueKind.MISTYPED_COLUMN)
    assert issue.column == "is_fraud" and issue.count == 3
    assert "'late'" in issue.reason and "regression" in issue.reason


def test_mistyped_timestamp_column_rejects_file():
    raw = pd.DataFrame({"txn_id": [1, 2], "is_fraud": [0, 1], "label_ts": [1.5, 2.5]})
    clean, issues = _validate(raw, "2024-03-02")
    assert clean.empty
    assert [i.column for i in issues.of_kind(IssueKind.MISTYPED_COLUMN)] == ["label_ts"]


def test_bad_rows_are_counted_with_rows_and_the_rest_kept():
    raw = pd.DataFrame(
        {
            "txn_id": [1, 2, 3, 4, None, 6, 7, 8],
            "is_fraud": [1, "0", "true", 2, 1, "x", None, 0],
            "label_ts": ["2024-03-01T10:00", "2024-03-01", "2024-03-01", "2024-03-01", "2024-03-01",
                         "2024-03-01", "2024-03-01", "not a date"],
        }
    )
    clean, issues = _validate(raw, "2024-03-02")
    assert list(clean["id"]) == ["1", "2", "3"]
    assert list(clean["label"]) == [1.0, 0.0, 1.0]
    assert list(clean["row"]) == [1, 2, 3]
    assert issues.counts() == {"missing_value": 2, "bad_value": 2, "bad_timestamp": 1}
    (bad,) = issues.of_kind(IssueKind.BAD_VALUE)
    assert bad.rows == (4, 6) and bad.column == "is_fraud"
    assert "row 4: 2" in bad.examples[0] and "0 or 1" in bad.reason
    assert issues.of_kind(IssueKind.BAD_TIMESTAMP)[0].rows == (8,)
    assert not issues.file_rejected


def test_labels_from_the_future_are_rejected():
    raw = pd.DataFrame(
        {
            "txn_id": [1, 2, 3, 4],
            "is_fraud": [0, 1, 0, 1],
            # 23:59 on the arrival day is fine; the next day is not; an aware time is compared in
            # UTC: 23:30 at -05:00 is 04:30 UTC the next day.
            "label_ts": ["2024-03-02T23:59:00", "2024-03-03T00:00:00", "2024-03-02T23:30:00-05:00", "2024-03-01"],
        }
    )
    clean, issues = _validate(raw, "2024-03-02")
    assert list(clean["id"]) == ["1", "4"]
    (fut,) = issues.of_kind(IssueKind.FUTURE)
    assert fut.count == 2 and fut.rows == (2, 3)
    assert "2024-03-02" in fut.reason


def test_without_timestamp_column_the_arrival_day_stands_in():
    raw = pd.DataFrame({"txn_id": [5], "is_fraud": [True]})
    clean, issues = _validate(raw, "2024-03-02", ts_col=None)
    assert len(issues) == 0
    assert clean.loc[0, "label_ts"] == pd.Timestamp("2024-03-02") and clean.loc[0, "label"] == 1.0


def test_regression_and_ranking_label_domains():
    raw = pd.DataFrame({"txn_id": [1, 2, 3, 4], "is_fraud": ["12.5", -3, "inf", "x"], "label_ts": ["2024-03-01"] * 4})
    clean, issues = _validate(raw, "2024-03-02", task="regression")
    assert list(clean["label"]) == [12.5, -3.0] and issues.count(IssueKind.BAD_VALUE) == 2
    clean, issues = _validate(raw, "2024-03-02", task="ranking")
    assert list(clean["label"]) == [12.5] and issues.count(IssueKind.BAD_VALUE) == 3


def test_empty_file_with_the_right_columns_is_clean():
    raw = pd.DataFrame({"txn_id": [], "is_fraud": [], "label_ts": []})
    clean, issues = _validate(raw, "2024-03-02")
    assert clean.empty and len(issues) == 0


def test_caller_errors_are_typed():
    raw = pd.DataFrame({"txn_id": [1], "is_fraud": [1], "label_ts": ["2024-03-01"]})
    with pytest.raises(LabelInputError, match="arrived_ds='03/02/2024'"):
        _validate(raw, "03/02/2024")
    with pytest.raises(ValueError, match="task='multiclass'"):
        _validate(raw, "2024-03-02", task="multiclass")


def test_ids_compare_as_text():
    assert list(normalize_ids(pd.Series([17.0, 18.0, np.nan]))) == ["17", "18", pd.NA]
    assert list(normalize_ids(pd.Series([" 17", "17.0", "a-1", ""]))) == ["17", "17", "a-1", pd.NA]


# --------------------------------------------------------------------------------------------
# merge_labels


def test_same_value_duplicate_is_counted_and_changes_nothing():
    a = _file([(1, 1, "2024-03-01"), (2, 0, "2024-03-01")], "2024-03-02")
    b = _file([(1, 1, "2024-03-03"), (3, 0, "2024-03-03")], "2024-03-04")
    hist, issues = merge_labels(None, a)
    assert len(issues) == 0
    hist, issues = merge_labels(hist, b)
    assert issues.counts() == {"duplicate": 1}
    (dup,) = issues
    assert dup.ids == ("1",) and dup.arrived_ds == "2024-03-04" and dup.source == "arrived=2024-03-04.parquet"
    current = resolve_labels(hist).set_index("id")
    assert current.loc["1", "label"] == 1.0
    # the label was known since its first arrival
    assert current.loc["1", "arrived_ds"] == "2024-03-02"


def test_conflict_latest_arrival_wins_and_is_reported():
    a = _file([(1, 0, "2024-03-01T09:00")], "2024-03-02")
    b = _file([(1, 1, "2024-03-03T09:00")], "2024-03-04")
    # an older observation arriving later loses: ordering is label_ts first
    c = _file([(1, 0, "2024-02-28T09:00")], "2024-03-05")
    hist, _ = merge_labels(None, a)
    hist, issues = merge_labels(hist, b)
    assert issues.counts() == {"conflict": 1}
    assert "latest arrival wins" in issues.items[0].reason
    assert "-> 1 from arrived=2024-03-04.parquet" in issues.items[0].examples[0]
    hist, issues = merge_labels(hist, c)
    assert issues.counts() == {"conflict": 1}
    current = resolve_labels(hist).set_index("id")
    assert current.loc["1", "label"] == 1.0 and current.loc["1", "arrived_ds"] == "2024-03-04"
    # as known on 2024-03-03 the first value holds
    assert resolve_labels(hist, as_of_ds="2024-03-03").set_index("id").loc["1", "label"] == 0.0


def test_same_timestamp_conflict_resolves_by_arrival_then_row():
    a = _file([(1, 0, "2024-03-01")], "2024-03-02")
    b = _file([(1, 1, "2024-03-01"), (2, 1, "2024-03-01"), (2, 0, "2024-03-01")], "2024-03-03")
    hist, _ = merge_labels(None, a)
    hist, issues = merge_labels(hist, b)
    assert issues.counts() == {"conflict": 2}
    current = resolve_labels(hist).set_index("id")
    assert current.loc["1", "label"] == 1.0  # later arrival
    assert current.loc["2", "label"] == 0.0  # later row of the same file


def test_re_merging_a_file_is_idempotent():
    a = _file([(1, 1, "2024-03-01"), (2, 0, "2024-03-01")], "2024-03-02")
    b = _file([(3, 1, "2024-03-02")], "2024-03-03")
    hist, _ = merge_labels(None, a)
    hist, _ = merge_labels(hist, b)
    again, issues = merge_labels(hist, a)
    assert len(issues) == 0
    pd.testing.assert_frame_equal(again, hist)
    # a corrected re-delivery of the same file replaces it
    a2 = _file([(1, 0, "2024-03-01")], "2024-03-02")
    fixed, issues = merge_labels(hist, a2)
    assert len(issues) == 0 and sorted(fixed["id"]) == ["1", "3"]
    # a re-run whose file is now rejected removes that file's earlier rows
    rejected, issues = _validate(pd.DataFrame({"txn_id": [1]}), "2024-03-02")
    assert issues.file_rejected
    gone, _ = merge_labels(hist, rejected, replace_file=("2024-03-02", "arrived=2024-03-02.parquet"))
    assert list(gone["id"]) == ["3"]


def test_history_does_not_depend_on_processing_order():
    files = [
        _file([(1, 0, "2024-03-01"), (2, 1, "2024-03-01")], "2024-03-02"),
        _file([(1, 1, "2024-03-02"), (3, 0, "2024-03-02")], "2024-03-03"),
        _file([(2, 1, "2024-03-03"), (4, 1, "2024-03-03")], "2024-03-04"),
    ]
    results = []
    for order in itertools.permutations(files):
        hist = None
        for f in order:
            hist, _ = merge_labels(hist, f)
        results.append(hist)
    for r in results[1:]:
        pd.testing.assert_frame_equal(r, results[0])


# --------------------------------------------------------------------------------------------
# join_labels


def _predictions(days, per_day=10, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for d in days:
        for i in range(per_day):
            rows.append({"txn_id": f"{d}-{i}", "ds": d, "score": float(rng.random()), "country": "DE" if i % 2 else "FR"})
    return pd.DataFrame(rows)


def test_join_counts_unknown_too_old_and_before_prediction_per_arrival_day():
    preds = _predictions(["2024-03-01", "2024-03-05"], per_day=3)
    hist, _ = merge_labels(
        None,
        _file(
            [
                ("2024-03-01-0", 1, "2024-03-03"),  # ok, lag 3
                ("nope-1", 1, "2024-03-03"),  # unknown id
                ("2024-03-05-0", 0, "2024-03-03"),  # arrived before its prediction day
            ],
            "2024-03-04",
        ),
    )
    hist, _ = merge_labels(
        hist,
        _file([("2024-03-01-1", 0, "2024-03-07"), ("nope-2", 0, "2024-03-07"), ("nope-3", 1, "2024-03-07")], "2024-03-08"),
    )
    res = join_labels(preds, hist, as_of_ds="2024-03-08", max_label_delay_days=5, id_col="txn_id")
    assert res.unknown_ids == 3 and res.too_old == 1 and res.before_prediction == 1
    assert res.issues.for_day("2024-03-08").counts() == {"unknown_id": 2, "too_old": 1}
    assert res.issues.by_day() == {
        "2024-03-04": {"unknown_id": 1, "before_prediction": 1},
        "2024-03-08": {"unknown_id": 2, "too_old": 1},
    }
    (old,) = res.issues.of_kind(IssueKind.TOO_OLD)
    assert "max_label_delay (5 days)" in old.reason and old.ids == ("2024-03-01-1",)
    assert "predicted 2024-03-01, arrived 2024-03-08" in old.examples[0]
    # only the valid label is joined
    assert list(res.joined["txn_id"]) == ["2024-03-01-0"]
    assert list(res.joined.columns[:4]) == ["txn_id", "ds", "score", "country"]
    assert res.joined.loc[0, "label_lag_days"] == 3
    json.dumps(res.to_dict())


def test_coverage_lag_and_maturity_per_prediction_day():
    preds = _predictions(["2024-03-01", "2024-03-02"], per_day=10)
    lags = [0, 1, 1, 2, 3, 3, 4, 6, 9]  # 9 of 10 predictions of 03-01 get a label
    hist = None
    for i, lag in enumerate(lags):
        arrived = (pd.Timestamp("2024-03-01") + pd.Timedelta(days=lag)).date().isoformat()
        hist, _ = merge_labels(hist, _file([(f"2024-03-01-{i}", i % 2, "2024-03-01")], arrived, source=f"f{i}"))
    res = join_labels(preds, hist, as_of_ds="2024-03-12", max_label_delay_days=10, id_col="txn_id")
    d1, d2 = res.days
    assert (d1.prediction_ds, d1.n_predictions, d1.n_labelled) == ("2024-03-01", 10, 9)
    assert d1.coverage == pytest.approx(0.9)
    assert d1.mature  # coverage at the threshold counts as mature
    assert d1.lag_p50_days == np.quantile(lags, 0.5) == 3
    assert d1.lag_p90_days == pytest.approx(np.quantile(lags, 0.9))
    assert d1.final  # 03-12 >= 03-01 + 10 days
    assert (d2.n_labelled, d2.coverage, d2.mature, d2.lag_p50_days, d2.final) == (0, 0.0, False, None, True)
    stricter = join_labels(preds, hist, as_of_ds="2024-03-12", max_label_delay_days=10, id_col="txn_id", maturity_threshold=0.95)
    assert not stricter.days[0].mature


def test_late_labels_restate_a_day_and_as_known_on_ds_is_reproducible():
    days = [f"2024-03-0{d}" for d in range(1, 6)]
    preds = _predictions(days, per_day=20, seed=3)
    rng = np.random.default_rng(7)
    files = {}
    for p in preds.itertuples():
        lag = int(rng.integers(0, 5))
        arrived = (pd.Timestamp(p.ds) + pd.Timedelta(days=lag)).date().isoformat()
        if rng.random() < 0.9:  # some labels never arrive
            files.setdefault(arrived, []).append((p.txn_id, int(rng.random() < p.score), arrived))
    arrival_days = sorted(files)

    def snapshot(res):
        per_day = evaluate_by_day(res.joined, task=BIN, score_col="score")
        return (
            [d.to_dict() for d in res.days],
            {d: r.overall.values for d, r in per_day.items()},
        )

    # the DAG processes arrival days in order, recording what it knew each day
    hist, known_then = None, {}
    for a in arrival_days:
        hist, _ = merge_labels(hist, _file(files[a], a))
        res = join_labels(preds, hist, as_of_ds=a, max_label_delay_days=7, id_col="txn_id")
        known_then[a] = snapshot(res)
        if a == "2024-03-02":
            touched = res.touched_days
            assert touched and set(touched) <= {"2024-03-01", "2024-03-02"}

    # coverage of the first day grew as later labels arrived (a restatement)
    first = [next(d for d in known_then[a][0] if d["prediction_ds"] == "2024-03-01") for a in arrival_days]
    assert first[0]["n_labelled"] < first[-1]["n_labelled"]
    assert known_then[arrival_days[0]][1].get("2024-03-01") != known_then[arrival_days[-1]][1]["2024-03-01"]

    # later, from the full history processed in reverse order, each past view is rebuilt exactly
    full = None
    for a in reversed(arrival_days):
        full, _ = merge_labels(full, _file(files[a], a))
    for a in arrival_days:
        assert snapshot(join_labels(preds, full, as_of_ds=a, max_label_delay_days=7, id_col="txn_id")) == known_then[a]


def test_restated_metrics_equal_sklearn_on_the_joined_rows():
    preds = pd.DataFrame(
        {"txn_id": [1, 2, 3, 4, 5, 6], "ds": ["2024-03-01"] * 6, "score": [0.9, 0.8, 0.2, 0.6, 0.1, 0.4]}
    )
    early = _file([(1, 1, "2024-03-01"), (2, 0, "2024-03-01"), (3, 0, "2024-03-01")], "2024-03-02")
    late = _file([(4, 1, "2024-03-04"), (5, 0, "2024-03-04"), (6, 1, "2024-03-04"), (2, 1, "2024-03-04")], "2024-03-05")
    hist, _ = merge_labels(None, early)
    hist, issues = merge_labels(hist, late)
    assert issues.counts() == {"conflict": 1}
    for as_of, ids, y in (("2024-03-03", [1, 2, 3], [1, 0, 0]), ("2024-03-05", [1, 2, 3, 4, 5, 6], [1, 1, 0, 1, 0, 1])):
        res = join_labels(preds, hist, as_of_ds=as_of, max_label_delay_days=7, id_col="txn_id")
        rows = res.rows_for_day("2024-03-01")
        assert list(rows["txn_id"]) == ids and list(rows["label"]) == y
        m = classification_metrics(rows["label"], rows["score"]).overall.values
        yp = (rows["score"] >= 0.5).astype(int)
        assert m["precision"] == pytest.approx(precision_score(y, yp))
        assert m["recall"] == pytest.approx(recall_score(y, yp))
        assert m["accuracy"] == pytest.approx(accuracy_score(y, yp))
    assert res.days[0].coverage == 1.0 and res.touched_days == ["2024-03-01"]


def test_a_label_arriving_after_the_window_never_changes_a_final_day():
    preds = pd.DataFrame({"txn_id": [1, 2], "ds": ["2024-03-01", "2024-03-01"], "score": [0.9, 0.1]})
    hist, _ = merge_labels(None, _file([(1, 1, "2024-03-01")], "2024-03-02"))
    before = join_labels(preds, hist, as_of_ds="2024-03-04", max_label_delay_days=3, id_col="txn_id")
    hist, _ = merge_labels(hist, _file([(1, 0, "2024-03-09"), (2, 0, "2024-03-09")], "2024-03-09"))
    after = join_labels(preds, hist, as_of_ds="2024-03-09", max_label_delay_days=3, id_col="txn_id")
    assert before.days[0].final and after.days[0].final
    assert after.too_old == 2
    pd.testing.assert_frame_equal(before.joined, after.joined)
    assert before.days[0].coverage == after.days[0].coverage == 0.5


def test_float_and_text_ids_join():
    preds = pd.DataFrame({"txn_id": [101.0, 102.0], "ds": pd.to_datetime(["2024-03-01", "2024-03-01"]), "score": [0.7, 0.2]})
    hist, _ = merge_labels(None, _file([("101", 1, "2024-03-01"), (102, 0, "2024-03-01")], "2024-03-02"))
    res = join_labels(preds, hist, as_of_ds="2024-03-02", max_label_delay_days=3, id_col="txn_id")
    assert res.days[0].n_labelled == 2 and list(res.joined["ds"]) == ["2024-03-01", "2024-03-01"]


def test_duplicate_prediction_ids_and_predictions_after_as_of_are_reported():
    preds = pd.DataFrame(
        {"txn_id": [1, 1, 2, 3, None], "ds": ["2024-03-01", "2024-03-02", "2024-03-02", "2024-03-09", "2024-03-02"], "score": [0.1, 0.9, 0.5, 0.5, 0.5]}
    )
    hist, _ = merge_labels(None, _file([(1, 1, "2024-03-03")], "2024-03-03"))
    res = join_labels(preds, hist, as_of_ds="2024-03-03", max_label_delay_days=3, id_col="txn_id")
    assert res.issues.counts() == {"duplicate_prediction": 1, "missing_value": 1}
    assert res.predictions_after_as_of == 1
    assert res.joined.loc[0, "ds"] == "2024-03-02" and res.joined.loc[0, "score"] == 0.9
    assert [(d.prediction_ds, d.n_predictions) for d in res.days] == [("2024-03-01", 0), ("2024-03-02", 2)]


def test_join_caller_errors_are_typed():
    preds = pd.DataFrame({"txn_id": [1], "ds": ["2024-03-01"], "label": [1]})
    hist, _ = merge_labels(None, _file([(1, 1, "2024-03-01")], "2024-03-02"))
    with pytest.raises(LabelInputError, match="column 'id' is missing"):
        join_labels(preds, hist, as_of_ds="2024-03-02", max_label_delay_days=3)
    with pytest.raises(LabelInputError, match="label would be overwritten"):
        join_labels(preds, hist, as_of_ds="2024-03-02", max_label_delay_days=3, id_col="txn_id")
    with pytest.raises(LabelInputError, match="lacks column"):
        join_labels(preds.drop(columns="label"), hist.drop(columns="row"), as_of_ds="2024-03-02", max_label_delay_days=3, id_col="txn_id")
    bad_ds = pd.DataFrame({"txn_id": [1], "ds": ["yesterday"]})
    with pytest.raises(LabelInputError, match="predictions.ds: 1 value"):
        join_labels(bad_ds, hist, as_of_ds="2024-03-02", max_label_delay_days=3, id_col="txn_id")


# --------------------------------------------------------------------------------------------
# label lag: label_timing and label_lag_check (and the label_lag alert they feed)
# --------------------------------------------------------------------------------------------

from datetime import date, timedelta  # noqa: E402

from watchkeeper.labels import LabelTiming, label_lag_check, label_timing  # noqa: E402

HEALTHY = (0.0, 0.55, 0.84, 0.97)  # coverage at age 0, 1, 2, 3+: half-way at 1, mature at 3
FIRST = date(2024, 5, 1)


def _day(i: int) -> str:
    return (FIRST + timedelta(days=i)).isoformat()


def _versions(profiles, as_of: int, threshold: float = 0.9) -> pd.DataFrame:
    """Coverage of prediction-day i (profile i: coverage at age 0, 1, ..., then its last value) as
    known on every day up to day `as_of`: the versions restate stores."""
    rows = []
    for i, prof in enumerate(profiles):
        for age in range(as_of - i + 1):
            cov = prof[min(age, len(prof) - 1)]
            rows.append({"prediction_ds": _day(i), "known_on": _day(i + age), "coverage": cov,
                         "mature": cov >= threshold, "lag_p50_days": 1.0, "lag_p90_days": 2.0})
    return pd.DataFrame(rows)


def _known_on(versions: pd.DataFrame, day: int) -> pd.DataFrame:
    return versions[versions["known_on"] == _day(day)].reset_index(drop=True)


def _later(shift: int):
    """The healthy profile with every label `shift` days later."""
    return (0.0,) * shift + HEALTHY


def test_label_timing_is_the_p90_over_the_first_healthy_days_leaving_out_a_late_one():
    slow = _later(4)  # half-way at 5, mature at 7: more than a day past the normal
    one_day_late = (0.0, 0.3, 0.6, 0.85, 0.95)  # half-way at 2, mature at 4: within tolerance
    profiles = [HEALTHY] * 4 + [slow] + [HEALTHY] * 4 + [one_day_late] * 2 + [HEALTHY] * 3
    t = label_timing(_versions(profiles + [_later(9)] * 5, as_of=30), maturity_threshold=0.9)
    assert t.maturity_source == "history"
    assert t.left_out_days == (_day(4),)
    # the first 14 prediction-days but the slow one; later days teach nothing (even slow ones)
    assert t.healthy_days == tuple(_day(i) for i in range(14) if i != 4)
    # p90 (linear) of 11 x 3 days and 2 x 4 days, and of 11 x 1 day and 2 x 2 days
    assert t.maturity_days == pytest.approx(3.8) and t.halfway_days == pytest.approx(1.8)
    assert "p90 over 13 healthy prediction-day(s)" in t.note
    assert "1 early day(s) left out as late (2024-05-05)" in t.note


def test_with_too_little_history_and_no_spec_value_nothing_is_derived_and_it_says_so():
    versions = _versions([HEALTHY] * 2 + [_later(6)] * 3, as_of=4)  # two days matured so far
    t = label_timing(versions, maturity_threshold=0.9)
    assert not t.known and t.maturity_source == "none"
    assert "2 of the model's first 14 prediction-days matured" in t.note
    assert "labels.expected_maturity_days" in t.note
    check = label_lag_check(_known_on(versions, 4), t, as_of_ds=_day(4), max_label_delay_days=14)
    assert not check.evaluated and not check.late and check.days == ()
    assert check.reason.startswith("not evaluated: 2 of the model's first 14")
    # an empty store teaches nothing either
    empty = label_timing(pd.DataFrame(columns=["prediction_ds", "known_on", "coverage", "mature"]),
                         maturity_threshold=0.9)
    assert not empty.known and "0 of the model's first 14" in empty.note

    # labels.expected_maturity_days stands in for the history: maturity is judged at once
    t = label_timing(versions, maturity_threshold=0.9, expected_maturity_days=2)
    assert t.known and t.maturity_source == "spec" and t.maturity_days == 2 and t.halfway_days is None
    check = label_lag_check(_known_on(versions, 4), t, as_of_ds=_day(4), max_label_delay_days=14)
    assert check.evaluated
    # days 0-1 matured; days 2-4 are 2, 1 and 0 days old: not past 2 + 1 days yet
    assert not check.late
    versions = _versions([HEALTHY] * 2 + [_later(6)] * 3, as_of=6)
    check = label_lag_check(_known_on(versions, 6), t, as_of_ds=_day(6), max_label_delay_days=14)
    assert [(d.prediction_ds, d.age_days, d.milestone, d.normal_days) for d in check.days] == [
        (_day(2), 4, "mature", 2.0)]


def test_label_lag_flags_days_behind_the_normal_with_their_numbers():
    # 8 healthy days, then each day's labels one day later than the day before (from day 8: +1,
    # +2, +3, ...), as in the slow_label_pipeline incident
    profiles = [HEALTHY] * 8 + [_later(k) for k in range(1, 8)]
    versions = _versions(profiles, as_of=14)
    timing = label_timing(versions, maturity_threshold=0.9)
    # day 8 (+1) is within tolerance and learned; day 9 (+2) matured, too late to be learned
    assert timing.left_out_days == (_day(9),) and timing.healthy_days[-1] == _day(8)
    found = {}
    for day in range(8, 15):
        check = label_lag_check(_known_on(versions, day), timing, as_of_ds=_day(day),
                                max_label_delay_days=14)
        assert check.evaluated
        found[day] = [(d.prediction_ds, d.age_days, d.milestone) for d in check.days]
    # +1 and +2 days are within the normal (p90) plus one day's tolerance; +3 is not: day 10's
    # labels are not half-way at 3 days old (healthy days are by 1, 1.x with day 8 learned)
    assert found[8] == found[9] == found[10] == found[11] == found[12] == []
    assert found[13] == [(_day(10), 3, "halfway")]
    # day 10 is half-way at 4 days old (still immature, but within 3.x + 1 days); day 11 is late
    assert found[14] == [(_day(11), 3, "halfway")]
    check = label_lag_check(_known_on(versions, 13), timing, as_of_ds=_day(13), max_label_delay_days=14)
    first = check.days[0]
    assert check.late and check.since == _day(10)
    assert first.coverage == 0.0 and first.milestone_coverage == 0.45
    assert first.normal_days == pytest.approx(timing.halfway_days)
    assert first.lag_p50_days == 1.0 and first.lag_p90_days == 2.0  # carried from the rows
    assert f"the oldest, {_day(10)}, has 0.0% of its labels at 3 days old" in check.reason
    assert check.to_dict()["days"][0]["prediction_ds"] == _day(10)

    # the same days with healthy labels: evaluated, nothing late
    calm = _versions([HEALTHY] * 15, as_of=14)
    check = label_lag_check(_known_on(calm, 14), timing, as_of_ds=_day(14), max_label_delay_days=14)
    assert check.evaluated and not check.late
    assert check.reason == "all 15 prediction-day(s) within the normal label timing"


def test_a_day_stuck_below_maturity_is_late_until_labels_can_no_longer_arrive():
    timing = LabelTiming(maturity_threshold=0.9, maturity_days=3.0, halfway_days=1.0,
                         maturity_source="history")
    rows = pd.DataFrame({
        "prediction_ds": [_day(0), _day(1), _day(5), _day(6), _day(7)],
        "coverage": [0.6, 0.6, 0.6, None, 0.0],  # day 6 had no predictions: nothing to wait for
        "mature": [False, False, False, False, False],
    })
    check = label_lag_check(rows, timing, as_of_ds=_day(10), max_label_delay_days=9)
    # day 0 is 10 days old: past max_label_delay, nothing can change it any more
    assert [(d.prediction_ds, d.age_days, d.milestone) for d in check.days] == [
        (_day(1), 9, "mature"), (_day(5), 5, "mature"), (_day(7), 3, "halfway")]
    assert check.checked_days == 3
    # exactly at normal + tolerance is not late yet
    on_edge = label_lag_check(rows.iloc[[2]], timing, as_of_ds=_day(9), max_label_delay_days=9)
    assert on_edge.evaluated and not on_edge.late


def test_label_lag_caller_errors_are_typed():
    timing = LabelTiming(maturity_threshold=0.9, maturity_days=3.0, halfway_days=1.0,
                         maturity_source="history")
    with pytest.raises(LabelInputError, match=r"rows: column\(s\) mature missing"):
        label_lag_check(pd.DataFrame({"prediction_ds": [_day(0)], "coverage": [0.5]}), timing,
                        as_of_ds=_day(3), max_label_delay_days=14)
    with pytest.raises(LabelInputError, match="observations.known_on: 1 value"):
        label_timing(pd.DataFrame({"prediction_ds": [_day(0)], "known_on": ["soon"],
                                   "coverage": [0.5], "mature": [False]}), maturity_threshold=0.9)
    with pytest.raises(LabelInputError, match="expected_maturity_days=-1"):
        label_timing(_versions([HEALTHY], 3), maturity_threshold=0.9, expected_maturity_days=-1)
    with pytest.raises(LabelInputError, match="as_of_ds='2024-13-01'"):
        label_lag_check(_known_on(_versions([HEALTHY], 3), 3), timing, as_of_ds="2024-13-01",
                        max_label_delay_days=14)
    with pytest.raises(LabelInputError, match="rows.mature: missing on row"):
        label_lag_check(pd.DataFrame({"prediction_ds": [_day(0)], "coverage": [0.5], "mature": [None]}),
                        timing, as_of_ds=_day(3), max_label_delay_days=14)


def _fraud_spec():
    from watchkeeper.spec import get_spec

    return get_spec("fraud")  # the project's spec: maturity 0.9, max_delay_days 14


def test_label_lag_message_numbers_and_recovery():
    from watchkeeper.alerts_messages import DayFindings, LabelLagDay, LabelLagFinding, build_alerts

    spec = _fraud_spec()
    lag = LabelLagFinding(
        days=(LabelLagDay(_day(11), 3, 0.0, "halfway", 0.45, 1.2),
              LabelLagDay(_day(10), 4, 0.83, "mature", 0.9, 3.0)),
        maturity_days=3.0, halfway_days=1.2, maturity_threshold=0.9, tolerance_days=1,
        normal="p90 over 9 healthy prediction-day(s)")
    [alert] = build_alerts(spec, _day(14), DayFindings(label_lag=lag), reports_url="https://r")
    assert (alert.kind, alert.subject, alert.severity) == ("label_lag", "labels", "ticket")
    assert alert.dedupe_key == f"fraud:label_lag:labels:{_day(14)}"
    assert alert.channel == "#fraud-ml"
    assert "2 prediction-days behind since 2024-05-11" in alert.blocks[0]["text"]["text"]
    assert "Labels of fraud are arriving later than usual" in alert.text
    assert "The oldest, 2024-05-11, has 83.0% of its labels at 4 days old" in alert.text
    assert ("- 2024-05-12 (age 3 d): coverage 0.0%; half-way (45.0%) normally by 1.20 d "
            "(+1 d tolerance)") in alert.text
    assert "- normal timing: half-way (45.0%) by 1.20 d; mature (90.0%) by 3 d; p90 over 9" in alert.text
    assert "Day report: https://r/fraud/2024-05-15/index.html" in alert.text
    assert "Check the label pipeline upstream" in alert.text
    assert alert.facts["first_late_day"] == _day(10)

    opened = {"fraud:label_lag:labels": _day(14)}
    # evaluated and clean: the incident recovers in its thread
    [rec] = build_alerts(spec, _day(16), DayFindings(label_lag=LabelLagFinding(maturity_days=3.0)),
                         opened)
    assert rec.kind == "recovery" and rec.subject == "label_lag:labels" and rec.closes_thread
    assert rec.thread_key == "fraud:label_lag:labels" and "open since 2024-05-15, 3 days" in rec.text
    # not evaluated (no normal timing known) or still late: nothing recovers
    assert build_alerts(spec, _day(16), DayFindings(), opened) == []
    assert [a.kind for a in build_alerts(spec, _day(16), DayFindings(label_lag=lag), opened)] == ["label_lag"]


@pytest.mark.parametrize("quality_slo", [True, False], ids=["from-sli", "from-metrics"])
def test_label_lag_from_the_store_alerts_once_a_day_and_recovers(sqlite_url, quality_slo):
    """The labels run's alert step, on restated coverage in a real store: learned from the
    stored versions (of the quality SLI, or of the metric set when the spec has no quality SLO),
    raised into the outbox, deduplicated on a re-run, recovered on catch-up."""
    from watchkeeper import alerts, day_alerts
    from watchkeeper.store import MetricRecord, SliRecord, open_store

    store = open_store(sqlite_url)
    spec = _fraud_spec()
    if not quality_slo:
        spec = spec.model_copy(update={"slos": [s for s in spec.slos if not s.quality]})
    profiles = [HEALTHY] * 8 + [_later(k) for k in range(1, 9)]
    versions = _versions(profiles, as_of=16)
    catch_up = 15  # the backlog is delivered: every day older than a day is covered from day 15
    late = (versions["known_on"] >= _day(catch_up)) & (versions["known_on"] > versions["prediction_ds"])
    versions.loc[late, ["coverage", "mature"]] = [0.97, True]
    raised = {}
    for day in range(17):
        with store.transaction() as conn:
            for r in _known_on(versions, day).itertuples():
                store.write_metrics(spec.name, r.prediction_ds, "quality", r.known_on, [MetricRecord(
                    subject="overall", value=r.coverage, payload={
                        "coverage": r.coverage, "provisional": not r.mature, "lag_days_p50": 1.0,
                        "lag_days_p90": 2.0, "n_predictions": 600, "metrics": {}})], conn=conn)
            slis = [SliRecord(ds=r.prediction_ds, sli="precision", value=None, provisional=not r.mature,
                              details={"coverage": r.coverage, "n_labelled": int(600 * r.coverage)})
                    for r in _known_on(versions, day).itertuples()]
            store.write_slis(spec.name, _day(day), slis, conn=conn)
        findings = day_alerts.labels_findings(spec, _day(day), store)
        raised[day] = findings.label_lag
        alerts.raise_alerts(store, spec, _day(day), findings)
    # days 0-2 mature at 3 days old: before day 5, too little history to judge anything
    assert all(raised[d] is None for d in range(5))
    assert raised[5] is not None and not raised[5].late
    # learned as known on day 13: days 0-7, and day 8 (one day late, within tolerance)
    assert raised[13].halfway_days == pytest.approx(1.2) and raised[13].maturity_days == pytest.approx(3.2)
    assert [(d.prediction_ds, d.age_days) for d in raised[13].days] == [(_day(10), 3)]
    alerts.raise_alerts(store, spec, _day(14), day_alerts.labels_findings(spec, _day(14), store))
    rows = [(r.ds, r.kind, r.subject) for r in store.outbox("fraud")
            if r.kind == "label_lag" or r.subject.startswith("label_lag")]
    # caught up on day 15; the incident closes once the lag has not held for
    # alerts.resolve_after_days (2) days: on day 16
    assert rows == [(_day(13), "label_lag", "labels"), (_day(14), "label_lag", "labels"),
                    (_day(16), "recovery", "label_lag:labels")]
    messages = [r.facts["message"] for r in store.outbox("fraud") if r.kind == "label_lag"]
    assert messages == ["onset", "folded"]  # the same lag the next day is not sent again


@pytest.mark.parametrize("model", ["fraud", "eta"])
def test_the_healthy_demo_world_raises_no_label_lag(demo_home, small_demo, model):
    """Labels 2-10 days late, about 3% never: the normal is learned from the first days and no
    prediction-day of the 42 is ever late against it."""
    from watchkeeper import label_pipeline
    from watchkeeper.labels import join_labels
    from watchkeeper.spec import get_spec

    spec = get_spec(model)
    days = small_demo.ds_list
    for d in days:
        label_pipeline.ingest(spec, d)
    preds, missing = label_pipeline.load_predictions(spec, days)
    assert not missing and len(preds) > 40 * 1000
    history = label_pipeline.read_history(spec.name, days)
    delay = spec.labels.max_delay_days
    versions, checks = [], []
    for i, d in enumerate(days):
        window = days[max(0, i - delay):i + 1]
        res = join_labels(preds[preds["ds"].isin(window)], history[history["arrived_ds"].isin(window)],
                          as_of_ds=d, max_label_delay_days=delay,
                          maturity_threshold=spec.labels.maturity_coverage)
        known = [{"prediction_ds": c.prediction_ds, "known_on": d, "coverage": c.coverage,
                  "mature": c.mature, "lag_p50_days": c.lag_p50_days,
                  "lag_p90_days": c.lag_p90_days} for c in res.days]
        versions += known
        rows = pd.DataFrame(known)
        timing = label_timing(pd.DataFrame(versions), maturity_threshold=spec.labels.maturity_coverage)
        checks.append(label_lag_check(rows, timing, as_of_ds=d, max_label_delay_days=delay))
    late = [(c.as_of_ds, c.reason) for c in checks if c.late]
    assert late == []
    evaluated = [c for c in checks if c.evaluated]
    # the first day matures at 9 days old, the third two days later: checked from then on
    assert checks[11].evaluated and len(evaluated) == len(days) - 11
    timing = checks[-1].timing
    assert timing.left_out_days == () and len(timing.healthy_days) == 14
    # 2-10 days late: 92% of the labels are in after 9 days, 51% after 4
    assert timing.maturity_days == 9.0 and timing.halfway_days == 4.0
    assert checks[-1].checked_days == delay + 1


# --------------------------------------------------------------------------------------------
# restate: the estimate before labels (calibrated CBPE) and concept drift, on the demo world

ESTIMATED = {"accuracy", "precision", "recall", "f1", "roc_auc"}


def _learning_days(mature: list[str], d: str) -> list[str]:
    """The days restate learns day d's band from: the first 14 mature days before d, without the
    (at most 2) newest mature days of the 6 before d, which are pooled with d instead."""
    from datetime import date

    before = [x for x in mature if x < d]
    pooled = [x for x in before if (date.fromisoformat(d) - date.fromisoformat(x)).days <= 6][-2:]
    return [x for x in before if x not in pooled][:14]


def test_the_calibrator_is_fitted_on_the_training_set_once_and_refitted_when_it_changes(
        demo_home, small_demo, monkeypatch, tmp_path):
    from watchkeeper import calibration_cache, sources
    from watchkeeper.spec import Reference, get_spec

    spec = get_spec("fraud")
    train = pd.read_parquet(small_demo.training_path("fraud"))
    choice = calibration_cache.reference_calibration(spec)
    assert choice.status == "calibrated" and choice.calibrator is not None
    assert (choice.n, choice.positives) == (len(train), int(train["is_fraud"].sum()))
    assert f"isotonic calibration on {len(train)} labelled rows of the training set training.parquet" in choice.reason
    [cached] = (demo_home / "state" / "fraud").glob("calibrator-*.json")
    assert json.loads(cached.read_text())["id"] == choice.id

    def no_read(*args, **kwargs):
        raise AssertionError("the training set was read again")

    with monkeypatch.context() as m:  # read back from the cache: the training file is not opened
        m.setattr(sources, "read_file", no_read)
        assert calibration_cache.reference_calibration(spec).id == choice.id

    def with_training(path):
        return spec.model_copy(update={"reference": Reference(training=str(path))})

    # a training set without labels: raw scores, and the reason names the column and the field
    bare = tmp_path / "training.parquet"
    train.drop(columns=["is_fraud"]).to_parquet(bare)
    raw = calibration_cache.reference_calibration(with_training(bare))
    assert (raw.status, raw.calibrator, raw.id) == ("raw", None, "raw")
    assert "has no label column 'is_fraud' (labels.label_column)" in raw.reason
    # the same file rewritten (another size and mtime): a new key, fitted again
    train.head(60).to_parquet(bare)
    few = calibration_cache.reference_calibration(with_training(bare))
    assert few.status == "raw" and "60 labelled row(s) < 100" in few.reason
    assert len(list((demo_home / "state" / "fraud").glob("calibrator-*.json"))) == 3
    # a missing training file is not cached: the next run tries again
    gone = calibration_cache.reference_calibration(with_training(tmp_path / "nope.parquet"))
    assert gone.status == "raw" and "nope.parquet (reference.training) is unreadable" in gone.reason
    assert len(list((demo_home / "state" / "fraud").glob("calibrator-*.json"))) == 3


def test_restate_stores_calibrated_estimates_and_suspects_concept_drift_only_when_worse(
        demo_home, small_demo, sqlite_url):
    """Labels runs every six days over the demo's 42 (a day matures about 9 days after it, the
    window is 15 days: most days are restated once mature; concept drift ramps in from day 15,
    the upstream bug is day 29): every estimate is calibrated CBPE with roc_auc; each mature day is
    judged against the model's first mature days before it; only worse-than-estimated days are
    suspected, and the healthy days never are; a re-run of a day leaves the same store."""
    from watchkeeper import label_pipeline
    from watchkeeper.spec import get_spec
    from watchkeeper.store import open_store

    spec = get_spec("fraud")
    store = open_store(sqlite_url)
    for n in (14, 20, 26, 32, 38, 42):
        label_pipeline.restate(spec, small_demo.ds(n), store)
    day = {d: i + 1 for i, d in enumerate(small_demo.ds_list)}
    q = {m.ds: m.payload for m in store.metrics("fraud", "quality")}
    assert sorted(q) == small_demo.ds_list
    cal_ids = set()
    for d, p in q.items():
        assert set(p["estimated"]) == ESTIMATED, d
        cal = p["estimate_detail"]["calibration"]
        assert cal["status"] == "calibrated" and cal["n"] == 5000, cal
        assert "calibrated on 5000 reference rows" in p["estimate_detail"]["method"]
        cal_ids.add(cal["id"])
    assert len(cal_ids) == 1
    learnable = sorted(d for d, p in q.items() if not p["provisional"])
    assert len(learnable) >= 25 and max(day[d] for d in learnable) >= 30
    judged = {d: p["concept_drift_detail"] for d, p in q.items() if p["concept_drift_detail"]}
    assert set(judged) == set(learnable)  # every mature day is judged, no provisional one
    for d, c in judged.items():
        assert c["prediction_ds"] == d and q[d]["concept_drift"] is c["suspected"]
        # the model's first mature days before d, but for the (at most 2) newest of the 6 days
        # before d, which are pooled with it: a verdict never depends on later days
        assert c["learning_days"] == _learning_days(learnable, d)
        for r in c["metrics"]:
            if r["direction"] is None:
                continue
            assert r["basis"] in ("day", "pooled"), r
            # worse: below the day's band, or (pooled with the days before it) below the pooled
            # band with the day itself below the median; better: the mirror image
            edge, pooled = ("low", "high") if r["direction"] == "worse" else ("high", "low")
            sign = -1 if r["direction"] == "worse" else 1
            if r["basis"] == "day":
                assert sign * (r["difference"] - r[edge]) > 0, (d, r)
            else:
                assert sign * (r["pooled"]["difference"] - r["pooled"][edge]) > 0, (d, r)
                assert sign * (r["difference"] - r["median"]) > 0, (d, r)
            if r["direction"] == "worse":
                assert r["realized"] < r["estimated"], (d, r)
        assert c["suspected"] == any(r["direction"] == "worse" for r in c["metrics"])
        assert ("worse than estimated" in c["reason"]) == c["suspected"], c["reason"]
        if len(c["learning_days"]) < 5:
            assert c["status"] == "inconclusive"
    healthy = [d for d in judged if day[d] <= 14 and judged[d]["status"] != "inconclusive"]
    assert healthy and not any(judged[d]["suspected"] for d in healthy)
    suspected = [d for d in judged if judged[d]["suspected"]]
    assert suspected and all(day[d] > 14 for d in suspected)
    assert small_demo.ds(29) in suspected  # the upstream bug: scores no longer match the outcome
    bug = judged[small_demo.ds(29)]
    assert bug["worst"] > 0 and bug["worst_text"].endswith(f"on {small_demo.ds(29)}")

    once = store.dump("fraud")
    label_pipeline.restate(spec, small_demo.ds(42), store)
    assert store.dump("fraud") == once
