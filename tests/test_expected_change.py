"""Expected change (issue 14) end to end on real parts: the monitor's steps as the DAG's tasks run
them (watchkeeper.airflow.runtime: load, checks, drift and skew as mapped feature groups and their
merge, SLIs and budgets) over generated days in a real SQLite store, one day through the real
monitor DAG (dag.test), `watchkeeper accept` through the CLI, and the HTTP routes.

The world: a small shop model, 400 rows a day. `price` moves for good on day 5 (a new pricing);
`qty` has a genuine one-day shift on day 12; `region` is a segment column. A second model has a
weekly seasonal feature.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import subprocess_env
from watchkeeper import paths

pytestmark = pytest.mark.slow

EXE = str(Path(sys.executable).with_name("watchkeeper"))
START = date(2025, 3, 1)
ROWS = 400


def day(n: int) -> str:
    return (START + timedelta(days=n)).isoformat()


def _frame(rng, n: int, ds: str | None, *, price=100.0, qty=5.0, temp=None) -> pd.DataFrame:
    base = pd.Timestamp(ds or "2025-01-01")
    out = pd.DataFrame({
        "id": [f"{ds or 'train'}-{i}" for i in range(n)],
        "ts": base + pd.to_timedelta(rng.integers(0, 86_000, n), unit="s"),
        "price": rng.normal(price, 10.0, n),
        "qty": rng.normal(qty, 1.0, n),
        "region": rng.choice(["EU", "US"], n),
        "score": rng.uniform(0, 1, n),
    })
    if temp is not None:
        out = out.drop(columns=["price", "region"]).assign(
            temp=temp + rng.normal(0, 1.0, n), noise=rng.normal(0, 1.0, n),
            noise2=rng.normal(3, 1.0, n))
    return out


def _write_spec(models: Path, name: str, spec: dict) -> None:
    models.mkdir(exist_ok=True)
    (models / f"{name}.yaml").write_text(yaml.safe_dump(spec))


@pytest.fixture
def shop(tmp_path, monkeypatch):
    """The shop model's spec and training set; days are written by `stage(n)`."""
    home = paths.home()
    data = home / "data" / "shop"
    data.mkdir(parents=True)
    _frame(np.random.default_rng(0), 3000, None).to_parquet(data / "training.parquet")
    models = tmp_path / "models"
    _write_spec(models, "shop", {
        "name": "shop", "task": "binary_classification", "timezone": "UTC",
        "start_date": "2025-01-01",  # the DAG runs no day before its start
        "source": {"kind": "file", "path": str(data / "ds={ds}.parquet")},
        "landing": {"kind": "none"},
        "columns": {"id": "id", "timestamp": "ts"},
        "features": [{"name": "price", "kind": "numerical"}, {"name": "qty", "kind": "numerical"},
                     {"name": "region", "kind": "categorical"}],
        "prediction": {"score": "score"}, "segments": ["region"],
        "reference": {"training": str(data / "training.parquet")},
        # two features per mapped task: price and qty in group 0, region in group 1
        "drift": {"min_segment_rows": 100, "features_per_task": 2},
        "slos": [{"name": "feature-drift", "sli": "feature_drift", "kind": "timeslice",
                  "objective": 0.9, "gates": ["model"]}],
    })
    monkeypatch.setenv("WATCHKEEPER_MODELS_DIR", str(models))
    monkeypatch.setenv("WATCHKEEPER_EVIDENTLY_PAGES", "on_finding")

    def stage(n: int, eu_only: bool = False) -> None:
        rng = np.random.default_rng(100 + n)
        frame = _frame(rng, ROWS, day(n), price=120.0 if n >= 5 and not eu_only else 100.0,
                       qty=9.0 if n == 12 else 5.0)
        if eu_only and n >= 5:  # the new pricing applies in the EU only
            frame.loc[frame["region"] == "EU", "price"] += 20.0
        frame.to_parquet(data / f"ds={day(n)}.parquet")

    return stage


