"""`make demo-canary`: a candidate fraud model rolled out stage by stage, twice.

Two 70-day worlds of the fraud demo, each in its own WATCHKEEPER_HOME (var/canary-better,
var/canary-worse), generated with `watchkeeper.demo.generate_demo` (unchanged; only its
`Story` differs): fraud has changed since fraud-v3 was trained (the account-takeover pattern is
present from day 1, at half the main demo's strength) and nothing else happens, so the
incumbent is still within its SLO and the question is only whether the candidate is better.

- The candidate, fraud-v4, was retrained on recent labels: it scores the current concept.
- **better**: fraud-v4 serves what it scored in shadow.
- **worse**: fraud-v4's serving image loaded the artifact trained on a class-balanced sample,
  before its prior correction, so every score it *serves* is shifted by about +3.5 log-odds. Shadow scoring ran the calibrated batch job and
  looked fine; the canary is where it shows — which is why canaries exist.

The traffic router is simulated: before each day's runs the demo writes the candidate's
predictions for that day under demo/fraud/candidate/ds=<ds>.parquet as the stage in force
says — in shadow every id (shadow path); at p% the ids whose hash (pandas' siphash with a fixed
key, `traffic_slice`) falls in the first p% of the hash range (serving path); nothing after a
rollback. Then the labels DAG (ingest, restate, compare, alert) and the rollout DAG run for the
day through the embedded Airflow. The monitor DAG does not run: the comparison needs only
predictions and labels, and the gate reads the quality SLO the labels DAG keeps.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from watchkeeper import paths

VARIANTS = ("better", "worse")
MODEL = "fraud"
CANDIDATE = "fraud-v4"
# The worse variant's serving artifact was trained on a class-balanced (1:1) sample and lacks
# the prior correction: every served score is off by log((1 − π) / π) ≈ 3.5 log-odds (π ≈ 3%).
SERVING_LOGIT_SHIFT = 3.5
ROUTER_KEY = "canary-router-01"  # 16 bytes: pandas' hash key


def canary_story(n_days: int = 70):
    """The demo story with the concept change present from day 1 at half strength and
    every incident switched off."""
    from watchkeeper.demo import Story

    return Story(n_days=n_days, drift_start_day=1, concept_ramp_days=1,
                 concept_new_pattern_logit=2.5, concept_old_pattern_decay=0.35,
                 amount_drift_per_day=0.0, merchant_shift_per_day=0.0,
                 incident_day=n_days, incident_amount_factor=1.0, incident_null_fraction=0.0,
                 incident_new_category_share=0.0, incident_new_category_true_logit=0.0,
                 late_landing_day=1, late_landing_hour=2)


def traffic_slice(ids: pd.Series, percent: float) -> np.ndarray:
    """The ids a p% canary serves: a fixed hash of the id in the first p% of its range, so an id
    stays with the model that served it as the share grows (5% ⊂ 25% ⊂ 50%)."""
    h = pd.util.hash_array(ids.astype(str).to_numpy(dtype=object), hash_key=ROUTER_KEY)
    return (h % np.uint64(10_000)) < np.uint64(int(round(percent * 100)))


def candidate_scores(batch: pd.DataFrame, story, day: int, path: str, variant: str) -> np.ndarray:
    """fraud-v4's score of each row: P(fraud) under the current concept; served through the
    uncalibrated artifact in the worse variant's serving path."""
    from watchkeeper.demo import _fraud_true_probability, concept_level

    p = _fraud_true_probability(batch, story, concept_level(story, day))
    if path == "serving" and variant == "worse":
        p = np.clip(p, 1e-9, 1 - 1e-9)
        p = 1 / (1 + np.exp(-(np.log(p / (1 - p)) + SERVING_LOGIT_SHIFT)))
    return p


def canary_spec(since: str, project: Path | None = None) -> dict:
    """The main demo's fraud spec with a candidate block; only the quality SLO (the monitor DAG
    does not run here, so data SLOs would have no days)."""
    import yaml

    root = project or paths.project_root()
    spec = yaml.safe_load((root / "include" / "models" / "fraud.yaml").read_text(encoding="utf-8"))
    spec["slos"] = [s for s in spec["slos"] if s.get("quality")]
    for s in spec["slos"]:
        s["threshold"] = 0.2  # the changed concept costs fraud-v3 precision (about 0.35): still acceptable
    spec["suites"] = {k: str(root / v) for k, v in spec["suites"].items()}
    spec["candidate"] = {
        "name": CANDIDATE, "incumbent": "fraud-v3", "mode": "canary", "since": since,
        "source": {"kind": "file", "path": "{home}/demo/fraud/candidate/ds={ds}.parquet"},
        "margins": {"brier": 0.005}, "alpha": 0.05, "min_labels": 1500,
        "min_segment_labels": 400, "stages": ["shadow", 5, 25, 50, 100],
    }
    return spec


