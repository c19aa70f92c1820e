"""The monitor pipeline's steps for one model and day: the imperative shell around the core.

Each step reads its inputs from WATCHKEEPER_HOME (Parquet) and the store, calls the pure core,
and writes its results in one transaction. Steps are plain functions so Airflow tasks, the CLI
and tests run exactly the same code; XCom only ever carries the small dicts they return.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
from dataclasses import dataclass
from datetime import date, datetime, timezone
from pathlib import Path

from watchkeeper import paths
from watchkeeper.spec import ModelSpec, day_bounds

log = logging.getLogger(__name__)


class ConfigurationError(Exception):
    """The spec or a suite cannot be evaluated: a problem for the model's owner, not a finding."""


def work_dir(model: str, ds: str) -> Path:
    date.fromisoformat(ds)
    return paths.home() / "work" / model / ds


def batch_path(model: str, ds: str) -> Path:
    return work_dir(model, ds) / "batch.parquet"


def _write_parquet_atomic(frame, path: Path) -> list[str]:
    """Write via a temp file and rename, so a killed task never leaves half a batch behind.

    Mixed-type object columns (strings in a numeric column) cannot be stored as Parquet as they
    are; they are kept as text and said so, and the ingestion suite's type check reports them.
    """
    notes = []
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    try:
        frame.to_parquet(tmp, index=False)
    except Exception:  # pyarrow: ArrowTypeError / ArrowInvalid on mixed object columns
        frame = frame.copy()
        for col in frame.columns:
            if frame[col].dtype == object:
                kinds = {type(v).__name__ for v in frame[col].dropna().head(10000)}
                if len(kinds) > 1:
                    frame[col] = frame[col].map(lambda v: None if v is None else str(v))
                    notes.append(f"column {col} mixes types ({', '.join(sorted(kinds))}); kept as text")
        frame.to_parquet(tmp, index=False)
    os.replace(tmp, path)
    return notes


# ----- load -----------------------------------------------------------------------------------


def load(spec: ModelSpec, ds: str, store, resolver=None) -> dict:
    """Read the day's partition, record it and its freshness, stage the batch for the checks."""
    from watchkeeper import sources
    from watchkeeper.store import PartitionRecord

    frame, location, notes = None, "", []
    try:
        part = sources.read_partition(spec, ds, resolver)
        frame, location, notes = part.frame, part.location, list(part.notes)
        status = "empty" if part.rows == 0 else "ok"
        message = f"{part.rows} rows from {location}"
    except sources.SourceError as err:
        status, location, message = err.status, err.location, str(err)

    try:
        landed = sources.landing_time(spec, ds, frame)
    except sources.SourceError as err:
        landed, notes = None, notes + [str(err)]
    fresh = sources.freshness(spec, ds, landed, status=status)
    if status == "ok" and fresh.good is False:
        status = "late"
    path = batch_path(spec.name, ds)
    if frame is not None:
        notes += _write_parquet_atomic(frame, path)
    elif path.exists():
        path.unlink()  # a re-run that now finds no data must not check yesterday's staged copy
    if notes:
        message = message + "; " + "; ".join(notes)
    if status in ("ok", "late", "empty"):
        message = f"{message}; {fresh.message}"

    partial = judge_completeness(spec, ds, frame, store)
    if partial is not None and partial.get("partial") is not False:
        log.info("%s %s: %s", spec.name, ds, partial["reason"])
    rec = PartitionRecord(
        model=spec.name,
        ds=ds,
        source=location,
        rows=None if frame is None else len(frame),
        landed_at=fresh.landed_at,
        deadline=fresh.deadline,
        lateness_hours=fresh.lateness_hours,
        status=status,
        message=message,
        partial=partial,
    )
    store.write_partition(rec)
    return {
        "model": spec.name,
        "ds": ds,
        "status": status,
        "rows": rec.rows,
        "fresh": fresh.good,
        "message": message,
        "batch": str(path) if frame is not None else None,
        "partial": partial,
    }


# ----- partial days (issue 14) ------------------------------------------------------------------


