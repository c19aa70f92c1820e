"""Chaos suite (issue #9, item 1): faults injected into a demo-like day and run through the real
DAGs with dag.test(). For each fault: the finding or error a person needs (file, column, rows,
why), the unaffected stages still run, nothing stored is lost or half-written, and a re-run after
the fault clears heals the day to exactly the store of a clean run of the same days (a clean home
reading the same files)."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from chaos_helpers import (World, dump, eta_world, failures, fraud_world, kill_mid_write,
                           metrics, new_home, only_days, outbox, partition, slis, stage)

pytestmark = pytest.mark.slow

MONITOR_TASKS = {"load", "check_ingestion", "check_features", "drift", "skew", "predictions",
                 "record_slis", "alert", "report"}


@pytest.fixture(autouse=True)
def _fast_pages(monkeypatch):
    # Evidently pages and the site are not what these scenarios test, and cost seconds a run.
    monkeypatch.setenv("WATCHKEEPER_EVIDENTLY_PAGES", "on_finding")
    monkeypatch.setenv("WATCHKEEPER_SITE_REBUILD", "end")


def _all_succeeded(out):
    # (>=: the analyses may fan out into mapped tasks)
    assert out.ok and set(out.tasks) >= MONITOR_TASKS, out.tasks
    # run_status, the run's watcher, is skipped when no task failed
    assert {s for t, s in out.tasks.items() if t != "run_status"} == {"success"}, out.tasks
    assert out.tasks.get("run_status", "skipped") == "skipped", out.tasks


def _late_marker(world: World, n: int) -> str:
    """Day n's landing time 14 h after the day ended: 8 h past the 6 h deadline."""
    landed = pd.Timestamp(world.ds(n), tz="UTC") + timedelta(days=1, hours=14)
    return landed.isoformat()


# ----- a clean eta home shared by the eta scenarios ----------------------------------------------


@dataclass
class Clean:
    world: World
    dump: dict
    outbox: list
    batches: dict  # day -> its clean frame
    markers: dict  # day -> its clean landing marker text


@pytest.fixture(scope="module")
def clean_eta(small_demo, airflow_db, tmp_path_factory):
    """eta days 1-3 in a data folder the scenarios break (and restore), run once in a clean home.
    Day 3 lands late in the clean world too: a late partition is a fact of the day, not a fault
    a re-run can undo."""
    root = tmp_path_factory.mktemp("chaos_eta")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("WATCHKEEPER_EVIDENTLY_PAGES", "on_finding")
        mp.setenv("WATCHKEEPER_SITE_REBUILD", "end")
        w = eta_world(root, small_demo, range(1, 4), mp)
        w.marker(3).write_text(_late_marker(w, 3))
        new_home(root, small_demo, mp, "clean")
        for n in (1, 2, 3):
            out = airflow_db.run_day(airflow_db.dagbag().get_dag("eta_monitor"), w.ds(n))
            _all_succeeded(out)
        clean = Clean(w, dump("eta"), outbox("eta"), {n: w.read_batch(n) for n in (1, 2, 3)},
                      {n: w.marker(n).read_text() for n in (1, 2, 3)})
    return clean


@pytest.fixture
def eta(clean_eta, monkeypatch):
    """The shared eta world for one test, restored to clean afterwards whatever the test broke."""
    monkeypatch.setenv("WATCHKEEPER_MODELS_DIR", str(clean_eta.world.models_dir))
    yield clean_eta
    w = clean_eta.world
    for n, frame in clean_eta.batches.items():
        w.write_batch(n, frame)
        w.marker(n).write_text(clean_eta.markers[n])


def _heal(c: Clean) -> None:
    for n, frame in c.batches.items():
        c.world.write_batch(n, frame)
        c.world.marker(n).write_text(c.markers[n])


# ----- bad data ------------------------------------------------------------------------------------


