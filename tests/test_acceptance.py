"""Expected change (issue 14), the pure parts: validating an acceptance, choosing each feature's
reference, excusing budget days, and what the gate says about acceptances. Real specs (parsed
like a YAML file) and real budget snapshots (watchkeeper.slo.evaluate)."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pytest

from watchkeeper import acceptance as acc
from watchkeeper.gate import GatePolicy, decide
from watchkeeper.slo import BudgetSnapshot, SliPoint, SloDef, evaluate
from watchkeeper.spec import SpecError, parse_spec


def spec_dict(**extra) -> dict:
    return {
        "name": "shop", "task": "binary_classification",
        "source": {"kind": "file", "path": "/tmp/x/ds={ds}.parquet"},
        "columns": {"id": "id", "timestamp": "ts"},
        "features": [{"name": "price", "kind": "numerical"}, {"name": "qty", "kind": "numerical"},
                     {"name": "region", "kind": "categorical"}],
        "prediction": {"score": "score"}, "segments": ["region"],
        "reference": {"training": "/tmp/x/training.parquet"},
        **extra,
    }


SPEC = parse_spec(spec_dict())


def make(**kw) -> acc.Acceptance:
    args = dict(id="acc-0000000a", feature="price", reason="new pricing", known_on="2025-01-10",
                today="2025-02-01", created_by="alice", created_at="2025-01-10T09:00:00+00:00")
    args.update(kw)
    return acc.new_acceptance(SPEC, **args)


def day(n: int) -> str:
    return (date(2025, 1, 1) + timedelta(days=n - 1)).isoformat()


# ----- validation -------------------------------------------------------------------------------


def test_a_valid_acceptance_defaults_since_to_the_incident_onset_else_its_known_day():
    a = make(default_since="2025-01-05", until="2025-03-01")
    assert (a.since, a.until, a.known_on, a.segment) == ("2025-01-05", "2025-03-01", "2025-01-10", None)
    assert make().since == "2025-01-10"
    assert make(since="2025-01-02", default_since="2025-01-05").since == "2025-01-02"
    seg = make(segment="region=EU")
    assert seg.segment == ("region", "EU") and seg.what == "price [region=EU]"
    assert acc.Acceptance.from_dict(seg.to_dict()) == seg


@pytest.mark.parametrize(("kw", "words"), [
    ({"feature": "prcie"}, ["feature", "'prcie' is not a feature of model 'shop'", "price, qty, region"]),
    ({"feature": " "}, ["feature", "required"]),
    ({"segment": "country=DE"}, ["segment", "'country' is not a segment column", "segments: region"]),
    ({"segment": "region"}, ["segment", "not COLUMN=VALUE"]),
    ({"segment": "region="}, ["segment", "no value"]),
    ({"feature": "region", "segment": "region=EU"}, ["segment", "the feature itself"]),
    ({"reason": "  "}, ["reason", "required and not blank"]),
    ({"until": "2025-01-01", "since": "2025-01-05"}, ["until", "2025-01-01 is before since 2025-01-05"]),
    ({"since": "2025-01-11"}, ["since", "after the day the acceptance becomes known (2025-01-10)"]),
    ({"known_on": "2025-03-01"}, ["as_of", "after today (2025-02-01)"]),
    ({"until": "next week"}, ["until", "expected a day YYYY-MM-DD"]),
    ({"created_by": ""}, ["by", "required"]),
])
def test_refusals_name_the_field_and_why(kw, words):
    with pytest.raises(acc.AcceptanceError) as err:
        make(**kw)
    for w in words:
        assert w in str(err.value), str(err.value)


def test_windows_of_time_known_as_of_revocation_and_status():
    a = make(since="2025-01-05", until="2025-01-20")
    assert not a.active_for_run("2025-01-09")  # runs as of an earlier day never see it
    assert a.active_for_run("2025-01-10") and a.active_for_run("2025-01-20")
    assert not a.active_for_run("2025-01-21")  # until is inclusive, then it expires
    assert a.covers_day("2025-01-05") and not a.covers_day("2025-01-04")
    assert [a.status(d) for d in ("2025-01-09", "2025-01-12", "2025-01-21")] == \
        ["not known yet", "active", "expired"]
    r = acc.revoke(a, on="2025-01-15", by="bob", reason="pricing rolled back")
    assert r.known_as_of("2025-01-14") and not r.known_as_of("2025-01-15")
    assert r.status("2025-01-16") == "revoked" and acc.Acceptance.from_dict(r.to_dict()) == r
    with pytest.raises(acc.AcceptanceError, match="already revoked on 2025-01-15 by bob"):
        acc.revoke(r, on="2025-01-16", by="bob", reason=None)
    with pytest.raises(acc.AcceptanceError, match="before the acceptance became known"):
        acc.revoke(a, on="2025-01-09", by="bob", reason=None)
    assert a.matches("price", None) and a.matches("price", {"region": "EU"})
    s = make(segment="region=EU")
    assert s.matches("price", {"region": "EU"}) and not s.matches("price", None)
    assert not s.matches("price", {"region": "US"}) and not s.matches("qty", {"region": "EU"})


def test_stored_acceptances_that_do_not_fit_are_typed_errors():
    good = make().to_dict()
    with pytest.raises(acc.AcceptanceError, match=r"missing field\(s\) \['reason'\]"):
        acc.Acceptance.from_dict({**good, "reason": ""})
    with pytest.raises(acc.AcceptanceError, match="field 'since'"):
        acc.Acceptance.from_dict({**good, "since": "soon"})
    with pytest.raises(acc.AcceptanceError, match="field 'segment'"):
        acc.Acceptance.from_dict({**good, "segment": {"a": 1, "b": 2}})


def test_seasonal_spec_field_and_its_checks():
    s = parse_spec(spec_dict(features=[{"name": "temp", "kind": "numerical", "seasonal": "yearly"},
                                       {"name": "qty", "kind": "numerical", "seasonal": 7},
                                       {"name": "x", "kind": "numerical", "seasonal": "weekly"}],
                             segments=[]))
    assert [f.season_days for f in s.features] == [365, 7, 7]
    with pytest.raises(SpecError, match="seasonal: use weekly, yearly or a period of at least 2 days"):
        parse_spec(spec_dict(features=[{"name": "t", "kind": "numerical", "seasonal": 1}], segments=[]))
    with pytest.raises(SpecError, match="seasonal period 3 days is not longer than half the drift window"):
        parse_spec(spec_dict(features=[{"name": "t", "kind": "numerical", "seasonal": 3}], segments=[],
                             drift={"reference_days": 7}))


# ----- references -------------------------------------------------------------------------------

FEATURES = [acc.FeatureInfo("price"), acc.FeatureInfo("qty"), acc.FeatureInfo("region"),
            acc.FeatureInfo("temp", 7)]


def test_an_active_acceptance_gives_its_feature_the_accepted_window_and_the_rest_keep_theirs():
    a = make(since=day(5), known_on=day(10))
    staged = [day(n) for n in range(1, 13) if n != 7]  # day 7 was never staged
    plans = acc.plan_references("skew", day(12), FEATURES[:3], [a], staged_days=staged,
                                clean_window=None, reference_days=7)
    by = {p.label: p for p in plans.plans}
    assert set(by) == {"training", a.label}
    assert by["training"].features == ("qty", "region") and by["training"].days is None
    # since..known_on, staged, before ds
    assert by[a.label].days == (day(5), day(6), day(8), day(9), day(10))
    assert plans.label_of("price", {"region": "EU"}) == a.label
    assert plans.label_of("qty", None) == "training"
    # the run of known_on itself never uses its own batch
    on_day = acc.plan_references("drift", day(10), FEATURES[:3], [a], staged_days=staged,
                                 clean_window=[day(9)], reference_days=7)
    assert {p.label: p.days for p in on_day.plans}[a.label] == (day(5), day(6), day(8), day(9))
    # before known_on, after until or revoked: the usual references
    for ds, accs in ((day(9), [a]), (day(12), [acc.revoke(a, on=day(11), by="bob", reason=None)]),
                     (day(12), [make(since=day(5), known_on=day(10), until=day(11))])):
        p = acc.plan_references("skew", ds, FEATURES[:3], accs, staged_days=staged,
                                clean_window=None, reference_days=7)
        assert [x.label for x in p.plans] == ["training"], ds


def test_the_window_keeps_the_28_newest_days_and_the_newest_acceptance_wins():
    a = make(since="2024-10-01", known_on="2025-01-10")
    staged = [(date(2024, 10, 1) + timedelta(days=i)).isoformat() for i in range(110)]
    w = acc.accepted_window(a, "2025-01-20", staged)
    assert len(w) == 28 and w[-1] == "2025-01-10" and w[0] == "2024-12-14"
    b = make(id="acc-0000000b", since="2025-01-08", known_on="2025-01-15")
    plans = acc.plan_references("drift", "2025-01-20", FEATURES[:1], [a, b], staged_days=staged,
                                clean_window=["2025-01-19"], reference_days=7)
    (p,) = plans.plans
    assert p.label == b.label and p.days[0] == "2025-01-08" and p.days[-1] == "2025-01-15"


def test_an_acceptance_without_a_staged_day_yet_is_measured_as_usual_but_not_alerted():
    a = make(since=day(10), known_on=day(10))
    plans = acc.plan_references("skew", day(10), FEATURES[:2], [a], staged_days=[day(9)],
                                clean_window=None, reference_days=7)
    assert [p.label for p in plans.plans] == ["training"]
    why = plans.not_alerted_reason("price", None)
    assert why and "no staged day of its window" in why and "not alerted" in why
    assert plans.not_alerted_reason("qty", None) is None


def test_a_segment_acceptance_claims_only_its_segment_row():
    a = make(segment="region=EU", since=day(3), known_on=day(6))
    plans = acc.plan_references("skew", day(8), FEATURES[:2], [a],
                                staged_days=[day(n) for n in range(1, 8)], clean_window=None,
                                reference_days=7)
    assert plans.claimed_segments() == {("price", "region", "EU")}
    assert plans.label_of("price", {"region": "EU"}) == a.label
    assert plans.label_of("price", {"region": "US"}) == "training"
    assert plans.label_of("price", None) == "training"


def test_seasonal_drift_uses_the_previous_cycle_when_half_of_it_is_staged_else_the_window():
    assert acc.previous_cycle_days(day(20), 7, 7) == [day(n) for n in range(10, 17)]
    assert acc.previous_cycle_days(day(20), 7, 1) == [day(13)]
    staged = [day(n) for n in range(10, 14)]  # 4 of the 7 days: enough (needs 4)
    plans = acc.plan_references("drift", day(20), FEATURES, [], staged_days=staged,
                                clean_window=[day(19)], reference_days=7)
    by = {p.label: p for p in plans.plans}
    assert by["seasonal:previous_cycle"].features == ("temp",)
    assert by["seasonal:previous_cycle"].days == tuple(staged)
    assert by["window"].features == ("price", "qty", "region")
    few = acc.plan_references("drift", day(20), FEATURES, [], staged_days=staged[:3],
                              clean_window=[day(19)], reference_days=7)
    assert [p.label for p in few.plans] == ["window"]
    assert "3 of 7 days of the previous cycle" in few.notes[0] and "4 needed" in few.notes[0]
    assert few.restrict(["price"]).notes == ()  # a group without temp carries no note about it
    skew = acc.plan_references("skew", day(20), FEATURES, [], staged_days=staged,
                               clean_window=None, reference_days=7)
    assert [p.label for p in skew.plans] == ["training"]
    assert "reported, not alerted" in skew.not_alerted_reason("temp", None)
    assert skew.not_alerted_reason("price", None) is None


def test_a_seasonal_feature_against_a_short_trailing_window_is_reported_not_alerted():
    """Before a cycle of history, a seasonal feature meets its trailing window; while that window
    is shorter than min_window_days its day-to-day spread is unknown, so it is not alerted."""
    short = acc.plan_references("drift", day(20), FEATURES, [], staged_days=[],
                                clean_window=[day(18), day(19)], reference_days=7, min_window_days=5)
    why = short.not_alerted_reason("temp", None)
    assert why and "2 day(s) in its trailing window, 5 needed" in why and "not alerted" in why
    assert short.not_alerted_reason("price", None) is None  # not seasonal: alerted as before
    enough = acc.plan_references("drift", day(20), FEATURES, [], staged_days=[],
                                 clean_window=[day(n) for n in range(15, 20)], reference_days=7,
                                 min_window_days=5)
    assert enough.not_alerted_reason("temp", None) is None


# ----- budgets ----------------------------------------------------------------------------------


def test_excused_days_need_every_drifted_row_covered_and_not_measured_against_its_own_window():
    a = make(since=day(5), known_on=day(10))
    days = [
        acc.DriftDay(day(4), True, ({"feature": "price", "segment": None, "reference": "training"},)),
        acc.DriftDay(day(5), True, ({"feature": "price", "segment": None, "reference": "training"},
                                    {"feature": "price", "segment": {"region": "EU"}, "reference": "window"})),
        acc.DriftDay(day(6), True, ({"feature": "price", "segment": None, "reference": "training"},
                                    {"feature": "qty", "segment": None, "reference": "training"})),
        acc.DriftDay(day(11), True, ({"feature": "price", "segment": None, "reference": a.label},)),
        acc.DriftDay(day(7), True, None),  # stored before the SLI recorded its drifted rows
        acc.DriftDay(day(8), False, ()),
    ]
    assert acc.excused_days(days, [a], day(9)).days == {}  # not known yet as of day 9
    ex = acc.excused_days(days, [a], day(10))
    assert ex.days == {day(5): (a.id,)}
    assert ex.count_by(day(1), day(10)) == {a.id: 1} and ex.count_by(day(6), day(10)) == {}
    revoked = acc.revoke(a, on=day(12), by="bob", reason=None)
    assert acc.excused_days(days, [revoked], day(12)).days == {}


# ----- the gate -----------------------------------------------------------------------------------

DRIFT_SLO = SloDef("feature-drift", sli="feature_drift", kind="timeslice", objective=0.9)
FRESH_SLO = SloDef("freshness", sli="freshness", kind="timeslice", objective=0.9,
                   gates={"model", "features"})
NOW = datetime(2025, 1, 31, 9, tzinfo=timezone.utc)


def test_the_gate_names_the_acceptances_that_affect_its_slos():
    end = date(2025, 1, 28)
    pts = [SliPoint((end - timedelta(days=i)).isoformat(), good=True) for i in range(28)]
    snap = evaluate(DRIFT_SLO, pts, end)
    from dataclasses import replace

    snap = replace(snap, excused_days=4, excused_by={"acc-0000000a": 4})
    fresh = evaluate(FRESH_SLO, pts, end)
    a = make(since="2025-01-20", known_on="2025-01-27", until="2025-03-01")
    old = make(id="acc-0000000c", since="2024-10-01", known_on="2024-10-05", until="2024-10-30")
    late = make(id="acc-0000000d", known_on="2025-01-29", today="2025-02-01")
    d = decide("shop", "model", [snap, fresh], [DRIFT_SLO, FRESH_SLO], GatePolicy(),
               evaluated_at=NOW, as_of=end, overrides=[], acceptances=[a, old, late])
    assert d.decision == "open"
    (listed,) = d.acceptances  # old ended before the window, late is not known as of the 28th
    assert listed["id"] == a.id and listed["created_by"] == "alice"
    assert (listed["feature"], listed["reason"], listed["until"], listed["excused_days"]) == \
        ("price", "new pricing", "2025-03-01", 4)
    assert listed["slos"] == ["feature-drift"]
    body = d.to_json_dict()
    assert body["acceptances"] == d.acceptances
    assert "Accepted expected change: price since 2025-01-20, until 2025-03-01 (by alice: " \
           "'new pricing'; 4 drifted days excused)" in body["verdict"]
    reasons = {r["slo"]: r for r in body["reasons"]}
    assert reasons["feature-drift"]["acceptances"] == [a.id]
    assert "acceptances" not in reasons["freshness"]
    assert "4 drifted days excused by accepted expected change (acc-0000000a)" in \
        reasons["feature-drift"]["text"]
    # the features scope is gated by freshness only: nothing affected, nothing listed
    f = decide("shop", "features", [snap, fresh], [DRIFT_SLO, FRESH_SLO], GatePolicy(),
               evaluated_at=NOW, as_of=end, overrides=[], acceptances=[a])
    assert f.acceptances == [] and "Accepted" not in f.verdict_text()


def test_snapshots_stored_before_the_excused_fields_still_read():
    snap = evaluate(DRIFT_SLO, [SliPoint("2025-01-28", good=False)], "2025-01-28")
    old = {k: v for k, v in snap.to_dict().items() if k not in ("excused_days", "excused_by")}
    back = BudgetSnapshot.from_dict(old)
    assert back == snap and (back.excused_days, back.excused_by) == (0, {})
    with pytest.raises(Exception, match="excused_by"):
        BudgetSnapshot.from_dict(snap.to_dict() | {"excused_by": {"acc-1": -1}})
