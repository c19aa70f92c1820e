"""`watchkeeper backtest`: replay the incident library through the current monitors.

Each folder of include/incidents/ is a past incident: a small data snapshot, the model spec it
is replayed with, and `incident.yaml` saying what must be detected (stage, subject, severity) and
by which day of the incident. The replay runs, day by day in a temporary WATCHKEEPER_HOME, the
same step functions the DAG tasks run (`watchkeeper.airflow.runtime` is a thin wrapper around
them): load, both suites, drift, skew, predictions, SLIs and budgets, then the alert task's
`day_alerts.raise_for`; and, when the spec has labels, the labels DAG's ingest, restate and alert.
Airflow itself is not started: `dag.test()` costs seconds a day and adds nothing the monitors see.

What was detected is read back from the store afterwards. An expectation is met on a day when
both hold: the store has the finding for that exact subject (the failed expectation on that
column, the drifted feature or feature-and-segment, the prediction monitor that alerted, ...) and
that day's alerts (wk_outbox) carry the row of the matching condition (kind, and the feature or
monitor for drift, skew and predictions) at the expected severity or above. A finding nobody is
told about does not count; neither does an alert about something else. An ongoing incident
still has its row each day (folded, or a one-line update sent as info): the condition's own
severity (facts["incident_severity"]) is what is compared.

Verdicts: caught (first detection on or before `by_day`), late (after it), missed (never within the
replay), error (the monitors crashed on the incident's data: that is a failure too). Detections
before the onset are reported as noise, not counted.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from watchkeeper import paths

STAGES = ("ingestion", "features", "drift", "skew", "predictions", "labels", "slo")
SEVERITY_RANK = {"info": 0, "ticket": 1, "page": 2}
PREDICTION_MONITORS = ("positive_rate", "class_mix", "mean_prediction", "score_drift",
                       "distinct_share", "top_item_entropy", "stagnation")
LABEL_SUBJECTS = ("concept_drift", "label_lag")
# The alert kind that tells a person about a finding of each stage.
ALERT_KIND = {"ingestion": "expectation_failed", "features": "expectation_failed",
              "drift": "drift", "skew": "skew", "predictions": "prediction_anomaly",
              "slo": "budget_burn"}


class IncidentError(Exception):
    """A malformed incident: the message names the file, the field and why."""


def library_dir() -> Path:
    return paths.project_root() / "include" / "incidents"


# ----- incident.yaml --------------------------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Replay(_Strict):
    first: date
    last: date

    @model_validator(mode="after")
    def _order(self):
        if self.last < self.first:
            raise ValueError(f"last {self.last} is before first {self.first}")
        return self


class Expectation(_Strict):
    stage: Literal["ingestion", "features", "drift", "skew", "predictions", "labels", "slo"]
    subject: str = Field(min_length=1, description="column, feature, monitor, label check or SLO")
    segment: str | None = Field(default=None, description="drift/skew: column=value")
    severity: Literal["info", "ticket", "page"] = "ticket"
    by_day: int = Field(ge=1, description="day of the incident (onset = day 1)")
    why: str = ""

    def describe(self) -> str:
        seg = f" [{self.segment}]" if self.segment else ""
        return f"{self.stage} {self.subject}{seg} {self.severity} by day {self.by_day}"


class DayRange(_Strict):
    first: date
    last: date

    @model_validator(mode="after")
    def _order(self):
        if self.last < self.first:
            raise ValueError(f"last {self.last} is before first {self.first}")
        return self


class Limits(_Strict):
    """What the replay's healthy days may cost: a monitor that catches the incident by paging
    every day, or by keeping the gate closed, fails its backtest too."""

    healthy: list[DayRange] | None = Field(
        default=None, description="the healthy days (default: the replayed days before onset)")
    gate_open_share: float | None = Field(
        default=None, ge=0, le=1, description="least share of healthy days whose model gate is open")
    messages_per_30_healthy_days: float | None = Field(
        default=None, ge=0, description="most messages sent per 30 healthy days")
    pages_on_healthy_days: int | None = Field(
        default=None, ge=0, description="most page messages on healthy days")
    max_pages: int | None = Field(default=None, ge=0, description="most page messages in all")


class IncidentDoc(_Strict):
    title: str = Field(min_length=1)
    origin: str = ""
    model: str = Field(min_length=1, description="the spec <model>.yaml in the incident folder")
    replay: Replay
    onset: date
    expect: list[Expectation] = Field(min_length=1)
    limits: Limits | None = None
    notes: str = ""


@dataclass(frozen=True)
class Incident:
    name: str
    folder: Path
    doc: IncidentDoc
    spec: object  # ModelSpec, loaded from the folder (paths resolve once copied into a home)

    @property
    def days(self) -> list[str]:
        n = (self.doc.replay.last - self.doc.replay.first).days
        return [(self.doc.replay.first + timedelta(days=i)).isoformat() for i in range(n + 1)]


def _field(loc: tuple) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else ("." if out else "") + str(part)
    return out or "(top level)"


def load_incident(folder: Path) -> Incident:
    """Read and check one incident folder; IncidentError says which file, field and why."""
    import yaml

    from watchkeeper.spec import SpecError, load_spec

    path = folder / "incident.yaml"
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise IncidentError(f"{path}: file not found (every incident folder needs one)") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise IncidentError(f"{path}: {where}not valid YAML: "
                            f"{getattr(err, 'problem', None) or err}") from None
    if not isinstance(raw, dict):
        raise IncidentError(f"{path}: the file must hold a YAML mapping (title, model, replay, "
                            "onset, expect)")
    try:
        doc = IncidentDoc.model_validate(raw)
    except ValidationError as err:
        lines = []
        for e in err.errors():
            msg = e["msg"].removeprefix("Value error, ")
            if e["type"] == "extra_forbidden":
                msg = "unknown field (check the spelling; see README 'Incident library')"
            elif e["type"] == "missing":
                msg = "required field is missing"
            lines.append(f"  - {_field(e['loc'])}: {msg}")
        raise IncidentError(f"{path}: invalid incident\n" + "\n".join(lines)) from None

    spec_file = folder / f"{doc.model}.yaml"
    if not spec_file.exists():
        raise IncidentError(f"{path}: model: {doc.model!r} has no spec {spec_file.name} in "
                            f"{folder}")
    try:
        spec = load_spec(spec_file)
    except SpecError as err:
        raise IncidentError(f"{path}: model: its spec is invalid:\n{err}") from None

    problems = []
    if not doc.replay.first <= doc.onset <= doc.replay.last:
        problems.append(("onset", f"{doc.onset} is outside the replay {doc.replay.first} .. "
                                  f"{doc.replay.last}"))
    last_day = (doc.replay.last - doc.onset).days + 1
    for i, e in enumerate(doc.expect):
        where = f"expect[{i}]"
        if e.by_day > last_day:
            problems.append((f"{where}.by_day", f"day {e.by_day} is after the replay's last day "
                                                f"(day {last_day} of the incident)"))
        reason = _subject_problem(spec, e)
        if reason:
            problems.append((f"{where}.subject", reason))
        if e.segment is not None:
            col, sep, _value = e.segment.partition("=")
            if e.stage not in ("drift", "skew"):
                problems.append((f"{where}.segment", "only drift and skew are measured per segment"))
            elif not sep or col not in spec.segments:
                problems.append((f"{where}.segment", f"{e.segment!r} must be column=value with a "
                                                     f"segment column of the spec "
                                                     f"({', '.join(spec.segments) or 'none'})"))
    for i, r in enumerate((doc.limits.healthy or []) if doc.limits else []):
        if r.first < doc.replay.first or r.last > doc.replay.last:
            problems.append((f"limits.healthy[{i}]", f"{r.first} .. {r.last} is not inside the "
                                                     f"replay {doc.replay.first} .. "
                                                     f"{doc.replay.last}"))
    if problems:
        raise IncidentError(f"{path}: invalid incident\n"
                            + "\n".join(f"  - {f}: {r}" for f, r in problems))
    return Incident(name=folder.name, folder=folder, doc=doc, spec=spec)


def _subject_problem(spec, e: Expectation) -> str | None:
    features = [f.name for f in spec.features]
    columns = set(features) | {c for c in (spec.columns.id, spec.columns.timestamp,
                                           spec.columns.model_version, spec.prediction.score,
                                           spec.prediction.label, spec.prediction.item,
                                           spec.prediction.query_group) if c}
    if e.stage in ("ingestion", "features"):
        extra = ("table", "freshness") if e.stage == "ingestion" else ("table",)
        if e.subject not in columns and e.subject not in extra:
            return (f"{e.subject!r} is not a column of the spec; use a column "
                    f"({', '.join(sorted(columns))}) or {' / '.join(extra)}")
    elif e.stage in ("drift", "skew"):
        if e.subject not in features:
            return f"{e.subject!r} is not a feature of the spec ({', '.join(features)})"
    elif e.stage == "predictions":
        if e.subject not in PREDICTION_MONITORS:
            return f"{e.subject!r} is not a prediction monitor ({', '.join(PREDICTION_MONITORS)})"
    elif e.stage == "labels":
        if spec.labels is None:
            return "the spec has no labels, so nothing is measured at the labels stage"
        quality = [s.sli for s in spec.slos if s.quality]
        if e.subject not in (*LABEL_SUBJECTS, *quality):
            return (f"{e.subject!r} is not a labels check; use "
                    f"{', '.join((*LABEL_SUBJECTS, *quality))}")
    elif e.stage == "slo":
        names = [s.name for s in spec.slos]
        if e.subject not in names:
            return f"{e.subject!r} is not an SLO of the spec ({', '.join(names)})"
    return None


def discover(library: Path | None = None, only: list[str] | None = None) -> list[Path]:
    lib = Path(library) if library else library_dir()
    if not lib.is_dir():
        raise IncidentError(f"{lib}: no incident library here (a folder of incident folders)")
    folders = sorted(p for p in lib.iterdir() if p.is_dir() and not p.name.startswith((".", "_")))
    if only:
        names = {p.name for p in folders}
        unknown = [n for n in only if n not in names]
        if unknown:
            raise IncidentError(f"unknown incident {', '.join(unknown)} in {lib}; incidents: "
                                f"{', '.join(sorted(names)) or 'none'}")
        folders = [p for p in folders if p.name in only]
    if not folders:
        raise IncidentError(f"{lib}: no incidents (each is a folder with an incident.yaml)")
    return folders


# ----- replay ---------------------------------------------------------------------------------


@contextmanager
def _environment(home: Path):
    """The monitors find their home, specs and store through the environment, as in a task."""
    keys = {"WATCHKEEPER_HOME": str(home), "WATCHKEEPER_MODELS_DIR": str(home / "incident"),
            "WATCHKEEPER_DB_URL": f"sqlite:///{home / 'watchkeeper.db'}",
            # Evidently's pages are for people; the verdicts are the same without them.
            "WATCHKEEPER_EVIDENTLY_PAGES": "on_finding",
            "WATCHKEEPER_SITE_REBUILD": "end"}
    saved = {k: os.environ.get(k) for k in keys}
    os.environ.update(keys)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def replay(incident: Incident, workdir: Path, gates: dict[str, str] | None = None):
    """Run every replay day through the monitors in a fresh home; returns the opened store.
    `gates`, when given, receives each day's model-scope gate decision as of that day (asked
    after the day's runs, as a deploy pipeline would ask that evening; not audited)."""
    from watchkeeper import analysis, day_alerts, gatekeeper, monitor
    from watchkeeper.spec import get_spec
    from watchkeeper.store import open_store

    home = workdir / incident.name
    shutil.copytree(incident.folder, home / "incident")
    with _environment(home):
        spec = get_spec(incident.doc.model)  # paths now resolve under this home
        store = open_store()
        for ds in incident.days:
            loaded = monitor.load(spec, ds, store)
            for stage in ("ingestion", "features"):
                try:
                    monitor.check(spec, ds, stage, store, loaded)
                except monitor.ConfigurationError as err:
                    raise IncidentError(f"{incident.folder}: configuration error in the "
                                        f"{stage} suite on {ds}: {err}") from None
            analysis.analyze_drift(spec, ds, store, "drift")
            analysis.analyze_drift(spec, ds, store, "skew")
            analysis.analyze_predictions(spec, ds, store)
            monitor.record_slis(spec, ds, store)
            day_alerts.raise_for(spec, ds, store, "monitor")
            if spec.labels is not None:
                from watchkeeper import label_pipeline

                label_pipeline.ingest(spec, ds)
                label_pipeline.restate(spec, ds, store)
                day_alerts.raise_for(spec, ds, store, "labels")
            if gates is not None:
                gates[ds] = gatekeeper.ask(spec.name, "model", as_of=ds, store=store,
                                           record=False).decision
    return store


