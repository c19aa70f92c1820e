"""watchkeeper.store on SQLite and PostgreSQL: migrations, idempotent writes, set replacement,
as-known-on reads, events, errors, concurrent first use."""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import psycopg
import pytest
import sqlalchemy as sa

from conftest import PgSchema, subprocess_env
from watchkeeper import store as wk
from watchkeeper.store import (
    HEAD_REVISION,
    VERSION_TABLE,
    Event,
    ExpectationRecord,
    MetricRecord,
    PartitionRecord,
    RunRecord,
    SliRecord,
    StageRecord,
    StoreError,
    StoreMigrationError,
    StoreUnavailable,
    StoreValueError,
    open_store,
)

WK_TABLES = {
    "wk_partition", "wk_stage_result", "wk_expectation_result", "wk_sli_value", "wk_metric",
    "wk_event", "wk_run", "wk_outbox",
}
D1, D2, D3, D4 = "2026-03-01", "2026-03-02", "2026-03-03", "2026-03-04"
CET = timezone(timedelta(hours=1))


def write_day(store: wk.Store, model: str = "fraud", ds: str = D1) -> None:
    """Everything the monitor DAG writes for one day, as one clean run would."""
    store.write_partition(PartitionRecord(
        model=model, ds=ds, source=f"include/demo/{model}/{ds}.parquet", status="late",
        rows=1200, landed_at=datetime(2026, 3, 1, 7, 30, tzinfo=CET),
        deadline=datetime(2026, 3, 1, 6, 0, tzinfo=UTC), lateness_hours=0.5,
        message="landed 0.5 h after the deadline",
    ))
    store.write_stage(model, ds, StageRecord(
        stage="ingestion", success=False, evaluated=3, passed=2, row_count=1200,
        report_path=f"reports/{model}/{ds}/ingestion.html",
    ), [
        ExpectationRecord(expectation_id="rows", success=True, observed=1200,
                          expectation_type="expect_table_row_count_to_be_between",
                          details={"min_value": 1000}),
        ExpectationRecord(expectation_id="amount_not_null", column="amount", success=False,
                          expectation_type="expect_column_values_to_not_be_null",
                          unexpected_count=60, unexpected_share=0.05, element_count=1200,
                          details={"partial_unexpected_list": [None, None]}),
        ExpectationRecord(expectation_id="country_in_set", column="country", success=True,
                          expectation_type="expect_column_values_to_be_in_set",
                          unexpected_count=0, unexpected_share=0.0, element_count=1200),
    ])
    store.write_slis(model, ds, [
        SliRecord(ds=ds, sli="data_quality", good_events=2, total_events=3),
        SliRecord(ds=ds, sli="freshness", value=0.5, good=False),
    ])
    store.write_metrics(model, ds, "drift", ds, [
        MetricRecord(subject="amount", value=0.31,
                     payload={"method": "wasserstein", "drifted": True}),
        MetricRecord(subject="country", value=0.02,
                     payload={"method": "jensenshannon", "drifted": False}),
    ])
    store.record_event(model, "alert", f"data_quality|{ds}", ds, {"severity": "page"})
    store.record_run(RunRecord(
        model=model, ds=ds, dag_id=f"wk_monitor_{model}", task_id="validate_ingestion",
        state="success", try_number=1, started_at=datetime(2026, 3, 2, 1, tzinfo=UTC),
        duration_seconds=2.5,
    ))


def exp(eid: str, success: bool = True, **kw) -> ExpectationRecord:
    return ExpectationRecord(expectation_id=eid, expectation_type="expect_x", success=success, **kw)


def stage(name: str = "ingestion", **kw) -> StageRecord:
    return StageRecord(**{"stage": name, "success": True, "evaluated": 1, "passed": 1, **kw})


def table_names(url: str) -> set[str]:
    engine = sa.create_engine(url)
    try:
        return set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


def version_rows(url: str, table: str = VERSION_TABLE) -> list[str]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return list(conn.execute(sa.text(f"SELECT version_num FROM {table}")).scalars())
    finally:
        engine.dispose()


