"""What the site shows about one model, read from the store once per build, and the findings of a
day ("what is wrong"), ranked.

Later stages add metric families and per-day keys whose payloads this module does not know in
advance: it reads what exists and never fails on a shape it did not expect (a value it cannot
use is shown as data, not dropped silently and not a crash).
"""

from __future__ import annotations

import math
import numbers
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from watchkeeper.spec import ModelSpec

# Metric families written by the pipeline (the store's `metrics(model, family)`).
FAMILIES = ("drift", "skew", "prediction", "coverage", "quality", "estimate")
EVENT_KINDS_ON_AXIS = ("deployment", "override", "silence", "acceptance", "acceptance_revoked")

# The subject under which the monitor stores a family's whole-batch summary (share drifted,
# the Evidently page, the prediction monitors' overall alert, feature coverage).
DATASET = "__dataset__"
# Evidently methods whose score is a p-value (drift when the score is BELOW the threshold); the
# others are distances (drift when above). Mirrors watchkeeper.drift, which imports Evidently.
P_VALUE_METHODS = frozenset({"ks", "chisquare", "z", "t_test", "mannw", "anderson",
                             "cramer_von_mises", "es", "fisher_exact", "g_test", "TVD",
                             "empirical_mmd"})

# Severity of a finding: lower is worse.
PAGE, CRITICAL, WARNING, INFO = 0, 1, 2, 3
SEVERITY_NAMES = {PAGE: "page", CRITICAL: "critical", WARNING: "warning", INFO: "info"}


@dataclass(frozen=True)
class Finding:
    severity: int
    ds: str | None
    text: str
    link: str | None = None  # relative to the model folder (e.g. "2026-11-15/index.html")


@dataclass
class ModelData:
    """Everything the model's pages show, read once."""

    spec: ModelSpec
    partitions: dict[str, Any] = field(default_factory=dict)  # ds -> StoredPartition
    stages: dict[str, dict[str, Any]] = field(default_factory=dict)  # ds -> stage -> StoredStage
    expectations: dict[str, list[Any]] = field(default_factory=dict)  # ds -> [StoredExpectation]
    slis: dict[str, dict[str, Any]] = field(default_factory=dict)  # sli -> ds -> StoredSli
    budgets: dict[str, dict[str, dict]] = field(default_factory=dict)  # slo -> ds -> snapshot dict
    families: dict[str, dict[str, list[Any]]] = field(default_factory=dict)  # fam -> ds -> [metric]
    events: list[Any] = field(default_factory=list)
    runs: dict[str, list[Any]] = field(default_factory=dict)  # ds -> [StoredRun]
    incidents: list[Any] = field(default_factory=list)  # watchkeeper.incidents.Incident, oldest first
    problems: list[str] = field(default_factory=list)  # what could not be read, said on the page

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def days(self) -> list[str]:
        found: set[str] = set(self.partitions) | set(self.stages)
        for per_day in self.slis.values():
            found |= set(per_day)
        for per_day in self.families.values():
            found |= set(per_day)
        return sorted(found)

    def latest_day(self) -> str | None:
        days = self.days
        return days[-1] if days else None

    def events_on(self, ds: str) -> list[Any]:
        return [e for e in self.events if e.ds == ds]

    def axis_markers(self) -> list[dict[str, str]]:
        out = []
        for e in self.events:
            if e.kind in EVENT_KINDS_ON_AXIS:
                out.append({"ds": e.ds, "kind": e.kind, "label": event_text(e)})
        return out

    def acceptances(self):
        """The model's acceptances of expected change (issue 14), revocations applied."""
        from watchkeeper.gatekeeper import fold_acceptances

        return fold_acceptances(self.events)

    def snapshot(self, slo: str, ds: str) -> dict | None:
        return self.budgets.get(slo, {}).get(ds)

    def latest_snapshot(self, slo: str, as_of: str | None = None) -> dict | None:
        per_day = self.budgets.get(slo, {})
        days = [d for d in per_day if as_of is None or d <= as_of]
        return per_day[max(days)] if days else None


