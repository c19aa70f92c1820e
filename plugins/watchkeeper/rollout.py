"""Shadow and canary rollouts of a candidate model: the state of a rollout, the daily comparison
(the labels DAG's `compare` task) and the stage changes (the `<model>_rollout` DAG).

The shell around the pure `watchkeeper.compare`. State lives in the store as events:
- `rollout_decision` (subject `<candidate>@<stage>`, one per day): the comparison of that day
  with its evidence, written by the `compare` task;
- `rollout_stage` (subject `<candidate>`, at most one per day): a change of traffic, written by
  the rollout DAG: a promotion to the next stage, the end of the rollout, or a rollback with its
  steps. The stage in force on a prediction day is the newest stage event of an earlier day, so
  the labels DAG, the rollout DAG and the traffic router agree and a re-run changes nothing.

Pure helpers (`state_from_events`, `next_stage`, `rollback_steps`) take and return plain values.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from datetime import date, timedelta
from typing import Any

from watchkeeper.spec import CandidateSpec, ModelSpec

log = logging.getLogger(__name__)

DECISION_EVENT = "rollout_decision"
STAGE_EVENT = "rollout_stage"
ACTIVE, COMPLETE, ROLLED_BACK = "active", "complete", "rolled_back"


class RolloutError(ValueError):
    """A rollout question that cannot be answered (no candidate in the spec, ...); worded for
    the person who asked."""


# --------------------------------------------------------------------------------------------
# Pure: the state machine
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RolloutState:
    candidate: str
    stage: str | int  # the stage in force ("shadow" or a percentage), or the last one when ended
    since: str  # first prediction day of that stage
    status: str  # active | complete | rolled_back
    changes: tuple[dict, ...] = ()  # the stage events so far, oldest first

    @property
    def label(self) -> str:
        return stage_label(self.stage)

    @property
    def serving_percent(self) -> int:
        """The candidate's share of traffic now (0 in shadow and after a rollback)."""
        if self.status == ROLLED_BACK or self.stage == "shadow":
            return 0
        return int(self.stage)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "label": self.label, "serving_percent": self.serving_percent}


def stage_label(stage: str | int) -> str:
    return "shadow" if stage == "shadow" else f"{int(stage)}%"


def next_stage(stages: list, current: str | int) -> str | int | None:
    """The stage after `current`, or None when `current` is the last one."""
    i = stages.index(current)
    return stages[i + 1] if i + 1 < len(stages) else None


def rollback_steps(stages: list, current: str | int) -> list[int]:
    """Traffic shares a rollback passes through, ending at 0: back down the stages already
    passed, so a 50% canary drains 50 → 25 → 5 → 0 rather than dropping to 0 at once (the
    incumbent's capacity and caches warm up as traffic returns). Shadow serves nothing: []."""
    if current == "shadow":
        return []
    earlier = [s for s in stages[: stages.index(current)] if s != "shadow"]
    return [*reversed(earlier), 0]


def state_from_events(cand: CandidateSpec, events: list[dict], before_ds: str) -> RolloutState:
    """The rollout as it stands for prediction day `before_ds`: stage events of earlier days.

    events: payloads (with their `ds`) of the candidate's `rollout_stage` events, any order.
    """
    stages = cand.rollout_stages
    stage, since, status = stages[0], cand.since.isoformat(), ACTIVE
    changes = tuple(sorted((e for e in events if e["ds"] < before_ds), key=lambda e: e["ds"]))
    for e in changes:
        nxt = (date.fromisoformat(e["ds"]) + timedelta(days=1)).isoformat()
        if e.get("action") == "rollback":
            status, since = ROLLED_BACK, nxt
            stage = e.get("from", stage)
        elif e.get("action") == "complete":
            status, since = COMPLETE, nxt
            stage = e.get("to", stage)
        elif e.get("action") == "promote":
            stage, since = e["to"], nxt
            if stage == stages[-1] and len(stages) > 1:
                status = COMPLETE
    return RolloutState(candidate=cand.name, stage=stage, since=since, status=status,
                        changes=changes)


