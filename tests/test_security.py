"""Security guarantees (issue 9, part 3), each shown on real parts:

- secrets (Slack bot token, database passwords in WATCHKEEPER_DB_URL, in a spec's SQL URL and in
  an Airflow connection) never reach logs, Airflow task output, XCom, reports, the store, the
  outbox or exception messages;
- values of `pii: true` columns never reach findings, GX unexpected-value lists, reports, the
  outbox or Slack;
- SQL identifiers from specs are validated, values are bound, and a ds that is not a date is
  refused before any SQL runs;
- the HTTP endpoints need the API server's authenticated user, and an override made there
  records that user.

The first two run one small world once per module through the real monitor and labels DAGs
(`dag.test()`), with the predictions in PostgreSQL (push-down on), the labels behind an Airflow
connection, the store in PostgreSQL and alerts to a fake Slack, then grep every artefact.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import sys
import uuid
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pandas as pd
import pytest
import yaml

from conftest import PG_SERVER_URL, _pg_unreachable_reason, pg_conninfo, require_service
from slack_fake import FakeSlack
from watchkeeper import paths

PROJECT = paths.project_root()
MODEL = "pii_eta"

SRC_PW = "Src-Passw0rd-91x"  # in the spec's source URL
CONN_PW = "Conn-Passw0rd-77x"  # in the Airflow connection of the labels source
DB_PW = "Db-Passw0rd-55x"  # in WATCHKEEPER_DB_URL
TOKEN = "xoxb-9911-S3cretTok3n-wk"
BAD_TOKEN = "xoxb-0000-Wr0ngTok3n-wk"
SECRETS = (SRC_PW, CONN_PW, DB_PW, TOKEN, BAD_TOKEN)

# customer_email (pii): training has pool A, day 1 pool B, day 2 pool C, so the column fails
# its checks and drifts on both days. Any address of any pool is a leak.
EMAIL = re.compile(r"(alice|bob|carol)\.\d+@")
DOMAINS = ("leak-b.example", "leak-c.example")


def _emails(local: str, domain: str, n: int, size: int) -> list[str]:
    return [f"{local}.{i % size}@{domain}" for i in range(n)]


@contextlib.contextmanager
def _capture_fds(path: Path):
    """Everything written to fds 1 and 2 (Airflow's task output, print, C libraries) -> path."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with open(path, "wb") as f:
        os.dup2(f.fileno(), 1)
        os.dup2(f.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.lines.append(f"{record.name} {record.getMessage()} {record.exc_text or ''}")
        except Exception:  # noqa: BLE001 - a record that cannot format is still not a leak
            self.lines.append(f"{record.name} {record.msg!r}")


@dataclass
class World:
    home: Path
    db_url: str
    days: list[str]
    artefacts: dict[str, str]  # what -> its text
    slack: FakeSlack
    tasks: dict[str, dict[str, str]]  # run -> task states


def _with_password(url: str, password: str, schema: str) -> str:
    from sqlalchemy.engine import make_url

    u = make_url(url).set(password=password)
    return u.render_as_string(hide_password=False) + f"?options=-csearch_path%3D{schema}"


def _build_world(root: Path, schema: str) -> tuple[list[str], dict[str, str]]:
    """The eta demo world (two small days), moved into PostgreSQL with a pii column added."""
    from sqlalchemy import Date, create_engine

    from watchkeeper.demo import Story, generate_demo

    m = generate_demo(root, rows_per_day=400, training_rows=2000,
                      story=Story(n_days=2, drift_start_day=1, incident_day=2, late_landing_day=2))
    days = m.ds_list
    training = pd.read_parquet(m.training_path("eta"))
    training["customer_email"] = _emails("alice", "pii-a.example", len(training), 30)
    training.to_parquet(root / "training.parquet", index=False)
    frames, labels = [], []
    for ds, (local, domain) in zip(days, [("bob", DOMAINS[0]), ("carol", DOMAINS[1])]):
        f = pd.read_parquet(m.predictions_path("eta", ds))
        f["customer_email"] = _emails(local, domain, len(f), 25)
        f["ds"] = date.fromisoformat(ds)
        frames.append(f)
    first = frames[0]
    labels.append(pd.DataFrame({  # day 1's labels arrive on day 2
        "order_id": first["order_id"], "actual_minutes": first["predicted_minutes"] + 1.5,
        "label_ts": pd.Timestamp(days[1]) + pd.Timedelta(hours=12), "arrived": days[1]}))
    eng = create_engine(_with_password(PG_SERVER_URL, SRC_PW, schema))
    try:
        pd.concat(frames).to_sql("preds", eng, index=False, dtype={"ds": Date()})
        pd.concat(labels).to_sql("labels", eng, index=False)
    finally:
        eng.dispose()

    suite = json.loads((PROJECT / "expectations/eta/features.json").read_text())
    suite["expectations"] += [
        {"type": "expect_column_values_to_match_regex",
         "kwargs": {"column": "customer_email", "regex": r"^alice\.\d+@pii-a\.example$"},
         "meta": {"id": "customer_email.format"}},
        {"type": "expect_column_values_to_be_unique", "kwargs": {"column": "customer_email"},
         "meta": {"id": "customer_email.unique"}},
        {"type": "expect_column_value_lengths_to_be_between",
         "kwargs": {"column": "customer_email", "min_value": 1, "max_value": 5},
         "meta": {"id": "customer_email.length"}},
    ]
    (root / "features.json").write_text(json.dumps(suite))
    spec = yaml.safe_load((PROJECT / "include/models/eta.yaml").read_text())
    spec.update(
        name=MODEL,
        source={"kind": "sql_table", "url": _with_password(PG_SERVER_URL, SRC_PW, schema),
                "table": "preds", "date_column": "ds"},
        landing={"kind": "none"},
        reference={"training": str(root / "training.parquet")},
        suites={"ingestion": "expectations/eta/ingestion.json",
                "features": str(root / "features.json")},
    )
    spec["features"].append({"name": "customer_email", "kind": "categorical", "pii": True})
    spec["labels"]["source"] = {
        "kind": "sql_query", "conn_id": "wk_pii_labels",
        "query": "select order_id, actual_minutes, label_ts from labels where arrived = :ds"}
    models = root / "models"
    models.mkdir()
    (models / f"{MODEL}.yaml").write_text(yaml.safe_dump(spec))
    return days, {"models": str(models)}


def _xcoms(dag_id: str, run_id: str) -> list:
    from sqlalchemy import select

    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as s:
        return [(x.task_id, x.value) for x in s.scalars(
            select(XComModel).where(XComModel.dag_id == dag_id, XComModel.run_id == run_id))]


@pytest.fixture(scope="module")
def world(tmp_path_factory, airflow_db):
    reason = _pg_unreachable_reason()
    if reason is not None:
        require_service("PostgreSQL", reason)
    import psycopg
    from sqlalchemy.engine import make_url

    schema = f"wk_sec_{uuid.uuid4().hex[:10]}"
    conninfo = pg_conninfo(PG_SERVER_URL)
    with psycopg.connect(conninfo, autocommit=True) as c:
        c.execute(f'CREATE SCHEMA "{schema}"')
    root = tmp_path_factory.mktemp("security_world")
    home = root / "home"
    mp = pytest.MonkeyPatch()
    records = _Records()
    levels = {n: logging.getLogger(n).level for n in ("watchkeeper", "slack_sdk")}
    slack = FakeSlack(token=TOKEN).start()
    try:
        mp.setenv("WATCHKEEPER_HOME", str(home))
        days, where = _build_world(home, schema)
        db_url = _with_password(PG_SERVER_URL, DB_PW, schema)
        u = make_url(PG_SERVER_URL)
        mp.setenv("AIRFLOW_CONN_WK_PII_LABELS",
                  f"postgres://{u.username}:{CONN_PW}@{u.host}:{u.port or 5432}/{u.database}"
                  f"?options=-csearch_path%3D{schema}")
        mp.setenv("WATCHKEEPER_MODELS_DIR", where["models"])
        mp.setenv("WATCHKEEPER_DB_URL", db_url)
        mp.setenv("WATCHKEEPER_EVIDENTLY_PAGES", "always")
        for var in ("WATCHKEEPER_SLACK_TOKEN", "WATCHKEEPER_SLACK_WEBHOOK_URL",
                    "WATCHKEEPER_SLACK_BASE_URL"):
            mp.delenv(var, raising=False)
        logging.getLogger().addHandler(records)
        for n in levels:
            logging.getLogger(n).setLevel(logging.DEBUG)

        bag = airflow_db.dagbag()
        assert not bag.import_errors, bag.import_errors
        tasks: dict[str, dict[str, str]] = {}
        durations: dict[str, dict[str, float]] = {}
        xcoms: list = []
        out = root / "task-output.txt"

        def run(dag_id: str, ds: str) -> None:
            import pendulum

            dag = bag.get_dag(dag_id)
            assert dag is not None, sorted(bag.dag_ids)
            d = date.fromisoformat(ds)
            dr = dag.test(logical_date=pendulum.datetime(d.year, d.month, d.day, tz="UTC"))
            tasks[f"{dag_id} {ds}"] = {ti.task_id: str(getattr(ti.state, "value", ti.state))
                                       for ti in dr.get_task_instances()}
            durations[f"{dag_id} {ds}"] = {ti.task_id: round(ti.duration or 0, 1)
                                           for ti in dr.get_task_instances()}
            xcoms.extend(_xcoms(dag_id, dr.run_id))

        with _capture_fds(out):
            run(f"{MODEL}_monitor", days[0])  # no Slack configured: console + outbox.jsonl
            mp.setenv("WATCHKEEPER_SLACK_BASE_URL", slack.base_url)
            mp.setenv("WATCHKEEPER_SLACK_TOKEN", BAD_TOKEN)  # Slack answers invalid_auth
            run(f"{MODEL}_monitor", days[1])
            mp.setenv("WATCHKEEPER_SLACK_TOKEN", TOKEN)
            run(f"{MODEL}_labels", days[1])
            # The alerts refused with the bad token, resent with the good one.
            from watchkeeper import alerts
            from watchkeeper.spec import get_spec
            from watchkeeper.store import open_store

            store = open_store()
            failed = alerts.requeue_failed(store, MODEL)
            resent = alerts.deliver(store, get_spec(MODEL))
            assert failed and resent.sent, (failed, resent)
            problems = [store.outbox(MODEL, statuses=s) for s in ("failed", "pending")]
        logging.getLogger().removeHandler(records)

        artefacts = {"task output": out.read_text(errors="replace"),
                     "log records": "\n".join(records.lines),
                     "xcom": json.dumps(xcoms, default=str),
                     "store": json.dumps(store.dump(), default=str),
                     "outbox.jsonl": (home / "alerts" / "outbox.jsonl").read_text(),
                     "slack posts": json.dumps(slack.posts + slack.hooks, default=str),
                     "problems": repr(problems)}
        for f in sorted((home / "reports").rglob("*")):
            if f.is_file() and not f.is_relative_to(home / "reports" / "_static"):
                artefacts[f"report {f.relative_to(home)}"] = f.read_text(errors="replace")
        airflow_logs = Path(os.environ["AIRFLOW_HOME"]) / "logs"
        for f in sorted(airflow_logs.rglob("*")) if airflow_logs.exists() else []:
            if f.is_file() and f"dag_id={MODEL}" in str(f):
                artefacts[f"airflow log {f.relative_to(airflow_logs)}"] = f.read_text(errors="replace")
        print("task seconds:", json.dumps(durations))  # where the module's time goes (-s)
        built = World(home=home, db_url=db_url, days=days, artefacts=artefacts, slack=slack,
                      tasks=tasks)
    finally:
        # Everything is collected: the tests read `built` only, so the environment, the fake
        # Slack and the schema go now, before the module's other tests run.
        slack.stop()
        mp.undo()
        logging.getLogger().removeHandler(records)
        for n, lv in levels.items():
            logging.getLogger(n).setLevel(lv)
        from watchkeeper.store import close_all_stores

        close_all_stores()
        with psycopg.connect(conninfo, autocommit=True) as c:
            c.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    yield built


def test_the_world_ran_for_real(world):
    """The greps below mean something only if the runs did what they claim."""
    for run, states in world.tasks.items():
        # Every task succeeded; a run's failure watcher (if the DAG has one) is skipped.
        assert states and all(s in ("success", "skipped") for s in states.values()), (run, states)
        assert all(states[t] == "success" for t in (
            ("load", "check_ingestion", "check_features", "drift", "skew", "predictions",
             "record_slis", "alert") if "_monitor " in run else ("ingest_labels",
                                                                  "restate_quality", "alert"))), states
    store = json.loads(world.artefacts["store"])
    results = {(r["ds"], r["expectation_id"]): r for r in store["wk_expectation_result"]}
    for ds in world.days:
        fmt = results[(ds, "customer_email.format")]
        assert fmt["success"] is False and fmt["unexpected_count"] > 0
        assert results[(ds, "customer_email.unique")]["success"] is False
    skew = [m for m in store["wk_metric"] if m["family"] == "skew"
            and m["subject"] == "customer_email"]
    assert skew and all(m["payload"]["drifted"] for m in skew), skew
    drift = [m for m in store["wk_metric"] if m["family"] == "drift"
             and m["subject"] == "customer_email" and m["ds"] == world.days[1]]
    assert drift and drift[0]["payload"]["drifted"], drift
    assert any(p["engine"] == "database" for t, p in json.loads(world.artefacts["xcom"])
               if t == "check_ingestion" and isinstance(p, dict))
    src = {p["ds"]: p["source"] for p in store["wk_partition"]}
    assert all("postgres:***@" in s for s in src.values()), src
    assert any("customer_email" in json.dumps(p) for p in world.slack.posts)
    assert "customer_email" in world.artefacts["outbox.jsonl"]
    assert any(k.startswith("report reports/pii_eta/") and k.endswith("skew.html")
               for k in world.artefacts)
    assert "invalid_auth" in {r["outcome"] for r in world.slack.requests}  # the bad token


def test_secrets_reach_no_log_xcom_report_store_or_outbox(world):
    leaks = [(what, s) for what, text in world.artefacts.items() for s in SECRETS if s in text]
    assert not leaks, leaks


def _pii_in(text: str) -> bool:
    return bool(EMAIL.search(text)) or any(d in text for d in DOMAINS)


def _leak_paths(obj, path: str = "") -> list[str]:
    """Where in a JSON document pii values sit (keys included): for a readable failure."""
    if isinstance(obj, dict):
        return [p for k, v in obj.items() for p in
                ([f"{path}.{k} (key)"] if _pii_in(str(k)) else []) + _leak_paths(v, f"{path}.{k}")]
    if isinstance(obj, list):
        return [p for i, v in enumerate(obj) for p in _leak_paths(v, f"{path}[{i}]")][:3]
    return [path] if _pii_in(str(obj)) else []


# Written by watchkeeper.analysis (owned elsewhere in this round): the coverage payload lists
# unseen categorical pairs with their values, and the Evidently drift/skew pages carry every
# categorical column's distribution; the day page shows the stored coverage payload as it is.
_EVIDENTLY_PAGE = re.compile(r"^report reports/\S+/(drift|skew)\.html$")
_COVERAGE_SECTION = re.compile(r'<h2 id="coverage">.*?(?=<h2|$)', re.S)


def _pii_leaks(world: World, *, analysis: bool) -> dict[str, object]:
    """pii values outside (analysis=False) or inside (True) what watchkeeper.analysis writes."""
    leaks: dict[str, object] = {}
    store = json.loads(world.artefacts["store"])
    for table, rows in store.items():
        for r in rows:
            where = _leak_paths(r)
            written_by_analysis = table == "wk_metric" and r.get("family") == "coverage"
            if where and written_by_analysis == analysis:
                key = "/".join(str(r.get(k)) for k in ("family", "subject", "kind",
                                                       "expectation_id") if r.get(k))
                leaks.setdefault(f"store {table} {key}", []).append(where[:3])
    for what, text in world.artefacts.items():
        if what in ("task output", "log records", "xcom", "store"):
            continue  # logs and XCom are the secrets test's; the store is walked above
        if _EVIDENTLY_PAGE.match(what):
            text = text if analysis else ""
        elif what.startswith("report "):
            coverage = "".join(_COVERAGE_SECTION.findall(text))
            text = coverage if analysis else _COVERAGE_SECTION.sub("", text)
        elif analysis:
            continue
        if _pii_in(text):
            i = min((m.start() for m in EMAIL.finditer(text)), default=0)
            leaks[what] = text[max(0, i - 200): i + 60]
    return leaks


def test_pii_values_reach_no_finding_report_outbox_or_slack(world):
    leaks = _pii_leaks(world, analysis=False)
    assert not leaks, json.dumps(leaks, indent=1)[:6000]


def test_pii_values_reach_no_coverage_finding_or_evidently_page(world):
    leaks = _pii_leaks(world, analysis=True)
    assert not leaks, json.dumps(leaks, indent=1)[:6000]


# --------------------------------------------------------------------------------------------
# Exception messages
# --------------------------------------------------------------------------------------------


def _spec(source: dict, labels: dict | None = None):
    from watchkeeper.spec import parse_spec

    raw = yaml.safe_load((PROJECT / "include/models/eta.yaml").read_text())
    raw["source"] = source
    raw["landing"] = {"kind": "none"}
    if labels is not None:
        raw["labels"]["source"] = labels
    return parse_spec(raw)


def test_unreachable_databases_fail_with_the_password_masked(monkeypatch):
    from watchkeeper import label_pipeline, monitor, pushdown, quality, sources
    from watchkeeper.store import StoreError, open_store

    pw = "Unreach-Passw0rd-31"
    url = f"postgresql+psycopg://watch:{pw}@127.0.0.1:1/wk"
    spec = _spec({"kind": "sql_table", "url": url, "table": "preds", "date_column": "ds"},
                 labels={"kind": "sql_query", "url": url,
                         "query": "select * from labels where arrived = :ds"})
    seen = []
    store = open_store(f"sqlite:///{paths.home() / 'wk.db'}")
    loaded = monitor.load(spec, "2026-03-01", store)
    assert loaded["status"] == "unreadable" and "watch:***@" in loaded["message"]
    seen += [json.dumps(loaded), json.dumps(store.dump(), default=str)]
    suite = quality.load_suite(PROJECT / "expectations/eta/ingestion.json")
    with pytest.raises(pushdown.SourceUnavailable) as push:
        pushdown.check_in_database(spec, "2026-03-01", suite,
                                   parameters=monitor.stage_parameters(spec, "2026-03-01", store))
    with pytest.raises(sources.SourceError) as labels:
        sources.read_day(spec, spec.labels.source, "2026-03-01")
    ingested = label_pipeline.ingest(spec, "2026-03-01")
    monkeypatch.setenv("WATCHKEEPER_DB_URL", url)
    with pytest.raises(StoreError) as st:
        open_store()
    for err in (push.value, labels.value, st.value):
        seen += [str(err), repr(err)]
    seen.append(json.dumps(ingested, default=str))
    assert all(pw not in s for s in seen), [s for s in seen if pw in s]
    assert all("***" in str(e) for e in (push.value, labels.value, st.value))


def test_slack_connection_and_invalid_auth_never_show_the_secret(caplog):
    from watchkeeper import alerts

    caplog.set_level(logging.DEBUG)
    hook = "https://hooks.slack.com/services/T000/B000/Wh00kSecretPart77"
    creds = alerts.credentials_from_connection("slackwebhook", hook, conn_id="slack_alerts")
    token = alerts.credentials_from_connection("slack", TOKEN, conn_id="slack_bot")
    spec = _spec({"kind": "file", "path": "{home}/x/ds={ds}.parquet"})
    spec = spec.model_copy(update={"alerts": spec.alerts.model_copy(
        update={"slack_conn_id": "slack_alerts"})})

    def broken(conn_id):
        raise RuntimeError(f"backend said: bad value {TOKEN} for {hook}")

    with pytest.raises(alerts.AlertConfigError) as err:
        alerts.resolve_credentials(spec, broken)
    shown = [repr(creds), repr(token), str(err.value), caplog.text]
    assert not [s for s in shown if TOKEN in s or "Wh00kSecretPart77" in s], shown


# --------------------------------------------------------------------------------------------
# SQL: identifiers validated and quoted, values bound, ds refused before any SQL
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("field, value", [
    ("table", 'preds"; drop table wk_sli_value; --'),
    ("table", "preds where 1=1"),
    ("table", "a.b.c"),
    ("table", "pr`eds"),
    ("date_column", "ds) or (1=1"),
    ("date_column", 'ds"--'),
    ("date_column", ""),
])
def test_injection_shaped_identifiers_are_rejected_with_the_field(field, value):
    from watchkeeper.spec import SpecError

    source = {"kind": "sql_table", "url": "sqlite:///x.db", "table": "preds", "date_column": "ds"}
    source[field] = value
    with pytest.raises(SpecError) as err:
        _spec(source)
    problems = dict(err.value.problems)
    assert f"source.{field}" in problems, err.value.problems
    assert "plain SQL identifier" in problems[f"source.{field}"] or not value
    with pytest.raises(SpecError) as err:  # the labels' SQL table as well
        _spec({"kind": "file", "path": "{home}/x/ds={ds}.parquet"},
              labels={"kind": "sql_table", "url": "sqlite:///x.db", "table": "labels",
                      "date_column": "arrived", **{field: value}})
    assert f"labels.source.{field}" in dict(err.value.problems), err.value.problems


def test_quoted_identifiers_and_bound_values(tmp_path):
    """A schema-qualified, reserved-word table name is quoted; the day is a bound parameter and
    never part of the SQL text, on both SQL source kinds."""
    import sqlite3

    from sqlalchemy import event

    from watchkeeper import sources

    db = tmp_path / "p.db"
    con = sqlite3.connect(db)
    con.execute('CREATE TABLE "select" ("order" TEXT, ds TEXT, event_ts TEXT)')
    con.execute("""INSERT INTO "select" VALUES ('a', '2026-03-01', '2026-03-01 10:00:00'),
                   ('b', '2026-03-02', '2026-03-02 10:00:00')""")
    con.commit()
    con.close()
    url = f"sqlite:///{db}"
    statements = []
    event.listen(sources.engine_for(url), "before_cursor_execute",
                 lambda conn, cursor, stmt, params, ctx, many: statements.append((stmt, params)))
    table = _spec({"kind": "sql_table", "url": url, "table": "select", "date_column": "ds"})
    query = _spec({"kind": "sql_query", "url": url,
                   "query": 'select * from "select" where ds = :ds'})
    assert sources.read_partition(table, "2026-03-01").frame["order"].tolist() == ["a"]
    assert sources.read_partition(query, "2026-03-02").frame["order"].tolist() == ["b"]
    (s1, p1), (s2, p2) = statements
    assert 'FROM "select"' in s1 and "2026-03-01" not in s1 and "2026-03-01" in map(str, p1)
    assert "2026-03-02" not in s2 and "2026-03-02" in map(str, p2)


@pytest.mark.parametrize("ds", ["2026-03-01' OR '1'='1", "2026-03-01; drop table preds",
                                "../../etc/passwd", "yesterday", "2026-02-30"])
def test_a_ds_that_is_not_a_date_is_refused_before_any_sql(ds, tmp_path):
    from sqlalchemy import event

    from watchkeeper import label_pipeline, monitor, pushdown, sources

    url = f"sqlite:///{tmp_path / 'p.db'}"
    statements = []
    event.listen(sources.engine_for(url), "before_cursor_execute",
                 lambda *a: statements.append(a[2]))
    table = _spec({"kind": "sql_table", "url": url, "table": "preds", "date_column": "ds"},
                  labels={"kind": "sql_query", "url": url,
                          "query": "select * from labels where arrived = :ds"})
    query = _spec({"kind": "sql_query", "url": url, "query": "select * from preds where ds = :ds"})
    calls = [lambda: sources.read_partition(table, ds), lambda: sources.read_partition(query, ds),
             lambda: sources.read_day(table, table.labels.source, ds),
             lambda: pushdown.plan(table, ds), lambda: monitor.work_dir(MODEL, ds),
             lambda: label_pipeline.ingest(table, ds)]
    for call in calls:
        with pytest.raises(ValueError):
            call()
    assert statements == []


# --------------------------------------------------------------------------------------------
# HTTP: the authenticated user, and overrides recorded as made by that user
# --------------------------------------------------------------------------------------------


def test_http_routes_need_a_user_and_an_override_records_that_user(airflow_db):
    from fastapi.testclient import TestClient

    sys.path.insert(0, str(PROJECT / "plugins"))
    import watchkeeper_plugin
    from airflow.api_fastapi.app import init_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
    from watchkeeper import gatekeeper
    from watchkeeper.store import open_store

    client = TestClient(watchkeeper_plugin.WatchkeeperPlugin.fastapi_apps[0]["app"])
    body = {"reason": "hotfix INC-9 rolled out by hand", "expires": "2h"}
    # Without a token, every route refuses before doing anything.
    for method, path in [("get", "/gates/fraud"), ("get", "/reports/index.html"),
                         ("post", "/gates/fraud/override")]:
        r = client.request(method.upper(), path, json=body if method == "post" else None)
        assert r.status_code == 401, (path, r.status_code, r.text)
        r = client.request(method.upper(), path, json=body if method == "post" else None,
                           headers={"Authorization": "Bearer forged.jwt.value"})
        assert r.status_code in (401, 403), (path, r.status_code)
    assert gatekeeper.overrides(open_store(), "fraud") == []

    manager = init_auth_manager()

    def auth(user: str, role: str) -> dict:
        token = manager.generate_jwt(SimpleAuthManagerUser(username=user, role=role))
        return {"Authorization": f"Bearer {token}"}

    # A viewer may ask the gate, not open it.
    assert client.get("/gates/fraud", headers=auth("vic", "viewer")).status_code in (200, 409, 503)
    r = client.post("/gates/fraud/override", json=body, headers=auth("vic", "viewer"))
    assert r.status_code == 403 and "fraud_deploy" in r.json()["detail"]
    # The body cannot claim to be someone else.
    r = client.post("/gates/fraud/override", json={**body, "by": "mallory"},
                    headers=auth("olga", "op"))
    assert r.status_code == 422
    r = client.post("/gates/fraud/override", json={**body, "reason": " "},
                    headers=auth("olga", "op"))
    assert r.status_code == 400 and "reason is required" in r.json()["detail"]
    assert client.post("/gates/nope/override", json=body,
                       headers=auth("olga", "op")).status_code == 404

    r = client.post("/gates/fraud/override", json=body, headers=auth("olga", "op"))
    assert r.status_code == 201, r.text
    assert r.json()["created_by"] == "olga" and r.json()["reason"] == body["reason"]
    store = open_store()
    (event,) = store.events("fraud", kinds=gatekeeper.OVERRIDE)
    assert event.created_by == "olga" and event.payload["created_by"] == "olga"
    decided = client.get("/gates/fraud", headers=auth("ann", "viewer")).json()
    assert decided["override"]["created_by"] == "olga" and decided["effective"] == "open"
    asked = store.events("fraud", kinds=gatekeeper.DECISION)
    assert {e.created_by for e in asked} == {"vic", "ann"}
