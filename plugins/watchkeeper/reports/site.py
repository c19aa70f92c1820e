"""The reviewers' static site under WATCHKEEPER_HOME/reports.

    index.html                      every model: gate, budgets, latest day, what is wrong now
    <model>/index.html              budgets, SLI trends, heat maps, labels, quality, events, days
    <model>/<ds>/index.html         every finding of the day, links to the day's reports
    <model>/<ds>/triage.html        the incident checklist (when a page-level alert fires)
    <model>/<ds>/*.html             validation, Evidently and quality reports (other stages)
    _static/watchkeeper/            this site's one stylesheet and chart helper
    _static/evidently/              Evidently's bundle, shared by every Evidently report

Incremental by design: the pipeline calls `build_site(store, [spec], days=[ds])` after each run,
which rewrites the index, one model page and one day page (plus its triage page when that day
pages). `watchkeeper report` rebuilds everything. Files are written atomically (temp file, then
rename), so a reader or a concurrent build never sees half a page.
"""

from __future__ import annotations

import os
import re
import shutil
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from watchkeeper import paths
from watchkeeper.reports import data as dmod
from watchkeeper.reports.html import (
    STATIC,
    Charts,
    badge,
    budget_bar,
    clean_number,
    h,
    num,
    page,
    pct,
    render_value,
    table,
)
from watchkeeper.spec import ModelSpec

STATIC_SOURCE = Path(__file__).resolve().parent.parent / "static"
STATIC_FILES = ("site.css", "charts.js")
DS_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
GATE_RANK = {"closed": 0, "inconclusive": 1, "open": 2}


class ReportError(Exception):
    """The site cannot be written (names the path and the reason)."""


@dataclass
class SiteBuild:
    """What one build wrote."""

    root: Path
    index: Path
    model_pages: list[Path] = field(default_factory=list)
    day_pages: list[Path] = field(default_factory=list)
    triage_pages: list[Path] = field(default_factory=list)
    pruned: list[Path] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0


# ---------------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------------


def write_text(path: Path, text: str) -> Path:
    """Write atomically: a temp file in the same folder, then rename over the target."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except OSError as err:
        raise ReportError(f"{path}: cannot write report page: {err}") from err
    return path


def install_static(root: Path) -> None:
    """Copy the site's stylesheet and chart helper once (again only when they changed)."""
    target = root / STATIC
    # Pages from other stages (validation, Evidently) declare no icon, so browsers ask the
    # server root for /favicon.ico; served from the reports folder, that must not be a 404.
    wanted = [(root / "favicon.ico", _favicon())]
    for name in STATIC_FILES:
        src = STATIC_SOURCE / name
        try:
            wanted.append((target / name, src.read_bytes()))
        except OSError as err:
            raise ReportError(f"{src}: the site's own {name} is missing from the package: {err}") from err
    for dst, content in wanted:
        name = dst.name
        if dst.exists() and dst.read_bytes() == content:
            continue
        try:
            dst.parent.mkdir(parents=True, exist_ok=True)
            tmp = dst.with_name(f".{name}.{os.getpid()}.{threading.get_ident()}.tmp")
            tmp.write_bytes(content)
            os.replace(tmp, dst)
        except OSError as err:
            raise ReportError(f"{dst}: cannot install the site's {name}: {err}") from err


def _favicon() -> bytes:
    """A 16x16 ICO (one PNG frame, the header's dark blue) built here: no binary file to ship."""
    import struct
    import zlib

    raw = b"".join(b"\x00" + bytes((0x17, 0x21, 0x2B, 0xFF)) * 16 for _ in range(16))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 16, 16, 8, 6, 0, 0, 0))
           + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
    return struct.pack("<HHH", 0, 1, 1) + struct.pack("<BBBBHHII", 16, 16, 0, 0, 1, 32, len(png), 22) + png


def prune(spec: ModelSpec, root: Path, newest: str | None) -> list[Path]:
    """Delete the HTML of days older than the spec's `report_retention_days` (counted back from
    the newest day); a day folder left empty is removed."""
    keep = spec.report_retention_days
    folder = root / spec.name
    if not keep or newest is None or not folder.is_dir():
        return []
    cutoff = (date.fromisoformat(newest) - timedelta(days=keep - 1)).isoformat()
    removed = []
    for day_dir in sorted(folder.iterdir()):
        if not (day_dir.is_dir() and DS_RE.match(day_dir.name) and day_dir.name < cutoff):
            continue
        for f in day_dir.glob("*.html"):
            try:
                f.unlink()
                removed.append(f)
            except OSError as err:
                raise ReportError(f"{f}: cannot prune (report_retention_days={keep}): {err}") from err
        try:
            day_dir.rmdir()
        except OSError:
            pass  # other files remain (not HTML): they are not ours to delete
    return removed


def retention_cutoff(spec: ModelSpec, newest: str | None) -> str | None:
    if not spec.report_retention_days or newest is None:
        return None
    return (date.fromisoformat(newest) - timedelta(days=spec.report_retention_days - 1)).isoformat()


def day_files(root: Path, model: str, ds: str) -> list[str]:
    folder = root / model / ds
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.glob("*.html") if p.name not in ("index.html",))


def _report_label(name: str) -> str:
    from watchkeeper.reports.triage_page import REPORT_LABELS

    if name == "triage.html":
        return "Triage"
    return REPORT_LABELS.get(name, name.removesuffix(".html").replace("-", " ").replace("_", " "))


# ---------------------------------------------------------------------------------------------
# The gate, for the index
# ---------------------------------------------------------------------------------------------


def _gate(spec: ModelSpec, store, scope: str) -> dict[str, Any]:
    """The gate as `watchkeeper gate` would answer now, without recording the question."""
    from watchkeeper import gatekeeper

    try:
        d = gatekeeper.ask(spec.name, scope, store=store, record=False)
    except Exception as err:  # noqa: BLE001 - the index shows why instead of failing the build
        return {"decision": "inconclusive", "effective": "closed", "reasons": [],
                "notes": [f"gate could not be asked: {type(err).__name__}: {err}"]}
    return {"decision": d.decision, "effective": d.effective, "reasons": d.reasons,
            "notes": list(d.notes), "override": d.override, "as_of": d.as_of.isoformat(),
            "acceptances": list(d.acceptances)}


# ---------------------------------------------------------------------------------------------
# Charts of the model page
# ---------------------------------------------------------------------------------------------


def _calendar(first: str, last: str) -> list[str]:
    a, b = date.fromisoformat(first), date.fromisoformat(last)
    return [(a + timedelta(days=i)).isoformat() for i in range((b - a).days + 1)]


