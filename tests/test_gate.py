"""Gate decisions from real budget snapshots (built with watchkeeper.slo.evaluate)."""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta, timezone

import pytest

from watchkeeper.gate import (
    DECISION_KEYS,
    GateDecision,
    GateError,
    GatePolicy,
    Override,
    OverrideRefused,
    decide,
    new_override,
    validate_override,
)
from watchkeeper.slo import SliPoint, SloDef, evaluate

AS_OF = date(2025, 3, 28)  # the evaluation date: snapshots of this day are fresh
NOW = datetime(2025, 3, 29, 9, 30, tzinfo=timezone.utc)

FRESHNESS = SloDef("freshness", sli="freshness", kind="timeslice", objective=0.9, gates={"model", "features"})
DATA_QUALITY = SloDef("data_quality", sli="rows_passing", kind="ratio", objective=0.99, gates={"model", "features"})
ACCURACY = SloDef("accuracy", sli="accuracy", kind="ratio", objective=0.9, quality=True)
PREDICTIONS = SloDef("prediction_stability", sli="psi_ok", kind="timeslice", objective=0.9)
SLOS = [FRESHNESS, DATA_QUALITY, ACCURACY, PREDICTIONS]


def day(offset: int, end: date = AS_OF) -> str:
    return (end - timedelta(days=offset)).isoformat()


def healthy_points(slo: SloDef, n: int = 28, end: date = AS_OF) -> list[SliPoint]:
    if slo.kind == "timeslice":
        return [SliPoint(day(i, end), good=True) for i in range(n)]
    return [SliPoint(day(i, end), good_events=1000, total_events=1000) for i in range(n)]


def snapshots(points: dict[str, list[SliPoint]] | None = None, end: date = AS_OF) -> list:
    """One snapshot per SLO on `end`; healthy unless `points` says otherwise."""
    points = points or {}
    return [evaluate(slo, points.get(slo.name, healthy_points(slo, end=end)), end) for slo in SLOS]


def run(snaps, scope="model", policy=GatePolicy(), overrides=(), **kw) -> GateDecision:
    return decide(
        "fraud", scope, list(snaps), SLOS, policy,
        evaluated_at=kw.pop("evaluated_at", NOW), as_of=kw.pop("as_of", AS_OF), overrides=list(overrides), **kw,
    )


def reason(decision: GateDecision, slo: str) -> dict:
    (row,) = [r for r in decision.reasons if r["slo"] == slo]
    return row


def override(**kw) -> Override:
    args = dict(
        model="fraud", scope="model", reason="hotfix for a crash in scoring", created_by="alice",
        created_at=NOW - timedelta(hours=1), expires_at=NOW + timedelta(hours=4),
    ) | kw
    return Override(**args)


# --- outcomes -----------------------------------------------------------------------------------


def test_open_when_every_gating_slo_is_within_budget():
    d = run(snapshots())
    assert (d.decision, d.effective, d.exit_code()) == ("open", "open", 0)
    assert [r["slo"] for r in d.reasons] == ["freshness", "data_quality", "accuracy", "prediction_stability"]
    assert all(r["verdict"] == "open" and r["budget_remaining"] == 1.0 for r in d.reasons)
    assert d.data_as_of == "2025-03-28" and d.override is None
    assert d.verdict_text().startswith("OPEN: fraud may ship (model scope, as of 2025-03-28). All 4 gating SLOs")


def test_closed_when_a_budget_is_spent():
    # accuracy: 28 days of 1000 predictions, 2900 wrong; allowed 0.1 * 28000 = 2800 -> spent
    acc = [SliPoint(day(i), good_events=1000 - (100 if i else 200), total_events=1000) for i in range(28)]
    d = run(snapshots({"accuracy": acc}))
    assert (d.decision, d.effective, d.exit_code()) == ("closed", "closed", 1)
    row = reason(d, "accuracy")
    assert row["verdict"] == "closed"
    assert row["budget_remaining"] == pytest.approx(1 - 2900 / 2800)
    assert "Error budget spent: 2900 bad of 28000 events" in row["text"]
    assert all(r["verdict"] == "open" for r in d.reasons if r["slo"] != "accuracy")
    text = d.verdict_text()
    assert text.startswith("CLOSED: fraud may not ship") and "1 of 4 gating SLOs block it" in text
    assert "accuracy: Error budget spent" in text


