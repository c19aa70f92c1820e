"""What a day produced -> the Slack messages it deserves. Pure: no database, no network.

`build_alerts(spec, ds, findings, open_incidents)` turns one day's findings into `Alert`s: one
per condition (model, kind, subject) that holds today, each with a dedupe key (model, kind,
subject, ds), the thread of the incident it belongs to, a severity routed to a channel of the
spec, a plain-text fallback and Block Kit blocks (header with severity and model; one sentence
for the person on call; the key numbers against their thresholds and since when; links to the
day's and the model's report pages; the triage checklist items that fit the finding). Values of
pii columns never appear.

Incidents (`watchkeeper.incidents`): what the row of a condition says depends on its open
incident, passed in `open_incidents`. facts["message"] is the row's type: `onset` (no incident
announced yet: the full message), `escalation` (severity above anything told in the incident:
the full message, broadcast from its thread), `update` (the incident's worst value grew by
WORSE_FACTOR since its last message: one line in the thread), `reminder` (no message for
`alerts.reminder_days`: one line), `folded` (recorded, not sent), `recovery` (the condition
cleared and has not held for `alerts.resolve_after_days`) and `backfill` (a day behind the
alert horizon: the full message, rolled into the digest). Updates and reminders are severity
info; the condition's own severity stays in facts["incident_severity"].

`DayFindings` fields default to None, meaning "not evaluated today". That is deliberate: a kind
that was not evaluated must not "recover" the incidents it has open (the labels DAG knows nothing
about drift), so only an evaluated, clean kind closes its threads. An empty list means "evaluated,
nothing found".
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import date, datetime, timedelta
from typing import Any, Literal

from watchkeeper import paths
from watchkeeper.spec import ModelSpec

ALERT_KINDS = (
    "expectation_failed", "drift", "skew", "prediction_anomaly", "concept_drift",
    "quality_below_slo", "budget_burn", "gate_closed", "gate_reopened", "override", "freshness",
    "recovery", "digest", "rollout_decision", "label_lag", "group",
)
SEVERITIES = ("info", "ticket", "page")
Severity = Literal["info", "ticket", "page"]
# Kinds that open an incident thread which a later clean day closes with a recovery message.
# gate_closed is closed by gate_reopened (a transition), override and digest are one-offs.
RECOVERABLE = (
    "expectation_failed", "drift", "skew", "prediction_anomaly", "concept_drift",
    "quality_below_slo", "budget_burn", "freshness", "label_lag",
)
# Kinds whose rows form incidents (watchkeeper.incidents): every recoverable condition, and the
# gate closing (closed by its reopening). One-offs (override, rollout, digest, group) are not.
INCIDENT_KINDS = (*RECOVERABLE, "gate_closed")
STAGES = ("ingestion", "features")
# An ongoing incident gets a one-line update only when its worst value grew by this factor since
# its last message: each update then stands for a material change, and a condition that worsens
# steadily produces a handful of updates (log-spaced), not one a day.
WORSE_FACTOR = 1.5
# Drift methods whose score is a p-value (smaller = stronger); mirrors watchkeeper.drift, which
# imports Evidently.
P_VALUE_METHODS = frozenset({"ks", "chisquare", "z", "t_test", "mannw", "anderson",
                             "cramer_von_mises", "es", "fisher_exact", "g_test", "TVD",
                             "empirical_mmd"})
_RANK = {s: i for i, s in enumerate(SEVERITIES)}

# Slack limits (Block Kit reference): header text 150, section text 3000, 10 fields of 2000.
_HEADER_MAX, _SECTION_MAX, _FIELD_MAX, _FIELDS_MAX = 150, 3000, 2000, 10
_TOP_N = 5  # features/segments/expectations shown by name; the rest are counted


class AlertInputError(ValueError):
    """A finding handed to build_alerts is malformed; the message names the field and reason."""


# --------------------------------------------------------------------------------------------
# Findings: what a day produced (callers fill what exists)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExpectationFinding:
    """One expectation result of a stage. Passing results may be included; they are ignored."""

    stage: str
    expectation: str
    column: str | None = None
    success: bool = False
    observed: Any = None
    unexpected_share: float | None = None
    unexpected_count: int | None = None
    expected: str | None = None  # the bound in words, e.g. "at most 1% null"


@dataclass(frozen=True)
class DriftFinding:
    """One drift or skew comparison (a feature, optionally within a segment)."""

    feature: str
    drifted: bool
    score: float | None = None
    threshold: float | None = None
    method: str | None = None
    segment: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class PredictionFinding:
    """One prediction monitor (positive rate, score distribution, diversity, stagnation...)."""

    monitor: str
    alert: bool
    value: float | None = None
    baseline: float | None = None
    lower: float | None = None
    upper: float | None = None
    message: str = ""


@dataclass(frozen=True)
class ConceptDriftFinding:
    """Concept drift as judged on a labels run. `suspected` with the prediction-days newly
    suspected on this run (each prediction-day is alerted once); not suspected = evaluated,
    nothing new. `metrics`: the per-metric rows of the first of those days (realized,
    estimated, difference, low, high, direction)."""

    suspected: bool
    message: str = ""
    evidence: Mapping[str, float | None] = field(default_factory=dict)
    prediction_days: Sequence[str] = ()
    metrics: Sequence[Mapping[str, Any]] = ()


@dataclass(frozen=True)
class QualityFinding:
    """A model-quality metric (or quality SLO) against its objective, on matured labels."""

    name: str
    value: float | None
    threshold: float | None
    below: bool
    mature: bool = True
    direction: Literal["at_least", "at_most"] = "at_least"
    coverage: float | None = None
    prediction_ds: str | None = None  # the prediction-day the value is about
    verdict: str | None = None  # the SLI's good/bad/inconclusive when it says; inconclusive never alerts


@dataclass(frozen=True)
class BudgetFinding:
    """An error-budget snapshot: the alert level ('page'/'ticket'/None) and the burn rates."""

    slo: str
    alert: Literal["page", "ticket"] | None
    budget_remaining: float | None = None
    burn_1d: float | None = None
    burn_3d: float | None = None
    burn_7d: float | None = None
    objective: float | None = None
    window_days: int | None = None


@dataclass(frozen=True)
class GateTransition:
    """The gate of one scope, before and now ('open' / 'closed' / 'inconclusive')."""

    scope: str
    previous: str | None
    now: str
    reasons: tuple[str, ...] = ()


@dataclass(frozen=True)
class OverrideFinding:
    """A break-glass override (alerted once: keyed by its creation time, not the run's day)."""

    scope: str
    reason: str
    created_by: str
    created_at: str  # ISO datetime
    expires_at: str  # ISO datetime


@dataclass(frozen=True)
class FreshnessFinding:
    """The day's partition: ok / late / missing / unreadable / empty, with the loader's message."""

    status: str
    message: str = ""
    lateness_hours: float | None = None


@dataclass(frozen=True)
class DayFindings:
    """What one day produced. None = not evaluated today (never recovers open incidents)."""

    expectations: Sequence[ExpectationFinding] | None = None
    stages_checked: Sequence[str] | None = None  # default: both stages when expectations given
    drift: Sequence[DriftFinding] | None = None
    skew: Sequence[DriftFinding] | None = None
    predictions: Sequence[PredictionFinding] | None = None
    concept_drift: ConceptDriftFinding | None = None
    quality: Sequence[QualityFinding] | None = None
    budgets: Sequence[BudgetFinding] | None = None
    gate: Sequence[GateTransition] | None = None
    overrides: Sequence[OverrideFinding] | None = None
    freshness: FreshnessFinding | None = None
    label_lag: LabelLagFinding | None = None  # defined with its message, below


# --------------------------------------------------------------------------------------------
# The alert
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Alert:
    """One distinct Slack message. `dedupe_key` = f"{model}:{kind}:{subject}:{ds}"."""

    model: str
    kind: str
    subject: str
    ds: str
    severity: Severity
    dedupe_key: str
    thread_key: str
    text: str
    blocks: list[dict[str, Any]]
    channel: str | None
    closes_thread: bool = False
    facts: dict[str, Any] = field(default_factory=dict)
    backfill: bool = False
    horizon_days: int = 2

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def dedupe_key(model: str, kind: str, subject: str, ds: str) -> str:
    return f"{model}:{kind}:{subject}:{ds}"


def thread_key(model: str, kind: str, subject: str) -> str:
    return f"{model}:{kind}:{subject}"


def split_thread_key(key: str) -> tuple[str, str, str]:
    """(model, kind, subject) of a thread key. Model names and kinds hold no ':'."""
    parts = key.split(":", 2)
    if len(parts) != 3 or not all(parts[:2]):
        raise AlertInputError(f"open incident {key!r}: expected 'model:kind:subject'")
    return parts[0], parts[1], parts[2]


def channel_for(spec: ModelSpec, severity: str) -> str | None:
    """The spec's route for `severity`; else the nearest more severe route (a ticket with only a
    page channel still reaches someone), else the nearest less severe one (a page must never be
    dropped for want of a page channel); None when the spec routes nothing."""
    routes = {r.severity: r.channel for r in spec.alerts.routes}
    rank = SEVERITIES.index(severity)
    for sev in (*SEVERITIES[rank:], *reversed(SEVERITIES[:rank])):
        if sev in routes:
            return routes[sev]
    return None


def default_reports_url() -> str:
    """Where report links point: WATCHKEEPER_REPORTS_URL (e.g. the Airflow plugin's /reports
    mount), else the local reports folder as a file:// URL (the embedded demo)."""
    env = os.environ.get("WATCHKEEPER_REPORTS_URL", "").strip()
    return env.rstrip("/") if env else paths.reports_dir().as_uri()


def is_backfill(ds: str, newest_ds: str | None, horizon_days: int) -> bool:
    """A day older than `horizon_days` behind the newest processed day does not page."""
    if not newest_ds:
        return False
    return date.fromisoformat(ds) < date.fromisoformat(newest_ds) - timedelta(days=horizon_days)


# --------------------------------------------------------------------------------------------
# Formatting helpers
# --------------------------------------------------------------------------------------------


def _num(x: Any) -> str:
    if x is None:
        return "n/a"
    if isinstance(x, bool):
        return str(x).lower()
    if isinstance(x, (int, float)):
        f = float(x)
        if math.isnan(f):
            return "n/a"
        if math.isinf(f):
            return "∞" if f > 0 else "-∞"
        if f == int(f) and abs(f) < 1e6:
            return f"{int(f):,}"
        if abs(f) >= 100:
            return f"{f:,.0f}"
        if abs(f) >= 1:
            return f"{f:.2f}"
        return f"{f:.3g}"
    text = str(x)
    return text if len(text) <= 60 else text[:57] + "..."


def _pct(x: float | None) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.1%}"


