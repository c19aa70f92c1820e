"""SLO arithmetic against hand-computed cases (see the docstring of watchkeeper.slo)."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import date, timedelta

import pytest

from watchkeeper.slo import (
    BudgetSnapshot,
    SliPoint,
    SliPointError,
    SloDef,
    SloDefinitionError,
    SnapshotError,
    evaluate,
)

AS_OF = date(2025, 3, 28)  # a 28-day window ending here starts on 2025-03-01


def day(offset: int) -> str:
    """The day `offset` days before AS_OF (0 = AS_OF itself)."""
    return (AS_OF - timedelta(days=offset)).isoformat()


def timeslice_days(bad_offsets: set[int], n: int = 28) -> list[SliPoint]:
    return [SliPoint(day(i), good=i not in bad_offsets) for i in range(n)]


def ratio_days(good_by_offset: dict[int, float], n: int = 28, total: float = 1000) -> list[SliPoint]:
    return [SliPoint(day(i), good_events=good_by_offset.get(i, total), total_events=total) for i in range(n)]


TS = SloDef("freshness_days", sli="freshness", kind="timeslice", objective=0.9)
RATIO = SloDef("rows_valid", sli="rows_passing", kind="ratio", objective=0.99)


# --- timeslice budgets -------------------------------------------------------------------------


def test_one_noisy_day_neither_pages_nor_spends_the_budget():
    # O = 0.9 over 28 days allows 2.8 bad days; one bad day today:
    # remaining = 1 - 1/2.8; burn_1d = 1/0.1; burn_3d = (1/3)/0.1; burn_7d = (1/7)/0.1
    snap = evaluate(TS, timeslice_days({0}), AS_OF)
    assert snap.ds == "2025-03-28" and snap.window_start == "2025-03-01"
    assert (snap.total, snap.bad, snap.allowed_bad) == (28, 1, 2.8)
    assert snap.budget_remaining == pytest.approx(1 - 1 / 2.8)
    assert snap.budget_remaining > 0 and not snap.budget_spent
    assert snap.burn_1d == pytest.approx(10.0)
    assert snap.burn_3d == pytest.approx(10 / 3)  # >= 2.8 on its own ...
    assert snap.burn_7d == pytest.approx(10 / 7)
    assert snap.bad_days_3d == 1 and snap.bad_days_7d == 1
    # ... but one bad slice neither pages (2 bad days in 3 needed) nor tickets (2 in 7 needed),
    # although burn_7d = 1.43 and burn_1d = 10 are both above the ticket burn of 1
    assert snap.alert is None
    assert snap.mature_days == 28 and snap.data_as_of == "2025-03-28"
    assert snap.burn_as_of == "2025-03-28" and snap.days_observed == 28


def test_one_noisy_day_ten_days_ago_raises_no_alert():
    snap = evaluate(TS, timeslice_days({10}), AS_OF)
    assert snap.budget_remaining == pytest.approx(1 - 1 / 2.8)
    assert (snap.burn_1d, snap.burn_3d, snap.burn_7d) == (0.0, 0.0, 0.0)
    assert snap.alert is None


def test_two_bad_days_in_three_page_a_timeslice():
    snap = evaluate(TS, timeslice_days({0, 2}), AS_OF)
    assert snap.bad_days_3d == 2
    assert snap.burn_1d == pytest.approx(10.0)
    assert snap.burn_3d == pytest.approx(20 / 3)
    assert snap.budget_remaining == pytest.approx(1 - 2 / 2.8)
    assert snap.alert == "page"


def test_min_bad_days_page_is_configurable():
    one_day_pages = SloDef("f", sli="freshness", kind="timeslice", objective=0.9, min_bad_days_page=1)
    assert evaluate(one_day_pages, timeslice_days({0}), AS_OF).alert == "page"


def test_overspent_budget_goes_negative():
    snap = evaluate(TS, timeslice_days({5, 12, 20}), AS_OF)
    assert snap.bad == 3
    assert snap.budget_remaining == pytest.approx(1 - 3 / 2.8)  # -0.0714...
    assert snap.budget_remaining < 0 and snap.budget_spent
    snap = evaluate(TS, timeslice_days({1, 5, 12, 20, 25, 27}), AS_OF)
    assert snap.budget_remaining == pytest.approx(1 - 6 / 2.8)  # -1.14: more than twice spent


def test_days_outside_the_window_do_not_count():
    # 40 days of history; bad days 28 and 35 days ago lie before window_start (27 days ago).
    snap = evaluate(TS, timeslice_days({28, 35}, n=40), AS_OF)
    assert snap.total == 28 and snap.bad == 0 and snap.budget_remaining == 1.0
    # the first day of the window (27 days ago) does count
    snap = evaluate(TS, timeslice_days({27}, n=40), AS_OF)
    assert snap.bad == 1


def test_custom_window():
    week = SloDef("f7", sli="freshness", kind="timeslice", objective=0.8, window_days=7)
    snap = evaluate(week, timeslice_days({3, 10}, n=14), AS_OF)
    # 7 days, 1 bad (3 days ago), allowed 0.2 * 7 = 1.4
    assert (snap.window_start, snap.total, snap.bad) == ("2025-03-22", 7, 1)
    assert snap.allowed_bad == pytest.approx(1.4)
    assert snap.budget_remaining == pytest.approx(1 - 1 / 1.4)


def test_two_bad_days_in_seven_ticket_a_timeslice_one_does_not():
    # bad today and 5 days ago: no page (1 bad day in the last 3), a ticket (2 in the last 7)
    snap = evaluate(TS, timeslice_days({0, 5}), AS_OF)
    assert (snap.bad_days_3d, snap.bad_days_7d) == (1, 2)
    assert snap.burn_7d == pytest.approx(20 / 7) and snap.burn_1d == pytest.approx(10.0)
    assert snap.alert == "ticket"
    # the second bad day 7 days ago lies outside the 7-day window: one bad day, no ticket
    assert evaluate(TS, timeslice_days({0, 7}), AS_OF).alert is None
    # the newest day good: burn_1d = 0, no ticket however many bad days the week had
    assert evaluate(TS, timeslice_days({1, 4}), AS_OF).alert is None


def test_min_bad_days_ticket_is_configurable():
    one_day_tickets = SloDef("f", sli="freshness", kind="timeslice", objective=0.9, min_bad_days_ticket=1)
    assert evaluate(one_day_tickets, timeslice_days({0}), AS_OF).alert == "ticket"
    with pytest.raises(SloDefinitionError, match="field 'min_bad_days_ticket'"):
        SloDef("f", sli="freshness", kind="timeslice", objective=0.9, min_bad_days_ticket=8)


# --- young windows -------------------------------------------------------------------------------


def test_a_bad_first_day_uses_the_budget_share_of_a_full_window():
    # day 1 of the model's history is bad: allowed = 0.1 * 1 * 28 / 1 = 2.8, as on a full window
    snap = evaluate(TS, [SliPoint(day(0), good=False)], AS_OF)
    assert (snap.total, snap.bad, snap.days_observed) == (1, 1, 1)
    assert snap.allowed_bad == pytest.approx(2.8)
    assert snap.budget_remaining == pytest.approx(1 - 1 / 2.8)  # 36 % used, gate stays open
    full = evaluate(TS, timeslice_days({0}), AS_OF)
    assert snap.budget_remaining == pytest.approx(full.budget_remaining)
    # three days of history, the first bad: 0.1 * 3 * 28 / 3 = 2.8 again
    snap = evaluate(TS, timeslice_days({2}, n=3), AS_OF)
    assert snap.days_observed == 3 and snap.allowed_bad == pytest.approx(2.8)
    # three bad days in a young window still exhaust the budget, as in a full one
    assert evaluate(TS, timeslice_days({0, 1, 2}, n=5), AS_OF).budget_spent


def test_young_window_counts_calendar_days_from_the_first_point():
    # 10 days of history with a gap (days 3..6 unknown): 6 points, days_observed 10
    points = [p for i, p in enumerate(timeslice_days({0}, n=10)) if not 3 <= i <= 6]
    snap = evaluate(TS, points, AS_OF)
    assert (snap.total, snap.days_observed) == (6, 10)
    assert snap.allowed_bad == pytest.approx(0.1 * 6 * 28 / 10)
    # a first point without a value still starts the history
    points = [SliPoint(day(9), good=None)] + timeslice_days(set(), n=9)
    assert evaluate(TS, points, AS_OF).days_observed == 10
    # a history longer than the window: no scaling
    snap = evaluate(TS, timeslice_days({0}, n=60), AS_OF)
    assert snap.days_observed == 28 and snap.allowed_bad == pytest.approx(2.8)


def test_young_ratio_window_is_scaled_too():
    snap = evaluate(RATIO, ratio_days({0: 900}, n=1), AS_OF)
    # 100 bad of 1000; allowed = 0.01 * 1000 * 28 = 280, as 28 such days would allow
    assert snap.allowed_bad == pytest.approx(280)
    assert snap.budget_remaining == pytest.approx(1 - 100 / 280)


# --- quality SLOs: burn over the newest mature days ---------------------------------------------

QUALITY = SloDef("model-quality", sli="precision", kind="timeslice", objective=0.9, quality=True)


def quality_days(bad_offsets: set[int], provisional: int = 9, n: int = 40) -> list[SliPoint]:
    """n days; the newest `provisional` days are not mature yet (labels still arriving)."""
    return [SliPoint(day(i), good=i not in bad_offsets, provisional=i < provisional) for i in range(n)]


def test_quality_burn_windows_end_at_the_newest_mature_day():
    # mature days 9 and 10 days ago are bad; the 9 newest days are provisional
    snap = evaluate(QUALITY, quality_days({9, 10}), AS_OF)
    assert snap.data_as_of == snap.burn_as_of == day(9)
    assert snap.burn_1d == pytest.approx(10.0)  # the newest mature day
    assert snap.burn_3d == pytest.approx(20 / 3) and snap.bad_days_3d == 2
    assert snap.alert == "page"
    # the same points under a non-quality SLO: the burn windows end on as_of, all provisional
    plain = SloDef("plain", sli="precision", kind="timeslice", objective=0.9)
    snap = evaluate(plain, quality_days({9, 10}), AS_OF)
    assert snap.burn_as_of == day(0)
    assert (snap.burn_1d, snap.burn_3d, snap.burn_7d, snap.alert) == (None, None, None, None)


def test_quality_ticket_over_the_newest_mature_days():
    snap = evaluate(QUALITY, quality_days({9, 13}), AS_OF)
    assert (snap.bad_days_3d, snap.bad_days_7d, snap.alert) == (1, 2, "ticket")


def test_quality_burn_needs_a_mature_day_in_the_window():
    # labels stuck: the newest mature day is 30 days old, before the window
    snap = evaluate(QUALITY, quality_days({30}, provisional=30), AS_OF)
    assert snap.data_as_of == day(30) and snap.burn_as_of is None
    assert snap.burn_1d is None and snap.alert is None and snap.budget_remaining is None


def test_quality_young_window_is_measured_to_the_newest_mature_day():
    # 10 days of history, the first one mature (and bad), 9 provisional: one mature day of a
    # 19-day mature span; allowed = 0.1 * 1 * 19 / 1, as one bad day in a full quality window
    snap = evaluate(QUALITY, quality_days({9}, n=10), AS_OF)
    assert (snap.total, snap.bad, snap.days_observed) == (1, 1, 1)
    assert snap.allowed_bad == pytest.approx(1.9)
    full = evaluate(QUALITY, quality_days({9}, n=60), AS_OF)
    assert full.allowed_bad == pytest.approx(1.9) and full.days_observed == 19
    assert snap.budget_remaining == pytest.approx(full.budget_remaining)
    assert snap.budget_remaining > 0


# --- ratio budgets -----------------------------------------------------------------------------


def test_ratio_budget_and_burn_rates():
    # 1000 events a day; 5 bad a day, except today with 50 bad.
    good = {i: 995 for i in range(1, 28)} | {0: 950}
    snap = evaluate(RATIO, ratio_days(good), AS_OF)
    # bad = 27*5 + 50 = 185 of 28000; allowed = 0.01 * 28000 = 280
    assert (snap.total, snap.bad, snap.allowed_bad) == (28000, 185, 280)
    assert snap.budget_remaining == pytest.approx(1 - 185 / 280)
    assert snap.burn_1d == pytest.approx((50 / 1000) / 0.01)  # 5.0
    assert snap.burn_3d == pytest.approx((60 / 3000) / 0.01)  # 2.0: below 2.8, no page
    assert snap.burn_7d == pytest.approx((80 / 7000) / 0.01)  # 1.14
    assert snap.alert == "ticket"


def test_ratio_single_bad_day_pages_without_the_two_day_rule():
    snap = evaluate(RATIO, ratio_days({0: 900}), AS_OF)
    # 1d: 0.1/0.01 = 10; 3d: (100/3000)/0.01 = 3.33 -> page although only one day had bad events
    assert snap.burn_1d == pytest.approx(10.0)
    assert snap.burn_3d == pytest.approx(10 / 3)
    assert snap.bad_days_3d == 1
    assert snap.alert == "page"
    assert snap.budget_remaining == pytest.approx(1 - 100 / 280)


def test_page_and_ticket_thresholds_are_inclusive():
    # exactly 2.8 over 3 days and over 1 day: 28 bad of 1000 each day, O = 0.99
    snap = evaluate(RATIO, ratio_days({0: 972, 1: 972, 2: 972}), AS_OF)
    assert snap.burn_1d == 2.8 and snap.burn_3d == 2.8  # no float noise below the threshold
    assert snap.alert == "page"
    # exactly 1.0 over 7 days and 1 day: 10 bad a day for 7 days
    snap = evaluate(RATIO, ratio_days({i: 990 for i in range(7)}), AS_OF)
    assert snap.burn_1d == 1.0 and snap.burn_7d == 1.0
    assert snap.alert == "ticket"
    # just below: 9 bad today
    snap = evaluate(RATIO, ratio_days({0: 991} | {i: 990 for i in range(1, 7)}), AS_OF)
    assert snap.alert is None


def test_ticket_needs_the_one_day_window_too():
    # a bad week that recovered today: 7d burn high, 1d burn 0 -> no ticket
    snap = evaluate(RATIO, ratio_days({i: 980 for i in range(1, 7)}), AS_OF)
    assert snap.burn_7d == pytest.approx((120 / 7000) / 0.01)
    assert snap.burn_1d == 0.0
    assert snap.alert is None


def test_budget_exactly_spent_is_zero_not_float_noise():
    # allowed = 0.01 * 28000 = 280 bad; spend exactly 280 (10 bad a day)
    snap = evaluate(RATIO, ratio_days({i: 990 for i in range(28)}), AS_OF)
    assert snap.budget_remaining == 0.0 and snap.budget_spent


# --- provisional days, empty windows, zero totals ------------------------------------------------


def test_provisional_days_count_in_neither_good_nor_total():
    base = ratio_days({}, n=20)
    # 8 more days whose labels are not mature yet; their (bad) values must not count
    provisional = [SliPoint(day(i), good_events=100, total_events=1000, provisional=True) for i in range(20, 28)]
    snap = evaluate(RATIO, base + provisional, AS_OF)
    assert snap.total == 20_000 and snap.bad == 0 and snap.budget_remaining == 1.0
    assert snap.mature_days == 20
    ts = [SliPoint(day(i), good=False, provisional=True) for i in range(3)] + timeslice_days(set(), n=28)[3:]
    snap = evaluate(TS, ts, AS_OF)
    assert (snap.total, snap.bad, snap.mature_days) == (25, 0, 25)
    assert snap.allowed_bad == pytest.approx(2.5)


def test_none_values_count_in_neither_good_nor_total():
    points = timeslice_days({5}, n=28)[1:] + [SliPoint(day(0), good=None)]
    snap = evaluate(TS, points, AS_OF)
    assert (snap.total, snap.bad, snap.mature_days) == (27, 1, 27)
    assert snap.data_as_of == day(1)


def test_empty_window_is_no_data():
    snap = evaluate(TS, [], AS_OF)
    assert (snap.total, snap.bad, snap.allowed_bad) == (0, 0, 0)
    assert snap.budget_remaining is None and not snap.budget_spent
    assert (snap.burn_1d, snap.burn_3d, snap.burn_7d, snap.alert) == (None, None, None, None)
    assert snap.mature_days == 0 and snap.data_as_of is None
    # old data only: still no data in the window, but data_as_of says how old the newest is
    snap = evaluate(TS, [SliPoint(day(40), good=True)], AS_OF)
    assert snap.budget_remaining is None and snap.data_as_of == day(40)


def test_all_provisional_is_no_data():
    points = [SliPoint(day(i), good_events=0, total_events=10, provisional=True) for i in range(28)]
    snap = evaluate(RATIO, points, AS_OF)
    assert snap.budget_remaining is None and snap.total == 0 and snap.mature_days == 0
    assert snap.alert is None and snap.data_as_of is None


def test_zero_total_in_one_day_window_cannot_page():
    # two bad days, 1 and 2 days ago; today is still provisional: burn_1d is None, no page
    points = [SliPoint(day(0), good=False, provisional=True)] + timeslice_days({1, 2})[1:]
    snap = evaluate(TS, points, AS_OF)
    assert snap.burn_1d is None
    assert snap.burn_3d == pytest.approx((2 / 2) / 0.1)
    assert snap.bad_days_3d == 2
    assert snap.alert is None
    # the same bad days, judged on the newer of them (it is the 1-day window then), do page
    assert evaluate(TS, timeslice_days({1, 2})[1:], AS_OF - timedelta(days=1)).alert == "page"


def test_ratio_day_without_events_adds_nothing():
    points = ratio_days({}, n=27)[1:] + [SliPoint(day(0), good_events=0, total_events=0)]
    snap = evaluate(RATIO, points, AS_OF)
    assert snap.total == 26_000 and snap.mature_days == 26 and snap.burn_1d is None


def test_future_points_are_ignored_so_old_days_reproduce():
    history = timeslice_days({3}, n=28)
    before = evaluate(TS, history, AS_OF)
    later = [SliPoint((AS_OF + timedelta(days=k)).isoformat(), good=False) for k in range(1, 5)]
    assert evaluate(TS, history + later, AS_OF) == before


def test_inconclusive_days_are_mature_but_add_no_event():
    # a quality timeslice: 20 judged days, 8 inconclusive ones (missed the threshold within noise)
    points = [SliPoint(day(i), good=None, inconclusive=True) if i % 3 == 0 and i < 24
              else SliPoint(day(i), good=i != 1) for i in range(28)]
    snap = evaluate(QUALITY, points, AS_OF)
    assert (snap.total, snap.bad, snap.mature_days) == (20, 1, 28)
    assert snap.allowed_bad == pytest.approx(2.0)
    # an inconclusive newest day has no event: the burn windows end at the newest judged day
    assert snap.burn_as_of == day(1) and snap.burn_1d == pytest.approx(10.0)
    # provisional inconclusive days are not mature
    snap = evaluate(QUALITY, [SliPoint(day(0), inconclusive=True, provisional=True)], AS_OF)
    assert snap.mature_days == 0 and snap.budget_remaining is None
    with pytest.raises(SliPointError, match="field 'inconclusive'"):
        SliPoint(day(0), good=False, inconclusive=True)


# --- input errors -------------------------------------------------------------------------------


def test_duplicate_day_is_refused():
    with pytest.raises(SliPointError, match="two points for ds=2025-03-28"):
        evaluate(TS, timeslice_days(set()) + [SliPoint(day(0), good=False)], AS_OF)


def test_point_of_the_wrong_kind_is_refused():
    with pytest.raises(SliPointError, match="ratio SLO but SLI point ds=2025-03-28 carries only a good/bad flag"):
        evaluate(RATIO, [SliPoint(day(0), good=True)], AS_OF)
    with pytest.raises(SliPointError, match="timeslice SLO but SLI point ds=2025-03-28 carries only ratio"):
        evaluate(TS, [SliPoint(day(0), good_events=1, total_events=2)], AS_OF)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"ds": "2025/03/28", "good": True}, "field 'ds'"),
        ({"ds": "2025-03-28", "good_events": 11, "total_events": 10}, r"good_events \(11\) exceeds total_events \(10\)"),
        ({"ds": "2025-03-28", "good_events": -1, "total_events": 10}, "field 'good_events': must be a finite number >= 0"),
        ({"ds": "2025-03-28", "good_events": float("nan"), "total_events": 10}, "is NaN"),
        ({"ds": "2025-03-28", "good_events": 3}, "both be set or both be None"),
        ({"ds": "2025-03-28", "good": 1}, "field 'good': expected true, false or None"),
        ({"ds": "2025-03-28", "good": True, "provisional": None}, "field 'provisional'"),
    ],
)
def test_invalid_points_name_the_field(kwargs, message):
    with pytest.raises(SliPointError, match=message):
        SliPoint(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"objective": 1.0}, "field 'objective'"),
        ({"objective": 0}, "field 'objective'"),
        ({"kind": "window"}, "field 'kind'"),
        ({"gates": "model"}, "field 'gates': must be a set of scopes, not the string"),
        ({"gates": frozenset({"deploy"})}, "field 'gates'"),
        ({"gates": frozenset()}, "field 'gates'"),
        ({"window_days": 0}, "field 'window_days'"),
        ({"page_burn": -1}, "field 'page_burn'"),
        ({"min_bad_days_page": 4}, "field 'min_bad_days_page'"),
        ({"min_bad_days_ticket": 0}, "field 'min_bad_days_ticket'"),
        ({"sli": ""}, "field 'sli'"),
    ],
)
def test_invalid_slo_definitions_name_the_slo_and_field(kwargs, message):
    args = {"name": "acc", "sli": "accuracy", "kind": "ratio", "objective": 0.95} | kwargs
    with pytest.raises(SloDefinitionError, match=message) as info:
        SloDef(**args)
    assert "SLO 'acc'" in str(info.value)


def test_gates_accept_any_collection():
    slo = SloDef("dq", sli="rows_passing", kind="ratio", objective=0.99, gates=["model", "features"])
    assert slo.gates == frozenset({"model", "features"})
    assert SloDef("q", sli="accuracy", kind="ratio", objective=0.9).gates == frozenset({"model"})


# --- snapshot serialisation ---------------------------------------------------------------------


def test_snapshot_round_trips_through_json():
    for snap in (evaluate(TS, timeslice_days({0, 2}), AS_OF), evaluate(RATIO, [], AS_OF)):
        data = json.loads(json.dumps(snap.to_dict()))
        assert BudgetSnapshot.from_dict(data) == snap


def test_snapshot_stored_before_the_new_fields_reads_back():
    data = evaluate(TS, timeslice_days({0}), AS_OF).to_dict()
    old = {k: v for k, v in data.items() if k not in ("burn_as_of", "bad_days_7d", "days_observed")}
    snap = BudgetSnapshot.from_dict(old)
    assert snap.burn_as_of == snap.ds == "2025-03-28"  # old burn windows ended on ds
    assert snap.bad_days_7d is None and snap.days_observed is None
    assert (snap.alert, snap.budget_remaining) == (None, data["budget_remaining"])
    with pytest.raises(SnapshotError, match="field 'burn_as_of': expected a day or null"):
        BudgetSnapshot.from_dict(data | {"burn_as_of": "soon"})
    with pytest.raises(SnapshotError, match="field 'bad_days_7d'"):
        BudgetSnapshot.from_dict(data | {"bad_days_7d": -1})


def test_snapshot_from_dict_names_the_bad_field():
    data = evaluate(TS, timeslice_days({0}), AS_OF).to_dict()
    with pytest.raises(SnapshotError, match=r"missing field\(s\) \['burn_3d'\]"):
        BudgetSnapshot.from_dict({k: v for k, v in data.items() if k != "burn_3d"})
    with pytest.raises(SnapshotError, match="field 'alert': expected one of"):
        BudgetSnapshot.from_dict(data | {"alert": "sms"})
    with pytest.raises(SnapshotError, match="field 'ds': expected a day"):
        BudgetSnapshot.from_dict(data | {"ds": "yesterday"})
    with pytest.raises(SnapshotError, match=r"unknown field\(s\) \['model'\]"):
        BudgetSnapshot.from_dict(data | {"model": "fraud"})


def test_module_imports_nothing_heavy():
    # the gate CLI imports slo; it must not drag in pandas, numpy, pydantic or Airflow
    code = (
        "import sys, watchkeeper.slo, watchkeeper.gate; "
        "print(sorted(m for m in ('pandas', 'numpy', 'pydantic', 'airflow', 'great_expectations', "
        "'evidently', 'sqlalchemy') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