def test_closed_by_page_burn_with_budget_left():
    # freshness: the last two days late -> page, while 1 - 2/2.8 = 29% of the budget is left
    fresh = [SliPoint(day(i), good=i > 1) for i in range(28)]
    d = run(snapshots({"freshness": fresh}))
    row = reason(d, "freshness")
    assert row["alert"] == "page" and row["budget_remaining"] > 0
    assert row["verdict"] == "closed" and "Burning at page level" in row["text"]
    assert d.decision == "closed" and d.exit_code() == 1


def test_ticket_does_not_block():
    # two noisy days in a week (today and 5 days ago): a ticket (one alone would not ticket)
    fresh = [SliPoint(day(i), good=i not in (0, 5)) for i in range(28)]
    d = run(snapshots({"freshness": fresh}))
    assert reason(d, "freshness")["alert"] == "ticket"
    assert d.decision == "open"
    assert "Ticket-level burn, not blocking: freshness" in d.verdict_text()


def test_inconclusive_with_too_few_mature_days_for_a_quality_slo():
    # labels matured for 6 days only (the rest provisional): the quality SLO cannot be judged
    acc = [SliPoint(day(i), good_events=1000, total_events=1000, provisional=i < 22) for i in range(28)]
    d = run(snapshots({"accuracy": acc}))
    row = reason(d, "accuracy")
    assert row["mature_days"] == 6 and row["verdict"] == "inconclusive"
    assert "Only 6 mature days in the 28-day window (needs 7)" in row["text"]
    assert (d.decision, d.effective, d.exit_code()) == ("inconclusive", "closed", 2)
    assert "INCONCLUSIVE" in d.verdict_text() and "treats that as closed" in d.verdict_text()
    # 7 mature days are enough
    acc7 = [SliPoint(day(i), good_events=1000, total_events=1000, provisional=i < 21) for i in range(28)]
    assert run(snapshots({"accuracy": acc7})).decision == "open"
    # the maturity rule is for quality SLOs only: 6 days of freshness are judged
    fresh6 = healthy_points(FRESHNESS, n=6)
    assert reason(run(snapshots({"freshness": fresh6})), "freshness")["verdict"] == "open"
    # and the minimum comes from the policy
    assert run(snapshots({"accuracy": acc}), policy=GatePolicy(min_mature_days=5)).decision == "open"


def test_quality_burn_pages_over_the_newest_mature_days_and_says_so():
    # accuracy (ratio, quality): the 9 newest days provisional; the two newest mature days bad
    acc = [SliPoint(day(i), good_events=1000 - (500 if i in (9, 10) else 0), total_events=1000,
                    provisional=i < 9) for i in range(28)]
    d = run(snapshots({"accuracy": acc}))
    row = reason(d, "accuracy")
    assert row["alert"] == "page" and row["verdict"] == "closed"
    assert row["burn_as_of"] == day(9) and row["snapshot_ds"] == day(0)
    assert f"(burn over the newest mature days, to {day(9)})" in row["text"]
    # healthy: the open text says where the burn was measured too; other SLOs do not
    d = run(snapshots({"accuracy": [SliPoint(day(i), good_events=1000, total_events=1000,
                                             provisional=i < 9) for i in range(28)]}))
    assert f"burn over the newest mature days, to {day(9)}" in reason(d, "accuracy")["text"]
    assert "newest mature days" not in reason(d, "freshness")["text"]


def test_policy_can_treat_inconclusive_as_open():
    acc = [SliPoint(day(i), good_events=1000, total_events=1000, provisional=i < 25) for i in range(28)]
    d = run(snapshots({"accuracy": acc}), policy=GatePolicy(inconclusive_means="open"))
    assert (d.decision, d.effective, d.exit_code()) == ("inconclusive", "open", 0)
    assert "treats that as open" in d.verdict_text()
    assert d.to_json_dict()["inconclusive_means"] == "open"