def _esc(text: str) -> str:
    """Slack mrkdwn control characters (the only three Slack asks to escape)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _segment_text(segment: Mapping[str, Any] | None, pii: frozenset[str]) -> str:
    if not segment:
        return ""
    return ", ".join(f"{k}={'<pii hidden>' if k in pii else _num(v)}" for k, v in segment.items())


def _days_between(since: str, ds: str) -> int:
    return (date.fromisoformat(ds) - date.fromisoformat(since)).days + 1


# --------------------------------------------------------------------------------------------
# Drafts: one per alert, rendered to text + blocks in one place
# --------------------------------------------------------------------------------------------


@dataclass
class _Draft:
    kind: str
    subject: str
    severity: Severity
    title: str
    sentence: str
    numbers: list[tuple[str, str]] = field(default_factory=list)
    links: list[tuple[str, str]] = field(default_factory=list)  # (label, url)
    steps: list[str] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)
    ds: str | None = None  # overrides the run's ds (overrides are keyed by their own day)
    thread: str | None = None  # thread key when not f"{model}:{kind}:{subject}"
    closes_thread: bool = False
    own_thread: bool = False  # a one-off message: its thread is itself


# Next steps: the triage checklist items that fit each kind of finding.
NEXT_STEPS: dict[str, list[str]] = {
    "expectation_failed": [
        "Open the validation page of the stage: which expectations failed, on which columns, by how much.",
        "Check the upstream job and source for the day: schema changes, unit changes, partial loads.",
        "If the data is wrong, ask the producer to fix and re-deliver, then clear the day's monitor run.",
        "If the expectation is outdated, change the suite in a reviewed PR (not in the incident).",
    ],
    "drift": [
        "Compare the drifted features with the recent window in the day's drift report.",
        "Look at the segments listed: a single segment points at an upstream change, all segments at a real shift.",
        "Check for pipeline changes (units, encodings, new categories) before blaming the world.",
        "If the shift is real and lasting, plan a retrain and watch model quality as labels arrive.",
    ],
    "skew": [
        "Compare the skewed features with the training set in the day's skew report.",
        "Check that serving computes features exactly like training did (same code, units, defaults).",
        "If the population moved since training, plan a retrain on recent data.",
    ],
    "prediction_anomaly": [
        "Look at the prediction distribution in the day's report: score shift, positive rate, diversity.",
        "Check the inputs first (data checks and drift of the same day), then the deployed model version.",
        "If a new model version went out, consider rolling back while investigating.",
    ],
    "concept_drift": [
        "Compare the model's estimate with realised quality of the prediction-day named: realised quality worse than a calm estimate is the signature.",
        "Review the segments where errors grew; ask the domain team whether behaviour changed.",
        "Plan a retrain on recent labelled data; do not ship new versions trained on the old concept.",
    ],
    "quality_below_slo": [
        "Check label coverage and maturity of the days concerned before acting on the number.",
        "Find the segments that lost the most quality in the model page.",
        "Decide with the model owner: retrain, roll back, or accept with an SLO review.",
    ],
    "budget_burn": [
        "Find which SLI days spent the budget on the model page (burn-down chart).",
        "Fix or mitigate the cause; every further bad day spends more of the window.",
        "Expect the deployment gate to close when the budget is exhausted; plan releases accordingly.",
    ],
    "gate_closed": [
        "Read the gate's reasons: `watchkeeper gate MODEL` prints them.",
        "Fix the underlying SLOs; the gate reopens by itself when the budget recovers.",
        "Only if shipping is urgent and safe: `watchkeeper override MODEL --reason ... --expires 4h`.",
    ],
    "gate_reopened": [
        "Deployments may proceed; check the model page that the recovery is stable.",
    ],
    "override": [
        "Make sure the override is known to the release manager and the model owner.",
        "Track the fix that makes the override unnecessary before it expires.",
    ],
    "freshness": [
        "Check the upstream job that produces the partition: did it run, did it fail, is it late?",
        "If data arrives later, clear the day's monitor run so it is checked.",
        "If the day will never arrive, record it with the data owner; the freshness SLO counts it.",
    ],
    "recovery": [
        "Confirm on the model page that the fix is real, then close the incident and note the cause.",
    ],
    "digest": [
        "These alerts come from re-processing past days (a backfill); nothing here pages.",
        "Review the day pages listed if the backfill changed a past verdict.",
    ],
}

# The order of the on-call checklist in watchkeeper.triage.
TRIAGE_STEP = ("Work through the triage checklist: when it started (and the nearest deployment), "
               "predictions against the same weekday, the features that moved most, the segments "
               "that carry it, task failures and freshness.")

_TITLES = {
    "expectation_failed": "Data checks failed",
    "drift": "Feature drift",
    "skew": "Training-serving skew",
    "prediction_anomaly": "Prediction anomaly",
    "concept_drift": "Suspected concept drift",
    "quality_below_slo": "Model quality below objective",
    "budget_burn": "Error budget burning",
    "gate_closed": "Deployment gate closed",
    "gate_reopened": "Deployment gate reopened",
    "override": "Gate override",
    "freshness": "Data late or missing",
    "recovery": "Resolved",
    "digest": "Backfill digest",
}

_SEVERITY_MARK = {"page": ":rotating_light: PAGE", "ticket": ":warning: TICKET",
                  "info": ":information_source: INFO"}


def _expectations(spec: ModelSpec, ds: str, f: DayFindings) -> list[_Draft]:
    if f.expectations is None:
        return []
    pii = spec.pii_columns
    out = []
    by_stage: dict[str, list[ExpectationFinding]] = {}
    for e in f.expectations:
        if not isinstance(e, ExpectationFinding):
            raise AlertInputError(
                f"DayFindings.expectations: expected ExpectationFinding items, got {type(e).__name__}")
        by_stage.setdefault(e.stage, []).append(e)
    for stage, results in by_stage.items():
        failed = [e for e in results if not e.success]
        if not failed:
            continue
        failed.sort(key=lambda e: -(e.unexpected_share or 0.0))
        cols = sorted({e.column for e in failed if e.column})
        evaluated = len(results)
        counted = (f"{len(failed)} of {evaluated} data checks" if any(e.success for e in results)
                   else f"{len(failed)} data check{'s' if len(failed) != 1 else ''}")
        sentence = (
            f"{counted} failed at the {stage} stage of "
            f"{spec.name} for {ds}"
            + (f", on {', '.join(cols[:_TOP_N])}" + (f" and {len(cols) - _TOP_N} more columns" if len(cols) > _TOP_N else "") if cols else "")
            + ": the data the model receives does not look as it should."
        )
        numbers = []
        for e in failed[:_FIELDS_MAX - 1]:
            label = f"{e.column or 'table'} · {e.expectation.removeprefix('expect_')}"
            parts = []
            if e.unexpected_share is not None:
                parts.append(f"{_pct(e.unexpected_share)} unexpected")
            if e.unexpected_count is not None:
                parts.append(f"{_num(e.unexpected_count)} rows")
            if e.observed is not None and (e.column is None or e.column not in pii):
                parts.append(f"observed {_num(e.observed)}")
            elif e.column in pii:
                parts.append("values hidden (pii)")
            if e.expected:
                parts.append(f"expected {e.expected}")
            numbers.append((label, "; ".join(parts) or "failed"))
        if len(failed) > _FIELDS_MAX - 1:
            numbers.append(("more", f"{len(failed) - (_FIELDS_MAX - 1)} further failed checks"))
        top = failed[0]
        worst_text = (f"{len(failed)} failed check{'s' if len(failed) != 1 else ''}"
                      + (f" (most: {top.column or 'table'} · "
                         f"{top.expectation.removeprefix('expect_')}, "
                         f"{_pct(top.unexpected_share)} unexpected)"
                         if top.unexpected_share is not None else ""))
        out.append(_Draft(
            kind="expectation_failed", subject=stage, severity="ticket",
            title=f"{_TITLES['expectation_failed']} ({stage})", sentence=sentence,
            numbers=numbers,
            links=[(f"Validation page ({stage})", f"{{base}}/{spec.name}/{ds}/validation-{stage}.html")],
            facts={"stage": stage, "failed": len(failed), "evaluated": evaluated,
                   "columns": cols, "worst": float(len(failed)), "worst_text": worst_text,
                   "onset": ds},
        ))
    return out


def _drift_ratio(r: DriftFinding) -> float | None:
    """The score in units of its threshold, >= 1 beyond it for distances and p-values alike."""
    if r.score is None:
        return None
    if r.method in P_VALUE_METHODS:
        return None if not r.threshold else min(r.threshold / max(r.score, 1e-12), 1000.0)
    return r.score / r.threshold if r.threshold else r.score


def _drift(spec: ModelSpec, ds: str, rows: Sequence[DriftFinding] | None, kind: str) -> list[_Draft]:
    """One condition per drifted FEATURE: its segment rows fold into it (a shift seen in three
    segments is one incident of that feature, not three)."""
    if rows is None:
        return []
    pii = spec.pii_columns
    by_feature: dict[str, list[DriftFinding]] = {}
    for r in rows:
        if not isinstance(r, DriftFinding):
            raise AlertInputError(
                f"DayFindings.{kind}: expected DriftFinding items, got {type(r).__name__}")
        if r.drifted:
            by_feature.setdefault(r.feature, []).append(r)
    against = ("the recent window (sudden change)" if kind == "drift"
               else "the training set (slow drift / training-serving skew)")
    page = "drift" if kind == "drift" else "skew"
    out = []
    for feature, frs in by_feature.items():
        frs.sort(key=lambda r: _drift_ratio(r) or 0.0, reverse=True)
        whole = [r for r in frs if not r.segment]
        segs = [r for r in frs if r.segment]
        seg_texts = list(dict.fromkeys(_segment_text(r.segment, pii) for r in segs))
        shown = ", ".join(seg_texts[:_TOP_N]) + (
            f" and {len(seg_texts) - _TOP_N} more" if len(seg_texts) > _TOP_N else "")
        n_seg = f"{len(seg_texts)} segment{'s' if len(seg_texts) != 1 else ''}"
        if whole:
            where = f", and within {n_seg} ({shown})" if segs else ""
            sentence = f"Feature {feature} of {spec.name} differs from {against} on {ds}{where}."
        else:
            sentence = (f"Feature {feature} of {spec.name} differs from {against} on {ds}, "
                        f"concentrated in {n_seg}: {shown}.")
        numbers = []
        listed = whole + segs
        for r in listed[:_FIELDS_MAX]:
            where = f" [{_segment_text(r.segment, pii)}]" if r.segment else ""
            method = f" ({r.method})" if r.method else ""
            numbers.append((f"{feature}{where}",
                            f"score {_num(r.score)} vs threshold {_num(r.threshold)}{method}"))
        if len(listed) > _FIELDS_MAX:
            numbers[-1] = ("more", f"{len(listed) - (_FIELDS_MAX - 1)} further segments")
        top = frs[0]
        ratio = _drift_ratio(top)
        ratio = None if ratio is None else float(f"{ratio:.6g}")
        top_where = _segment_text(top.segment, pii) or "whole batch"
        worst_text = (f"score {_num(top.score)} vs threshold {_num(top.threshold)}"
                      + (f" ({_num(ratio)}x, {top_where})" if ratio is not None else f" ({top_where})"))
        out.append(_Draft(
            kind=kind, subject=feature, severity="ticket",
            title=f"{_TITLES[kind]}: {feature}" + (f" ({n_seg})" if segs and not whole else ""),
            sentence=sentence, numbers=numbers,
            links=[(f"{page.capitalize()} report", f"{{base}}/{spec.name}/{ds}/{page}.html")],
            facts={"feature": feature, "features": [feature], "segments": seg_texts[:_TOP_N],
                   "top": [{"feature": r.feature, "segment": _segment_text(r.segment, pii),
                            "score": r.score, "threshold": r.threshold} for r in frs[:_TOP_N]],
                   "worst": ratio, "worst_text": worst_text, "onset": ds},
        ))
    return out


def _band_excess(p: PredictionFinding) -> float | None:
    """How far the value lies outside its band, in band widths (0 inside it)."""
    if p.value is None or p.lower is None or p.upper is None:
        return None
    over = (p.value - p.upper if p.value > p.upper
            else p.lower - p.value if p.value < p.lower else 0.0)
    width = p.upper - p.lower
    if width > 0:
        return over / width
    scale = abs(p.baseline) if p.baseline else 1.0
    return over / scale


def _predictions(spec: ModelSpec, ds: str, f: DayFindings) -> list[_Draft]:
    """One condition per prediction monitor that alerts."""
    if f.predictions is None:
        return []
    out = []
    for p in f.predictions:
        if not p.alert:
            continue
        excess = _band_excess(p)
        band = f"[{_num(p.lower)}, {_num(p.upper)}]"
        if excess:  # outside the band: say so with the numbers
            what = f"{p.monitor} {_num(p.value)} outside the expected range {band}"
            worst_text = f"{p.monitor} {_num(p.value)}, {_num(excess)} band widths outside {band}"
        else:  # flagged by its own rule (persistence, a one-sided test): no "outside" claim
            what = f"{p.monitor} {_num(p.value)} flagged by its monitor (expected range {band})"
            worst_text = f"{p.monitor} {_num(p.value)}"
        sentence = (f"The predictions of {spec.name} on {ds} look unusual: {what}. The model may "
                    "be reacting to bad inputs or a changed world."
                    + (f" {p.message}" if p.message else ""))
        numbers = [(p.monitor, f"{_num(p.value)} (baseline {_num(p.baseline)}, expected {band})")]
        out.append(_Draft(
            kind="prediction_anomaly", subject=p.monitor, severity="ticket",
            title=f"{_TITLES['prediction_anomaly']}: {p.monitor}",
            sentence=sentence, numbers=numbers,
            facts={"monitors": [p.monitor], "monitor": p.monitor, "value": p.value,
                   "worst": excess, "worst_text": worst_text, "onset": ds},
        ))
    return out


# Metrics estimated before labels: larger is better for all of them.
_HIGHER_IS_BETTER = frozenset({"accuracy", "precision", "recall", "f1", "roc_auc", "auc"})


def _worse_row(m: Mapping[str, Any]) -> bool:
    """A concept-drift metric row whose realized value is worse than the estimate."""
    d = m.get("direction")
    if d == "worse":
        return True
    if d in ("better", None):
        return False
    metric = str(m.get("metric", ""))
    return (d == "below") == (metric in _HIGHER_IS_BETTER)


def _concept(spec: ModelSpec, ds: str, f: DayFindings) -> list[_Draft]:
    c = f.concept_drift
    if c is None or not c.suspected:
        return []
    days = sorted(c.prediction_days)
    first = days[0] if days else ds
    outside = [m for m in c.metrics if m.get("outside") or m.get("direction")]
    worse = [m for m in outside if _worse_row(m)]
    parts, numbers = [], []
    shortfall: tuple[float, str] | None = None
    for m in outside:
        r, e = m.get("realized"), m.get("estimated")
        if not isinstance(r, (int, float)) or not isinstance(e, (int, float)):
            continue
        metric = str(m.get("metric"))
        rel = "lower" if r < e else "higher" if r > e else "no different"
        lo, hi = m.get("low"), m.get("high")
        band = (f", normal error [{lo:+.3f}, {hi:+.3f}]"
                if isinstance(lo, (int, float)) and isinstance(hi, (int, float)) else "")
        parts.append(f"realized {metric} {r:.3f} is {abs(r - e):.3f} {rel} than the estimate "
                     f"{e:.3f}{band}")
        numbers.append((metric, f"realized {r:.3f} vs estimate {e:.3f} ({r - e:+.3f}){band}"))
        gap = (e - r) if metric in _HIGHER_IS_BETTER else (r - e)
        if m in worse and (shortfall is None or gap > shortfall[0]):
            shortfall = (gap, f"{metric} {abs(r - e):.3f} {rel} than estimated on {first}")
    what = ("realized quality is worse than the model's own estimate beyond its normal error"
            if worse else "realized quality departs from the model's own estimate beyond its "
            "normal error")
    more = f" (and {len(days) - 1} more prediction-day{'s' if len(days) > 2 else ''})" if len(days) > 1 else ""
    sentence = (f"Suspected concept drift of {spec.name} on prediction-day {first}{more}, as "
                f"known on {ds}: {what}"
                + (": " + "; ".join(parts[:3]) if parts else (f". {c.message}" if c.message else ""))
                + ". The relationship between the inputs and the outcome seems to have changed.")
    if days:
        numbers.append(("prediction-days", _cut(", ".join(days), 300)))
    numbers += [(k, _num(v)) for k, v in c.evidence.items()]
    return [_Draft(kind="concept_drift", subject="concept", severity="ticket",
                   title=f"{_TITLES['concept_drift']}: prediction-day {first}"
                         + (f" (+{len(days) - 1})" if len(days) > 1 else ""),
                   sentence=sentence, numbers=numbers[:_FIELDS_MAX],
                   facts={"evidence": dict(c.evidence), "prediction_days": days,
                          "reason": c.message, "onset": first,
                          "worst": shortfall[0] if shortfall else None,
                          "worst_text": shortfall[1] if shortfall else f"suspected on {first}"})]


def _quality(spec: ModelSpec, ds: str, f: DayFindings) -> list[_Draft]:
    out = []
    for q in f.quality or ():
        if not (q.below and q.mature):
            continue
        rel = ">=" if q.direction == "at_least" else "<="
        day = q.prediction_ds or ds
        about = (f"on matured labels of prediction-day {day} (as known on {ds})"
                 if q.prediction_ds else "on matured labels")
        confident = " (bad with confidence at the day's label count)" if q.verdict == "bad" else ""
        sentence = (f"Model quality of {spec.name} is below its objective {about}: "
                    f"{q.name} is {_num(q.value)}, the objective is {rel} {_num(q.threshold)}"
                    f"{confident}.")
        numbers = [(q.name, f"{_num(q.value)} vs objective {rel} {_num(q.threshold)}")]
        if q.prediction_ds:
            numbers.append(("prediction-day", q.prediction_ds))
        if q.coverage is not None:
            numbers.append(("label coverage", _pct(q.coverage)))
        shortfall = None
        if q.value is not None and q.threshold is not None:
            shortfall = (q.threshold - q.value) if q.direction == "at_least" else (q.value - q.threshold)
        out.append(_Draft(kind="quality_below_slo", subject=q.name, severity="ticket",
                          title=f"{_TITLES['quality_below_slo']}: {q.name}"
                                + (f" (prediction-day {q.prediction_ds})" if q.prediction_ds else ""),
                          sentence=sentence, numbers=numbers,
                          facts={"value": q.value, "threshold": q.threshold,
                                 "coverage": q.coverage, "prediction_ds": q.prediction_ds,
                                 "verdict": q.verdict, "onset": day, "worst": shortfall,
                                 "worst_text": f"{q.name} {_num(q.value)} vs {rel} "
                                               f"{_num(q.threshold)} on {day}"}))
    return out


def _budgets(spec: ModelSpec, ds: str, f: DayFindings) -> list[_Draft]:
    out = []
    for b in f.budgets or ():
        if b.alert not in ("page", "ticket"):
            continue
        if b.alert == "page":
            what = (f"{spec.name} is burning the error budget of SLO {b.slo} fast "
                    f"({_num(b.burn_1d)}x over 1 day, {_num(b.burn_3d)}x over 3 days; a page "
                    "fires at 2.8x, about 10% of a 28-day budget a day)")
        else:
            what = (f"{spec.name} is spending the error budget of SLO {b.slo} faster than it "
                    f"refills ({_num(b.burn_7d)}x over 7 days, {_num(b.burn_1d)}x over 1 day; "
                    "a ticket fires at 1x)")
        left = (f"; {_pct(b.budget_remaining)} of the budget is left"
                if b.budget_remaining is not None else "")
        numbers = [
            ("budget remaining", _pct(b.budget_remaining)),
            ("burn 1d", f"{_num(b.burn_1d)}x (page ≥ 2.8, ticket ≥ 1)"),
            ("burn 3d", f"{_num(b.burn_3d)}x (page ≥ 2.8)"),
            ("burn 7d", f"{_num(b.burn_7d)}x (ticket ≥ 1)"),
        ]
        if b.objective is not None:
            numbers.append(("objective", f"{_pct(b.objective)} over {b.window_days or 28} days"))
        if b.budget_remaining is not None:
            worst, worst_text = 1.0 - b.budget_remaining, f"{_pct(1.0 - b.budget_remaining)} of the budget spent"
        else:
            worst, worst_text = b.burn_1d, f"burn {_num(b.burn_1d)}x over 1 day"
        out.append(_Draft(kind="budget_burn", subject=b.slo, severity=b.alert,
                          title=f"{_TITLES['budget_burn']}: {b.slo}",
                          sentence=f"{what}{left}.", numbers=numbers,
                          facts={"slo": b.slo, "alert": b.alert,
                                 "budget_remaining": b.budget_remaining, "burn_1d": b.burn_1d,
                                 "burn_3d": b.burn_3d, "burn_7d": b.burn_7d, "worst": worst,
                                 "worst_text": worst_text, "onset": ds}))
    return out


def _gate(spec: ModelSpec, ds: str, f: DayFindings) -> list[_Draft]:
    out = []
    for g in f.gate or ():
        if g.now == g.previous:
            continue
        if g.now == "closed":
            out.append(_Draft(
                kind="gate_closed", subject=g.scope, severity="ticket",
                title=f"{_TITLES['gate_closed']} ({g.scope})",
                sentence=(f"The deployment gate of {spec.name} ({g.scope} scope) closed on {ds}: "
                          "new versions cannot ship until the error budgets recover."),
                numbers=[(f"reason {i + 1}", _cut(r, 300)) for i, r in enumerate(g.reasons[:_FIELDS_MAX])],
                facts={"scope": g.scope, "previous": g.previous, "reasons": list(g.reasons),
                       "onset": ds, "worst": None, "worst_text": "gate closed"},
            ))
        elif g.now == "open" and g.previous in ("closed", "inconclusive"):
            out.append(_Draft(
                kind="gate_reopened", subject=g.scope, severity="info",
                title=f"{_TITLES['gate_reopened']} ({g.scope})",
                sentence=f"The deployment gate of {spec.name} ({g.scope} scope) is open again as of {ds}.",
                facts={"scope": g.scope, "previous": g.previous, "message": "recovery"},
                thread=thread_key(spec.name, "gate_closed", g.scope), closes_thread=True,
            ))
    return out


def _overrides(spec: ModelSpec, ds: str, f: DayFindings) -> list[_Draft]:
    out = []
    for o in f.overrides or ():
        try:
            created = datetime.fromisoformat(o.created_at)
        except (TypeError, ValueError):
            raise AlertInputError(f"OverrideFinding.created_at: expected an ISO datetime, got "
                                  f"{o.created_at!r}") from None
        day = (created.astimezone(spec.tz) if created.tzinfo else created).date().isoformat()
        out.append(_Draft(
            kind="override", subject=f"{o.scope}@{created.isoformat()}", severity="info",
            title=f"{_TITLES['override']} ({o.scope})",
            sentence=(f"{o.created_by} opened the deployment gate of {spec.name} ({o.scope} scope) "
                      f"with a break-glass override until {o.expires_at}: “{o.reason}”."),
            numbers=[("expires", o.expires_at), ("by", o.created_by)],
            facts={"scope": o.scope, "reason": o.reason, "created_by": o.created_by,
                   "expires_at": o.expires_at},
            ds=day, own_thread=True,
        ))
    return out


def _freshness(spec: ModelSpec, ds: str, f: DayFindings) -> list[_Draft]:
    fr = f.freshness
    if fr is None or fr.status == "ok":
        return []
    if fr.status == "late":
        sentence = (f"The data of {spec.name} for {ds} landed late"
                    + (f", {_num(fr.lateness_hours)} h after its deadline" if fr.lateness_hours is not None else "")
                    + ": the day was checked, but downstream consumers waited.")
    elif fr.status == "empty":
        sentence = f"The data of {spec.name} for {ds} arrived empty: there is nothing to check."
    else:
        sentence = (f"The data of {spec.name} for {ds} is {fr.status}: the day's checks could "
                    "not run.")
    numbers = [("status", fr.status)]
    if fr.lateness_hours is not None:
        numbers.append(("hours after deadline", _num(fr.lateness_hours)))
    if fr.message:
        numbers.append(("loader", _cut(fr.message, 500)))
    worst_text = fr.status + (f", {_num(fr.lateness_hours)} h after the deadline"
                              if fr.lateness_hours is not None else "")
    return [_Draft(kind="freshness", subject="partition", severity="ticket",
                   title=f"{_TITLES['freshness']} ({fr.status})", sentence=sentence,
                   numbers=numbers, facts={"status": fr.status,
                                           "lateness_hours": fr.lateness_hours,
                                           "worst": fr.lateness_hours, "worst_text": worst_text,
                                           "onset": ds})]


def _cleared(kind: str, subject: str, f: DayFindings, current: set[tuple[str, str]]) -> bool:
    """Whether an open incident (kind, subject) was evaluated today and found clean."""
    if (kind, subject) in current:
        return False
    if kind == "expectation_failed":
        if f.expectations is None:
            return False
        stages = set(f.stages_checked) if f.stages_checked is not None else (
            set(STAGES) | {e.stage for e in f.expectations})
        return subject in stages
    if kind == "drift":
        return f.drift is not None
    if kind == "skew":
        return f.skew is not None
    if kind == "prediction_anomaly":
        return f.predictions is not None
    if kind == "concept_drift":
        return f.concept_drift is not None
    if kind == "quality_below_slo":
        # inconclusive (too few labels to say) counts as neither bad nor clean
        return any(q.name == subject and q.mature and not q.below and q.verdict != "inconclusive"
                   for q in f.quality or ())
    if kind == "budget_burn":
        return any(b.slo == subject and b.alert is None for b in f.budgets or ())
    if kind == "freshness":
        return f.freshness is not None and f.freshness.status == "ok"
    if kind == "label_lag":
        return f.label_lag is not None
    return False


# --------------------------------------------------------------------------------------------
# Incidents: what today's row of a condition says, given its open incident
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Known:
    """An open incident known only by its first day (callers passing thread key -> day, the
    shape of `watchkeeper.alerts.open_incidents`): announced, nothing else known, so it neither
    escalates nor updates nor waits for hysteresis."""

    opened: str | None
    thread_key: str = ""
    announced: bool = True
    sent_severity: str | None = None
    last_seen: str | None = None
    last_message: str | None = None
    last_message_worst: float | None = None
    last_message_worst_text: str | None = None
    worst: float | None = None
    worst_text: str | None = None
    worst_ds: str | None = None


def _states(open_incidents: Any) -> dict[str, Any]:
    if isinstance(open_incidents, Mapping):
        out = {}
        for k, v in open_incidents.items():
            if v is None or isinstance(v, str):
                out[k] = _Known(opened=v, thread_key=k, last_message=v)
            else:
                out[k] = v  # a watchkeeper.incidents.Incident (duck-typed: this module is pure)
        return out
    return {k: _Known(opened=None, thread_key=k) for k in open_incidents}


def _days(a: str, b: str) -> int:
    return (date.fromisoformat(b) - date.fromisoformat(a)).days


def worse(now: Any, before: Any, factor: float = WORSE_FACTOR) -> bool:
    """Whether `now` is materially worse than `before` (larger = worse): at least `factor`
    times it (any growth from zero or below)."""
    if not isinstance(now, (int, float)) or not isinstance(before, (int, float)):
        return False
    if now <= before:
        return False
    return before <= 0 or now >= factor * before


def message_type(spec: ModelSpec, ds: str, severity: str, worst: Any, state: Any,
                 backfill: bool = False) -> str:
    """The message a condition holding on `ds` deserves, given its open incident (None: none)."""
    if backfill:
        return "backfill"
    if state is None or not state.announced:
        return "onset"
    if state.sent_severity is not None and _RANK[severity] > _RANK.get(state.sent_severity, 0):
        return "escalation"
    if worse(worst, state.last_message_worst):
        return "update"
    every = spec.alerts.reminder_days
    if every and state.last_message and _days(state.last_message, ds) >= every:
        return "reminder"
    return "folded"


def build_alerts(
    spec: ModelSpec,
    ds: str,
    findings: DayFindings,
    open_incidents: Mapping[str, Any] | Iterable[str] = (),
    *,
    newest_ds: str | None = None,
    reports_url: str | None = None,
) -> list[Alert]:
    """The alerts of one model and day: one per condition holding today, plus recoveries.

    `open_incidents`: the model's incidents open before this day's alerts, by thread key:
    `watchkeeper.incidents.Incident`s (what `watchkeeper.alerts.incident_states` returns), or
    just the day each started. Each condition's row says what its incident needs (see the
    module docstring); an open incident whose kind was evaluated clean today and whose
    condition has not held for `alerts.resolve_after_days` gets its recovery. `newest_ds`: the
    newest day processed for the model; a day more than `spec.alerts.horizon_days` behind it is
    marked `backfill` (full messages, summarised in a digest instead of sent).
    """
    try:
        date.fromisoformat(ds)
    except (TypeError, ValueError):
        raise AlertInputError(f"build_alerts(ds): expected 'YYYY-MM-DD', got {ds!r}") from None
    if not isinstance(findings, DayFindings):
        raise AlertInputError(f"build_alerts(findings): expected DayFindings, got "
                              f"{type(findings).__name__}")
    states = _states(open_incidents)
    base = (reports_url or default_reports_url()).rstrip("/")
    drafts = [
        *_freshness(spec, ds, findings),
        *_expectations(spec, ds, findings),
        *_drift(spec, ds, findings.drift, "drift"),
        *_drift(spec, ds, findings.skew, "skew"),
        *_predictions(spec, ds, findings),
        *_concept(spec, ds, findings),
        *_quality(spec, ds, findings),
        *_budgets(spec, ds, findings),
        *_gate(spec, ds, findings),
        *_overrides(spec, ds, findings),
        *_label_lag(spec, ds, findings),
    ]
    backfill = is_backfill(ds, newest_ds, spec.alerts.horizon_days)
    out = []
    for d in drafts:
        w = d.facts.get("worst")
        if isinstance(w, float) and math.isfinite(w):
            d.facts["worst"] = float(f"{w:.6g}")  # no float noise in the incident's numbers
        if d.own_thread or d.closes_thread or d.kind not in INCIDENT_KINDS:
            out.append(_render(spec, ds, d, None, base, backfill))
            continue
        st = states.get(d.thread or thread_key(spec.name, d.kind, d.subject))
        kind = message_type(spec, ds, d.severity, d.facts.get("worst"), st, backfill)
        if kind in ("update", "reminder"):
            out.append(_render_line(spec, ds, d, st, kind, base))
        elif kind == "folded":
            out.append(_render_folded(spec, ds, d, st, base))
        else:
            out.append(_render(spec, ds, d, st, base, backfill, message=kind))
    current = {(d.kind, d.subject) for d in drafts}
    for key in sorted(states):
        model, kind, subject = split_thread_key(key)
        if model != spec.name or kind not in RECOVERABLE or not _cleared(kind, subject, findings, current):
            continue
        st = states[key]
        if st.last_seen is not None and _days(st.last_seen, ds) < spec.alerts.resolve_after_days:
            continue  # hysteresis: a re-fire before then continues the same incident
        draft = _closing_draft(spec, ds, key, st)
        if not st.announced:
            # nobody was told of it (silenced, or only listed in a backfill digest): its closing
            # row is recorded, not sent (see enqueue)
            draft.facts["unannounced"] = True
        out.append(_render(spec, ds, draft, st, base, backfill, message="recovery"))
    return out


def _closing_draft(spec: ModelSpec, ds: str, key: str, st: Any, *, reason: str | None = None,
                   by: str | None = None) -> _Draft:
    _model, kind, subject = split_thread_key(key)
    name = f"{_TITLES.get(kind, kind)} ({subject})"
    since = st.opened
    details = []
    if since:
        details.append(f"open since {since}, {_days_between(since, ds)} days")
    if st.last_seen:
        details.append(f"last held on {st.last_seen}")
    if st.worst_text:
        details.append(f"worst {st.worst_text}" + (f" on {st.worst_ds}" if st.worst_ds else ""))
    lasted = f" ({'; '.join(details)})" if details else ""
    if by:
        sentence = (f"{name} of {spec.name} was closed on {ds} by {by}: {reason}{lasted}. A "
                    "new occurrence opens a new incident.")
    else:
        sentence = f"{name} of {spec.name} has cleared on {ds}{lasted}; closing this incident."
    facts = {"recovered_kind": kind, "recovered_subject": subject, "since": since,
             "last_seen": st.last_seen, "worst": st.worst, "worst_text": st.worst_text}
    if by:
        facts.update(closed_by=by, reason=reason)
    return _Draft(kind="recovery", subject=f"{kind}:{subject}", severity="info",
                  title=f"{_TITLES['recovery']}: {name}" if not by else f"Closed: {name}",
                  sentence=sentence, facts=facts, thread=key, closes_thread=True)


def closing_alert(spec: ModelSpec, ds: str, incident: Any, *, reason: str, by: str,
                  reports_url: str | None = None) -> Alert:
    """The message that closes an open incident by hand (`watchkeeper.alerts.close_incidents`):
    a recovery in its thread, saying who closed it and why."""
    base = (reports_url or default_reports_url()).rstrip("/")
    draft = _closing_draft(spec, ds, incident.thread_key, incident, reason=reason, by=by)
    return _render(spec, ds, draft, incident, base, False, message="recovery")


def _render(spec: ModelSpec, run_ds: str, d: _Draft, st: Any, base: str, backfill: bool,
            message: str | None = None) -> Alert:
    """The full message of a draft; `st` is the open incident it belongs to (None: none)."""
    ds = d.ds or run_ds
    key = dedupe_key(spec.name, d.kind, d.subject, ds)
    thread = key if d.own_thread else (d.thread or thread_key(spec.name, d.kind, d.subject))
    since = st.opened if st is not None else None
    ongoing = st is not None and not d.closes_thread
    links = [(label, url.replace("{base}", base)) for label, url in d.links]
    links = [("Day report", f"{base}/{spec.name}/{ds}/index.html"),
             ("Model page", f"{base}/{spec.name}/index.html"), *links]
    steps = NEXT_STEPS.get(d.kind, [])
    if d.severity == "page":
        # A page-level day gets the triage page (watchkeeper.triage, written by the reports).
        links.append(("Triage checklist", f"{base}/{spec.name}/{ds}/triage.html"))
        steps = [TRIAGE_STEP, *steps]
    if spec.alerts.runbook_url:
        links.append(("Runbook", spec.alerts.runbook_url))
    mark = _SEVERITY_MARK[d.severity]
    header = _cut(f"{mark} · {spec.name} · {d.title}", _HEADER_MAX)
    when = f"Day {ds}"
    if ongoing:
        when += f" · ongoing since {since} (day {_days_between(since, ds)})" if since else " · ongoing"
        if message == "escalation":
            when += f" · escalated from {st.sent_severity} to {d.severity}"
    elif not d.closes_thread and not d.own_thread:
        when += " · new since this day"
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": header, "emoji": True}},
        {"type": "section", "text": {"type": "mrkdwn", "text": _cut(_esc(d.sentence), _SECTION_MAX)}},
    ]
    if d.numbers:
        blocks.append({"type": "section", "fields": [
            {"type": "mrkdwn", "text": _cut(f"*{_esc(label)}*\n{_esc(value)}", _FIELD_MAX)}
            for label, value in d.numbers[:_FIELDS_MAX]
        ]})
    blocks.append({"type": "context", "elements": [
        {"type": "mrkdwn", "text": _esc(f"{when} · severity {d.severity} · {d.kind}")}]})
    blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": _cut(
        " · ".join(f"<{url}|{_esc(label)}>" for label, url in links), _SECTION_MAX)}})
    if steps:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": _cut(
            "*Next steps*\n" + "\n".join(f"• {_esc(s)}" for s in steps), _SECTION_MAX)}})
    text_lines = [f"[{d.severity.upper()}] {spec.name}: {d.title}", d.sentence]
    text_lines += [f"- {label}: {value}" for label, value in d.numbers]
    text_lines.append(when)
    text_lines += [f"{label}: {url}" for label, url in links]
    if steps:
        text_lines.append("Next steps:")
        text_lines += [f"- {s}" for s in steps]
    facts = {**d.facts, "numbers": dict(d.numbers), "since": since or ds,
             "links": dict(links)}
    if message is not None:
        facts.update(message=message, incident_severity=d.severity, title=d.title,
                     sentence=d.sentence)
    return Alert(
        model=spec.name, kind=d.kind, subject=d.subject, ds=ds, severity=d.severity,
        dedupe_key=key, thread_key=thread, text="\n".join(text_lines), blocks=blocks,
        channel=channel_for(spec, d.severity), closes_thread=d.closes_thread, facts=facts,
        backfill=backfill, horizon_days=spec.alerts.horizon_days,
    )


def _render_line(spec: ModelSpec, ds: str, d: _Draft, st: Any, message: str, base: str) -> Alert:
    """A one-line thread reply of an ongoing incident (update or reminder): severity info, never
    a page; the condition's own severity stays in facts["incident_severity"]."""
    name = f"{_TITLES.get(d.kind, d.kind)} ({d.subject})"
    n = _days_between(st.opened, ds) if st.opened else None
    now_worst, now_text = d.facts.get("worst"), d.facts.get("worst_text")
    if message == "update":
        was = st.last_message_worst_text or _num(st.last_message_worst)
        line = (f"{spec.name} · {name} is worse: {now_text} (at the last message on "
                f"{st.last_message}: {was})" + (f" · day {n} since {st.opened}" if n else ""))
    else:
        if st.worst is None or (isinstance(now_worst, (int, float)) and now_worst > st.worst):
            worst_text, worst_ds = now_text, ds
        else:
            worst_text, worst_ds = st.worst_text, st.worst_ds
        line = (f"{spec.name} · {name} still ongoing: {n or '?'} days, worst {worst_text or 'n/a'}"
                + (f" (on {worst_ds})" if worst_ds else ""))
    day_url = f"{base}/{spec.name}/{ds}/index.html"
    key = dedupe_key(spec.name, d.kind, d.subject, ds)
    return Alert(
        model=spec.name, kind=d.kind, subject=d.subject, ds=ds, severity="info",
        dedupe_key=key, thread_key=d.thread or thread_key(spec.name, d.kind, d.subject),
        text=f"[{message.upper()}] {line}",
        blocks=[{"type": "section", "text": {"type": "mrkdwn", "text": _cut(
            f"*{message.capitalize()}* · {_esc(line)} · <{day_url}|Day report>", _SECTION_MAX)}}],
        channel=channel_for(spec, "info"),
        facts={**d.facts, "message": message, "incident_severity": d.severity,
               "title": d.title, "since": st.opened or ds, "links": {"Day report": day_url}},
        horizon_days=spec.alerts.horizon_days,
    )