# ----- matching -------------------------------------------------------------------------------


@dataclass
class Outcome:
    stage: str
    subject: str
    segment: str | None
    severity: str
    by_day: int
    verdict: str  # caught | late | missed | error
    detected_day: int | None = None
    detected_ds: str | None = None
    alert: str | None = None  # "<severity> <kind>" of the alert that told a person
    noise_before_onset: list[str] = field(default_factory=list)

    def expected_text(self) -> str:
        seg = f" [{self.segment}]" if self.segment else ""
        return f"{self.stage} {self.subject}{seg} ({self.severity}, by day {self.by_day})"


@dataclass
class IncidentResult:
    name: str
    title: str
    model: str
    onset: str
    days: int
    seconds: float
    outcomes: list[Outcome]
    error: str | None = None
    measures: dict = field(default_factory=dict)
    limits: list[dict] = field(default_factory=list)  # {name, limit, value, ok}

    @property
    def within_limits(self) -> bool:
        return all(x["ok"] for x in self.limits)

    def to_dict(self) -> dict:
        return asdict(self)


def _finding_days(spec, e: Expectation, store) -> set[str]:
    """Days on which the store holds the finding itself, for exactly this subject."""
    model = spec.name
    if e.stage in ("ingestion", "features"):
        if e.subject == "freshness":
            return {p.ds for p in store.partitions(model)
                    if p.status in ("late", "missing", "unreadable", "empty")}
        column = None if e.subject == "table" else e.subject
        return {r.ds for r in store.expectation_results(model)
                if r.stage == e.stage and not r.success and r.column == column}
    if e.stage in ("drift", "skew"):
        subject = e.subject + (f"|{e.segment}" if e.segment else "")
        return {m.ds for m in store.metrics(model, e.stage)
                if m.subject == subject and (m.payload or {}).get("drifted")}
    if e.stage == "predictions":
        return {m.ds for m in store.metrics(model, "prediction")
                if m.subject == e.subject and (m.payload or {}).get("alert")}
    return set()  # labels and slo: the alert is the finding (see _alert_matches)