def serve_day(home: Path, ds: str, day: int, stage, status: str, variant: str, story) -> int:
    """Write the candidate's predictions of ds as the router would log them; returns the rows."""
    from watchkeeper.rollout import ACTIVE

    batch = pd.read_parquet(home / "demo" / MODEL / "predictions" / f"ds={ds}.parquet")
    out_dir = home / "demo" / MODEL / "candidate"
    out_dir.mkdir(parents=True, exist_ok=True)
    if status != ACTIVE and stage != 100:  # rolled back: the candidate serves nothing
        return 0
    if stage == "shadow":
        rows, path = batch, "shadow"
    else:
        rows, path = batch[traffic_slice(batch["txn_id"], float(stage))], "serving"
    score = candidate_scores(rows, story, day, path, variant)
    frame = pd.DataFrame({"txn_id": rows["txn_id"].to_numpy(), "model_version": CANDIDATE,
                          "score": score, "predicted_label": (score >= 0.5).astype("int64"),
                          "country": rows["country"].to_numpy(),
                          "customer_tier": rows["customer_tier"].to_numpy(),
                          "amount": rows["amount"].to_numpy()})
    tmp = out_dir / f".ds={ds}.parquet.tmp"
    frame.to_parquet(tmp, index=False)
    os.replace(tmp, out_dir / f"ds={ds}.parquet")
    return len(frame)


def _reset(home: Path) -> None:
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)


def run_variant(variant: str, end: str | None = None, rows_per_day: int = 5000,
                n_days: int = 70, stop_when_ended: bool = False) -> int:
    """One world, from nothing: generate, then run the days. Call with WATCHKEEPER_HOME set to
    the variant's home (main() does), in a fresh process (the embedded Airflow is per process)."""
    import yaml

    from watchkeeper.demo import generate_demo

    home = paths.home()
    t0 = time.monotonic()
    story = canary_story(n_days)
    end_date = date.fromisoformat(end) if end else None
    manifest = generate_demo(home, end=end_date, rows_per_day=rows_per_day, training_rows=5000,
                             story=story)
    days = manifest.ds_list
    models = home / "models"
    models.mkdir(exist_ok=True)
    (models / f"{MODEL}.yaml").write_text(yaml.safe_dump(canary_spec(days[0]), sort_keys=False),
                                          encoding="utf-8")
    os.environ["WATCHKEEPER_MODELS_DIR"] = str(models)
    os.environ.setdefault("WATCHKEEPER_SITE_REBUILD", "end")
    print(f"{variant:<6} world: {len(days)} days, {days[0]} .. {days[-1]}, {rows_per_day} rows a day "
          f"({time.monotonic() - t0:.0f} s)", flush=True)

    from watchkeeper import rollout
    from watchkeeper.demo_runner import Session
    from watchkeeper.spec import get_spec
    from watchkeeper.store import open_store

    spec = get_spec(MODEL)
    store = open_store()
    session = Session()
    bad = 0
    for i, ds in enumerate(days, start=1):
        st = rollout.state(spec, store, ds)
        served = serve_day(home, ds, i, st.stage, st.status, variant, story)
        runs = [session.run(f"{MODEL}_labels", ds), session.run(f"{MODEL}_rollout", ds)]
        bad += sum(not r.ok for r in runs)
        print(day_line(variant, spec, store, ds, i, st, served, runs), flush=True)
        after = rollout.state(spec, store, (date.fromisoformat(ds) + timedelta(days=1)).isoformat())
        if stop_when_ended and after.status != rollout.ACTIVE and i < len(days):
            print(f"{variant:<6} the rollout ended ({after.status}) on day {i}: days {i + 1}..{len(days)} "
                  "have nothing left to decide and are not run (--all-days runs them)", flush=True)
            break
    from watchkeeper import reports

    reports.build_site(store, [spec])
    print(f"{variant:<6} done in {time.monotonic() - t0:.0f} s; model page: "
          f"{paths.reports_dir() / MODEL / 'index.html'}", flush=True)
    return 1 if bad else 0


