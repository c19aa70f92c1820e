"""The monitor DAG's analysis steps after the data checks: drift, skew, predictions, coverage.

Shell around the pure `drift`, `predictions` and `coverage` modules: picks the references,
caches what can be prepared once (the training set's prepared references live under
WATCHKEEPER_HOME/state/<model>/, keyed by the training file and the spec), stores the numbers
(wk_metric families 'drift', 'skew', 'prediction', 'coverage') and renders Evidently's pages.

The alerting verdict stored as `drifted` needs both statistical and practical significance:
the calibrated, multiplicity-corrected test of `watchkeeper.drift` (noise at this batch size is
ruled out) AND Evidently's own threshold for the method (the shift is large enough to matter).
On large daily batches a bootstrap test alone detects every slow, expected trend in a 7-day
window; on small ones Evidently's fixed threshold alone fires on noise. Both verdicts and the
statistical one are kept in the payload.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

from watchkeeper import paths
from watchkeeper.spec import ModelSpec

log = logging.getLogger(__name__)

DATASET = "__dataset__"
DATASET_DRIFT_SHARE = 0.5
DRIFT_BOOTSTRAP = 200  # the drift window is re-prepared daily: the core's minimum (POT tail fit)


EVIDENTLY_PAGE_MODES = ("weekly", "on_finding", "always")


def _render_pages(any_drift: bool, ds: str) -> bool:
    """Whether today gets Evidently's drift and skew pages (seconds and ~0.3 MB each).

    WATCHKEEPER_EVIDENTLY_PAGES: `weekly` (default) renders them on days with a finding and on
    Mondays, so a reviewer always has a healthy page within a week to compare with and a year
    stays near 30 MB instead of ~200; `on_finding` only on days with a finding (the demo's and
    the backtest's setting, for speed); `always` every day."""
    mode = os.environ.get("WATCHKEEPER_EVIDENTLY_PAGES", "weekly")
    if mode not in EVIDENTLY_PAGE_MODES:
        raise ValueError(f"WATCHKEEPER_EVIDENTLY_PAGES={mode!r}: expected one of "
                         f"{', '.join(EVIDENTLY_PAGE_MODES)}")
    if mode == "always" or any_drift:
        return True
    return mode == "weekly" and date.fromisoformat(ds).weekday() == 0


def _state(model: str) -> Path:
    p = paths.home() / "state" / model
    p.mkdir(parents=True, exist_ok=True)
    return p


def _feature_specs(spec: ModelSpec):
    from watchkeeper import drift

    return [drift.FeatureSpec(f.name, f.kind, f.drift_method, f.drift_threshold) for f in spec.features]


def _training(spec: ModelSpec):
    from watchkeeper import sources

    path = spec.resolve_path(spec.reference.training)
    return sources.read_file(path).frame, path


def reference_unavailable(spec: ModelSpec, err) -> str:
    """Why the analyses against the training set did not run (chaos suite: a missing reference
    dataset). Stored as the day's `not_run` so the data checks and SLIs of the day still run and
    the reader sees which file and which spec field; retrying the task could not bring it back."""
    return (f"reference dataset unavailable: {err.location}: {err.reason} (reference.training "
            f"in {Path(spec.spec_path).name}); restore the file, then re-run the day")


def _write_atomic(path: Path, text: str) -> None:
    """A cache file appears whole or not at all: a task killed mid-write must not leave a
    truncated file that every later run would fail to read."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _cache_key(spec: ModelSpec, path: Path, what: str) -> str:
    st = path.stat()
    raw = json.dumps([what, str(path), st.st_mtime_ns, st.st_size,
                      [f.model_dump() for f in spec.features], spec.segments,
                      spec.prediction.model_dump()], sort_keys=True)
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


def _subject(row) -> str:
    if not row.get("segment"):
        return row["feature"]
    return row["feature"] + "|" + ",".join(f"{k}={v}" for k, v in row["segment"].items())


def _batch(spec: ModelSpec, ds: str):
    import pandas as pd

    from watchkeeper import monitor

    p = monitor.batch_path(spec.name, ds)
    return pd.read_parquet(p) if p.exists() else None


# ----- partial days (issue 14) -------------------------------------------------------------------


def partial_reason(spec: ModelSpec, ds: str, store) -> str | None:
    """The reason when load judged the day partial, else None. A partial day is a time-biased
    sample: its comparisons are computed and stored with their verdicts kept as `would_alert`,
    but nothing alerts on it (`suppressed` says why) and it is no reference for later days."""
    from watchkeeper.completeness import is_partial

    part = store.partition(spec.name, ds)
    record = part.partial if part is not None else None
    return record["reason"] if is_partial(record) else None


def _suppress(entry: dict, key: str, reason: str) -> None:
    entry["would_alert"] = bool(entry.get(key))
    entry[key] = False
    entry["suppressed"] = reason


# ----- drift and skew ---------------------------------------------------------------------------


def skew_reference(spec: ModelSpec, rows_hint: int):
    from watchkeeper import drift

    """The prepared training-set reference (cached on disk), the training frame (for the page),
    and where the cache lives (the caller saves nulls computed for new batch sizes there)."""
    train, path = _training(spec)
    cached = _state(spec.name) / f"skew-{_cache_key(spec, path, 'skew')}.pkl"
    if cached.exists():
        try:
            return drift.PreparedReference.load(cached), train, cached
        except drift.PreparedReferenceError as err:
            log.warning("re-preparing the skew reference: %s", err)
    ref = drift.prepare_reference(train, _feature_specs(spec), name=f"{spec.name}-training",
                                  segments=spec.segments, typical_batch_rows=rows_hint)
    return ref, train, cached


def clean_window(spec: ModelSpec, ds: str, store, version: str | None) -> list[str]:
    """The trailing clean days before ds: ingestion passed, no dataset-level drift (half the
    features or more drifted), the same model version. Looks back at most four windows' worth of
    days."""
    stages = {(s.ds, s.stage): s for s in store.stage_results(spec.name)}
    drift_days = {m.ds: m.payload for m in store.metrics(spec.name, "drift", as_known_on=ds)
                  if m.subject == DATASET}
    versions = {m.ds: m.payload.get("model_version") for m in store.metrics(spec.name, "drift",
                as_known_on=ds) if m.subject == DATASET}
    from watchkeeper.completeness import is_partial

    want = spec.drift.reference_days
    partial = {p.ds for p in store.partitions(spec.name) if is_partial(p.partial)}
    out: list[str] = []
    d = date.fromisoformat(ds)
    for i in range(1, 4 * want + 1):
        day = (d - timedelta(days=i)).isoformat()
        ing = stages.get((day, "ingestion"))
        if ing is None or not ing.success:
            continue
        if drift_days.get(day, {}).get("dataset_drift"):
            continue
        if day in partial:
            continue  # a partial day is a time-biased sample of its day, not a reference
        if version is not None and versions.get(day) not in (None, version):
            break  # the window restarts when the model version changes
        out.append(day)
        if len(out) == want:
            break
    return sorted(out)


def _version(spec: ModelSpec, frame) -> str | None:
    col = spec.columns.model_version
    if not col or col not in frame.columns or frame[col].dropna().empty:
        return None
    return str(frame[col].mode().iloc[0])


@dataclass
class DriftPart:
    """One feature group's comparison for a day: what a mapped drift/skew task leaves in shared
    storage for the merging task (never XCom: a result holds every row and segment)."""

    kind: str
    features: list[str] | None
    result: object  # drift.DriftResult
    methods: dict
    thresholds: dict
    window: list[str] | None
    version: str | None
    # issue 14: which reference each row (subject) was measured against, rows stored but not
    # alerted (subject -> why), the group's reference plans and the planner's notes
    row_references: dict = field(default_factory=dict)
    not_alerted: dict = field(default_factory=dict)
    references: list = field(default_factory=list)
    notes: list = field(default_factory=list)


# ----- references (issue 14: expected change and seasonal features) ----------------------------


def staged_days(spec: ModelSpec, before: str) -> list[str]:
    """Days before `before` whose batch is staged (WATCHKEEPER_HOME/work/<model>/<day>/)."""
    root = paths.home() / "work" / spec.name
    if not root.is_dir():
        return []
    out = []
    for p in root.iterdir():
        if p.name >= before or not (p / "batch.parquet").exists():
            continue
        try:
            date.fromisoformat(p.name)
        except ValueError:
            continue
        out.append(p.name)
    return sorted(out)


def warmup_days(spec: ModelSpec) -> int:
    """The trailing days a seasonal model's drift and predictions need before they are alerted:
    enough to learn the day-to-day spread (drift.MIN_SPREAD_DAYS), or the whole window when
    drift.reference_days is shorter (then the spec chose day-against-day comparisons)."""
    from watchkeeper import drift

    return min(drift.MIN_SPREAD_DAYS, spec.drift.reference_days)


def pick_references(spec: ModelSpec, ds: str, store, kind: str, version: str | None):
    """Each feature's reference for the day, planned for every feature of the spec (the mapped
    groups restrict it): (acceptance.ReferencePlans, the trailing clean window or None).

    Accepted features are measured against their acceptance's window, seasonal features' drift
    against the previous cycle, the rest against the usual reference (see watchkeeper.acceptance).
    """
    from watchkeeper import acceptance, gatekeeper

    window = clean_window(spec, ds, store, version) if kind == "drift" else None
    infos = [acceptance.FeatureInfo(f.name, f.season_days) for f in spec.features]
    plans = acceptance.plan_references(
        kind, ds, infos, gatekeeper.acceptances(store, spec.name), staged_days=staged_days(spec, ds),
        clean_window=window, reference_days=spec.drift.reference_days,
        min_window_days=warmup_days(spec))
    return plans, window


def _frames(spec: ModelSpec, days) -> "object":
    import pandas as pd

    frames = [f for d in days or () if (f := _batch(spec, d)) is not None]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _day_frames(spec: ModelSpec, days):
    """The staged batches of `days`, concatenated, and the day of each row: a reference made of
    whole days measures their own day-to-day spread (watchkeeper.drift, "Day-to-day spread")."""
    import numpy as np
    import pandas as pd

    pairs = [(d, f) for d in days or () if (f := _batch(spec, d)) is not None]
    if not pairs:
        return pd.DataFrame(), None
    frame = pd.concat([f for _d, f in pairs], ignore_index=True)
    return frame, np.repeat([d for d, _f in pairs], [len(f) for _d, f in pairs])


def _accepted_cache(spec: ModelSpec, plan) -> Path:
    """Where an acceptance's prepared window lives: keyed by the acceptance, the spec's features
    and segments, and the staged batches it was built from (a re-staged day re-prepares it)."""
    from watchkeeper import monitor

    files = []
    for d in plan.days:
        p = monitor.batch_path(spec.name, d)
        st = p.stat() if p.exists() else None
        files.append([d, st.st_mtime_ns if st else None, st.st_size if st else None])
    raw = json.dumps([plan.acceptance, list(plan.features), files,
                      [f.model_dump() for f in spec.features], spec.segments], sort_keys=True)
    key = hashlib.sha256(raw.encode()).hexdigest()[:16]
    return _state(spec.name) / f"accepted-{plan.acceptance}-{key}.pkl"


def _reference_for(spec: ModelSpec, ds: str, plan, fspecs, rows_hint: int):
    """The prepared reference of one plan, and where to save it after the compare (cached
    references keep the nulls computed for new batch sizes), or None."""
    from watchkeeper import drift

    if plan.label == "training":
        ref, _train, cache = skew_reference(spec, rows_hint)
        return ref, cache
    if plan.acceptance is not None:  # prepared once per acceptance and window, then cached
        cache = _accepted_cache(spec, plan)
        if cache.exists():
            try:
                return drift.PreparedReference.load(cache), cache
            except drift.PreparedReferenceError as err:
                log.warning("re-preparing the accepted window: %s", err)
        frame, days = _day_frames(spec, plan.days)
        ref = drift.prepare_reference(frame, fspecs, name=f"{spec.name}-{plan.label}",
                                      segments=spec.segments, typical_batch_rows=rows_hint,
                                      days=days)
        return ref, cache
    name = f"{spec.name}-{ds}-window" if plan.label == "window" else \
        f"{spec.name}-{ds}-seasonal-{plan.period}d"
    frame, days = _day_frames(spec, plan.days)
    ref = drift.prepare_reference(frame, fspecs, name=name,
                                  segments=spec.segments if len(frame.columns) else (),
                                  typical_batch_rows=rows_hint, n_bootstrap=DRIFT_BOOTSTRAP,
                                  days=days)
    return ref, None


def _row_subject(feature: str, segment) -> str:
    from watchkeeper.drift import _jsonable

    return _subject({"feature": feature, "segment": _jsonable(segment) if segment else None})


def _in_segment(row, feature: str, col: str, value: str) -> bool:
    return row.feature == feature and bool(row.segment) and len(row.segment) == 1 and \
        col in row.segment and str(row.segment[col]) == value


def parts_dir(model: str, ds: str, kind: str) -> Path:
    return paths.home() / "state" / model / "parts" / ds / kind


def _group_name(index: int) -> str:
    return f"group-{index:02d}.pkl"


def compare_part(spec: ModelSpec, ds: str, store, kind: str,
                 features: list[str] | None = None) -> DriftPart | dict:
    """Compare the day's batch with its references for one feature group (all features when
    None): each feature against the reference `pick_references` chose for it, the comparisons of
    the group joined under one multiplicity correction.

    Returns the part, or the dataset payload to store when there is nothing to compare."""
    from dataclasses import replace

    from watchkeeper import drift, sources

    batch = _batch(spec, ds)
    if batch is None:
        return {"not_run": "no batch staged for this day"}
    version = _version(spec, batch)
    day_plans, window = pick_references(spec, ds, store, kind, version)
    if kind == "drift" and not window and all(p.usual for p in day_plans.plans):
        return {"reference_empty": True, "model_version": version,
                "note": "no clean day in the trailing window yet: nothing to compare with"}
    plans = day_plans.restrict(features)
    by_name = {f.name: f for f in _feature_specs(spec)}
    claimed = plans.claimed_segments()
    results, saves, notes, filtered = [], [], list(plans.notes), False
    methods: dict = {}
    thresholds: dict = {}
    for plan in plans.plans:
        try:
            ref, save_to = _reference_for(spec, ds, plan, [by_name[n] for n in plan.features],
                                          len(batch))
        except sources.SourceError as err:  # (chaos suite) reported, not a crash: see below
            return {"not_run": reference_unavailable(spec, err)}
        res = drift.compare(ref, batch, kind=kind, segments=spec.segments,
                            min_segment_rows=spec.drift.min_segment_rows,
                            daily_false_alarm_rate=spec.drift.daily_false_alarm_rate,
                            features=list(plan.features))
        if save_to is not None:
            saves.append((ref, save_to))
        if plan.segment is None:  # each feature's method as settled by the reference it used
            methods.update({k: v for k, v in ref.methods.items() if k in plan.features})
            thresholds.update({k: v for k, v in ref.thresholds.items() if k in plan.features})
        if plan.segment is not None:  # an accepted segment: only its own row comes from here
            (feature,) = plan.features
            keep = tuple(r for r in res.rows if _in_segment(r, feature, *plan.segment))
            if not keep:
                notes.append(f"{feature} [{plan.segment[0]}={plan.segment[1]}]: accepted "
                             f"({plan.acceptance}) but the segment has too few rows to be "
                             f"compared on its own (drift.min_segment_rows "
                             f"{spec.drift.min_segment_rows})")
            res, filtered = replace(res, rows=keep, problems=()), True
        elif claimed:
            keep = tuple(r for r in res.rows
                         if not any(_in_segment(r, f, c, v) for f, c, v in claimed))
            filtered = filtered or len(keep) != len(res.rows)
            res = replace(res, rows=keep)
        results.append(res)
    result = results[0] if len(results) == 1 and not filtered else \
        drift.merge_results(results, mixed_references=True)
    for ref, target in saves:
        try:  # keep the nulls computed for this batch size for the next days
            ref.save(target)
        except drift.DriftError as err:
            log.warning("could not cache a prepared reference: %s", err)
    return DriftPart(kind=kind, features=features, result=result,
                     methods=methods, thresholds=thresholds, window=window, version=version,
                     row_references={_row_subject(r.feature, r.segment): plans.label_of(r.feature, r.segment)
                                     for r in result.rows},
                     not_alerted={_row_subject(r.feature, r.segment): why for r in result.rows
                                  if (why := plans.not_alerted_reason(r.feature, r.segment))},
                     references=[p.to_dict() for p in plans.plans],
                     notes=notes)


def analyze_drift_group(spec: ModelSpec, ds: str, store, kind: str, index: int,
                        features: list[str]) -> dict:
    """A mapped task's step: one feature group's part, written atomically to shared storage."""
    import pickle

    part = compare_part(spec, ds, store, kind, features)
    target = parts_dir(spec.name, ds, kind) / _group_name(index)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        pickle.dump({"features": features, "part": part}, f, protocol=pickle.HIGHEST_PROTOCOL)
    os.replace(tmp, target)
    if isinstance(part, DriftPart):
        rows = part.result.rows
        return {"kind": kind, "group": index, "features": features, "rows": len(rows),
                "drifted_statistical": sorted({r.feature for r in rows if r.drifted})}
    return {"kind": kind, "group": index, "features": features, **part}


class DriftPartsMissing(RuntimeError):
    pass


def merge_drift_groups(spec: ModelSpec, ds: str, store, kind: str) -> dict:
    """The merging task: join the groups' parts of this day (the spec's current grouping) into
    one result, with the multiplicity correction over all of them, then store it."""
    import pickle

    groups = spec.drift_groups
    folder = parts_dir(spec.name, ds, kind)
    parts, missing = [], []
    for i, feats in enumerate(groups):
        p = folder / _group_name(i)
        try:
            with open(p, "rb") as f:
                saved = pickle.load(f)
        except (OSError, pickle.UnpicklingError, EOFError) as err:
            missing.append(f"{p.name} ({type(err).__name__})")
            continue
        if saved.get("features") != feats:
            missing.append(f"{p.name} (written for features {saved.get('features')}, "
                           f"the spec now groups {feats})")
            continue
        parts.append(saved["part"])
    if missing:
        raise DriftPartsMissing(
            f"{spec.name} {ds} {kind}: feature-group results missing or stale in {folder}: "
            f"{', '.join(missing)}; re-run the {kind}_features tasks of this day")
    return finish_drift(spec, ds, store, kind, parts)


def analyze_drift(spec: ModelSpec, ds: str, store, kind: str, features: list[str] | None = None) -> dict:
    """Drift (against the trailing clean window) or skew (against the training set), all
    features in one process: what the mapped tasks and their merge compute together."""
    return finish_drift(spec, ds, store, kind, [compare_part(spec, ds, store, kind, features)])


def finish_drift(spec: ModelSpec, ds: str, store, kind: str, parts: list) -> dict:
    import pandas as pd

    from watchkeeper import drift
    from watchkeeper.store import MetricRecord

    empty = [p for p in parts if not isinstance(p, DriftPart)]
    if empty:  # no batch, or no clean window: the same for every group of the day
        _store_dataset(spec, ds, store, kind, empty[0])
        return {"kind": kind, **empty[0]}
    # Parts pickled before issue 14 carry no reference fields: they used the usual reference.
    refs = [ref for p in parts for ref in getattr(p, "references", [])]
    mixed = any(ref["label"] not in ("training", "window") for ref in refs)
    result = parts[0].result if len(parts) == 1 else drift.merge_results(
        [p.result for p in parts], mixed_references=mixed)
    window, version = parts[0].window, parts[0].version
    methods = {k: v for p in parts for k, v in p.methods.items()}
    thresholds = {k: v for p in parts for k, v in p.thresholds.items()}
    usual = "training" if kind == "skew" else "window"
    row_refs = {k: v for p in parts for k, v in getattr(p, "row_references", {}).items()}
    quiet = {k: v for p in parts for k, v in getattr(p, "not_alerted", {}).items()}
    d = result.to_dict()
    suppressed = partial_reason(spec, ds, store)
    rows = []
    for r in d["rows"]:
        r["drifted_statistical"] = r["drifted"]
        r["drifted"] = bool(r["drifted"]) and bool(r["evidently_drifted"])
        r["reference"] = row_refs.get(_subject(r), usual)
        if (why := quiet.get(_subject(r))) is not None:
            # measured and stored, never alerted (a seasonal feature's skew, an accepted
            # feature whose window has no day yet): the verdicts above stay for the reader
            r["not_alerted"], r["drifted"] = why, False
        if suppressed:
            _suppress(r, "drifted", suppressed)
        rows.append(r)
    whole = [r for r in rows if not r["segment"] and r["score"] is not None]
    share = (sum(r["drifted"] for r in whole) / len(whole)) if whole else None
    dataset = {
        "share": share,
        # Dataset-level drift, Evidently's rule on our verdicts: half the features or more moved.
        # It decides which days stay in the drift window; a slow trend in one feature does not
        # freeze the window (skew carries that), a day that moved everywhere is left out.
        "dataset_drift": share is not None and share >= DATASET_DRIFT_SHARE,
        "any_drift": any(r["drifted"] for r in rows),
        "evidently_share": d["evidently_share"],
        "evidently_dataset_drift": d["evidently_dataset_drift"],
        "problems": d["problems"],
        "notes": d["notes"],
        "n_current": d["n_current"],
        "n_reference": d["n_reference"],
        "reference_days": window,
        "model_version": version,
        "daily_false_alarm_rate": d["daily_false_alarm_rate"],
        "correction": d["correction"],
        "feature_groups": len(parts),
    }
    if suppressed:
        dataset.update(partial=True, suppressed=suppressed)
        dataset["would_alert"] = sorted({_subject(r) for r in rows if r["would_alert"]})
    if mixed:  # issue 14: the references other than the usual one, and why they were chosen
        seen: dict[tuple, dict] = {}
        for ref in refs:
            if ref["label"] in ("training", "window"):
                continue
            key = (ref["label"], json.dumps(ref["segment"], sort_keys=True), tuple(ref["days"] or ()))
            if key in seen:
                seen[key]["features"] = sorted(set(seen[key]["features"]) | set(ref["features"]))
            else:
                seen[key] = dict(ref)
        dataset["references"] = list(seen.values())
    extra = list(dict.fromkeys(n for p in parts for n in getattr(p, "notes", [])))
    if extra:
        dataset["notes"] = list(d["notes"]) + extra
    page = paths.day_report_dir(spec.name, ds) / f"{kind}.html"
    try:
        if not _render_pages(dataset["any_drift"], ds):
            raise _Skipped()
        from watchkeeper import evidently_html

        batch = _batch(spec, ds)
        if kind == "skew":
            ref_frame, _path = _training(spec)
        else:
            ref_frame = pd.concat([f for d in window if (f := _batch(spec, d)) is not None],
                                  ignore_index=True)
        # Evidently's page plots value distributions: columns marked pii stay out of it (their
        # drift numbers are still stored and shown without values).
        pii = spec.pii_columns
        shown = [f for f in _feature_specs(spec) if f.name not in pii]
        if pii:
            ref_frame = ref_frame.drop(columns=[c for c in pii if c in ref_frame.columns])
            batch = batch.drop(columns=[c for c in pii if c in batch.columns])
            methods = {k: v for k, v in methods.items() if k not in pii}
            thresholds = {k: v for k, v in thresholds.items() if k not in pii}
        evidently_html.render_report(
            ref_frame, batch, shown, methods, page,
            title=f"{spec.name} {ds}: {kind} ({'trailing clean days ' + ', '.join(window) if window else 'training set'})"
                  + ("; accepted and seasonal features use their own references (see the stored "
                     "numbers)" if mixed else ""),
            thresholds=thresholds)
        dataset["report"] = str(page.relative_to(paths.reports_dir()))
    except _Skipped:
        page.unlink(missing_ok=True)
    except Exception as err:  # noqa: BLE001 - the numbers are stored even when the page fails
        dataset["report_error"] = f"{type(err).__name__}: {err}"
        log.warning("%s %s %s report not rendered: %s", spec.name, ds, kind, err)
    records = [MetricRecord(subject=_subject(r), value=r["score"], payload=r) for r in rows]
    records.append(MetricRecord(subject=DATASET, value=share, payload=dataset))
    store.write_metrics(spec.name, ds, kind, ds, records)
    top = sorted((r for r in rows if r["drifted"]), key=lambda r: -(r["score"] or 0))[:5]
    return {"kind": kind, "share": share, "dataset_drift": dataset["dataset_drift"],
            "any_drift": dataset["any_drift"],
            "drifted": [_subject(r) for r in top]}


class _Skipped(Exception):
    pass


def _store_dataset(spec, ds, store, kind, payload) -> None:
    from watchkeeper.store import MetricRecord

    store.write_metrics(spec.name, ds, kind, ds, [MetricRecord(subject=DATASET, value=None, payload=payload)])


# ----- predictions and coverage -----------------------------------------------------------------


def _baseline_columns(spec: ModelSpec) -> dict:
    return dict(task=spec.task, score_col=spec.prediction.score or spec.prediction.label,
                label_col=spec.prediction.label if spec.task != "regression" else None,
                item_col=spec.prediction.item, query_col=spec.prediction.query_group,
                decision_threshold=spec.prediction.threshold)


def _prediction_baseline(spec: ModelSpec):
    from watchkeeper import predictions

    train, path = _training(spec)
    cached = _state(spec.name) / f"prediction-baseline-{_cache_key(spec, path, 'pred')}.json"
    if cached.exists():
        return predictions.PredictionBaseline.from_dict(json.loads(cached.read_text()))
    b = predictions.build_prediction_baseline(train, **_baseline_columns(spec))
    _write_atomic(cached, json.dumps(b.to_dict()))
    return b


def prediction_reference(spec: ModelSpec, ds: str, store, batch):
    """The baseline the day's predictions are judged against: (baseline, what it is, why the
    day is not alerted or None).

    A model with seasonal inputs predicts seasonally too, so a training set that spans every
    season is no yardstick for one day's output: its predictions are compared, like its seasonal
    features' drift, with the served predictions of the same days of the previous cycle when at
    least half of them are staged, else with the trailing clean window, one frame per day (the
    baseline learns the output's own day-to-day spread). Until drift.MIN_SPREAD_DAYS such days
    exist (warmup_days) the training baseline is used and the monitors are reported, not
    alerted."""
    from watchkeeper import acceptance, predictions

    seasonal = [f for f in spec.features if f.season_days]
    if not seasonal:
        return _prediction_baseline(spec), "training set", None
    period = max(f.season_days for f in seasonal)
    reference_days = spec.drift.reference_days
    need = warmup_days(spec)
    cycle, have, half = acceptance.previous_cycle_staged(ds, period, reference_days,
                                                         staged_days(spec, ds))
    candidates = []
    if cycle and len(have) >= half:  # the rule seasonal drift uses (acceptance.plan_references)
        candidates.append((have, f"previous cycle ({period} days)"))
    candidates.append((clean_window(spec, ds, store, _version(spec, batch)), "trailing clean window"))
    found = []
    for days, label in candidates:
        pairs = [(d, f) for d in days if (f := _batch(spec, d)) is not None and len(f)]
        if len(pairs) >= need:
            return predictions.build_prediction_baseline([f for _d, f in pairs],
                                                         **_baseline_columns(spec)), \
                f"{label} {pairs[0][0]}..{pairs[-1][0]}", None
        found.append(f"{len(pairs)} in the {label}")
    names = ", ".join(f.name for f in seasonal)
    return _prediction_baseline(spec), "training set", (
        f"seasonal inputs ({names}): days of served predictions: {', '.join(found)}, {need} "
        "needed; measured against the training set, not alerted")


def _coverage_reference(spec: ModelSpec):
    from watchkeeper import coverage

    train, path = _training(spec)
    cached = _state(spec.name) / f"coverage-{_cache_key(spec, path, 'cov')}.json"
    if cached.exists():
        return coverage.CoverageReference.from_dict(json.loads(cached.read_text()))
    ref = coverage.build_coverage_reference(train, categorical=spec.categorical, numerical=spec.numerical)
    _write_atomic(cached, json.dumps(ref.to_dict()))
    return ref


def analyze_predictions(spec: ModelSpec, ds: str, store) -> dict:
    """Prediction monitors against the training baseline, and feature coverage."""
    from watchkeeper import coverage, predictions, sources
    from watchkeeper.store import MetricRecord

    batch = _batch(spec, ds)
    if batch is None:
        for fam in ("prediction", "coverage"):
            _store_dataset(spec, ds, store, fam, {"not_run": "no batch staged for this day"})
        return {"not_run": "no batch staged for this day"}
    try:
        baseline, against, seasonal_quiet = prediction_reference(spec, ds, store, batch)
        cov_ref = _coverage_reference(spec)
    except sources.SourceError as err:  # (chaos suite) reported, not a crash: see below
        reason = reference_unavailable(spec, err)
        for fam in ("prediction", "coverage"):
            _store_dataset(spec, ds, store, fam, {"not_run": reason})
        return {"not_run": reason}
    # partial days (issue 14) are no previous day for stagnation: a few hours are not a day
    history = [m.payload["summary"] for m in store.metrics(spec.name, "prediction", as_known_on=ds)
               if m.subject == DATASET and m.ds < ds and m.payload.get("summary")
               and not m.payload.get("partial")]
    # coverage counts as one more monitor of the day's family
    n_monitors = len(predictions.planned_monitors(baseline)) + 1
    day_rate = spec.predictions.daily_false_alarm_rate
    rep = predictions.monitor_predictions(batch, baseline, history=history, ds=ds,
                                          alpha=day_rate / n_monitors).to_dict()
    suppressed = partial_reason(spec, ds, store)
    for m in rep["monitors"]:
        m["baseline_from"] = against
        if suppressed or seasonal_quiet:
            _suppress(m, "alert", suppressed or seasonal_quiet)
    records = [MetricRecord(subject=m["name"], value=m.get("value"), payload=m) for m in rep["monitors"]]
    day_payload = {
        "alert": any(m.get("alert") for m in rep["monitors"]), "summary": rep.get("summary"),
        "problems": rep.get("problems", []), "n_rows": rep.get("n_rows"), "baseline_from": against}
    if seasonal_quiet and not suppressed:
        day_payload["not_alerted"] = seasonal_quiet
    if suppressed:
        day_payload.update(partial=True, suppressed=suppressed,
                           would_alert=[m["name"] for m in rep["monitors"] if m["would_alert"]])
    records.append(MetricRecord(subject=DATASET, value=None, payload=day_payload))
    cov = coverage.check_coverage(batch, cov_ref, alpha=day_rate / n_monitors).to_dict()
    if suppressed:
        _suppress(cov, "alert", suppressed)
        cov["partial"] = True
        for item in [*cov.get("unseen_pairs", []), cov.get("multivariate") or {}]:
            if item:
                _suppress(item, "alert", suppressed)
    for pair in cov.get("unseen_pairs", []):  # the combination is named, a pii value never is
        pair["values"] = ["<pii hidden>" if c in spec.pii_columns else v
                          for c, v in zip(pair["columns"], pair["values"])]
    cov_records = [MetricRecord(subject=DATASET, value=(cov.get("multivariate") or {}).get("value"),
                                payload=cov)]
    with store.transaction() as conn:
        store.write_metrics(spec.name, ds, "prediction", ds, records, conn=conn)
        store.write_metrics(spec.name, ds, "coverage", ds, cov_records, conn=conn)
    return {"alerts": [m["name"] for m in rep["monitors"] if m.get("alert")],
            "coverage_alert": bool(cov.get("alert"))}