def test_inconclusive_when_the_newest_snapshot_is_stale():
    old = snapshots(end=AS_OF - timedelta(days=3))
    d = run(old)
    assert (d.decision, d.exit_code()) == ("inconclusive", 2)
    assert all(r["verdict"] == "inconclusive" for r in d.reasons)
    assert "Newest snapshot is of 2025-03-25, 3 days before the evaluation date 2025-03-28 (limit 2 days)" in (
        reason(d, "freshness")["text"]
    )
    # two days old is within the default limit, and the limit comes from the policy
    assert run(snapshots(end=AS_OF - timedelta(days=2))).decision == "open"
    assert run(old, policy=GatePolicy(staleness_days=3)).decision == "open"


def test_stale_snapshot_with_a_spent_budget_still_closes():
    end = AS_OF - timedelta(days=5)
    fresh = [SliPoint(day(i, end), good=i % 9 != 0) for i in range(28)]  # 4 bad days of 2.8 allowed
    d = run(snapshots({"freshness": fresh}, end=end))
    row = reason(d, "freshness")
    assert row["verdict"] == "closed" and "(snapshot of 2025-03-23, 5 days old)" in row["text"]
    assert d.decision == "closed"


def test_inconclusive_when_the_store_is_unreachable():
    d = run([], store_error="could not connect to 127.0.0.1:5432")
    assert (d.decision, d.effective, d.exit_code()) == ("inconclusive", "closed", 2)
    assert all(r["verdict"] == "inconclusive" and r["budget_remaining"] is None for r in d.reasons)
    assert "Store unreachable: could not connect to 127.0.0.1:5432" in d.verdict_text()
    assert d.to_json_dict()["store_error"] == "could not connect to 127.0.0.1:5432"


def test_inconclusive_when_a_gating_slo_has_no_snapshot_or_no_data():
    d = run([s for s in snapshots() if s.slo != "prediction_stability"])
    row = reason(d, "prediction_stability")
    assert row["verdict"] == "inconclusive" and "No budget snapshot on or before 2025-03-28" in row["text"]
    d = run(snapshots({"data_quality": []}))
    assert reason(d, "data_quality")["text"] == "No data in the 28-day window ending 2025-03-28."
    assert d.decision == "inconclusive"


def test_newest_snapshot_per_slo_counts():
    closed_before = evaluate(FRESHNESS, [SliPoint(day(i, AS_OF - timedelta(days=4)), good=False) for i in range(28)],
                             AS_OF - timedelta(days=4))
    # given in either order, the newer (healthy) snapshot decides
    assert run([*snapshots(), closed_before]).decision == "open"
    assert run([closed_before, *snapshots()]).decision == "open"


def test_snapshot_after_the_evaluation_date_is_an_error():
    with pytest.raises(GateError, match="dated 2025-03-28, after the evaluation date 2025-03-27"):
        run(snapshots(), as_of=AS_OF - timedelta(days=1))


# --- scopes -------------------------------------------------------------------------------------


def test_scope_filter_counts_only_slos_gating_that_scope():
    acc = [SliPoint(day(i), good_events=0, total_events=1000) for i in range(28)]  # accuracy gone
    snaps = snapshots({"accuracy": acc})
    assert run(snaps, scope="model").decision == "closed"
    features = run(snaps, scope="features")
    assert features.decision == "open"
    assert [r["slo"] for r in features.reasons] == ["freshness", "data_quality"]
    assert features.to_json_dict()["scope"] == "features"


def test_no_slo_gating_the_scope_is_inconclusive():
    d = decide("fraud", "features", snapshots(), [ACCURACY], GatePolicy(), evaluated_at=NOW, as_of=AS_OF, overrides=[])
    assert d.reasons == [] and d.decision == "inconclusive" and d.exit_code() == 2
    assert "No SLO of 'fraud' gates the 'features' scope" in d.verdict_text()


def test_unknown_scope_is_an_error():
    with pytest.raises(GateError, match="scope must be one of"):
        run(snapshots(), scope="everything")


# --- overrides ----------------------------------------------------------------------------------


def closed_snapshots():
    return snapshots({"freshness": [SliPoint(day(i), good=i > 3) for i in range(28)]})


def test_active_override_opens_a_closed_gate_and_is_named():
    o = override()
    d = run(closed_snapshots(), overrides=[o])
    assert (d.decision, d.effective, d.exit_code()) == ("closed", "open", 0)
    assert d.override == o.to_dict()
    text = d.verdict_text()
    assert text.startswith("OPEN BY OVERRIDE until 2025-03-29T13:30:00+00:00 (break-glass by alice: ")
    assert "Without it: CLOSED: fraud may not ship" in text


