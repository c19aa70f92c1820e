"""Shared pytest fixtures for the Watchkeeper test suite.

Conventions (append new shared fixtures below, in the section they belong to):
- Every test runs with WATCHKEEPER_HOME set to its own tmp folder and WATCHKEEPER_DB_URL unset,
  so no test writes into the checkout's var/ or a developer's configured database.
- A test that needs a server calls `require_service(name, reason)` when the server is missing:
  that skips with the reason, or fails when WATCHKEEPER_REQUIRE_SERVICES=1 (CI, where a missing
  server is a broken environment, not a pass). Import it with `from conftest import
  require_service`. Child Python processes: `subprocess.run(..., env=subprocess_env())`.
- PostgreSQL (server from WATCHKEEPER_TEST_PG_URL, default postgres@127.0.0.1:5432/test):
  `pg_schema` / `pg_url` give each test a fresh schema, selected through the URL's search_path
  and dropped (CASCADE) afterwards. `store_url` / `store` run a test on SQLite and PostgreSQL.
"""

from __future__ import annotations

import os
import sys
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import pytest

PG_SERVER_URL = os.environ.get(
    "WATCHKEEPER_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


# --------------------------------------------------------------------------------------------
# Environment isolation and services
# --------------------------------------------------------------------------------------------


# Airflow reads its configuration at first import: point it at a session-wide embedded home
# (SQLite metadata, this checkout's dags/) before any test module can import it.
_AIRFLOW_SESSION_HOME = Path(tempfile.mkdtemp(prefix="wk-airflow-"))
if "airflow" not in sys.modules:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "plugins"))
    from watchkeeper.airflow import embedded as _embedded

    # The session's dags folder: the project's DAG files plus test-only DAGs (tests/airflow_dags),
    # linked, so dag.test() exercises the real files.
    _DAGS = _AIRFLOW_SESSION_HOME / "dags"
    _DAGS.mkdir()
    _ROOT = Path(__file__).resolve().parents[1]
    for _f in [*(_ROOT / "dags").glob("*.py"), *(_ROOT / "tests" / "airflow_dags").glob("*.py")]:
        (_DAGS / _f.name).symlink_to(_f)
    _embedded.configure(_AIRFLOW_SESSION_HOME, dags_folder=_DAGS)


@pytest.fixture(autouse=True)
def _isolated_watchkeeper_home(tmp_path_factory, monkeypatch) -> None:
    monkeypatch.setenv("WATCHKEEPER_HOME", str(tmp_path_factory.mktemp("wk_home")))
    monkeypatch.delenv("WATCHKEEPER_DB_URL", raising=False)


def require_service(name: str, reason: str) -> NoReturn:
    """Skip (or, with WATCHKEEPER_REQUIRE_SERVICES=1, fail) because service `name` is missing."""
    message = f"{name} unavailable: {reason}"
    if os.environ.get("WATCHKEEPER_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{message} (WATCHKEEPER_REQUIRE_SERVICES=1: required)", pytrace=False)
    pytest.skip(message)


def subprocess_env(**overrides: str) -> dict[str, str]:
    """Environment for a child Python process (a CLI, a concurrent writer) started by a test.

    The sandbox sets PYTHONDONTWRITEBYTECODE=1, so every child would recompile SQLAlchemy and
    friends from source (about 2 s instead of 0.7 s here). Children cache bytecode in a temp
    folder instead: never in the checkout or the venv, and Python revalidates it against each
    source file's mtime, so it cannot go stale.
    """
    env = {**os.environ, **overrides}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.setdefault(
        "PYTHONPYCACHEPREFIX", str(Path(tempfile.gettempdir()) / "watchkeeper-test-pycache")
    )
    return env


def _close_cached_stores() -> None:
    # Only if a test imported the store: conftest must not import it for unrelated tests.
    store_module = sys.modules.get("watchkeeper.store")
    if store_module is not None:
        store_module.close_all_stores()


# --------------------------------------------------------------------------------------------
# PostgreSQL
# --------------------------------------------------------------------------------------------


def pg_conninfo(sqlalchemy_url: str) -> str:
    """libpq connection string (for psycopg.connect) of a SQLAlchemy PostgreSQL URL."""
    from sqlalchemy.engine import make_url

    url = make_url(sqlalchemy_url).set(drivername="postgresql")
    return url.render_as_string(hide_password=False)


_pg_probe: dict[str, str | None] = {}