def day_line(variant, spec, store, ds, day, st, served, runs) -> str:
    from watchkeeper import rollout

    d = rollout.stored_decision(spec, store, ds, st) if st.status == rollout.ACTIVE else None
    change = [e for e in store.events(spec.name, kinds=rollout.STAGE_EVENT, since=ds, until=ds)]
    parts = [f"{variant:<6} {ds} day {day:2d}", f"stage {st.label:<6}",
             f"{'serves ' + str(served) + ' rows' if st.stage != 'shadow' else 'shadow ' + str(served) + ' ids':<17}"]
    if st.status != rollout.ACTIVE:
        parts.append(f"rollout {st.status}")
    elif d is not None:
        t = (d["evidence"].get("metrics") or [{}])[0]
        gain = t.get("delta")
        parts.append(f"{d['decision']:<8} n={t.get('n', 0):>6,} brier gain "
                     + (f"{gain:+.4f} in [{t['lower']:+.4f}, {t['upper']:+.4f}]" if gain is not None
                        else "n/a"))
    if d is not None and d["decision"] == "promote" and not change:
        why = rollout.decide(spec, store=store, ds=ds)["why"]
        gate = why.split("the error-budget gate is ", 1)
        parts.append(f"held: gate {gate[1][:100]}" if len(gate) == 2 else f"held: {why[:100]}")
    for e in change:
        p = e.payload
        if p["action"] == "rollback":
            parts.append(f"=> ROLLED BACK from {rollout.stage_label(p['from'])} "
                         f"(traffic {' → '.join(str(s) + '%' for s in p['steps'])})")
        elif p["action"] == "complete" or p["to"] == 100:
            parts.append(f"=> PROMOTED to {rollout.stage_label(p['to'])}: rollout complete")
        else:
            parts.append(f"=> PROMOTED to {rollout.stage_label(p['to'])}")
    if not all(r.ok for r in runs):
        parts.append("[" + ", ".join(f"{r.dag_id} {r.state}: " + ", ".join(
            f"{t}={s}" for t, s in r.tasks.items() if s not in ("success", "skipped"))
            for r in runs if not r.ok) + "]")
    return " | ".join(parts)


def summary(base: Path) -> tuple[list[str], bool]:
    """One paragraph per variant from its store; whether both ended as the demo expects."""
    from watchkeeper import rollout
    from watchkeeper.store import open_store

    lines, as_expected = [], True
    expected = {"better": ("complete", 100), "worse": ("rolled_back", 5)}
    for v in VARIANTS:
        home = base / f"canary-{v}"
        store = open_store(f"sqlite:///{home / 'watchkeeper.db'}")
        events = sorted(store.events(MODEL, kinds=rollout.STAGE_EVENT), key=lambda e: e.ds)
        steps = []
        for e in events:
            p = e.payload
            if p["action"] == "rollback":
                steps.append(f"{e.ds} rolled back from {rollout.stage_label(p['from'])} "
                             f"({' → '.join(str(s) + '%' for s in p['steps'])})")
            else:
                steps.append(f"{e.ds} {rollout.stage_label(p['from'])} → {rollout.stage_label(p['to'])}")
        last = events[-1].payload if events else None
        if last is None:
            got = ("active", None)
        elif last["action"] == "rollback":
            got = ("rolled_back", last["from"])
        else:
            got = ("complete" if last["to"] == 100 else "active", last["to"])
        ok = got == expected[v]
        as_expected &= ok
        lines.append(f"  {v:<6} {'as expected' if ok else 'UNEXPECTED'}: "
                     + ("; ".join(steps) if steps else "no stage change"))
        lines.append(f"         watchkeeper compare {MODEL} --json   "
                     f"(WATCHKEEPER_HOME={home} WATCHKEEPER_MODELS_DIR={home / 'models'})")
    return lines, as_expected


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="python -m watchkeeper.canary_demo",
                                description="two 70-day canary rollouts: better and worse candidate")
    p.add_argument("--end", help="last day (default: yesterday)")
    p.add_argument("--days", type=int, default=70)
    p.add_argument("--rows-per-day", type=int, default=5000)
    p.add_argument("--all-days", action="store_true",
                   help="keep running the days after a rollout has ended (slower; changes nothing)")
    a = p.parse_args(argv)
    import signal

    # A terminated demo must not leave its workers running: SIGTERM unwinds like Ctrl-C.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    t0 = time.monotonic()
    base = paths.home()
    procs = []
    for v in VARIANTS:
        home = base / f"canary-{v}"
        _reset(home)
        env = {**os.environ, "WATCHKEEPER_HOME": str(home), "WATCHKEEPER_SITE_REBUILD": "end",
               "WATCHKEEPER_MODELS_DIR": str(home / "models")}
        env.pop("WATCHKEEPER_DB_URL", None)
        args = [sys.executable, "-m", "watchkeeper.canary_demo", "variant", v, str(a.days),
                str(a.rows_per_day), "all" if a.all_days else "stop"] + ([a.end] if a.end else [])
        procs.append(subprocess.Popen(args, env=env))
    try:
        failures = sum(p.wait() != 0 for p in procs)
    finally:  # an interrupted demo must not leave its workers running
        for p in procs:
            if p.poll() is None:
                p.kill()
    lines, ok = summary(base)
    print(f"\nCanary demo finished in {time.monotonic() - t0:.0f} s.")
    print("\n".join(lines))
    if failures:
        print(f"  {failures} variant(s) had DAG runs that did not succeed; see [...] above.")
    return 0 if ok and not failures else 1


if __name__ == "__main__":
    if len(sys.argv) >= 6 and sys.argv[1] == "variant":  # a worker process of main()
        sys.exit(run_variant(sys.argv[2], end=sys.argv[6] if len(sys.argv) > 6 else None,
                             n_days=int(sys.argv[3]), rows_per_day=int(sys.argv[4]),
                             stop_when_ended=sys.argv[5] == "stop"))
    sys.exit(main())
