"""Incidents (issue 14): a condition that persists is one incident with one onset message,
one-line updates only when it gets materially worse, a reminder after `alerts.reminder_days`,
one recovery after `alerts.resolve_after_days` clean days; announcements of one run sharing a
severity are one group message. Real store (SQLite and PostgreSQL), the real slack_sdk against
tests/slack_fake.py, the real CLI."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta

import pytest
import yaml
from slack_sdk.models.blocks import Block

from slack_fake import FakeSlack
from watchkeeper import alerts, cli, day_alerts, incidents
from watchkeeper.alerts import (
    BudgetFinding,
    ConceptDriftFinding,
    DayFindings,
    DriftFinding,
    ExpectationFinding,
    FreshnessFinding,
    PredictionFinding,
    QualityFinding,
    add_silence,
    build_alerts,
    close_incidents,
    deliver,
    list_incidents,
    open_incidents,
    raise_alerts,
)
from watchkeeper.spec import load_spec
from watchkeeper.store import MetricRecord, PartitionRecord, SliRecord

REPORTS = "https://wk.example/reports"
START = date(2026, 3, 1)


def day(n: int) -> str:
    """Day n of the scenario (day 1 = 2026-03-01)."""
    return (START + timedelta(days=n - 1)).isoformat()


SPEC = {
    "name": "fraud",
    "task": "binary_classification",
    "source": {"kind": "file", "path": "data/{ds}.parquet"},
    "columns": {"id": "txn_id", "timestamp": "event_ts"},
    "features": [
        {"name": "amount", "kind": "numerical"},
        {"name": "country", "kind": "categorical"},
        {"name": "customer_email", "kind": "categorical", "pii": True},
    ],
    "segments": ["country"],
    "prediction": {"score": "score"},
    "reference": {"training": "data/training.parquet"},
    "labels": {"source": {"kind": "file", "path": "labels/{ds}.parquet"}, "join_key": "txn_id",
               "label_column": "is_fraud"},
    "slos": [
        {"name": "data-quality", "sli": "data_quality", "kind": "ratio", "objective": 0.95},
        {"name": "model-quality", "sli": "precision", "kind": "timeslice", "objective": 0.9,
         "threshold": 0.5, "quality": True},
    ],
    "alerts": {
        "routes": [
            {"severity": "page", "channel": "#fraud-oncall"},
            {"severity": "ticket", "channel": "#fraud-ml"},
            {"severity": "info", "channel": "#fraud-info"},
        ],
        "horizon_days": 2,
    },
}


@pytest.fixture
def spec(tmp_path, monkeypatch):
    models = tmp_path / "models"
    models.mkdir()
    (models / "fraud.yaml").write_text(yaml.safe_dump(SPEC))
    monkeypatch.setenv("WATCHKEEPER_MODELS_DIR", str(models))
    monkeypatch.setenv("WATCHKEEPER_REPORTS_URL", REPORTS)
    for var in (alerts.ENV_TOKEN, alerts.ENV_WEBHOOK, alerts.ENV_BASE_URL):
        monkeypatch.delenv(var, raising=False)
    return load_spec(models / "fraud.yaml")


@pytest.fixture
def slack():
    with FakeSlack() as fake:
        yield fake


def web(fake: FakeSlack) -> dict[str, str]:
    return {alerts.ENV_TOKEN: fake.token, alerts.ENV_BASE_URL: fake.base_url}


def drift(feature: str = "amount", score: float = 0.4, segment=None) -> DriftFinding:
    return DriftFinding(feature=feature, drifted=True, score=score, threshold=0.1,
                        method="wasserstein", segment=segment)


def burn(alert: str | None, remaining: float = 0.5, slo: str = "data-quality") -> BudgetFinding:
    return BudgetFinding(slo=slo, alert=alert, budget_remaining=remaining,
                         burn_1d=4.0 if alert else 0.1, burn_3d=3.0 if alert else 0.1,
                         burn_7d=1.5 if alert else 0.1, objective=0.95, window_days=28)


def run(store, spec, ds, findings, env, **kw):
    raise_alerts(store, spec, ds, findings, **{k: v for k, v in kw.items() if k == "now"})
    return deliver(store, spec, env=env, sleep=lambda s: None, echo=None,
                   **{k: v for k, v in kw.items() if k != "now"})


def rows(store, kind=None):
    return [r for r in store.outbox("fraud") if kind is None or r.kind == kind]


# --------------------------------------------------------------------------------------------
# One condition, ten days
# --------------------------------------------------------------------------------------------


def test_a_condition_holding_ten_days_is_one_incident(store, spec, slack):
    """Onset, one update when it got 1.5x worse, a reminder 7 days after the last message, one
    recovery two clean days later; a row every day it held."""
    env = web(slack)
    scores = {1: 0.4, 2: 0.45, 3: 0.7, 4: 0.8, 5: 0.8, 6: 0.8, 7: 0.75, 8: 0.8, 9: 0.8, 10: 0.8}
    for n, score in scores.items():
        # country drifts on day 1 only: the onsets are grouped, country recovers on day 3
        also = [drift("country", 0.3)] if n == 1 else []
        run(store, spec, day(n), DayFindings(drift=[drift(score=score), *also]), env)
    amount = [r for r in rows(store, "drift") if r.subject == "amount"]
    assert [r.ds for r in amount] == [day(n) for n in range(1, 11)]  # a row every day it held
    assert [r.facts["message"] for r in amount] == [
        "onset", "folded", "update", "folded", "folded", "folded", "folded", "folded", "folded",
        "reminder"]
    assert [r.status for r in amount] == [
        "grouped", "folded", "sent", "folded", "folded", "folded", "folded", "folded", "folded",
        "sent"]
    for n in (11, 12):
        run(store, spec, day(n), DayFindings(drift=[]), env)
    # day 11 was clean, but the incident closes when day - last seen (day 10) reaches 2
    assert [(r.ds, r.subject) for r in rows(store, "recovery")] == [
        (day(3), "drift:country"), (day(12), "drift:amount")]

    group, update, country_back, reminder, amount_back = slack.posts
    assert "thread_ts" not in group and group["channel"] == "#fraud-ml"
    assert group["text"].startswith("[TICKET] fraud: 2 incidents")
    assert "Feature drift: amount" in group["text"] and "Feature drift: country" in group["text"]
    # the update and the reminder: one line each, info, in the incident's (group's) thread
    for reply in (update, country_back, reminder, amount_back):
        assert reply["thread_ts"] == group["ts"] and not reply.get("reply_broadcast")
    assert "\n" not in update["text"] and "\n" not in reminder["text"]
    assert update["text"].startswith("[UPDATE] fraud · Feature drift (amount) is worse: score 0.7")
    assert "at the last message on 2026-03-01: score 0.4" in update["text"]
    assert reminder["text"] == ("[REMINDER] fraud · Feature drift (amount) still ongoing: 10 days, "
                                "worst score 0.8 vs threshold 0.1 (8x, whole batch) (on 2026-03-04)")
    assert amount_back["text"].startswith("[INFO] fraud: Resolved: Feature drift (amount)")
    by_key = {r.dedupe_key: r for r in rows(store)}
    assert by_key[f"fraud:drift:amount:{day(3)}"].severity == "info"
    assert by_key[f"fraud:drift:amount:{day(3)}"].facts["incident_severity"] == "ticket"

    inc = next(i for i in list_incidents(store, "fraud") if i.subject == "amount")
    assert (inc.status, inc.opened, inc.onset, inc.last_seen, inc.closed) == (
        "closed", day(1), day(1), day(10), day(12))
    assert (inc.duration_days, inc.days_seen, inc.time_to_detect_days) == (10, 10, 0)
    assert inc.worst == pytest.approx(8.0) and inc.worst_ds == day(4)
    # the group (counted for each incident it carries), the update, the reminder, the recovery
    assert (inc.messages_sent, inc.pages, inc.severity) == (4, 0, "ticket")


def test_escalation_ticket_to_page_is_one_page_in_the_thread(store, spec, slack):
    env = web(slack)
    run(store, spec, day(1), DayFindings(budgets=[burn("ticket")]), env)
    run(store, spec, day(2), DayFindings(budgets=[burn("page")]), env)
    run(store, spec, day(3), DayFindings(budgets=[burn("page")]), env)  # still page: folded
    root, escalation = slack.posts
    assert root["channel"] == "#fraud-ml" and "thread_ts" not in root
    assert escalation["thread_ts"] == root["ts"] and escalation["reply_broadcast"] is True
    assert escalation["text"].startswith("[PAGE] fraud: Error budget burning")
    assert "escalated from ticket to page" in escalation["text"]
    assert [r.facts["message"] for r in rows(store)] == ["onset", "escalation", "folded"]
    [inc] = list_incidents(store, "fraud")
    assert (inc.severity, inc.pages, inc.messages_sent, inc.status) == ("page", 1, 2, "open")


def test_two_pages_in_one_run_are_one_grouped_page_whose_thread_gets_the_updates(store, spec,
                                                                                 slack):
    env = web(slack)
    d1 = DayFindings(budgets=[burn("page", slo="data-quality"), burn("page", slo="freshness")],
                     drift=[drift("amount"), drift("country", 0.3)])
    report = raise_alerts(store, spec, day(1), d1)
    assert len(report.groups) == 2  # one per severity: the pages, the drift tickets
    assert raise_alerts(store, spec, day(1), d1).inserted == []  # a re-run: no new group
    deliver(store, spec, env=env, sleep=lambda s: None, echo=None)
    pages = [p for p in slack.posts if p["channel"] == "#fraud-oncall"]
    tickets = [p for p in slack.posts if p["channel"] == "#fraud-ml"]
    assert len(pages) == 1 and len(tickets) == 1 and len(slack.posts) == 2
    [page] = pages
    assert page["text"].startswith("[PAGE] fraud: 2 incidents")
    assert "Error budget burning: data-quality" in page["text"]
    assert "Error budget burning: freshness" in page["text"]
    assert "Triage checklist" in page["text"]
    for block in page["blocks"]:
        Block.parse(block).validate_json()
    members = rows(store, "budget_burn")
    [group] = [g for g in rows(store, "group") if g.severity == "page"]
    assert {r.status for r in members} == {"grouped"}
    assert {r.digest_key for r in members} == {group.dedupe_key}
    assert group.status == "sent" and group.slack_ts == page["ts"]

    # Day 2: data-quality is much worse (spent 0.5 -> 1.5 of the budget): a one-line update in
    # the GROUP message's thread; freshness unchanged: folded. Day 3 and 4 clean: recoveries
    # in the same thread.
    run(store, spec, day(2), DayFindings(budgets=[burn("page", -0.5, "data-quality"),
                                                  burn("page", 0.5, "freshness")]), env)
    [update] = slack.posts[2:]
    assert update["thread_ts"] == page["ts"] and update["channel"] == page["channel_id"]
    assert update["text"].startswith("[UPDATE] fraud · Error budget burning (data-quality) is "
                                     "worse: 150.0% of the budget spent")
    run(store, spec, day(3), DayFindings(budgets=[burn(None, 0.5, "data-quality"),
                                                  burn(None, 0.5, "freshness")]), env)
    run(store, spec, day(4), DayFindings(budgets=[burn(None, 0.5, "data-quality"),
                                                  burn(None, 0.5, "freshness")]), env)
    recoveries = slack.posts[3:]
    assert len(recoveries) == 2 and {p["thread_ts"] for p in recoveries} == {page["ts"]}
    budget_incidents = [i for i in list_incidents(store, "fraud") if i.kind == "budget_burn"]
    assert [(i.subject, i.status, i.pages) for i in budget_incidents] == [
        ("data-quality", "closed", 1), ("freshness", "closed", 1)]


def test_file_delivery_sends_the_group_and_its_replies_as_plain_messages(store, spec):
    from watchkeeper.alerts import outbox_path

    raise_alerts(store, spec, day(1), DayFindings(drift=[drift("amount"), drift("country")]))
    deliver(store, spec, env={}, echo=None)
    raise_alerts(store, spec, day(2), DayFindings(drift=[drift("amount", 0.9), drift("country")]))
    deliver(store, spec, env={}, echo=None)
    lines = [json.loads(x) for x in outbox_path().read_text().splitlines()]
    assert [(x["kind"], x["facts"]["message"]) for x in lines] == [
        ("group", "group"), ("drift", "update")]
    assert lines[1]["thread_key"] == "fraud:drift:amount"


# --------------------------------------------------------------------------------------------
# Hysteresis, silences, backfill, re-runs
# --------------------------------------------------------------------------------------------


def test_flapping_within_resolve_after_days_stays_one_incident(store, spec):
    for n, held in [(1, True), (2, False), (3, True), (4, False), (5, False)]:
        raise_alerts(store, spec, day(n), DayFindings(drift=[drift()] if held else []))
    [inc] = list_incidents(store, "fraud")
    assert (inc.opened, inc.last_seen, inc.closed, inc.days_seen) == (day(1), day(3), day(5), 2)
    assert [r.facts["message"] for r in rows(store)] == ["onset", "folded", "recovery"]

    # resolve_after_days: 1 closes on the first clean day: the same days are two incidents.
    quick = spec.model_copy(update={"alerts": spec.alerts.model_copy(
        update={"resolve_after_days": 1})})
    for n, held in [(11, True), (12, False), (13, True), (14, False)]:
        raise_alerts(store, quick, day(n), DayFindings(drift=[drift()] if held else []))
    later = [i for i in list_incidents(store, "fraud") if i.opened >= day(11)]
    assert [(i.opened, i.closed) for i in later] == [(day(11), day(12)), (day(13), day(14))]


def test_not_evaluated_kinds_never_recover(store, spec):
    raise_alerts(store, spec, day(1), DayFindings(drift=[drift()]))
    for n in range(2, 6):  # the labels run knows nothing about drift
        raise_alerts(store, spec, day(n), DayFindings(budgets=[burn(None)]))
    assert open_incidents(store, "fraud") == {"fraud:drift:amount": day(1)}


def test_a_silenced_onset_is_not_announced_and_the_next_unsilenced_day_announces(store, spec,
                                                                                  slack):
    env = web(slack)
    t1 = datetime(2026, 3, 1, 9, tzinfo=UTC)
    add_silence(store, spec, kind="drift", until=day(2), reason="vendor migration", by="alice",
                now=t1)
    for n in (1, 2):
        now = t1 + timedelta(days=n - 1)
        run(store, spec, day(n), DayFindings(drift=[drift()]), env, now=now)
    assert [r.status for r in rows(store)] == ["silenced", "silenced"]
    assert [r.facts["message"] for r in rows(store)] == ["onset", "onset"]
    t3 = datetime(2026, 3, 3, 9, tzinfo=UTC)
    run(store, spec, day(3), DayFindings(drift=[drift()]), env, now=t3)
    [post] = slack.posts
    assert "thread_ts" not in post and post["text"].startswith("[TICKET] fraud: Feature drift")
    assert "ongoing since 2026-03-01 (day 3)" in post["text"]
    [inc] = list_incidents(store, "fraud")
    assert inc.opened == day(1) and inc.announced and inc.messages_sent == 1


def test_a_silence_matching_every_member_silences_the_group(store, spec, slack):
    env = web(slack)
    t1 = datetime(2026, 3, 1, 9, tzinfo=UTC)
    two = DayFindings(budgets=[burn("page", slo="data-quality"), burn("page", slo="freshness")])
    raise_alerts(store, spec, day(1), two, now=t1)
    # silenced after the group was queued, for budget_burn (both members): held back
    add_silence(store, spec, kind="budget_burn", until=day(1), reason="planned", by="bob", now=t1)
    report = deliver(store, spec, env=env, now=lambda: t1, echo=None)
    [group] = rows(store, "group")
    assert report.silenced == [group.dedupe_key] and group.status == "silenced"
    assert slack.posts == []
    # The next day (silence expired): both are still unannounced, so they are announced again,
    # grouped again (a new member set, a new group row).
    t2 = datetime(2026, 3, 2, 9, tzinfo=UTC)
    run(store, spec, day(2), two, env, now=t2)
    [post] = slack.posts
    assert post["channel"] == "#fraud-oncall" and "2 incidents" in post["text"]
    # A silence of ONE member does not hold the group back.
    raise_alerts(store, spec, day(3), DayFindings(budgets=[burn(None, slo="data-quality"),
                                                         burn(None, slo="freshness")]), now=t2)
    t4 = datetime(2026, 3, 4, 9, tzinfo=UTC)
    raise_alerts(store, spec, day(4), DayFindings(drift=[drift("amount"), drift("country")]),
                 now=t4)
    add_silence(store, spec, kind="drift", subject="amount", until=day(4), reason="known",
                by="bob", now=t4)
    report = deliver(store, spec, env=env, now=lambda: t4, echo=None)
    groups = rows(store, "group")
    assert len(groups) == 3 and groups[-1].status == "sent" and report.silenced == []


def test_backfilled_days_are_digested_never_grouped_or_folded(store, spec, slack):
    store.write_partition(PartitionRecord(model="fraud", ds=day(10), source="s", status="ok",
                                          rows=10))
    for n in (1, 2, 3):
        raise_alerts(store, spec, day(n), DayFindings(drift=[drift("amount"), drift("country")]))
    assert {r.status for r in rows(store)} == {"digest"}
    assert {r.facts["message"] for r in rows(store)} == {"backfill"}
    assert len(rows(store)) == 6 and rows(store, "group") == []
    report = deliver(store, spec, env=web(slack), sleep=lambda s: None, echo=None)
    assert len(report.digested) == 6 and len(slack.posts) == 1
    assert "6 alerts" in slack.posts[0]["text"]
    # a live day after the backfill: nobody was told in real time, so it announces; the
    # country incident (only in the digest) closes without a message
    raise_alerts(store, spec, day(10), DayFindings(drift=[drift("amount")]))
    assert rows(store, "drift")[-1].facts["message"] == "onset"
    [closing] = rows(store, "recovery")
    assert (closing.subject, closing.status) == ("drift:country", "folded")
    assert "nobody was told about" in closing.note


def test_rerunning_days_sends_nothing_new(store, spec, slack):
    env = web(slack)
    scenario = {
        1: DayFindings(drift=[drift("amount"), drift("country")], budgets=[burn("ticket")]),
        2: DayFindings(drift=[drift("amount", 0.9)], budgets=[burn("page")]),
        3: DayFindings(drift=[], budgets=[burn("page")]),
        4: DayFindings(drift=[], budgets=[burn(None)]),
    }
    for n, f in scenario.items():
        run(store, spec, day(n), f, env)
    first = [(r.dedupe_key, r.status, r.facts.get("message")) for r in rows(store)]
    posts = len(slack.posts)
    for n, f in scenario.items():  # cleared and re-run, every day
        run(store, spec, day(n), f, env)
    assert [(r.dedupe_key, r.status, r.facts.get("message")) for r in rows(store)] == first
    assert len(slack.posts) == posts


# --------------------------------------------------------------------------------------------
# close_incidents, the CLI
# --------------------------------------------------------------------------------------------


def test_close_incidents_closes_the_open_incident_in_its_thread(store, spec, slack):
    env = web(slack)
    run(store, spec, day(1), DayFindings(drift=[drift("amount")]), env)
    run(store, spec, day(1), DayFindings(skew=[drift("amount")]), env)
    keys = close_incidents(store, spec, day(2), kind="drift", subject="amount",
                           reason="accepted: new pricing", by="alice")
    assert keys == [f"fraud:recovery:drift:amount:{day(2)}"]
    deliver(store, spec, env=env, sleep=lambda s: None, echo=None)
    closing = slack.posts[-1]
    assert closing["thread_ts"] == slack.posts[0]["ts"]
    assert "closed on 2026-03-02 by alice: accepted: new pricing" in closing["text"]
    incs = {i.kind: i for i in list_incidents(store, "fraud")}
    assert (incs["drift"].status, incs["drift"].closed_by) == ("closed", "alice")
    assert incs["skew"].status == "open"  # only what was asked
    # again: nothing open of that kind
    assert close_incidents(store, spec, day(2), kind="drift", subject="amount", reason="x",
                           by="alice") == []
    with pytest.raises(alerts.AlertError, match="needs a reason"):
        close_incidents(store, spec, day(2), kind="skew", subject="amount", reason=" ", by="a")
    with pytest.raises(alerts.AlertError, match="not a kind of incident"):
        close_incidents(store, spec, day(2), kind="drfit", subject=None, reason="r", by="a")
    # subject None: every open incident of the kind
    assert close_incidents(store, spec, day(2), kind="skew", subject=None, reason="retrained",
                           by="bob") == [f"fraud:recovery:skew:amount:{day(2)}"]
    # the drift returns: a new incident
    raise_alerts(store, spec, day(3), DayFindings(drift=[drift("amount")]))
    assert rows(store, "drift")[-1].facts["message"] == "onset"


def test_cli_incidents_json_and_table(spec, capsys):
    from watchkeeper.store import open_store

    store = open_store()  # the CLI's own store under this test's WATCHKEEPER_HOME
    env: dict[str, str] = {}
    raise_alerts(store, spec, day(1), DayFindings(freshness=FreshnessFinding(
        status="late", lateness_hours=3.0)))
    deliver(store, spec, env=env, echo=None)
    for n in (2, 3):
        raise_alerts(store, spec, day(n), DayFindings(freshness=FreshnessFinding(status="ok")))
    raise_alerts(store, spec, day(3), DayFindings(budgets=[burn("ticket")]))
    raise_alerts(store, spec, day(4), DayFindings(budgets=[burn("page")]))
    deliver(store, spec, env=env, echo=None)
    quality = QualityFinding(name="precision", value=0.4, threshold=0.5, below=True,
                             prediction_ds=day(1), verdict="bad")
    raise_alerts(store, spec, day(5), DayFindings(quality=[quality]))
    deliver(store, spec, env=env, echo=None)

    assert cli.main(["incidents", "fraud", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert set(doc) == {"as_of", "models", "incidents"} and doc["models"] == ["fraud"]
    keys = {"model", "kind", "subject", "thread_key", "status", "severity", "opened", "onset",
            "last_seen", "closed", "closed_by", "duration_days", "time_to_detect_days", "worst",
            "worst_text", "worst_ds", "days_seen", "messages_sent", "pages", "announced",
            "last_message"}
    assert all(set(i) == keys for i in doc["incidents"])
    by = {i["kind"]: i for i in doc["incidents"]}
    assert by["freshness"] == {
        "model": "fraud", "kind": "freshness", "subject": "partition",
        "thread_key": "fraud:freshness:partition", "status": "closed", "severity": "ticket",
        "opened": day(1), "onset": day(1), "last_seen": day(1), "closed": day(3),
        "closed_by": "recovery", "duration_days": 1, "time_to_detect_days": 0, "worst": 3.0,
        "worst_text": "late, 3 h after the deadline", "worst_ds": day(1), "days_seen": 1,
        "messages_sent": 2, "pages": 0, "announced": True, "last_message": day(1)}
    assert by["budget_burn"]["status"] == "open" and by["budget_burn"]["severity"] == "page"
    assert (by["budget_burn"]["pages"], by["budget_burn"]["messages_sent"]) == (1, 2)
    # a quality alert is about an older prediction-day: detected 4 days after its onset
    assert (by["quality_below_slo"]["onset"], by["quality_below_slo"]["opened"],
            by["quality_below_slo"]["time_to_detect_days"]) == (day(1), day(5), 4)

    assert cli.main(["incidents", "fraud", "--json", "--open", "--as-of", day(4)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [i["kind"] for i in doc["incidents"]] == ["budget_burn"]
    assert cli.main(["incidents", "--json", "--as-of", day(2)]) == 0  # every model
    doc = json.loads(capsys.readouterr().out)
    assert [(i["kind"], i["status"]) for i in doc["incidents"]] == [("freshness", "open")]

    assert cli.main(["incidents", "fraud"]) == 0
    out = capsys.readouterr().out
    head, *lines = out.splitlines()
    assert head.split()[:6] == ["model", "kind", "subject", "status", "severity", "opened"]
    assert len(lines) == 3 and lines[0].startswith("fraud  quality_below_slo")
    assert cli.main(["incidents", "fraud", "--as-of", "soon"]) == 2
    assert "--as-of 'soon'" in capsys.readouterr().err
    assert cli.main(["incidents", "nosuchmodel"]) == 2


# --------------------------------------------------------------------------------------------
# Messages: worst values, the day named, text that matches the numbers (pure)
# --------------------------------------------------------------------------------------------


def test_every_draft_carries_worst_and_onset(spec):
    findings = DayFindings(
        expectations=[ExpectationFinding(stage="ingestion", expectation="expect_x", column="amount",
                                         unexpected_share=0.3),
                      ExpectationFinding(stage="ingestion", expectation="expect_y", column="country",
                                         unexpected_share=0.1)],
        drift=[drift("amount", 0.05, {"country": "DE"}), drift("amount", 0.3, {"country": "FR"}),
               DriftFinding(feature="country", drifted=True, score=0.001, threshold=0.01,
                            method="chisquare")],
        predictions=[PredictionFinding(monitor="positive_rate", alert=True, value=0.10,
                                       lower=0.02, upper=0.06, baseline=0.04),
                     PredictionFinding(monitor="stagnation", alert=True, value=0.5, lower=0.0,
                                       upper=1.0, message="outputs frozen for two days")],
        budgets=[burn("ticket", remaining=0.25)],
        quality=[QualityFinding(name="precision", value=0.42, threshold=0.5, below=True,
                                prediction_ds=day(1))],
        freshness=FreshnessFinding(status="late", lateness_hours=5.0),
    )
    out = {(a.kind, a.subject): a for a in build_alerts(spec, day(9), findings)}
    worst = {k: (a.facts["worst"], a.facts["onset"]) for k, a in out.items()}
    assert worst[("expectation_failed", "ingestion")] == (2.0, day(9))
    assert worst[("drift", "amount")] == (pytest.approx(3.0), day(9))  # max over its segments
    assert worst[("drift", "country")] == (pytest.approx(10.0), day(9))  # a p-value: 0.01/0.001
    assert worst[("prediction_anomaly", "positive_rate")] == (pytest.approx(1.0), day(9))
    assert worst[("prediction_anomaly", "stagnation")] == (0.0, day(9))
    assert worst[("budget_burn", "data-quality")] == (pytest.approx(0.75), day(9))
    assert worst[("quality_below_slo", "precision")] == (pytest.approx(0.08), day(1))
    assert worst[("freshness", "partition")] == (5.0, day(9))
    # a monitor flagged inside its band is not said to be outside it
    stag = out[("prediction_anomaly", "stagnation")].text
    assert "outside" not in stag.splitlines()[1] and "outputs frozen for two days" in stag
    assert "positive_rate 0.1 outside the expected range [0.02, 0.06]" in out[(
        "prediction_anomaly", "positive_rate")].text
    assert "concentrated in 2 segments: country=FR, country=DE" in out[("drift", "amount")].text
    q = out[("quality_below_slo", "precision")]
    assert "prediction-day 2026-03-01 (as known on 2026-03-09)" in q.text
    assert q.blocks[0]["text"]["text"].endswith("Model quality below objective: precision "
                                                "(prediction-day 2026-03-01)")


def test_concept_drift_text_matches_its_numbers_and_names_the_day(spec):
    worse = ConceptDriftFinding(suspected=True, prediction_days=(day(2), day(3)), metrics=(
        {"metric": "precision", "realized": 0.62, "estimated": 0.80, "difference": -0.18,
         "low": -0.03, "high": 0.03, "outside": True, "direction": "worse"},))
    [a] = build_alerts(spec, day(9), DayFindings(concept_drift=worse))
    assert a.facts["onset"] == day(2) and a.facts["prediction_days"] == [day(2), day(3)]
    assert ("Suspected concept drift of fraud on prediction-day 2026-03-02 (and 1 more "
            "prediction-day), as known on 2026-03-09: realized quality is worse than the model's "
            "own estimate beyond its normal error: realized precision 0.620 is 0.180 lower than "
            "the estimate 0.800") in a.text
    assert a.facts["worst"] == pytest.approx(0.18)
    # numbers that rise are never called a fall or worse
    better = ConceptDriftFinding(suspected=True, prediction_days=(day(4),), metrics=(
        {"metric": "precision", "realized": 0.9, "estimated": 0.8, "difference": 0.1,
         "low": -0.03, "high": 0.03, "outside": True, "direction": "above"},))
    [b] = build_alerts(spec, day(9), DayFindings(concept_drift=better))
    assert "0.100 higher than the estimate" in b.text and "departs from" in b.text
    assert "worse" not in b.text.splitlines()[1] and "falling" not in b.text


def test_labels_alert_each_prediction_day_once_and_quality_by_its_verdict(store, spec):
    """From the stored quality payloads and SLIs of successive labels runs."""

    def payload(suspected: bool, precision: float = 0.7) -> dict:
        detail = {"status": "suspected" if suspected else "ok", "suspected": suspected,
                  "reason": "realized precision below its estimate" if suspected else "fine",
                  "metrics": [{"metric": "precision", "realized": precision, "estimated": 0.8,
                               "difference": precision - 0.8, "low": -0.03, "high": 0.03,
                               "outside": suspected,
                               "direction": "worse" if suspected else None}]}
        return {"metrics": {"precision": precision}, "provisional": False, "coverage": 0.95,
                "concept_drift": suspected, "concept_drift_detail": detail}

    def labels_run(k: int, days: dict[int, tuple[bool, float, dict]]) -> None:
        with store.transaction() as conn:
            for p, (suspected, precision, details) in days.items():
                store.write_metrics("fraud", day(p), "quality", day(k), [MetricRecord(
                    subject="overall", value=0.95, payload=payload(suspected, precision))],
                    conn=conn)
            store.write_slis("fraud", day(k), [
                SliRecord(ds=day(p), sli="precision", value=precision, details=details)
                for p, (_s, precision, details) in days.items()], conn=conn)
        raise_alerts(store, spec, day(k), day_alerts.labels_findings(spec, day(k), store))

    labels_run(4, {1: (True, 0.62, {"verdict": "inconclusive"})})  # concept: day 1; quality: no
    labels_run(5, {1: (True, 0.62, {"verdict": "inconclusive"}),  # restated, alerted already
                   2: (False, 0.45, {})})  # no verdict key: below 0.5 -> alerts, names day 2
    labels_run(6, {3: (True, 0.40, {"verdict": "good"})})  # verdict good wins over the value
    concept = rows(store, "concept_drift")
    assert [(r.ds, r.facts["prediction_days"]) for r in concept] == [
        (day(4), [day(1)]), (day(6), [day(3)])]  # each prediction-day once
    assert "on prediction-day 2026-03-01" in concept[0].text
    assert concept[1].facts["message"] == "update"  # 0.40 is 1.5x further below than 0.62
    quality = rows(store, "quality_below_slo")
    assert [(r.ds, r.facts["prediction_ds"], r.facts["message"]) for r in quality] == [
        (day(5), day(2), "onset")]
    assert "prediction-day 2026-03-02 (as known on 2026-03-05)" in quality[0].text
    findings = day_alerts.labels_findings(spec, day(6), store)
    [q] = findings.quality
    assert (q.verdict, q.below, q.prediction_ds) == ("good", False, day(3))


def test_derive_reads_rows_from_before_incidents_existed():
    """Stores in the field hold rows without facts["message"]: each is an onset or recovery."""
    from watchkeeper.store import OutboxIndexRow

    def row(ds, kind="drift", subject="features", status="sent", closes=False, facts=None):
        thread = f"fraud:{'drift' if kind == 'recovery' else kind}:features"
        key = f"fraud:{kind}:{subject}:{ds}"
        return OutboxIndexRow(key, ds, kind, subject, thread, "ticket", status, closes, "web",
                              "C1", "1.0", None, facts or {})

    old = [row(day(1)), row(day(2)), row(day(3), "recovery", "drift:features", closes=True)]
    [inc] = incidents.derive(old)
    assert (inc.opened, inc.last_seen, inc.closed, inc.messages_sent, inc.time_to_detect_days) == (
        day(1), day(2), day(3), 3, None)
    assert incidents.derive(old, as_of=day(2))[0].status == "open"
