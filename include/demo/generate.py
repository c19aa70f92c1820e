"""Generate the Watchkeeper demo world (six weeks of fraud and eta batches, labels, a story).

    python include/demo/generate.py --home DIR [--end YYYY-MM-DD] [--rows-per-day N]

The generator itself lives in the package (`watchkeeper.demo.generate_demo`) so the DAGs, the CLI
and the tests share one implementation; this file is the command-line entry point.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import date
from pathlib import Path

try:
    from watchkeeper import demo
except ImportError:  # run with a Python that does not have the package installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "plugins"))
    from watchkeeper import demo


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--end {text!r}: expected a date YYYY-MM-DD") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, default=None,
                        help="WATCHKEEPER_HOME to write <home>/demo into"
                             " (default: $WATCHKEEPER_HOME or ./var)")
    parser.add_argument("--end", type=_date, default=None,
                        help="last day of the demo, YYYY-MM-DD (default: yesterday, UTC)")
    parser.add_argument("--rows-per-day", type=int, default=20_000,
                        help="approximate rows per daily batch (default 20000)")
    parser.add_argument("--training-rows", type=int, default=50_000,
                        help="rows in each training set (default 50000)")
    args = parser.parse_args(argv)

    if args.home is None:
        from watchkeeper import paths
        args.home = paths.home()
    started = time.perf_counter()
    try:
        manifest = demo.generate_demo(args.home, args.end, rows_per_day=args.rows_per_day,
                                      training_rows=args.training_rows)
    except demo.DemoError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: writing the demo world under {args.home}: {exc}", file=sys.stderr)
        return 1
    elapsed = time.perf_counter() - started

    story = manifest.story
    print(f"demo world: {manifest.root}")
    print(f"days: {manifest.ds(1)} .. {manifest.ds(len(manifest.dates))} ({len(manifest.dates)})")
    for model in demo.DEMO_MODELS:
        rows = manifest.rows[model]
        print(f"{model}: {sum(rows.values())} rows, "
              f"{min(rows.values())}..{max(rows.values())} a day")
    print(f"drift from day {story.drift_start_day} ({manifest.ds(story.drift_start_day)}), "
          f"upstream bug on day {story.incident_day} ({manifest.ds(story.incident_day)}), "
          f"late landing on day {story.late_landing_day} ({manifest.ds(story.late_landing_day)})")
    print(f"generated in {elapsed:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
