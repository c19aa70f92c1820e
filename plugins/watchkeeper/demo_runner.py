"""`make demo`: generate the demo world, then run every model's DAGs day by day in an embedded
Airflow (`dag.test()` in this one process), printing one line per model and day.

The demo's days end yesterday, so what it shows is current when it finishes.
"""

from __future__ import annotations

import shutil
import sys
import time
from datetime import date, timedelta

from watchkeeper import paths


class RunRefused(ValueError):
    """Days the model's DAGs cannot run (before the spec's start_date, an empty range): worded
    for the user."""


def _days(first: str, last: str) -> list[str]:
    a, b = date.fromisoformat(first), date.fromisoformat(last)
    if b < a:
        raise RunRefused(f"--to {last} is before --ds {first}")
    return [(a + timedelta(days=i)).isoformat() for i in range((b - a).days + 1)]


def _reset(home) -> None:
    """A demo starts from nothing: store, embedded Airflow, reports and staged batches."""
    for sub in ("reports", "work", "alerts", "state", "drift"):
        shutil.rmtree(home / sub, ignore_errors=True)
    for sub in home.glob("airflow*"):
        shutil.rmtree(sub, ignore_errors=True)
    for f in home.glob("watchkeeper.db*"):
        f.unlink()


class Session:
    """An embedded Airflow with the project's DAGs loaded, ready to run days."""

    def __init__(self, airflow_dir: str = "airflow"):
        from watchkeeper.airflow import embedded

        embedded.configure(airflow_dir=airflow_dir)
        embedded.migrate()
        # Third-party deprecations and numeric warnings go to a log file, not between the lines.
        self.warnings_log = paths.home() / "logs" / f"{airflow_dir}-warnings.log"
        embedded.route_warnings(self.warnings_log)
        bag = embedded.dagbag()
        if bag.import_errors:
            msgs = "\n".join(f"{k}: {v}" for k, v in bag.import_errors.items())
            raise SystemExit(f"DAG import errors:\n{msgs}")
        self.bag = bag
        self.embedded = embedded

    def run(self, dag_id: str, ds: str):
        dag = self.bag.get_dag(dag_id)
        if dag is None:
            raise SystemExit(f"no DAG {dag_id!r}; DAGs: {', '.join(sorted(self.bag.dag_ids))}")
        return self.embedded.run_day(dag, ds)


def day_line(model: str, ds: str, outcome, store) -> str:
    """One readable line: what passed, what failed."""
    from watchkeeper import history

    days = {d["ds"]: d for d in history.build_days(model, store, [ds])}
    d = days.get(ds, {})
    parts = []
    stages = d.get("stages", {})
    for stage, res in sorted(stages.items(), key=lambda kv: history.STAGES.index(kv[0])
                             if kv[0] in history.STAGES else 99):
        if res.get("not_run"):
            parts.append(f"{stage}: not run ({res['not_run']})")
        elif res["success"]:
            parts.append(f"{stage}: ok ({res['evaluated']})")
        else:
            failed = ", ".join(
                f"{f['expectation'].removeprefix('expect_')}({f['column'] or 'table'})"
                for f in res["failed"][:4]
            )
            more = len(res["failed"]) - 4
            parts.append(f"{stage}: {len(res['failed'])} FAILED {failed}"
                         + (f" +{more}" if more > 0 else ""))
    fresh = d.get("slis", {}).get("freshness", {})
    if fresh.get("good") is False:
        parts.append("freshness: LATE" if fresh.get("value") is not None else "freshness: MISSING")
    for kind in ("drift", "skew"):
        k = d.get(kind) or {}
        moved = sorted({f["feature"] + (f"[{','.join(f'{a}={b}' for a, b in f['segment'].items())}]"
                                         if f["segment"] else "")
                        for f in k.get("features", []) if f["drifted"]})
        if moved:
            parts.append(f"{kind}: {', '.join(moved[:4])}" + (f" +{len(moved) - 4}" if len(moved) > 4 else ""))
    alerts = [p["monitor"] for p in d.get("predictions", []) if p["alert"]]
    if alerts:
        parts.append("predictions: " + ", ".join(alerts))
    q = d.get("quality") or {}
    if q.get("concept_drift"):
        parts.append("concept drift suspected")
    state = "" if outcome.ok else f" [run {outcome.state}: " + ", ".join(
        f"{t}={s}" for t, s in outcome.tasks.items() if s not in ("success", "skipped")) + "]"
    return f"{model:<6} {ds}  " + " | ".join(parts) + state