# --------------------------------------------------------------------------------------------
# Migrations
# --------------------------------------------------------------------------------------------


def test_first_use_migrates_with_own_version_table(store_url):
    assert not table_names(store_url) & (WK_TABLES | {VERSION_TABLE})
    store = open_store(store_url)
    assert table_names(store_url) == WK_TABLES | {VERSION_TABLE}
    assert VERSION_TABLE == "watchkeeper_alembic_version"
    assert version_rows(store_url) == [HEAD_REVISION]
    assert open_store(store_url) is store  # cached per URL
    store.close()
    reopened = open_store(store_url)
    assert reopened is not store and reopened.models() == []


def test_head_revision_constant_matches_migration_scripts():
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", str(wk.MIGRATIONS_DIR))
    assert ScriptDirectory.from_config(cfg).get_current_head() == HEAD_REVISION


def test_migrated_schema_matches_table_definitions(store):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    with store.engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
        assert compare_metadata(ctx, wk.metadata) == []


def test_shares_a_database_with_another_alembic_history(store_url):
    # Airflow's metadata DB has its own alembic_version; the store must neither read nor touch it.
    engine = sa.create_engine(store_url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)"))
        conn.execute(sa.text("INSERT INTO alembic_version VALUES ('airflow_3_3_head')"))
    engine.dispose()
    open_store(store_url)
    assert version_rows(store_url, "alembic_version") == ["airflow_3_3_head"]
    assert version_rows(store_url) == [HEAD_REVISION]


def test_reopen_at_head_is_one_query_without_alembic(store_url):
    open_store(store_url)
    wk.close_all_stores()
    code = textwrap.dedent("""
        import sys, time
        from watchkeeper.store import open_store
        t0 = time.perf_counter()
        store = open_store(sys.argv[1])
        print(round(time.perf_counter() - t0, 3), "alembic" in sys.modules, store.models())
    """)
    out = subprocess.run([sys.executable, "-c", code, store_url], capture_output=True,
                         text=True, timeout=120, env=subprocess_env())
    assert out.returncode == 0, out.stderr
    seconds, alembic_loaded, models = out.stdout.split(maxsplit=2)
    assert alembic_loaded == "False", "an up-to-date store must not load Alembic"
    assert models.strip() == "[]"
    print(f"open_store on an up-to-date {store_url.split(':')[0]} store: {seconds} s")


def test_unknown_revision_fails_with_a_migration_error(store_url):
    engine = sa.create_engine(store_url)
    with engine.begin() as conn:
        conn.execute(sa.text(f"CREATE TABLE {VERSION_TABLE} (version_num VARCHAR(32) NOT NULL)"))
        conn.execute(sa.text(f"INSERT INTO {VERSION_TABLE} VALUES ('9999')"))
    engine.dispose()
    with pytest.raises(StoreMigrationError) as info:
        open_store(store_url)
    message = str(info.value)
    assert "from revision 9999" in message and HEAD_REVISION in message
    assert VERSION_TABLE in message


@pytest.mark.postgres
def test_postgres_tables_land_in_the_search_path_schema(pg_schema: PgSchema):
    store = open_store(pg_schema.url)
    write_day(store)
    with psycopg.connect(pg_schema.conninfo) as conn:
        rows = conn.execute(
            "SELECT table_schema, table_name FROM information_schema.tables "
            "WHERE table_name LIKE 'wk\\_%%' OR table_name LIKE 'watchkeeper%%'"
        ).fetchall()
        in_schema = {name for schema, name in rows if schema == pg_schema.name}
        assert in_schema == WK_TABLES | {VERSION_TABLE}
        public = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
        ).fetchall()
        assert public == [], f"leaked into public: {public}"
        sequences = conn.execute(
            "SELECT sequence_schema FROM information_schema.sequences "
            "WHERE sequence_name LIKE 'wk\\_%%'"
        ).fetchall()
        assert sequences == [(pg_schema.name,)]


