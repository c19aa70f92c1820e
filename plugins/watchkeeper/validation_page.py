"""One self-contained HTML page per validated stage: what was checked, what failed, and why.

Reviewers open these pages offline, from a file share or a printed copy, so the page carries
its own CSS, runs no script and names no external URL (no CDN, no fonts, no links out). Every
string that comes from data or from a suite file is escaped with html.escape: category values,
column names and notes are all untrusted.
"""

from __future__ import annotations

import html
import json
import os
from pathlib import Path
from typing import Any

from watchkeeper.quality import ExpectationOutcome, StageResult

__all__ = ["render_validation_page", "validation_page_html"]

_CSS = """
:root { --ok: #1b6e3a; --ok-bg: #e6f4ea; --bad: #a4161a; --bad-bg: #fdecea; --muted: #5f6368;
        --line: #d6d9dc; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif;
       color: #1f2328; margin: 24px auto; max-width: 1200px; padding: 0 16px; }
h1 { font-size: 22px; margin: 0 0 4px; }
h2 { font-size: 17px; margin: 28px 0 8px; border-bottom: 1px solid var(--line);
     padding-bottom: 4px; }
.sub { color: var(--muted); margin: 0 0 16px; }
.verdict { display: inline-block; font-weight: 600; padding: 3px 10px; border-radius: 4px; }
.verdict.ok, .badge.ok { color: var(--ok); background: var(--ok-bg); }
.verdict.bad, .badge.bad { color: var(--bad); background: var(--bad-bg); }
.summary { display: flex; gap: 24px; flex-wrap: wrap; margin: 12px 0; }
.summary div { min-width: 110px; }
.summary b { display: block; font-size: 20px; }
.summary span { color: var(--muted); font-size: 12px; text-transform: uppercase; }
table { border-collapse: collapse; width: 100%; table-layout: fixed; }
th, td { text-align: left; vertical-align: top; padding: 6px 8px;
         border-bottom: 1px solid var(--line);
         overflow-wrap: anywhere; }
th { font-size: 12px; text-transform: uppercase; color: var(--muted); }
tr.bad td { background: #fff8f7; }
.badge { font-size: 12px; font-weight: 600; padding: 1px 6px; border-radius: 3px;
         white-space: nowrap; }
code, pre { font: 12px/1.4 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
pre { margin: 0; white-space: pre-wrap; overflow-wrap: anywhere; }
.note { color: var(--muted); font-size: 12px; margin-top: 4px; }
.reason { color: var(--bad); font-size: 12px; margin-top: 4px; }
ul.notes { margin: 4px 0; padding-left: 20px; }
footer { color: var(--muted); font-size: 12px; margin-top: 32px; }
col.status { width: 70px; } col.check { width: 24%; } col.column { width: 13%; }
col.share { width: 11%; }
@media print {
  body { margin: 0; max-width: none; font-size: 11px; }
  tr { page-break-inside: avoid; }
  .verdict, .badge, tr.bad td { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
}
"""

_MAX_TEXT = 600  # characters of an observed/expected value shown in a cell


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _compact(value: Any) -> str:
    if value is None:
        return ""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False,
                                                            default=str, sort_keys=False)
    return text if len(text) <= _MAX_TEXT else text[:_MAX_TEXT] + " …"


def _share(o: ExpectationOutcome) -> str:
    if o.unexpected_share is None:
        return "—"
    pct = o.unexpected_share * 100
    text = f"{pct:.3g}%" if pct < 10 else f"{pct:.1f}%"
    if o.unexpected_count is not None and o.element_count is not None:
        text += f"<div class=\"note\">{o.unexpected_count:,} of {o.element_count:,} rows</div>"
    elif o.unexpected_count is not None:
        text += f"<div class=\"note\">{o.unexpected_count:,} rows</div>"
    return text


