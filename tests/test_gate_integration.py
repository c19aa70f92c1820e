"""The gate from every door: CLI (exit codes, JSON, audit, overrides), the Airflow operator and
sensor inside dag.test(), and the HTTP endpoint with and without authentication."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

import pytest

from conftest import subprocess_env

EXE = str(Path(sys.executable).with_name("watchkeeper"))
TODAY = date.today()


def _seed(model: str, bad_fresh_days: int, days: int = 28) -> None:
    """SLIs for the last `days` days ending yesterday; the newest `bad_fresh_days` are late."""
    from watchkeeper import budgets
    from watchkeeper.spec import get_spec
    from watchkeeper.store import SliRecord, open_store

    store = open_store()
    spec = get_spec(model)
    quality_sli, quality_ok = {"eta": ("mae", 2.3), "fraud": ("precision", 0.65)}[model]
    for i in range(days, 0, -1):
        ds = (TODAY - timedelta(days=i)).isoformat()
        late = i <= bad_fresh_days
        store.write_slis(model, ds, [
            SliRecord(ds=ds, sli="freshness", value=8.0 if late else -3.0, good=not late,
                      good_events=0.0 if late else 1.0, total_events=1.0),
            SliRecord(ds=ds, sli="data_quality", value=1.0, good=True, good_events=50.0,
                      total_events=50.0),
            # model quality: mature and healthy except the newest (provisional) days
            SliRecord(ds=ds, sli=quality_sli, value=quality_ok, provisional=i <= 5),
            SliRecord(ds=ds, sli="prediction_stability", value=0.0, good=True, good_events=1.0,
                      total_events=1.0),
            SliRecord(ds=ds, sli="feature_drift", value=0.0, good=True, good_events=1.0,
                      total_events=1.0),
        ])
        budgets.evaluate(spec, ds, store)


def _gate(*args: str, env=None):
    r = subprocess.run([EXE, "gate", *args], capture_output=True, text=True,
                       env=env or subprocess_env(), timeout=120)
    assert "Traceback" not in r.stderr, r.stderr
    return r


@pytest.fixture
def seeded():
    _seed("eta", bad_fresh_days=0)
    _seed("fraud", bad_fresh_days=4)  # 4 late days: freshness budget (2.8 bad days) overspent


def test_cli_exit_codes_json_shape_and_audit(seeded):
    closed = _gate("fraud", "--json")
    assert closed.returncode == 1, closed.stdout + closed.stderr
    body = json.loads(closed.stdout)
    assert {"model", "scope", "decision", "reasons", "evaluated_at", "data_as_of", "override"} <= set(body)
    assert body["decision"] == "closed" and body["override"] is None
    blocking = [r for r in body["reasons"] if r["verdict"] != "open"]
    assert [r["slo"] for r in blocking] == ["freshness"]
    assert blocking[0]["budget_remaining"] < 0

    text = _gate("fraud")
    assert text.returncode == 1 and "CLOSED" in text.stdout and "freshness" in text.stdout
    opened = _gate("eta", "--by", "release-bot")
    assert opened.returncode == 0 and "OPEN" in opened.stdout
    assert _gate("eta", "--scope", "features").returncode == 0

    from watchkeeper.store import open_store

    audit = open_store().events("eta", kinds="gate_decision")
    assert len(audit) == 2
    assert {e.created_by for e in audit} >= {"release-bot"}
    assert all(e.payload["decision"] == "open" for e in audit)
    assert len(open_store().events("fraud", kinds="gate_decision")) == 2


def test_as_of_and_staleness(seeded):
    old = (TODAY - timedelta(days=10)).isoformat()
    r = _gate("fraud", "--as-of", old, "--json")
    assert r.returncode == 0, r.stdout  # ten days ago all was well
    assert json.loads(r.stdout)["data_as_of"] == old
    future = (TODAY + timedelta(days=5)).isoformat()
    stale = _gate("eta", "--as-of", future, "--json")
    assert stale.returncode == 2 and json.loads(stale.stdout)["decision"] == "inconclusive"


def test_unknown_model_and_unreachable_store(seeded):
    r = _gate("nope")
    assert r.returncode == 2 and "models that exist: eta, fraud" in r.stderr
    env = subprocess_env(WATCHKEEPER_DB_URL="postgresql+psycopg://u:s3cret@127.0.0.1:1/x")
    r = _gate("eta", "--json", env=env)
    assert r.returncode == 2
    body = json.loads(r.stdout)
    assert body["decision"] == "inconclusive" and "s3cret" not in r.stdout + r.stderr
    assert body["store_error"]


def test_override_opens_until_it_expires_and_bad_overrides_are_refused(seeded):
    def ov(*args):
        return subprocess.run([EXE, "override", "fraud", *args], capture_output=True, text=True,
                              env=subprocess_env(), timeout=120)

    r = ov("--reason", "", "--expires", "2h")
    assert r.returncode == 2 and "reason is required" in r.stderr
    r = ov("--reason", "hotfix", "--expires=-1h")
    assert r.returncode == 2 and "not a duration" in r.stderr
    r = ov("--reason", "hotfix for the DE amount bug", "--expires", "2h", "--by", "alice")
    assert r.returncode == 0, r.stderr
    d = _gate("fraud", "--json")
    assert d.returncode == 0
    body = json.loads(d.stdout)
    assert body["decision"] == "closed" and body["effective"] == "open"
    assert body["override"]["reason"] == "hotfix for the DE amount bug"
    assert body["override"]["created_by"] == "alice"

    # an expired override is ignored: shift the stored expiry into the past
    from watchkeeper import gatekeeper
    from watchkeeper.store import open_store

    store = open_store()
    (o,) = gatekeeper.overrides(store, "fraud")
    assert o.is_active(gatekeeper.now_utc())
    assert not o.is_active(o.expires_at)
    d2 = gatekeeper.ask("fraud", store=store, record=False)
    assert d2.override is not None and d2.exit_code() == 0


@pytest.mark.slow
def test_operator_and_sensor_inside_dag_test(seeded, run_dag):
    closed = run_dag("fraud_deploy", (TODAY - timedelta(days=1)).isoformat())
    assert closed.tasks["gate"] == "failed" and closed.tasks.get("roll_out") in ("upstream_failed", None)
    opened = run_dag("eta_deploy", (TODAY - timedelta(days=1)).isoformat())
    assert opened.ok, opened.tasks
    from watchkeeper.store import open_store

    (dep,) = open_store().events("eta", kinds="deployment")
    assert dep.subject == "eta-candidate"
    assert not open_store().events("fraud", kinds="deployment")
    asked = open_store().events("fraud", kinds="gate_decision")
    assert asked and asked[0].created_by.startswith("airflow:fraud_deploy")

    assert run_dag("test_gate_sensor_eta", TODAY.isoformat()).ok
    waited = run_dag("test_gate_sensor_fraud", TODAY.isoformat())
    assert waited.tasks["wait_for_gate"] == "failed"
    pokes = open_store().events("fraud", kinds="gate_decision")
    assert len([p for p in pokes if p.payload["via"] == "airflow-sensor"]) >= 2


def test_http_endpoint_requires_authentication_and_matches_cli(seeded, airflow_db):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "plugins"))
    from fastapi.testclient import TestClient

    import watchkeeper_plugin
    from airflow.api_fastapi.app import init_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    client = TestClient(watchkeeper_plugin.WatchkeeperPlugin.fastapi_apps[0]["app"])
    assert client.get("/gates/fraud").status_code == 401
    assert client.get("/gates/fraud", headers={"Authorization": "Bearer nope"}).status_code == 403
    token = init_auth_manager().generate_jwt(SimpleAuthManagerUser(username="carol", role="viewer"))
    auth = {"Authorization": f"Bearer {token}"}
    r = client.get("/gates/fraud", headers=auth)
    assert r.status_code == 409 and r.json()["decision"] == "closed"
    assert r.json()["reasons"] == json.loads(_gate("fraud", "--json").stdout)["reasons"]
    assert client.get("/gates/eta?scope=features", headers=auth).status_code == 200
    r = client.get("/gates/nope", headers=auth)
    assert r.status_code == 404 and "eta, fraud" in r.json()["detail"]
    from watchkeeper.store import open_store

    by = {e.created_by for e in open_store().events("fraud", kinds="gate_decision")}
    assert "carol" in by