def _render_folded(spec: ModelSpec, ds: str, d: _Draft, st: Any, base: str) -> Alert:
    """The day's record of a condition whose incident needs no message today (never sent)."""
    key = dedupe_key(spec.name, d.kind, d.subject, ds)
    text = (f"[FOLDED] {spec.name}: {d.title} on {ds}: {d.facts.get('worst_text') or 'holds'}; "
            f"recorded in the incident open since {st.opened or '?'} (last message "
            f"{st.last_message or '?'}), not sent")
    return Alert(
        model=spec.name, kind=d.kind, subject=d.subject, ds=ds, severity=d.severity,
        dedupe_key=key, thread_key=d.thread or thread_key(spec.name, d.kind, d.subject),
        text=text, blocks=[], channel=channel_for(spec, d.severity),
        facts={**d.facts, "message": "folded", "incident_severity": d.severity,
               "title": d.title, "since": st.opened or ds,
               "day_report": f"{base}/{spec.name}/{ds}/index.html"},
        horizon_days=spec.alerts.horizon_days,
    )


# --------------------------------------------------------------------------------------------
# Grouping: the announcements of one run that share a severity -> one message
# --------------------------------------------------------------------------------------------

_GROUP_SHOWN = 20  # members listed in full; the rest are named in one line


def group_subject(severity: str, member_keys: Iterable[str]) -> str:
    """Keyed by the set of members it carries (like the digest): the same members are one row."""
    keys = sorted(member_keys)
    return f"{severity}-{hashlib.sha1(chr(10).join(keys).encode()).hexdigest()[:12]}"