def event_text(e: Any) -> str:
    """One line for an event on the time axis and in the day's findings."""
    payload = e.payload if isinstance(e.payload, dict) else {}
    if e.kind == "acceptance":
        seg = payload.get("segment") or {}
        what = str(payload.get("feature")) + "".join(f" [{k}={v}]" for k, v in seg.items())
        return (f"acceptance {e.subject}: {what} accepted as expected change since "
                f"{payload.get('since')}, {'until ' + str(payload['until']) if payload.get('until') else 'open-ended'}"
                f" ({payload.get('reason')})")
    if e.kind == "acceptance_revoked":
        why = payload.get("revoke_reason")
        return f"acceptance {e.subject} revoked by {payload.get('revoked_by')}" + (f": {why}" if why else "")
    detail = payload.get("version") or payload.get("reason") or e.subject
    return f"{e.kind}: {detail}"


def load_model(spec: ModelSpec, store) -> ModelData:
    """Read the model's records; a family that cannot be read is noted, not fatal."""
    md = ModelData(spec=spec)
    name = spec.name
    for p in store.partitions(name):
        md.partitions[p.ds] = p
    for s in store.stage_results(name):
        md.stages.setdefault(s.ds, {})[s.stage] = s
    for e in store.expectation_results(name):
        md.expectations.setdefault(e.ds, []).append(e)
    for v in store.slis(name):
        md.slis.setdefault(v.sli, {})[v.ds] = v
    for m in store.metrics(name, "budget"):
        if isinstance(m.payload, dict):
            md.budgets.setdefault(m.subject, {})[m.ds] = m.payload
    for fam in FAMILIES:
        per_day: dict[str, list[Any]] = defaultdict(list)
        for m in store.metrics(name, fam):
            per_day[m.ds].append(m)
        if per_day:
            md.families[fam] = dict(per_day)
    md.events = list(store.events(name))
    for r in store.runs(name):
        md.runs.setdefault(r.ds, []).append(r)
    try:  # the alert incidents, from the outbox (watchkeeper.incidents)
        from watchkeeper.incidents import derive

        md.incidents = derive(store.outbox_index(name, with_facts=True))
    except Exception as err:  # noqa: BLE001 - the page says what it could not read
        md.problems.append(f"alert incidents could not be read: {type(err).__name__}: {err}")
    return md


# ---------------------------------------------------------------------------------------------
# Reading metric payloads whose exact shape belongs to other stages
# ---------------------------------------------------------------------------------------------


def _num(v: Any) -> float | None:
    if v is None or isinstance(v, bool) or not isinstance(v, numbers.Real):
        return None
    f = float(v)
    return f if math.isfinite(f) else None


def split_subject(subject: str) -> tuple[str, str | None]:
    """'amount|country=DE' -> ('amount', 'country=DE'); 'amount' -> ('amount', None)."""
    base, sep, rest = subject.partition("|")
    return base, (rest if sep else None)


def metric_score(m: Any) -> float | None:
    """The metric's number: its value, else a 'score' or 'value' in its payload."""
    v = _num(m.value)
    if v is None and isinstance(m.payload, dict):
        v = _num(m.payload.get("score"))
        if v is None:
            v = _num(m.payload.get("value"))
    return v


def metric_threshold(m: Any) -> float | None:
    p = m.payload if isinstance(m.payload, dict) else {}
    for key in ("calibrated_threshold", "threshold"):
        t = _num(p.get(key))
        if t is not None and t > 0:
            return t
    return None


def is_dataset(subject: str) -> bool:
    return subject.startswith("__")


def display_subject(subject: str) -> str:
    return "whole batch" if subject == DATASET else subject.replace("|", " | ")