# --------------------------------------------------------------------------------------------
# Shell: reading the rows each model scored, and the labels
# --------------------------------------------------------------------------------------------


def _candidate(spec: ModelSpec) -> CandidateSpec:
    if spec.candidate is None:
        raise RolloutError(f"model {spec.name!r} has no candidate in its spec "
                           f"({spec.spec_path or 'spec'}): add a `candidate:` block to compare one")
    return spec.candidate


def _days(first: str, last: str) -> list[str]:
    a, b = date.fromisoformat(first), date.fromisoformat(last)
    return [(a + timedelta(days=i)).isoformat() for i in range((b - a).days + 1)]


def state(spec: ModelSpec, store, ds: str) -> RolloutState:
    cand = _candidate(spec)
    events = [{**e.payload, "ds": e.ds} for e in store.events(spec.name, kinds=STAGE_EVENT)
              if e.subject == cand.name]
    return state_from_events(cand, events, ds)


def _incumbent_rows(spec: ModelSpec, days: list[str], resolver):
    """The production predictions of `days` (the monitor's staged batch, else the source)."""
    import pandas as pd

    from watchkeeper import label_pipeline, monitor, sources

    cols = label_pipeline._prediction_columns(spec)
    if spec.columns.model_version:
        cols.append(spec.columns.model_version)
    frames, missing = [], []
    for d in days:
        path = monitor.batch_path(spec.name, d)
        try:
            f = pd.read_parquet(path) if path.exists() else sources.read_partition(spec, d, resolver).frame
        except sources.SourceError as err:
            missing.append(f"{d}: {err}")
            continue
        if len(f):
            frames.append(f[[c for c in cols if c in f.columns]].assign(ds=d))
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=[*cols, "ds"])
    return frame.rename(columns={spec.columns.id: "id"}), missing


def _candidate_rows(spec: ModelSpec, days: list[str], resolver):
    import pandas as pd

    from watchkeeper import sources

    cand = spec.candidate
    id_col = cand.id_column or spec.columns.id
    score = cand.score or spec.prediction.score
    label = cand.label or spec.prediction.label
    frames, missing = [], []
    for d in days:
        try:
            f = sources.read_day(spec, cand.source, d, resolver).frame
        except sources.SourceError as err:
            missing.append(f"{d}: {err}")
            continue
        need = [c for c in (id_col, score if spec.task == "binary_classification" else label) if c]
        absent = [c for c in need if c not in f.columns]
        if absent:
            raise RolloutError(f"candidate predictions of {spec.name} for {d}: column(s) "
                               f"{', '.join(absent)} missing (have: {', '.join(map(str, f.columns))}); "
                               f"set candidate.id_column / score / label in {spec.spec_path}")
        keep = [c for c in dict.fromkeys([id_col, score, label, *spec.segments,
                                          *label_value_columns(spec)]) if c and c in f.columns]
        if len(f):
            frames.append(f[keep].assign(ds=d))
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=[id_col, "ds"])
    return frame.rename(columns={id_col: "id"}), missing


def label_value_columns(spec: ModelSpec) -> list[str]:
    return [b.value_column for b in (spec.labels.business_outcomes if spec.labels else [])
            if b.value_column]


def _score_pred(spec: ModelSpec, frame, score_col: str | None, pred_col: str | None):
    """(score, pred) arrays: the score and the predicted class (binary; from the threshold when
    there is no label column), or the predicted value twice (regression)."""
    import numpy as np

    if spec.task == "regression":
        v = frame[pred_col].astype("float64").to_numpy()
        return v, v
    s = frame[score_col].astype("float64").to_numpy()
    if pred_col and pred_col in frame.columns:
        return s, frame[pred_col].astype("float64").to_numpy()
    return s, np.where(np.isnan(s), np.nan, (s >= spec.prediction.threshold).astype("float64"))


