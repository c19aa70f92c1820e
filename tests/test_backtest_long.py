"""The incident library's two long replays (issue 14), on data nobody tuned Watchkeeper for:
`small_batch_shift` (200 rows a day, 120 healthy days, then a covariate shift in two features) and
`seasonal_yearly_cycle` (a year of a temperature that follows the seasons, declared seasonal, and
ten Fahrenheit days in month 9). Both must catch their incident on day 0 or 1 and keep their
healthy days within the limits of their incident.yaml: the gate open on at least 90% of healthy
days and at most 5 messages per 30 healthy days (small batches), no page on a healthy day over
the year (seasonal). Its own file so the slowest replay runs beside the rest of the suite."""

from __future__ import annotations

import json

import pytest

from test_backtest import LONG, backtest


@pytest.fixture(scope="module")
def long_run():
    args = [a for name in LONG for a in ("--incident", name)]
    # one job: the suite already keeps both cores busy, and a third heavy process starves the
    # tests that wait on deadlines (the Celery deployment)
    out = backtest("--json", "--jobs", "1", *args, timeout=2400)
    assert out.returncode in (0, 1), out.stderr[-3000:]
    return out, {r["name"]: r for r in json.loads(out.stdout)["incidents"]}


def test_the_small_batch_model_stays_quiet_and_open_and_catches_the_shift(long_run):
    _out, runs = long_run
    r = runs["small_batch_shift"]
    assert r["error"] is None, r["error"]
    for o in r["outcomes"]:
        assert o["verdict"] == "caught" and o["detected_day"] <= 2, o  # day 0 or 1 of the shift
    m = r["measures"]
    assert m["healthy_days"] == 120
    assert m["gate_open_share"] >= 0.9, m["gate_open_share"]
    assert m["messages_per_30_healthy_days"] <= 5, m["messages_per_30_healthy_days"]
    assert {x["name"] for x in r["limits"]} == {"gate_open_share", "messages_per_30_healthy_days"}
    assert all(x["ok"] for x in r["limits"]), r["limits"]


def test_a_declared_seasonal_input_never_pages_over_a_year_and_a_unit_change_is_caught(long_run):
    out, runs = long_run
    r = runs["seasonal_yearly_cycle"]
    assert r["error"] is None, r["error"]
    (o,) = r["outcomes"]
    assert o["subject"] == "temperature" and o["verdict"] == "caught" and o["detected_day"] <= 2, o
    m = r["measures"]
    assert m["days"] == 365 and m["healthy_days"] == 354
    assert m["pages_on_healthy_days"] == 0, m
    assert all(x["ok"] for x in r["limits"]), r["limits"]
    assert out.returncode == 0, out.stdout[-3000:]
