"""Push-down bench: the fraud ingestion suite on a 10-million-row day of a PostgreSQL table,
validated in the database (GX SQL datasource) and in pandas (the table-day read into a
DataFrame, as `monitor.load` does), each path in its own process.

Figures (written to --out as JSON, merged by bench/run.py):
  ingestion_sql_seconds_10m_rows, ingestion_pandas_seconds_10m_rows
      wall time of the validation itself (for pandas: reading the day + running the suite);
      imports and the GX context are warmed up first in both processes
  ingestion_sql_peak_rss_mb, ingestion_pandas_peak_rss_mb
      the process's peak resident memory (ru_maxrss), imports included

The table is created once per run in a fresh database (generate_series, in the server; no data
crosses the wire) and dropped afterwards, with the database. 10M rows take about 1.6 GB on
disk and the pandas path about 10 GB of memory: run it on a machine that has both.

Usage: python bench/pushdown_bench.py --out figures.json [--rows N] [--server-url URL]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "plugins"))

DAY = "2026-03-02"
PREVIOUS_DAY = "2026-03-01"  # a small neighbouring day: the daily filter must leave it out
DEFAULT_SERVER = os.environ.get("WATCHKEEPER_BENCH_PG_URL",
                                "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")

# The fraud table's columns and plausible values, generated in SQL. Column types are those a
# production team would use; values keep the ingestion suite's expectations passing.
GENERATE = """
INSERT INTO predictions
SELECT 't' || lpad(g::text, 9, '0'),
       %(day)s::timestamp + make_interval(secs => (g %% 86400)),
       'fraud-v3',
       round((exp(ln(40) + (random() - 0.5) * 3))::numeric, 2)::double precision,
       (ARRAY['grocery','electronics','travel','fashion','gaming','restaurants','fuel',
              'pharmacy'])[1 + g %% 8],
       (ARRAY['US','DE','FR','GB','ES','IT','NL'])[1 + g %% 7],
       CASE WHEN g %% 50 = 0 THEN NULL ELSE (g %% 2000)::double precision END,
       g %% 24,
       (ARRAY['bronze','silver','gold'])[1 + g %% 3],
       g %% 12,
       random(),
       (g %% 97 = 0)::int,
       %(day)s::date