def test_corrupt_values_schema_change_duplicates_and_all_null_are_findings_and_heal(
        eta, small_demo, run_dag, tmp_path, monkeypatch):
    w = eta.world
    d1, d2, d3 = (w.ds(n) for n in (1, 2, 3))
    # day 2: inf, huge outliers, 30 rows repeating one id, and a feature that is entirely null
    f = eta.batches[2].copy()
    f.loc[f.index[:5], "distance_km"] = np.inf
    f.loc[f.index[5:25], "items"] = 1e12
    f.loc[f.index[1:31], "order_id"] = f["order_id"].iloc[0]
    f["courier_tenure"] = np.nan
    w.write_batch(2, f)
    # day 3: schema change: weather renamed, hour retyped to text, an extra column
    f = eta.batches[3].rename(columns={"weather": "weather_kind"})
    f["hour"] = f["hour"].map(lambda h: f"{h:02d}h")
    f["debug_blob"] = "x"
    w.write_batch(3, f)

    new_home(tmp_path, small_demo, monkeypatch, "faulted")
    for ds in (d1, d2, d3):
        _all_succeeded(run_dag("eta_monitor", ds))  # findings, not crashes: every stage ran

    bad = {(e.column, e.expectation_type): e for e in failures("eta", d2)}
    assert bad[("distance_km", "expect_column_values_to_be_between")].unexpected_count == 5
    assert bad[("items", "expect_column_values_to_be_between")].unexpected_count == 20
    assert bad[("order_id", "expect_column_values_to_be_unique")].unexpected_count == 31
    assert bad[("courier_tenure", "expect_column_values_to_not_be_null")].unexpected_share == 1.0
    # the all-null feature is a drift finding; the other features were still measured
    for family in ("drift", "skew"):
        m = metrics("eta", family, d2)
        assert any(p["kind"] == "all_null" and "courier_tenure" in p["message"]
                   for p in m["__dataset__"]["problems"]), m["__dataset__"]
        assert all(m[f]["score"] is not None for f in ("distance_km", "items", "hour", "weather"))
    assert metrics("eta", "skew", d2)["items"]["drifted"] is True  # the outliers moved it

    bad = {(e.column, e.expectation_type) for e in failures("eta", d3)}
    assert {("weather", "expect_column_values_to_not_be_null"),
            ("hour", "expect_column_values_to_be_in_type_list"),
            (None, "expect_table_columns_to_match_set")} <= bad
    problems = {(p["feature"], p["kind"]): p["message"]
                for p in metrics("eta", "skew", d3)["__dataset__"]["problems"]}
    assert "missing from the batch" in problems[("weather", "missing")]
    assert "holds string values" in problems[("hour", "new_type")] and "'00h'" in problems[("hour", "new_type")]
    m = metrics("eta", "skew", d3)
    assert all(m[f]["score"] is not None for f in ("distance_km", "items", "courier_tenure"))
    assert slis("eta", d3)["data_quality"].value < 1 and slis("eta", d3)["freshness"].good is False

    _heal(eta)
    for ds in (d2, d3):
        _all_succeeded(run_dag("eta_monitor", ds))
    assert dump("eta") == eta.dump


def test_empty_missing_and_late_partitions_are_freshness_findings_and_heal(
        eta, small_demo, run_dag, tmp_path, monkeypatch):
    w = eta.world
    d1, d2, d3 = (w.ds(n) for n in (1, 2, 3))
    w.write_batch(1, eta.batches[1].head(0))  # day 1: the upstream job wrote an empty file
    w.batch_file(2).unlink()  # day 2: nothing at all
    w.batch_file(3).unlink()  # day 3: not landed yet when its run starts
    w.marker(3).unlink()

    new_home(tmp_path, small_demo, monkeypatch, "faulted")
    outs = [run_dag("eta_monitor", ds) for ds in (d1, d2, d3)]
    for out in outs:
        _all_succeeded(out)
    p1 = partition("eta", d1)
    assert p1.status == "empty" and p1.rows == 0
    assert any(e.expectation_type == "expect_table_row_count_to_be_between" and e.observed == 0
               for e in failures("eta", d1))
    for ds in (d2, d3):
        p = partition("eta", ds)
        assert p.status == "missing" and f"ds={ds}.parquet" in p.message and "has not written it" in p.message
        assert stage("eta", ds, "ingestion").error.startswith("not run:")
        assert metrics("eta", "drift", ds)["__dataset__"]["not_run"] == "no batch staged for this day"
        assert slis("eta", ds)["freshness"].good is False

    # the files arrive: day 3 lands 8 h past its deadline; re-runs heal every day
    _heal(eta)
    for ds in (d1, d2, d3):
        _all_succeeded(run_dag("eta_monitor", ds))
    p3 = partition("eta", d3)
    assert p3.status == "late" and "after the deadline" in p3.message
    assert stage("eta", d3, "ingestion").evaluated > 0  # late data is still checked
    assert dump("eta") == eta.dump