def _severity(row) -> str:
    """The condition's severity on the day: an incident's one-line updates and reminders are
    sent as info, and its folded rows are not sent, but each still records the condition."""
    return (row.facts or {}).get("incident_severity") or row.severity


def _alert_matches(e: Expectation, row) -> bool:
    if SEVERITY_RANK.get(_severity(row), -1) < SEVERITY_RANK[e.severity]:
        return False
    if e.stage in ("ingestion", "features"):
        if e.subject == "freshness":
            return row.kind == "freshness"
        return row.kind == "expectation_failed" and row.subject == e.stage
    if e.stage == "labels":
        if e.subject == "concept_drift":
            return row.kind == "concept_drift"
        if e.subject == "label_lag":
            return row.kind == "label_lag"
        return row.kind == "quality_below_slo" and row.subject == e.subject
    if e.stage == "slo":
        return row.kind == "budget_burn" and row.subject == e.subject
    if e.stage in ("drift", "skew", "predictions"):
        # one condition per feature (segments fold into it) and per prediction monitor
        return row.kind == ALERT_KIND[e.stage] and row.subject == e.subject
    return row.kind == ALERT_KIND[e.stage]


# A row somebody was told about: sent (or on its way), or carried by a group message.
TOLD_STATUSES = (*("pending", "sending", "sent", "failed"), "grouped")


