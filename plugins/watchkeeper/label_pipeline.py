"""The labels DAG's steps: take the labels that arrived on ds, join them to the predictions of the
last `max_label_delay` days, and restate model quality for every prediction-day they touch.

The shell around `watchkeeper.labels` and `watchkeeper.performance`. State lives in two places:
- the label history: the valid rows of each day's label file, one Parquet file per arrival day
  under WATCHKEEPER_HOME/state/<model>/labels/arrived=<ds>.parquet, written atomically. A re-run
  replaces its own day's file, so re-runs and out-of-order runs converge, and a restatement reads
  only the arrival days that can still touch its window (a label for prediction-day d arrives in
  [d, d + max_label_delay]);
- the store: per prediction-day quality (wk_metric family 'quality', known_on = the labels run's
  ds) and the model-quality SLIs (provisional until label coverage reaches maturity), so any past
  day can be rebuilt as it was known then.
"""

from __future__ import annotations

import json
import logging
import os
from datetime import date, timedelta
from pathlib import Path

from watchkeeper import paths
from watchkeeper.spec import ModelSpec

log = logging.getLogger(__name__)

FAMILY = "quality"
HEALTHY_DAYS = 14  # the first mature days of a model set the estimate's normal error


def history_dir(model: str) -> Path:
    return paths.home() / "state" / model / "labels"


def history_file(model: str, arrived_ds: str) -> Path:
    return history_dir(model) / f"arrived={arrived_ds}.parquet"


def issues_file(model: str, arrived_ds: str) -> Path:
    return history_dir(model) / f"arrived={arrived_ds}.issues.json"


def read_history(model: str, days: list[str]):
    """The valid label rows that arrived on the given days."""
    import pandas as pd

    from watchkeeper import labels as lab

    frames = [pd.read_parquet(p) for d in days if (p := history_file(model, d)).exists()]
    frames = [f for f in frames if len(f)]
    return pd.concat(frames, ignore_index=True) if frames else lab.empty_history()


def _days_back(ds: str, n: int) -> list[str]:
    d = date.fromisoformat(ds)
    return [(d - timedelta(days=i)).isoformat() for i in range(n - 1, -1, -1)]


def _write_atomic(frame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    frame.to_parquet(tmp, index=False)
    os.replace(tmp, path)


def ingest(spec: ModelSpec, ds: str, resolver=None) -> dict:
    """Validate the labels that arrived on ds and merge them into the label history."""
    import pandas as pd

    from watchkeeper import labels as lab
    from watchkeeper import sources

    ls = spec.labels
    src = ls.source
    location = spec.resolve(src.path, ds) if src.kind == "file" else f"{src.kind} labels for {ds}"
    notes: list[str] = []
    try:
        raw = sources.read_day(spec, src, ds, resolver).frame
    except sources.PartitionMissing as err:
        raw, notes = None, [f"no label file arrived: {err.reason} ({err.location})"]
    except sources.SourceError as err:
        raw, notes = None, [f"labels unreadable: {err}"]

    # Duplicates and conflicts are judged against the labels still in play (the last window).
    earlier = _days_back(ds, ls.max_delay_days + 1)[:-1]
    known = read_history(spec.name, earlier)
    if raw is None:
        clean, issues = lab.empty_history(), lab.LabelIssues()
    else:
        clean, issues = lab.validate_labels(
            raw, id_col=ls.join_key, label_col=ls.label_column, arrived_ds=ds, task=spec.task,
            source=Path(location).name, ts_col=ls.timestamp_column, extra_cols=())
    _merged, merge_issues = lab.merge_labels(known, clean, replace_file=(ds, Path(location).name))
    _write_atomic(clean, history_file(spec.name, ds))
    all_issues = [i.to_dict() for i in issues.items + merge_issues.items]
    # The file's own issues travel with it, so the restatement reports them with the join's.
    issues_file(spec.name, ds).write_text(json.dumps(
        {"issues": all_issues, "notes": notes, "received": 0 if raw is None else len(raw),
         "valid": len(clean)}, default=str), encoding="utf-8")
    return {"model": spec.name, "ds": ds, "received": 0 if raw is None else len(raw),
            "valid": len(clean), "issues": all_issues, "notes": notes}


def _outcome_columns(spec: ModelSpec) -> list[str]:
    return [b.value_column for b in (spec.labels.business_outcomes if spec.labels else []) if b.value_column]


def _prediction_columns(spec: ModelSpec) -> list[str]:
    cols = [spec.columns.id, *spec.segments, *_outcome_columns(spec)]
    for c in (spec.prediction.score, spec.prediction.label, spec.prediction.query_group):
        if c:
            cols.append(c)
    return list(dict.fromkeys(cols))


def load_predictions(spec: ModelSpec, days: list[str], resolver=None):
    """The window's predictions: the staged batch of each day (written by the monitor DAG), or the
    source when the monitor has not staged it."""
    import pandas as pd

    from watchkeeper import monitor, sources

    cols = _prediction_columns(spec)
    frames, missing = [], []
    for d in days:
        path = monitor.batch_path(spec.name, d)
        try:
            if path.exists():
                import pyarrow.parquet as pq

                have = set(pq.read_schema(path).names)
                f = pd.read_parquet(path, columns=[c for c in cols if c in have])
            else:
                f = sources.read_partition(spec, d, resolver).frame
        except sources.SourceError:
            missing.append(d)
            continue
        keep = [c for c in cols if c in f.columns]
        if len(f):
            frames.append(f[keep].assign(ds=d))
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=[*cols, "ds"])
    return frame.rename(columns={spec.columns.id: "id"}), missing