def test_a_non_utf8_csv_is_unreadable_with_the_byte_and_heals(small_demo, run_dag, tmp_path,
                                                               monkeypatch):
    def csv_source(spec):
        spec["source"]["path"] = spec["source"]["path"].replace(".parquet", ".csv")

    w = eta_world(tmp_path, small_demo, range(1, 2), monkeypatch, spec_changes=csv_source)
    ds = w.ds(1)
    frame = w.read_batch(1).assign(note="livré à temps")
    csv = w.batch_file(1, ".csv")
    frame.to_csv(csv, index=False, encoding="utf-8")
    new_home(tmp_path, small_demo, monkeypatch, "clean")
    _all_succeeded(run_dag("eta_monitor", ds))
    clean = dump("eta")

    frame.to_csv(csv, index=False, encoding="cp1252")  # an export from a Windows tool
    new_home(tmp_path, small_demo, monkeypatch, "faulted")
    _all_succeeded(run_dag("eta_monitor", ds))
    p = partition("eta", ds)
    assert p.status == "unreadable" and str(csv) in p.message
    assert "not UTF-8 text (byte" in p.message and "re-export it as UTF-8" in p.message
    assert stage("eta", ds, "features").error.startswith("not run:")
    assert slis("eta", ds)["freshness"].good is False

    frame.to_csv(csv, index=False, encoding="utf-8")
    _all_succeeded(run_dag("eta_monitor", ds))
    assert dump("eta") == clean


def test_strings_and_a_retyped_column_in_a_sql_table_heal(small_demo, run_dag, tmp_path, monkeypatch):
    """SQLite keeps whatever an upstream job inserts: text among the numbers of a column."""
    w = fraud_world(tmp_path, small_demo, monkeypatch)
    d1, d2 = w.ds(1), w.ds(2)
    pristine = tmp_path / "pristine.db"
    shutil.copy(w.db, pristine)
    new_home(tmp_path, small_demo, monkeypatch, "clean")
    for ds in (d1, d2):
        _all_succeeded(run_dag("fraud_monitor", ds))
    clean = dump("fraud")

    hit = w.sql("UPDATE predictions SET amount = 'n/a' WHERE rowid IN "
                "(SELECT rowid FROM predictions WHERE ds = ? ORDER BY rowid LIMIT 7)", (d2,))
    assert hit == 7
    w.sql("UPDATE predictions SET device_age_days = CAST(device_age_days AS TEXT) || ' days' "
          "WHERE ds = ?", (d2,))
    new_home(tmp_path, small_demo, monkeypatch, "faulted")
    for ds in (d1, d2):
        _all_succeeded(run_dag("fraud_monitor", ds))
    p = partition("fraud", d2)
    assert "column amount mixes types" in p.message and "kept as text" in p.message
    bad = {(e.column, e.expectation_type) for e in failures("fraud", d2)}
    assert ("amount", "expect_column_values_to_be_in_type_list") in bad
    assert ("device_age_days", "expect_column_values_to_be_in_type_list") in bad
    m = metrics("fraud", "skew", d2)
    kinds = {(p["feature"], p["kind"]) for p in m["__dataset__"]["problems"]}
    assert ("amount", "new_type") in kinds and ("device_age_days", "new_type") in kinds
    assert all(m[f]["score"] is not None for f in ("hour", "merchant_category", "txn_count_24h"))

    shutil.copy(pristine, w.db)
    _all_succeeded(run_dag("fraud_monitor", d2))
    assert dump("fraud") == clean


