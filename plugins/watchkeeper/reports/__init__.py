"""The reviewers' static site (WATCHKEEPER_HOME/reports) and the triage page.

Public API:
- `build_site(store, specs, days=None)`: index + model pages + day pages (+ triage pages for
  days that page); incremental when `days` is given.
- `triage(spec, ds, store)`: run the incident checklist and write `<model>/<ds>/triage.html`.
- `triage_relpath(model, ds)`: where that page lives under the reports root (alerts link to it).
- `site_figures(root)`: the bench figures `reports_mb_demo_site` and `model_page_mb`.
"""

from __future__ import annotations

from watchkeeper.reports.site import (
    ReportError,
    SiteBuild,
    build_site,
    install_static,
    prune,
    site_figures,
)
from watchkeeper.reports.triage_page import TriageRun, TriageUnavailable, triage_relpath
from watchkeeper.reports.triage_page import run as triage

__all__ = [
    "ReportError",
    "SiteBuild",
    "TriageRun",
    "TriageUnavailable",
    "build_site",
    "install_static",
    "prune",
    "site_figures",
    "triage",
    "triage_relpath",
]
