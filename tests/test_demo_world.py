"""The demo world generator: layout, determinism, and that the story is really in the data."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import subprocess
import sys
from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from watchkeeper.demo import (
    DemoError,
    Story,
    StoryError,
    concept_level,
    eta_model_predict,
    fraud_model_score,
    generate_demo,
    load_manifest,
)
from watchkeeper.paths import project_root

END = date(2026, 11, 20)
ROWS = 4000
TRAINING = 5000
STORY = Story()
HEALTHY = range(1, 15)  # days 1-14
LATE = range(35, 43)  # days 35-42 (only 35-40 have labels by the end)


def _digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return generate_demo(tmp_path_factory.mktemp("home"), END, rows_per_day=ROWS,
                         training_rows=TRAINING)


@pytest.fixture(scope="module")
def fraud(world):
    """All fraud batches with a `day` column, joined (left) to every label that arrived."""
    batches = []
    for day, ds in enumerate(world.ds_list, start=1):
        b = pd.read_parquet(world.predictions_path("fraud", ds))
        b["day"] = day
        b["ds"] = ds
        batches.append(b)
    labels = pd.concat([pd.read_parquet(world.labels_path("fraud", ds)) for ds in world.ds_list])
    return pd.concat(batches, ignore_index=True).merge(labels, on="txn_id", how="left",
                                                        validate="one_to_one")


@pytest.fixture(scope="module")
def eta(world):
    batches = []
    for day, ds in enumerate(world.ds_list, start=1):
        b = pd.read_parquet(world.predictions_path("eta", ds))
        b["day"] = day
        b["ds"] = ds
        batches.append(b)
    labels = pd.concat([pd.read_parquet(world.labels_path("eta", ds)) for ds in world.ds_list])
    return pd.concat(batches, ignore_index=True).merge(labels, on="order_id", how="left",
                                                        validate="one_to_one")


# ------------------------------------------------------------------------------------- layout


def test_layout_is_exactly_the_documented_one(world):
    dss = world.ds_list
    expected = {"story.json", "fraud/training.parquet", "fraud/fraud.db", "fraud/landing.json",
                "eta/training.parquet"}
    for ds in dss:
        expected |= {f"fraud/predictions/ds={ds}.parquet", f"fraud/labels/arrived={ds}.parquet",
                     f"eta/predictions/ds={ds}.parquet", f"eta/predictions/ds={ds}.landed",
                     f"eta/labels/arrived={ds}.parquet"}
    assert set(_digest(world.root)) == expected
    assert world.root == world.home / "demo"
    # No temporary or backup folders are left next to the world.
    assert [p.name for p in world.home.iterdir()] == ["demo"]


def test_days_end_on_end_and_story_json_describes_them(world):
    assert len(world.dates) == 42
    assert world.dates[-1] == END and world.dates[0] == END - timedelta(days=41)
    assert all(b - a == timedelta(days=1) for a, b in zip(world.dates, world.dates[1:]))
    doc = json.loads(world.story_path.read_text())
    assert doc["end"] == END.isoformat()
    assert doc["days"]["1"] == world.ds(1) and doc["days"]["42"] == END.isoformat()
    assert doc["incidents"]["upstream_bug"] == {"day": 29, "ds": world.ds(29)}
    assert doc["incidents"]["late_landing"] == {"day": 33, "ds": world.ds(33)}
    assert doc["incidents"]["drift_start"] == {"day": 15, "ds": world.ds(15)}
    assert Story.from_json(doc["story"]) == STORY
    assert load_manifest(world.home) == world


def test_batch_schemas_ids_times_and_sizes(world, fraud, eta):
    b = pd.read_parquet(world.predictions_path("fraud", world.ds(1)))
    assert list(b.columns) == ["txn_id", "event_ts", "model_version", "amount",
                               "merchant_category", "country", "device_age_days", "hour",
                               "customer_tier", "txn_count_24h", "score", "predicted_label"]
    assert str(b["event_ts"].dtype) == "datetime64[ns]"
    assert b["txn_id"].iloc[0] == f"f-{world.dates[0]:%Y%m%d}-000001"
    e = pd.read_parquet(world.predictions_path("eta", world.ds(1)))
    assert list(e.columns) == ["order_id", "event_ts", "model_version", "distance_km", "items",
                               "hour", "weather", "courier_tenure", "predicted_minutes"]
    for df, id_col, version in ((fraud, "txn_id", "fraud-v3"), (eta, "order_id", "eta-v7")):
        assert df[id_col].is_unique
        assert (df["model_version"] == version).all()
        assert (df["event_ts"].dt.strftime("%Y-%m-%d") == df["ds"]).all()
        assert (df["event_ts"].dt.hour == df["hour"]).all()
        sizes = df.groupby("day").size()
        assert sizes.between(0.95 * ROWS, 1.05 * ROWS).all() and sizes.nunique() > 10
    assert fraud["score"].between(0, 1).all()
    assert (fraud["predicted_label"] == (fraud["score"] >= 0.5)).all()
    assert fraud["country"].value_counts(normalize=True)["DE"] == pytest.approx(0.15, abs=0.01)
    healthy = fraud[fraud["day"] <= 14]
    assert healthy["amount"].median() == pytest.approx(40, rel=0.08)
    assert healthy["device_age_days"].between(0, 2000).all()
    assert set(healthy["customer_tier"]) == {"bronze", "silver", "gold"}
    assert set(eta["weather"]) == {"clear", "rain", "snow", "fog"}


def test_fraud_db_holds_the_same_rows_as_the_parquet_batches(world, fraud):
    with sqlite3.connect(world.fraud_db) as con:
        assert con.execute("SELECT count(*) FROM predictions").fetchone()[0] == len(fraud)
        indexes = [r[0] for r in con.execute(
            "SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'predictions'")]
        assert any("(ds)" in sql for sql in indexes)
        per_day = dict(con.execute("SELECT ds, count(*) FROM predictions GROUP BY ds"))
        incident = pd.read_sql("SELECT * FROM predictions WHERE ds = ?", con,
                               params=(world.ds(29),))
    assert per_day == world.rows["fraud"]
    parquet = pd.read_parquet(world.predictions_path("fraud", world.ds(29)))
    incident["event_ts"] = pd.to_datetime(incident["event_ts"])
    pd.testing.assert_frame_equal(incident.drop(columns="ds"), parquet)


def test_training_sets_are_healthy_with_true_labels(world):
    f = pd.read_parquet(world.training_path("fraud"))
    assert len(f) == TRAINING and "is_fraud" in f.columns and f["txn_id"].is_unique
    assert set(f["is_fraud"]) == {0, 1}
    assert f["score"].mean() == pytest.approx(f["is_fraud"].mean(), abs=0.01)
    assert 0.03 <= f["is_fraud"].mean() <= 0.05
    assert f["event_ts"].max() < pd.Timestamp(world.dates[0])
    assert "crypto" not in set(f["merchant_category"]) and f["device_age_days"].notna().all()
    np.testing.assert_allclose(f["score"], fraud_model_score(f))
    e = pd.read_parquet(world.training_path("eta"))
    assert len(e) == TRAINING and "actual_minutes" in e.columns
    assert (e["actual_minutes"] - e["predicted_minutes"]).mean() == pytest.approx(0, abs=0.2)
    np.testing.assert_allclose(e["predicted_minutes"], eta_model_predict(e))


# -------------------------------------------------------------------------------- determinism


def test_same_end_gives_byte_identical_files(world, tmp_path):
    again = generate_demo(tmp_path, END, rows_per_day=ROWS, training_rows=TRAINING)
    assert _digest(again.root) == _digest(world.root)


def test_regenerating_replaces_the_world_and_a_failure_keeps_the_old_one(tmp_path):
    first = generate_demo(tmp_path, END, rows_per_day=200, training_rows=200)
    second = generate_demo(tmp_path, END - timedelta(days=3), rows_per_day=200,
                           training_rows=200)
    files = _digest(second.root)
    assert not any(first.ds(42) in name for name in files)  # no stale day from the first world
    assert [p.name for p in tmp_path.iterdir()] == ["demo"]
    # A story that breaks on day 23 (the drift merchants would eat every other share).
    broken = Story(merchant_shift_per_day=0.05)
    with pytest.raises(StoryError, match="merchant_shift_per_day.*day 2[0-9]"):
        generate_demo(tmp_path, END, rows_per_day=200, training_rows=200, story=broken)
    assert _digest(second.root) == files
    assert [p.name for p in tmp_path.iterdir()] == ["demo"]


# ------------------------------------------------------------------------------ the incident


def test_day_29_upstream_bug_shows_only_on_day_29(fraud):
    by_day = fraud.groupby("day")
    de = fraud[fraud["country"] == "DE"].groupby("day")["amount"].median()
    other = fraud[fraud["country"] != "DE"].groupby("day")["amount"].median()
    # DE amounts in cents on day 29 only; the other countries are untouched that day.
    assert de[29] / de.drop(29).loc[25:33].median() == pytest.approx(100, rel=0.25)
    assert (de.drop(29) < 200).all()
    assert other[29] == pytest.approx(other.loc[[27, 28, 30, 31]].mean(), rel=0.15)
    # Null spike in device_age_days on day 29 only, across the whole batch.
    nulls = by_day["device_age_days"].apply(lambda s: s.isna().mean())
    assert nulls[29] == pytest.approx(0.30, abs=0.03)
    assert (nulls.drop(29) == 0).all()
    d29 = fraud[fraud["day"] == 29]
    assert d29.groupby("country")["device_age_days"].apply(lambda s: s.isna().mean()).min() > 0.2
    # A merchant category nobody has seen before, a few % of day 29 only.
    crypto = by_day["merchant_category"].apply(lambda s: (s == "crypto").mean())
    assert 0.015 <= crypto[29] <= 0.05 and (crypto.drop(29) == 0).all()
    # The model scores what it receives: DE is flagged en masse, the day's positive rate jumps.
    positive = by_day["predicted_label"].mean()
    assert positive[29] > 0.12 and positive[29] > 4 * positive.drop(29).max()
    assert d29.loc[d29["country"] == "DE", "predicted_label"].mean() > 0.8
    assert d29.loc[d29["country"] != "DE", "predicted_label"].mean() < 0.05
    # Labels follow the true amounts: DE fraud on day 29 is as rare as ever.
    de_fraud = fraud[fraud["country"] == "DE"].groupby("day")["is_fraud"].mean()
    assert de_fraud[29] < 0.08


def test_fraud_day_33_lands_late_and_other_batches_land_early_next_day(world):
    landing = json.loads(world.fraud_landing.read_text())
    assert sorted(landing) == world.ds_list
    for day, ds in enumerate(world.ds_list, start=1):
        at = datetime.fromisoformat(landing[ds])
        assert at.utcoffset() == timedelta(0)
        assert at.date() == date.fromisoformat(ds) + timedelta(days=1)
        assert at.hour == 14 if day == 33 else 1 <= at.hour < 3, (ds, at)
        eta_at = datetime.fromisoformat(world.landed_marker_path(ds).read_text())
        assert eta_at.utcoffset() == timedelta(0)
        assert eta_at.date() == at.date() and 1 <= eta_at.hour < 3


# ------------------------------------------------------------------------------------ labels


@pytest.mark.parametrize("model, id_col, label_col", [("fraud", "txn_id", "is_fraud"),
                                                       ("eta", "order_id", "actual_minutes")])
def test_labels_arrive_2_to_10_days_late_and_3_percent_never(world, model, id_col, label_col,
                                                              request):
    joined = request.getfixturevalue(model)
    for ds in world.ds_list:
        part = pq.read_table(world.labels_path(model, ds))
        assert part.column_names == [id_col, label_col, "label_ts"]
        labels = part.to_pandas()
        assert (labels["label_ts"].dt.strftime("%Y-%m-%d") == ds).all()
        assert labels["label_ts"].is_monotonic_increasing
    # The first two days' files exist but are empty (nothing can have arrived yet).
    first = pq.read_table(world.labels_path(model, world.ds(1)))
    assert first.num_rows == 0 and str(first.schema.field("label_ts").type) == "timestamp[ns]"
    arrived = joined[joined["label_ts"].notna()]
    delay = (arrived["label_ts"].dt.normalize() - pd.to_datetime(arrived["ds"])).dt.days
    assert delay.min() == 2 and delay.max() == 10
    assert arrived["label_ts"].max() < pd.Timestamp(END + timedelta(days=1))
    # Days whose whole delay window is before the end: only the never-arriving labels missing.
    mature = joined[joined["day"] <= 32]
    assert mature["label_ts"].isna().mean() == pytest.approx(0.03, abs=0.005)
    assert joined.loc[joined["day"] == 42, "label_ts"].isna().all()


# ------------------------------------------------------------------------------ model quality


def _metrics(df: pd.DataFrame) -> dict[str, float]:
    df = df[df["is_fraud"].notna()]
    y, pred, s = df["is_fraud"].to_numpy(), df["predicted_label"].to_numpy(), df["score"]
    return {"rate": y.mean(), "mean_score": s.mean(), "accuracy": (y == pred).mean(),
            "expected_accuracy": np.maximum(s, 1 - s).mean(),
            "precision": y[pred == 1].mean(), "recall": pred[y == 1].mean()}


def test_fraud_model_is_calibrated_while_healthy(fraud):
    m = _metrics(fraud[fraud["day"].isin(HEALTHY)])
    assert 0.03 <= m["rate"] <= 0.05
    assert m["mean_score"] == pytest.approx(m["rate"], abs=0.006)
    assert m["expected_accuracy"] == pytest.approx(m["accuracy"], abs=0.02)
    assert m["precision"] > 0.5 and m["recall"] > 0.2


def test_concept_drift_erodes_precision_and_recall_while_scores_stay_calm(fraud):
    early = _metrics(fraud[fraud["day"].isin(HEALTHY)])
    late = _metrics(fraud[fraud["day"].isin(LATE)])
    assert late["precision"] < early["precision"] - 0.25
    assert late["recall"] < early["recall"] - 0.06
    # The model's own view barely moves: a score-based accuracy estimate stays within a point
    # while realized precision halves.
    assert late["expected_accuracy"] == pytest.approx(early["expected_accuracy"], abs=0.01)
    assert 0.03 <= late["rate"] <= 0.05
    # Precision erodes steadily: each week of the drift is worse than the one before.
    weekly = [_metrics(fraud[fraud["day"].isin(range(a, a + 7))])["precision"]
              for a in (1, 8, 15, 22, 30)]
    assert all(b < a + 0.03 for a, b in zip(weekly, weekly[1:])) and weekly[-1] < weekly[1] - 0.2
    assert concept_level(STORY, 14) == 0 and concept_level(STORY, 42) == 1


def test_data_drift_moves_amount_and_merchant_mix(fraud):
    median = fraud[fraud["country"] != "DE"].groupby("day")["amount"].median()
    assert median.loc[38:42].mean() / median.loc[1:14].mean() == pytest.approx(
        1.02 ** 26, rel=0.1)
    share = fraud.groupby("day")["merchant_category"].apply(
        lambda s: s.isin(["travel", "electronics"]).mean())
    assert share.loc[1:14].mean() == pytest.approx(0.13, abs=0.02)
    assert share.loc[36:42].mean() > share.loc[1:14].mean() + 0.08


def test_eta_stays_healthy_and_unbiased(eta):
    with_labels = eta[eta["actual_minutes"].notna()]
    error = with_labels["actual_minutes"] - with_labels["predicted_minutes"]
    mae = error.abs().groupby(with_labels["day"]).mean()
    early, late = mae.loc[1:14].mean(), mae.loc[35:40].mean()
    assert late == pytest.approx(early, rel=0.08)
    assert error.mean() == pytest.approx(0, abs=0.1)
    assert (with_labels["actual_minutes"] > 0).all()
    daily_distance = eta.groupby("day")["distance_km"].median()
    assert daily_distance.max() / daily_distance.min() < 1.1


# ------------------------------------------------------------------------- errors and the CLI


def test_bad_parameters_raise_typed_errors_naming_the_field(tmp_path):
    with pytest.raises(StoryError, match=r"Story.incident_day = 50: .*between 1 and n_days=42"):
        Story(incident_day=50)
    with pytest.raises(StoryError, match=r"Story.incident_new_category = 'grocery'"):
        Story(incident_new_category="grocery")
    with pytest.raises(StoryError, match=r"rows_per_day = 10: must be an integer >= 100"):
        generate_demo(tmp_path, END, rows_per_day=10)
    with pytest.raises(StoryError, match="end = .*must be a datetime.date"):
        generate_demo(tmp_path, datetime(2026, 11, 20))
    with pytest.raises(DemoError, match="no demo world here"):
        load_manifest(tmp_path / "nowhere")
    with pytest.raises(DemoError, match=r"missing columns \['amount'"):
        fraud_model_score(pd.DataFrame({"score": [0.1]}))
    assert not (tmp_path / "demo").exists()


def test_cli_generates_a_world_and_rejects_a_bad_date(tmp_path):
    script = project_root() / "include" / "demo" / "generate.py"
    ok = subprocess.run([sys.executable, str(script), "--home", str(tmp_path), "--end",
                         "2026-03-01", "--rows-per-day", "200", "--training-rows", "200"],
                        capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert "upstream bug on day 29 (2026-02-16)" in ok.stdout
    manifest = load_manifest(tmp_path)
    assert manifest.end == date(2026, 3, 1) and manifest.rows_per_day == 200
    assert manifest.predictions_path("fraud", "2026-03-01").exists()
    bad = subprocess.run([sys.executable, str(script), "--home", str(tmp_path), "--end",
                          "2026-02-30"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "--end '2026-02-30': expected a date YYYY-MM-DD" in bad.stderr