# ----- bad labels -----------------------------------------------------------------------------------


def test_duplicated_conflicting_unknown_late_and_future_labels_are_counted_and_heal(
        small_demo, run_dag, tmp_path, monkeypatch):
    def short_delay(spec):
        spec["labels"]["max_delay_days"] = 2

    w = eta_world(tmp_path, small_demo, range(1, 5), monkeypatch, spec_changes=short_delay)
    days = [w.ds(n) for n in range(1, 5)]
    new_home(tmp_path, small_demo, monkeypatch, "clean")
    for ds in days:  # no monitor run: the labels DAG reads predictions from the source
        assert run_dag("eta_labels", ds).ok
    clean = dump("eta")
    clean_counts = _label_issues(days[3])["counts"]

    good = pd.read_parquet(w.label_file(4))
    preds1, preds2 = w.read_batch(1), w.read_batch(2)
    d4 = pd.Timestamp(days[3])
    known = good[good["order_id"].isin(preds2["order_id"])].head(3)
    assert len(known) == 3
    # ids that receive no genuine label on any day of the window: an injected late or future
    # label for them is exactly that, never also a conflict (the world shifts with the date)
    labelled = set().union(*(set(pd.read_parquet(w.label_file(n))["order_id"])
                             for n in range(1, 5) if w.label_file(n).exists()))
    unlabelled1 = preds1.loc[~preds1["order_id"].isin(labelled), "order_id"]
    unlabelled2 = preds2.loc[~preds2["order_id"].isin(labelled), "order_id"]
    bad = pd.concat([
        good,
        known.head(2),  # delivered twice, same value
        known.tail(1).assign(actual_minutes=known["actual_minutes"].iloc[-1] + 40,
                             label_ts=d4 + pd.Timedelta(hours=23)),  # a later, different value
        pd.DataFrame({"order_id": [f"ghost-{i}" for i in range(4)], "actual_minutes": 20.0,
                      "label_ts": d4 + pd.Timedelta(hours=2)}),  # never predicted
        pd.DataFrame({"order_id": unlabelled1.head(3), "actual_minutes": 30.0,
                      "label_ts": d4 + pd.Timedelta(hours=3)}),  # 3 days after day 1; delay is 2
        pd.DataFrame({"order_id": unlabelled2.tail(2), "actual_minutes": 25.0,
                      "label_ts": d4 + pd.Timedelta(days=2)}),  # observed after it arrived
    ], ignore_index=True)
    bad.to_parquet(w.label_file(4), index=False)

    new_home(tmp_path, small_demo, monkeypatch, "faulted")
    for ds in days:
        out = run_dag("eta_labels", ds)
        assert out.ok and {s for t, s in out.tasks.items() if t != "run_status"} == {"success"}, out.tasks
    issues = _label_issues(days[3])
    added = {k: v - clean_counts.get(k, 0) for k, v in issues["counts"].items()}
    assert added.get("duplicate") == 2 and added.get("conflict") == 1, added
    assert added.get("unknown_id") == 4 + 3 and added.get("future") == 2, added
    assert any("future" in m for m in issues["messages"]), issues["messages"]
    # the conflict's later value won: day 2's mae moved, and day 2 is the only day restated with it
    assert _quality(days[1]) != _quality_in(clean, days[1])

    good.to_parquet(w.label_file(4), index=False)
    assert run_dag("eta_labels", days[3]).ok
    assert dump("eta") == clean


def _label_issues(ds: str) -> dict:
    from watchkeeper.store import open_store

    return next(m.payload for m in open_store().metrics("eta", "quality", since=ds, until=ds))["label_issues"]


