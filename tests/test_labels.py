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