def _told(rows, onset: date):
    """Whether a row told a person about its condition since the onset: the row itself was sent
    (or grouped into a sent message), or it is folded into an incident whose thread got a message
    on or after the onset and not after the row. A folded row of an incident announced before
    the onset (noise that never cleared) does not count: nobody was told about the incident."""
    told_days: dict[str, list[str]] = {}
    for r in rows:
        if r.status in TOLD_STATUSES:
            told_days.setdefault(r.thread_key, []).append(r.ds)

    def told(r) -> bool:
        if r.status in TOLD_STATUSES:
            return True
        if r.status != "folded":
            return False
        return any(onset.isoformat() <= d <= r.ds for d in told_days.get(r.thread_key, ()))

    return told


def match(incident: Incident, store) -> list[Outcome]:
    spec, doc = incident.spec, incident.doc
    onset = doc.onset
    everything = store.outbox(spec.name)
    told = _told(everything, onset)
    rows = [r for r in everything if r.kind != "recovery" and told(r)]
    out = []
    for e in doc.expect:
        needs_finding = e.stage not in ("labels", "slo")
        found = _finding_days(spec, e, store) if needs_finding else None
        hits: dict[str, str] = {}
        for r in rows:
            if r.ds in hits or not _alert_matches(e, r):
                continue
            if found is not None and r.ds not in found:
                continue
            hits[r.ds] = f"{_severity(r)} {r.kind}"
        after = sorted(d for d in hits if date.fromisoformat(d) >= onset)
        o = Outcome(stage=e.stage, subject=e.subject, segment=e.segment, severity=e.severity,
                    by_day=e.by_day, verdict="missed",
                    noise_before_onset=sorted(d for d in hits if date.fromisoformat(d) < onset))
        if after:
            first = after[0]
            o.detected_ds, o.alert = first, hits[first]
            o.detected_day = (date.fromisoformat(first) - onset).days + 1
            o.verdict = "caught" if o.detected_day <= e.by_day else "late"
        out.append(o)
    return out


