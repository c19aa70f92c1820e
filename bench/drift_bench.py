"""Drift stage benchmark: watchkeeper.drift vs. a bare Evidently DataDriftPreset run.

Usage: python bench/drift_bench.py --out FILE.json [--rows N] [--seed S] [--workers W] [--keep]

Every workload runs in its own process (this script re-invoked with --mode), so each one's peak
RSS (resource.getrusage(RUSAGE_SELF).ru_maxrss, read inside the child) and wall time are its own:

  gen      seeded reference and batch, N rows x 20 columns each (12 numeric, 8 categorical, with
           NaN, +-inf, a new category and drift in 5 columns), written as Parquet (not timed).
  prepare  prepare_reference() on the reference -- the "kept prepared reference" a daily run
           loads; reported separately as drift_prepare_seconds_1m_rows, not part of the ratio.
  ours     TIMED: load the prepared reference from disk + compare() for all 20 columns (scores,
           Evidently verdicts, calibrated + Holm-corrected verdicts). -> drift_seconds_1m_rows,
           drift_peak_rss_mb (the whole process, including the batch read).
  bare     TIMED: Dataset.from_pandas x2 + Report([DataDriftPreset()]).run() + snapshot.dict(),
           defaults only, as a user would run it. -> drift_seconds_1m_rows_bare_evidently.
  report   TIMED: render_report() (the shared-JS HTML page, sampled). -> drift_report_seconds_1m_rows.

Reading the Parquet files is outside every timed span. Scratch lives in
$WATCHKEEPER_HOME/bench/drift (the data files are removed afterwards unless --keep). drift_verdicts_equal is 1 when, for every
column, the method, the score (to 1e-9) and Evidently's verdict from our run equal the bare run's.
Methods are resolved in `prepare` with the batch itself (resolve_with=), i.e. on exactly the data
the preset sees, which is why the auto-chosen methods match.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

NUM = ["n_norm", "n_shift", "n_scale", "n_lognorm", "n_exp", "n_unif", "n_poisson", "n_lowcard",
       "n_nan", "n_inf", "n_gamma", "n_t"]
CAT = ["c_bin", "c_three", "c_country", "c_merchant", "c_device", "c_new", "c_nan", "c_tier"]


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def _features():
    from watchkeeper.drift import FeatureSpec

    return [FeatureSpec(c, "numerical") for c in NUM] + [FeatureSpec(c, "categorical") for c in CAT]


# ------------------------------------------------------------------------------------------------
# child workloads
# ------------------------------------------------------------------------------------------------


def mode_gen(work: Path, rows: int, seed: int) -> dict:
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    countries = [f"C{i:02d}" for i in range(30)]
    merchants = [f"m{i:03d}" for i in range(200)]

    def frame(n: int, current: bool) -> pd.DataFrame:
        p_country = np.linspace(3, 1, 30) if not current else np.r_[np.linspace(3, 1, 30)[:25], [4] * 5]
        d = {
            "n_norm": rng.normal(0, 1, n),
            "n_shift": rng.normal(0.3 if current else 0.0, 1, n),
            "n_scale": rng.normal(0, 1.3 if current else 1.0, n),
            "n_lognorm": rng.lognormal(0, 1, n),
            "n_exp": rng.exponential(2, n),
            "n_unif": rng.uniform(-1, 1, n),
            "n_poisson": rng.poisson(3, n).astype(float),
            "n_lowcard": rng.integers(0, 4, n).astype(float),
            "n_nan": np.where(rng.random(n) < 0.05, np.nan, rng.normal(0, 1, n)),
            "n_inf": np.where(rng.random(n) < 0.001, np.inf, np.where(rng.random(n) < 0.02, np.nan,
                                                                      rng.normal(0, 1, n))),
            "n_gamma": rng.gamma(2, 1, n),
            "n_t": rng.standard_t(4, n),
            "c_bin": rng.choice(["yes", "no"], n, p=[0.3, 0.7]),
            "c_three": rng.choice(["a", "b", "c"], n),
            "c_country": rng.choice(countries, n, p=p_country / p_country.sum()),
            "c_merchant": rng.choice(merchants, n),
            "c_device": rng.choice(["ios", "android", "web", "pos", "other"], n, p=[.3, .3, .2, .15, .05]),
            "c_new": rng.choice(["x", "y", "z", "NEW"] if current else ["x", "y", "z"], n,
                                p=[.33, .33, .32, .02] if current else None),
            "c_nan": np.where(rng.random(n) < 0.1, None, rng.choice(["p", "q", "r", "s"], n)),
            "c_tier": rng.choice(["gold", "silver", "bronze", "none"], n),
        }
        return pd.DataFrame(d)

    work.mkdir(parents=True, exist_ok=True)
    frame(rows, False).to_parquet(work / "reference.parquet", index=False)
    frame(rows, True).to_parquet(work / "current.parquet", index=False)
    return {"rows": rows, "rss_mb": _rss_mb()}


def mode_prepare(work: Path, rows: int, seed: int) -> dict:
    import pandas as pd

    from watchkeeper.drift import prepare_reference

    ref = pd.read_parquet(work / "reference.parquet")
    cur = pd.read_parquet(work / "current.parquet")
    t0 = time.perf_counter()
    prep = prepare_reference(ref, _features(), name="bench", max_rows=None,
                             typical_batch_rows=len(cur), resolve_with=cur, seed=seed)
    prep.save(work / "prepared.pkl")
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "rss_mb": _rss_mb(), "methods": prep.methods,
            "file_mb": (work / "prepared.pkl").stat().st_size / 2**20}


def mode_ours(work: Path, rows: int, seed: int, workers: int) -> dict:
    import pandas as pd

    from watchkeeper.drift import PreparedReference, compare

    cur = pd.read_parquet(work / "current.parquet")
    t0 = time.perf_counter()
    prep = PreparedReference.load(work / "prepared.pkl")
    t1 = time.perf_counter()
    res = compare(prep, cur, kind="skew", max_workers=workers)
    t2 = time.perf_counter()
    cols = {r.feature: {"method": r.method, "score": r.score, "evidently_drifted": r.evidently_drifted,
                        "drifted": r.drifted, "p_adjusted": r.p_adjusted} for r in res.whole_batch_rows}
    return {"seconds": t2 - t0, "load_seconds": t1 - t0, "compare_seconds": t2 - t1, "rss_mb": _rss_mb(),
            "columns": cols, "problems": [p.message for p in res.problems],
            "dataset_drift": res.dataset_drift, "evidently_dataset_drift": res.evidently_dataset_drift}


def mode_bare(work: Path, rows: int, seed: int) -> dict:
    import pandas as pd
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    from watchkeeper.drift import _P_VALUE_METHODS, _STATTESTS

    by_display = {st.display_name: name for name, st in _STATTESTS.items()}
    ref = pd.read_parquet(work / "reference.parquet")
    cur = pd.read_parquet(work / "current.parquet")
    t0 = time.perf_counter()
    dd = DataDefinition(numerical_columns=NUM, categorical_columns=CAT)
    snap = Report([DataDriftPreset()]).run(Dataset.from_pandas(cur, data_definition=dd),
                                           Dataset.from_pandas(ref, data_definition=dd))
    metrics = snap.dict()["metrics"]
    seconds = time.perf_counter() - t0
    cols, count = {}, None
    for m in metrics:
        cfg = m["config"]
        if cfg["type"].endswith("ValueDrift"):
            name = by_display.get(cfg["method"], cfg["method"])
            score, thr = float(m["value"]), float(cfg["threshold"])
            # Evidently's own rule per method: p-value tests drift below the threshold (ks: <=)
            if name == "ks":
                drifted = score <= thr
            elif name in _P_VALUE_METHODS:
                drifted = score < thr
            elif name == "ed":
                drifted = score > thr
            else:
                drifted = score >= thr
            cols[cfg["column"]] = {"method": name, "score": score, "threshold": thr,
                                   "evidently_drifted": bool(drifted)}
        elif cfg["type"].endswith("DriftedColumnsCount"):
            count = m["value"]
    return {"seconds": seconds, "rss_mb": _rss_mb(), "columns": cols, "drifted_columns_count": count}


def mode_report(work: Path, rows: int, seed: int) -> dict:
    import pandas as pd

    from watchkeeper.drift import PreparedReference
    from watchkeeper.evidently_html import render_report

    ref = pd.read_parquet(work / "reference.parquet")
    cur = pd.read_parquet(work / "current.parquet")
    prep = PreparedReference.load(work / "prepared.pkl")
    root = work / "reports"
    t0 = time.perf_counter()
    path = render_report(ref, cur, _features(), prep.methods, root / "bench" / "2026-01-01" / "drift.html",
                         title="bench drift", thresholds=prep.thresholds, reports_root=root)
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "rss_mb": _rss_mb(), "html_kb": path.stat().st_size / 1024}


# ------------------------------------------------------------------------------------------------
# parent
# ------------------------------------------------------------------------------------------------


def _child(mode: str, work: Path, rows: int, seed: int, workers: int) -> dict:
    out = work / f"{mode}.json"
    out.unlink(missing_ok=True)
    env = dict(os.environ, PYTHONHASHSEED="0")  # same set iteration order in both runs
    cmd = [sys.executable, os.path.abspath(__file__), "--mode", mode, "--work", str(work),
           "--rows", str(rows), "--seed", str(seed), "--workers", str(workers), "--out", str(out)]
    t = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0 or not out.exists():
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
        raise SystemExit(f"drift_bench: workload '{mode}' failed (exit {proc.returncode}); see above")
    result = json.loads(out.read_text())
    print(f"  {mode:8s} {result.get('seconds', 0):8.2f} s timed, {result['rss_mb']:8.0f} MB peak RSS, "
          f"{time.perf_counter() - t:6.1f} s wall", flush=True)
    return result


def _compare_runs(ours: dict, bare: dict) -> tuple[bool, float, list[str]]:
    diffs, worst = [], 0.0
    for col, b in bare["columns"].items():
        o = ours["columns"].get(col)
        if o is None or o["score"] is None:
            diffs.append(f"{col}: not measured by watchkeeper")
            continue
        d = abs(o["score"] - b["score"])
        worst = max(worst, d)
        if o["method"] != b["method"]:
            diffs.append(f"{col}: method {o['method']} vs {b['method']}")
        if not d <= 1e-9 * max(1.0, abs(b["score"])):
            diffs.append(f"{col}: score {o['score']!r} vs {b['score']!r}")
        if o["evidently_drifted"] != b["evidently_drifted"]:
            diffs.append(f"{col}: evidently verdict {o['evidently_drifted']} vs {b['evidently_drifted']}")
    extra = set(ours["columns"]) - set(bare["columns"])
    diffs += [f"{c}: only in watchkeeper" for c in sorted(extra)]
    return not diffs, worst, diffs


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="JSON file for the flat figures")
    ap.add_argument("--rows", type=int, default=1_000_000, help="rows in reference and in batch")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=1, help="compare() threads (2 cores shared: 1 is as fast and uses less memory)")
    ap.add_argument("--keep", action="store_true", help="keep the generated Parquet and prepared files")
    ap.add_argument("--mode", choices=["gen", "prepare", "ours", "bare", "report"], help=argparse.SUPPRESS)
    ap.add_argument("--work", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.mode:  # child
        work = Path(args.work)
        fn = {"gen": mode_gen, "prepare": mode_prepare, "bare": mode_bare, "report": mode_report}.get(args.mode)
        result = mode_ours(work, args.rows, args.seed, args.workers) if args.mode == "ours" \
            else fn(work, args.rows, args.seed)
        Path(args.out).write_text(json.dumps(result, default=str))
        return 0

    from watchkeeper import paths

    work = paths.home() / "bench" / "drift"
    work.mkdir(parents=True, exist_ok=True)
    print(f"drift_bench: {args.rows:,} rows x {len(NUM) + len(CAT)} columns, scratch {work}", flush=True)
    _child("gen", work, args.rows, args.seed, args.workers)
    prep = _child("prepare", work, args.rows, args.seed, args.workers)
    ours = _child("ours", work, args.rows, args.seed, args.workers)
    bare = _child("bare", work, args.rows, args.seed, args.workers)
    report = _child("report", work, args.rows, args.seed, args.workers)
    equal, worst, diffs = _compare_runs(ours, bare)
    for d in diffs:
        print(f"  differs: {d}")
    figures = {
        "drift_rows": args.rows,
        "drift_columns": len(NUM) + len(CAT),
        "drift_seconds_1m_rows": round(ours["seconds"], 3),
        "drift_seconds_1m_rows_bare_evidently": round(bare["seconds"], 3),
        "drift_ratio_vs_bare_evidently": round(ours["seconds"] / bare["seconds"], 4),
        "drift_verdicts_equal": int(equal),
        "drift_peak_rss_mb": round(ours["rss_mb"], 1),
        "drift_report_seconds_1m_rows": round(report["seconds"], 3),
        "drift_load_prepared_seconds": round(ours["load_seconds"], 3),
        "drift_compare_seconds": round(ours["compare_seconds"], 3),
        "drift_prepare_seconds_1m_rows": round(prep["seconds"], 3),
        "drift_prepare_peak_rss_mb": round(prep["rss_mb"], 1),
        "drift_prepared_file_mb": round(prep["file_mb"], 1),
        "drift_bare_peak_rss_mb": round(bare["rss_mb"], 1),
        "drift_report_peak_rss_mb": round(report["rss_mb"], 1),
        "drift_report_html_kb": round(report["html_kb"], 1),
        "drift_max_abs_score_diff": worst,
        "drift_columns_evidently_drifted": sum(c["evidently_drifted"] for c in bare["columns"].values()),
        "drift_columns_calibrated_drifted": sum(bool(c["drifted"]) for c in ours["columns"].values()),
        "drift_workers": args.workers,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(figures, indent=2) + "\n")
    print(json.dumps(figures, indent=2))
    if not args.keep:  # a few hundred MB of scratch at 1M rows
        for name in ("reference.parquet", "current.parquet", "prepared.pkl"):
            (work / name).unlink(missing_ok=True)
    return 0  # a completed run reports its figures; drift_verdicts_equal says whether runs agree


if __name__ == "__main__":
    sys.exit(main())