FROM generate_series(%(start)s::bigint, %(stop)s::bigint) AS g
"""


def _pg(url: str):
    import psycopg
    from sqlalchemy.engine import make_url

    return psycopg.connect(make_url(url).set(drivername="postgresql").render_as_string(
        hide_password=False), autocommit=True)


def _db_url(server: str, name: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(server).set(drivername="postgresql+psycopg", database=name).render_as_string(
        hide_password=False)


def create_table(url: str, rows: int) -> float:
    t0 = time.perf_counter()
    with _pg(url) as conn:
        conn.execute("""CREATE TABLE predictions (txn_id text, event_ts timestamp,
            model_version text, amount double precision, merchant_category text, country text,
            device_age_days double precision, hour bigint, customer_tier text,
            txn_count_24h bigint, score double precision, predicted_label bigint,
            ds date NOT NULL)""")
        conn.execute(GENERATE, {"day": PREVIOUS_DAY, "start": rows + 1, "stop": rows + 10_000})
        step = 1_000_000
        for start in range(1, rows + 1, step):
            conn.execute(GENERATE, {"day": DAY, "start": start,
                                    "stop": min(rows, start + step - 1)})
        conn.execute("ANALYZE predictions")
    return time.perf_counter() - t0


# ----- one path, in this process ----------------------------------------------------------------


def run_path(path: str, url: str, rows: int) -> dict:
    import logging

    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    from watchkeeper import monitor, pushdown, quality, sources
    from watchkeeper.spec import SqlTableSource, get_spec

    spec = get_spec("fraud", ROOT / "include" / "models")
    spec = spec.model_copy(update={"source": SqlTableSource(
        kind="sql_table", url=url, table="predictions", date_column="ds")})
    suite = quality.load_suite(spec.suite_path("ingestion"))

    class History:  # a week of full days: min_rows is half of it
        def trailing_row_counts(self, model, ds, n=7):
            return [rows] * n

    def params(ds):
        return monitor.stage_parameters(spec, ds, History())

    # Warm-up on the small day: imports, the GX context and datasource, first-run costs.
    if path == "sql":
        pushdown.check_in_database(spec, PREVIOUS_DAY, suite, parameters=params(PREVIOUS_DAY))
    else:
        frame = sources.read_partition(spec, PREVIOUS_DAY).frame
        quality.run_suite(frame, suite, stage="ingestion", parameters=params(PREVIOUS_DAY),
                          pii_columns=spec.pii_columns)
        del frame

    t0 = time.perf_counter()
    if path == "sql":
        result = pushdown.check_in_database(spec, DAY, suite, parameters=params(DAY))
    else:
        frame = sources.read_partition(spec, DAY).frame
        result = quality.run_suite(frame, suite, stage="ingestion", parameters=params(DAY),
                                   pii_columns=spec.pii_columns)
    seconds = time.perf_counter() - t0
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return {"seconds": round(seconds, 2), "peak_rss_mb": round(peak_mb, 1),
            "rows": result.row_count, "evaluated": result.evaluated, "passed": result.passed,
            "failed": [o.expectation_id for o in result.failed]}


def _meminfo(key: str) -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])  # KiB
    return 0


def _rss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _child(path: str, url: str, rows: int) -> dict:
    """One path in its own process. The pandas path of 10M rows needs about 10 GB: on a shared
    machine it is stopped before the kernel's OOM killer picks a victim (maybe someone else's
    process), and the figure is then the memory it had reached, a lower bound."""
    import tempfile
    import threading

    floor_kib = 1_500_000
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen([sys.executable, __file__, "--path", path, "--url", url,
                                 "--rows", str(rows)], stdout=out, stderr=err, text=True,
                                cwd=ROOT)
        seen = {"rss": 0, "aborted": None}

        def watch():
            while proc.poll() is None:
                seen["rss"] = max(seen["rss"], _rss_kib(proc.pid))
                if _meminfo("MemAvailable") < floor_kib:
                    seen["aborted"] = (f"the machine's available memory fell below "
                                       f"{floor_kib // 1024} MiB at {seen['rss'] // 1024} MiB RSS")
                    proc.kill()
                    return
                time.sleep(0.25)

        t = threading.Thread(target=watch, daemon=True)
        t.start()
        proc.wait()
        t.join()
        if seen["aborted"]:
            return {"aborted": seen["aborted"], "peak_rss_mb": round(seen["rss"] / 1024, 1)}
        out.seek(0)
        err.seek(0)
        if proc.returncode != 0:
            print(err.read()[-4000:], file=sys.stderr)
            raise SystemExit(f"the {path} path failed (exit {proc.returncode})")
        return json.loads(out.read().strip().splitlines()[-1])


# ----- driver ---------------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path)
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--server-url", default=DEFAULT_SERVER,
                    help="a PostgreSQL server URL; a fresh database is created on it")
    ap.add_argument("--path", choices=["sql", "pandas"], help=argparse.SUPPRESS)
    ap.add_argument("--url", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.path:  # child: one path, result as JSON on the last line of stdout
        print(json.dumps(run_path(args.path, args.url, args.rows)))
        return 0

    name = f"wk_bench_{uuid.uuid4().hex[:10]}"
    url = _db_url(args.server_url, name)
    with _pg(args.server_url) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    figures: dict = {}
    try:
        print(f"creating {args.rows:,} rows in database {name} ...", flush=True)
        figures["pushdown_bench_table_seconds"] = round(create_table(url, args.rows), 1)
        label = f"{args.rows // 1_000_000}m" if args.rows % 1_000_000 == 0 else str(args.rows)
        for path in ("sql", "pandas"):
            print(f"{path} path ...", flush=True)
            res = _child(path, url, args.rows)
            if res.get("aborted"):
                print(f"  {path} path stopped: {res['aborted']}", flush=True)
                figures[f"ingestion_{path}_aborted_low_memory"] = 1
                figures[f"ingestion_{path}_peak_rss_mb"] = res["peak_rss_mb"]  # a lower bound
                continue
            print(f"  {res}", flush=True)
            figures[f"ingestion_{path}_seconds_{label}_rows"] = res["seconds"]
            figures[f"ingestion_{path}_peak_rss_mb"] = res["peak_rss_mb"]
            figures[f"ingestion_{path}_failed_expectations"] = len(res["failed"])
        figures["ingestion_sql_rss_share_of_pandas"] = round(
            figures["ingestion_sql_peak_rss_mb"] / figures["ingestion_pandas_peak_rss_mb"], 3)
    finally:
        with _pg(args.server_url) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    print(json.dumps(figures, indent=2))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