def _labels(spec: ModelSpec, days: list[str], ds: str, ids_days, ingest_missing: bool,
            resolver=None):
    """Each id's label as known on ds, with the day it arrived."""
    from watchkeeper import label_pipeline
    from watchkeeper import labels as lab

    if ingest_missing:  # as restate does: an arrival day not ingested yet is ingested now
        for d in days[:-1]:
            if not label_pipeline.history_file(spec.name, d).exists():
                label_pipeline.ingest(spec, d, resolver)
    history = label_pipeline.read_history(spec.name, days)
    res = lab.join_labels(ids_days, history, as_of_ds=ds,
                          max_label_delay_days=spec.labels.max_delay_days,
                          maturity_threshold=spec.labels.maturity_coverage)
    j = res.joined
    return j[["id", "label", "label_arrived_ds"]].rename(columns={"label_arrived_ds": "arrived"})


def comparison(spec: ModelSpec, ds: str, st: RolloutState, resolver=None,
               ingest_missing: bool = True):
    """The comparison of the stage in force on ds, over the stage's prediction days up to ds."""
    import pandas as pd

    from watchkeeper import compare

    cand = _candidate(spec)
    days = _days(st.since, ds) if st.since <= ds else []
    inc, inc_missing = _incumbent_rows(spec, days, resolver)
    cnd, cnd_missing = _candidate_rows(spec, days, resolver)
    notes = [f"incumbent predictions missing: {m}" for m in inc_missing]
    notes += [f"candidate predictions missing: {m}" for m in cnd_missing]
    inc["id"] = inc["id"].astype(str)
    cnd["id"] = cnd["id"].astype(str)
    incumbent_name = cand.incumbent
    mv = spec.columns.model_version
    if not incumbent_name and mv and mv in inc.columns and len(inc):
        incumbent_name = str(inc[mv].mode().iloc[0])
    extra = list(dict.fromkeys([*spec.segments, *label_value_columns(spec)]))

    def shape(frame, score_col, pred_col):
        # id, ds, score, pred and the segment / value columns; nothing else travels on.
        cols = ["id", "ds", *[c for c in extra if c in frame.columns]]
        out = frame[cols].copy()
        s, p = _score_pred(spec, frame, score_col, pred_col) if len(frame) else ([], [])
        out["score"], out["pred"] = s, p
        return out

    inc = shape(inc, spec.prediction.score, spec.prediction.label)
    cnd = shape(cnd, cand.score or spec.prediction.score, cand.label or spec.prediction.label)
    # Segment and value columns the candidate's log lacks come from the production rows.
    lacking = [c for c in extra if c not in cnd.columns and c in inc.columns]
    if lacking and len(cnd):
        cnd = cnd.merge(inc[["id", *lacking]].drop_duplicates("id"), on="id", how="left")
    ids_days = pd.concat([inc[["id", "ds"]], cnd[["id", "ds"]]], ignore_index=True)
    ids_days = ids_days.drop_duplicates("id", keep="last")
    labels = (_labels(spec, days, ds, ids_days, ingest_missing, resolver) if days
              else pd.DataFrame(columns=["id", "label", "arrived"]))
    kw = dict(margins=cand.margins, alpha=cand.alpha, min_labels=cand.min_labels,
              bounds=cand.difference_bounds, segments=spec.segments,
              min_segment_labels=cand.min_segment_labels,
              outcomes=[b.model_dump() for b in spec.labels.business_outcomes],
              threshold=spec.prediction.threshold, stage=st.label)
    if st.stage == "shadow":
        both = cnd[["id", "score", "pred"]].merge(inc, on="id", how="inner",
                                                  suffixes=("_candidate", "_incumbent"))
        rows = both.merge(labels, on="id", how="inner")
        result = compare.compare_shadow(rows, scores=both, **kw)
        counts = {"scored_by_both": len(both), "incumbent_rows": len(inc),
                  "candidate_rows": len(cnd)}
    else:
        served = set(cnd["id"])
        inc_slice = inc[~inc["id"].isin(served)]
        c_rows = cnd.merge(labels, on="id", how="inner")
        i_rows = inc_slice.merge(labels, on="id", how="inner")
        total = len(cnd) + len(inc_slice)
        traffic = {"expected_percent": st.serving_percent,
                   "observed_percent": round(100 * len(cnd) / total, 2) if total else None,
                   "candidate_rows": len(cnd), "incumbent_rows": len(inc_slice)}
        result = compare.compare_canary(c_rows, i_rows, scores=(cnd, inc_slice), traffic=traffic, **kw)
        counts = traffic
    return result, incumbent_name, {"days": [days[0], days[-1]] if days else [], "notes": notes,
                                    **counts}


