"""Helpers of the chaos suite (tests/test_chaos.py): a model world the test may break, homes to
run it in, and store dumps that can be compared between homes.

A chaos test never touches the shared demo world: it copies the days it needs into its own data
folder and writes a spec pointing there (WATCHKEEPER_MODELS_DIR). The same data folder serves a
clean home (the reference) and a faulted home, so every stored path is the same in both and a
healed store must equal the clean one exactly.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import yaml

from watchkeeper import paths

PROJECT = paths.project_root()
RUN_TIMING = ("started_at", "duration_seconds")


@dataclass
class World:
    """One model's inputs under `root`, and the spec that reads them from there."""

    model: str
    root: Path
    models_dir: Path
    demo: object  # the session's DemoManifest

    @property
    def predictions(self) -> Path:
        return self.root / "predictions"

    @property
    def labels(self) -> Path:
        return self.root / "labels"

    def ds(self, n: int) -> str:
        return self.demo.ds(n)

    # eta: one Parquet file and one landing marker per day
    def batch_file(self, n: int, suffix: str = ".parquet") -> Path:
        return self.predictions / f"ds={self.ds(n)}{suffix}"

    def marker(self, n: int) -> Path:
        return self.predictions / f"ds={self.ds(n)}.landed"

    def read_batch(self, n: int) -> pd.DataFrame:
        return pd.read_parquet(self.batch_file(n))

    def write_batch(self, n: int, frame: pd.DataFrame) -> None:
        frame.to_parquet(self.batch_file(n), index=False)

    def label_file(self, n: int) -> Path:
        return self.labels / f"arrived={self.ds(n)}.parquet"

    @property
    def db(self) -> Path:  # fraud: the SQLite source
        return self.root / "fraud.db"

    def sql(self, statement: str, params: tuple = ()) -> int:
        with sqlite3.connect(self.db) as conn:
            return conn.execute(statement, params).rowcount


def eta_world(tmp_path: Path, demo, days: range, monkeypatch, *, spec_changes=None) -> World:
    """A copy of eta's days (batches, landing markers, labels) and a spec reading it."""
    src = Path(demo.home) / "demo" / "eta"
    world = World("eta", tmp_path / "eta_data", tmp_path / "models", demo)
    world.predictions.mkdir(parents=True)
    world.labels.mkdir()
    for n in days:
        for suffix in (".parquet", ".landed"):
            shutil.copy(src / "predictions" / f"ds={demo.ds(n)}{suffix}", world.predictions)
        label = src / "labels" / f"arrived={demo.ds(n)}.parquet"
        if label.exists():
            shutil.copy(label, world.labels)
    spec = yaml.safe_load((PROJECT / "include/models/eta.yaml").read_text())
    spec["source"]["path"] = str(world.predictions / "ds={ds}.parquet")
    spec["landing"]["path"] = str(world.predictions / "ds={ds}.landed")
    spec["labels"]["source"]["path"] = str(world.labels / "arrived={ds}.parquet")
    _write_spec(world, spec, spec_changes, monkeypatch)
    return world


def fraud_world(tmp_path: Path, demo, monkeypatch, *, spec_changes=None) -> World:
    """A copy of fraud's SQLite source and landing manifest, and a spec reading them."""
    src = Path(demo.home) / "demo" / "fraud"
    world = World("fraud", tmp_path / "fraud_data", tmp_path / "models", demo)
    world.root.mkdir(parents=True)
    shutil.copy(src / "fraud.db", world.db)
    shutil.copy(src / "landing.json", world.root / "landing.json")
    spec = yaml.safe_load((PROJECT / "include/models/fraud.yaml").read_text())
    spec["source"]["url"] = f"sqlite:///{world.db}"
    spec["landing"]["path"] = str(world.root / "landing.json")
    _write_spec(world, spec, spec_changes, monkeypatch)
    return world


def _write_spec(world: World, spec: dict, changes, monkeypatch) -> None:
    # A failing task must fail now: Airflow's retry delay (minutes) would stall dag.test().
    spec["retries"] = 0
    if changes:
        changes(spec)
    world.models_dir.mkdir(exist_ok=True)
    (world.models_dir / f"{world.model}.yaml").write_text(yaml.safe_dump(spec))
    monkeypatch.setenv("WATCHKEEPER_MODELS_DIR", str(world.models_dir))