def restate(spec: ModelSpec, ds: str, store, resolver=None) -> dict:
    """Join labels as known on ds and restate quality for every prediction-day of the window."""
    import pandas as pd

    from watchkeeper import labels as lab
    from watchkeeper import performance as perf
    from watchkeeper.store import MetricRecord, SliRecord

    ls = spec.labels
    window = _days_back(ds, ls.max_delay_days + 1)
    preds, missing_days = load_predictions(spec, window, resolver)
    # A day's view must not depend on which earlier label days happened to run first: arrival days
    # of the window not ingested yet are ingested now, from the same source their own run reads.
    for d in window[:-1]:
        if not history_file(spec.name, d).exists():
            ingest(spec, d, resolver)
    history = read_history(spec.name, window)
    result = lab.join_labels(preds, history, as_of_ds=ds, max_label_delay_days=ls.max_delay_days,
                             maturity_threshold=ls.maturity_coverage)
    joined = result.joined
    threshold = spec.prediction.threshold
    healthy = _healthy_errors(store, spec, ds)

    records_by_day: dict[str, list] = {}
    slis: list = []
    summary_days = {}
    # split by prediction day once (comparing text columns per day costs seconds on a window)
    labelled_by_day = dict(tuple(joined[joined["label"].notna()].groupby("ds", sort=False)))
    preds_by_day = dict(tuple(preds.groupby("ds", sort=False)))
    for cov in result.days:
        pds = cov.prediction_ds
        if pds not in window:
            continue
        rows = labelled_by_day.get(pds, joined.iloc[:0])
        day_preds = preds_by_day.get(pds, preds.iloc[:0])
        metrics, segments, outcomes = {}, {}, []
        if len(rows):
            rep = perf.evaluate(
                rows, task=spec.task, label_col="label", score_col=spec.prediction.score,
                prediction_col=spec.prediction.label, threshold=threshold,
                segment_cols=[c for c in spec.segments if c in rows.columns],
                query_col=spec.prediction.query_group)
            metrics = {k: v for k, v in rep.overall.values.items() if v is not None}
            for s in rep.segments:
                key = f"{s.segment['column']}={s.segment['value']}"
                segments[key] = {"n": s.n, **{k: v for k, v in s.values.items() if v is not None}}
            if ls.business_outcomes:
                outcomes = [o.to_dict() for o in perf.business_outcomes(
                    rows, [b.model_dump() for b in ls.business_outcomes], label_col="label",
                    prediction_col=spec.prediction.label, score_col=spec.prediction.score,
                    threshold=threshold)]
                for o in outcomes:
                    if o["value"] is not None:
                        metrics[o["name"]] = o["value"]
        estimate = None
        if spec.task == "binary_classification" and spec.prediction.score and len(day_preds):
            est = perf.cbpe_estimate(
                day_preds[spec.prediction.score].astype(float).to_numpy(), threshold,
                decision=day_preds[spec.prediction.label] if spec.prediction.label else None)
            estimate = {k: v for k, v in est.values.items() if v is not None}
        concept = None
        if cov.mature and estimate and metrics:
            finding = perf.concept_drift_check(metrics, estimate, healthy)
            concept = finding.to_dict()
        payload = {
            "metrics": metrics,
            "provisional": not cov.mature,
            "coverage": cov.coverage,
            "lag_days_p50": cov.lag_p50_days,
            "lag_days_p90": cov.lag_p90_days,
            "n_predictions": cov.n_predictions,
            "n_labelled": cov.n_labelled,
            "final": cov.final,
            "estimated": estimate,
            "concept_drift": bool(concept and concept["suspected"]),
            "concept_drift_detail": concept,
            "segments": segments,
            "business_outcomes": outcomes,
            "label_issues": _day_issues(spec.name, ds, result) if pds == ds else {},
        }
        records_by_day[pds] = [MetricRecord(subject="overall", value=cov.coverage, payload=payload)]
        summary_days[pds] = {"coverage": cov.coverage, "mature": cov.mature,
                             "metrics": {k: metrics.get(k) for k in ("precision", "recall", "mae")
                                         if k in metrics}}
        for slo in spec.slos:
            if not slo.quality:
                continue
            value = metrics.get(slo.sli)
            slis.append(SliRecord(
                ds=pds, sli=slo.sli, value=value,
                good=None if value is None or slo.threshold is None else (
                    value >= slo.threshold if slo.direction == "at_least" else value <= slo.threshold),
                provisional=not cov.mature,
                details={"coverage": cov.coverage, "n_labelled": cov.n_labelled},
            ))
    from watchkeeper import monitor

    # The restated quality, its SLIs and the budgets evaluated from them: all or nothing, so a
    # task killed half-way never leaves SLIs the gate's budget snapshots do not reflect.
    with store.atomic() as conn:
        for pds, recs in records_by_day.items():
            store.write_metrics(spec.name, pds, FAMILY, ds, recs, conn=conn)
        if slis:
            store.write_slis(spec.name, ds, _dedupe_slis(slis), conn=conn)
        budgets = monitor.evaluate_budgets(spec, ds, store)
    return {"model": spec.name, "ds": ds, "days": summary_days,
            "label_issues": _day_issues(spec.name, ds, result),
            "missing_prediction_days": missing_days, "budgets": budgets}