def _burn_down(charts: Charts, md: dmod.ModelData) -> str:
    out = []
    for slo in md.spec.slos:
        snap = md.latest_snapshot(slo.name)
        if not snap:
            out.append(f'<p class="muted">{h(slo.name)}: no budget snapshot yet.</p>')
            continue
        days = _calendar(snap["window_start"], snap["ds"])
        per_day = md.budgets.get(slo.name, {})
        values = [clean_number((per_day.get(d) or {}).get("budget_remaining")) for d in days]
        alerts = [(per_day.get(d) or {}).get("alert") for d in days]
        spec = {"type": "line", "days": days,
                "series": [{"name": "budget remaining", "values": values,
                            "bad": [a == "page" for a in alerts],
                            "notes": [a or "" for a in alerts]}],
                "thresholds": [{"value": 0, "label": "budget spent"}],
                "markers": md.axis_markers(), "y": {"format": "pct", "max": 1, "min": 0}}
        out.append(charts.chart(
            spec, f"{slo.name}: error budget remaining over its {slo.window_days}-day window",
            f"Objective {slo.objective:g} ({slo.kind}); {pct(snap.get('budget_remaining'))} left "
            f"on {snap['ds']}; red points are days with a page-level burn."))
    return "".join(out)


def _sli_trends(charts: Charts, md: dmod.ModelData, days: list[str]) -> str:
    out = []
    shown = set()
    markers = md.axis_markers()
    for slo in md.spec.slos:
        per_day = md.slis.get(slo.sli, {})
        shown.add(slo.sli)
        thr, label = dmod.slo_threshold(md.spec, slo.sli)
        values = [clean_number(per_day[d].value) if d in per_day else None for d in days]
        spec = {"type": "line", "days": days,
                "series": [{"name": slo.sli, "values": values,
                            "bad": [bool(d in per_day and per_day[d].good is False) for d in days],
                            "hollow": [bool(d in per_day and per_day[d].provisional) for d in days]}],
                "thresholds": [{"value": thr, "label": label}] if thr is not None else [],
                "markers": markers,
                "y": {"format": "pct"} if slo.kind == "ratio" else {}}
        unit = "share" if slo.kind == "ratio" else "daily value"
        out.append(charts.chart(spec, f"SLI {slo.sli} ({unit}) for SLO {slo.name}",
                                "Red points: bad days; hollow points: provisional (labels not "
                                "mature)."))
    for sli in sorted(set(md.slis) - shown):
        per_day = md.slis[sli]
        values = [clean_number(per_day[d].value) if d in per_day else None for d in days]
        spec = {"type": "line", "days": days,
                "series": [{"name": sli, "values": values,
                            "bad": [bool(d in per_day and per_day[d].good is False) for d in days],
                            "hollow": [bool(d in per_day and per_day[d].provisional) for d in days]}],
                "markers": markers}
        out.append(charts.chart(spec, f"SLI {sli} (no SLO)"))
    return "".join(out) or '<p class="muted">No SLI recorded yet.</p>'


def _score_heatmap(charts: Charts, md: dmod.ModelData, fam: str, days: list[str],
                   caption: str, segments: bool = False) -> str:
    per_day = md.families.get(fam) or {}
    rows: dict[str, dict[str, Any]] = {}
    for d, metrics in per_day.items():
        for m in metrics:
            if ("|" in m.subject) != segments or dmod.is_dataset(m.subject):
                continue
            rows.setdefault(m.subject, {})[d] = m
    if not rows:
        return ""
    order = [f.name for f in md.spec.features]
    names = sorted(rows, key=lambda s: (order.index(dmod.split_subject(s)[0])
                                        if dmod.split_subject(s)[0] in order else len(order), s))
    all_scores = [dmod.metric_score(m) for r in rows.values() for m in r.values()]
    top = max([s for s in all_scores if s is not None] or [1.0]) or 1.0
    out_rows = []
    for name in names:
        values, raw, flags, text = [], [], [], []
        for d in days:
            m = rows[name].get(d)
            if m is None:
                values.append(None)
                raw.append(None)
                flags.append(False)
                text.append("no result")
                continue
            score = dmod.metric_score(m)
            thr = dmod.metric_threshold(m)
            flag = dmod.metric_flag(m)
            ratio = dmod.score_ratio(m)
            if ratio is None and score is not None:
                ratio = score / top  # no threshold known: relative to the largest score
            method = (m.payload or {}).get("method") if isinstance(m.payload, dict) else None
            values.append(None if ratio is None else round(ratio, 4))
            raw.append(score)
            flags.append(bool(flag))
            text.append(f"score {num(score)}" + (f" ({method})" if method else "")
                        + (f", threshold {num(thr)}" if thr else "")
                        + (", drifted" if flag else ", not drifted" if flag is False else ""))
        if segments and not any(flags) and not any(v is not None and v >= 1 for v in values):
            continue
        out_rows.append({"label": name.replace("|", " | "), "values": values, "raw": raw,
                         "flags": flags, "text": text})
    if not out_rows:
        return ""
    if segments:
        out_rows = out_rows[:40]
    spec = {"type": "heatmap", "mode": "scale", "days": days, "rows": out_rows,
            "markers": md.axis_markers(),
            "legend": [["rgb(232,245,235)", "far below threshold"],
                       ["rgb(255,214,102)", "near threshold"],
                       ["rgb(200,80,50)", "above threshold (outlined: drifted)"]]}
    return charts.chart(spec, caption, "Colour: score relative to its threshold (p-value methods "
                                       "inverted, so red always means beyond it).")


def _expectation_heatmap(charts: Charts, md: dmod.ModelData, days: list[str]) -> str:
    rows: dict[str, dict[str, Any]] = {}
    labels: dict[str, str] = {}
    for d, items in md.expectations.items():
        for e in items:
            key = f"{e.stage}:{e.expectation_id}"
            rows.setdefault(key, {})[d] = e
            short = e.expectation_type.removeprefix("expect_").removeprefix("column_")
            labels[key] = f"{e.expectation_id} · {short} ({e.stage})"
    if not rows:
        return '<p class="muted">No expectation results recorded yet.</p>'
    not_run = {(d, st) for d, stages in md.stages.items() for st, s in stages.items()
               if s.error}
    out_rows = []
    for key in rows:
        stage = key.split(":", 1)[0]
        values = []
        for d in days:
            e = rows[key].get(d)
            if e is not None:
                values.append(1 if e.success else 0)
            elif (d, stage) in not_run:
                values.append(-1)
            else:
                values.append(None)
        out_rows.append({"label": labels[key], "values": values,
                         "fails": sum(1 for v in values if v == 0)})
    out_rows.sort(key=lambda r: (-r["fails"], r["label"]))
    for r in out_rows:
        r.pop("fails")
    spec = {"type": "heatmap", "mode": "status", "days": days, "rows": out_rows,
            "markers": md.axis_markers(),
            "classes": {"1": ["cell-pass", "passed"], "0": ["cell-fail", "failed"],
                        "-1": ["cell-notrun", "stage not run"], "null": ["cell-none", "no result"]},
            "legend": [["#cfe8d5", "passed"], ["#d9534f", "failed"], ["#f0c36d", "not run"],
                       ["#f3f4f6", "no result"]]}
    return charts.chart(spec, "Expectations × days (pass / fail), most failures first")