def build_group(spec: ModelSpec, ds: str, members: Sequence[Alert], *,
                reports_url: str | None = None) -> Alert:
    """ONE message for the announcements (onsets, escalations) of one run and day that share a
    severity: each incident with its title, sentence, key numbers and links. Later updates of
    those incidents reply in this message's thread."""
    if len(members) < 2:
        raise AlertInputError("build_group: a group needs at least two announcements")
    severities = {m.severity for m in members}
    if len(severities) != 1:
        raise AlertInputError(f"build_group: members of one group share a severity, got "
                              f"{sorted(severities)}")
    severity = severities.pop()
    base = (reports_url or default_reports_url()).rstrip("/")
    members = sorted(members, key=lambda m: (m.kind, m.subject))
    subject = group_subject(severity, (m.dedupe_key for m in members))
    key = dedupe_key(spec.name, "group", subject, ds)
    n = len(members)
    by_kind: dict[str, int] = {}
    for m in members:
        by_kind[_TITLES.get(m.kind, m.kind)] = by_kind.get(_TITLES.get(m.kind, m.kind), 0) + 1
    kinds = ", ".join(f"{k.lower()} ×{c}" if c > 1 else k.lower() for k, c in by_kind.items())
    escalations = sum(1 for m in members if m.facts.get("message") == "escalation")
    sentence = (f"{n} incidents of {spec.name} need attention on {ds} ({kinds})"
                + (f", {escalations} of them escalated" if escalations else "")
                + ". Each is listed below; their updates and recoveries follow in this thread.")
    title = f"{n} incidents" + (f": {kinds}" if len(kinds) < 80 else "")
    mark = _SEVERITY_MARK[severity]
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text",
                                    "text": _cut(f"{mark} · {spec.name} · {title}", _HEADER_MAX),
                                    "emoji": True}},
        {"type": "section", "text": {"type": "mrkdwn", "text": _cut(_esc(sentence), _SECTION_MAX)}},
    ]
    text_lines = [f"[{severity.upper()}] {spec.name}: {title}", sentence]
    for m in members[:_GROUP_SHOWN]:
        f = m.facts
        mtitle = str(f.get("title") or m.subject)
        esc_note = " (escalated)" if f.get("message") == "escalation" else ""
        numbers = list((f.get("numbers") or {}).items())[:4]
        links = [(lbl, url) for lbl, url in (f.get("links") or {}).items()
                 if lbl not in ("Day report", "Model page", "Runbook", "Triage checklist")][:2]
        body = (f"*{_esc(mtitle)}*{esc_note}\n{_esc(str(f.get('sentence') or ''))}"
                + ("\n" + " · ".join(f"{_esc(str(k))}: {_esc(str(v))}" for k, v in numbers)
                   if numbers else "")
                + ("\n" + " · ".join(f"<{url}|{_esc(lbl)}>" for lbl, url in links) if links else ""))
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": _cut(body, _SECTION_MAX)}})
        text_lines.append(f"- {mtitle}{esc_note}: {f.get('sentence') or ''}"
                          + (" (" + "; ".join(f"{k}: {v}" for k, v in numbers) + ")" if numbers else "")
                          + "".join(f" {lbl}: {url}" for lbl, url in links))
    if n > _GROUP_SHOWN:
        rest = ", ".join(str(m.facts.get("title") or m.subject) for m in members[_GROUP_SHOWN:])
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": _cut(
            _esc(f"… and {n - _GROUP_SHOWN} more: {rest}"), _SECTION_MAX)}})
        text_lines.append(f"… and {n - _GROUP_SHOWN} more: {rest}")
    links = [("Day report", f"{base}/{spec.name}/{ds}/index.html"),
             ("Model page", f"{base}/{spec.name}/index.html")]
    steps = []
    if severity == "page":
        links.append(("Triage checklist", f"{base}/{spec.name}/{ds}/triage.html"))
        steps = [TRIAGE_STEP]
    if spec.alerts.runbook_url:
        links.append(("Runbook", spec.alerts.runbook_url))
    when = f"Day {ds} · severity {severity} · {n} incidents grouped"
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": _esc(when)}]})
    blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": _cut(
        " · ".join(f"<{url}|{_esc(label)}>" for label, url in links), _SECTION_MAX)}})
    if steps:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": _cut(
            "*Next steps*\n" + "\n".join(f"• {_esc(s)}" for s in steps), _SECTION_MAX)}})
    text_lines.append(when)
    text_lines += [f"{label}: {url}" for label, url in links]
    if steps:
        text_lines += ["Next steps:", *[f"- {s}" for s in steps]]
    return Alert(
        model=spec.name, kind="group", subject=subject, ds=ds, severity=severity,
        dedupe_key=key, thread_key=key, text="\n".join(text_lines), blocks=blocks,
        channel=channel_for(spec, severity),
        facts={"message": "group", "incident_severity": severity, "links": dict(links),
               "members": [{"dedupe_key": m.dedupe_key, "kind": m.kind, "subject": m.subject,
                            "title": m.facts.get("title"), "message": m.facts.get("message")}
                           for m in members]},
        horizon_days=spec.alerts.horizon_days,
    )