def _dedupe_slis(slis):
    seen = {}
    for s in slis:
        seen[(s.ds, s.sli)] = s
    return list(seen.values())


def _day_issues(model: str, ds: str, result) -> dict:
    """Issues of the label file that arrived on ds: its own (validation, duplicates, conflicts)
    and the join's (unknown ids, too late), counted by kind with readable messages."""
    joined = result.issues.for_day(ds)
    counts = dict(joined.counts())
    messages = list(joined.messages())
    f = issues_file(model, ds)
    own = json.loads(f.read_text(encoding="utf-8")) if f.exists() else {}
    for i in own.get("issues", []):
        counts[i["kind"]] = counts.get(i["kind"], 0) + int(i.get("count") or 0)
        messages.append(i.get("reason") or i["kind"])
    messages += own.get("notes", [])
    return {"counts": counts, "messages": messages[:20], "received": own.get("received"),
            "valid": own.get("valid")}


def _healthy_errors(store, spec: ModelSpec, ds: str) -> list[dict]:
    """realized - estimated on the model's first mature days, as known on ds: the estimate's
    normal error, against which a departure is suspected concept drift."""
    out = []
    for m in store.metrics(spec.name, FAMILY, as_known_on=ds):
        p = m.payload
        if p.get("provisional") or not p.get("estimated") or not p.get("metrics"):
            continue
        err = {k: p["metrics"][k] - p["estimated"][k] for k in p["estimated"]
               if p["metrics"].get(k) is not None and p["estimated"].get(k) is not None}
        if err:
            out.append((m.ds, err))
        if len(out) >= HEALTHY_DAYS:
            break
    return [e for _, e in sorted(out)[:HEALTHY_DAYS]]
