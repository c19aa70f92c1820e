"""The triage page: gather the inputs of `watchkeeper.triage` from the store and the day batches,
run it, and write `reports/<model>/<ds>/triage.html`.

Written whenever a page-level alert fires (the site build does it for every day it renders whose
budget snapshot pages) and on demand by `watchkeeper triage MODEL --ds DATE`. The Slack alert
links here (`triage_relpath`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pandas as pd

from watchkeeper import paths
from watchkeeper import triage as tri
from watchkeeper.reports.html import Charts, h, num, page, pct, table
from watchkeeper.spec import ModelSpec

LOOKBACK_DAYS = 42
REPORT_LABELS = {
    "drift.html": "Evidently drift report (against the recent days)",
    "skew.html": "Evidently skew report (against the training set)",
    "validation-ingestion.html": "Validation: ingestion checks",
    "validation-features.html": "Validation: feature checks",
}


class TriageUnavailable(Exception):
    """Triage cannot run for this model and day (names the model, the day and why)."""


def triage_relpath(model: str, ds: str) -> str:
    """The triage page's path relative to the reports root (what alerts link to)."""
    return f"{model}/{ds}/triage.html"


@dataclass
class TriageRun:
    result: tri.TriageResult
    inputs: tri.TriageInputs
    path: Path | None


def _config(spec: ModelSpec, ds: str) -> tri.TriageConfig:
    return tri.TriageConfig(
        model=spec.name, ds=ds, task=spec.task,
        features=tuple((f.name, f.kind) for f in spec.features),
        segments=tuple(spec.segments),
        score_column=spec.prediction.score,
        prediction_column=spec.prediction.label,
        threshold=spec.prediction.threshold,
        model_version_column=spec.columns.model_version,
        pii_columns=frozenset(spec.pii_columns),
        dq_objective=next((s.objective for s in spec.slos if s.sli == "data_quality"
                           and s.kind == "ratio"), None),
    )


def _columns(cfg: tri.TriageConfig) -> list[str]:
    cols = [n for n, _ in cfg.features] + list(cfg.segments)
    for c in (cfg.score_column, cfg.prediction_column, cfg.model_version_column):
        if c:
            cols.append(c)
    return list(dict.fromkeys(cols))


def _load_day(spec: ModelSpec, ds: str, cols: list[str], notes: list[str]) -> pd.DataFrame | None:
    """The batch the monitor staged for the day, else the day's partition read from the source
    (a work folder that was cleaned up); None when neither exists."""
    from watchkeeper import monitor, sources

    path = monitor.batch_path(spec.name, ds)
    if path.exists():
        try:
            import pyarrow.parquet as pq

            names = set(pq.read_schema(path).names)
            return pd.read_parquet(path, columns=[c for c in cols if c in names])
        except Exception as err:  # noqa: BLE001 - an unreadable staged file: say so, try the source
            notes.append(f"{path}: staged batch unreadable ({type(err).__name__}: {err})")
    try:
        frame = sources.read_partition(spec, ds).frame
    except sources.SourceError:
        return None  # the infrastructure answer reports the partition's own status
    except Exception as err:  # noqa: BLE001 - e.g. an Airflow connection outside Airflow
        notes.append(f"{spec.name} {ds}: source not readable here ({type(err).__name__}: {err})")
        return None
    return frame[[c for c in cols if c in frame.columns]]