def main(end: str | None = None, rows_per_day: int = 20000, fresh: bool = True) -> int:
    """Generate the world, then run each model's days in its own process (the machine's cores
    work in parallel; each process has its own embedded Airflow metadata, the store is shared),
    then the deployment DAGs."""
    import os
    import subprocess

    t0 = time.monotonic()
    home = paths.home()
    if fresh:
        _reset(home)
    from watchkeeper.demo import generate_demo

    end_date = date.fromisoformat(end) if end else None
    print(f"Generating the demo world under {home / 'demo'} ...", flush=True)
    manifest = generate_demo(home, end=end_date, rows_per_day=rows_per_day)
    days = [d.isoformat() if hasattr(d, "isoformat") else str(d) for d in manifest.dates]
    print(f"  {len(days)} days, {days[0]} .. {days[-1]} ({time.monotonic() - t0:.0f} s)", flush=True)

    from watchkeeper.spec import load_all

    specs, errors = load_all()
    for e in errors:
        print(f"skipping invalid spec: {e}", file=sys.stderr)
    from watchkeeper.store import open_store

    open_store()  # migrate once, before the workers race to
    env = {**os.environ, "WATCHKEEPER_HOME": str(home),
           "WATCHKEEPER_EVIDENTLY_PAGES": os.environ.get("WATCHKEEPER_EVIDENTLY_PAGES", "on_finding"),
           "WATCHKEEPER_SITE_REBUILD": os.environ.get("WATCHKEEPER_SITE_REBUILD", "end")}
    # Per model, the monitor and labels DAGs run in processes of their own, as Airflow would run
    # the two DAGs side by side: labels(d) follows monitor(d), and monitor(d + 1) overlaps it.
    # The cores stay busy instead of waiting for the heaviest model.
    progress_dir = home / "work" / "demo-progress"
    shutil.rmtree(progress_dir, ignore_errors=True)
    progress_dir.mkdir(parents=True)
    procs = {}
    for s in specs:
        roles = ["monitor", "labels"] if s.labels is not None else ["monitor"]
        for role in roles:
            procs[(s.name, role)] = subprocess.Popen(
                [sys.executable, "-m", "watchkeeper.demo_runner", role, s.name, days[0], days[-1]],
                env=env)
    try:
        running = dict(procs)
        while running:
            for (model, role), p in list(running.items()):
                if p.poll() is not None:
                    del running[(model, role)]
                    f = _progress_file(model, role)  # a worker that died cannot leave its partner waiting
                    last = f.read_text() if f.exists() else ""
                    if not last.startswith("end:"):
                        _mark(model, role, f"end:{last}")
            time.sleep(0.2)
        failures = sum(p.returncode != 0 for p in procs.values())
    finally:  # an interrupted demo must not leave its workers running
        for p in procs.values():
            if p.poll() is None:
                p.kill()

    print("\nDeployments, each behind its error-budget gate:", flush=True)
    os.environ.update(env)
    session = Session()
    store = open_store()
    from watchkeeper import gatekeeper

    deploy_log = home / "work" / "deploy-runs.log"
    for spec in specs:
        # A closed gate fails its task by design; Airflow logs that with a traceback. The demo
        # says what happened below and keeps Airflow's own log in a file.
        with _stderr_to(deploy_log):
            out = session.run(f"{spec.name}_deploy", days[-1])
        d = gatekeeper.ask(spec.name, record=False)
        shipped = out.tasks.get("record_deployment") == "success"
        print(f"  {spec.name:<6} gate {d.decision.upper():<12} deploy "
              f"{'RAN' if shipped else 'DID NOT RUN'}: {d.verdict_text()}")
        for r in d.reasons:
            if r.get("verdict") != "open":
                print(f"           - {r['slo']}: {r.get('text')}")
    from watchkeeper import reports

    # Each worker built its model's pages; the index (and the deploy-day pages) are rebuilt here,
    # now that the deployments and gate decisions are in.
    t1 = time.monotonic()
    build = reports.build_site(store, specs, days=[days[-1]])
    print(f"\nReviewers' site: index and {len(specs)} model pages rebuilt "
          f"({time.monotonic() - t1:.0f} s)")
    for p in build.problems:
        print(f"  site problem: {p}")
    print()
    print(f"Demo finished in {time.monotonic() - t0:.0f} s.")
    print(f"  store:    {store.url}")
    print(f"  reports:  {paths.reports_dir()}/index.html")
    print(f"  deploy runs' Airflow log: {deploy_log}")
    logs = sorted((home / "logs").glob("*-warnings.log"))
    if logs:
        print(f"  library warnings (kept off the console): {home / 'logs'}/*-warnings.log")
    print("  try:      .venv/bin/watchkeeper status | gate fraud | history fraud --json")
    if failures:
        print(f"  {failures} model run(s) had DAG runs that did not succeed; see [run ...] above.")
        return 1
    return 0