def _run(model: str, ds: str) -> None:
    """The monitor DAG's analysis tasks for one day, as its task callables run them."""
    from watchkeeper.airflow import runtime
    from watchkeeper.spec import get_spec

    loaded = runtime.load(model, ds)
    for stage in ("ingestion", "features"):
        runtime.check(model, ds, stage, loaded)
    for kind in ("drift", "skew"):
        for i, feats in enumerate(get_spec(model).drift_groups):
            runtime.analyze_drift_group(model, ds, kind, i, feats)
        runtime.merge_drift_groups(model, ds, kind)
    runtime.record_slis(model, ds, loaded)


def _rows(model: str, kind: str, ds: str) -> dict[str, dict]:
    from watchkeeper.store import open_store

    return {m.subject: m.payload for m in open_store().metrics(model, kind, since=ds, until=ds)}


def _sli(model: str, ds: str, as_known_on: str | None = None):
    from watchkeeper.store import open_store

    (row,) = open_store().slis(model, as_known_on=as_known_on, sli="feature_drift", since=ds, until=ds)
    return row


def _gate(model: str, as_of: str):
    from watchkeeper import gatekeeper

    return gatekeeper.ask(model, as_of=as_of, record=False)


def _accept_cli(*args: str) -> subprocess.CompletedProcess:
    r = subprocess.run([EXE, "accept", *args], capture_output=True, text=True,
                       env=subprocess_env(), timeout=180)
    assert "Traceback" not in r.stderr, r.stderr
    return r