def gather(spec: ModelSpec, ds: str, store, *, lookback_days: int = LOOKBACK_DAYS,
           root: Path | None = None) -> tuple[tri.TriageInputs, list[str]]:
    """Everything triage reads for `spec` on `ds`, as known on that day."""
    from watchkeeper import sources
    from watchkeeper.reports.data import is_dataset, metric_score

    cfg = _config(spec, ds)
    notes: list[str] = []
    cols = _columns(cfg)
    day = date.fromisoformat(ds)
    reference = None
    try:
        ref_path = spec.resolve_path(spec.reference.training)
        frame = sources.read_file(ref_path).frame
        reference = frame[[c for c in cols if c in frame.columns]]
    except sources.SourceError as err:
        notes.append(f"training set not readable: {err}")
    kinds = dict(cfg.features)
    if cfg.output_column:
        kinds.setdefault(cfg.output_column, "numerical")
    ref_profiles = {n: c.profile() for n, c in tri.prepare(reference, kinds).items()}

    history: list[tri.DaySummary] = []
    keep: dict[str, pd.DataFrame] = {}
    wanted = {(day - timedelta(days=k)).isoformat() for k in (0, 7, 28)}
    recent_days = {(day - timedelta(days=k)).isoformat() for k in range(1, tri.RECENT_DAYS + 1)}
    for k in range(lookback_days, -1, -1):
        d = (day - timedelta(days=k)).isoformat()
        frame = _load_day(spec, d, cols, notes)
        if frame is None or len(frame) == 0:
            continue  # no rows: nothing to measure (the partition's status says why)
        history.append(tri.summarize_day(d, frame, cfg, ref_profiles))
        if d in wanted or d in recent_days:
            keep[d] = frame
    recent_frames = [keep[d] for d in sorted(recent_days) if d in keep]
    since = (day - timedelta(days=lookback_days)).isoformat()
    sli: dict[str, dict[str, float | None]] = {}
    for v in store.slis(spec.name, as_known_on=ds, since=since, until=ds):
        sli.setdefault(v.sli, {})[v.ds] = v.value
    stored: dict[str, dict[str, dict[str, float | None]]] = {}
    for fam in ("drift", "skew"):
        for m in store.metrics(spec.name, fam, as_known_on=ds, since=since, until=ds):
            if not is_dataset(m.subject):
                stored.setdefault(fam, {}).setdefault(m.ds, {})[m.subject] = metric_score(m)
    deployments = [{"ds": e.ds, "subject": e.subject, "payload": e.payload,
                    "created_by": e.created_by}
                   for e in store.events(spec.name, "deployment", until=ds)]
    runs = [{"ds": r.ds, "dag_id": r.dag_id, "task_id": r.task_id, "state": r.state,
             "try_number": r.try_number, "duration_seconds": r.duration_seconds, "error": r.error}
            for r in store.runs(spec.name) if since <= r.ds <= ds]
    partitions = [{"ds": p.ds, "status": p.status, "rows": p.rows,
                   "lateness_hours": p.lateness_hours, "message": p.message}
                  for p in store.partitions(spec.name) if since <= p.ds <= ds]
    inputs = tri.TriageInputs(
        config=cfg, current=keep.get(ds),
        recent=recent_frames,
        reference=reference,
        week_ago=keep.get((day - timedelta(days=7)).isoformat()),
        four_weeks_ago=keep.get((day - timedelta(days=28)).isoformat()),
        history=history, sli=sli, stored_scores=stored, deployments=deployments, runs=runs,
        partitions=partitions, links=_links(spec.name, ds, root))
    return inputs, notes


def _links(model: str, ds: str, root: Path | None = None) -> dict[str, str]:
    """Evidence pages, relative to the triage page (which sits in the day's folder)."""
    folder = (root or paths.reports_dir()) / model / ds
    have = {p.name for p in folder.glob("*.html")} if folder.is_dir() else set()
    links = {"day": "index.html", "model": "../index.html",
             "timing": "../index.html#slis", "infrastructure": "index.html#runs",
             "predictions": "../index.html#predictions", "segments": "../index.html#drift",
             "features": "../index.html#drift"}
    if "drift.html" in have:
        links["features"] = "drift.html"
        links["drift"] = "drift.html"
        links["segments"] = "drift.html"
    if "skew.html" in have:
        links["skew"] = "skew.html"
    for stage in ("ingestion", "features"):
        name = f"validation-{stage}.html"
        if name in have:
            links[f"validation_{stage}"] = name
    return links


def run(spec: ModelSpec, ds: str, store, *, write: bool = True,
        now: datetime | None = None, root: Path | None = None) -> TriageRun:
    """Triage `spec` on `ds`; write the page unless `write` is False."""
    try:
        date.fromisoformat(ds)
    except (TypeError, ValueError):
        raise TriageUnavailable(f"triage {spec.name}: --ds {ds!r} is not a day 'YYYY-MM-DD'") from None
    root = Path(root) if root else paths.reports_dir()
    inputs, notes = gather(spec, ds, store, root=root)
    known = {p["ds"] for p in inputs.partitions} | {s.ds for s in inputs.history}
    known |= {d for series in inputs.sli.values() for d in series}
    if ds not in known:
        raise TriageUnavailable(
            f"triage {spec.name} {ds}: nothing is known about this day (no partition, batch or "
            "SLI recorded); run the monitor for it first")
    result = tri.triage(inputs)
    result.notes.extend(notes)
    path = None
    if write:
        path = root / triage_relpath(spec.name, ds)
        from watchkeeper.reports.site import install_static, write_text

        install_static(root)
        write_text(path, render(result, inputs, spec, now or datetime.now(UTC)))
    return TriageRun(result=result, inputs=inputs, path=path)


