"""What the alerts cost the people on call (issue 14): messages per model-day and pages per
model-month, for the demo (both models) and for the incident library's two long replays of data
nobody tuned Watchkeeper for (`small_batch_shift`: 200 rows a day; `seasonal_yearly_cycle`: a year
of a seasonal input). Plus, for those two, the share of healthy days with an open gate and the
messages per 30 healthy days that their incident.yaml limits.

A message is an outbox row somebody receives (status pending, sending, sent or failed): an
incident's onset, escalation, one-line update or reminder, a grouped announcement, a recovery, a
digest. Rows folded into an open incident or carried by a group message are not messages. Pages
are messages of severity page.

The demo runs in this workload's own WATCHKEEPER_HOME (the user's demo is left alone); the two
replays run through `watchkeeper backtest` two at a time.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
INCIDENTS = ("small_batch_shift", "seasonal_yearly_cycle")
MESSAGE_STATUSES = ("pending", "sending", "sent", "failed")


def _demo_figures() -> dict:
    from watchkeeper.store import open_store

    r = subprocess.run([sys.executable, "-m", "watchkeeper.cli", "demo"], cwd=ROOT,
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"demo failed (exit {r.returncode}):\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}")
    store = open_store()
    out = {}
    for model in ("fraud", "eta"):
        days = sorted({p.ds for p in store.partitions(model)})
        n = (date.fromisoformat(days[-1]) - date.fromisoformat(days[0])).days + 1
        rows = [r for r in store.outbox(model) if r.status in MESSAGE_STATUSES]
        pages = [r for r in rows if r.severity == "page"]
        out[f"alerts_per_model_day_demo_{model}"] = round(len(rows) / n, 3)
        out[f"pages_per_model_month_demo_{model}"] = round(30 * len(pages) / n, 3)
        out[f"messages_demo_{model}"] = len(rows)
        out[f"pages_demo_{model}"] = len(pages)
    return out


def _incident_figures() -> dict:
    args = [sys.executable, "-m", "watchkeeper.cli", "backtest", "--json", "--jobs", "2"]
    for name in INCIDENTS:
        args += ["--incident", name]
    r = subprocess.run(args, cwd=ROOT, capture_output=True, text=True)
    if r.returncode not in (0, 1):
        raise SystemExit(f"backtest failed (exit {r.returncode}):\n{r.stderr[-3000:]}")
    out = {}
    for inc in json.loads(r.stdout)["incidents"]:
        m, name = inc["measures"], inc["name"]
        for key in ("alerts_per_model_day", "pages_per_model_month", "messages_per_30_healthy_days",
                    "gate_open_share", "pages_on_healthy_days"):
            out[f"{key}_{name}"] = m.get(key)
        out[f"caught_{name}"] = int(all(o["verdict"] == "caught" for o in inc["outcomes"]))
        out[f"within_limits_{name}"] = int(all(x["ok"] for x in inc["limits"]))
        out[f"replay_seconds_{name}"] = inc["seconds"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    figures = {**_incident_figures(), **_demo_figures()}
    Path(args.out).write_text(json.dumps(figures))
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    sys.exit(main())