def test_accepted_change_is_measured_against_its_window_and_reopens_todays_gate_only(shop, run_dag):
    for n in range(0, 10):
        shop(n)
        _run("shop", day(n))
    # before: price is skewed against the training set every day of the new pricing
    for n in range(5, 10):
        price = _rows("shop", "skew", day(n))["price"]
        assert price["drifted"] is True and price["reference"] == "training", (n, price)
        assert _sli("shop", day(n)).good is False
        drifted = _sli("shop", day(n)).details["drifted"]["skew"]
        assert {"feature": "price", "segment": None, "reference": "training"} in drifted
    assert _gate("shop", day(9)).decision == "closed"

    # accept as of day 10 (the newest run is day 9), through the real CLI
    r = _accept_cli("shop", "--feature", "price", "--since", day(5), "--until", day(13),
                    "--as-of", day(10), "--by", "pricing-lead", "--reason", "new pricing from March 6")
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"budgets of {day(9)} re-evaluated as known on {day(10)}" in r.stdout
    # no alert task ran in this scenario, so no incident of price is open to close
    assert "incidents closed: none open" in r.stdout
    from watchkeeper import gatekeeper
    from watchkeeper.store import open_store

    (a,) = gatekeeper.acceptances(open_store(), "shop")
    assert (a.feature, a.since, a.until, a.known_on, a.created_by) == \
        ("price", day(5), day(13), day(10), "pricing-lead")
    (event,) = open_store().events("shop", kinds="acceptance")
    assert event.created_by == "pricing-lead" and event.ds == day(10) and event.subject == a.id

    # the gate today reflects it; the gate as of the old day is unchanged
    today = _gate("shop", day(10))
    assert today.decision == "open", today.verdict_text()
    (listed,) = today.acceptances
    assert listed["id"] == a.id and listed["excused_days"] >= 5 and listed["created_by"] == "pricing-lead"
    assert "Accepted expected change: price since" in today.verdict_text()
    assert _gate("shop", day(9)).decision == "closed"
    assert _sli("shop", day(9)).good is False  # the past is not rewritten

    # the next days: price against the accepted window (days 5..9, then 5..10), no drift; the
    # first of them through the real monitor DAG
    shop(10)
    out = run_dag("shop_monitor", day(10))
    assert out.ok and out.tasks.get("skew") == "success", out.tasks
    for n in range(11, 14):
        shop(n)
        _run("shop", day(n))
    for n in range(10, 14):
        for kind in ("skew", "drift"):
            rows = _rows("shop", kind, day(n))
            assert "price" in rows, (n, kind, rows)
            assert rows["price"]["reference"] == a.label, (n, kind)
            assert rows["price"]["drifted"] is False, (n, kind, rows["price"])
            assert rows["price|region=EU"]["reference"] == a.label
            assert rows["qty"]["reference"] == ("training" if kind == "skew" else "window")
    refs = _rows("shop", "skew", day(11))["__dataset__"]["references"]
    assert refs == [{"label": a.label, "features": ["price"], "days": [day(n) for n in range(5, 11)],
                     "segment": None, "acceptance": a.id, "period": None}]
    assert list(paths.home().glob(f"state/shop/accepted-{a.id}-*.pkl"))  # prepared once, cached
    # no skew alert for price on the DAG's day
    outbox = paths.home() / "alerts" / "outbox.jsonl"
    sent = [json.loads(x) for x in outbox.read_text().splitlines()] if outbox.exists() else []
    assert not [m for m in sent if m["ds"] == day(10) and m["kind"] in ("skew", "drift")], sent
    # ... while qty's genuine shift on day 12 is caught, against the usual references
    qty = _rows("shop", "skew", day(12))["qty"]
    assert qty["drifted"] is True and qty["reference"] == "training"
    assert _rows("shop", "drift", day(12))["qty"]["drifted"] is True
    assert _sli("shop", day(12)).good is False
    snap = {s.slo: s for s in __import__("watchkeeper.budgets").budgets.latest_snapshots(
        open_store(), "shop", day(12))}["feature-drift"]
    assert snap.excused_days >= 5 and set(snap.excused_by) == {a.id}
    assert snap.bad >= 1  # day 12 is not excused: qty was not accepted

    # the mapped groups store what one process over all features stores
    from watchkeeper import analysis
    from watchkeeper.spec import get_spec

    mapped = {k: sorted((s, p.get("drifted"), p.get("reference")) for s, p in _rows("shop", k, day(13)).items())
              for k in ("drift", "skew")}
    for kind in ("drift", "skew"):
        analysis.analyze_drift(get_spec("shop"), day(13), open_store(), kind)
        single = sorted((s, p.get("drifted"), p.get("reference")) for s, p in _rows("shop", kind, day(13)).items())
        assert single == mapped[kind], kind

    # --until day 13: on day 14 price is back on the training set and skews again
    shop(14)
    _run("shop", day(14))
    price = _rows("shop", "skew", day(14))["price"]
    assert price["reference"] == "training" and price["drifted"] is True

    # revoke: a second acceptance known on day 15, revoked as of day 16
    r = _accept_cli("shop", "--feature", "price", "--as-of", day(15), "--since", day(14),
                    "--reason", "pricing stays", "--by", "pricing-lead")
    assert r.returncode == 0, r.stderr
    second = next(x for x in gatekeeper.acceptances(open_store(), "shop") if x.id != a.id)
    shop(15)
    _run("shop", day(15))
    assert _rows("shop", "skew", day(15))["price"]["reference"] == second.label
    r = _accept_cli("shop", "--revoke", second.id, "--as-of", day(16), "--by", "ops",
                    "--reason", "pricing rolled back")
    assert r.returncode == 0 and "revoked as of" in r.stdout, r.stdout + r.stderr
    (rev,) = open_store().events("shop", kinds="acceptance_revoked")
    assert rev.created_by == "ops" and rev.payload["revoke_reason"] == "pricing rolled back"
    shop(16)
    _run("shop", day(16))
    price = _rows("shop", "skew", day(16))["price"]
    assert price["reference"] == "training" and price["drifted"] is True
    # day 15 as known on day 15 is excused by the second acceptance; as of day 16 it is not
    # (revoked), and the gate as of day 16 names no acceptance
    assert second.id in _gate("shop", day(15)).to_json_dict()["reasons"][0].get("acceptances", [])
    after = _gate("shop", day(16))
    assert [x["id"] for x in after.acceptances] == [a.id]  # only the first, for its window days
    listed = _accept_cli("shop", "--list", "--json")
    body = json.loads(listed.stdout)
    assert [(x["id"], x["revoked_by"]) for x in body["acceptances"]] == [(a.id, None), (second.id, "ops")]
    # a second revocation is refused with the reason
    r = _accept_cli("shop", "--revoke", second.id, "--as-of", day(16))
    assert r.returncode == 2 and "already revoked on" in r.stderr