def test_concurrent_first_use_from_two_processes(store_url, tmp_path):
    """Processes import first, then open the fresh store at the same instant (file barrier).

    Verified to fail without the migration lock (pg_advisory_xact_lock / BEGIN IMMEDIATE) and
    the re-check: "duplicate key ... pg_type_typname_nsp_index", "database is locked".
    """
    processes = 2
    code = textwrap.dedent("""
        import sys, time, pathlib
        from watchkeeper.store import open_store, PartitionRecord
        url, barrier, i = sys.argv[1], pathlib.Path(sys.argv[2]), sys.argv[3]
        (barrier / f"ready{i}").touch()
        while not (barrier / "go").exists():
            time.sleep(0.002)
        store = open_store(url)
        store.write_partition(PartitionRecord(model=f"m{i}", ds="2026-03-01", source="s",
                                              status="ok", rows=int(i)))
        print("ok")
    """)
    procs = [
        subprocess.Popen([sys.executable, "-c", code, store_url, str(tmp_path), str(i)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env=subprocess_env())
        for i in range(processes)
    ]
    try:
        deadline = time.monotonic() + 120
        while len(list(tmp_path.glob("ready*"))) < processes:
            assert time.monotonic() < deadline, "workers did not start"
            assert all(p.poll() is None for p in procs), [p.communicate() for p in procs]
            time.sleep(0.01)
        (tmp_path / "go").touch()
        results = [p.communicate(timeout=120) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for p, (out, err) in zip(procs, results, strict=True):
        assert p.returncode == 0 and out.strip() == "ok", err
    assert version_rows(store_url) == [HEAD_REVISION]
    assert open_store(store_url).models() == [f"m{i}" for i in range(processes)]


# --------------------------------------------------------------------------------------------
# Idempotent writes and set replacement
# --------------------------------------------------------------------------------------------


def test_rerunning_a_day_leaves_the_store_as_one_clean_run(store, tmp_path):
    clean = open_store(f"sqlite:///{tmp_path / 'clean.db'}")
    write_day(clean)
    write_day(clean, ds=D2)

    write_day(store)
    first = store.partitions("fraud")[0].updated_at
    write_day(store, ds=D2)
    write_day(store)  # retry of D1 after D2 ran: a backfill-like re-run
    write_day(store, ds=D2)

    dumped = store.dump()
    assert dumped == clean.dump()  # also across backends when `store` is PostgreSQL
    assert {table: len(rows) for table, rows in dumped.items()} == {
        "wk_partition": 2, "wk_stage_result": 2, "wk_expectation_result": 6,
        "wk_sli_value": 4, "wk_metric": 4, "wk_event": 2, "wk_run": 2,
    }
    # The second write really wrote (upsert, not insert-or-ignore)...
    assert store.partitions("fraud")[0].updated_at > first
    # ...and dump() hides exactly that difference.
    assert "updated_at" not in dumped["wk_partition"][0]


def test_upsert_replaces_changed_values(store):
    write_day(store)
    store.write_partition(PartitionRecord(model="fraud", ds=D1, source="s2", status="ok",
                                          rows=1300, message=""))
    (part,) = store.partitions("fraud")
    assert (part.status, part.rows, part.source, part.landed_at, part.lateness_hours) == (
        "ok", 1300, "s2", None, None)
    store.record_run(RunRecord(model="fraud", ds=D1, dag_id="wk_monitor_fraud",
                               task_id="validate_ingestion", state="failed", try_number=2,
                               error="boom"))
    (run,) = store.runs("fraud")
    assert (run.state, run.try_number, run.error, run.started_at) == ("failed", 2, "boom", None)


def test_write_stage_replaces_the_expectation_set(store):
    store.write_stage("fraud", D1, stage(), [exp("a"), exp("b"), exp("c")])
    store.write_stage("fraud", D1, stage("features"), [exp("x")])
    store.write_stage("fraud", D2, stage(), [exp("a")])

    store.write_stage("fraud", D1, stage(success=False, evaluated=2, passed=1),
                      [exp("a", success=False, observed=7), exp("d")])

    got = {(r.ds, r.stage, r.expectation_id): (r.success, r.observed)
           for r in store.expectation_results("fraud")}
    assert got == {
        (D1, "features", "x"): (True, None),
        (D1, "ingestion", "a"): (False, 7),
        (D1, "ingestion", "d"): (True, None),
        (D2, "ingestion", "a"): (True, None),
    }
    ingestion_d1 = [s for s in store.stage_results("fraud") if (s.ds, s.stage) == (D1, "ingestion")]
    assert [(s.success, s.evaluated, s.passed) for s in ingestion_d1] == [(False, 2, 1)]

    store.write_stage("fraud", D1, stage(error="suite file missing", evaluated=0, passed=0), [])
    assert [(r.stage, r.expectation_id) for r in store.expectation_results("fraud", ds=D1)] == [
        ("features", "x")]


def test_write_metrics_replaces_the_set_of_one_known_on(store):
    store.write_metrics("fraud", D1, "drift", D1, [MetricRecord(subject="amount", value=0.1),
                                                   MetricRecord(subject="country", value=0.2)])
    store.write_metrics("fraud", D1, "drift", D3, [MetricRecord(subject="amount", value=0.3)])
    store.write_metrics("fraud", D1, "skew", D1, [MetricRecord(subject="amount", value=0.9)])

    store.write_metrics("fraud", D1, "drift", D1, [MetricRecord(subject="amount", value=0.11),
                                                   MetricRecord(subject="age", value=0.4)])
    rows = {(r["family"], r["known_on"], r["subject"]): r["value"]
            for r in store.dump()["wk_metric"]}
    assert rows == {
        ("drift", D1, "age"): 0.4, ("drift", D1, "amount"): 0.11,
        ("drift", D3, "amount"): 0.3, ("skew", D1, "amount"): 0.9,
    }


def test_transaction_makes_several_writes_atomic(store):
    store.write_stage("fraud", D1, stage(), [exp("a"), exp("b")])
    before = store.dump()

    with pytest.raises(RuntimeError, match="after the writes"):
        with store.transaction() as conn:
            store.write_stage("fraud", D1, stage(success=False), [exp("c")], conn=conn)
            store.write_partition(PartitionRecord(model="fraud", ds=D1, source="s",
                                                  status="missing"), conn=conn)
            store.record_event("fraud", "alert", "x", D1, conn=conn)
            store.append_event("fraud", "gate_decision", D1, conn=conn)
            raise RuntimeError("failure after the writes")
    assert store.dump() == before

    with store.transaction() as conn:
        store.write_stage("fraud", D1, stage(success=False), [exp("c")], conn=conn)
        store.record_event("fraud", "alert", "x", D1, conn=conn)
    assert [r.expectation_id for r in store.expectation_results("fraud")] == ["c"]
    assert [e.subject for e in store.events("fraud")] == ["x"]


# --------------------------------------------------------------------------------------------
# As known on: restatements of past days
# --------------------------------------------------------------------------------------------


def test_slis_as_known_on_follow_restatements(store):
    # Monitor run of D1 and D2 (known the same day), labels runs on D3 and D4 restate D1.
    store.write_slis("fraud", D1, [SliRecord(ds=D1, sli="accuracy", value=0.50, provisional=True),
                                   SliRecord(ds=D1, sli="freshness", value=0.0, good=True)])
    store.write_slis("fraud", D2, [SliRecord(ds=D2, sli="accuracy", value=0.70, provisional=True)])
    store.write_slis("fraud", D3, [SliRecord(ds=D1, sli="accuracy", value=0.80, provisional=True),
                                   SliRecord(ds=D2, sli="accuracy", value=0.75, provisional=True)])
    store.write_slis("fraud", D4, [SliRecord(ds=D1, sli="accuracy", value=0.85)])

    def view(as_known_on):
        return {(s.ds, s.sli): (s.value, s.known_on, s.provisional)
                for s in store.slis("fraud", as_known_on=as_known_on)}

    assert view("2026-02-28") == {}
    assert view(D1) == {(D1, "accuracy"): (0.50, D1, True), (D1, "freshness"): (0.0, D1, False)}
    assert view(D2) == {**view(D1), (D2, "accuracy"): (0.70, D2, True)}
    assert view(D3) == {(D1, "accuracy"): (0.80, D3, True), (D1, "freshness"): (0.0, D1, False),
                        (D2, "accuracy"): (0.75, D3, True)}
    latest = {**view(D3), (D1, "accuracy"): (0.85, D4, False)}
    assert view(D4) == latest
    assert view(None) == latest
    only = store.slis("fraud", sli="accuracy", since=D2, until=D2)
    assert [(s.ds, s.sli, s.value) for s in only] == [(D2, "accuracy", 0.75)]
    # All four restatement rows stay stored: the past is rebuildable.
    assert len(store.dump()["wk_sli_value"]) == 6


def test_metrics_as_known_on_read_whole_sets(store):
    store.write_metrics("fraud", D1, "quality", D2, [
        MetricRecord(subject="auc", value=0.8), MetricRecord(subject="auc|country=DE", value=0.7),
    ])
    store.write_metrics("fraud", D1, "quality", D4, [MetricRecord(subject="auc", value=0.82)])
    store.write_metrics("fraud", D2, "quality", D3, [MetricRecord(subject="auc", value=0.6)])
    store.write_metrics("fraud", D1, "drift", D1, [MetricRecord(subject="amount", value=0.1)])

    def view(as_known_on):
        return {(m.ds, m.subject): (m.value, m.known_on)
                for m in store.metrics("fraud", "quality", as_known_on=as_known_on)}

    assert view(D1) == {}
    assert view(D3) == {(D1, "auc"): (0.8, D2), (D1, "auc|country=DE"): (0.7, D2),
                        (D2, "auc"): (0.6, D3)}
    # The D4 restatement of D1 has no DE segment: it is not resurrected from D2's set.
    assert view(D4) == {(D1, "auc"): (0.82, D4), (D2, "auc"): (0.6, D3)}
    assert view(None) == view(D4)
    assert [m.ds for m in store.metrics("fraud", "quality", since=D2)] == [D2]


# --------------------------------------------------------------------------------------------
# Events, runs and the small reads
# --------------------------------------------------------------------------------------------


def test_record_event_is_idempotent_on_its_unique_key(store):
    first = store.record_event("fraud", "deployment", "v7", D1, {"by": "ci"}, created_by="ci")
    again = store.record_event("fraud", "deployment", "v7", D1, {"by": "someone else"})
    assert first.inserted and not again.inserted
    assert again.event == first.event  # the first write wins, the duplicate is ignored
    assert first.event.payload == {"by": "ci"} and first.event.created_by == "ci"
    assert store.record_event("fraud", "deployment", "v7", D2).inserted  # other day
    assert store.record_event("fraud", "override", "v7", D1).inserted  # other kind
    assert store.record_event("delivery", "deployment", "v7", D1).inserted  # other model

    a = store.append_event("fraud", "gate_decision", D2, {"decision": "closed"})
    b = store.append_event("fraud", "gate_decision", D2, {"decision": "closed"})
    assert a.id != b.id and a.subject != b.subject
    store.append_event("fraud", "gate_decision", D3, subject="ask-1")
    with pytest.raises(StoreError, match="already exists") as info:
        store.append_event("fraud", "gate_decision", D3, subject="ask-1")
    assert "subject=ask-1" in str(info.value) and "ds=2026-03-03" in str(info.value)

    decisions = store.events("fraud", kinds="gate_decision")
    assert [(e.ds, e.payload) for e in decisions[:2]] == [(D2, {"decision": "closed"})] * 2
    assert len(decisions) == 3
    assert [(e.kind, e.ds) for e in store.events("fraud", kinds=["deployment", "override"],
                                                 since=D1, until=D1)] == [
        ("deployment", D1), ("override", D1)]
    assert all(isinstance(e, Event) and e.created_at.tzinfo is UTC
               for e in store.events("fraud"))


def test_models_newest_ds_and_trailing_row_counts(store):
    assert store.models() == [] and store.newest_ds("fraud") is None
    statuses = {"2026-02-24": ("ok", 100), "2026-02-25": ("late", 110),
                "2026-02-26": ("missing", None), "2026-02-27": ("empty", 0),
                "2026-02-28": ("unreadable", None), D1: ("ok", 130), D2: ("ok", 140)}
    for ds, (status, rows) in statuses.items():
        store.write_partition(PartitionRecord(model="fraud", ds=ds, source="s", status=status,
                                              rows=rows))
    store.write_slis("delivery", D1, [SliRecord(ds=D1, sli="freshness", value=1.0)])
    assert store.models() == ["delivery", "fraud"]
    assert store.newest_ds("fraud") == D2
    assert store.newest_ds("delivery") is None  # SLIs alone are not a processed monitor day
    assert store.trailing_row_counts("fraud", D2) == [130, 110, 100]
    assert store.trailing_row_counts("fraud", D2, n=2) == [130, 110]
    assert store.trailing_row_counts("fraud", "2026-02-24") == []
    assert store.dump(model="delivery")["wk_partition"] == []


def test_partition_partial_record_round_trips_and_null_stays_null(store):
    judged = {"partial": True, "rows": 42, "expected": 165.0, "basis": "trailing_median",
              "fraction": 0.5, "reason": "partial day: 42 rows vs 165 expected",
              "known_days": 7, "covered_share": None, "first_event": "00:03",
              "last_event": "05:58"}
    store.write_partition(PartitionRecord(model="fraud", ds=D1, source="s", status="ok",
                                          rows=42, partial=judged))
    store.write_partition(PartitionRecord(model="fraud", ds=D2, source="s", status="missing"))
    assert store.partition("fraud", D1).partial == judged
    assert store.partition("fraud", D2).partial is None
    assert store.partition("fraud", D3) is None and store.partition("eta", D1) is None
    # "not judged" is SQL NULL on both backends (not the JSON text 'null')
    with store.engine.connect() as conn:
        nulls = conn.execute(sa.text("SELECT count(*) FROM wk_partition WHERE partial IS NULL"))
        assert nulls.scalar() == 1
    assert [p.partial for p in store.partitions("fraud")] == [judged, None]


def test_upgrade_from_0002_keeps_partitions_and_reads_them_as_not_judged(store_url):
    """A store in the field at revision 0002 gains wk_partition.partial; its rows read None."""
    from alembic import command

    engine = sa.create_engine(store_url)
    with engine.begin() as conn:
        command.upgrade(wk._alembic_config(conn), "0002")
        conn.execute(sa.text(
            "INSERT INTO wk_partition (model, ds, source, rows, status, message, updated_at) "
            "VALUES ('fraud', :ds, 's', 120, 'ok', '', :now)"), {"ds": D1, "now": datetime.now(UTC)})
    engine.dispose()
    assert version_rows(store_url) == ["0002"]
    store = open_store(store_url)
    assert version_rows(store_url) == [HEAD_REVISION]
    (old,) = store.partitions("fraud")
    assert old.rows == 120 and old.partial is None


def test_values_are_normalised_and_round_trip_identically(store):
    rec = ExpectationRecord(
        expectation_id="amount_mean", expectation_type="expect_column_mean_to_be_between",
        success=np.bool_(True), column="amount", observed=np.float64("nan"),
        unexpected_count=np.int64(3), unexpected_share=np.float32(0.25),
        element_count=12.0,
        details={"quantiles": np.array([1.5, 2.5]), "bounds": (1, None), 7: "seven",
                 "when": datetime(2026, 3, 1, 1, tzinfo=CET), "inf": float("inf")},
    )
    assert rec.observed is None and rec.unexpected_count == 3 and rec.element_count == 12
    assert rec.details == {"quantiles": [1.5, 2.5], "bounds": [1, None], "7": "seven",
                           "when": "2026-03-01T00:00:00+00:00", "inf": None}
    store.write_stage("fraud", D1, stage(), [rec])
    (back,) = store.expectation_results("fraud")
    assert {k: getattr(back, k) for k in wk._fields_of(ExpectationRecord)} == {
        k: getattr(rec, k) for k in wk._fields_of(ExpectationRecord)}

    sli = SliRecord(ds=D1, sli="psi", value=float("nan"), good=np.bool_(False))
    store.write_slis("fraud", D1, [sli])
    (got,) = store.slis("fraud")
    assert got.value is None and got.good is False and got.known_on == D1

    landed = datetime(2026, 3, 1, 7, 30, tzinfo=CET)
    store.write_partition(PartitionRecord(model="fraud", ds=D1, source="s", status="ok",
                                          landed_at=landed))
    (part,) = store.partitions("fraud")
    assert part.landed_at == landed and part.landed_at.tzinfo is UTC
    assert part.landed_at.hour == 6


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("build, names", [
    (lambda: PartitionRecord(model="fraud", ds="2026-3-1", source="s", status="ok"),
     ["PartitionRecord(model='fraud', ds='2026-3-1').ds", "'YYYY-MM-DD'"]),
    (lambda: PartitionRecord(model="fraud", ds="2026-02-30", source="s", status="ok"),
     [".ds", "real calendar date"]),
    (lambda: PartitionRecord(model="fraud", ds=datetime(2026, 3, 1, tzinfo=UTC), source="s",
                             status="ok"),
     [".ds", "not a datetime"]),
    (lambda: PartitionRecord(model="fraud", ds=D1, source="s", status="stale"),
     [".status", "one of ok, late, missing, unreadable, empty", "'stale'"]),
    (lambda: PartitionRecord(model="fraud", ds=D1, source="s", status="ok",
                             landed_at=datetime(2026, 3, 1, 6)),
     [".landed_at", "timezone-aware"]),
    (lambda: PartitionRecord(model="", ds=D1, source="s", status="ok"),
     [".model", "non-empty string"]),
    (lambda: StageRecord(stage="ingestion", success=1, evaluated=1, passed=1),
     ["StageRecord(stage='ingestion').success", "a bool"]),
    (lambda: StageRecord(stage="ingestion", success=True, evaluated=1.5, passed=1),
     [".evaluated", "an integer"]),
    (lambda: ExpectationRecord(expectation_id="e", expectation_type="t", success=True,
                               details={"obj": object()}),
     ["ExpectationRecord(expectation_id='e').details['obj']", "JSON-serialisable"]),
    (lambda: MetricRecord(subject="amount", value="high"),
     ["MetricRecord(subject='amount').value", "a number"]),
])
def test_malformed_records_name_the_field(build, names):
    with pytest.raises(StoreValueError) as info:
        build()
    for name in names:
        assert name in str(info.value)


def test_malformed_writes_name_the_key_and_write_nothing(store):
    with pytest.raises(StoreValueError, match=r"items 0 and 2 share expectation_id='a'"):
        store.write_stage("fraud", D1, stage(), [exp("a"), exp("b"), exp("a")])
    with pytest.raises(StoreValueError, match=r"SliRecord\(ds='2026-03-02', sli='acc'\)\.ds is "
                                              r"after ds_known_on"):
        store.write_slis("fraud", D1, [SliRecord(ds=D2, sli="acc", value=1.0)])
    with pytest.raises(StoreValueError, match="ds is after known_on"):
        store.write_metrics("fraud", D2, "quality", D1, [])
    with pytest.raises(StoreValueError, match=r"write_metrics\(model='fraud'.*item 0: expected "
                                              r"a MetricRecord"):
        store.write_metrics("fraud", D1, "drift", D1, [{"subject": "amount"}])
    with pytest.raises(StoreValueError, match=r"write_stage\(ds\)"):
        store.write_stage("fraud", "yesterday", stage(), [])
    assert all(rows == [] for rows in store.dump().values())


def test_unreachable_postgres_is_store_unavailable_with_password_masked():
    url = "postgresql+psycopg://watch:s3cr3t-pw@127.0.0.1:1/test"
    with pytest.raises(StoreUnavailable) as info:
        open_store(url)
    message = str(info.value)
    assert "s3cr3t-pw" not in message and "s3cr3t-pw" not in repr(info.value)
    assert message.startswith(
        "watchkeeper store postgresql+psycopg://watch:***@127.0.0.1:1/test is unavailable: ")
    assert "refused" in message.lower() or "failed" in message.lower()
    assert info.value.url == "postgresql+psycopg://watch:***@127.0.0.1:1/test"
    assert isinstance(info.value, StoreError)


def test_unopenable_sqlite_is_store_unavailable(tmp_path):
    url = f"sqlite:///{tmp_path / 'no-such-dir' / 'watchkeeper.db'}"
    with pytest.raises(StoreUnavailable, match="unable to open database file"):
        open_store(url)


def test_bad_urls_are_store_errors():
    with pytest.raises(StoreError, match="unsupported database 'mysql'") as info:
        open_store("mysql://root:hunter2@127.0.0.1/wk")
    assert "hunter2" not in str(info.value)
    with pytest.raises(StoreError, match="invalid watchkeeper store URL in the url argument"
                       ) as info:
        open_store("not a url :hunter2@")
    assert "hunter2" not in str(info.value)


def test_invalid_url_from_the_environment_names_the_variable(monkeypatch):
    monkeypatch.setenv("WATCHKEEPER_DB_URL", "postgres ql://u:hunter2@h/db")
    with pytest.raises(StoreError, match="invalid watchkeeper store URL in WATCHKEEPER_DB_URL"
                       ) as info:
        open_store()
    assert "hunter2" not in str(info.value)


@pytest.mark.postgres
def test_store_url_never_shows_the_password(pg_schema: PgSchema):
    # Trust authentication accepts (and ignores) the password: a real, reachable store.
    url = pg_schema.url.replace("postgres@", "postgres:Sup3r-s3cret@")
    store = open_store(url)
    for shown in (store.url, repr(store), str(store), f"{store.url}"):
        assert "Sup3r-s3cret" not in shown and "postgres:***@" in shown
    assert "password=***" in wk.mask_url("postgresql://h/db?password=Sup3r-s3cret")


def test_default_url_is_sqlite_in_watchkeeper_home(tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("WATCHKEEPER_HOME", str(home))
    assert wk.resolve_url() == f"sqlite:///{home / 'watchkeeper.db'}"
    store = open_store()
    assert (home / "watchkeeper.db").exists() and store.url.endswith("watchkeeper.db")
    other = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    monkeypatch.setenv("WATCHKEEPER_DB_URL", other)
    assert open_store() is open_store(other) is not store
    assert Path(tmp_path / "elsewhere.db").exists()


def test_json_safe_rejects_what_json_cannot_hold():
    with pytest.raises(StoreValueError, match=r"payload\[0\]: expected a timezone-aware"):
        wk.json_safe([datetime(2026, 3, 1)], "payload")
    assert wk.json_safe({"a": {1, 2}, "b": np.int8(4), "c": math.nan}) == {
        "a": [1, 2], "b": 4, "c": None}


@pytest.mark.postgres
def test_postgres_store_survives_dropped_connections(pg_schema: PgSchema):
    # Long-lived processes (the API server's gate endpoint) outlive server-side disconnects;
    # the pool must reconnect instead of failing the next call.
    url = f"{pg_schema.url}&application_name={pg_schema.name}"
    store = open_store(url)
    write_day(store)
    with psycopg.connect(pg_schema.conninfo, autocommit=True) as admin:
        killed = admin.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE application_name = %s", (pg_schema.name,)).fetchone()[0]
    assert killed >= 1
    write_day(store, ds=D2)
    assert [p.ds for p in store.partitions("fraud")] == [D1, D2]