def _pg_unreachable_reason() -> str | None:
    """None when the server answers; else why not. Probed once per session."""
    if "reason" not in _pg_probe:
        try:
            import psycopg

            with psycopg.connect(pg_conninfo(PG_SERVER_URL), connect_timeout=3) as conn:
                conn.execute("SELECT 1")
            _pg_probe["reason"] = None
        except Exception as err:  # noqa: BLE001 - any failure means "not usable here"
            masked = PG_SERVER_URL.split("@")[-1]
            _pg_probe["reason"] = f"{masked}: {type(err).__name__}: {' '.join(str(err).split())}"
    return _pg_probe["reason"]


@dataclass(frozen=True)
class PgSchema:
    name: str  # the schema created for this test
    url: str  # SQLAlchemy URL whose search_path is that schema
    conninfo: str  # libpq string to the server (default search_path), for inspection


@pytest.fixture
def pg_schema() -> Iterator[PgSchema]:
    """A fresh PostgreSQL schema for one test, dropped with everything in it afterwards."""
    reason = _pg_unreachable_reason()
    if reason is not None:
        require_service("PostgreSQL", reason)
    import psycopg

    name = f"wk_test_{uuid.uuid4().hex[:12]}"
    conninfo = pg_conninfo(PG_SERVER_URL)
    sep = "&" if "?" in PG_SERVER_URL else "?"
    url = f"{PG_SERVER_URL}{sep}options=-csearch_path%3D{name}"
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{name}"')
    try:
        yield PgSchema(name=name, url=url, conninfo=conninfo)
    finally:
        _close_cached_stores()  # pooled connections would otherwise outlive the schema
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


@pytest.fixture
def pg_url(pg_schema: PgSchema) -> str:
    return pg_schema.url


# --------------------------------------------------------------------------------------------
# The store on either backend
# --------------------------------------------------------------------------------------------


@pytest.fixture
def sqlite_url(tmp_path) -> Iterator[str]:
    yield f"sqlite:///{tmp_path / 'watchkeeper.db'}"
    _close_cached_stores()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store_url(request) -> str:
    """A fresh, empty store URL: SQLite in tmp_path, or PostgreSQL in its own schema."""
    return request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url")


@pytest.fixture
def store(store_url: str):
    """An opened (migrated) watchkeeper store on each backend."""
    from watchkeeper.store import open_store

    return open_store(store_url)


# --------------------------------------------------------------------------------------------
# Airflow (embedded) and the demo world
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def airflow_db():
    """Migrated Airflow metadata DB for the session (SQLite under a temp AIRFLOW_HOME)."""
    from watchkeeper.airflow import embedded

    embedded.migrate()
    return embedded


@pytest.fixture(scope="session")
def small_demo(tmp_path_factory):
    """A small demo world (2,000 rows a day, 42 days), generated once per session.

    Tests copy nothing from it: they point WATCHKEEPER_HOME at a folder whose demo/ links here.
    """
    from watchkeeper.demo import generate_demo

    root = tmp_path_factory.mktemp("demo_world")
    manifest = generate_demo(root, rows_per_day=2000, training_rows=5000)
    return manifest


@pytest.fixture
def demo_home(small_demo, monkeypatch, tmp_path):
    """WATCHKEEPER_HOME for one test: its own store and reports, the shared demo world linked."""
    home = tmp_path / "home"
    home.mkdir()
    (home / "demo").symlink_to(Path(small_demo.home) / "demo")
    monkeypatch.setenv("WATCHKEEPER_HOME", str(home))
    return home


@pytest.fixture
def run_dag(airflow_db):
    """run_dag(dag_id, ds) -> RunOutcome, through dag.test() of the configured dags folder."""
    embedded = airflow_db

    def run(dag_id: str, ds: str):
        bag = embedded.dagbag()
        assert not bag.import_errors, bag.import_errors
        dag = bag.get_dag(dag_id)
        assert dag is not None, f"no DAG {dag_id}; have {sorted(bag.dag_ids)}"
        return embedded.run_day(dag, ds)

    return run


# --------------------------------------------------------------------------------------------
# Scheduling: the longest files first
# --------------------------------------------------------------------------------------------

# `make test` hands whole files to two workers in collection order (--dist loadfile with
# --no-loadscope-reorder: by default xdist puts the files with the most tests first, which
# sends a two-test file that replays 515 days to the very end). Starting
# the files that take minutes first (longest processing time first) lets the other worker
# drain the short ones meanwhile, so both finish together instead of one long replay
# starting last. Measured with --durations on CI's shape; order only, never a skip.
SLOWEST_FILES_FIRST = (
    "test_backtest_long.py", "test_backtest.py", "test_labels_dag.py", "test_distributed.py",
    "test_onboard_readme.py", "test_chaos.py", "test_expected_change.py", "test_drift.py",
)


def pytest_collection_modifyitems(session, config, items):
    rank = {name: i for i, name in enumerate(SLOWEST_FILES_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: files stay whole