def score_ratio(m: Any) -> float | None:
    """The score in units of its threshold, oriented so that >= 1 means "beyond it" for distances
    and p-values alike; None without a score or a threshold. The stored verdict, when there is
    one, wins: a drifted row is at least 1, a row that is not is below 1."""
    score = metric_score(m)
    p = m.payload if isinstance(m.payload, dict) else {}
    if score is None:
        return None
    method = p.get("method")
    thr = _num(p.get("threshold"))
    if method in P_VALUE_METHODS:
        ratio = None if thr is None else thr / max(score, 1e-12)
    else:
        cal = _num(p.get("calibrated_threshold"))
        limits = [t for t in (thr, cal) if t is not None and t > 0]
        ratio = score / max(limits) if limits else None
    flag = metric_flag(m)
    if ratio is None:
        return None if flag is None else (1.5 if flag else 0.5)
    ratio = min(ratio, 1000.0)
    if flag is True:
        return max(ratio, 1.0)
    if flag is False:
        return min(ratio, 0.99)
    return ratio


def metric_flag(m: Any) -> bool | None:
    """True when the payload says this metric alerts (drifted / alert / not good)."""
    p = m.payload if isinstance(m.payload, dict) else {}
    for key in ("drifted", "alert", "alerted", "breached", "concept_drift", "dataset_drift"):
        if key in p and isinstance(p[key], bool):
            return p[key]
        if key == "alert" and isinstance(p.get(key), str) and p[key]:
            return True
    if isinstance(p.get("good"), bool):
        return not p["good"]
    return None


def metric_provisional(m: Any) -> bool:
    p = m.payload if isinstance(m.payload, dict) else {}
    return bool(p.get("provisional"))


# ---------------------------------------------------------------------------------------------
# Findings: what is wrong on a day, worst first
# ---------------------------------------------------------------------------------------------


def slo_threshold(spec: ModelSpec, sli: str) -> tuple[float | None, str]:
    """The line an SLI's daily value is judged against, and its label."""
    for s in spec.slos:
        if s.sli == sli:
            if s.kind == "ratio":
                return s.objective, f"objective {s.objective:g}"
            if s.threshold is not None:
                word = "at least" if s.direction == "at_least" else "at most"
                return s.threshold, f"threshold: {word} {s.threshold:g}"
            if sli == "freshness":
                return 0.0, "deadline"
    return None, ""