def judge_completeness(spec: ModelSpec, ds: str, frame, store) -> dict | None:
    """Is the day's batch partial? watchkeeper.completeness.PartialDay.to_dict(), or None for a
    day without rows (missing, unreadable and empty days are findings of their own).

    The trailing row counts are those stored before ds, so a re-run of the day judges it the
    same; the training set's timestamps are read only while fewer than three days are known.
    """
    from watchkeeper import completeness

    if frame is None or len(frame) == 0:
        return None
    counts = store.trailing_row_counts(spec.name, ds, n=completeness.TRAILING_DAYS)
    profile = None
    if len(counts) < completeness.MIN_KNOWN_DAYS:
        profile = traffic_profile(spec)
    col = spec.columns.timestamp
    start, end = day_bounds(spec, ds)
    return completeness.judge_partial(
        len(frame), fraction=spec.completeness.partial_fraction, trailing_counts=counts,
        timestamps=frame[col] if col in frame.columns else None, day_start=start, day_end=end,
        profile=profile, tz=spec.tz).to_dict()


def traffic_profile(spec: ModelSpec):
    """The training set's time-of-day profile (completeness.TrafficProfile), or why there is
    none (a string: the file or the column is missing). Only its timestamp column is read."""
    import pandas as pd

    from watchkeeper import completeness

    col = spec.columns.timestamp
    path = spec.resolve_path(spec.reference.training)
    where = f"{path} (reference.training)"
    try:
        if str(path).lower().endswith(".csv"):
            head = pd.read_csv(path, nrows=0, encoding="utf-8")
            if col not in head.columns:
                raise KeyError(col)
            stamps = pd.read_csv(path, usecols=[col], encoding="utf-8")[col]
        else:
            import pyarrow.parquet as pq

            if col not in pq.read_schema(path).names:
                raise KeyError(col)
            stamps = pd.read_parquet(path, columns=[col])[col]
    except KeyError:
        return f"the training set {where} has no column {col} (columns.timestamp)"
    except FileNotFoundError:
        return f"the training set {where} does not exist"
    except Exception as err:  # noqa: BLE001 - a bad file means "no profile", never a failed load
        return f"the training set {where} cannot be read: {type(err).__name__}: {err}"
    return completeness.TrafficProfile.from_timestamps(stamps, spec.tz)


# ----- checks ---------------------------------------------------------------------------------


def stage_parameters(spec: ModelSpec, ds: str, store) -> dict:
    """Values the suites reference as {"$PARAMETER": ...}: known only at run time."""
    import pandas as pd

    counts = store.trailing_row_counts(spec.name, ds, n=7)
    median = float(pd.Series(counts).median()) if counts else 0.0
    # min_rows is the partial-day rule (issue 14): partial_fraction of the day's expected rows
    # (the trailing median, or on a model's first days its time-of-day estimate), so the row
    # count check fails on exactly the days judged partial; not judged: the trailing median.
    part = store.partition(spec.name, ds)
    judged = (part.partial if part is not None else None) or {}
    expected = judged.get("expected") if judged.get("partial") is not None else None
    fraction = spec.completeness.partial_fraction
    start, end = day_bounds(spec, ds)
    # Timestamps are compared as naive UTC, which is how batches store them.
    start_utc = start.astimezone(timezone.utc).replace(tzinfo=None)
    end_utc = end.astimezone(timezone.utc).replace(tzinfo=None)
    return {
        # An empty day is always a finding, even before there is history to compare with.
        # ceil: "rows < fraction x expected" and "rows >= min_rows" part at the same row
        "min_rows": max(1, math.ceil(fraction * (median if expected is None else expected))),
        "row_count_median_7d": median,
        "day_start": pd.Timestamp(start_utc),
        "day_end": pd.Timestamp(end_utc),
        "day_start_epoch": start.timestamp(),
        "day_end_epoch": end.timestamp(),
    }