def new_home(tmp_path: Path, demo, monkeypatch, name: str) -> Path:
    """A fresh WATCHKEEPER_HOME (own store, state, reports) linked to the shared demo world."""
    home = tmp_path / name
    home.mkdir()
    (home / "demo").symlink_to(Path(demo.home) / "demo")
    monkeypatch.setenv("WATCHKEEPER_HOME", str(home))
    return home


def dump(model: str, *, keep_runs: bool = True) -> dict:
    """The current home's store for `model`, without run timings (the only fields a re-run may
    change) and with the home's own path replaced, so two homes compare equal."""
    from watchkeeper.store import open_store

    d = open_store().dump(model)
    if keep_runs:
        d["wk_run"] = [{k: v for k, v in r.items() if k not in RUN_TIMING} for r in d["wk_run"]]
    else:
        d.pop("wk_run")
    text = json.dumps(d, default=str, sort_keys=True).replace(str(paths.home()), "<home>")
    return json.loads(text)


def outbox(model: str) -> list[tuple]:
    """What the outbox holds, without times and Slack's ids: (ds, kind, subject, status)."""
    from watchkeeper.store import open_store

    return sorted((r.ds, r.kind, r.subject, r.status) for r in open_store().outbox(model))


def stage(model: str, ds: str, name: str):
    from watchkeeper.store import open_store

    return next((s for s in open_store().stage_results(model) if s.ds == ds and s.stage == name), None)


def failures(model: str, ds: str) -> list:
    from watchkeeper.store import open_store

    return [e for e in open_store().expectation_results(model, ds=ds) if not e.success]


def partition(model: str, ds: str):
    from watchkeeper.store import open_store

    return next((p for p in open_store().partitions(model) if p.ds == ds), None)


def metrics(model: str, family: str, ds: str) -> dict[str, dict]:
    from watchkeeper.store import open_store

    return {m.subject: m.payload for m in open_store().metrics(model, family, since=ds, until=ds)}


def slis(model: str, ds: str) -> dict:
    from watchkeeper.store import open_store

    return {v.sli: v for v in open_store().slis(model) if v.ds == ds}


def only_days(d: dict, last_ds: str) -> dict:
    """A dump restricted to rows of days up to `last_ds` (a clean run of more days, compared with
    a run that stopped there: later days never rewrite earlier days' monitor rows)."""
    return {t: [r for r in rows if r.get("ds", "") <= last_ds] for t, rows in d.items()}


# ----- a task killed mid-write ---------------------------------------------------------------------
#
# The test starts the monitor's task code (watchkeeper.monitor / watchkeeper.analysis, what
# watchkeeper.airflow.runtime calls) in a child process with a hook that stops it inside one write
# and says so on stdout; the parent then SIGKILLs it there, as the OOM killer or a lost worker
# would. Hooks (HANG_ENV):
#   "write_stage:<stage>", "write_metrics:<family>"  after the first statement of that store
#                                                    write's transaction, before its commit
#   "batch", "part"  half-way through writing the staged batch / a drift part file

HANG_ENV = "WATCHKEEPER_CHAOS_HANG_IN"
HANG_MARKER = "chaos: hanging inside"


@dataclass
class Kill:
    hung: str  # where the child said it was when it was killed
    returncode: int
    log: str  # the child's stderr


def kill_mid_write(model: str, ds: str, steps: list[str], hang_in: str, *,
                   timeout: float = 300.0) -> Kill:
    """Run `steps` of (model, ds) in a child (home, store and specs from this process's
    environment) and SIGKILL it once it hangs at `hang_in`; fails if it never gets there."""
    import signal
    import subprocess
    import sys
    import tempfile
    import time

    from conftest import subprocess_env

    hung = None
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen([sys.executable, __file__, model, ds, *steps], stdout=out,
                                stderr=err, text=True, env=subprocess_env(**{HANG_ENV: hang_in}))
        try:
            deadline = time.monotonic() + timeout
            while True:
                out.seek(0)
                hung = next((line[len(HANG_MARKER):].strip() for line in out
                             if line.startswith(HANG_MARKER)), None)
                if hung is not None or proc.poll() is not None or time.monotonic() > deadline:
                    break
                time.sleep(0.05)
            if hung is not None:
                proc.send_signal(signal.SIGKILL)
        finally:
            if proc.poll() is None and hung is None:
                proc.kill()
            proc.wait()
        err.seek(0)
        log = err.read()
    assert hung is not None, (f"the child never reached {hang_in!r} (exit {proc.returncode}); "
                              f"its stderr ends:\n{log[-3000:]}")
    return Kill(hung, proc.returncode, log)