def _row(o: ExpectationOutcome) -> str:
    status = "ok" if o.success else "bad"
    details = o.details or {}
    expected = details.get("expected")
    check = (f"<code>{_e(o.expectation_type.removeprefix('expect_'))}</code>"
             f"<div class=\"note\">{_e(o.expectation_id)}</div>")
    if details.get("notes"):
        check += f"<div class=\"note\">{_e(details['notes'])}</div>"
    observed = f"<pre>{_e(_compact(o.observed))}</pre>" if o.observed is not None else ""
    if observed and details.get("observed_is"):
        observed += f"<div class=\"note\">{_e(details['observed_is'])}</div>"
    if details.get("redacted"):
        observed += f"<div class=\"note\">{_e(details['redacted'])}</div>"
    if o.error:
        observed += f"<div class=\"reason\">{_e(o.error)}</div>"
    if details.get("gx_details") and not o.success:  # e.g. {"mismatched": {"missing": [...]}}
        observed += f"<div class=\"reason\">{_e(_compact(details['gx_details']))}</div>"
    if details.get("sample_rows") and not o.success:
        rows = ", ".join(str(r) for r in details["sample_rows"])
        observed += f"<div class=\"note\">first rows: {_e(rows)}</div>"
    exp_cell = f"<pre>{_e(_compact(expected))}</pre>" if expected else ""
    return (f"<tr class=\"{status}\"><td><span class=\"badge {status}\">"
            f"{'pass' if o.success else 'FAIL'}</span></td>"
            f"<td>{check}</td><td>{_e(o.column) if o.column else '<i>table</i>'}</td>"
            f"<td>{exp_cell}</td><td>{observed}</td><td>{_share(o)}</td></tr>")


def _table(outcomes: list[ExpectationOutcome]) -> str:
    head = ("<table><colgroup><col class=\"status\"><col class=\"check\"><col class=\"column\">"
            "<col><col><col class=\"share\"></colgroup>"
            "<thead><tr><th>Result</th><th>Check</th><th>Column</th><th>Expected</th>"
            "<th>Observed</th><th>Unexpected</th></tr></thead><tbody>")
    return head + "".join(_row(o) for o in outcomes) + "</tbody></table>"


def validation_page_html(result: StageResult, *, model: str, ds: str, suite_name: str) -> str:
    """The page as a string (render_validation_page writes it)."""
    failed = [o for o in result.results if not o.success]
    verdict = ("<span class=\"verdict ok\">all checks passed</span>" if result.success else
               f"<span class=\"verdict bad\">{len(failed)} of {result.evaluated} checks failed"
               "</span>")
    title = f"{model} · {ds} · {result.stage} checks"
    parts = [
        "<!DOCTYPE html>",
        "<html lang=\"en\"><head><meta charset=\"utf-8\">",
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">",
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{_e(model)} — {_e(result.stage)} checks for {_e(ds)}</h1>",
        f"<p class=\"sub\">Suite <code>{_e(suite_name)}</code>"
        + (f" ({_e(result.suite_name)})" if result.suite_name and
           result.suite_name != suite_name else "") + "</p>",
        f"<p>{verdict}</p>",
        "<div class=\"summary\">",
        f"<div><b>{result.row_count:,}</b><span>rows</span></div>",
        f"<div><b>{result.evaluated}</b><span>checks</span></div>",
        f"<div><b>{result.passed}</b><span>passed</span></div>",
        f"<div><b>{len(failed)}</b><span>failed</span></div>",
        "</div>",
    ]
    if result.parameters:
        params = ", ".join(f"{_e(k)} = {_e(_compact(v))}" for k, v in result.parameters.items())
        parts.append(f"<p class=\"note\">Run-time parameters: {params}</p>")
    if result.suite_notes:
        parts.append("<h2>About this suite</h2><ul class=\"notes\">"
                     + "".join(f"<li>{_e(n)}</li>" for n in result.suite_notes) + "</ul>")
    if failed:
        parts.append(f"<h2>Failed checks ({len(failed)})</h2>")
        parts.append(_table(failed))
    parts.append(f"<h2>All checks ({result.evaluated})</h2>")
    parts.append(_table(result.results) if result.results else "<p>No checks in this suite.</p>")
    parts.append("<footer>Unexpected shares are of the non-missing values checked. Values of "
                 "columns marked PII are never shown. Generated by Watchkeeper.</footer>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def render_validation_page(result: StageResult, *, model: str, ds: str, suite_name: str,
                           path: Path) -> Path:
    """Write the stage's validation page to `path` (atomically) and return the path."""
    path = Path(path)
    page = validation_page_html(result, model=model, ds=ds, suite_name=suite_name)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Written beside the target and renamed: a reader never sees half a page.
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(page, encoding="utf-8")
    os.replace(tmp, path)
    return path