def _family_lines(charts: Charts, md: dmod.ModelData, fam: str, days: list[str],
                  caption: str, limit: int = 8) -> str:
    per_day = md.families.get(fam) or {}
    subjects: dict[str, dict[str, Any]] = {}
    for d, metrics in per_day.items():
        for m in metrics:
            if "|" not in m.subject:
                subjects.setdefault(m.subject, {})[d] = m
    # A subject without a single number (a summary record) has nothing to draw.
    subjects = {k: v for k, v in subjects.items()
                if any(dmod.metric_score(m) is not None for m in v.values())}
    out = []
    for name in sorted(subjects, key=lambda k: (dmod.is_dataset(k), k))[:limit]:
        ms = subjects[name]
        series = [{"name": dmod.display_subject(name),
                   "values": [dmod.metric_score(ms[d]) if d in ms else None for d in days],
                   "bad": [bool(d in ms and dmod.metric_flag(ms[d])) for d in days],
                   "hollow": [bool(d in ms and dmod.metric_provisional(ms[d])) for d in days]}]
        for bound in ("lower", "upper"):
            vals = [clean_number((ms[d].payload or {}).get(bound)) if d in ms else None
                    for d in days]
            if any(v is not None for v in vals):
                series.append({"name": f"{bound} bound", "values": vals, "dashed": True,
                               "color": 5})
        out.append(charts.chart({"type": "line", "days": days, "series": series,
                                 "markers": md.axis_markers()},
                                f"{caption}: {dmod.display_subject(name)}",
                                "Red points: the monitor alerted that day."))
    if len(subjects) > limit:
        out.append(f'<p class="muted small">{len(subjects) - limit} more {h(fam)} subjects are '
                   "listed on the day pages.</p>")
    return "".join(out)


def _label_days(md: dmod.ModelData) -> dict[str, dict[str, Any]]:
    """Per prediction day, from the labels DAG's 'quality' family (its newest restatement):
    coverage, provisional, realized metrics, estimated metrics, suspected concept drift."""
    out: dict[str, dict[str, Any]] = {}
    for d, metrics in (md.families.get("quality") or {}).items():
        for m in metrics:
            p = m.payload if isinstance(m.payload, dict) else {}
            entry = out.setdefault(d, {"realized": {}, "estimated": {}})
            if isinstance(p.get("metrics"), dict):
                # The labels DAG's shape: one 'overall' record whose value is the label coverage.
                entry["coverage"] = clean_number(p.get("coverage", m.value))
                entry["provisional"] = bool(p.get("provisional"))
                entry["concept_drift"] = bool(p.get("concept_drift"))
                entry["realized"].update({k: clean_number(v) for k, v in p["metrics"].items()})
                if isinstance(p.get("estimated"), dict):
                    entry["estimated"].update({k: clean_number(v) for k, v in p["estimated"].items()})
            elif "|" not in m.subject:
                # Any other shape: the subject names a metric, the value is the realized number.
                entry["realized"][m.subject] = dmod.metric_score(m)
                entry.setdefault("provisional", dmod.metric_provisional(m))
    for d, metrics in (md.families.get("estimate") or {}).items():
        for m in metrics:
            if "|" not in m.subject:
                out.setdefault(d, {"realized": {}, "estimated": {}})["estimated"][m.subject] = \
                    dmod.metric_score(m)
    return out


def _coverage_charts(charts: Charts, md: dmod.ModelData, days: list[str]) -> str:
    ld = _label_days(md)
    out = []
    if any(e.get("coverage") is not None for e in ld.values()):
        labels = md.spec.labels
        thr = labels.maturity_coverage if labels else None
        spec = {"type": "line", "days": days, "markers": md.axis_markers(),
                "series": [{"name": "label coverage",
                            "values": [(ld.get(d) or {}).get("coverage") for d in days],
                            "hollow": [bool((ld.get(d) or {}).get("provisional")) for d in days]}],
                "thresholds": [{"value": thr, "label": f"mature at {thr:.0%}"}] if thr else [],
                "y": {"format": "pct", "min": 0, "max": 1}}
        out.append(charts.chart(spec, "Label coverage per prediction day (as known now)",
                                "Hollow points: provisional days (coverage below maturity); their "
                                "quality counts in no budget yet."))
    rows = []
    if any("provisional" in e for e in ld.values()):
        rows.append({"label": "labels (quality)",
                     "values": [None if d not in ld or "provisional" not in ld[d] else
                                (2 if ld[d]["provisional"] else 1) for d in days]})
    for sli, per_day in sorted(md.slis.items()):
        if any(v.provisional for v in per_day.values()):
            rows.append({"label": f"SLI {sli}", "values": [
                None if d not in per_day else (2 if per_day[d].provisional else 1) for d in days]})
    if rows:
        spec = {"type": "heatmap", "mode": "status", "days": days, "rows": rows,
                "classes": {"1": ["cell-final", "final (labels mature)"],
                            "2": ["cell-prov", "provisional (labels not mature)"],
                            "null": ["cell-none", "no value"]},
                "legend": [["#cfe8d5", "final"], ["#f0c36d", "provisional"],
                           ["#f3f4f6", "no value"]]}
        out.append(charts.chart(spec, "Provisional days (labels not yet mature)"))
    return "".join(out)


def _quality_charts(charts: Charts, md: dmod.ModelData, days: list[str], limit: int = 8) -> str:
    ld = _label_days(md)
    realized_keys = {k for e in ld.values() for k, v in e["realized"].items() if v is not None}
    estimated_keys = {k for e in ld.values() for k, v in e["estimated"].items() if v is not None}
    names = sorted(realized_keys | estimated_keys,
                   key=lambda k: (not (k in realized_keys and k in estimated_keys), k))
    out = []
    for name in names[:limit]:
        series = []
        if name in realized_keys:
            series.append({"name": "realized (from labels)", "color": 0,
                           "values": [(ld.get(d) or {}).get("realized", {}).get(name) for d in days],
                           "hollow": [bool((ld.get(d) or {}).get("provisional")) for d in days],
                           "bad": [bool((ld.get(d) or {}).get("concept_drift")) for d in days]})
        if name in estimated_keys:
            series.append({"name": "estimated (before labels)", "color": 1, "dashed": True,
                           "values": [(ld.get(d) or {}).get("estimated", {}).get(name) for d in days]})
        out.append(charts.chart({"type": "line", "days": days, "series": series,
                                 "markers": md.axis_markers()},
                                f"{name}: estimate beside realized quality",
                                "Hollow: provisional; red: concept drift suspected that day."))
    if len(names) > limit:
        out.append(f'<p class="muted small">{len(names) - limit} more metrics on the day pages.</p>')
    return "".join(out) or '<p class="muted">No quality or estimate recorded yet.</p>'