# --------------------------------------------------------------------------------------------
# Shell: the labels DAG's compare task, the CLI, the rollout DAG
# --------------------------------------------------------------------------------------------


def decision_subject(candidate: str, stage) -> str:
    return f"{candidate}@{stage_label(stage)}"


def run_compare(spec: ModelSpec, ds: str, store, resolver=None, *, record: bool = True,
                ingest_missing: bool = True) -> dict:
    """Compare on ds and (by default) store the decision as an event and alert on promote or
    rollback. Returns {"model", "incumbent", "candidate", "stage", "decision", "evidence", ...}."""
    cand = _candidate(spec)
    st = state(spec, store, ds)
    out = {"model": spec.name, "ds": ds, "incumbent": cand.incumbent, "candidate": cand.name,
           "stage": st.label, "status": st.status, "serving_percent": st.serving_percent,
           "stage_since": st.since}
    # The rollout DAG acts after the comparison: a change it made on ds itself is shown beside it.
    acted = [e.payload for e in store.events(spec.name, kinds=STAGE_EVENT, since=ds, until=ds)
             if e.subject == cand.name]
    if acted:
        out["stage_change"] = acted[0]
    if st.status != ACTIVE:
        # The rollout has ended: its verdict is the last decision it acted on.
        last = last_decision(spec, store, ds)
        ended = "promote" if st.status == COMPLETE else "rollback"
        out.update(decision=ended, incumbent=(last or {}).get("incumbent", cand.incumbent),
                   evidence={"note": f"the rollout ended ({st.status}) on {st.changes[-1]['ds']}",
                             "last_comparison": (last or {}).get("evidence")})
        return out
    result, incumbent, counts = comparison(spec, ds, st, resolver, ingest_missing=ingest_missing)
    evidence = result.to_dict()
    evidence["rows"] = counts
    out.update(incumbent=incumbent, decision=result.decision, evidence=evidence)
    if record:
        subject = decision_subject(cand.name, st.stage)
        previous = [e for e in store.events(spec.name, kinds=DECISION_EVENT)
                    if e.subject == subject and e.ds < ds]
        store.record_event(spec.name, DECISION_EVENT, subject, ds, out, created_by="airflow")
        before = max(previous, key=lambda e: e.ds).payload.get("decision") if previous else None
        if result.decision in ("promote", "rollback") and before != result.decision:
            from watchkeeper import day_alerts

            out["alert"] = day_alerts.raise_rollout(spec, ds, store, out)
    return out


def last_decision(spec: ModelSpec, store, ds: str) -> dict | None:
    events = [e for e in store.events(spec.name, kinds=DECISION_EVENT, until=ds)]
    return max(events, key=lambda e: (e.ds, e.created_at)).payload if events else None


def stored_decision(spec: ModelSpec, store, ds: str, st: RolloutState) -> dict | None:
    subject = decision_subject(st.candidate, st.stage)
    for e in store.events(spec.name, kinds=DECISION_EVENT, since=ds, until=ds):
        if e.subject == subject:
            return e.payload
    return None


