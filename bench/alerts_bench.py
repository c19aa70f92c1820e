"""alert_delivery_ms_p50: per-message delivery time of `watchkeeper.alerts.deliver` — claim in the
outbox, chat.postMessage through the real slack_sdk WebClient, record the ts — against the fake
Slack Web API (tests/slack_fake.py) on 127.0.0.1, with the store in SQLite under
WATCHKEEPER_HOME. Messages are real alerts (drift, budget burn, data checks) over many days, so
threaded updates are part of the mix."""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from datetime import date, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the fake Slack server


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--days", type=int, default=60, help="days of alerts (3 messages a day)")
    args = ap.parse_args()

    from slack_fake import FakeSlack

    from watchkeeper import alerts
    from watchkeeper.spec import load_spec
    from watchkeeper.store import open_store

    spec = load_spec(ROOT / "include" / "models" / "fraud.yaml")
    store = open_store()
    start = date(2026, 1, 1)
    for i in range(args.days):
        ds = (start + timedelta(days=i)).isoformat()
        findings = alerts.DayFindings(
            drift=[alerts.DriftFinding(feature="amount", drifted=True, score=0.3 + i / 1000,
                                       threshold=0.1, method="wasserstein",
                                       segment={"country": "DE"})],
            budgets=[alerts.BudgetFinding(slo="data-quality", alert="page" if i % 2 else "ticket",
                                          budget_remaining=0.5 - i / 200, burn_1d=3.0,
                                          burn_3d=2.9, burn_7d=1.4)],
            expectations=[alerts.ExpectationFinding(stage=f"ingestion{i % 3}",
                                                    expectation="expect_column_values_to_not_be_null",
                                                    column="device_age_days",
                                                    unexpected_share=0.3)],
            stages_checked=[f"ingestion{i % 3}"],
        )
        alerts.raise_alerts(store, spec, ds, findings, reports_url="http://reports.example")

    with FakeSlack() as fake:
        env = {alerts.ENV_TOKEN: fake.token, alerts.ENV_BASE_URL: fake.base_url}
        t0 = time.perf_counter()
        report = alerts.deliver(store, spec, env=env, echo=None)
        wall = time.perf_counter() - t0
        assert not report.failed and not report.retry_later, report.to_dict()
        assert len(fake.posts) == len(report.sent)
    durations = sorted(report.durations_ms)
    q = statistics.quantiles(durations, n=20)
    figures = {
        "alert_delivery_ms_p50": statistics.median(durations),
        "alert_delivery_ms_p95": q[18],
        "alert_delivery_messages": len(durations),
        "alert_delivery_seconds_total": wall,
    }
    Path(args.out).write_text(json.dumps(figures))
    print(json.dumps(figures))


if __name__ == "__main__":
    sys.exit(main())
