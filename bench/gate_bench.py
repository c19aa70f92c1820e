"""gate_cli_seconds (a cold `watchkeeper gate` process) and gate_decision_ms (in-process), against a
store of 100 models x 365 days of budget snapshots."""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def seed(home: Path, models: int, days: int) -> list[str]:
    from watchkeeper import slo as slomod
    from watchkeeper.store import open_store, wk_metric

    spec_dir = home / "models"
    spec_dir.mkdir(parents=True, exist_ok=True)
    base = yaml.safe_load((ROOT / "include/models/eta.yaml").read_text())
    names = [f"model_{i:03d}" for i in range(models)]
    for n in names:
        (spec_dir / f"{n}.yaml").write_text(yaml.safe_dump(dict(base, name=n)))
    os.environ["WATCHKEEPER_MODELS_DIR"] = str(spec_dir)
    store = open_store()
    today = date.today()
    now = datetime.now(timezone.utc)
    rows = []
    for n in names:
        for i in range(days, 0, -1):
            ds = (today - timedelta(days=i)).isoformat()
            for s in base["slos"]:
                snap = slomod.BudgetSnapshot(slo=s["name"], ds=ds, window_start=ds, total=28.0, bad=0.0,
                                             allowed_bad=2.8, budget_remaining=1.0, burn_1d=0.0,
                                             burn_3d=0.0, burn_7d=0.0, bad_days_3d=0, mature_days=28,
                                             alert=None, data_as_of=ds)
                rows.append({"model": n, "ds": ds, "family": "budget", "subject": s["name"],
                             "known_on": ds, "value": 1.0, "payload": snap.to_dict(), "updated_at": now})
    with store.transaction() as conn:
        for i in range(0, len(rows), 5000):
            conn.execute(wk_metric.insert(), rows[i:i + 5000])
    return names


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--models", type=int, default=100)
    ap.add_argument("--days", type=int, default=365)
    args = ap.parse_args()
    home = Path(os.environ["WATCHKEEPER_HOME"])
    names = seed(home, args.models, args.days)
    exe = str(Path(sys.executable).with_name("watchkeeper"))
    env = {**os.environ}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    subprocess.run([exe, "gate", names[0]], env=env, capture_output=True)  # bytecode warm-up
    cli = []
    for n in names[:5]:
        t0 = time.perf_counter()
        r = subprocess.run([exe, "gate", n, "--json"], env=env, capture_output=True, text=True)
        cli.append(time.perf_counter() - t0)
        assert r.returncode == 0, r.stdout + r.stderr
    from watchkeeper import gatekeeper
    from watchkeeper.store import open_store

    store = open_store()
    gatekeeper.ask(names[0], store=store)
    inproc = []
    for n in names[:50]:
        t0 = time.perf_counter()
        gatekeeper.ask(n, store=store)
        inproc.append((time.perf_counter() - t0) * 1000)
    Path(args.out).write_text(json.dumps({
        "gate_cli_seconds": statistics.median(cli),
        "gate_decision_ms": statistics.median(inproc),
        "gate_snapshots_in_store": args.models * args.days * 5,
    }))


if __name__ == "__main__":
    sys.exit(main())