# ---------------------------------------------------------------------------------------------
# Pages
# ---------------------------------------------------------------------------------------------


def _slo_rows(md: dmod.ModelData, link_prefix: str = "") -> list[list[str]]:
    rows = []
    for slo in md.spec.slos:
        snap = md.latest_snapshot(slo.name) or {}
        burns = " / ".join(num(snap.get(f"burn_{w}"), 3) for w in ("1d", "3d", "7d"))
        rows.append([h(slo.name), h(f"{slo.sli} ({slo.kind}) ≥ {slo.objective:g}"),
                     budget_bar(clean_number(snap.get("budget_remaining"))) if snap else
                     '<span class="muted">no snapshot</span>',
                     h(burns) if snap else "", badge(snap.get("alert")) or '<span class="muted">none</span>',
                     h(", ".join(sorted(slo.gates))), h(snap.get("ds") or "")])
    return rows


SEVERITY_CLASS = {dmod.PAGE: "page", dmod.CRITICAL: "fail", dmod.WARNING: "ticket", dmod.INFO: "info"}


def _sev_badge(severity: int, text: str | None = None) -> str:
    return badge(SEVERITY_CLASS[severity], text or dmod.SEVERITY_NAMES[severity])


def _findings_html(findings: list[dmod.Finding], link_base: str, root: Path, model: str,
                   limit: int | None = None) -> str:
    if not findings:
        return '<p class="muted">Nothing wrong.</p>'
    items = []
    for f in findings[:limit]:
        href = f.link
        if href and not (root / model / href).exists():
            href = f"{f.ds}/index.html" if f.ds and (root / model / f.ds / "index.html").exists() else None
        text = h(f.text)
        if href:
            text = f'<a href="{h(link_base + href)}">{text}</a>'
        day = f'<span class="muted small">{h(f.ds)}</span> ' if f.ds else ""
        items.append(f'<li class="sev{f.severity}">{_sev_badge(f.severity)} {day}{text}</li>')
    more = (f'<li class="muted">{len(findings) - limit} more on the model page.</li>'
            if limit is not None and len(findings) > limit else "")
    return f'<ul class="findings">{"".join(items)}{more}</ul>'


def render_model_page(md: dmod.ModelData, root: Path, gate: dict[str, dict], now: datetime,
                      cutoff: str | None) -> str:
    spec = md.spec
    days = md.days
    charts = Charts()
    body = [f"<h1>{h(spec.name)}</h1>",
            f'<p class="lead">{h(spec.description)} · {h(spec.task)} · owner {h(spec.owner)} · '
            f"{len(days)} day(s){', ' + h(days[0]) + ' to ' + h(days[-1]) if days else ''}</p>"]
    for problem in md.problems:
        body.append(f'<p class="sev1">{h(problem)}</p>')
    gates = " ".join(f"{h(scope)}: {badge(g['decision'])}" for scope, g in gate.items())
    body.append(f"<h2 id=\"gate\">Gate and budgets</h2><p>{gates}</p>")
    for scope, g in gate.items():
        for r in (g.get("reasons") or []) if g.get("decision") != "open" else []:
            body.append(f'<p class="small">{h(scope)} · {h(r.get("slo"))}: {h(r.get("text") or r)}</p>')
        if g.get("override"):
            body.append(f'<p class="small sev2">override: {h(g["override"])}</p>')
        for a in g.get("acceptances") or []:
            body.append(f'<p class="small">{h(scope)} · accepted expected change {h(a["id"])} '
                        f'({h(a["feature"])}) affects {h(", ".join(a.get("slos") or []))}'
                        + (f'; {a["excused_days"]} drifted day(s) excused' if a.get("excused_days")
                           else "") + "</p>")
        for note in g.get("notes") or []:
            body.append(f'<p class="small muted">{h(scope)} · note: {h(note)}</p>')
    body.append(table(["SLO", "SLI", "budget remaining", "burn 1d / 3d / 7d", "alert", "gates",
                       "as of"], _slo_rows(md)))
    body.append('<h2 id="accepted">Accepted expected change</h2>' + _acceptances_table(md, now))
    body.append('<h2 id="now">What is wrong now</h2>')
    body.append(_findings_html(dmod.current_findings(md), "", root, spec.name))
    body.append('<h2 id="incidents">Incidents</h2>' + _incidents_table(md))
    body.append('<h2 id="burn">Budget burn-down</h2>' + _burn_down(charts, md))
    body.append('<h2 id="slis">SLI trends</h2>' + _sli_trends(charts, md, days))
    drift = (_score_heatmap(charts, md, "drift", days,
                            "Drift: features × days (against the recent days)")
             + _score_heatmap(charts, md, "skew", days,
                              "Skew: features × days (against the training set)")
             + _score_heatmap(charts, md, "drift", days,
                              "Drift by segment (rows that crossed their threshold)", segments=True))
    drift += _family_lines(charts, md, "coverage", days, "Feature coverage")
    body.append('<h2 id="drift">Drift and skew</h2>'
                + (drift or '<p class="muted">No drift or skew scores recorded yet.</p>'))
    body.append('<h2 id="checks">Data-quality checks</h2>' + _expectation_heatmap(charts, md, days))
    cov = _coverage_charts(charts, md, days)
    body.append('<h2 id="labels">Label coverage and provisional days</h2>'
                + (cov or '<p class="muted">No label coverage recorded yet.</p>'))
    body.append('<h2 id="quality">Model quality: estimate beside realized</h2>'
                + _quality_charts(charts, md, days))
    preds = _family_lines(charts, md, "prediction", days, "Prediction monitor")
    body.append('<h2 id="predictions">Prediction monitors</h2>'
                + (preds or '<p class="muted">No prediction monitor recorded yet.</p>'))
    ev_rows = [[h(e.ds), h(e.kind), h(e.subject), h(e.created_by or ""),
                h(e.created_at.strftime("%Y-%m-%d %H:%M")),
                render_value({k: v for k, v in (e.payload or {}).items()
                              if k not in ("reasons",)})]
               for e in sorted(md.events, key=lambda e: (e.ds, e.created_at), reverse=True)
               if e.kind not in ("gate_decision", "rollout_decision")][:200]
    decisions = [e for e in md.events if e.kind == "gate_decision"]
    if spec.candidate is not None or any(e.kind == "rollout_decision" for e in md.events):
        body.append(_rollout_section(md))  # issue 10
    body.append('<h2 id="events">Deployments, overrides, silences and acceptances</h2>'
                '<p class="small muted">Marked on every time axis above (D deployment, '
                f"O override, S silence, A acceptance or its revocation). {len(decisions)} gate "
                "decision(s) audited.</p>"
                + table(["day", "kind", "subject", "by", "at", "details"], ev_rows))
    body.append('<h2 id="days">Every day</h2>' + _days_table(md, root, cutoff))
    return page(f"{spec.name} · Watchkeeper", "\n".join(body), depth=1,
                crumbs=[("Watchkeeper", "../index.html"), (spec.name, None)], generated_at=now)


