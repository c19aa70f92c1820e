"""Evidently drift pages that share one copy of Evidently's JavaScript bundle.

Evidently 0.7.23's ``Snapshot.save_html`` inlines its 3.5 MB JS bundle and a base64 icon font in
every page. Reports here live at ``<reports_root>/<model>/<ds>/drift.html``; the bundle is copied
once to ``<reports_root>/_static/evidently/`` and each page points to it with a relative path
(``../../_static/evidently/evidently.0.7.23.js``), so the site opens offline, from file:// or
any static server, and every page stays around 100-200 KB.

The page is an Evidently ``DataDriftPreset`` with the per-column methods (and thresholds) fixed
up front -- the same methods the stored scores use -- computed on a seeded sample of at most
``max_rows`` rows per side to keep rendering fast; the page title says when it is sampled.
Columns that are missing or entirely null/inf on either side are left out before Evidently runs
(Evidently fails the whole report on one such column) and the title lists them.
"""

from __future__ import annotations

import base64
import html as html_lib
import os
import shutil
import threading
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

import evidently
from evidently import DataDefinition, Dataset, Report
from evidently.legacy.calculations.stattests import StatTest
from evidently.legacy.core import ColumnType
from evidently.legacy.utils.dashboard import STATIC_PATH
from evidently.presets import DataDriftPreset

from watchkeeper.drift import FeatureSpec, _STATTESTS

__all__ = ["DEFAULT_HTML_MAX_ROWS", "EvidentlyHtmlError", "render_report", "save_html_shared",
           "shared_static_dir"]

DEFAULT_HTML_MAX_ROWS = 20_000
_BUNDLE = f"evidently.{evidently.__version__}.js"
_FONT = "material-ui-icons.woff2"


class EvidentlyHtmlError(Exception):
    """The report cannot be rendered or written (names the path and the reason)."""


def shared_static_dir(reports_root: str | os.PathLike) -> Path:
    """Where the one shared copy of Evidently's bundle lives under a reports root."""
    return Path(reports_root) / "_static" / "evidently"


def _ensure_bundle(static_dir: Path) -> tuple[Path, Path]:
    """Copy index.js and the icon font once; atomic, so concurrent renders never see half a file."""
    static_dir.mkdir(parents=True, exist_ok=True)
    out = []
    for src_name, dst_name in (("index.js", _BUNDLE), (_FONT, _FONT)):
        src = Path(STATIC_PATH) / src_name
        dst = static_dir / dst_name
        if not dst.exists() or dst.stat().st_size != src.stat().st_size:
            tmp = dst.with_name(f".{dst_name}.{os.getpid()}.{threading.get_ident()}.tmp")
            shutil.copyfile(src, tmp)
            os.replace(tmp, dst)
        out.append(dst)
    return out[0], out[1]


