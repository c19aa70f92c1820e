"""quality_seconds_1m_rows beside quality_seconds_1m_rows_bare_gx: the same suite on the same
1M-row frame, once through watchkeeper.quality.run_suite and once by hand with bare GX, in one
process (GX warmed up first so its import cost is in neither figure)."""

from __future__ import annotations

import argparse
import json
import resource
import sys
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--rows", type=int, default=1_000_000)
    args = ap.parse_args()
    from watchkeeper import quality

    figures = quality.bench_quality(args.rows)
    figures["quality_ratio_vs_bare_gx"] = (
        figures["quality_seconds_1m_rows"] / figures["quality_seconds_1m_rows_bare_gx"])
    figures["quality_peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    Path(args.out).write_text(json.dumps(figures))


if __name__ == "__main__":
    sys.exit(main())