_INCIDENTS_SHOWN = 100


def _incidents_table(md: dmod.ModelData) -> str:
    """The alert incidents (README "Alerts"), open ones first, then newest first."""
    newest = sorted(md.incidents, key=lambda i: (i.opened, i.kind, i.subject), reverse=True)
    ordered = [i for i in newest if i.is_open] + [i for i in newest if not i.is_open]
    rows = [[h(i.opened), h(i.onset), h(i.kind), h(i.subject), badge(i.severity),
             h(i.status if i.announced or i.status != "open" else "open (not announced)"),
             h(i.last_seen), h(i.closed or "-"), h(i.worst_text or "-")]
            for i in ordered[:_INCIDENTS_SHOWN]]
    more = (f'<p class="small muted">{len(ordered) - _INCIDENTS_SHOWN} older incident(s): '
            "`watchkeeper incidents` lists all.</p>" if len(ordered) > _INCIDENTS_SHOWN else "")
    note = ('<p class="small muted">One incident per condition (model, kind, subject): one '
            "message at onset, thread updates only when materially worse, a reminder after "
            f"{md.spec.alerts.reminder_days or 'no'} days without one, closed once it has not "
            f"held for {md.spec.alerts.resolve_after_days} day(s).</p>")
    return note + table(["opened", "onset", "kind", "subject", "severity", "status", "last seen",
                         "closed", "worst"], rows, long_cols=(8,)) + more


def _acceptances_table(md: dmod.ModelData, now: datetime) -> str:
    """Every acceptance of the model, newest first, with its status today (in the model's
    timezone) and the drifted days it excuses in the newest feature_drift snapshots (issue 14)."""
    items = md.acceptances()
    if not items:
        return ('<p class="muted">None. <code>watchkeeper accept MODEL --feature F --reason '
                '...</code> makes a feature\'s new distribution its reference.</p>')
    today = now.astimezone(md.spec.tz).date().isoformat()
    excused: dict[str, int] = {}
    for slo in md.spec.slos:
        snap = md.latest_snapshot(slo.name) if slo.sli == "feature_drift" else None
        for key, n in ((snap or {}).get("excused_by") or {}).items():
            excused[key] = max(excused.get(key, 0), int(n))
    rows = []
    for a in sorted(items, key=lambda a: (a.known_on, a.created_at), reverse=True):
        status = a.status(today)
        if a.revoked_on:
            status += f" ({a.revoked_on} by {a.revoked_by}" + \
                (f": {a.revoke_reason})" if a.revoke_reason else ")")
        rows.append([h(a.id), h(a.what), h(a.since), h(a.until or "open-ended"), h(a.known_on),
                     h(a.created_by), h(a.reason), h(status), str(excused.get(a.id, 0))])
    return ('<p class="small muted">Skew and drift of an accepted feature are measured against '
            "its accepted window (the staged days since..known on) while it is active; drifted "
            "days it covers count as good in budgets evaluated from its known-on day. Marked A on "
            "the time axes.</p>"
            + table(["id", "feature", "since", "until", "known on", "by", "reason", "status",
                     "days excused"], rows, num_cols=[8], long_cols=[6]))


# ---- shadow and canary rollouts (issue 10) ----------------------------------------------------

_ROLLOUT_BADGE = {"promote": "open", "hold": "inconclusive", "rollback": "closed"}


def _rollout_section(md: dmod.ModelData) -> str:
    """The candidate's rollout: stage changes, then the daily decisions with their evidence
    (newest first), from the rollout_stage and rollout_decision events."""
    decisions = sorted((e for e in md.events if e.kind == "rollout_decision"),
                       key=lambda e: e.ds, reverse=True)
    changes = sorted((e for e in md.events if e.kind == "rollout_stage"), key=lambda e: e.ds)
    cand = md.spec.candidate
    out = ['<h2 id="rollout">Shadow and canary rollout</h2>']
    if cand is not None:
        stages = " → ".join("shadow" if st == "shadow" else f"{st}%" for st in cand.rollout_stages)
        margins = ", ".join(f"{k} {v:g}" for k, v in cand.margins.items())
        out.append(f'<p class="small">Candidate {h(cand.name)}, stages {h(stages)}, margins '
                   f"{h(margins)}, alpha {h(cand.alpha)}, at least {h(cand.min_labels)} labels "
                   "per stage. Promote when the always-valid confidence sequence of the quality "
                   "gain lies above −margin; roll back when it lies below.</p>")
    rows = []
    for e in changes:
        p = e.payload or {}
        def stage(x):
            return "shadow" if x == "shadow" else f"{x}%"

        to = "rolled back" if p.get("action") == "rollback" else stage(p.get("to"))
        steps = " → ".join(f"{x}%" for x in p.get("steps") or [])
        rows.append([h(e.ds), h(p.get("action")), h(stage(p.get("from"))), h(to), h(steps),
                     h("; ".join(p.get("reasons") or [])[:300])])
    out.append("<h3>Stage changes</h3>" + table(["day", "action", "from", "to", "traffic steps",
                                                   "why"], rows, long_cols=[5]))
    rows = []
    for e in decisions[:120]:
        p = e.payload or {}
        ev = p.get("evidence") or {}
        tests = ev.get("metrics") or []
        cs = "; ".join(f"{t.get('metric')} {num(t.get('delta'))} in [{num(t.get('lower'))}, "
                       f"{num(t.get('upper'))}] n={num(t.get('n'))}" for t in tests)
        dist = ev.get("distribution") or {}
        outcomes = "; ".join(f"{o.get('name')}: {num(o.get('incumbent'))} → {num(o.get('candidate'))}"
                             for o in ev.get("outcomes") or [])
        bad_segments = [f"{s.get('column')}={s.get('value')}" for s in ev.get("segments") or []
                        if s.get("decision") == "rollback"]
        rows.append([h(e.ds), h(p.get("stage")),
                     badge(_ROLLOUT_BADGE.get(p.get("decision")), p.get("decision")), h(cs),
                     f"PSI {num(dist.get('psi'))}, KS {num(dist.get('ks'))}", h(outcomes),
                     h(", ".join(bad_segments) or "none"),
                     h("; ".join(ev.get("reasons") or [])[:300])])
    out.append("<h3>Daily comparisons</h3>" + table(
        ["day", "stage", "decision", "quality gain (candidate − incumbent), sequence",
         "prediction shift", "business outcome (incumbent → candidate)", "segments worse",
         "why"], rows, long_cols=[3, 7]))
    return "\n".join(out)