def test_a_segment_acceptance_takes_over_only_that_segments_rows(shop):
    from watchkeeper import analysis, gatekeeper
    from watchkeeper.spec import get_spec
    from watchkeeper.store import open_store

    for n in range(3, 8):
        shop(n, eu_only=True)
        _run("shop", day(n))
    assert _rows("shop", "skew", day(7))["price|region=EU"]["drifted"] is True
    a = gatekeeper.accept("shop", feature="price", segment="region=EU", since=day(5),
                          as_of=day(7), reason="EU pricing", by="ann").acceptance
    shop(8, eu_only=True)
    _run("shop", day(8))
    before = _rows("shop", "skew", day(7))
    for kind in ("skew", "drift"):
        rows = _rows("shop", kind, day(8))
        assert set(rows) == set(before)  # the same comparisons, none twice
        assert rows["price|region=EU"]["reference"] == a.label
        assert rows["price|region=EU"]["drifted"] is False, (kind, rows["price|region=EU"])
        assert rows["price|region=US"]["reference"] == ("training" if kind == "skew" else "window")
        assert rows["price"]["reference"] == rows["price|region=US"]["reference"]
        assert rows["__dataset__"]["references"][0]["segment"] == {"region": "EU"}
    # the whole-batch price row is not what was accepted: it still skews, and is not excused
    assert _rows("shop", "skew", day(8))["price"]["drifted"] is True
    assert _sli("shop", day(8)).good is False
    from watchkeeper import budgets

    snap = {s.slo: s for s in budgets.latest_snapshots(open_store(), "shop", day(8))}["feature-drift"]
    assert snap.excused_days == 0
    # mapped groups and one process agree on the merged verdicts
    mapped = sorted((k, v.get("drifted"), v.get("reference")) for k, v in _rows("shop", "skew", day(8)).items())
    analysis.analyze_drift(get_spec("shop"), day(8), open_store(), "skew")
    assert sorted((k, v.get("drifted"), v.get("reference"))
                  for k, v in _rows("shop", "skew", day(8)).items()) == mapped


def test_cli_refuses_bad_input_with_the_field_and_why(shop, capsys):
    from watchkeeper import cli

    shop(0)
    _run("shop", day(0))

    def err(*args: str) -> str:
        assert cli.main(["accept", "shop", *args]) == 2
        return capsys.readouterr().err

    assert "'prcie' is not a feature of model 'shop' (features: price, qty, region)" in \
        err("--feature", "prcie", "--reason", "x")
    assert "'country' is not a segment column of model 'shop' (segments: region)" in \
        err("--feature", "price", "--segment", "country=DE", "--reason", "x")
    assert "reason: required and not blank" in err("--feature", "price", "--reason", " ")
    assert "reason: required" in err("--feature", "price")
    assert f"until: {day(1)} is before since {day(3)}" in \
        err("--feature", "price", "--reason", "x", "--since", day(3), "--until", day(1), "--as-of", day(5))
    assert "as_of: expected a day YYYY-MM-DD" in err("--feature", "price", "--reason", "x", "--as-of", "monday")
    assert "--feature is required" in err("--reason", "x")
    assert "no acceptance 'acc-deadbeef'" in err("--revoke", "acc-deadbeef")
    assert "unknown model 'nope'" in (cli.main(["accept", "nope", "--list"]) == 2 and capsys.readouterr().err)
    from watchkeeper.store import open_store

    assert open_store().events("shop", kinds="acceptance") == []  # nothing was stored
    assert cli.main(["accept", "shop", "--list"]) == 0
    assert "no acceptances" in capsys.readouterr().out