def build_digest(spec: ModelSpec, rows: Sequence[Any], *, reports_url: str | None = None) -> Alert:
    """ONE message summarising backfilled alerts (rows with model, kind, subject, ds, severity,
    dedupe_key). Keyed by the set it summarises, so rolling up the same rows twice is one row."""
    if not rows:
        raise AlertInputError("build_digest: no rows to summarise")
    base = (reports_url or default_reports_url()).rstrip("/")
    keys = sorted(r.dedupe_key for r in rows)
    digest_id = hashlib.sha1("\n".join(keys).encode()).hexdigest()[:12]
    days = sorted({r.ds for r in rows})
    by_kind: dict[str, int] = {}
    for r in rows:
        by_kind[r.kind] = by_kind.get(r.kind, 0) + 1
    sentence = (f"Re-processing past days of {spec.name} ({days[0]} … {days[-1]}) produced "
                f"{len(rows)} alert{'s' if len(rows) != 1 else ''}; they are recorded and listed "
                f"here instead of paging, because those days are more than "
                f"{spec.alerts.horizon_days} days behind the newest processed day.")
    listed = [f"{r.ds} · {_TITLES.get(r.kind, r.kind)} · {r.subject} ({r.severity})"
              for r in sorted(rows, key=lambda r: (r.ds, r.kind, r.subject))]
    draft = _Draft(
        kind="digest", subject=f"backfill-{digest_id}", severity="info",
        title=f"{_TITLES['digest']}: {len(rows)} alerts, {len(days)} days",
        sentence=sentence,
        numbers=[(_TITLES.get(k, k), str(n)) for k, n in sorted(by_kind.items())][:_FIELDS_MAX],
        facts={"alerts": keys, "days": days, "by_kind": by_kind}, ds=days[-1], own_thread=True,
    )
    alert = _render(spec, days[-1], draft, None, base, backfill=False)
    more = f"\n… and {len(listed) - 30} more" if len(listed) > 30 else ""
    summary = "\n".join(listed[:30]) + more
    blocks = list(alert.blocks)
    blocks.insert(3, {"type": "section", "text": {"type": "mrkdwn",
                                                  "text": _cut(_esc(summary), _SECTION_MAX)}})
    return replace(alert, blocks=blocks, text=alert.text + "\nAlerts:\n" + summary)