def _stage_cell(s: Any) -> str:
    if s is None:
        return '<span class="muted">–</span>'
    if s.error:
        kind = "not run" if s.error.startswith("not run") else "error"
        return f'<span title="{h(s.error)}">{badge("fail", kind)}</span>'
    if s.success:
        return f"{badge('ok')} {s.passed}/{s.evaluated}"
    return f"{badge('fail')} {s.passed}/{s.evaluated}"


def _days_table(md: dmod.ModelData, root: Path, cutoff: str | None) -> str:
    rows = []
    for d in reversed(md.days):
        p = md.partitions.get(d)
        stages = md.stages.get(d) or {}
        dq = (md.slis.get("data_quality") or {}).get(d)
        fresh = (md.slis.get("freshness") or {}).get(d)
        findings = dmod.day_findings(md, d)
        worst = min((f.severity for f in findings), default=None)
        pruned = cutoff is not None and d < cutoff
        has_page = (root / md.name / d / "index.html").exists()
        if has_page:
            links = " ".join(f'<a href="{h(d)}/{h(f)}">{h(_report_label(f).split(":")[0].split(" (")[0])}</a>'
                             for f in day_files(root, md.name, d))
            day_cell = f'<a href="{h(d)}/index.html">{h(d)}</a>'
        else:
            links = '<span class="muted">pruned</span>' if pruned else ""
            day_cell = h(d)
        rows.append([
            day_cell,
            h((p.status + (" · partial" if (p.partial or {}).get("partial") is True else ""))
              if p else "–"),
            _stage_cell(stages.get("ingestion")), _stage_cell(stages.get("features")),
            pct(dq.value) if dq else "–",
            ("ok" if fresh.good else "LATE" if fresh.good is False else "?") if fresh else "–",
            (_sev_badge(worst, f"{len(findings)} · worst {dmod.SEVERITY_NAMES[worst]}")
             if worst is not None else ""),
            f'<span class="dayslinks">{links}</span>',
        ])
    return table(["day", "partition", "ingestion", "features", "data quality", "freshness",
                  "findings", "reports"], rows, cls="wide", num_cols=(4,))


FAMILY_TITLES = {"drift": "Drift (against the recent days)",
                 "skew": "Skew (against the training set)",
                 "prediction": "Prediction monitors", "coverage": "Feature coverage",
                 "quality": "Model quality (labels)", "estimate": "Estimated quality"}
DRIFT_COLUMNS = ("method", "score", "threshold", "calibrated_threshold", "p_adjusted",
                 "evidently_drifted", "drifted_statistical", "n_current", "note")


def _family_section(fam: str, metrics: list[Any], root: Path, model: str, ds: str) -> str:
    """One metric family of one day: drift/skew as a feature table (segments folded), the
    whole-batch summary first; other families with their payload keys as columns."""
    dataset = next((m for m in metrics if dmod.is_dataset(m.subject)), None)
    items = [m for m in metrics if not dmod.is_dataset(m.subject)]
    out = []
    if dataset is not None:
        p = dict(dataset.payload or {})
        report = p.pop("report", None)
        if report and (root / report).exists():
            rel = Path(report).name if Path(report).parent == Path(model) / ds else None
            if rel:
                out.append(f'<p><a href="{h(rel)}">Evidently {h(fam)} report of the day</a></p>')
        if fam in ("drift", "skew"):
            summary = {k: p.get(k) for k in ("share", "dataset_drift", "reference_days",
                                             "n_current", "n_reference", "model_version",
                                             "problems", "notes", "not_run", "reference_empty",
                                             "note", "report_error") if p.get(k) not in (None, [], "")}
        else:
            summary = {k: v for k, v in p.items() if k not in ("summary",)}
        if summary:
            out.append(render_value(summary))
    if not items:
        return "".join(out)
    items.sort(key=lambda m: (not dmod.metric_flag(m), "|" in m.subject, m.subject))
    if fam in ("drift", "skew"):
        heads = ["feature", ""] + list(DRIFT_COLUMNS)

        def row(m):
            p = m.payload or {}
            return [h(dmod.display_subject(m.subject)),
                    badge("fail", "drifted") if dmod.metric_flag(m) else ""] + [
                render_value(p.get(k) if k != "score" else dmod.metric_score(m))
                for k in DRIFT_COLUMNS]

        whole = [row(m) for m in items if "|" not in m.subject]
        segs = [row(m) for m in items if "|" in m.subject]
        out.append(table(heads, whole))
        if segs:
            out.append(f"<details><summary>{len(segs)} segment comparison(s), drifted first"
                       "</summary>" + table(heads, segs[:400]) + "</details>")
        return "".join(out)
    keys: list[str] = []
    for m in items:
        for k in (m.payload or {}):
            if k not in keys and k not in ("name", "feature", "segment", "null", "segments"):
                keys.append(k)
    keys = keys[:10]
    rows = [[h(dmod.display_subject(m.subject)), num(dmod.metric_score(m)),
             badge("fail", "alert") if dmod.metric_flag(m) else ""]
            + [render_value((m.payload or {}).get(k)) for k in keys] for m in items[:300]]
    out.append(table(["subject", "value", ""] + keys, rows, num_cols=(1,)))
    segments = [(m.subject, (m.payload or {}).get("segments")) for m in items
                if (m.payload or {}).get("segments")]
    for subject, seg in segments:
        out.append(f"<details><summary>{h(dmod.display_subject(subject))}: by segment</summary>"
                   f"{render_value(seg)}</details>")
    return "".join(out)


def _completeness_html(record: dict | None) -> str:
    """The day's completeness judgment under its partition (issue 14)."""
    if not record:
        return ""
    verdict = {True: badge("fail", "partial day"), False: badge("ok", "complete")}.get(
        record.get("partial"), badge("inconclusive", "not judged"))
    facts = [("rows", num(record.get("rows"))), ("expected rows", num(record.get("expected"))),
             ("basis", h(record.get("basis") or "–")),
             ("events", h(f"{record.get('first_event') or '–'} – {record.get('last_event') or '–'}")),
             ("share of a usual day's traffic covered", pct(record.get("covered_share"))
              if record.get("covered_share") is not None else "–"),
             ("partial below", pct(record.get("fraction"), 0))]
    note = ('<p>A partial day is judged as incomplete data, not as a shift: its drift, skew, '
            'prediction and coverage results below are computed and stored with what they '
            'would have alerted (<code>would_alert</code>), but nothing alerts on them, its '
            'feature_drift and prediction_stability SLIs count in neither good nor total, and '
            'it is left out of later days\' drift window and stagnation history.</p>'
            if record.get("partial") is True else "")
    return (f'<p id="completeness">{verdict} {h(record.get("reason"))}</p>'
            + table(["", ""], [[h(k), v] for k, v in facts]) + note)