def check(spec: ModelSpec, ds: str, stage: str, store, loaded: dict | None = None,
          resolver=None) -> dict:
    """Run one stage's suite on the staged batch; failed expectations are stored findings.

    The ingestion suite of a PostgreSQL table runs in the database instead (push-down);
    `resolver` resolves an Airflow connection id for it, as in `load`.
    """
    import pandas as pd

    from watchkeeper import quality
    from watchkeeper.store import ExpectationRecord, StageRecord
    from watchkeeper.validation_page import render_validation_page

    suite_file = spec.suite_path(stage)
    if suite_file is None:
        store.write_stage(spec.name, ds, StageRecord(stage=stage, success=True, evaluated=0,
                                                     passed=0, row_count=None,
                                                     error="no suite configured"), [])
        return {"stage": stage, "skipped": "no suite configured"}
    path = batch_path(spec.name, ds)
    status = (loaded or {}).get("status")
    if status in ("missing", "unreadable") or not path.exists():
        reason = (loaded or {}).get("message") or "no batch staged for this day"
        store.write_stage(spec.name, ds, StageRecord(stage=stage, success=False, evaluated=0,
                                                     passed=0, row_count=None,
                                                     error=f"not run: {reason}"), [])
        return {"stage": stage, "skipped": reason}

    try:
        suite = quality.load_suite(suite_file)
    except quality.SuiteConfigError as err:
        _record_config_error(spec, ds, stage, store, str(err))
        raise ConfigurationError(str(err)) from None
    params = stage_parameters(spec, ds, store)
    try:
        # ---- push-down (issue 8): a SQL table's ingestion suite runs in the database ----
        result, engine = (_ingestion_in_database(spec, ds, suite, params, resolver)
                          if stage == "ingestion" else (None, "pandas"))
        # ---- end push-down ----
        if result is None:
            result = quality.run_suite(pd.read_parquet(path), suite, stage=stage,
                                       parameters=params, pii_columns=spec.pii_columns)
    except quality.SuiteConfigError as err:
        _record_config_error(spec, ds, stage, store, str(err))
        raise ConfigurationError(str(err)) from None

    page = paths.day_report_dir(spec.name, ds) / f"validation-{stage}.html"
    render_validation_page(result, model=spec.name, ds=ds, suite_name=suite_file.name, path=page)
    outcomes = [
        ExpectationRecord(
            expectation_id=o.expectation_id,
            expectation_type=o.expectation_type,
            column=o.column,
            success=o.success,
            observed=o.observed,
            unexpected_count=o.unexpected_count,
            unexpected_share=o.unexpected_share,
            element_count=o.element_count,
            details=o.details,
        )
        for o in result.results
    ]
    store.write_stage(
        spec.name,
        ds,
        StageRecord(stage=stage, success=result.success, evaluated=result.evaluated,
                    passed=result.passed, row_count=result.row_count, error=None,
                    report_path=str(page.relative_to(paths.reports_dir()))),
        outcomes,
    )
    failed = [o for o in result.results if not o.success]
    return {
        "stage": stage,
        "success": result.success,
        "evaluated": result.evaluated,
        "passed": result.passed,
        "failed": [{"expectation": o.expectation_type, "column": o.column} for o in failed],
        "engine": engine,
    }


# ---- push-down (issue 8) ---------------------------------------------------------------------


def _ingestion_in_database(spec: ModelSpec, ds: str, suite, params: dict, resolver):
    """(StageResult, "database") when the day can be validated in the database, else
    (None, "pandas: <why not>") and the caller validates the staged batch.

    A database error while validating raises pushdown.SourceUnavailable: the task fails and
    Airflow retries it; nothing is recorded as a finding.
    """
    from watchkeeper import pushdown
    from watchkeeper.spec import SqlTableSource

    if not isinstance(spec.source, SqlTableSource):
        return None, "pandas"
    try:
        return pushdown.check_in_database(spec, ds, suite, parameters=params,
                                          resolver=resolver), "database"
    except pushdown.Unsupported as err:
        log.info("%s", err)
        return None, f"pandas: {err.reason}"


# ---- end push-down ---------------------------------------------------------------------------


def _record_config_error(spec, ds, stage, store, message: str) -> None:
    from watchkeeper.store import StageRecord

    store.write_stage(spec.name, ds, StageRecord(stage=stage, success=False, evaluated=0,
                                                 passed=0, row_count=None,
                                                 error=f"configuration error: {message}"), [])


# ----- SLIs -----------------------------------------------------------------------------------