def test_since_defaults_to_the_onset_of_the_features_open_incident(shop):
    from watchkeeper import alerts, gatekeeper
    from watchkeeper.store import OutboxRecord, open_store

    shop(0)
    _run("shop", day(0))
    store = open_store()

    def row(kind: str, subject: str, ds: str, thread: tuple[str, str] | None = None,
            **kw) -> OutboxRecord:
        return OutboxRecord(model="shop", ds=ds, kind=kind, subject=subject,
                            dedupe_key=alerts.dedupe_key("shop", kind, subject, ds),
                            thread_key=alerts.thread_key("shop", *(thread or (kind, subject))),
                            severity="ticket", text=f"{kind} {subject}", **kw)

    # qty's skew incident opened on day 3 and is still open; price's closed again
    store.enqueue_outbox([row("skew", "qty", day(3)), row("skew", "qty", day(4)),
                          row("drift", "qty", day(2)),
                          row("skew", "price", day(1)),
                          # a recovery closes the incident: a closing message in its thread
                          row("recovery", "skew:price", day(2), thread=("skew", "price"),
                              closes_thread=True)])
    out = gatekeeper.accept("shop", feature="qty", reason="new packs", as_of=day(6), by="ann")
    assert out.acceptance.since == day(2)  # the earlier of the drift and skew onsets
    out = gatekeeper.accept("shop", feature="price", reason="new pricing", as_of=day(6), by="ann")
    assert out.acceptance.since == day(6)  # no open incident: the acceptance day


def test_a_late_run_of_yesterday_does_not_hide_an_acceptance_from_todays_gate(shop):
    """The run of day 6 finishes after an acceptance known on day 7: it does not use it (as of
    day 6), but its budgets are also written as known on day 7, and a re-run changes nothing."""
    from watchkeeper import budgets, gatekeeper
    from watchkeeper.store import open_store

    for n in (3, 4, 5):
        shop(n)
        _run("shop", day(n))
    gatekeeper.accept("shop", feature="price", reason="new pricing", since=day(5), as_of=day(7),
                      by="ann")
    shop(6)
    _run("shop", day(6))
    assert _rows("shop", "skew", day(6))["price"]["reference"] == "training"  # not known on day 6

    def drift_snapshot(as_of):
        return {s.slo: s for s in budgets.latest_snapshots(open_store(), "shop", as_of)}["feature-drift"]

    today, then = drift_snapshot(day(7)), drift_snapshot(day(6))
    assert today.ds == then.ds == day(6)
    # the days whose only drift is price's (a chance drift of another feature is never excused)
    only_price = [n for n in (5, 6) if not _sli("shop", day(n)).good and all(
        r["feature"] == "price" for fam in ("drift", "skew")
        for r in _sli("shop", day(n)).details["drifted"][fam])]
    assert 5 in only_price
    assert today.excused_days == len(only_price) and then.excused_days == 0
    assert today.bad == then.bad - len(only_price)
    dump = open_store().dump("shop")
    _run("shop", day(6))
    again = open_store().dump("shop")
    for table in ("wk_metric", "wk_sli_value", "wk_event"):
        drop = {"updated_at", "created_at", "id"}
        assert [{k: v for k, v in r.items() if k not in drop} for r in again[table]] == \
            [{k: v for k, v in r.items() if k not in drop} for r in dump[table]], table


def test_accepting_closes_the_features_drift_and_skew_incidents(shop):
    """After the merge: open a skew incident for price through the real alerts path, accept, and
    the incident is closed by one closing message; qty's incident stays open."""
    from watchkeeper import alerts, day_alerts, gatekeeper
    from watchkeeper.spec import get_spec
    from watchkeeper.store import open_store

    for n in (0, 1, 5, 6):
        shop(n)
        _run("shop", day(n))
        day_alerts.raise_for(get_spec("shop"), day(n), open_store(), "monitor")
    store = open_store()
    assert alerts.thread_key("shop", "skew", "price") in alerts.open_incidents(store, "shop", day(6))
    open_before = alerts.open_incidents(store, "shop", day(6))
    out = gatekeeper.accept("shop", feature="price", reason="new pricing", as_of=day(7), by="ann")
    closing = [r for r in store.outbox("shop") if r.dedupe_key in set(out.closed_incidents)]
    assert closing and all(r.closes_thread and r.kind == "recovery" for r in closing), closing
    assert {r.thread_key for r in closing} == {k for k in open_before
                                               if k.split(":")[1] in ("drift", "skew")
                                               and k.endswith(":price")}
    assert all("new pricing" in r.text and "ann" in r.text for r in closing)
    after = alerts.open_incidents(store, "shop", day(7))
    assert alerts.thread_key("shop", "skew", "price") not in after
    # every other open incident is untouched
    assert {k for k in open_before if not k.endswith(":price")} <= set(after)