class _stderr_to:
    """Send this process's stdout and stderr (file descriptors 1 and 2, which Airflow's loggers
    hold) to a file."""

    def __init__(self, path):
        self.path = path

    def __enter__(self):
        import os

        sys.stdout.flush()
        sys.stderr.flush()
        self._file = open(self.path, "a", encoding="utf-8")
        self._saved = [os.dup(1), os.dup(2)]
        os.dup2(self._file.fileno(), 1)
        os.dup2(self._file.fileno(), 2)
        return self

    def __exit__(self, *exc):
        import os

        sys.stdout.flush()
        sys.stderr.flush()
        for fd, saved in zip((1, 2), self._saved):
            os.dup2(saved, fd)
            os.close(saved)
        self._file.close()
        return False


def _progress_file(model: str, role: str):
    return paths.home() / "work" / "demo-progress" / f"{model}-{role}"


def _mark(model: str, role: str, value: str) -> None:
    import os

    f = _progress_file(model, role)
    tmp = f.with_suffix(".tmp")
    tmp.write_text(value)
    os.replace(tmp, f)


def _wait_for(model: str, role: str, ds: str) -> bool:
    """Wait until the other worker of the model has finished day ds (True), or ended before
    it (False). The file holds the last day done, then "end:<last day done>"."""
    f = _progress_file(model, role)
    while True:
        value = f.read_text() if f.exists() else ""
        done = value.removeprefix("end:")
        if done and done >= ds:
            return True
        if value.startswith("end:"):
            return False
        time.sleep(0.1)


def run_model(role: str, model: str, first: str, last: str) -> int:
    """One model's monitor or labels DAG, day by day (a worker process of main()).

    The labels run of a day waits for that day's monitor run (it joins the batches the monitor
    staged); the monitor runs at most one day ahead of the labels, inside the alert horizon, so
    nothing the demo alerts on turns into a backfill digest."""
    from watchkeeper.spec import get_spec
    from watchkeeper.store import open_store

    spec = get_spec(model)
    session = Session(airflow_dir=f"airflow-{model}-{role}")
    store = open_store()
    days = _days(first, last)
    last_worker = role == "labels" or spec.labels is None
    bad = 0
    done = ""
    try:
        for i, ds in enumerate(days):
            if role == "monitor":
                if spec.labels is not None and i >= 2:
                    _wait_for(model, "labels", days[i - 2])
                outcome = session.run(f"{model}_monitor", ds)
                bad += 0 if outcome.ok else 1
                print(day_line(model, ds, outcome, store), flush=True)
            else:
                if not _wait_for(model, "monitor", ds):
                    print(f"{model:<6} labels stopped at {ds}: the monitor worker ended early", flush=True)
                    return 1
                outcome = session.run(f"{model}_labels", ds)
                if not outcome.ok:
                    bad += 1
                    failed = [t for t, st in outcome.tasks.items() if st not in ("success", "skipped")]
                    print(f"{model:<6} {ds}  labels run {outcome.state}: {', '.join(failed)}", flush=True)
            _mark(model, role, ds)
            done = ds
    finally:
        _mark(model, role, f"end:{done}")
    if last_worker:
        # This model's pages, built here so the workers share the cores for it too.
        from watchkeeper import reports

        t0 = time.monotonic()
        build = reports.build_site(store, [spec])
        print(f"{model:<6} reviewers' site: {len(build.day_pages)} day pages, "
              f"{len(build.triage_pages)} triage pages ({time.monotonic() - t0:.0f} s)", flush=True)
    return 1 if bad else 0