# ---------------------------------------------------------------------------------------------
# The page
# ---------------------------------------------------------------------------------------------


def _link(links: dict[str, str], key: str, label: str) -> str:
    href = links.get(key)
    return f'<a href="{h(href)}">{h(label)}</a>' if href else ""


def _timing_chart(charts: Charts, result: tri.TriageResult, inputs: tri.TriageInputs) -> str:
    days = sorted({s.ds for s in inputs.history} | set(inputs.sli.get("data_quality", {})))
    if not days:
        return ""
    top = [f.feature for f in result.features[:3]]
    series = []
    by_day = {s.ds: s for s in inputs.history}
    for i, name in enumerate(top):
        series.append({"name": f"{name}: distance from training",
                       "values": [(by_day[d].skew.get(name) if d in by_day else None) for d in days],
                       "color": i})
    markers = [{"ds": d["ds"], "kind": "deployment", "label": f"deployment {d.get('subject')}"}
               for d in inputs.deployments]
    if result.onset.onset_ds:
        markers.append({"ds": result.onset.onset_ds, "kind": "other",
                        "label": f"onset ({result.onset.kind})"})
    out = charts.chart({"type": "line", "days": days, "series": series, "markers": markers,
                        "y": {"min": 0}},
                       "The top features' distance from the training set, per day",
                       "O marks the onset; D a deployment.")
    dq = inputs.sli.get("data_quality") or {}
    if dq:
        out += charts.chart({"type": "line", "days": days,
                             "series": [{"name": "data_quality",
                                         "values": [dq.get(d) for d in days]}],
                             "markers": markers, "y": {"format": "pct", "max": 1}},
                            "Data-quality SLI (share of checks passing), per day")
    return out


