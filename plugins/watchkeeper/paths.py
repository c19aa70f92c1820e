"""Where things live: the project checkout and the runtime folder WATCHKEEPER_HOME.

Runtime state (the SQLite store, the embedded AIRFLOW_HOME, reports, demo data, bench scratch)
lives under one git-ignored folder so that `rm -rf var` is a full reset.
"""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def project_root() -> Path:
    """The checkout that holds dags/, plugins/, include/ and expectations/."""
    env = os.environ.get("WATCHKEEPER_PROJECT")
    return Path(env).resolve() if env else PROJECT_ROOT


def home() -> Path:
    """WATCHKEEPER_HOME (default ./var under the project root); created on first use."""
    env = os.environ.get("WATCHKEEPER_HOME")
    path = Path(env).resolve() if env else project_root() / "var"
    path.mkdir(parents=True, exist_ok=True)
    return path


def models_dir() -> Path:
    env = os.environ.get("WATCHKEEPER_MODELS_DIR")
    return Path(env).resolve() if env else project_root() / "include" / "models"


def reports_dir() -> Path:
    return home() / "reports"


def day_report_dir(model: str, ds: str) -> Path:
    """Per model and day: validation pages, Evidently reports, quality reports."""
    path = reports_dir() / model / ds
    path.mkdir(parents=True, exist_ok=True)
    return path


def demo_dir() -> Path:
    return home() / "demo"