def render_day_page(
md: dmod.ModelData, ds: str, root: Path, now: datetime,
                    history_day: dict | None) -> str:
    spec = md.spec
    days = md.days
    body = [f"<h1>{h(spec.name)} on {h(ds)}</h1>"]
    i = days.index(ds) if ds in days else -1
    nav = []
    if i > 0:
        nav.append(f'<a href="../{h(days[i - 1])}/index.html">← {h(days[i - 1])}</a>')
    nav.append('<a href="../index.html">all days</a>')
    if 0 <= i < len(days) - 1:
        nav.append(f'<a href="../{h(days[i + 1])}/index.html">{h(days[i + 1])} →</a>')
    body.append(f'<p class="noprint">{" · ".join(nav)}</p>')
    files = day_files(root, spec.name, ds)
    if files:
        body.append("<h2 id=\"reports\">Reports of the day</h2><ul>" + "".join(
            f'<li><a href="{h(f)}">{h(_report_label(f))}</a></li>' for f in files) + "</ul>")
    body.append('<h2 id="findings">Findings, worst first</h2>')
    body.append(_findings_html(dmod.day_findings(md, ds), "../", root, spec.name))
    p = md.partitions.get(ds)
    if p is not None:
        body.append('<h2 id="partition">Partition</h2>' + table(
            ["status", "rows", "landed", "deadline", "lateness (h)", "source", "message"],
            [[h(p.status), num(p.rows), h(p.landed_at.isoformat() if p.landed_at else "–"),
              h(p.deadline.isoformat() if p.deadline else "–"), num(p.lateness_hours),
              h(p.source), h(p.message)]], num_cols=(1, 4), long_cols=(5, 6))
            + _completeness_html(p.partial))
    stages = md.stages.get(ds) or {}
    if stages:
        rows = [[h(st), _stage_cell(s), num(s.row_count), h(s.error or "")]
                for st, s in sorted(stages.items())]
        body.append('<h2 id="checks">Data-quality checks</h2>' + table(
            ["stage", "result", "rows", "note"], rows))
    exps = md.expectations.get(ds) or []
    if exps:
        exps = sorted(exps, key=lambda e: (e.success, e.stage, e.expectation_id))
        rows = [[h(e.stage), badge("ok" if e.success else "fail", "pass" if e.success else "fail"),
                 h(e.expectation_type), h(e.column or "table"), render_value(e.observed),
                 pct(e.unexpected_share) if e.unexpected_share is not None else "–",
                 num(e.unexpected_count)] for e in exps]
        heads = ["stage", "", "expectation", "column", "observed", "unexpected share",
                 "unexpected rows"]
        n_failed = sum(1 for e in exps if not e.success)
        body.append(table(heads, rows[:n_failed], num_cols=(5, 6)) if n_failed else
                    '<p class="muted">Every expectation passed.</p>')
        if len(rows) > n_failed:
            body.append(f"<details><summary>{len(rows) - n_failed} expectation(s) passed</summary>"
                        + table(heads, rows[n_failed:], num_cols=(5, 6)) + "</details>")
    sli_rows = []
    for sli, per_day in sorted(md.slis.items()):
        v = per_day.get(ds)
        if v is None:
            continue
        thr, label = dmod.slo_threshold(spec, sli)
        verdict = {True: badge("ok", "good"), False: badge("fail", "bad")}.get(v.good, "–")
        events = (f"{num(v.good_events)} / {num(v.total_events)}"
                  if v.total_events is not None else "")
        sli_rows.append([h(sli), num(v.value), verdict, h(label),
                         "provisional" if v.provisional else "final", h(v.known_on), events])
    if sli_rows:
        body.append('<h2 id="slis">SLIs</h2>' + table(
            ["SLI", "value", "", "judged against", "status", "known on", "good / total events"],
            sli_rows, num_cols=(1,)))
    snap_rows = []
    for slo in spec.slos:
        s = md.snapshot(slo.name, ds)
        if s:
            snap_rows.append([h(slo.name), budget_bar(clean_number(s.get("budget_remaining"))),
                              h(" / ".join(num(s.get(f"burn_{w}"), 3) for w in ("1d", "3d", "7d"))),
                              badge(s.get("alert")) or "–", num(s.get("mature_days"))])
    if snap_rows:
        body.append('<h2 id="budgets">Budgets as of this day</h2>' + table(
            ["SLO", "budget remaining", "burn 1d / 3d / 7d", "alert", "mature days"], snap_rows))
    for fam in dmod.FAMILIES:
        metrics = (md.families.get(fam) or {}).get(ds) or []
        if metrics:
            body.append(f'<h2 id="{h(fam)}">{h(FAMILY_TITLES.get(fam, fam))}</h2>'
                        + _family_section(fam, metrics, root, md.name, ds))
    # Keys other stages add to the day's history object: shown as they come, unless the
    # section above already shows the same records.
    shown = {"ds", "stages", "slis", "drift", "skew", "predictions", "coverage", "quality",
             "partial"}
    for k, v in (history_day or {}).items():
        if k not in shown:
            body.append(f"<h2>{h(k)}</h2>{render_value(v)}")
    runs = md.runs.get(ds) or []
    rows = [[h(r.dag_id), h(r.task_id), h(r.state), num(r.try_number),
             num(r.duration_seconds), h(r.error or "")] for r in runs]
    body.append('<h2 id="runs">Task runs</h2>' + (table(
        ["DAG", "task", "state", "tries", "seconds", "error"], rows, num_cols=(3, 4)) if rows else
        '<p class="muted">No task run recorded for this day (runs outside Airflow record none).</p>'))
    events = md.events_on(ds)
    if events:
        rows = [[h(e.kind), h(e.subject), h(e.created_by or ""), render_value(e.payload)]
                for e in events]
        body.append('<h2 id="events">Events</h2>' + table(["kind", "subject", "by", "details"], rows))
    return page(f"{spec.name} {ds} · Watchkeeper", "\n".join(body), depth=2,
                crumbs=[("Watchkeeper", "../../index.html"), (spec.name, "../index.html"),
                        (ds, None)], generated_at=now, charts=False)


