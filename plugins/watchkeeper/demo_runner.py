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


def _days(first: str, last: str) -> list[str]:
    a, b = date.fromisoformat(first), date.fromisoformat(last)
    if b < a:
        raise ValueError(f"--to {last} is before --ds {first}")
    return [(a + timedelta(days=i)).isoformat() for i in range((b - a).days + 1)]


def _reset(home) -> None:
    """A demo starts from nothing: store, embedded Airflow, reports and staged batches."""
    for sub in ("airflow", "reports", "work", "alerts"):
        shutil.rmtree(home / sub, ignore_errors=True)
    for f in home.glob("watchkeeper.db*"):
        f.unlink()


class Session:
    """An embedded Airflow with the project's DAGs loaded, ready to run days."""

    def __init__(self):
        from watchkeeper.airflow import embedded

        embedded.configure()
        embedded.migrate()
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
    state = "" if outcome.ok else f" [run {outcome.state}: " + ", ".join(
        f"{t}={s}" for t, s in outcome.tasks.items() if s not in ("success", "skipped")) + "]"
    return f"{model:<6} {ds}  " + " | ".join(parts) + state


def main(end: str | None = None, rows_per_day: int = 20000, fresh: bool = True) -> int:
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

    session = Session()
    from watchkeeper.spec import load_all
    from watchkeeper.store import open_store

    store = open_store()
    specs, errors = load_all()
    for e in errors:
        print(f"skipping invalid spec: {e}", file=sys.stderr)
    failures = 0
    for ds in days:
        for spec in specs:
            outcome = session.run(f"{spec.name}_monitor", ds)
            failures += 0 if outcome.ok else 1
            print(day_line(spec.name, ds, outcome, store), flush=True)
    print()
    print(f"Demo finished in {time.monotonic() - t0:.0f} s.")
    print(f"  store:    {store.url}")
    print(f"  reports:  {paths.reports_dir()}/<model>/<day>/validation-*.html")
    print("  history:  .venv/bin/watchkeeper history fraud   (add --json for JSON)")
    if failures:
        print(f"  {failures} DAG run(s) did not succeed; see the lines marked [run ...] above.")
        return 1
    return 0


def run_range(model: str, first: str, last: str, dags: list[str] | None = None) -> int:
    from watchkeeper.spec import get_spec
    from watchkeeper.store import open_store

    get_spec(model)  # an unknown model fails here with the list of known ones
    session = Session()
    store = open_store()
    bad = 0
    for ds in _days(first, last):
        for kind in dags or ["monitor"]:
            outcome = session.run(f"{model}_{kind}", ds)
            bad += 0 if outcome.ok else 1
            print(day_line(model, ds, outcome, store), flush=True)
    return 1 if bad else 0