# --------------------------------------------------------------------------------------------
# Converters from the core's result types (duck-typed: no heavy imports here)
# --------------------------------------------------------------------------------------------


def drift_findings(result: Any) -> list[DriftFinding]:
    """DriftFinding per row of a `watchkeeper.drift.DriftResult` (or any rows with feature,
    drifted, score, threshold, method, segment)."""
    rows = getattr(result, "rows", result)
    return [DriftFinding(feature=r.feature, drifted=bool(r.drifted), score=r.score,
                         threshold=r.threshold, method=getattr(r, "method", None),
                         segment=getattr(r, "segment", None)) for r in rows]


def prediction_findings(report: Any) -> list[PredictionFinding]:
    """PredictionFinding per monitor of a `watchkeeper.predictions.PredictionReport`."""
    monitors = getattr(report, "monitors", report)
    return [PredictionFinding(monitor=m.name, alert=bool(m.alert), value=m.value,
                              baseline=m.baseline, lower=m.lower, upper=m.upper,
                              message=getattr(m, "message", "") or "") for m in monitors]


def budget_findings(snapshots: Iterable[Any], spec: ModelSpec | None = None) -> list[BudgetFinding]:
    """BudgetFinding per `watchkeeper.slo.BudgetSnapshot` (objective from the spec if given)."""
    slos = {s.name: s for s in spec.slos} if spec is not None else {}
    out = []
    for s in snapshots:
        d = s if isinstance(s, Mapping) else s.to_dict()
        slo = slos.get(d["slo"])
        out.append(BudgetFinding(
            slo=d["slo"], alert=d.get("alert"), budget_remaining=d.get("budget_remaining"),
            burn_1d=d.get("burn_1d"), burn_3d=d.get("burn_3d"), burn_7d=d.get("burn_7d"),
            objective=slo.objective if slo else None,
            window_days=slo.window_days if slo else None))
    return out


