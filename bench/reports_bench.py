"""reports_mb_demo_site and model_page_mb: the size of the reviewers' site of a demo run.

Measures the site under $WATCHKEEPER_DEMO_HOME (default ./var, where `make demo` writes); run
`make demo` first. It reads the site only, it does not build one.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    home = Path(os.environ.get("WATCHKEEPER_DEMO_HOME", ROOT / "var"))
    from watchkeeper import reports

    root = home / "reports"
    if not (root / "index.html").exists():
        Path(args.out).write_text(json.dumps({"reports_site_missing": 1}))
        print(f"no demo site at {root}: run `make demo` first", file=sys.stderr)
        return
    Path(args.out).write_text(json.dumps(reports.site_figures(root)))


if __name__ == "__main__":
    sys.exit(main())