def _quality(ds: str) -> dict:
    from watchkeeper.store import open_store

    return next(m.payload for m in open_store().metrics("eta", "quality", since=ds, until=ds))["metrics"]


def _quality_in(d: dict, ds: str) -> dict:
    rows = [r for r in d["wk_metric"] if r["family"] == "quality" and r["ds"] == ds]
    return max(rows, key=lambda r: r["known_on"])["payload"]["metrics"]


# ----- infrastructure -------------------------------------------------------------------------------


def _home_without_training(tmp_path, small_demo, monkeypatch) -> Path:
    """A home whose demo/eta lacks training.parquet (the spec's reference dataset)."""
    home = tmp_path / "no_training"
    (home / "demo" / "eta").mkdir(parents=True)
    shared = Path(small_demo.home) / "demo"
    (home / "demo" / "fraud").symlink_to(shared / "fraud")
    for f in (shared / "eta").iterdir():
        if f.name != "training.parquet":
            (home / "demo" / "eta" / f.name).symlink_to(f)
    monkeypatch.setenv("WATCHKEEPER_HOME", str(home))
    return home


def test_a_missing_reference_dataset_is_reported_and_the_checks_still_run(
        eta, small_demo, run_dag, tmp_path, monkeypatch):
    d1 = eta.world.ds(1)
    home = _home_without_training(tmp_path, small_demo, monkeypatch)
    _all_succeeded(run_dag("eta_monitor", d1))  # reported, not a crash (retries cannot help)
    training = home / "demo" / "eta" / "training.parquet"
    for family in ("skew", "prediction", "coverage"):
        reason = metrics("eta", family, d1)["__dataset__"]["not_run"]
        assert f"{training}: the file does not exist" in reason and "reference.training in eta.yaml" in reason
    assert "reference_empty" in metrics("eta", "drift", d1)["__dataset__"]  # the window: unaffected
    day = slis("eta", d1)
    assert day["data_quality"].value is not None and day["freshness"].good is True
    assert "feature_drift" not in day and "prediction_stability" not in day  # unknown, not "good"

    (home / "demo" / "eta" / "training.parquet").symlink_to(
        Path(small_demo.home) / "demo" / "eta" / "training.parquet")
    _all_succeeded(run_dag("eta_monitor", d1))
    assert dump("eta") == only_days(eta.dump, d1)


def test_slack_down_keeps_alerts_pending_and_a_rerun_sends_each_once(eta, small_demo, run_dag,
                                                                      tmp_path, monkeypatch):
    from slack_fake import FakeSlack

    from watchkeeper import alerts
    from watchkeeper.store import open_store

    # Day 3 lands late (as in the clean world): its freshness finding is the message to send.
    # Days 1 and 2 run first, Slack down too: healthy days have nothing to send.
    d1, d3 = eta.world.ds(1), eta.world.ds(3)
    with FakeSlack() as gone:
        down_url = gone.base_url
    # the fake is stopped: its port refuses connections, as when Slack is down
    monkeypatch.setenv(alerts.ENV_TOKEN, gone.token)
    monkeypatch.setenv(alerts.ENV_BASE_URL, down_url)
    new_home(tmp_path, small_demo, monkeypatch, "faulted")
    for ds in (d1, eta.world.ds(2), d3):
        _all_succeeded(run_dag("eta_monitor", ds))  # the day's results do not depend on Slack
    # the messages to send (members of a group message and folded rows are not sent themselves)
    rows = [r for r in open_store().outbox("eta") if r.status not in ("grouped", "folded")]
    assert rows and {r.status for r in rows} == {"pending"}, rows
    assert {r.ds for r in rows} == {d3}, rows
    assert rows[0].attempts == 5 and "cannot reach Slack" in rows[0].last_error
    problems = alerts.delivery_problems(open_store(), "eta")
    assert problems and all(p["status"] == "pending" and not p["permanent"] for p in problems)
    clean_day = [r for r in eta.outbox if r[0] == d3]
    assert sorted(r[:3] for r in outbox("eta")) == sorted(r[:3] for r in eta.outbox)  # none lost

    with FakeSlack() as slack:  # Slack is back
        monkeypatch.setenv(alerts.ENV_BASE_URL, slack.base_url)
        _all_succeeded(run_dag("eta_monitor", d3))
        _all_succeeded(run_dag("eta_monitor", d3))  # a second re-run sends nothing new
        sent = [r for r in clean_day if r[3] == "sent"]
        assert sent and len(slack.posts) == len(sent) == len({p["text"] for p in slack.posts})
    assert outbox("eta") == eta.outbox
    d = dump("eta")
    assert d == only_days(eta.dump, d3)