def _hang(where: str) -> None:
    import time

    print(f"{HANG_MARKER} {where}", flush=True)
    time.sleep(600)  # the parent's SIGKILL ends it


def _hang_in_store_write(method: str, subject: str) -> None:
    from watchkeeper.store import Store

    write, upsert = getattr(Store, method), Store._upsert
    inside: list[bool] = []

    def hooked_write(self, model, ds, what, *args, **kwargs):
        inside.append((what.stage if method == "write_stage" else what) == subject)
        try:
            return write(self, model, ds, what, *args, **kwargs)
        finally:
            inside.pop()

    def hooked_upsert(self, conn, table, rows):
        upsert(self, conn, table, rows)
        if inside and inside[-1] and rows:
            _hang(f"Store.{method}({subject}): {len(rows)} row(s) upserted into {table.name}, "
                  "transaction not committed")

    setattr(Store, method, hooked_write)
    Store._upsert = hooked_upsert


def _hang_in_file_write(kind: str) -> None:
    import io
    import pickle

    if kind == "batch":
        to_parquet = pd.DataFrame.to_parquet

        def half_parquet(self, path, *args, **kwargs):
            buf = io.BytesIO()
            to_parquet(self, buf, *args, **kwargs)
            data = buf.getvalue()
            with open(path, "wb") as f:
                f.write(data[: len(data) // 2])
            _hang(f"writing {path}: {len(data) // 2} of {len(data)} bytes")

        pd.DataFrame.to_parquet = half_parquet
    elif kind == "part":
        dump = pickle.dump

        def half_pickle(obj, file, *args, **kwargs):
            if "group-" not in str(getattr(file, "name", "")):
                return dump(obj, file, *args, **kwargs)  # e.g. the skew reference's cache
            data = pickle.dumps(obj, *args, **kwargs)
            file.write(data[: len(data) // 2])
            file.flush()
            _hang(f"writing {file.name}: {len(data) // 2} of {len(data)} bytes")

        pickle.dump = half_pickle
    else:
        raise ValueError(f"{HANG_ENV}={kind!r}: unknown hook")


def _child(model: str, ds: str, steps: list[str]) -> None:
    """The monitor DAG's task steps, in order: load, check:<stage>, drift, skew (each group's
    part, then the merge), part:<kind>:<group> (one mapped task), predictions, record_slis."""
    import os

    from watchkeeper import analysis, monitor
    from watchkeeper.spec import get_spec
    from watchkeeper.store import open_store

    hook = os.environ[HANG_ENV]
    if ":" in hook:
        _hang_in_store_write(*hook.split(":", 1))
    else:
        _hang_in_file_write(hook)
    spec, store = get_spec(model), open_store()
    loaded = None
    for step in steps:
        name, *arg = step.split(":")
        if name == "load":
            loaded = monitor.load(spec, ds, store)
        elif name == "check":
            monitor.check(spec, ds, arg[0], store, loaded)
        elif name in ("drift", "skew"):
            for i, features in enumerate(spec.drift_groups):
                analysis.analyze_drift_group(spec, ds, store, name, i, features)
            analysis.merge_drift_groups(spec, ds, store, name)
        elif name == "part":
            i = int(arg[1])
            analysis.analyze_drift_group(spec, ds, store, arg[0], i, spec.drift_groups[i])
        elif name == "predictions":
            analysis.analyze_predictions(spec, ds, store)
        elif name == "record_slis":
            monitor.record_slis(spec, ds, store)
        else:
            raise ValueError(f"unknown step {step!r}")


if __name__ == "__main__":
    import sys

    _child(sys.argv[1], sys.argv[2], sys.argv[3:])