def record_slis(spec: ModelSpec, ds: str, store) -> dict:
    """Data quality (ratio of expectation results passing) and freshness (a daily timeslice)."""
    from watchkeeper.store import SliRecord

    stages = [s for s in store.stage_results(spec.name) if s.ds == ds]
    evaluated = sum(s.evaluated or 0 for s in stages)
    passed = sum(s.passed or 0 for s in stages)
    dq_obj = _objective(spec, "data_quality")
    dq_value = passed / evaluated if evaluated else None
    part = next((p for p in store.partitions(spec.name) if p.ds == ds), None)
    if part is None:
        fresh_good = None
    elif part.status in ("late", "missing", "unreadable"):
        fresh_good = False
    elif part.lateness_hours is not None or spec.landing.kind == "none":
        fresh_good = True
    else:
        fresh_good = None  # present, but nobody can say when it landed
    records = _analysis_slis(spec, ds, store) + [
        SliRecord(
            ds=ds,
            sli="data_quality",
            value=dq_value,
            good=None if dq_value is None or dq_obj is None else dq_value >= dq_obj,
            good_events=float(passed) if evaluated else None,
            total_events=float(evaluated) if evaluated else None,
            provisional=False,
            details={"stages": {s.stage: {"passed": s.passed, "evaluated": s.evaluated}
                                for s in stages}},
        ),
        SliRecord(
            ds=ds,
            sli="freshness",
            value=None if part is None else part.lateness_hours,
            good=fresh_good,
            good_events=None if fresh_good is None else float(fresh_good),
            total_events=None if fresh_good is None else 1.0,
            provisional=False,
            details={"status": None if part is None else part.status,
                     "message": None if part is None else part.message},
        ),
    ]
    summary = {r.sli: {"value": r.value, "good": r.good} for r in records}
    # One transaction (chaos suite, a task killed mid-write): the day's SLIs must never be stored
    # without the budget snapshots evaluated from them, which are all the gate reads.
    with store.atomic():
        store.write_slis(spec.name, ds, records)
        summary["budgets"] = evaluate_budgets(spec, ds, store)
    return summary


def _analysis_slis(spec: ModelSpec, ds: str, store) -> list:
    """Daily timeslices from the analysis stages: prediction stability (no prediction monitor
    alerted) and feature drift (no feature drifted against the window or the training set)."""
    from watchkeeper.analysis import DATASET
    from watchkeeper.completeness import is_partial
    from watchkeeper.store import SliRecord

    day = {family: store.metrics(spec.name, family, since=ds, until=ds)
           for family in ("prediction", "drift", "skew")}

    def dataset(family):
        return next((m.payload for m in day[family] if m.subject == DATASET), None)

    def drifted(family):
        # What made the day bad, for budgets that excuse accepted change (issue 14): each drifted
        # row's feature, segment and the reference it was measured against.
        return [{"feature": m.payload.get("feature"), "segment": m.payload.get("segment") or None,
                 "reference": m.payload.get("reference")}
                for m in day[family] if m.subject != DATASET and m.payload.get("drifted")]

    out = []
    # A partial day (issue 14) is judged as incomplete data, not as stable or unstable: both
    # timeslices are stored without a verdict, so it counts in neither good nor total.
    part = store.partition(spec.name, ds)
    if part is not None and is_partial(part.partial):
        measured_on = {"prediction_stability": dataset("prediction"),
                       "feature_drift": dataset("drift") or dataset("skew")}
        return [SliRecord(ds=ds, sli=sli, value=None, good=None,
                          details={"partial": part.partial["reason"]})
                for sli, payload in measured_on.items() if payload is not None]
    pred = dataset("prediction")
    if pred is not None and pred.get("not_alerted"):
        # a seasonal model's first days: no baseline of its own output yet (analysis.
        # prediction_reference), so the day is neither stable nor unstable
        out.append(SliRecord(ds=ds, sli="prediction_stability", value=None, good=None,
                             details={"not_alerted": pred["not_alerted"]}))
    elif pred is not None and "not_run" not in pred:
        good = not pred.get("alert")
        out.append(SliRecord(ds=ds, sli="prediction_stability", value=0.0 if good else 1.0, good=good,
                             good_events=float(good), total_events=1.0,
                             details={"problems": pred.get("problems", [])[:5]}))
    drift_d, skew_d = dataset("drift"), dataset("skew")
    measured = [d for d in (drift_d, skew_d) if d is not None and "share" in d]
    if measured:
        bad = any(d.get("any_drift") for d in measured)
        out.append(SliRecord(ds=ds, sli="feature_drift",
                             value=max((d.get("share") or 0.0) for d in measured), good=not bad,
                             good_events=float(not bad), total_events=1.0,
                             details={"drift": (drift_d or {}).get("any_drift"),
                                      "skew": (skew_d or {}).get("any_drift"),
                                      "drifted": {"drift": drifted("drift"),
                                                  "skew": drifted("skew")}}))
    return out


def evaluate_budgets(spec: ModelSpec, ds: str, store) -> dict:
    """After every SLI write: one budget snapshot per SLO, as known on ds."""
    from watchkeeper import budgets

    return {s.slo: {"remaining": s.budget_remaining, "alert": s.alert}
            for s in budgets.evaluate_day(spec, ds, store)}


def _objective(spec: ModelSpec, sli: str) -> float | None:
    for s in spec.slos:
        if s.sli == sli:
            return s.objective
    return None