def _duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    if seconds < 90:
        return f"{seconds} s"
    if seconds < 5400:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def progress_note(k: int, n: int, elapsed: float, first_day: float | None = None) -> str:
    """ "day k of n" and when the range should finish, from the mean time per day so far (the
    first day, which pays for the imports, left out once there are others)."""
    if n <= 1:
        return ""
    per_day = elapsed / k
    if first_day is not None and k > 1:
        per_day = (elapsed - first_day) / (k - 1)
    left = per_day * (n - k)
    return f"  [day {k} of {n}, {_duration(per_day)}/day, " + (
        f"about {_duration(left)} left]" if k < n else f"done in {_duration(elapsed)}]")


def labels_part(outcome) -> str:
    if outcome is None:
        return ""
    if outcome.ok:
        return "labels: ok"
    failed = [t for t, st in outcome.tasks.items() if st not in ("success", "skipped")]
    return f"labels run {outcome.state}: {', '.join(failed)}"


def run_range(model: str, first: str, last: str, dags: list[str] | None = None,
              out=None) -> int:
    """A model's DAGs for each day of [first, last]: one line per day (its monitor and labels
    runs together), with day k of n and the time left on a range."""
    from watchkeeper.spec import get_spec
    from watchkeeper.store import open_store

    out = out or sys.stdout
    spec = get_spec(model)  # an unknown model fails here with the list of known ones
    days = _days(first, last)
    if spec.start_date is not None and date.fromisoformat(days[0]) < spec.start_date:
        raise RunRefused(
            f"model {model!r} starts on {spec.start_date.isoformat()} ({spec.spec_path}: "
            f"start_date), so Airflow runs no task for {days[0]}; set start_date to "
            f"{days[0]} or earlier, or remove it (without it any past day can run)")
    kinds = dags or (["monitor", "labels"] if spec.labels is not None else ["monitor"])
    if "labels" in kinds and spec.labels is None:
        raise RunRefused(f"model {model!r} has no labels DAG (no `labels` block in {spec.spec_path})")
    session = Session()
    store = open_store()
    bad = 0
    t0 = time.monotonic()
    first_day = None
    for k, ds in enumerate(days, start=1):
        outcomes = {kind: session.run(f"{model}_{kind}", ds) for kind in kinds}
        bad += sum(0 if o.ok else 1 for o in outcomes.values())
        if "monitor" in outcomes:
            line = day_line(model, ds, outcomes["monitor"], store)
            extra = labels_part(outcomes.get("labels"))
            line += (" | " + extra) if extra else ""
        else:
            line = f"{model:<6} {ds}  " + labels_part(outcomes["labels"])
        elapsed = time.monotonic() - t0
        first_day = elapsed if first_day is None else first_day
        print(line + progress_note(k, len(days), elapsed, first_day), file=out, flush=True)
    count, where = session.embedded.warnings_logged()
    if count:
        print(f"({count} warning(s) from libraries kept off the console: {where})", file=out,
              flush=True)
    return 1 if bad else 0


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] in ("monitor", "labels"):
        sys.exit(run_model(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]))
    sys.exit("usage: python -m watchkeeper.demo_runner monitor|labels NAME FIRST LAST")