@pytest.fixture
def pg_role_url(pg_schema):
    """The store in PostgreSQL under a role of its own, so the test can lock it out mid-run."""
    import uuid

    import psycopg
    from sqlalchemy.engine import make_url

    role = f"wk_chaos_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(pg_schema.conninfo, autocommit=True) as conn:
        conn.execute(f'CREATE ROLE "{role}" LOGIN')
        conn.execute(f'GRANT ALL ON SCHEMA "{pg_schema.name}" TO "{role}"')
    url = make_url(pg_schema.url).set(username=role).render_as_string(hide_password=False)

    def lock_out(locked: bool) -> None:
        with psycopg.connect(pg_schema.conninfo, autocommit=True) as conn:
            conn.execute(f'ALTER ROLE "{role}" {"NOLOGIN" if locked else "LOGIN"}')
            if locked:
                conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s",
                             (role,))

    yield url, lock_out
    from watchkeeper.store import close_all_stores

    close_all_stores()
    with psycopg.connect(pg_schema.conninfo, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{pg_schema.name}" CASCADE')
        conn.execute(f'DROP OWNED BY "{role}"')
        conn.execute(f'DROP ROLE "{role}"')


def test_the_store_unreachable_mid_run_fails_loudly_loses_nothing_and_heals(
        eta, small_demo, run_dag, tmp_path, monkeypatch, pg_role_url, capfd):
    from watchkeeper.airflow import callbacks

    url, lock_out = pg_role_url
    d1 = eta.world.ds(1)
    new_home(tmp_path, small_demo, monkeypatch, "faulted")
    monkeypatch.setenv("WATCHKEEPER_DB_URL", url)
    record = callbacks.record_task_success

    def then_cut_the_store(context):  # right after `load` committed its partition
        record(context)
        if context["ti"].task_id == "load":
            lock_out(True)

    monkeypatch.setattr(callbacks, "record_task_success", then_cut_the_store)
    out = run_dag("eta_monitor", d1)
    monkeypatch.setattr(callbacks, "record_task_success", record)
    assert out.tasks["load"] == "success"
    assert out.tasks["check_ingestion"] == "failed", out.tasks
    assert out.tasks["record_slis"] == "upstream_failed"  # no SLI computed from half a day
    logs = capfd.readouterr()
    text = logs.out + logs.err
    assert "watchkeeper store" in text and "is unavailable" in text and "not permitted to log in" in text

    lock_out(False)
    assert partition("eta", d1).status == "ok"  # what was committed before the cut is intact
    assert stage("eta", d1, "ingestion") is None  # and nothing half-written after it
    _all_succeeded(run_dag("eta_monitor", d1))
    assert dump("eta") == only_days(eta.dump, d1)


# ----- a task killed mid-write ----------------------------------------------------------------------


def _day_rows(model: str, ds: str) -> dict:
    """Every stored row of one day, per table (run timings aside)."""
    return {t: rows for t, all_rows in dump(model).items()
            if (rows := [r for r in all_rows if r.get("ds") == ds])}


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_a_task_killed_inside_a_store_write_leaves_nothing_half_written_and_heals(
        eta, small_demo, run_dag, tmp_path, monkeypatch, request, backend):
    import signal

    from watchkeeper import history
    from watchkeeper.store import open_store

    d1 = eta.world.ds(1)
    new_home(tmp_path, small_demo, monkeypatch, "killed")
    if backend == "postgresql":
        monkeypatch.setenv("WATCHKEEPER_DB_URL", request.getfixturevalue("pg_url"))

    # check_ingestion killed inside its write: the stage row is upserted, its expectation results
    # are not, nothing is committed. What `load` committed before stays.
    k = kill_mid_write("eta", d1, ["load", "check:ingestion"], "write_stage:ingestion")
    assert k.returncode == -signal.SIGKILL and "wk_stage_result" in k.hung, k
    rows = _day_rows("eta", d1)
    assert set(rows) == {"wk_partition"} and rows["wk_partition"][0]["status"] == "ok", rows
    shown = history.build_days("eta", open_store(), [d1])[0]
    assert shown["stages"] == {} and shown["slis"] == {}  # not known yet, not "passed 0 of 0"

    # record_slis killed inside the budget write, after its SLI upsert: the day's SLIs and the
    # budget snapshots evaluated from them are one transaction, so neither is visible; the
    # stages before it are complete sets
    k = kill_mid_write("eta", d1, ["load", "check:ingestion", "check:features", "record_slis"],
                       "write_metrics:budget")
    assert k.returncode == -signal.SIGKILL and "wk_metric" in k.hung, k
    rows = _day_rows("eta", d1)
    assert set(rows) == {"wk_partition", "wk_stage_result", "wk_expectation_result"}, rows.keys()
    assert {s["stage"] for s in rows["wk_stage_result"]} == {"ingestion", "features"}
    for s in rows["wk_stage_result"]:
        results = [e for e in rows["wk_expectation_result"] if e["stage"] == s["stage"]]
        assert s["evaluated"] == len(results) > 0, s

    # the re-run finds no lock held and no half-day in its way
    _all_succeeded(run_dag("eta_monitor", d1))
    assert dump("eta") == only_days(eta.dump, d1)


def test_a_task_killed_half_way_through_a_file_leaves_no_partial_file_and_heals(
        eta, small_demo, run_dag, tmp_path, monkeypatch):
    import signal

    from watchkeeper import analysis, monitor
    from watchkeeper.spec import get_spec
    from watchkeeper.store import open_store

    d1 = eta.world.ds(1)
    new_home(tmp_path, small_demo, monkeypatch, "killed")

    # a drift_features task killed half-way through its part: the part is absent, not truncated,
    # and the merge says which group is missing and what to re-run
    k = kill_mid_write("eta", d1, ["part:drift:0"], "part")
    folder = analysis.parts_dir("eta", d1, "drift")
    assert k.returncode == -signal.SIGKILL and str(folder) in k.hung, k
    assert [p.name for p in folder.iterdir() if not p.name.endswith(".tmp")] == []
    with pytest.raises(analysis.DriftPartsMissing) as err:
        analysis.merge_drift_groups(get_spec("eta"), d1, open_store(), "drift")
    assert "group-00.pkl (FileNotFoundError)" in str(err.value)
    assert "re-run the drift_features tasks of this day" in str(err.value)
    assert _day_rows("eta", d1) == {}

    _all_succeeded(run_dag("eta_monitor", d1))
    assert dump("eta") == only_days(eta.dump, d1)

    # a re-run of load killed half-way through staging the batch: the staged copy is still the
    # complete one (the partial bytes are only in a temp file no reader opens), the store as clean
    batch = monitor.batch_path("eta", d1)
    staged = batch.read_bytes()
    k = kill_mid_write("eta", d1, ["load"], "batch")
    assert k.returncode == -signal.SIGKILL and str(batch.parent) in k.hung, k
    assert batch.read_bytes() == staged
    assert len(pd.read_parquet(batch)) == len(eta.batches[1])
    leftovers = [p for p in batch.parent.iterdir() if p != batch]
    assert leftovers and all(".tmp" in p.name for p in leftovers), leftovers
    assert dump("eta") == only_days(eta.dump, d1)