def expectation_findings(results: Iterable[Any]) -> list[ExpectationFinding]:
    """ExpectationFinding per stored expectation (`StoredExpectation`: stage, expectation_type,
    column, success, observed, unexpected_share, unexpected_count)."""
    return [ExpectationFinding(stage=r.stage, expectation=r.expectation_type, column=r.column,
                               success=bool(r.success), observed=r.observed,
                               unexpected_share=r.unexpected_share,
                               unexpected_count=r.unexpected_count) for r in results]


# --------------------------------------------------------------------------------------------
# Shadow and canary rollouts (issue 10): one message when a comparison turns decisive
# --------------------------------------------------------------------------------------------

_TITLES["rollout_decision"] = "Rollout decision"
NEXT_STEPS["rollout_decision"] = [
    "Read the evidence on the model page (Rollout section) or with `watchkeeper compare MODEL`.",
    "Promote: the rollout DAG moves traffic to the next stage once the error-budget gate is open.",
    "Rollback: the rollout DAG drains the candidate's traffic step by step; find the cause "
    "(serving path, features, calibration) before a new candidate starts in shadow again.",
]


@dataclass(frozen=True)
class RolloutFinding:
    """A comparison of a candidate with the incumbent that decided promote or rollback."""

    candidate: str
    incumbent: str | None
    stage: str
    decision: Literal["promote", "rollback"]
    reasons: tuple[str, ...] = ()
    numbers: tuple[tuple[str, str], ...] = ()