@pytest.fixture
def seasonal(tmp_path, monkeypatch):
    """A model whose `temp` follows a weekly cycle (a 7-day sine), compared day by day
    (drift.reference_days 1: the previous cycle is the same weekday a week earlier)."""
    home = paths.home()
    data = home / "data" / "weather"
    data.mkdir(parents=True)

    def temp(n: int) -> float:
        return 20.0 + 8.0 * np.sin(2 * np.pi * n / 7)

    rng = np.random.default_rng(1)
    train = pd.concat([_frame(rng, 300, day(-30 + i), temp=temp(i)) for i in range(14)], ignore_index=True)
    train.to_parquet(data / "training.parquet")
    _write_spec(tmp_path / "models", "weather", {
        "name": "weather", "task": "binary_classification",
        "source": {"kind": "file", "path": str(data / "ds={ds}.parquet")},
        "landing": {"kind": "none"}, "columns": {"id": "id", "timestamp": "ts"},
        "features": [{"name": "temp", "kind": "numerical", "seasonal": "weekly"},
                     {"name": "noise", "kind": "numerical"}, {"name": "noise2", "kind": "numerical"},
                     {"name": "qty", "kind": "numerical"}],
        "prediction": {"score": "score"},
        "reference": {"training": str(data / "training.parquet")},
        "drift": {"reference_days": 1},
        "slos": [{"name": "feature-drift", "sli": "feature_drift", "kind": "timeslice",
                  "objective": 0.9, "gates": ["model"]}],
    })
    monkeypatch.setenv("WATCHKEEPER_MODELS_DIR", str(tmp_path / "models"))
    monkeypatch.setenv("WATCHKEEPER_EVIDENTLY_PAGES", "on_finding")

    def stage(n: int, shift: float = 0.0) -> None:
        _frame(np.random.default_rng(500 + n), ROWS, day(n), temp=temp(n) + shift) \
            .to_parquet(data / f"ds={day(n)}.parquet")

    return stage


def test_a_seasonal_feature_is_compared_with_its_previous_cycle_and_its_skew_is_not_alerted(seasonal):
    for n in range(0, 10):
        seasonal(n)
        _run("weather", day(n))
    seasonal(10, shift=6.0)  # a genuine shift on day 10
    _run("weather", day(10))
    # without a previous cycle (days 1..6): the trailing window, said so
    early = _rows("weather", "drift", day(3))
    assert early["temp"]["reference"] == "window"
    assert any("previous cycle" in n and "compared with the trailing window" in n
               for n in early["__dataset__"]["notes"]), early["__dataset__"]["notes"]
    for n in (8, 9):
        drift = _rows("weather", "drift", day(n))
        assert drift["temp"]["reference"] == "seasonal:previous_cycle"
        assert drift["temp"]["drifted"] is False, drift["temp"]
        assert drift["__dataset__"]["references"][0]["days"] == [day(n - 7)]
        assert drift["noise"]["reference"] == "window"
        skew = _rows("weather", "skew", day(n))["temp"]
        # skew against the training set is computed and stored, not alerted
        assert skew["score"] is not None and skew["drifted"] is False
        assert "reported, not alerted" in skew["not_alerted"]
        assert _sli("weather", day(n)).good is True
    assert any(_rows("weather", "skew", day(n))["temp"]["drifted_statistical"] for n in range(7, 10))
    # the genuine shift is caught against the previous cycle
    shifted = _rows("weather", "drift", day(10))["temp"]
    assert shifted["reference"] == "seasonal:previous_cycle" and shifted["drifted"] is True
    assert _sli("weather", day(10)).good is False