def decide(spec: ModelSpec, ds: str, store) -> dict:
    """The rollout DAG's branch: promote (the comparison says promote and the gate is open),
    roll_back (the comparison says rollback; never waits for the gate) or hold, with why."""
    from watchkeeper import gatekeeper

    st = state(spec, store, ds)
    base = {"model": spec.name, "ds": ds, "candidate": st.candidate, "stage": st.label,
            "status": st.status}
    if st.status != ACTIVE:
        return {**base, "branch": "hold", "why": f"the rollout has ended ({st.status})"}
    d = stored_decision(spec, store, ds, st)
    if d is None:
        return {**base, "branch": "hold", "why": f"no comparison stored for {ds} at stage "
                f"{st.label} yet (the labels DAG's compare task writes it)"}
    if d["decision"] == "rollback":
        return {**base, "branch": "roll_back", "why": "; ".join(d["evidence"].get("reasons", []))}
    if d["decision"] == "hold":
        return {**base, "branch": "hold", "why": "; ".join(d["evidence"].get("reasons", []))}
    g = gatekeeper.ask(spec.name, "model", as_of=ds, store=store, record=False)
    if g.effective != "open":
        why = "; ".join(f"{r.get('slo')}: {r.get('text')}" for r in g.reasons
                        if r.get("verdict") != "open")
        return {**base, "branch": "hold", "why": f"the comparison says promote, but the "
                f"error-budget gate is {g.effective}: {why}".rstrip(": ")}
    return {**base, "branch": "gate", "why": "; ".join(d["evidence"].get("reasons", []))}


def promote(spec: ModelSpec, ds: str, store, run_id: str | None = None) -> dict:
    """Move traffic to the next stage (or end the rollout at its last stage), once per day."""
    cand = _candidate(spec)
    st = state(spec, store, ds)
    if st.status != ACTIVE:
        return {"model": spec.name, "ds": ds, "recorded": False, "why": f"rollout {st.status}"}
    nxt = next_stage(cand.rollout_stages, st.stage)
    d = stored_decision(spec, store, ds, st) or {}
    payload = {"candidate": cand.name, "action": "promote" if nxt is not None else "complete",
               "from": st.stage, "to": nxt if nxt is not None else st.stage, "run_id": run_id,
               "reasons": (d.get("evidence") or {}).get("reasons", [])}
    w = store.record_event(spec.name, STAGE_EVENT, cand.name, ds, payload, created_by="airflow")
    return {"model": spec.name, "ds": ds, **w.event.payload, "recorded": w.inserted}


def roll_back(spec: ModelSpec, ds: str, store, run_id: str | None = None) -> dict:
    """Send the candidate's traffic back to the incumbent step by step (see rollback_steps).

    The steps are the instruction for the traffic router; here they are recorded (and logged),
    and the example's router (the canary demo) serves nothing from the candidate afterwards.
    """
    cand = _candidate(spec)
    st = state(spec, store, ds)
    if st.status != ACTIVE:
        return {"model": spec.name, "ds": ds, "recorded": False, "why": f"rollout {st.status}"}
    steps = rollback_steps(cand.rollout_stages, st.stage)
    for pct in steps:
        log.info("rollback of %s: candidate %s now serves %s%% of traffic", spec.name, cand.name, pct)
    d = stored_decision(spec, store, ds, st) or {}
    payload = {"candidate": cand.name, "action": "rollback", "from": st.stage, "to": 0,
               "steps": steps, "run_id": run_id,
               "reasons": (d.get("evidence") or {}).get("reasons", [])}
    w = store.record_event(spec.name, STAGE_EVENT, cand.name, ds, payload, created_by="airflow")
    return {"model": spec.name, "ds": ds, **w.event.payload, "recorded": w.inserted}