def rollout_alerts(spec: ModelSpec, ds: str, f: RolloutFinding, *, newest_ds: str | None = None,
                   reports_url: str | None = None) -> list[Alert]:
    """The message for a decisive comparison: a rollback is a ticket (traffic is drained), a
    promotion is information. Its own thread: each stage's decision is a one-off."""
    if f.decision not in ("promote", "rollback"):
        raise AlertInputError(f"RolloutFinding.decision: expected promote or rollback, got {f.decision!r}")
    inc = f.incumbent or "the incumbent"
    if f.decision == "rollback":
        sentence = (f"Candidate {f.candidate} of {spec.name} is worse than {inc} by more than its "
                    f"margin at stage {f.stage}: roll back.")
    else:
        sentence = (f"Candidate {f.candidate} of {spec.name} is not worse than {inc} by more than "
                    f"its margin at stage {f.stage}, with enough labels: ready to promote.")
    draft = _Draft(
        kind="rollout_decision", subject=f"{f.candidate}@{f.stage}",
        severity="ticket" if f.decision == "rollback" else "info",
        title=f"{_TITLES['rollout_decision']}: {f.decision} {f.candidate} ({f.stage})",
        sentence=sentence,
        numbers=[*f.numbers[: _FIELDS_MAX - 1], *[("why", _cut(r, 300)) for r in f.reasons[:1]]],
        facts={"candidate": f.candidate, "incumbent": f.incumbent, "stage": f.stage,
               "decision": f.decision, "reasons": list(f.reasons)},
        own_thread=True,
    )
    base = (reports_url or default_reports_url()).rstrip("/")
    backfill = is_backfill(ds, newest_ds, spec.alerts.horizon_days)
    return [_render(spec, ds, draft, None, base, backfill)]


# --------------------------------------------------------------------------------------------
# Label lag: labels arriving later than the model's own normal (watchkeeper.labels
# .label_lag_check). A ticket per labels run while it lasts; recovered by the first run that
# finds every prediction-day back within the normal timing.
# --------------------------------------------------------------------------------------------

_TITLES["label_lag"] = "Labels arriving late"
NEXT_STEPS["label_lag"] = [
    "Check the label pipeline upstream: did the label job run, is its backlog growing, did its "
    "source, schedule or join key change?",
    "On the model page, look at label coverage and provisional days: which prediction-days are "
    "behind and since when.",
    "Until labels catch up, those days' quality stays provisional: quality alerts come late and the "
    "gate turns inconclusive when too few days are mature; plan releases accordingly.",
    "If the slower pace is the new normal, agree it with the label owner and set "
    "labels.expected_maturity_days in the spec.",
]


@dataclass(frozen=True)
class LabelLagDay:
    """A prediction-day behind the normal label timing: not yet at `milestone` (its coverage)
    at `age_days`, while healthy days reach it by `normal_days`."""

    prediction_ds: str
    age_days: int
    coverage: float
    milestone: Literal["halfway", "mature"]
    milestone_coverage: float
    normal_days: float


@dataclass(frozen=True)
class LabelLagFinding:
    """The label-lag check of a labels run that could be evaluated (a normal timing is known);
    no `days` means every prediction-day is within the normal timing."""

    days: Sequence[LabelLagDay] = ()
    maturity_days: float | None = None
    halfway_days: float | None = None
    maturity_threshold: float = 0.9
    tolerance_days: int = 1
    normal: str = ""  # where the normal timing comes from, in words

    @property
    def late(self) -> bool:
        return bool(self.days)


def _milestone_text(milestone: str, coverage: float) -> str:
    return f"{'half-way' if milestone == 'halfway' else 'mature'} ({_pct(coverage)})"


def _label_lag(spec: ModelSpec, ds: str, f: DayFindings) -> list[_Draft]:
    lag = f.label_lag
    if lag is None or not lag.days:
        return []
    for d in lag.days:
        if not isinstance(d, LabelLagDay):
            raise AlertInputError(
                f"DayFindings.label_lag.days: expected LabelLagDay items, got {type(d).__name__}")
    days = sorted(lag.days, key=lambda d: d.prediction_ds)
    first, n = days[0], len(days)
    sentence = (
        f"Labels of {spec.name} are arriving later than usual: {n} prediction-day"
        f"{'s are' if n != 1 else ' is'} behind the model's normal label timing as of {ds}. The "
        f"oldest, {first.prediction_ds}, has {_pct(first.coverage)} of its labels at "
        f"{first.age_days} days old; healthy days are "
        f"{_milestone_text(first.milestone, first.milestone_coverage)} by "
        f"{_num(first.normal_days)} days. Quality of these days stays provisional until they "
        "mature, so quality alerts and the gate see problems late.")
    shown = _FIELDS_MAX - 2  # room for "more" and the normal timing
    numbers = [(f"{d.prediction_ds} (age {d.age_days} d)",
                f"coverage {_pct(d.coverage)}; {_milestone_text(d.milestone, d.milestone_coverage)}"
                f" normally by {_num(d.normal_days)} d (+{lag.tolerance_days} d tolerance)")
               for d in days[:shown]]
    if n > shown:
        numbers.append(("more", f"{n - shown} further prediction-days behind"))
    normal = [f"half-way ({_pct(lag.maturity_threshold / 2)}) by {_num(lag.halfway_days)} d"
              if lag.halfway_days is not None else None,
              f"mature ({_pct(lag.maturity_threshold)}) by {_num(lag.maturity_days)} d"
              if lag.maturity_days is not None else None]
    numbers.append(("normal timing", _cut("; ".join(x for x in [*normal, lag.normal] if x), 500)))
    return [_Draft(
        kind="label_lag", subject="labels", severity="ticket",
        title=f"{_TITLES['label_lag']}: {n} prediction-day{'s' if n != 1 else ''} behind since "
              f"{first.prediction_ds}",
        sentence=sentence, numbers=numbers,
        facts={"first_late_day": first.prediction_ds, "late_days": [asdict(d) for d in days],
               "maturity_days": lag.maturity_days, "halfway_days": lag.halfway_days,
               "tolerance_days": lag.tolerance_days, "onset": first.prediction_ds,
               "worst": float(n),
               "worst_text": f"{n} prediction-day{'s' if n != 1 else ''} behind, the oldest "
                             f"{first.prediction_ds} at {_pct(first.coverage)} of its labels"},
    )]