def test_a_seasonal_models_predictions_are_judged_against_its_own_recent_output(tmp_path, monkeypatch):
    """Predictions follow their seasonal input: against a training set that spans the whole
    cycle, the days at the cycle's peaks look anomalous. A seasonal model's prediction monitors
    use the served predictions of the trailing clean window instead (one frame per day, so the
    band learns the output's own day-to-day spread); until drift.MIN_SPREAD_DAYS such days exist
    they are reported against the training set, not alerted, and the day is neither stable nor
    unstable. A genuine fault in the output is still caught."""
    from watchkeeper import analysis, predictions
    from watchkeeper.airflow import runtime
    from watchkeeper.spec import get_spec
    from watchkeeper.store import open_store

    data = paths.home() / "data" / "demand"
    data.mkdir(parents=True)

    def temp(n: int) -> float:  # a 28-day cycle: a week's window holds a quarter of it
        return 20.0 + 8.0 * np.sin(2 * np.pi * n / 28)

    def frame(n: int, ds: str | None, broken: bool = False) -> pd.DataFrame:
        rng = np.random.default_rng(900 + n)
        f = _frame(rng, ROWS, ds, temp=temp(n))
        f["units"] = 3.0 * f["temp"] + rng.normal(0, 2.0, len(f))
        if broken:
            f["units"] = f["units"] * 0.2  # a unit bug in the model's output
        return f

    pd.concat([frame(i, day(-30 + i)) for i in range(28)], ignore_index=True) \
        .to_parquet(data / "training.parquet")
    _write_spec(tmp_path / "models", "demand", {
        "name": "demand", "task": "regression",
        "source": {"kind": "file", "path": str(data / "ds={ds}.parquet")},
        "landing": {"kind": "none"}, "columns": {"id": "id", "timestamp": "ts"},
        "features": [{"name": "temp", "kind": "numerical", "seasonal": 28},
                     {"name": "noise", "kind": "numerical"}],
        "prediction": {"label": "units"},
        "reference": {"training": str(data / "training.parquet")},
        "slos": [{"name": "prediction-stability", "sli": "prediction_stability",
                  "kind": "timeslice", "objective": 0.9, "gates": ["model"]}],
    })
    monkeypatch.setenv("WATCHKEEPER_MODELS_DIR", str(tmp_path / "models"))
    monkeypatch.setenv("WATCHKEEPER_EVIDENTLY_PAGES", "on_finding")
    spec = get_spec("demand")
    training_alerts = []
    for n in range(12):
        frame(n, day(n), broken=(n == 11)).to_parquet(data / f"ds={day(n)}.parquet")
        loaded = runtime.load("demand", day(n))
        for stage in ("ingestion", "features"):
            runtime.check("demand", day(n), stage, loaded)
        runtime.analyze_drift("demand", day(n), "drift")
        runtime.analyze_predictions("demand", day(n))
        runtime.record_slis("demand", day(n), loaded)
        batch = pd.read_parquet(data / f"ds={day(n)}.parquet")
        vs_training = predictions.monitor_predictions(
            batch, analysis._prediction_baseline(spec), alpha=0.01 / 2).to_dict()
        training_alerts.append(any(m["alert"] for m in vs_training["monitors"]))
    store = open_store()

    def day_payload(n):
        return next(m.payload for m in store.metrics("demand", "prediction", since=day(n), until=day(n))
                    if m.subject == analysis.DATASET)

    def stability(n):
        (row,) = store.slis("demand", sli="prediction_stability", since=day(n), until=day(n))
        return row

    for n in range(5):  # fewer than 5 clean days before it: reported, not alerted
        p = day_payload(n)
        assert p["baseline_from"] == "training set" and "not alerted" in p["not_alerted"], p
        assert p["alert"] is False and stability(n).good is None
    for n in range(5, 11):
        p = day_payload(n)
        # no day of the previous cycle is staged yet: the trailing window
        assert p["baseline_from"].startswith("trailing clean window"), (n, p)
        assert "not_alerted" not in p and p["alert"] is False, (n, p)
        assert stability(n).good is True
    # the same healthy days against the training set: the cycle's peaks alert
    assert any(training_alerts[5:11]), training_alerts
    broken = day_payload(11)
    assert broken["alert"] is True and stability(11).good is False
    assert {m.subject for m in store.metrics("demand", "prediction", since=day(11), until=day(11))
            if m.payload.get("alert")} >= {"mean_prediction"}


