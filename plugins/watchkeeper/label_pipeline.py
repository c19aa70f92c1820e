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
HEALTHY_DAYS = 14  # the first mature days of a model set the estimate's normal error (concept drift)
POOL_WINDOW_DAYS = 6  # concept drift pools a day with mature days at most this many days before it


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
    calibration = None
    if spec.task == "binary_classification" and spec.prediction.score:
        from watchkeeper import calibration_cache

        calibration = calibration_cache.reference_calibration(spec)
    fresh: dict[str, dict] = {}  # this run's payloads, judged for concept drift once all are known
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
        estimate, estimate_detail = _estimate(spec, day_preds, threshold, calibration)
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
            "estimate_detail": estimate_detail,
            "concept_drift": False,  # set by _judge_concept_drift below
            "concept_drift_detail": None,
            "segments": segments,
            "business_outcomes": outcomes,
            "label_issues": _day_issues(spec.name, ds, result) if pds == ds else {},
        }
        fresh[pds] = payload
        summary_days[pds] = {"coverage": cov.coverage, "mature": cov.mature,
                             "metrics": {k: metrics.get(k) for k in ("precision", "recall", "mae")
                                         if k in metrics}}
        slis += _quality_slis(spec, pds, rows, metrics, outcomes, cov, SliRecord)
    _judge_concept_drift(store, spec, ds, fresh)
    # Records only now: a record copies its payload, and the verdicts above complete it.
    records_by_day = {pds: [MetricRecord(subject="overall", value=p["coverage"], payload=p)]
                      for pds, p in fresh.items()}
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


def _quality_slis(spec: ModelSpec, pds: str, rows, metrics: dict, outcomes: list, cov,
                  record) -> list:
    """The quality SLI rows of prediction-day pds (watchkeeper.quality_sli.day_slis): ratio
    events for every day, the confident verdict for mature days; provisional days stay
    provisional (the budget ignores them until they mature)."""
    import numpy as np

    from watchkeeper import quality_sli

    if not any(s.quality for s in spec.slos):
        return []
    other_col = spec.prediction.label if spec.task == "regression" else spec.prediction.score
    y = rows["label"].to_numpy(dtype="float64") if len(rows) else np.array([], dtype="float64")
    other = (rows[other_col].to_numpy(dtype="float64") if len(rows) and other_col in rows.columns
             else np.full(len(y), np.nan))
    # Business outcomes that are plain shares of rows (share_late) are proportions: Wilson.
    kinds = {b.name: b.kind for b in (spec.labels.business_outcomes if spec.labels else [])}
    proportions = {o["name"]: (o["numerator"], o["denominator"]) for o in outcomes
                   if kinds.get(o["name"]) == "share_late" and o.get("denominator")
                   and o.get("numerator") is not None}
    day = quality_sli.day_slis(spec.slos, task=spec.task, y=y, other=other, metrics=metrics,
                               decision_threshold=spec.prediction.threshold,
                               proportions=proportions, judge=cov.mature)
    return [record(ds=pds, sli=d.sli, value=d.value, good=d.good, good_events=d.good_events,
                   total_events=d.total_events, provisional=not cov.mature,
                   details={"coverage": cov.coverage, "n_labelled": cov.n_labelled, **d.details})
            for d in day]


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


def _estimate(spec: ModelSpec, day_preds, threshold: float, calibration):
    """CBPE on the day's predictions: (metric values, detail) or (None, None) when the task has
    no estimate. The detail says which probabilities were used (calibrated on the training set, or
    raw and why) and carries the expected confusion matrix."""
    from watchkeeper import performance as perf

    if calibration is None or not len(day_preds):
        return None, None
    scores = day_preds[spec.prediction.score].astype(float).to_numpy()
    cal = calibration.summary()
    try:
        est = perf.cbpe_estimate(
            scores, threshold, calibrator=calibration.calibrator,
            decision=day_preds[spec.prediction.label] if spec.prediction.label else None)
    except perf.MetricInputError as err:
        # Raw scores outside [0, 1] are no probabilities: without a calibrator there is no estimate.
        return None, {"status": "not_estimated", "reason": f"{err} ({calibration.reason})",
                      "calibration": cal}
    values = {k: v for k, v in est.values.items() if v is not None}
    notes = list(est.notes) + ([calibration.reason] if calibration.status == "raw" else [])
    return values or None, {"status": est.status, "method": est.method, "n": est.n,
                            "threshold": est.threshold, "expected_counts": est.expected_counts,
                            "calibration": cal, "notes": notes}


def _calibration_id(payload: dict) -> str | None:
    return ((payload.get("estimate_detail") or {}).get("calibration") or {}).get("id")


def _judgeable(payload: dict) -> bool:
    return bool(not payload.get("provisional") and payload.get("estimated") and payload.get("metrics"))


def _floors(payload: dict) -> dict:
    """The sd of realized - estimated that the day's label counts allow (the band's floor)."""
    from watchkeeper import performance as perf

    m, n = payload["metrics"], payload.get("n_labelled")

    def count(rate):
        return None if n is None or m.get(rate) is None else m[rate] * n
    return perf.difference_floor(payload["estimated"], n=n, positives=count("positive_rate"),
                                 predicted_positives=count("predicted_positive_rate"))


def _judge_concept_drift(store, spec: ModelSpec, ds: str, fresh: dict[str, dict]) -> None:
    """Judge every mature prediction-day of this run for concept drift, in place.

    A day d is compared with the band learned over the model's first HEALTHY_DAYS mature
    prediction-days before d whose estimate used the same calibration (an estimate made with
    another calibrator, or with raw scores, has another normal error), and pooled with the
    newest CONCEPT_POOL_DAYS - 1 of them within POOL_WINDOW_DAYS before it, which are then left
    out of its learning days (a sample is not its own reference). The days are the store's as
    known the day before ds, with this run's restatement of the window on top: a re-run of ds
    then sees exactly what its first run saw, and a day's verdict does not depend on later days.
    """
    from watchkeeper import performance as perf

    before = (date.fromisoformat(ds) - timedelta(days=1)).isoformat()
    known = {m.ds: m.payload for m in store.metrics(spec.name, FAMILY, as_known_on=before)}
    known.update(fresh)
    learnable = [(d, _calibration_id(p), perf.LearningDay(
        d, {k: p["metrics"].get(k) - v for k, v in p["estimated"].items()
            if k in perf.ESTIMATED_METRICS and p["metrics"].get(k) is not None}, _floors(p)))
        for d, p in sorted(known.items()) if _judgeable(p)]
    for pds, p in fresh.items():
        if not _judgeable(p):
            continue
        cal_id = _calibration_id(p)
        same = [day for d, c, day in learnable if d < pds and c == cal_id]
        since = (date.fromisoformat(pds) - timedelta(days=POOL_WINDOW_DAYS)).isoformat()
        # the days pooled with d are tested with it, so they are not also its reference
        recent = [d for d in same if d.ds >= since][-(perf.CONCEPT_POOL_DAYS - 1):]
        pooled = {d.ds for d in recent}
        learning = [d for d in same if d.ds not in pooled][:HEALTHY_DAYS]
        finding = perf.concept_drift_check(p["metrics"], p["estimated"], learning, floors=_floors(p),
                                           recent=recent, prediction_ds=pds)
        p["concept_drift"] = finding.suspected
        p["concept_drift_detail"] = finding.to_dict()
