"""watchkeeper.alerts: messages, outbox, delivery through the real slack_sdk clients against a fake
Slack (tests/slack_fake.py) on 127.0.0.1, threading, dedupe, retries, silences, backfill digest,
the console/jsonl fallback and secrets. Store tests run on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import logging
from datetime import UTC, date, datetime, timedelta

import pytest
import yaml
from slack_sdk.models.blocks import Block

from slack_fake import FakeSlack
from watchkeeper import alerts, cli
from watchkeeper.alerts import (
    AlertConfigError,
    BudgetFinding,
    ConceptDriftFinding,
    DayFindings,
    DriftFinding,
    ExpectationFinding,
    FreshnessFinding,
    GateTransition,
    OverrideFinding,
    PredictionFinding,
    QualityFinding,
    SilenceError,
    add_silence,
    build_alerts,
    channel_for,
    credentials_from_connection,
    deliver,
    delivery_problems,
    enqueue,
    is_backfill,
    open_incidents,
    outbox_path,
    raise_alerts,
    requeue_failed,
    resolve_credentials,
)
from watchkeeper.spec import load_spec, parse_spec
from watchkeeper.store import PartitionRecord

D1, D2, D3, D4, D5 = (f"2026-03-0{i}" for i in range(1, 6))
REPORTS = "https://wk.example/reports"

SPEC = {
    "name": "fraud",
    "task": "binary_classification",
    "source": {"kind": "file", "path": "data/{ds}.parquet"},
    "columns": {"id": "txn_id", "timestamp": "event_ts"},
    "features": [
        {"name": "amount", "kind": "numerical"},
        {"name": "country", "kind": "categorical"},
        {"name": "device_age_days", "kind": "numerical"},
        {"name": "customer_email", "kind": "categorical", "pii": True},
    ],
    "segments": ["country"],
    "prediction": {"score": "score"},
    "reference": {"training": "data/training.parquet"},
    "slos": [{"name": "data-quality", "sli": "data_quality", "kind": "ratio", "objective": 0.95}],
    "alerts": {
        "routes": [
            {"severity": "page", "channel": "#fraud-oncall"},
            {"severity": "ticket", "channel": "#fraud-ml"},
            {"severity": "info", "channel": "#fraud-info"},
        ],
        "horizon_days": 2,
        "runbook_url": "https://runbooks.example/fraud",
    },
}


def make_spec(**alerts_overrides):
    raw = json.loads(json.dumps(SPEC))
    raw["alerts"].update(alerts_overrides)
    return parse_spec(raw)


@pytest.fixture
def spec(tmp_path, monkeypatch):
    """The fraud spec, also on disk as the models folder (the CLI finds it there)."""
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


def web_env(fake: FakeSlack, token: str | None = None) -> dict[str, str]:
    return {alerts.ENV_TOKEN: token or fake.token, alerts.ENV_BASE_URL: fake.base_url}


def drifted(*features: str) -> list[DriftFinding]:
    return [DriftFinding(feature=f, drifted=True, score=0.4, threshold=0.1, method="wasserstein")
            for f in features]


def budget(alert: str | None, remaining: float = 0.5) -> list[BudgetFinding]:
    return [BudgetFinding(slo="data-quality", alert=alert, budget_remaining=remaining,
                          burn_1d=4.0 if alert else 0.1, burn_3d=3.0 if alert else 0.1,
                          burn_7d=1.5 if alert else 0.1, objective=0.95, window_days=28)]


def send(store, spec, env, **kw):
    kw.setdefault("sleep", lambda s: None)
    kw.setdefault("echo", None)
    return deliver(store, spec, env=env, **kw)


def rows_by_key(store):
    return {r.dedupe_key: r for r in store.outbox("fraud")}


# --------------------------------------------------------------------------------------------
# The message (pure)
# --------------------------------------------------------------------------------------------


def test_message_says_what_happened_with_numbers_links_and_next_steps_without_pii(spec):
    findings = DayFindings(
        expectations=[
            ExpectationFinding(stage="ingestion", expectation="expect_column_values_to_be_in_set",
                               column="customer_email", observed=["alice@example.com"],
                               unexpected_share=0.25, unexpected_count=50),
            ExpectationFinding(stage="ingestion", expectation="expect_column_values_to_not_be_null",
                               column="device_age_days", unexpected_share=0.30,
                               unexpected_count=600, expected="at most 1% null"),
            ExpectationFinding(stage="ingestion", expectation="expect_table_row_count_to_be_between",
                               success=True, observed=2000),
        ],
        drift=[
            DriftFinding(feature="amount", drifted=True, score=0.52, threshold=0.1,
                         method="wasserstein", segment={"country": "DE"}),
            DriftFinding(feature="customer_email", drifted=True, score=0.3, threshold=0.1,
                         segment={"customer_email": "bob@example.com"}),
            DriftFinding(feature="device_age_days", drifted=False, score=0.01, threshold=0.1),
        ],
    )
    built = build_alerts(spec, D1, findings)
    # One condition per drifted feature: amount (a segment row) and customer_email.
    assert [(a.kind, a.subject) for a in built] == [
        ("expectation_failed", "ingestion"), ("drift", "amount"), ("drift", "customer_email")]
    out = {a.kind: a for a in built}
    assert all(a.facts["message"] == "onset" for a in built)

    exp = out["expectation_failed"]
    assert exp.dedupe_key == "fraud:expectation_failed:ingestion:2026-03-01"
    assert exp.thread_key == "fraud:expectation_failed:ingestion"
    assert (exp.severity, exp.channel) == ("ticket", "#fraud-ml")
    header, sentence, fields, context, links, steps = exp.blocks
    assert header["type"] == "header"
    assert "TICKET" in header["text"]["text"] and "fraud" in header["text"]["text"]
    assert sentence["text"]["text"].startswith(
        "2 of 3 data checks failed at the ingestion stage of fraud for 2026-03-01")
    shown = [f["text"] for f in fields["fields"]]
    assert any("device_age_days" in t and "30.0% unexpected" in t and "600 rows" in t
               and "expected at most 1% null" in t for t in shown), shown
    assert "new since this day" in context["elements"][0]["text"]
    assert f"<{REPORTS}/fraud/2026-03-01/index.html|Day report>" in links["text"]["text"]
    assert f"<{REPORTS}/fraud/index.html|Model page>" in links["text"]["text"]
    assert f"{REPORTS}/fraud/2026-03-01/validation-ingestion.html" in links["text"]["text"]
    assert "<https://runbooks.example/fraud|Runbook>" in links["text"]["text"]
    assert steps["text"]["text"].startswith("*Next steps*\n• Open the validation page")
    # The plain-text fallback carries the same: sentence, numbers, links, steps.
    assert "2 of 3 data checks failed" in exp.text and "600 rows" in exp.text
    assert f"Day report: {REPORTS}/fraud/2026-03-01/index.html" in exp.text
    assert "Next steps:" in exp.text

    drift, email = built[1], built[2]
    drift_fields = [f["text"] for f in drift.blocks[2]["fields"]]
    assert drift_fields[0] == "*amount [country=DE]*\nscore 0.52 vs threshold 0.1 (wasserstein)"
    assert drift.facts["features"] == ["amount"]
    assert drift.dedupe_key == "fraud:drift:amount:2026-03-01"
    assert drift.facts["worst"] == pytest.approx(5.2) and drift.facts["onset"] == D1
    assert "concentrated in 1 segment: country=DE" in drift.text
    assert any("customer_email=&lt;pii hidden&gt;" in f["text"] for f in email.blocks[2]["fields"])
    assert "<pii hidden>" in email.facts["worst_text"]

    everything = json.dumps([a.to_dict() for a in built])
    assert "alice@example.com" not in everything and "bob@example.com" not in everything
    assert "values hidden (pii)" in exp.text


def test_every_kind_renders_valid_block_kit_with_its_severity(spec):
    long_reason = "x" * 5000
    findings = DayFindings(
        expectations=[ExpectationFinding(stage="features", expectation=f"expect_{i}",
                                         column=f"c{i}", unexpected_share=0.1) for i in range(30)],
        drift=drifted(*(f"f{i}" for i in range(25))),
        skew=drifted("amount"),
        predictions=[PredictionFinding(monitor="positive_rate", alert=True, value=0.12,
                                       baseline=0.04, lower=0.02, upper=0.06)],
        concept_drift=ConceptDriftFinding(suspected=True, message="estimate calm, AUC falling",
                                          evidence={"auc_drop": 0.07, "estimate_gap": 0.06}),
        quality=[QualityFinding(name="auc", value=0.81, threshold=0.85, below=True,
                                coverage=0.93)],
        budgets=budget("page", remaining=-0.2),
        gate=[GateTransition(scope="model", previous="open", now="closed",
                             reasons=(long_reason,))],
        overrides=[OverrideFinding(scope="model", reason="hotfix", created_by="alice",
                                   created_at="2026-03-01T10:00:00+00:00",
                                   expires_at="2026-03-01T14:00:00+00:00")],
        freshness=FreshnessFinding(status="late", lateness_hours=3.5, message="landed 09:30"),
    )
    out = build_alerts(spec, D1, findings)
    kinds = {a.kind: a for a in out}
    assert set(kinds) == {"expectation_failed", "drift", "skew", "prediction_anomaly",
                          "concept_drift", "quality_below_slo", "budget_burn", "gate_closed",
                          "override", "freshness"}
    assert (kinds["budget_burn"].severity, kinds["budget_burn"].channel) == ("page", "#fraud-oncall")
    assert (kinds["override"].severity, kinds["override"].channel) == ("info", "#fraud-info")
    # Only a page links the day's triage checklist and starts its next steps with it.
    assert f"Triage checklist: {REPORTS}/fraud/2026-03-01/triage.html" in kinds["budget_burn"].text
    assert "Next steps:\n- Work through the triage checklist" in kinds["budget_burn"].text
    assert "triage.html" not in kinds["drift"].text
    assert "positive_rate 0.12 outside the expected range [0.02, 0.06]" in kinds["prediction_anomaly"].text
    assert "auc is 0.81, the objective is >= 0.85" in kinds["quality_below_slo"].text
    assert "landed late, 3.50 h after its deadline" in kinds["freshness"].text
    for a in out:
        assert len(a.blocks) <= 50
        for block in a.blocks:
            Block.parse(block).validate_json()  # slack_sdk's own Block Kit limits


def test_routes_fall_back_to_a_configured_channel_and_backfill_days_are_flagged():
    only_page = make_spec(routes=[{"severity": "page", "channel": "#oncall"}])
    assert channel_for(only_page, "info") == "#oncall"
    only_ticket = make_spec(routes=[{"severity": "ticket", "channel": "#ml"}])
    assert channel_for(only_ticket, "page") == "#ml"  # a page is never dropped
    assert channel_for(make_spec(routes=[]), "page") is None
    assert is_backfill(D1, D4, 2) and not is_backfill(D2, D4, 2) and not is_backfill(D1, None, 2)
    [a] = build_alerts(only_page, D1, DayFindings(drift=drifted("amount")), newest_ds=D5,
                       reports_url=REPORTS)
    assert a.backfill and a.horizon_days == 2


def test_recovery_only_for_kinds_evaluated_today_and_clean(spec):
    open_ = {"fraud:drift:amount": D1, "fraud:budget_burn:data-quality": D2,
             "fraud:expectation_failed:features": D1, "fraud:gate_closed:model": D2}
    # The labels DAG evaluates budgets only: drift and expectations stay open.
    [rec] = build_alerts(spec, D4, DayFindings(budgets=budget(None)), open_)
    assert (rec.kind, rec.subject, rec.thread_key) == (
        "recovery", "budget_burn:data-quality", "fraud:budget_burn:data-quality")
    assert rec.closes_thread and rec.severity == "info"
    assert "open since 2026-03-02, 3 days" in rec.text
    # Drift persists: the day's row of the ongoing incident (nothing new to say: folded), no
    # recovery.
    [upd] = build_alerts(spec, D4, DayFindings(drift=drifted("amount")), open_)
    assert upd.kind == "drift" and not upd.closes_thread
    assert upd.facts["message"] == "folded" and upd.blocks == []
    assert "recorded in the incident open since 2026-03-01" in upd.text
    # Only the stages that ran can recover.
    assert build_alerts(spec, D4, DayFindings(expectations=[], stages_checked=["ingestion"]),
                        open_) == []
    [rec] = build_alerts(spec, D4, DayFindings(expectations=[]), open_)
    assert rec.thread_key == "fraud:expectation_failed:features"
    # The gate reopens through its transition, which closes the gate_closed thread.
    [reopened] = build_alerts(spec, D5, DayFindings(
        gate=[GateTransition(scope="model", previous="closed", now="open")]), open_)
    assert (reopened.kind, reopened.thread_key, reopened.closes_thread) == (
        "gate_reopened", "fraud:gate_closed:model", True)


def test_an_override_is_keyed_by_its_own_day_so_it_is_alerted_once(spec):
    o = OverrideFinding(scope="model", reason="hotfix", created_by="alice",
                        created_at="2026-03-03T10:00:00+00:00", expires_at="2026-03-03T14:00:00+00:00")
    keys = {build_alerts(spec, ds, DayFindings(overrides=[o]))[0].dedupe_key for ds in (D3, D4, D5)}
    assert keys == {"fraud:override:model@2026-03-03T10:00:00+00:00:2026-03-03"}
    with pytest.raises(alerts.AlertInputError, match="created_at"):
        build_alerts(spec, D3, DayFindings(overrides=[
            OverrideFinding(scope="model", reason="r", created_by="a", created_at="yesterday",
                            expires_at="")]))


# --------------------------------------------------------------------------------------------
# Outbox: with the finding, once
# --------------------------------------------------------------------------------------------


def test_an_alert_commits_and_rolls_back_with_its_finding(store, spec):
    part = PartitionRecord(model="fraud", ds=D1, source="s", status="ok", rows=10)
    built = build_alerts(spec, D1, DayFindings(drift=drifted("amount")))
    with pytest.raises(RuntimeError, match="killed"):
        with store.transaction() as conn:
            store.write_partition(part, conn=conn)
            enqueue(store, built, conn)
            raise RuntimeError("task killed mid-write")
    assert store.outbox("fraud") == [] and store.partitions("fraud") == []
    with store.transaction() as conn:
        store.write_partition(part, conn=conn)
        report = enqueue(store, built, conn)
    assert report.inserted == ["fraud:drift:amount:2026-03-01"]
    assert [r.status for r in store.outbox("fraud")] == ["pending"]


def test_retries_and_reruns_send_nothing_new(store, spec, slack):
    first = raise_alerts(store, spec, D1, DayFindings(drift=drifted("amount")))
    retry = raise_alerts(store, spec, D1, DayFindings(drift=drifted("amount")))
    assert first.inserted == ["fraud:drift:amount:2026-03-01"] and first.duplicates == []
    assert retry.inserted == [] and retry.duplicates == first.inserted
    assert len(store.outbox("fraud")) == 1
    env = web_env(slack)
    assert send(store, spec, env).sent == first.inserted
    assert send(store, spec, env).sent == []  # the delivery task retried
    raise_alerts(store, spec, D1, DayFindings(drift=drifted("amount")))  # the day cleared, re-run
    assert send(store, spec, env).sent == []
    assert len(slack.posts) == 1 and len(slack.requests) == 1
    [row] = store.outbox("fraud")
    assert (row.status, row.attempts, row.slack_ts) == ("sent", 1, slack.posts[0]["ts"])


# --------------------------------------------------------------------------------------------
# Delivery through the real slack_sdk against the fake
# --------------------------------------------------------------------------------------------


def test_updates_thread_under_the_first_message_and_recovery_closes_it(store, spec, slack):
    env = web_env(slack)

    def day(ds, findings):
        raise_alerts(store, spec, ds, findings)
        return send(store, spec, env)

    day(D1, DayFindings(drift=drifted("amount")))
    day(D1, DayFindings(budgets=budget("ticket")))  # the labels run: another alert run
    root_drift, root_budget = slack.posts
    assert "thread_ts" not in root_drift and "thread_ts" not in root_budget
    assert root_budget["channel"] == "#fraud-ml"

    # Drift holds unchanged (folded: nothing sent); the budget escalates to page.
    day(D2, DayFindings(drift=drifted("amount"), budgets=budget("page", remaining=0.1)))
    [esc] = slack.posts[2:]
    # The escalation to page stays in the incident's thread (in its channel) and is broadcast.
    assert esc["thread_ts"] == root_budget["ts"]
    assert esc["channel"] == root_budget["channel_id"] and esc["reply_broadcast"]
    assert rows_by_key(store)["fraud:drift:amount:2026-03-02"].status == "folded"

    # Clean on D3 (one day: hysteresis keeps both open), still clean on D4: recoveries.
    day(D3, DayFindings(drift=[], budgets=budget(None)))
    assert len(slack.posts) == 3
    day(D4, DayFindings(drift=[], budgets=budget(None)))
    recoveries = slack.posts[3:]
    assert {p["thread_ts"] for p in recoveries} == {root_drift["ts"], root_budget["ts"]}
    assert all(p["text"].startswith("[INFO] fraud: Resolved") for p in recoveries)
    assert open_incidents(store, "fraud") == {}

    day(D5, DayFindings(drift=drifted("amount")))
    new_root = slack.posts[-1]
    assert "thread_ts" not in new_root  # a new incident starts a new thread
    assert open_incidents(store, "fraud") == {"fraud:drift:amount": D5}
    assert len(slack.posts) == 6 and all(r["outcome"] == "ok" for r in slack.requests)


def test_429_then_500_then_success_arrives_exactly_once(store, spec, slack):
    raise_alerts(store, spec, D1, DayFindings(budgets=budget("page")))
    slack.script_api(FakeSlack.http(429, retry_after=7), FakeSlack.http(500))
    sleeps: list[float] = []
    report = send(store, spec, web_env(slack), sleep=sleeps.append)
    assert [r["outcome"] for r in slack.requests] == ["http 429", "http 500", "ok"]
    assert sleeps == [7.0, 2.0]  # Retry-After honoured, then exponential backoff
    assert len(slack.posts) == 1 and slack.posts[0]["channel"] == "#fraud-oncall"
    assert report.sent == ["fraud:budget_burn:data-quality:2026-03-01"] and report.posts == 3
    [row] = store.outbox("fraud")
    assert (row.status, row.attempts) == ("sent", 3)
    assert "429" in row.last_error and "500" in row.last_error
    assert send(store, spec, web_env(slack)).sent == []
    assert len(slack.requests) == 3 and len(slack.posts) == 1


def test_timeouts_retry_then_wait_for_the_next_delivery(store, spec, slack):
    raise_alerts(store, spec, D1, DayFindings(drift=drifted("amount")))
    slack.script_api(FakeSlack.slow(1.0), FakeSlack.slow(1.0))
    sleeps: list[float] = []
    report = send(store, spec, web_env(slack), sleep=sleeps.append, timeout=0.25,
                  max_attempts=2)
    assert report.sent == [] and "timed out" in report.retry_later[0]["reason"]
    assert sleeps == [1.0]
    [row] = store.outbox("fraud")
    assert (row.status, row.attempts) == ("pending", 2)
    [problem] = delivery_problems(store, "fraud")
    assert problem["status"] == "pending" and not problem["permanent"]
    assert "timed out" in problem["reason"]
    assert slack.posts == []
    report = send(store, spec, web_env(slack), timeout=2)
    assert report.sent == [row.dedupe_key] and len(slack.posts) == 1
    assert rows_by_key(store)[row.dedupe_key].attempts == 3
    assert delivery_problems(store, "fraud") == []


def test_invalid_auth_is_recorded_kept_for_resend_and_the_token_never_shows(store, spec, slack,
                                                                           caplog):
    caplog.set_level(logging.DEBUG)
    bad = "xoxb-the-wrong-secret-4242"
    raise_alerts(store, spec, D1, DayFindings(drift=drifted("amount"), budgets=budget("page")))
    report = send(store, spec, web_env(slack, token=bad))
    [failed] = report.failed
    assert failed["reason"].startswith("invalid_auth: the Slack token is invalid")
    [skipped] = report.retry_later  # not hammered with a token Slack refuses
    assert "invalid_auth" in skipped["reason"] and len(slack.requests) == 1
    rows = rows_by_key(store)
    assert rows[failed["dedupe_key"]].status == "failed"
    assert rows[skipped["dedupe_key"]].status == "pending"
    [problem] = delivery_problems(store, "fraud")
    assert problem["permanent"] and problem["reason"].startswith("invalid_auth")

    # Fixed token: the untried message goes; the failed one waits for an explicit resend.
    assert send(store, spec, web_env(slack)).sent == [skipped["dedupe_key"]]
    assert requeue_failed(store, "fraud") == [failed["dedupe_key"]]
    assert send(store, spec, web_env(slack)).sent == [failed["dedupe_key"]]
    assert len(slack.posts) == 2 and delivery_problems(store, "fraud") == []

    seen = [caplog.text, json.dumps(report.to_dict()), json.dumps(problem),
            repr(store.outbox("fraud")), repr(alerts.credentials_from_env(web_env(slack, bad)))]
    assert all(bad not in s for s in seen)
    assert "Authorization" not in caplog.text


def test_channel_not_found_fails_that_message_only(store, spec, slack):
    slack.missing_channels = {"#fraud-oncall"}
    raise_alerts(store, spec, D1, DayFindings(drift=drifted("amount"), budgets=budget("page")))
    report = send(store, spec, web_env(slack))
    assert report.sent == ["fraud:drift:amount:2026-03-01"]
    assert report.failed == [{"dedupe_key": "fraud:budget_burn:data-quality:2026-03-01",
                              "reason": "channel_not_found: the channel does not exist or the app "
                                        "cannot see it (invite the app)"}]
    assert rows_by_key(store)["fraud:budget_burn:data-quality:2026-03-01"].attempts == 1


def test_incoming_webhook_with_429_and_the_url_never_shows(store, spec, slack, caplog):
    caplog.set_level(logging.DEBUG)
    env = {alerts.ENV_WEBHOOK: slack.webhook_url}
    raise_alerts(store, spec, D1, DayFindings(drift=drifted("amount")))
    slack.script_webhook(FakeSlack.http(429, retry_after=2))
    sleeps: list[float] = []
    report = send(store, spec, env, sleep=sleeps.append)
    assert report.via == "webhook" and sleeps == [2.0] and len(slack.hooks) == 1
    assert slack.hooks[0]["blocks"][0]["type"] == "header"
    raise_alerts(store, spec, D3, DayFindings(drift=[]))  # recovery: no threads on webhooks
    slack.script_webhook(FakeSlack.slack_error("invalid_token"))
    report = send(store, spec, env)
    assert report.failed[0]["reason"].startswith("invalid_token")
    secret = "s3cr3tWebhookPart42"
    assert secret in slack.webhook_url
    for text in (caplog.text, json.dumps(report.to_dict()), repr(store.outbox("fraud"))):
        assert secret not in text


def test_a_claimed_message_is_not_sent_twice_and_a_stale_claim_is_released(store, spec, slack):
    t0 = datetime(2026, 3, 1, 12, tzinfo=UTC)
    [key] = raise_alerts(store, spec, D1, DayFindings(drift=drifted("amount"))).inserted
    # Another deliverer (a concurrent task) holds the message.
    assert store.transition_outbox(key, "pending", "sending", claimed_at=t0) == [key]
    assert send(store, spec, web_env(slack), now=lambda: t0 + timedelta(minutes=1)).sent == []
    assert slack.requests == []
    # It died mid-send: after the claim timeout the message is sent again, with a note.
    report = send(store, spec, web_env(slack), now=lambda: t0 + timedelta(minutes=20))
    assert report.released == [key] and report.sent == [key] and len(slack.posts) == 1
    assert "interrupted" in rows_by_key(store)[key].note


# --------------------------------------------------------------------------------------------
# Silences, backfill digest, the console/jsonl fallback
# --------------------------------------------------------------------------------------------


def test_silenced_alerts_are_recorded_shown_not_sent_and_silences_expire(store, spec, slack):
    now = datetime(2026, 3, 2, 9, tzinfo=UTC)
    s = add_silence(store, spec, kind="drift", until=D3, reason="vendor migration", by="alice",
                    now=now)
    assert s.is_active(now) and not s.is_active(datetime(2026, 3, 4, 0, 1, tzinfo=UTC))
    raise_alerts(store, spec, D2, DayFindings(drift=drifted("amount"), budgets=budget("ticket")),
                 now=now)
    rows = rows_by_key(store)
    drift_row = rows["fraud:drift:amount:2026-03-02"]
    assert drift_row.status == "silenced"
    assert drift_row.note == "silenced drift until 2026-03-03 by alice: vendor migration"
    report = send(store, spec, web_env(slack), now=lambda: now)
    assert report.sent == ["fraud:budget_burn:data-quality:2026-03-02"] and len(slack.posts) == 1

    # A silence added after the alert was queued still holds it back at delivery.
    raise_alerts(store, spec, D3, DayFindings(expectations=[ExpectationFinding(
        stage="ingestion", expectation="expect_x", column="amount")]), now=now)
    add_silence(store, spec, until=D3, reason="known upstream bug", by="bob", now=now)
    report = send(store, spec, web_env(slack), now=lambda: now + timedelta(minutes=5))
    assert report.silenced == ["fraud:expectation_failed:ingestion:2026-03-03"]
    assert len(slack.posts) == 1

    # Expired: the next drift is sent, as a new message (nothing of the incident was announced,
    # so the day's row is the incident's onset, not folded).
    later = datetime(2026, 3, 4, 6, tzinfo=UTC)
    raise_alerts(store, spec, D4, DayFindings(drift=drifted("amount")), now=later)
    assert rows_by_key(store)["fraud:drift:amount:2026-03-04"].facts["message"] == "onset"
    assert send(store, spec, web_env(slack), now=lambda: later).sent == [
        "fraud:drift:amount:2026-03-04"]
    assert "thread_ts" not in slack.posts[-1]
    assert [x.reason for x in alerts.silences(store, "fraud")] == [
        "vendor migration", "known upstream bug"]
    assert alerts.silences(store, "fraud", active_at=later) == []

    with pytest.raises(SilenceError, match="--reason is required"):
        add_silence(store, spec, until=D5, reason=" ", now=now)
    with pytest.raises(SilenceError, match="'drfit' is not an alert kind"):
        add_silence(store, spec, kind="drfit", until=D5, reason="typo", now=now)
    with pytest.raises(SilenceError, match="before today"):
        add_silence(store, spec, until=D1, reason="late", now=now)


def test_backfilled_days_do_not_page_and_roll_up_into_one_digest(store, spec, slack):
    store.write_partition(PartitionRecord(model="fraud", ds="2026-03-10", source="s",
                                          status="ok", rows=10))
    for ds in (D1, D2, D3):
        raise_alerts(store, spec, ds, DayFindings(drift=drifted("amount"), budgets=budget("page")))
    raise_alerts(store, spec, "2026-03-08", DayFindings(budgets=budget("page")))  # in the horizon
    statuses = {r.dedupe_key: r.status for r in store.outbox("fraud")}
    assert sorted(statuses.values()) == ["digest"] * 6 + ["pending"]
    assert statuses["fraud:budget_burn:data-quality:2026-03-08"] == "pending"

    report = send(store, spec, web_env(slack))
    assert len(report.digested) == 6 and len(slack.posts) == 2
    page, digest = sorted(slack.posts, key=lambda p: "digest" in p["text"].lower())
    assert page["channel"] == "#fraud-oncall" and "thread_ts" not in page
    assert digest["channel"] == "#fraud-info"
    assert "6 alerts" in digest["text"] and "2026-03-01 … 2026-03-03" in digest["text"]
    assert "2026-03-02 · Error budget burning · data-quality (page)" in digest["text"]
    rows = store.outbox("fraud")
    assert {r.digest_key for r in rows if r.status == "digested"} == {report.digest}
    assert send(store, spec, web_env(slack)).sent == [] and len(slack.posts) == 2

    raise_alerts(store, spec, D4, DayFindings(drift=drifted("amount")))  # a later backfill
    report = send(store, spec, web_env(slack))
    assert report.digested == ["fraud:drift:amount:2026-03-04"] and len(slack.posts) == 3


def test_without_slack_messages_go_to_console_and_the_outbox_file_once(store, spec, capsys):
    raise_alerts(store, spec, D1, DayFindings(drift=drifted("amount"), budgets=budget("page")))
    report = deliver(store, spec, env={})
    assert report.via == "file" and len(report.sent) == 2
    out = capsys.readouterr().out
    assert "[alert page -> #fraud-oncall] [PAGE] fraud: Error budget burning" in out

    def lines():
        return [json.loads(x) for x in outbox_path().read_text().splitlines()]

    assert len(lines()) == 2
    for line in lines():
        assert {"model", "kind", "severity", "ds", "dedupe_key", "text", "blocks"} <= set(line)
    assert deliver(store, spec, env={}, echo=None).sent == [] and len(lines()) == 2
    # A commit lost after the line was written: the row is pending again, the line is not
    # written twice.
    key = report.sent[0]
    assert store.transition_outbox(key, "sent", "pending") == [key]
    assert deliver(store, spec, env={}, echo=None).sent == [key] and len(lines()) == 2
    raise_alerts(store, spec, D2, DayFindings(drift=drifted("country")))  # a new incident
    deliver(store, spec, env={}, echo=None)
    keys = [x["dedupe_key"] for x in lines()]
    assert len(keys) == 3 == len(set(keys))


# --------------------------------------------------------------------------------------------
# Credentials, and the CLI
# --------------------------------------------------------------------------------------------


def test_credentials_follow_the_slack_provider_connection_types():
    secret = "xoxb-abc-secret-77"
    web = credentials_from_connection("slack", secret, conn_id="slack_alerts",
                                      extra={"base_url": "http://127.0.0.1:9/api/", "timeout": "5"})
    assert (web.kind, web.base_url, web.timeout, web.token) == (
        "web", "http://127.0.0.1:9/api/", 5.0, secret)
    assert secret not in repr(web)
    hook = credentials_from_connection("slackwebhook", "T1/B2/hookSecretPart9", conn_id="h",
                                       host="hooks.example.com")
    assert hook.webhook_url == "https://hooks.example.com/T1/B2/hookSecretPart9"
    full = credentials_from_connection("slackwebhook", "https://hooks.slack.com/services/T/B/XyZ123456")
    assert full.webhook_url == "https://hooks.slack.com/services/T/B/XyZ123456"
    assert "hookSecretPart9" not in repr(hook)
    with pytest.raises(AlertConfigError, match="'slack_alerts' .*has no password"):
        credentials_from_connection("slack", "", conn_id="slack_alerts")
    with pytest.raises(AlertConfigError, match="type 'http'"):
        credentials_from_connection("http", secret)

    spec = make_spec(slack_conn_id="slack_alerts")
    env = {alerts.ENV_TOKEN: "xoxb-from-env-1"}
    assert resolve_credentials(spec, lambda conn_id: web, env=env) is web
    assert resolve_credentials(spec, None, env=env).source == "environment WATCHKEEPER_SLACK_TOKEN"
    assert resolve_credentials(spec, lambda conn_id: None, env={}) is None

    def broken(conn_id):
        raise RuntimeError(f"lookup of {conn_id} failed near token {secret}")

    with pytest.raises(AlertConfigError) as info:
        resolve_credentials(spec, broken, env={})
    assert "slack_alerts" in str(info.value) and secret not in str(info.value)


def test_cli_silence_list_deliver_and_resend(spec, capsys):
    from watchkeeper.store import open_store

    store = open_store()  # the CLI's own store: SQLite under this test's WATCHKEEPER_HOME
    tomorrow = (date.today() + timedelta(days=1)).isoformat()
    assert cli.main(["silence", "fraud", "--kind", "drift", "--until", tomorrow,
                     "--reason", "maintenance", "--by", "carol"]) == 0
    assert "silenced drift until" in capsys.readouterr().out
    raise_alerts(store, spec, D1, DayFindings(drift=drifted("amount"), budgets=budget("ticket")))
    assert cli.main(["alerts", "deliver", "fraud"]) == 0
    out = capsys.readouterr().out
    assert "fraud: 1 sent via file" in out
    assert cli.main(["alerts", "list", "fraud"]) == 0
    out = capsys.readouterr().out
    assert f"SILENCE silenced drift until {tomorrow} by carol: maintenance" in out
    assert "silenced" in out and "budget_burn" in out
    assert cli.main(["alerts", "list", "fraud", "--json", "--status", "silenced"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [a["kind"] for a in listed["alerts"]] == ["drift"]
    assert cli.main(["silence", "fraud", "--until", "2000-01-01", "--reason", "x"]) == 2
    assert "before today" in capsys.readouterr().err
    assert cli.main(["alerts", "resend", "fraud", "--key", "nope"]) == 2
    assert "not a failed alert" in capsys.readouterr().err