def test_active_override_opens_an_inconclusive_gate():
    d = run([], store_error="timeout", overrides=[override()])
    assert (d.decision, d.effective, d.exit_code()) == ("inconclusive", "open", 0)


def test_active_override_is_shown_on_an_open_decision_too():
    d = run(snapshots(), overrides=[override()])
    assert d.decision == "open" and d.override is not None
    assert "A break-glass override by alice is active until" in d.verdict_text()


def test_expired_or_unrelated_overrides_are_ignored():
    others = [
        override(expires_at=NOW - timedelta(minutes=1)),  # expired
        override(expires_at=NOW),  # expires exactly now
        override(scope="features"),
        override(model="eta"),
        override(created_at=NOW + timedelta(minutes=5), expires_at=NOW + timedelta(hours=1)),  # not yet made
    ]
    d = run(closed_snapshots(), overrides=others)
    assert (d.decision, d.effective, d.override, d.exit_code()) == ("closed", "closed", None, 1)


def test_of_several_active_overrides_the_longest_is_named():
    short, long = override(), override(created_by="bob", expires_at=NOW + timedelta(days=1))
    assert run(closed_snapshots(), overrides=[long, short]).override["created_by"] == "bob"


@pytest.mark.parametrize("reason_text", ["", "   ", None])
def test_override_without_reason_is_refused(reason_text):
    with pytest.raises(OverrideRefused, match="a reason is required"):
        validate_override(reason_text, NOW + timedelta(hours=1), NOW)


@pytest.mark.parametrize("expires", [NOW - timedelta(seconds=1), NOW])
def test_override_with_past_expiry_is_refused(expires):
    with pytest.raises(OverrideRefused, match="is not after now"):
        validate_override("hotfix", expires, NOW)


def test_override_with_naive_time_is_refused():
    with pytest.raises(OverrideRefused, match="has no timezone"):
        validate_override("hotfix", datetime(2030, 1, 1), NOW)


def test_new_override_validates_and_round_trips():
    o = new_override("fraud", "model", "  rollback  ", "alice", NOW + timedelta(hours=2), NOW)
    assert (o.reason, o.created_at) == ("rollback", NOW)
    assert Override.from_dict(json.loads(json.dumps(o.to_dict()))) == o
    with pytest.raises(OverrideRefused, match="created_by is required"):
        new_override("fraud", "model", "why", "", NOW + timedelta(hours=2), NOW)
    with pytest.raises(OverrideRefused, match="scope must be one of"):
        new_override("fraud", "all", "why", "alice", NOW + timedelta(hours=2), NOW)
    validate_override("hotfix", NOW + timedelta(seconds=1), NOW)  # accepted: returns None


# --- the JSON shape ------------------------------------------------------------------------------


def test_json_dict_has_the_agreed_keys_and_serialises():
    d = run(closed_snapshots(), overrides=[override()])
    data = json.loads(json.dumps(d.to_json_dict()))
    assert set(DECISION_KEYS) <= set(data)
    assert set(DECISION_KEYS) == {"model", "scope", "decision", "reasons", "evaluated_at", "data_as_of", "override"}
    assert data["evaluated_at"] == "2025-03-29T09:30:00+00:00"
    assert (data["effective"], data["exit_code"], data["as_of"]) == ("open", 0, "2025-03-28")
    row = data["reasons"][0]
    assert {"slo", "sli", "budget_remaining", "burn_1d", "burn_3d", "burn_7d", "alert", "data_as_of", "verdict",
            "text", "burn_as_of"} <= set(row)
    assert data["verdict"] == d.verdict_text()


def test_invalid_inputs_are_typed_errors():
    with pytest.raises(GateError, match="no timezone"):
        run(snapshots(), evaluated_at=datetime(2025, 3, 29))
    with pytest.raises(GateError, match="as_of"):
        run(snapshots(), as_of="28/03/2025")
    with pytest.raises(GateError, match="inconclusive_means"):
        GatePolicy(inconclusive_means="maybe")
    with pytest.raises(GateError, match="SLO name\\(s\\) defined twice"):
        decide("fraud", "model", [], [ACCURACY, ACCURACY], GatePolicy(), evaluated_at=NOW, as_of=AS_OF, overrides=[])