def test_http_routes_for_acceptances(shop, airflow_db):
    from fastapi.testclient import TestClient

    sys.path.insert(0, str(paths.project_root() / "plugins"))
    import watchkeeper_plugin
    from airflow.api_fastapi.app import init_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
    from watchkeeper import gatekeeper
    from watchkeeper.store import open_store

    shop(0)
    _run("shop", day(0))
    client = TestClient(watchkeeper_plugin.WatchkeeperPlugin.fastapi_apps[0]["app"])
    body = {"feature": "price", "reason": "new pricing", "since": day(0)}
    for method in ("GET", "POST"):
        r = client.request(method, "/models/shop/acceptances", json=body if method == "POST" else None)
        assert r.status_code == 401, (method, r.status_code)
    manager = init_auth_manager()

    def auth(user: str, role: str) -> dict:
        return {"Authorization": f"Bearer {manager.generate_jwt(SimpleAuthManagerUser(username=user, role=role))}"}

    r = client.post("/models/shop/acceptances", json=body, headers=auth("vic", "viewer"))
    assert r.status_code == 403 and "shop_deploy" in r.json()["detail"]
    assert client.post("/models/shop/acceptances", json={**body, "by": "mallory"},
                       headers=auth("olga", "op")).status_code == 422
    r = client.post("/models/shop/acceptances", json={**body, "feature": "prcie"}, headers=auth("olga", "op"))
    assert r.status_code == 400 and "'prcie' is not a feature" in r.json()["detail"]
    r = client.post("/models/shop/acceptances", json={**body, "segment": "country=DE"},
                    headers=auth("olga", "op"))
    assert r.status_code == 400 and "not a segment column" in r.json()["detail"]
    r = client.post("/models/shop/acceptances", json={**body, "until": "2000-01-01"}, headers=auth("olga", "op"))
    assert r.status_code == 400 and "is before since" in r.json()["detail"]
    assert client.post("/models/nope/acceptances", json=body, headers=auth("olga", "op")).status_code == 404
    assert gatekeeper.acceptances(open_store(), "shop") == []

    r = client.post("/models/shop/acceptances", json={**body, "segment": "region=EU"}, headers=auth("olga", "op"))
    assert r.status_code == 201, r.text
    made = r.json()["acceptance"]
    assert made["created_by"] == "olga" and made["segment"] == {"region": "EU"}
    assert made["known_on"] == gatekeeper.today(__import__("watchkeeper.spec").spec.get_spec("shop")).isoformat()
    (stored,) = gatekeeper.acceptances(open_store(), "shop")
    assert stored.created_by == "olga" and stored.id == made["id"]
    listed = client.get("/models/shop/acceptances", headers=auth("vic", "viewer"))
    assert listed.status_code == 200
    assert [(x["id"], x["status"]) for x in listed.json()["acceptances"]] == [(made["id"], "active")]
    assert client.get("/models/nope/acceptances", headers=auth("vic", "viewer")).status_code == 404


def test_the_model_page_lists_acceptances_active_and_past(shop):
    from watchkeeper import gatekeeper, reports
    from watchkeeper.spec import get_spec
    from watchkeeper.store import open_store

    for n in range(0, 3):
        shop(n)
        _run("shop", day(n))
    old = gatekeeper.accept("shop", feature="qty", reason="packs of six", since=day(0),
                            until=day(1), as_of=day(1), by="ann").acceptance
    new = gatekeeper.accept("shop", feature="price", segment="region=EU", reason="EU <pricing>",
                            as_of=day(2), by="bob").acceptance
    gatekeeper.revoke_acceptance("shop", new.id, as_of=day(2), by="carl", reason="undone")
    reports.build_site(open_store(), [get_spec("shop")])
    html = (paths.reports_dir() / "shop" / "index.html").read_text()
    assert 'id="accepted"' in html
    for text in (old.id, new.id, "packs of six", "EU &lt;pricing&gt;", "price [region=EU]",
                 "expired", "revoked (" + day(2) + " by carl: undone)"):
        assert text in html, text
    assert "acceptance " + old.id in html  # on the time axes (marker labels)
