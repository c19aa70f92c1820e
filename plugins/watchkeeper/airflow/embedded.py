"""The embedded Airflow of `make demo` and the tests: SQLite metadata under WATCHKEEPER_HOME,
DAGs from this checkout's dags/, runs through `dag.test()` in one process.

Airflow reads its configuration when first imported, so `configure()` must run before any
`import airflow` in the process; it refuses to run after, rather than silently using another
AIRFLOW_HOME.
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from watchkeeper import paths


def configure(home: Path | None = None, dags_folder: Path | None = None,
              airflow_dir: str = "airflow") -> dict[str, str]:
    home = Path(home) if home else paths.home()
    airflow_home = home / airflow_dir
    airflow_home.mkdir(parents=True, exist_ok=True)
    env = {
        "WATCHKEEPER_HOME": str(home),
        "AIRFLOW_HOME": str(airflow_home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder or paths.project_root() / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(paths.project_root() / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{airflow_home / 'airflow.db'}",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": os.environ.get("AIRFLOW__LOGGING__LOGGING_LEVEL", "WARNING"),
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
    }
    # A stable JWT secret per embedded home (64+ bytes: shorter ones draw InsecureKeyLengthWarning).
    secret_file = airflow_home / "jwt_secret"
    if not secret_file.exists():
        import secrets

        secret_file.write_text(secrets.token_hex(48))
    env.setdefault("AIRFLOW__API_AUTH__JWT_SECRET", os.environ.get(
        "AIRFLOW__API_AUTH__JWT_SECRET") or secret_file.read_text().strip())
    if "airflow" in sys.modules:
        current = os.environ.get("AIRFLOW_HOME")
        if current != env["AIRFLOW_HOME"]:
            raise RuntimeError(
                f"Airflow was already imported with AIRFLOW_HOME={current!r}; configure the "
                "embedded Airflow before importing airflow"
            )
    os.environ.update(env)
    # GX logs ~200 INFO lines at import when Airflow's logging is already set up.
    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    # dag.test() talks to Airflow's in-process execution API through Starlette's test client,
    # which warns about its httpx transport on every run: noise for anyone reading the demo.
    import warnings

    warnings.filterwarnings("ignore", message=r"Using `httpx` with `starlette\.testclient`")
    # Airflow's DAG-file discovery uses a pathspec name that pathspec deprecates: not ours to fix.
    warnings.filterwarnings("ignore", message=r"GitWildMatchPattern \('gitwildmatch'\) is deprecated")
    return env


_WARNINGS_LOG: dict[str, object] = {}


def route_warnings(log_file: Path) -> None:
    """Keep third-party warnings (deprecations, numpy/scipy "divide by zero", pandas futures)
    off the console of `watchkeeper run` and the demo: each one Python would show is written to
    `log_file` instead, the embedded run's own log. Warnings raised by Watchkeeper's own code stay
    on the console. Airflow's task processes in a deployment are untouched: there they stay in the
    task logs, as before.

    Airflow points `warnings.showwarning` at its console logger whenever it sets up a task's
    logging, so the redirection sits one step earlier, at `warnings._showwarnmsg`, which CPython
    calls for every warning shown (it calls `showwarning` in turn). Where that hook is missing,
    third-party warnings are only filtered.
    """
    import warnings

    log_file.parent.mkdir(parents=True, exist_ok=True)
    _WARNINGS_LOG["path"] = log_file
    if _WARNINGS_LOG.get("installed"):
        return
    original = getattr(warnings, "_showwarnmsg", None)
    if original is None:  # another Python: drop them rather than print them
        for category in (DeprecationWarning, PendingDeprecationWarning, FutureWarning,
                         RuntimeWarning):
            warnings.filterwarnings("ignore", category=category)
        _WARNINGS_LOG["installed"] = True
        return

    ours = str(Path(__file__).resolve().parents[1])  # plugins/watchkeeper

    def show(msg) -> None:
        filename = str(getattr(msg, "filename", "") or "")
        if filename.startswith(ours):
            return original(msg)
        _WARNINGS_LOG["count"] = int(_WARNINGS_LOG.get("count", 0)) + 1
        try:
            with open(_WARNINGS_LOG["path"], "a", encoding="utf-8") as fh:
                fh.write(warnings.formatwarning(msg.message, msg.category, msg.filename,
                                                msg.lineno, msg.line))
        except OSError:
            pass  # a warning must never fail a run

    warnings._showwarnmsg = show
    _WARNINGS_LOG["installed"] = True


def warnings_logged() -> tuple[int, Path | None]:
    """How many third-party warnings route_warnings() kept off the console, and where."""
    return int(_WARNINGS_LOG.get("count", 0)), _WARNINGS_LOG.get("path")


def migrate() -> None:
    from airflow.utils.db import initdb

    initdb()


def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag()
    return bag


@dataclass
class RunOutcome:
    dag_id: str
    ds: str
    state: str
    tasks: dict[str, str]

    @property
    def ok(self) -> bool:
        return self.state == "success"


class DayNotRun(RuntimeError):
    """Airflow ran no task for the day (a day before the DAG's start): never a silent success."""


def run_day(dag, ds: str) -> RunOutcome:
    """One model day through `dag.test()`, with the logical date at midnight of `ds` in the DAG's
    timezone (the model's): the day a scheduler would run, and its start date's midnight."""
    import pendulum

    from watchkeeper.airflow.days import logical_date

    tz = dag.timezone
    ld = pendulum.instance(logical_date(ds, tz))
    if dag.start_date is not None and ld < dag.start_date:
        raise DayNotRun(
            f"{dag.dag_id}: {ds} is before the DAG's start {dag.start_date.date().isoformat()} "
            f"({tz}); Airflow runs no task for it")
    dr = dag.test(logical_date=ld)

    def name(state) -> str:
        return str(getattr(state, "value", state))

    tasks = {}
    for ti in dr.get_task_instances():
        # mapped tasks (one per feature group) appear as task_id[map_index]
        key = ti.task_id if (ti.map_index is None or ti.map_index < 0) else f"{ti.task_id}[{ti.map_index}]"
        tasks[key] = name(ti.state)
    if not tasks:
        raise DayNotRun(f"{dag.dag_id} on {ds}: the run finished without running any task "
                        f"(state {name(dr.state)})")
    return RunOutcome(dag.dag_id, ds, name(dr.state), tasks)
