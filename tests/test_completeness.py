"""The partial-day judgment (watchkeeper.completeness): pure, no store, no Airflow."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pytest

from watchkeeper.completeness import (
    BASIS_MEDIAN,
    BASIS_TIME_OF_DAY,
    CompletenessError,
    TrafficProfile,
    is_partial,
    judge_partial,
)

UTC = ZoneInfo("UTC")
BERLIN = ZoneInfo("Europe/Berlin")
# a fraud-like day: quiet at night, busy from 07:00 to 22:00
HOUR_WEIGHTS = np.array([2, 1.5, 1, 1, 1, 1.5, 3, 5, 6, 7, 7, 7.5, 8, 7.5, 7, 7, 7.5, 8, 8.5, 8,
                         7, 6, 4.5, 3])


def _events(n: int, day: str, tz=UTC, *, seed: int = 0, until_hour: int = 24,
            weights=HOUR_WEIGHTS) -> pd.Series:
    """n event timestamps on `day` (local hours weighted like traffic), as naive UTC."""
    rng = np.random.default_rng(seed)
    w = np.asarray(weights, dtype=float).copy()
    w[until_hour:] = 0
    hours = rng.choice(24, size=n, p=w / w.sum())
    seconds = hours * 3600 + rng.integers(0, 3600, size=n)
    start = pd.Timestamp(day).tz_localize(tz)
    ts = pd.to_datetime(start + pd.to_timedelta(seconds, unit="s"))
    return pd.Series(ts).dt.tz_convert("UTC").dt.tz_localize(None)


def _training(tz=UTC) -> TrafficProfile:
    days = [_events(400, f"2026-01-{d:02d}", tz, seed=d) for d in range(1, 29)]
    profile = TrafficProfile.from_timestamps(pd.concat(days, ignore_index=True), tz)
    assert isinstance(profile, TrafficProfile)
    return profile


def _bounds(day: str, tz=UTC):
    start = datetime.fromisoformat(day).replace(tzinfo=tz)
    return start, start + timedelta(days=1)


def _judge(rows_ts: pd.Series, day: str, *, counts=(), profile=None, tz=UTC, fraction=0.5):
    start, end = _bounds(day, tz)
    return judge_partial(len(rows_ts), fraction=fraction, trailing_counts=counts,
                         timestamps=rows_ts, day_start=start, day_end=end,
                         profile=profile, tz=tz)


# ---- trailing-median basis --------------------------------------------------------------------


def test_a_42_row_day_against_a_median_of_165_is_partial_and_says_why():
    ts = _events(42, "2026-03-10", until_hour=6)
    d = _judge(ts, "2026-03-10", counts=[165, 170, 160, 168, 158, 171, 166])
    assert d.partial is True and d.basis == BASIS_MEDIAN and d.expected == 166
    assert d.rows == 42 and d.known_days == 7
    assert d.reason.startswith("partial day: 42 rows vs 166 expected (median of the last 7 days")
    assert "judged as incomplete data, not as a shift" in d.reason
    assert d.last_event is not None and d.last_event < "06:00"
    assert is_partial(d.to_dict())


def test_a_quiet_sunday_at_70_percent_over_the_whole_day_is_not_partial():
    ts = _events(116, "2026-03-15")  # 70% of 165, spread over the whole day
    d = _judge(ts, "2026-03-15", counts=[165, 170, 160, 168, 158, 171, 166])
    assert d.partial is False and d.basis == BASIS_MEDIAN
    assert d.reason.startswith("complete: 116 rows vs 166 expected")
    assert not is_partial(d.to_dict())


def test_the_rule_is_strictly_below_the_fraction_of_the_median():
    counts = [200, 200, 200]
    assert judge_partial(99, fraction=0.5, trailing_counts=counts).partial is True
    assert judge_partial(100, fraction=0.5, trailing_counts=counts).partial is False
    assert judge_partial(100, fraction=0.6, trailing_counts=counts).partial is True


def test_the_median_looks_at_the_newest_seven_days_only():
    # newest first: seven days at 2,000, then older days at 20,000 that no longer count
    counts = [2000] * 7 + [20000] * 7
    d = judge_partial(1500, fraction=0.5, trailing_counts=counts)
    assert d.expected == 2000 and d.known_days == 7 and d.partial is False


def test_the_median_is_used_from_three_known_days_and_ignores_the_profile():
    ts = _events(2000, "2026-03-10", until_hour=6)  # cut at 06:00, but as many rows as usual
    d = _judge(ts, "2026-03-10", counts=[2000, 2000, 2000], profile=_training())
    assert d.basis == BASIS_MEDIAN and d.partial is False


# ---- time-of-day basis (a model's first days) -------------------------------------------------


def test_day_one_that_stops_at_six_is_partial_by_its_timestamps():
    profile = _training()
    ts = _events(42, "2026-03-01", until_hour=6)
    d = _judge(ts, "2026-03-01", profile=profile)
    assert d.partial is True and d.basis == BASIS_TIME_OF_DAY and d.known_days == 0
    # 00:00-06:00 carries 8 of the 127.5 hourly weights: about 6% of a usual day
    assert 0.03 < d.covered_share < 0.08
    assert d.expected == pytest.approx(42 / d.covered_share)
    assert d.reason.startswith(f"partial day: 42 rows vs {42 / d.covered_share:.0f} expected")
    assert "time-of-day profile" in d.reason


def test_day_one_that_covers_the_whole_day_is_complete_at_any_size():
    profile = _training()
    for n in (42, 165, 20000):
        d = _judge(_events(n, "2026-03-01", seed=n), "2026-03-01", profile=profile)
        assert d.partial is False and d.basis == BASIS_TIME_OF_DAY, (n, d.reason)
        assert d.covered_share > 0.9


def test_a_day_that_starts_late_is_partial_too():
    profile = _training()
    weights = HOUR_WEIGHTS.copy()
    weights[:18] = 0  # only the evening arrived
    d = _judge(_events(300, "2026-03-01", weights=weights), "2026-03-01", profile=profile)
    assert d.partial is True and d.covered_share < 0.4


def test_a_share_between_fraction_and_one_is_complete():
    # delivered until 20:00: about 78% of a usual day's traffic
    profile = _training()
    d = _judge(_events(500, "2026-03-01", until_hour=20), "2026-03-01", profile=profile)
    assert d.partial is False and 0.7 < d.covered_share < 0.85


def test_too_few_events_to_tell_are_not_judged():
    profile = _training()
    ts = _events(3, "2026-03-01", until_hour=6)
    d = _judge(ts, "2026-03-01", profile=profile)
    assert d.partial is None and d.basis is None and d.expected is None
    assert "too few to tell a partial day from a quiet one" in d.reason
    assert not is_partial(d.to_dict())


def test_the_profile_and_the_day_follow_the_model_timezone():
    # Traffic and the cut are in Berlin time; batches store naive UTC.
    profile = _training(BERLIN)
    ts = _events(60, "2026-03-01", BERLIN, until_hour=6)
    d = _judge(ts, "2026-03-01", profile=profile, tz=BERLIN)
    # the day's last event is read on the model's clock (05:xx in Berlin is 04:xx UTC)
    assert d.partial is True and "05:00" <= d.last_event < "06:00"
    full = _judge(_events(400, "2026-03-01", BERLIN), "2026-03-01", profile=profile, tz=BERLIN)
    assert full.partial is False


def test_timezone_aware_training_timestamps_give_the_same_profile():
    naive = pd.concat([_events(400, f"2026-01-{d:02d}", BERLIN, seed=d) for d in range(1, 8)])
    aware = naive.dt.tz_localize("UTC").dt.tz_convert("America/New_York")
    assert TrafficProfile.from_timestamps(naive, BERLIN) == TrafficProfile.from_timestamps(aware, BERLIN)


# ---- not judged ---------------------------------------------------------------------------------


def test_without_either_basis_the_day_is_not_judged_and_says_so():
    ts = _events(42, "2026-03-01", until_hour=6)
    d = _judge(ts, "2026-03-01", counts=[160, 170])
    assert d.partial is None and d.basis is None and d.known_days == 2
    assert d.reason.startswith("not judged: 2 earlier day(s) known, the trailing median needs 3")
    why = "the training set has no column event_ts"
    assert why in _judge(ts, "2026-03-01", profile=why).reason


def test_a_training_set_without_time_of_day_gives_no_profile():
    dates_only = pd.Series(pd.date_range("2026-01-01", periods=500, freq="D"))
    why = TrafficProfile.from_timestamps(dates_only, UTC)
    assert isinstance(why, str) and "one hour of the day" in why
    assert "needs 100" in TrafficProfile.from_timestamps(dates_only[:10], UTC)


def test_a_batch_of_dates_without_times_is_not_judged_partial():
    # every event at midnight: a batch that stores dates, not a day that stopped at 00:01
    ts = pd.Series([pd.Timestamp("2026-03-01")] * 300)
    d = _judge(ts, "2026-03-01", profile=_training())
    assert d.partial is None and "all 300 events carry the same timestamp" in d.reason


def test_no_timestamp_inside_the_day_is_not_judged():
    ts = _events(50, "2026-02-27")  # yesterday's events only
    d = _judge(ts, "2026-03-01", profile=_training())
    assert d.partial is None and "no timestamp of the batch falls inside the day" in d.reason
    # nor without a timestamp column at all
    assert judge_partial(50, fraction=0.5, profile=_training()).partial is None


def test_arguments_are_checked():
    with pytest.raises(CompletenessError, match="fraction"):
        judge_partial(10, fraction=1.0)
    with pytest.raises(CompletenessError, match="rows"):
        judge_partial(-1, fraction=0.5)


def test_the_profile_round_trips_as_json():
    p = _training()
    assert TrafficProfile.from_dict(p.to_dict()) == p
    assert p.share_before(0) == 0 and p.share_before(24 * 3600) == pytest.approx(1.0)


# ---- the shell's use of the judgment, on a real store (no Airflow) ------------------------------


def _partition(store, ds, rows, record=None):
    from watchkeeper.store import PartitionRecord, StageRecord

    store.write_partition(PartitionRecord(model="fraud", ds=ds, source="s", status="ok",
                                          rows=rows, partial=record))
    store.write_stage("fraud", ds, StageRecord(stage="ingestion", success=True, evaluated=1,
                                               passed=1, row_count=rows), [])


def _record(ds_rows, expected, partial, basis=BASIS_MEDIAN):
    return {"partial": partial, "rows": ds_rows, "expected": expected, "basis": basis,
            "fraction": 0.5, "reason": f"{'partial day' if partial else 'complete'}: {ds_rows} "
            f"rows vs {expected} expected", "known_days": 3, "covered_share": None,
            "first_event": None, "last_event": None}


@pytest.fixture
def fraud_spec():
    from watchkeeper import paths
    from watchkeeper.spec import load_spec

    return load_spec(paths.project_root() / "include/models/fraud.yaml")


def test_clean_window_leaves_out_a_partial_day_even_when_its_checks_passed(store, fraud_spec):
    # A suite without a row-count check passes a partial day: the judgment alone keeps it out.
    from watchkeeper import analysis

    days = [f"2026-03-0{i}" for i in range(1, 6)]
    for i, ds in enumerate(days):
        _partition(store, ds, 40 if i == 2 else 165, _record(40, 165.0, True) if i == 2 else None)
    assert analysis.clean_window(fraud_spec, "2026-03-06", store, None) == [
        d for i, d in enumerate(days) if i != 2]
    assert analysis.partial_reason(fraud_spec, days[2], store).startswith("partial day: 40 rows")
    assert analysis.partial_reason(fraud_spec, days[1], store) is None
    assert analysis.partial_reason(fraud_spec, "2026-03-09", store) is None


def test_min_rows_is_the_partial_rule_of_the_day(store, fraud_spec):
    from watchkeeper import monitor

    for ds, rows in (("2026-03-01", 160), ("2026-03-02", 170), ("2026-03-03", 165)):
        _partition(store, ds, rows)
    # judged against the trailing median of 165: partial below 82.5 rows, so min_rows is 83
    _partition(store, "2026-03-04", 82, _record(82, 165.0, True))
    assert monitor.stage_parameters(fraud_spec, "2026-03-04", store)["min_rows"] == 83
    # day 1 judged by its timestamps: the same fraction of the time-of-day estimate
    _partition(store, "2026-02-01", 42, _record(42, 700.0, True, BASIS_TIME_OF_DAY))
    assert monitor.stage_parameters(fraud_spec, "2026-02-01", store)["min_rows"] == 350
    # not judged (or stored before issue 14): half the trailing median, as before (the five
    # days before it: 42, 160, 170, 165, 82 rows)
    _partition(store, "2026-03-05", 40, {**_record(40, None, None), "basis": None})
    params = monitor.stage_parameters(fraud_spec, "2026-03-05", store)
    assert params["min_rows"] == 80 and params["row_count_median_7d"] == 160
    # a stricter spec moves both together
    strict = fraud_spec.model_copy(update={"completeness": fraud_spec.completeness.model_copy(
        update={"partial_fraction": 0.8})})
    assert monitor.stage_parameters(strict, "2026-03-04", store)["min_rows"] == 132


def test_partial_day_slis_count_in_neither_good_nor_total(store, fraud_spec):
    from watchkeeper import monitor
    from watchkeeper.store import MetricRecord

    ds = "2026-03-04"
    _partition(store, ds, 42, _record(42, 165.0, True))
    for fam, payload in (("drift", {"share": 0.0, "any_drift": False, "partial": True}),
                         ("prediction", {"alert": False, "partial": True})):
        store.write_metrics("fraud", ds, fam, ds, [MetricRecord(subject="__dataset__", value=None,
                                                                payload=payload)])
    slis = {r.sli: r for r in monitor._analysis_slis(fraud_spec, ds, store)}
    assert set(slis) == {"feature_drift", "prediction_stability"}
    for r in slis.values():
        assert (r.value, r.good, r.good_events, r.total_events) == (None, None, None, None)
        assert r.details == {"partial": "partial day: 42 rows vs 165.0 expected"}
    # the same day judged complete is a good day of both
    _partition(store, ds, 42, _record(42, 60.0, False))
    assert {r.sli: r.good for r in monitor._analysis_slis(fraud_spec, ds, store)} == {
        "feature_drift": True, "prediction_stability": True}


def test_the_training_profile_is_read_from_its_timestamp_column_or_says_why_not(tmp_path, fraud_spec):
    from watchkeeper import monitor

    def spec_with(training):
        return fraud_spec.model_copy(update={"reference": fraud_spec.reference.model_copy(
            update={"training": str(training)})})

    train = pd.DataFrame({"event_ts": pd.concat([_events(400, f"2026-01-{d:02d}", seed=d)
                                                  for d in range(1, 8)], ignore_index=True)})
    train["amount"] = 1.0
    train.to_parquet(tmp_path / "t.parquet")
    train.to_csv(tmp_path / "t.csv", index=False)
    from_parquet = monitor.traffic_profile(spec_with(tmp_path / "t.parquet"))
    assert isinstance(from_parquet, TrafficProfile) and from_parquet.n == 2800
    assert monitor.traffic_profile(spec_with(tmp_path / "t.csv")) == from_parquet
    train.drop(columns=["event_ts"]).to_parquet(tmp_path / "no_ts.parquet")
    why = monitor.traffic_profile(spec_with(tmp_path / "no_ts.parquet"))
    assert "no_ts.parquet (reference.training) has no column event_ts (columns.timestamp)" in why
    assert "does not exist" in monitor.traffic_profile(spec_with(tmp_path / "gone.parquet"))
    (tmp_path / "bad.parquet").write_text("not parquet")
    assert "cannot be read" in monitor.traffic_profile(spec_with(tmp_path / "bad.parquet"))


def test_load_stores_and_returns_the_judgment_and_survives_a_missing_training_set(
        store, fraud_spec, tmp_path):
    from watchkeeper import monitor
    from watchkeeper.spec import FileSource, Landing

    spec = fraud_spec.model_copy(update={
        "source": FileSource(kind="file", path=str(tmp_path / "ds={ds}.parquet")),
        "landing": Landing(kind="none"),
        "reference": fraud_spec.reference.model_copy(update={"training": str(tmp_path / "gone.parquet")})})
    pd.DataFrame({"txn_id": [f"t{i}" for i in range(42)],
                  "event_ts": _events(42, "2026-03-01", until_hour=6)}).to_parquet(
        tmp_path / "ds=2026-03-01.parquet")
    loaded = monitor.load(spec, "2026-03-01", store)
    assert loaded["status"] == "ok" and loaded["rows"] == 42
    p = loaded["partial"]
    assert p["partial"] is None and "gone.parquet (reference.training) does not exist" in p["reason"]
    assert store.partition("fraud", "2026-03-01").partial == p
    # with three days known the trailing median judges it, training set or not
    for ds in ("2026-02-26", "2026-02-27", "2026-02-28"):
        _partition(store, ds, 165)
    p = monitor.load(spec, "2026-03-01", store)["partial"]
    assert p["partial"] is True and p["basis"] == BASIS_MEDIAN and p["expected"] == 165
    # a day without rows has nothing to judge
    pd.DataFrame({"txn_id": [], "event_ts": []}).to_parquet(tmp_path / "ds=2026-03-02.parquet")
    assert monitor.load(spec, "2026-03-02", store)["partial"] is None