def render(result: tri.TriageResult, inputs: tri.TriageInputs, spec: ModelSpec,
           generated_at: datetime) -> str:
    charts = Charts()
    links = result.links
    ds = result.ds
    onset = result.onset
    body = [f"<h1>Triage: {h(spec.name)} on {h(ds)}</h1>",
            '<p class="lead">The on-call checklist, answered in order from the data of this day '
            "and the days before it. Each answer gives its evidence and a link.</p>"]
    if result.notes:
        body.append('<ul class="findings">' + "".join(f'<li class="sev3">{h(n)}</li>'
                                                     for n in result.notes) + "</ul>")
    # 1. timing
    dep = result.nearest_deployment
    dep_html = ("none on or before this day" if dep is None else
                f"{h(dep.get('version'))} on {h(dep.get('ds'))} ({h(dep.get('source'))}), "
                f"{h(dep.get('days_before_onset'))} day(s) before the onset")
    rows = [[h(s.series), h(s.verdict), h(s.onset_ds or "–"), num(s.value), num(s.baseline),
             num(s.threshold), h(s.text)] for s in onset.series]
    body.append(
        '<section class="answer" id="timing"><h2>1. Timing: sudden or gradual? After a deployment?</h2>'
        f'<p class="verdict">Onset: {h(onset.kind)}'
        f"{' on ' + h(onset.onset_ds) if onset.onset_ds else ''}; "
        f"{'right after a deployment' if result.after_deployment else 'not after a deployment'}.</p>"
        f"<p>{h(onset.text)}</p><p>Nearest deployment: {dep_html}.</p>"
        + _timing_chart(charts, result, inputs)
        + "<h3>Every series considered</h3>"
        + table(["series", "verdict", "onset", "today", "baseline", "elevated above", "evidence"],
                rows, num_cols=(3, 4, 5))
        + f"<p>{_link(links, 'timing', 'SLI trends on the model page')}</p></section>")
    # 2. predictions
    p = result.predictions
    prow = []
    for label, key in (("this day", "today"), ("1 week before", "one_week_before"),
                       ("4 weeks before", "four_weeks_before")):
        e = p.get(key) or {}
        d = ds if key == "today" else e.get("ds")
        if key != "today" and not e.get("available"):
            prow.append([h(label), h(d), "no batch", "", "", "", "", "", ""])
            continue
        prow.append([h(label), h(d), num(e.get("rows")), num(e.get("mean")), num(e.get("p10")),
                     num(e.get("p50")), num(e.get("p90")), pct(e.get("positive_rate")),
                     num(e.get("distance")) if key != "today" else ""])
    body.append(
        '<section class="answer" id="predictions"><h2>2. Predictions against the same weekday</h2>'
        f'<p class="verdict">The output is {h(p.get("verdict"))}.</p><p>{h(p.get("text"))}</p>'
        + table(["", "day", "rows", "mean", "p10", "median", "p90", "positive rate", "distance"],
                prow, num_cols=(2, 3, 4, 5, 6, 7, 8))
        + f"<p>{_link(links, 'predictions', 'Prediction monitors on the model page')}</p></section>")
    # 3. features
    frows = [[h(f.feature), num(f.score), num(f.drift), num(f.skew),
              pct(f.null_share_before) + " → " + pct(f.null_share),
              h(", ".join(f"{k} {num(v)}" for k, v in f.stored.items())), h(f.text)]
             for f in result.features]
    top = result.features[0].feature if result.features else None
    body.append(
        '<section class="answer" id="features"><h2>3. Input features, ranked by how far they moved</h2>'
        + (f'<p class="verdict">{h(top)} moved most.</p>' if top else
           '<p class="verdict">No feature could be measured.</p>')
        + "<p>Score: the larger of the distance from the recent days and from the training set "
          "(normed Wasserstein for numbers, total variation for categories, or the change in "
          "nulls).</p>"
        + table(["feature", "score", "vs recent days", "vs training", "nulls before → now",
                 "monitor's stored scores", "evidence"], frows, num_cols=(1, 2, 3))
        + "<p>" + " · ".join(x for x in (_link(links, "drift", "Evidently drift report"),
                                           _link(links, "skew", "Evidently skew report"),
                                           _link(links, "validation_features", "feature checks"),
                                           _link(links, "day", "every finding of the day")) if x)
        + "</p></section>")
    # 4. segments
    srows = [[h(", ".join(f"{k}={v}" for k, v in s.segment.items())), num(s.impact),
              h(s.feature or "–"), num(s.inside), num(s.elsewhere), num(s.rows), pct(s.share),
              h(s.text)] for s in result.segments]
    worst = result.segments[0] if result.segments and result.segments[0].impact > 0 else None
    body.append(
        '<section class="answer" id="segments"><h2>4. Impact by segment</h2>'
        + (f'<p class="verdict">{h(", ".join(f"{k}={v}" for k, v in worst.segment.items()))} '
           f"carries the damage ({h(worst.feature)}).</p>" if worst else
           '<p class="verdict">No segment stands out: the change is spread evenly.</p>')
        + "<p>Impact: how much more a feature (or the model's output) moved inside the segment "
          "than in the rest of the batch, each against its own recent days.</p>"
        + table(["segment", "impact", "feature", "inside", "elsewhere", "rows", "share", "evidence"],
                srows, num_cols=(1, 3, 4, 5, 6))
        + f"<p>{_link(links, 'segments', 'segment comparisons')}</p></section>")
    # 5. infrastructure
    infra = result.infrastructure
    trows = [[h(t["dag_id"]), h(t["task_id"]), h(t["state"]), num(t["try_number"]),
              num(t["duration_seconds"]), num(t["median_duration_seconds"]),
              "slow" if t["slow"] else "", h(t.get("error") or "")] for t in infra["tasks"]]
    fresh = infra.get("freshness") or {}
    versions = ", ".join(f"{k} ({v})" for k, v in (infra.get("model_versions") or {}).items())
    body.append(
        '<section class="answer" id="infrastructure"><h2>5. Infrastructure health</h2>'
        f'<p class="verdict">{"Healthy." if infra["healthy"] else "Problems found."}</p>'
        f"<p>{h(infra['text'])}</p>"
        f"<p>Partition: {h(fresh.get('status') or 'not recorded')}"
        f"{' — ' + h(fresh.get('message')) if fresh.get('message') else ''}. "
        f"Load: {num(infra.get('rows'))} rows vs a median of {num(infra.get('rows_median'))}. "
        f"Model versions: {h(versions or 'unknown')}.</p>"
        + table(["DAG", "task", "state", "tries", "seconds", "median seconds", "", "error"], trows,
                num_cols=(3, 4, 5))
        + f"<p>{_link(links, 'infrastructure', 'task runs of the day')}</p></section>")
    body.append(f'<p class="noprint">JSON: <code>watchkeeper triage {h(spec.name)} --ds {h(ds)} '
                "--json</code></p>")
    return page(f"Triage {spec.name} {ds}", "\n".join(body), depth=2,
                crumbs=[("Watchkeeper", "../../index.html"), (spec.name, "../index.html"),
                        (ds, "index.html"), ("triage", None)],
                generated_at=generated_at)