def render_index(entries: list[dict], now: datetime, problems: list[str]) -> str:
    body = ["<h1>Watchkeeper</h1>",
            '<p class="lead">SLOs, error budgets and deployment gates for ML models. '
            "Models are listed worst first.</p>"]
    for p in problems:
        body.append(f'<p class="sev1">{h(p)}</p>')
    rows = []
    for e in entries:
        md: dmod.ModelData = e["md"]
        gate = e["gate"]
        snaps = {s.name: md.latest_snapshot(s.name) or {} for s in md.spec.slos}
        slos = "".join(
            f'<div class="slo-line"><span class="slo-name">{h(name)}</span>'
            f"{budget_bar(clean_number(snap.get('budget_remaining')))} "
            f"{badge(snap.get('alert'))}</div>" for name, snap in snaps.items()) or "–"
        latest = md.latest_day()
        latest_html = (f'<a href="{h(md.name)}/{h(latest)}/index.html">{h(latest)}</a>'
                       if latest and e["latest_page"] else h(latest or "no data yet"))
        findings = _findings_html(e["findings"], f"{md.name}/", e["root"], md.name, limit=4)
        g = gate.get("model") or {}
        gate_html = badge(g.get("decision"))
        if g.get("override"):
            gate_html += ' <span class="small">override active</span>'
        gf = gate.get("features") or {}
        if gf and gf.get("decision") != g.get("decision"):
            gate_html += f'<br><span class="small">features: {badge(gf.get("decision"))}</span>'
        rows.append([f'<a href="{h(md.name)}/index.html"><strong>{h(md.name)}</strong></a>'
                     f'<br><span class="small muted">{h(md.spec.task)}</span>',
                     f'<span data-gate="{h(g.get("decision"))}">{gate_html}</span>',
                     slos, latest_html, findings])
    body.append(table(["model", "gate", "SLO budgets", "latest day", "what is wrong now"], rows,
                      cls="wide"))
    everything = sorted(((f, e["md"].name) for e in entries for f in e["findings"]),
                        key=lambda x: (x[0].severity, x[1]))
    items = []
    for f, model in everything[:100]:
        link = f.link
        root = entries[0]["root"]
        if link and not (root / model / link).exists():
            link = None
        text = h(f.text)
        if link:
            text = f'<a href="{h(model)}/{h(link)}">{text}</a>'
        items.append(f'<li class="sev{f.severity}"><strong>{h(model)}</strong> '
                     f'<span class="muted small">{h(f.ds or "")}</span> {text}</li>')
    body.append('<h2 id="now">What is wrong now, worst first</h2>'
                + (f'<ul class="findings">{"".join(items)}</ul>' if items else
                   '<p class="muted">Nothing is wrong.</p>'))
    return page("Watchkeeper reports", "\n".join(body), depth=0,
                crumbs=[("Watchkeeper", None)], generated_at=now, charts=False)


# ---------------------------------------------------------------------------------------------
# Build
# ---------------------------------------------------------------------------------------------


def _page_alert(md: dmod.ModelData, ds: str) -> bool:
    return any((md.snapshot(s.name, ds) or {}).get("alert") == "page" for s in md.spec.slos)


def build_site(store, specs: list[ModelSpec] | ModelSpec, days: list[str] | str | None = None,
               *, root: Path | None = None, now: datetime | None = None,
               triage: bool = True) -> SiteBuild:
    """Rebuild the site for `specs`.

    `days=None` rebuilds every day page of those models (a full rebuild, `watchkeeper report`);
    a list (or one ds) rebuilds only those day pages, which is what a pipeline run should pass
    (index + one model page + one day page). The index (every model with a spec) and the given
    models' pages are always rewritten. A rebuilt day whose budget snapshot pages gets its triage
    page: (re)written when the day is named, written if missing on a full rebuild.
    """
    t0 = time.monotonic()
    from watchkeeper import history
    from watchkeeper.spec import load_all

    if isinstance(specs, ModelSpec):
        specs = [specs]
    if isinstance(days, str):
        days = [days]
    root = Path(root) if root else paths.reports_dir()
    now = now or datetime.now(UTC)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ReportError(f"{root}: cannot create the reports folder: {err}") from err
    install_static(root)
    result = SiteBuild(root=root, index=root / "index.html")
    rebuilt = {s.name for s in specs}
    known: dict[str, ModelSpec] = {}
    try:
        all_specs, errors = load_all()
        known.update({s.name: s for s in all_specs})
        result.problems += [f"invalid spec left out of the site: {e}" for e in errors]
    except Exception as err:  # noqa: BLE001 - the models folder may be absent (tests, custom roots)
        result.problems.append(f"model specs could not be listed: {err}")
    known.update({s.name: s for s in specs})

    entries = []
    for name in sorted(known):
        spec = known[name]
        md = dmod.load_model(spec, store)
        gate = {scope: _gate(spec, store, scope) for scope in ("model", "features")}
        newest = md.latest_day()
        if name in rebuilt:
            result.pruned += prune(spec, root, newest)
            cutoff = retention_cutoff(spec, newest)
            wanted = md.days if days is None else [d for d in days if DS_RE.match(d)]
            wanted = [d for d in wanted if cutoff is None or d >= cutoff]
            hist = {d["ds"]: d for d in history.build_days(name, store, wanted)} if wanted else {}
            for ds in wanted:
                path = root / name / ds / "index.html"
                # The triage page first, so the day page lists it. A full rebuild writes only
                # the missing ones (each reads a few weeks of batches); a named day is redone.
                triage_path = root / name / ds / "triage.html"
                if triage and _page_alert(md, ds) and (days is not None or not triage_path.exists()):
                    try:
                        from watchkeeper.reports import triage_page

                        tr = triage_page.run(spec, ds, store, now=now, root=root)
                        if tr.path:
                            result.triage_pages.append(tr.path)
                    except Exception as err:  # noqa: BLE001 - a triage failure must not hide the site
                        result.problems.append(f"triage {name} {ds} failed: {type(err).__name__}: {err}")
                result.day_pages.append(write_text(path, render_day_page(md, ds, root, now, hist.get(ds))))
            mp = write_text(root / name / "index.html", render_model_page(md, root, gate, now, cutoff))
            result.model_pages.append(mp)
        findings = dmod.current_findings(md)
        worst = min((f.severity for f in findings), default=9)
        budgets = [clean_number((md.latest_snapshot(s.name) or {}).get("budget_remaining"))
                   for s in spec.slos]
        lowest = min((b for b in budgets if b is not None), default=1.0)
        latest = md.latest_day()
        entries.append({"md": md, "gate": gate, "findings": findings, "root": root,
                        "latest_page": bool(latest and (root / name / latest / "index.html").exists()),
                        "key": (GATE_RANK.get(gate["model"]["decision"], 1), worst, lowest, name)})
    entries.sort(key=lambda e: e["key"])
    write_text(result.index, render_index(entries, now, result.problems))
    result.seconds = time.monotonic() - t0
    return result


def site_figures(root: Path | None = None) -> dict[str, float]:
    """`reports_mb_demo_site` (the whole site) and `model_page_mb` (the largest model page)."""
    root = Path(root) if root else paths.reports_dir()
    total = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
    pages = [p.stat().st_size for p in root.glob("*/index.html")]
    return {"reports_mb_demo_site": total / 1e6,
            "model_page_mb": (max(pages) / 1e6) if pages else 0.0}


def remove_site(root: Path | None = None) -> None:
    """Delete the site (the demo starts from nothing)."""
    shutil.rmtree(Path(root) if root else paths.reports_dir(), ignore_errors=True)