# Outbox statuses that are a message somebody receives (or will, once delivered): folded and
# grouped rows are recorded in an incident without a message of their own; silenced and
# digested ones are not sent as such either.
MESSAGE_STATUSES = ("pending", "sending", "sent", "failed")


def healthy_days(incident: Incident) -> list[str]:
    lim = incident.doc.limits
    if lim is not None and lim.healthy:
        days = set()
        for r in lim.healthy:
            n = (r.last - r.first).days
            days |= {(r.first + timedelta(days=i)).isoformat() for i in range(n + 1)}
        return sorted(days)
    return [d for d in incident.days if date.fromisoformat(d) < incident.doc.onset]


def measure(incident: Incident, store, gates: dict[str, str]) -> tuple[dict, list[dict]]:
    """The cost of the replay to the people on call, and the incident's limits checked on it."""
    rows = [r for r in store.outbox(incident.spec.name) if r.status in MESSAGE_STATUSES]
    healthy = set(healthy_days(incident))
    n_days = len(incident.days)
    on_healthy = [r for r in rows if r.ds in healthy]
    pages = [r for r in rows if r.severity == "page"]
    open_healthy = sum(1 for d in healthy if gates.get(d) == "open")
    m = {
        "days": n_days,
        "healthy_days": len(healthy),
        "messages": len(rows),
        "pages": len(pages),
        "messages_on_healthy_days": len(on_healthy),
        "pages_on_healthy_days": sum(1 for r in on_healthy if r.severity == "page"),
        "messages_per_30_healthy_days": round(30 * len(on_healthy) / len(healthy), 2) if healthy else None,
        "alerts_per_model_day": round(len(rows) / n_days, 3) if n_days else None,
        "pages_per_model_month": round(30 * len(pages) / n_days, 3) if n_days else None,
        "gate_open_healthy_days": open_healthy,
        "gate_open_share": round(open_healthy / len(healthy), 3) if healthy else None,
        "gate_by_day": dict(sorted(gates.items())),
    }
    checks = []
    lim = incident.doc.limits
    if lim is not None:
        def check(name: str, limit, value, ok: bool) -> None:
            checks.append({"name": name, "limit": limit, "value": value, "ok": bool(ok)})

        if lim.gate_open_share is not None:
            v = m["gate_open_share"]
            check("gate_open_share", f">= {lim.gate_open_share}", v,
                  v is not None and v >= lim.gate_open_share)
        if lim.messages_per_30_healthy_days is not None:
            v = m["messages_per_30_healthy_days"]
            check("messages_per_30_healthy_days", f"<= {lim.messages_per_30_healthy_days}", v,
                  v is not None and v <= lim.messages_per_30_healthy_days)
        if lim.pages_on_healthy_days is not None:
            v = m["pages_on_healthy_days"]
            check("pages_on_healthy_days", f"<= {lim.pages_on_healthy_days}", v,
                  v <= lim.pages_on_healthy_days)
        if lim.max_pages is not None:
            check("pages", f"<= {lim.max_pages}", m["pages"], m["pages"] <= lim.max_pages)
    return m, checks


def run_incident(incident: Incident, workdir: Path) -> IncidentResult:
    from watchkeeper.store import close_all_stores

    t0 = time.monotonic()
    error = None
    measures: dict = {}
    checks: list[dict] = []
    try:
        gates: dict[str, str] = {}
        store = replay(incident, workdir, gates)
        outcomes = match(incident, store)
        measures, checks = measure(incident, store, gates)
    except IncidentError:
        raise
    except Exception as err:  # noqa: BLE001 - monitors that crash on the incident fail it
        error = f"{type(err).__name__}: {err}"
        outcomes = [Outcome(stage=e.stage, subject=e.subject, segment=e.segment,
                            severity=e.severity, by_day=e.by_day, verdict="error")
                    for e in incident.doc.expect]
        if incident.doc.limits is not None:
            checks = [{"name": "replay", "limit": "no error", "value": error, "ok": False}]
    finally:
        close_all_stores()
    return IncidentResult(name=incident.name, title=incident.doc.title, model=incident.doc.model,
                          onset=incident.doc.onset.isoformat(), days=len(incident.days),
                          seconds=round(time.monotonic() - t0, 1), outcomes=outcomes, error=error,
                          measures=measures, limits=checks)