def save_html_shared(snapshot, path: str | os.PathLike, *, reports_root: str | os.PathLike,
                     title: str) -> Path:
    """Write ``snapshot`` as HTML at ``path`` using the shared bundle under ``reports_root``."""
    path = Path(path)
    static_dir = shared_static_dir(reports_root)
    try:
        lib, font = _ensure_bundle(static_dir)
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EvidentlyHtmlError(f"{static_dir}: cannot install the shared Evidently bundle: {exc}") from exc
    rel = Path(os.path.relpath(static_dir, path.parent)).as_posix()
    page = snapshot.get_html_str(as_iframe=False)
    with open(Path(STATIC_PATH) / "index.js", encoding="utf-8") as f:
        inline_js = f"<script>{f.read()}</script>"
    with open(Path(STATIC_PATH) / _FONT, "rb") as f:
        inline_font = f"url(data:font/ttf;base64,{base64.b64encode(f.read()).decode()})"
    if page.count(inline_js) != 1 or page.count(inline_font) != 1:
        # the swap relies on the template's exact inline strings; fail loudly, not with a 4 MB page
        raise EvidentlyHtmlError(
            f"{path}: Evidently {evidently.__version__}'s HTML template no longer inlines the bundle "
            f"and font exactly once; the shared-bundle rewrite needs updating")
    page = page.replace(inline_js, f'<script src="{rel}/{lib.name}"></script>')
    page = page.replace(inline_font, f"url({rel}/{font.name})")
    safe_title = html_lib.escape(title)
    head = '<meta charset="UTF-8">'
    if head not in page or "<body>" not in page:
        raise EvidentlyHtmlError(f"{path}: unexpected Evidently HTML template (no charset meta or body)")
    page = page.replace(head, f"{head}\n        <title>{safe_title}</title>", 1)
    page = page.replace(
        "<body>", '<body>\n    <h1 style="font-family: sans-serif; font-size: 1.3em; margin: 12px 16px">'
                  f"{safe_title}</h1>", 1)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        tmp.write_text(page, encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise EvidentlyHtmlError(f"{path}: cannot write report: {exc}") from exc
    return path


def _sample(df: pd.DataFrame, max_rows: int | None, seed: int) -> pd.DataFrame:
    if max_rows is None or len(df) <= max_rows:
        return df
    pick = np.sort(np.random.default_rng(seed).choice(len(df), size=max_rows, replace=False))
    return df.iloc[pick]


def _usable(s: pd.Series) -> bool:
    if pd.api.types.is_numeric_dtype(s.dtype) and not pd.api.types.is_bool_dtype(s.dtype):
        return bool(np.isfinite(s.to_numpy(dtype=np.float64, na_value=np.nan)).any())
    return bool(s.notna().any())


def render_report(
    reference_df: pd.DataFrame,
    current_df: pd.DataFrame,
    features: Sequence[FeatureSpec],
    methods: Mapping[str, str | None],
    path: str | os.PathLike,
    *,
    title: str,
    thresholds: Mapping[str, float | None] | None = None,
    reports_root: str | os.PathLike | None = None,
    max_rows: int | None = DEFAULT_HTML_MAX_ROWS,
    seed: int = 0,
) -> Path:
    """Render the Evidently drift page for one batch; returns the written path.

    ``methods`` maps feature -> Evidently registry name (e.g. ``PreparedReference.methods``);
    ``None`` leaves the choice to Evidently. ``reports_root`` defaults to ``paths.reports_dir()``.
    """
    if not isinstance(reference_df, pd.DataFrame) or not isinstance(current_df, pd.DataFrame):
        raise EvidentlyHtmlError(f"{path}: reference_df and current_df must be pandas DataFrames")
    if reports_root is None:
        from watchkeeper import paths

        reports_root = paths.reports_dir()
    thresholds = dict(thresholds or {})
    ref = _sample(reference_df, max_rows, seed)
    cur = _sample(current_df, max_rows, seed + 1)

    left_out: list[str] = []
    num, cat, per_method, per_threshold = [], [], {}, {}
    for spec in features:
        name = spec.name
        if name not in ref.columns or name not in cur.columns:
            left_out.append(f"{name} (missing)")
            continue
        if not _usable(ref[name]) or not _usable(cur[name]):
            left_out.append(f"{name} (all null)")
            continue
        method = methods.get(name, spec.method)
        ctype = ColumnType.Numerical if spec.kind == "numerical" else ColumnType.Categorical
        st: StatTest | None = _STATTESTS.get(method) if method else None
        if st is not None and ctype not in st.allowed_feature_types:
            # Evidently's auto rule picks chisquare / z for numeric columns with few values, but
            # refuses those names for numeric columns; declaring the column categorical runs the
            # very same stat test.
            ctype = ColumnType.Categorical
        if ctype == ColumnType.Numerical and not pd.api.types.is_numeric_dtype(cur[name].dtype):
            left_out.append(f"{name} (not numeric in batch)")
            continue
        (num if ctype == ColumnType.Numerical else cat).append(name)
        if method:
            per_method[name] = method
        thr = thresholds.get(name, spec.threshold)
        if thr is not None:
            per_threshold[name] = float(thr)
    columns = num + cat
    full_title = title
    if len(ref) < len(reference_df) or len(cur) < len(current_df):
        full_title += (f" (sampled: {len(cur):,} of {len(current_df):,} batch rows, "
                       f"{len(ref):,} of {len(reference_df):,} reference rows)")
    if left_out:
        full_title += " - not shown: " + ", ".join(left_out)
    if not columns:
        raise EvidentlyHtmlError(f"{path}: no column left to render ({', '.join(left_out) or 'no features'})")

    def clean(df: pd.DataFrame) -> pd.DataFrame:
        out = df[columns].copy()
        for c in num:
            if pd.api.types.is_float_dtype(out[c].dtype):
                out[c] = out[c].replace([np.inf, -np.inf], np.nan)
        return out

    dd = DataDefinition(numerical_columns=num, categorical_columns=cat)
    try:
        snapshot = Report([DataDriftPreset(columns=columns, per_column_method=per_method or None,
                                           per_column_threshold=per_threshold or None)]).run(
            Dataset.from_pandas(clean(cur), data_definition=dd),
            Dataset.from_pandas(clean(ref), data_definition=dd))
    except Exception as exc:  # noqa: BLE001 - Evidently's reason, with our path
        raise EvidentlyHtmlError(f"{path}: Evidently failed to build the drift report: "
                                 f"{type(exc).__name__}: {exc}") from exc
    return save_html_shared(snapshot, path, reports_root=reports_root, title=full_title)