def day_findings(md: ModelData, ds: str) -> list[Finding]:
    """Every finding of one day, worst first. Links are relative to the model folder."""
    out: list[Finding] = []
    day = f"{ds}/index.html"
    for slo in md.spec.slos:
        snap = md.snapshot(slo.name, ds)
        if not snap:
            continue
        rem = _num(snap.get("budget_remaining"))
        burns = ", ".join(f"{w} {snap.get('burn_' + w):.2f}x" for w in ("1d", "3d", "7d")
                          if _num(snap.get("burn_" + w)) is not None)
        if snap.get("alert") == "page":
            out.append(Finding(PAGE, ds, f"SLO {slo.name}: page-level burn ({burns}); "
                                         f"{_pct(rem)} of the budget left", f"{ds}/triage.html"))
        elif snap.get("alert") == "ticket":
            out.append(Finding(WARNING, ds, f"SLO {slo.name}: ticket-level burn ({burns}); "
                                            f"{_pct(rem)} of the budget left", day))
        if rem is not None and rem <= 0:
            out.append(Finding(CRITICAL, ds, f"SLO {slo.name}: error budget spent "
                                             f"({_pct(rem)} left)", day))
    p = md.partitions.get(ds)
    if p is not None and p.status != "ok":
        sev = CRITICAL if p.status in ("missing", "unreadable", "empty") else WARNING
        out.append(Finding(sev, ds, f"partition {p.status}: {p.message}", day))
    if p is not None and (p.partial or {}).get("partial") is True:
        # issue 14: incomplete data, reported as such; its drift and monitors are not alerted
        out.append(Finding(WARNING, ds, f"{p.partial['reason']} (drift, skew and prediction "
                                        "monitors computed, not alerted)", f"{day}#partition"))
    for stage, s in sorted((md.stages.get(ds) or {}).items()):
        if s.error and s.error.startswith("configuration error"):
            out.append(Finding(CRITICAL, ds, f"{stage} suite: {s.error}", day))
        elif s.error and s.error.startswith("not run"):
            out.append(Finding(WARNING, ds, f"{stage} checks {s.error}", day))
    failed = defaultdict(list)
    for e in md.expectations.get(ds, []):
        if not e.success:
            failed[e.stage].append(e)
    for stage, items in sorted(failed.items()):
        cols = sorted({e.column or "table" for e in items})
        link = f"{ds}/validation-{stage}.html"
        out.append(Finding(WARNING, ds, f"{stage}: {len(items)} expectation(s) failed on "
                                        f"{', '.join(cols)}", link))
    for sli, per_day in sorted(md.slis.items()):
        v = per_day.get(ds)
        if v is not None and v.good is False and not v.provisional:
            thr, label = slo_threshold(md.spec, sli)
            out.append(Finding(WARNING, ds, f"SLI {sli} = {_fmt(v.value)} is bad"
                                            + (f" ({label})" if label else ""), day))
    for fam in FAMILIES:
        metrics = md.families.get(fam, {}).get(ds, [])
        flagged = [m for m in metrics if metric_flag(m) and not is_dataset(m.subject)]
        what = {"drift": "drifted (against the recent days)",
                "skew": "skewed (against the training set)",
                "prediction": "prediction monitor(s) alerting",
                "coverage": "coverage alert(s)",
                "quality": "quality finding(s)"}.get(fam, "alerting")
        link = f"{ds}/{fam}.html" if fam in ("drift", "skew") else day
        if flagged:
            whole = [m for m in flagged if "|" not in m.subject]
            segs = [m for m in flagged if "|" in m.subject]
            shown = whole or segs
            names = ", ".join(display_subject(m.subject) for m in shown[:6])
            more = len(shown) - 6
            text = f"{fam}: {len(shown)} {what}: {names}" + (f" (+{more})" if more > 0 else "")
            if whole and segs:
                text += f"; {len(segs)} segment comparison(s) too"
            if fam == "quality":
                text = f"quality: concept drift suspected ({names})"
            out.append(Finding(WARNING, ds, text, link))
        elif any(metric_flag(m) for m in metrics if is_dataset(m.subject)):
            out.append(Finding(WARNING, ds, f"{fam}: {what} on the whole batch", link))
    for e in md.events_on(ds):
        if e.kind in EVENT_KINDS_ON_AXIS:
            out.append(Finding(INFO, ds, event_text(e), day))
    for r in md.runs.get(ds, []):
        if r.state not in ("success", "skipped"):
            out.append(Finding(WARNING, ds, f"task {r.dag_id}.{r.task_id} {r.state}"
                                            + (f": {r.error}" if r.error else ""), day))
    out.sort(key=lambda f: f.severity)
    return out


def current_findings(md: ModelData, as_of: str | None = None) -> list[Finding]:
    """What is wrong now: the newest snapshots' alerts and spent budgets, plus the newest day's
    own findings, worst first."""
    latest = md.latest_day()
    if latest is None:
        return []
    found = day_findings(md, latest)
    seen = {f.text for f in found}
    for slo in md.spec.slos:
        snap = md.latest_snapshot(slo.name, as_of)
        if not snap or snap.get("ds") == latest:
            continue
        rem = _num(snap.get("budget_remaining"))
        ds = snap.get("ds")
        if snap.get("alert") == "page":
            f = Finding(PAGE, ds, f"SLO {slo.name}: page-level burn as of {ds}", f"{ds}/triage.html")
        elif rem is not None and rem <= 0:
            f = Finding(CRITICAL, ds, f"SLO {slo.name}: error budget spent as of {ds}", f"{ds}/index.html")
        else:
            continue
        if f.text not in seen:
            found.append(f)
    found.sort(key=lambda f: f.severity)
    return found


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.0%}"


def _fmt(v: Any) -> str:
    f = _num(v)
    return "n/a" if f is None else f"{f:.4g}"