def _run_folder(folder: Path, workdir: Path) -> IncidentResult:
    return run_incident(load_incident(folder), workdir)


def run(library: Path | None = None, only: list[str] | None = None, progress=None,
        jobs: int = 1, keep: Path | None = None) -> list[IncidentResult]:
    """Load every incident first (a malformed one stops the run before any replay), then replay
    each in its own temporary home; `jobs` > 1 replays that many incidents at once, each in its
    own process (incidents share nothing). `keep`: replay under this folder instead and leave
    each incident's home there (its store, outbox and reports) for a closer look."""
    incidents = [load_incident(f) for f in discover(library, only)]
    results: dict[str, IncidentResult] = {}
    if keep is not None:
        keep = Path(keep)
        taken = [i.name for i in incidents if (keep / i.name).exists()]
        if taken:
            raise IncidentError(f"--keep {keep}: {', '.join(taken)} already there; choose an "
                                "empty folder")
        keep.mkdir(parents=True, exist_ok=True)
    with (contextlib.nullcontext(str(keep)) if keep is not None
          else tempfile.TemporaryDirectory(prefix="wk-backtest-")) as tmp:
        if jobs <= 1 or len(incidents) == 1:
            for inc in incidents:
                results[inc.name] = r = run_incident(inc, Path(tmp))
                if progress:
                    progress(r)
        else:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor, as_completed

            # fork: the children start from this light process (no pandas, GX or Evidently yet)
            ctx = multiprocessing.get_context("fork")
            with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx) as pool:
                futures = [pool.submit(_run_folder, inc.folder, Path(tmp)) for inc in incidents]
                for fut in as_completed(futures):
                    r = fut.result()
                    results[r.name] = r
                    if progress:
                        progress(r)
    return [results[inc.name] for inc in incidents]


def passed(results: list[IncidentResult]) -> bool:
    return all(o.verdict == "caught" for r in results for o in r.outcomes) and all(
        r.within_limits for r in results)


# ----- presentation ---------------------------------------------------------------------------


def table(results: list[IncidentResult]) -> str:
    head = ("incident", "expected", "detected", "verdict")
    rows = []
    for r in results:
        for i, o in enumerate(r.outcomes):
            detected = "-" if o.detected_day is None else f"day {o.detected_day} ({o.detected_ds})"
            verdict = o.verdict.upper() if o.verdict != "caught" else o.verdict
            if o.noise_before_onset:
                verdict += f"  (also before onset: {len(o.noise_before_onset)} day(s))"
            rows.append((r.name if i == 0 else "", o.expected_text(), detected, verdict))
        for x in r.limits:
            rows.append(("", f"limit {x['name']} {x['limit']}", f"{x['value']}",
                         "ok" if x["ok"] else "OVER LIMIT"))
        if r.error:
            rows.append(("", f"  error: {r.error}", "", ""))
    widths = [max(len(x[i]) for x in [head, *rows]) for i in range(3)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(head, widths)) + "  " + head[3]]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)) + "  " + row[3] for row in rows]
    counts = summary(results)
    secs = sum(r.seconds for r in results)
    lines.append("")
    lines.append(f"{len(results)} incident(s), {counts['expectations']} expectation(s): "
                 f"{counts['caught']} caught, {counts['late']} late, {counts['missed']} missed"
                 + (f", {counts['error']} error" if counts["error"] else "")
                 + (f"; {counts['limits_exceeded']} limit(s) exceeded"
                    if counts["limits_exceeded"] else "")
                 + f" ({secs:.0f} s of replay)")
    return "\n".join(lines)


def summary(results: list[IncidentResult]) -> dict:
    verdicts = [o.verdict for r in results for o in r.outcomes]
    return {"expectations": len(verdicts),
            **{v: verdicts.count(v) for v in ("caught", "late", "missed", "error")},
            "limits_exceeded": sum(1 for r in results for x in r.limits if not x["ok"])}
