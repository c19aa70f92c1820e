"""`make bench`: each workload in its own process and scratch folder; figures are merged into
WATCHKEEPER_HOME/bench/results.json (a flat object) and printed as a table.

The demo's state is never touched: workloads get WATCHKEEPER_HOME=<home>/bench/scratch/<name>.
Figures are measured, never asserted in tests.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "plugins"))

from watchkeeper import paths  # noqa: E402

TARGETS = {
    "dag_parse_seconds_50_models": "< 1 s",
    "dag_parse_seconds_1000_models": "< 2 s",
    "quality_seconds_1m_rows": "<= 1.2 x bare GX",
    "drift_ratio_vs_bare_evidently": "<= 0.25",
    "drift_verdicts_equal": "= 1",
    "drift_peak_rss_mb": "< 1500",
    "gate_cli_seconds": "< 1 s",
    "gate_decision_ms": "< 50 ms",
    "reports_mb_demo_site": "< 300",
    "pages_demo_fraud": "<= 3 (42 days)",
    "pages_demo_eta": "= 0",
    "gate_open_share_small_batch_shift": ">= 0.9",
    "messages_per_30_healthy_days_small_batch_shift": "<= 5",
    "pages_on_healthy_days_seasonal_yearly_cycle": "= 0",
}


def workload(name: str, args: list[str], env_extra: dict | None = None) -> dict:
    scratch = paths.home() / "bench" / "scratch" / name
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    out = scratch / "figures.json"
    env = {**os.environ, "WATCHKEEPER_HOME": str(scratch), **(env_extra or {})}
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, *args, "--out", str(out)], env=env, cwd=ROOT,
                       capture_output=True, text=True)
    if r.returncode != 0 or not out.exists():
        print(f"  {name}: FAILED (exit {r.returncode})\n{r.stderr[-3000:]}", file=sys.stderr)
        return {f"{name}_error": 1}
    figures = json.loads(out.read_text())
    print(f"  {name}: done in {time.monotonic() - t0:.0f} s", flush=True)
    return figures


def main() -> int:
    only = set(sys.argv[1:])
    workloads = [
        ("dag_parse", ["bench/dag_parse_bench.py"]),
        ("dag_parse_1000", ["bench/dag_parse_bench.py", "--models", "1000"]),
        ("quality", ["bench/quality_bench.py"]),
        ("drift", ["bench/drift_bench.py"]),
        ("alerts", ["bench/alerts_bench.py"]),
        ("pushdown", ["bench/pushdown_bench.py"]),
        ("reports", ["bench/reports_bench.py"]),
        ("gate", ["bench/gate_bench.py"]),
        ("noise", ["bench/noise_bench.py"]),
    ]
    results_path = paths.home() / "bench" / "results.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    print("Running benchmarks (each in its own process) ...", flush=True)
    for name, args in workloads:
        if only and name not in only:
            continue
        if not (ROOT / args[0]).exists():
            print(f"  {name}: skipped ({args[0]} not present)")
            continue
        results.update(workload(name, args))
    results_path.parent.mkdir(parents=True, exist_ok=True)
    results_path.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    width = max(len(k) for k in results) if results else 10
    print(f"\n{'figure':<{width}}  {'value':>12}  target")
    for k in sorted(results):
        v = results[k]
        shown = f"{v:.3f}" if isinstance(v, float) else str(v)
        print(f"{k:<{width}}  {shown:>12}  {TARGETS.get(k, '')}")
    print(f"\nwritten to {results_path}")
    return 1 if any(k.endswith("_error") for k in results) else 0


if __name__ == "__main__":
    sys.exit(main())
