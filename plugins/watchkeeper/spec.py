"""The model spec: one YAML file per monitored model, validated here and nowhere else.

Every other module takes a `ModelSpec`; nothing else reads YAML. A bad spec fails at load with
the file, the field and the reason (`SpecError`), never a traceback.

Paths inside a spec may use `{home}` (WATCHKEEPER_HOME), `{project}` (the checkout) and, for
per-day sources, `{ds}`. Relative paths resolve against the project root.
"""

from __future__ import annotations

import re
from datetime import date, timedelta
from pathlib import Path
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from watchkeeper import paths

NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
# SQL identifiers from specs end up in statements; only plain names (optionally schema-qualified)
# are accepted, and they are quoted by the dialect when used.
IDENT_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}(\.[A-Za-z_][A-Za-z0-9_]{0,62})?$")

STAGES = ("ingestion", "features")
SLI_KINDS = ("ratio", "timeslice")
SCOPES = ("model", "features")


class SpecError(ValueError):
    """A spec (or a suite it names) is invalid. The message names the file, field and reason."""

    def __init__(self, file: str | Path, problems: list[tuple[str, str]]):
        self.file = str(file)
        self.problems = problems
        lines = [f"{self.file}: invalid model spec"]
        lines += [f"  - {field or '(top level)'}: {reason}" for field, reason in problems]
        super().__init__("\n".join(lines))


class SpecErrors(ValueError):
    """Several invalid specs at once (check-config, the DAG folder's error file)."""

    def __init__(self, errors: list[SpecError]):
        self.errors = errors
        super().__init__("\n".join(str(e) for e in errors))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _ident(value: str) -> str:
    if not IDENT_RE.match(value):
        raise ValueError(
            f"{value!r} is not a plain SQL identifier (letters, digits, underscore, optional schema.)"
        )
    return value


Ident = Annotated[str, Field(min_length=1)]


class FileSource(_Strict):
    kind: Literal["file"]
    path: str = Field(description="pattern with {ds}; .parquet or .csv")
    format: Literal["parquet", "csv"] | None = None

    @field_validator("path")
    @classmethod
    def _needs_ds(cls, v: str) -> str:
        if "{ds}" not in v:
            raise ValueError("a file pattern must contain {ds} so each day reads its own partition")
        return v

    @property
    def resolved_format(self) -> str:
        if self.format:
            return self.format
        return "csv" if self.path.lower().endswith(".csv") else "parquet"


class _SqlBase(_Strict):
    url: str | None = Field(default=None, description="SQLAlchemy URL (may use {home})")
    conn_id: str | None = Field(default=None, description="Airflow connection id")

    @model_validator(mode="after")
    def _one_target(self):
        if bool(self.url) == bool(self.conn_id):
            raise ValueError("give exactly one of `url` or `conn_id`")
        return self


class SqlTableSource(_SqlBase):
    kind: Literal["sql_table"]
    table: str
    date_column: str

    _t = field_validator("table", "date_column")(lambda cls, v: _ident(v))


class SqlQuerySource(_SqlBase):
    kind: Literal["sql_query"]
    query: str

    @field_validator("query")
    @classmethod
    def _binds_ds(cls, v: str) -> str:
        if ":ds" not in v:
            raise ValueError("the query must bind the day as :ds (a SQLAlchemy bound parameter)")
        return v


Source = Annotated[FileSource | SqlTableSource | SqlQuerySource, Field(discriminator="kind")]


class Landing(_Strict):
    """Where the landing time of a day's partition comes from, and when it is due."""

    kind: Literal["manifest", "marker", "column", "none"] = "none"
    path: str | None = Field(
        default=None,
        description="manifest: JSON {ds: iso}; marker: pattern with {ds}, content iso or mtime",
    )
    column: str | None = Field(default=None, description="column: max() of this loaded_at column")
    deadline_hours: float = Field(
        default=6.0, ge=0, description="due this many hours after the day ends (model timezone)"
    )

    @model_validator(mode="after")
    def _fields_for_kind(self):
        if self.kind in ("manifest", "marker") and not self.path:
            raise ValueError(f"landing kind {self.kind!r} needs `path`")
        if self.kind == "column" and not self.column:
            raise ValueError("landing kind 'column' needs `column`")
        return self


class Columns(_Strict):
    id: str
    timestamp: str
    model_version: str | None = None
    feature_timestamp: str | None = Field(
        default=None, description="when the feature values were computed (freshness of features)"
    )


class Feature(_Strict):
    name: str
    kind: Literal["numerical", "categorical"]
    bounds: tuple[float, float] | None = None
    pii: bool = False
    drift_method: str | None = None
    drift_threshold: float | None = None
    # ----- expected change (issue 14): seasonal features ---------------------------------------
    seasonal: Literal["weekly", "yearly"] | int | None = Field(
        default=None,
        description="the feature follows a cycle (weekly = 7 days, yearly = 365, or a period in "
        "days): drift compares each day with the same days of the previous cycle (ds - period "
        "+- drift.reference_days/2) when at least half of them are staged, else with the trailing "
        "window; skew against the training set is stored but not alerted and does not make the "
        "feature_drift SLI bad")

    @field_validator("seasonal")
    @classmethod
    def _period(cls, v):
        if isinstance(v, bool) or (isinstance(v, int) and v < 2):
            raise ValueError(f"seasonal: use weekly, yearly or a period of at least 2 days, got {v!r}")
        return v

    @property
    def season_days(self) -> int | None:
        """The cycle's length in days (None: not seasonal)."""
        if self.seasonal is None:
            return None
        return {"weekly": 7, "yearly": 365}.get(self.seasonal, self.seasonal)  # type: ignore[arg-type]

    @model_validator(mode="after")
    def _bounds_order(self):
        if self.bounds is not None:
            if self.kind != "numerical":
                raise ValueError("bounds apply to numerical features only")
            lo, hi = self.bounds
            if lo > hi:
                raise ValueError(f"bounds [{lo}, {hi}]: lower bound is above upper bound")
        return self


class Prediction(_Strict):
    score: str | None = Field(
        default=None,
        description="binary_classification: the probability of the positive class (required; "
        "roc_auc, pr_auc, ece and the estimate before labels use it). ranking: the ranking score "
        "(required)")
    label: str | None = Field(
        default=None,
        description="binary_classification: the 0/1 decision the model served; when set, accuracy, "
        "precision, recall, f1 and business outcomes count it instead of `score >= threshold`. "
        "regression: the predicted value (required). ranking: unused")
    threshold: float = Field(
        default=0.5, ge=0, le=1,
        description="binary_classification: a score at or above it is a positive prediction when "
        "`label` is unset, and for the estimate before labels (CBPE)")
    query_group: str | None = Field(default=None, description="ranking: the query column")
    item: str | None = Field(default=None, description="ranking/recommendation: the item column")


class Reference(_Strict):
    training: str = Field(description="training set (parquet or csv) the model learned from")


class BusinessOutcome(_Strict):
    name: str
    kind: Literal["share_of_value_caught", "share_late"]
    value_column: str | None = None
    minutes: float | None = None
    threshold: float
    direction: Literal["at_least", "at_most"] = "at_least"


class LabelSpec(_Strict):
    source: Source
    join_key: str
    label_column: str
    timestamp_column: str | None = None
    max_delay_days: int = Field(default=14, ge=1, le=365)
    maturity_coverage: float = Field(default=0.9, gt=0, le=1)
    expected_maturity_days: int | None = Field(default=None, ge=0, le=365, description="normal days to maturity (label_lag); learned when unset")
    business_outcomes: list[BusinessOutcome] = []


class Suites(_Strict):
    ingestion: str | None = None
    features: str | None = None


class Slo(_Strict):
    name: str
    sli: str = Field(description="the SLI the budget is computed from")
    kind: Literal["ratio", "timeslice"]
    objective: float = Field(gt=0, lt=1)
    window_days: int = Field(default=28, ge=1, le=365)
    gates: list[Literal["model", "features"]] = ["model"]
    quality: bool = Field(default=False, description="a model-quality SLO (needs mature days)")
    threshold: float | None = Field(
        default=None, description="timeslice SLIs: the value a day must meet; the ratio quality "
        "SLI within_tolerance: the tolerance |prediction - actual| <= threshold")
    direction: Literal["at_least", "at_most"] = Field(
        default="at_least", description="a good day's value is at least / at most the threshold"
    )
    # 0.95: a healthy day exactly at the threshold is judged bad at most ~5% of the time whatever
    # the day's label count (165 or 20,000 rows); a day that misses the threshold but whose
    # interval still reaches it is "inconclusive" and counts in neither good nor total.
    confidence: float = Field(
        default=0.95, gt=0.5, lt=1, description="quality timeslices: a mature day is bad only "
        "when a one-sided interval at this confidence, at the day's label count, excludes the "
        "threshold (Wilson for proportions, a seeded bootstrap otherwise)")
    # 2: one daily slice is coarse; one bad day alone must not ticket (a page needs 2 in 3).
    min_bad_days_ticket: int = Field(
        default=2, ge=1, le=7, description="timeslice SLOs: bad days among the last 7 a ticket "
        "needs besides the burn rates")
    description: str = ""


# Quality SLIs a ratio SLO can pool over its window: each labelled row is one good or bad event.
# (f1, roc_auc, mae, ... are not sums of per-row events: they have no good/total decomposition.)
QUALITY_RATIO_SLIS = {
    "binary_classification": {
        "accuracy": "good = correct labelled predictions, total = labelled rows",
        "precision": "good = true positives, total = predicted positives (TP + FP)",
        "recall": "good = true positives, total = actual positives (TP + FN)",
    },
    "regression": {
        "within_tolerance": "good = rows with |prediction - actual| <= threshold, total = labelled rows",
    },
    "ranking": {},
}


def _quality_slo_problems(slos: list[Slo], task: str) -> list[str]:
    """Why the quality SLOs of a spec cannot be computed as written (empty when they can)."""
    problems = []
    ratio_slis = QUALITY_RATIO_SLIS.get(task, {})
    usable = ", ".join(ratio_slis) or "none"
    for s in slos:
        if not s.quality:
            continue
        where = f"SLO {s.name!r}"
        if s.kind == "ratio":
            if s.sli not in ratio_slis:
                hint = (f"a ratio SLO on {usable}" if ratio_slis
                        else f"{task} models have no ratio quality SLI")
                problems.append(
                    f"{where}, field 'sli': {s.sli!r} has no good/total event decomposition, so "
                    f"it cannot be a ratio quality SLI for {task}; use kind: timeslice with a "
                    f"threshold (a daily {s.sli} verdict), or {hint}")
            elif s.sli == "within_tolerance":
                if s.threshold is None or s.threshold <= 0:
                    problems.append(
                        f"{where}, field 'threshold': within_tolerance needs the tolerance (a "
                        "positive number in the label's units: good = |prediction - actual| <= "
                        "threshold)")
            elif s.threshold is not None:
                problems.append(
                    f"{where}, field 'threshold': a ratio SLO's target is its objective (the share "
                    f"of good events over the window); drop the threshold, or use kind: timeslice "
                    f"for a daily {s.sli} >= threshold verdict")
        elif s.sli == "within_tolerance":
            problems.append(
                f"{where}, field 'kind': within_tolerance is a ratio SLI (threshold = the "
                "tolerance); for a daily verdict use a timeslice on mae, rmse or abs_error_p90 "
                "with a threshold")
    # One SLI row per model, SLI and day carries the day's verdict (and ratio events): SLOs that
    # share an SLI must agree on what that row holds.
    judged: dict[str, list[Slo]] = {}
    for s in slos:
        if s.quality and (s.kind == "timeslice" or s.sli == "within_tolerance"):
            judged.setdefault(f"{s.kind}:{s.sli}", []).append(s)
    for group in judged.values():
        ways = {(g.threshold, g.direction, g.confidence if g.kind == "timeslice" else None)
                for g in group}
        if len(ways) > 1:
            names = ", ".join(repr(g.name) for g in group)
            problems.append(
                f"SLOs {names} judge the SLI {group[0].sli!r} differently (threshold, direction "
                "or confidence); its daily value is stored once per SLI, so give them the same "
                "ones, or keep one of them")
    return problems


class AlertRoute(_Strict):
    severity: Literal["info", "ticket", "page"]
    channel: str


class Alerts(_Strict):
    slack_conn_id: str | None = None
    routes: list[AlertRoute] = []
    horizon_days: int = Field(default=2, ge=0)
    runbook_url: str | None = None
    # Incidents (README "Alerts"): a condition that persists is one incident, not a daily message.
    reminder_days: int = Field(
        default=7, ge=0,
        description="days without any message of an open incident after which a one-line "
        "'still ongoing' reminder goes to its thread (0: never remind). A week keeps a persisting "
        "condition visible in weekly triage without one message a day, at any batch size.")
    resolve_after_days: int = Field(
        default=2, ge=1,
        description="an open incident closes (one recovery message) once its kind was evaluated "
        "clean and the condition has not held for this many days (ds - last seen >= this). 2 lets "
        "one clean day inside a lasting shift continue the incident instead of closing and "
        "reopening it (no flapping); 1 closes on the first clean day.")


class GateSpec(_Strict):
    inconclusive_means: Literal["closed", "open"] = "closed"
    min_mature_days: int = Field(default=7, ge=0)
    staleness_days: int = Field(default=2, ge=0)


class DriftSpec(_Strict):
    reference_days: int = Field(default=7, ge=1)
    min_segment_rows: int = Field(default=500, ge=1)
    daily_false_alarm_rate: float = Field(default=0.01, gt=0, lt=1)
    # Drift and skew run as one mapped task per group of this many features, so a Celery
    # deployment spreads a model's day over its workers; the verdicts do not depend on it.
    features_per_task: int = Field(default=4, ge=1)


# ----- shadow and canary rollouts (issue 10) ---------------------------------------------------

ROLLOUT_METRICS = {
    "binary_classification": ("brier", "log_loss", "error_rate"),
    "regression": ("mae", "mse"),
}
UNBOUNDED_METRICS = ("mae", "mse")  # per-row differences need a bound from the spec
DEFAULT_STAGES: tuple[str | int, ...] = ("shadow", 5, 25, 50, 100)


class CandidateSpec(_Strict):
    """A candidate model compared with the production model (the incumbent) before it replaces
    it: in shadow (it scores the same ids, serves none) and then in canary stages (it serves a
    growing share of traffic). See README "Shadow and canary rollouts"."""

    name: str = Field(description="the candidate's model version, e.g. fraud-v4")
    incumbent: str | None = Field(
        default=None, description="the production version it would replace (default: the "
        "model_version column of the production predictions)")
    mode: Literal["shadow", "canary"] = "canary"
    since: date = Field(description="first prediction day of the rollout's first stage")
    source: Source
    id_column: str | None = Field(default=None, description="default: columns.id")
    score: str | None = Field(default=None, description="default: prediction.score")
    label: str | None = Field(default=None, description="default: prediction.label")
    margins: dict[str, float] = Field(min_length=1, description="non-inferiority margin per metric")
    difference_bounds: dict[str, float] = Field(
        default={}, description="per-row |loss difference| bound for mae/mse (larger are clipped)")
    alpha: float = Field(default=0.05, gt=0, lt=0.5)
    min_labels: int = Field(default=1000, ge=1)
    min_segment_labels: int = Field(default=300, ge=1)
    stages: list[str | int] | None = Field(
        default=None, description="default shadow, 5, 25, 50, 100 (canary) or shadow (shadow)")

    @field_validator("margins")
    @classmethod
    def _margins(cls, v: dict[str, float]) -> dict[str, float]:
        known = sorted({m for ms in ROLLOUT_METRICS.values() for m in ms})
        for k, m in v.items():
            if k not in known:
                raise ValueError(f"{k!r} is not a per-row metric the test can use; use one of "
                                 f"{', '.join(known)}")
            if not m > 0:
                raise ValueError(f"{k}: the margin must be a positive number, got {m!r}")
        return v

    @field_validator("difference_bounds")
    @classmethod
    def _bounds(cls, v: dict[str, float]) -> dict[str, float]:
        for k, b in v.items():
            if not b > 0:
                raise ValueError(f"{k}: the bound must be a positive number, got {b!r}")
        return v

    @field_validator("stages")
    @classmethod
    def _stages(cls, v):
        if v is None:
            return v
        if not v:
            raise ValueError("give at least one stage (shadow, or a percentage of traffic)")
        out: list[str | int] = []
        for i, st in enumerate(v):
            if st == "shadow":
                if i != 0:
                    raise ValueError("'shadow' can only be the first stage")
                out.append("shadow")
                continue
            if isinstance(st, bool) or not isinstance(st, int) or not 0 < st <= 100:
                raise ValueError(f"stage {st!r}: use 'shadow' or a whole percentage of traffic "
                                 "in 1..100")
            if out and out[-1] != "shadow" and st <= out[-1]:
                raise ValueError(f"stage {st}: percentages must increase ({out[-1]} comes first)")
            out.append(st)
        return out

    @model_validator(mode="after")
    def _mode_stages(self):
        stages = self.stages
        if stages is None:
            return self
        if self.mode == "shadow" and stages != ["shadow"]:
            raise ValueError("mode 'shadow' compares without serving: stages must be [shadow]")
        if self.mode == "canary" and stages[-1] != 100:
            raise ValueError("a canary rollout must end at 100 (the candidate serves all traffic)")
        return self

    @property
    def rollout_stages(self) -> list[str | int]:
        if self.stages is not None:
            return list(self.stages)
        return ["shadow"] if self.mode == "shadow" else list(DEFAULT_STAGES)


class PredictionMonitorSpec(_Strict):
    # The chance that a healthy day raises any prediction or coverage alert, split evenly over
    # the monitors the model's task runs: about one false alarm in 100 healthy days.
    daily_false_alarm_rate: float = Field(default=0.01, gt=0, lt=0.5)


# ----- partial days (issue 14, part E) ----------------------------------------------------------


class CompletenessSpec(_Strict):
    """When a day's batch counts as partial (an upstream job that delivered part of the day):
    see README "Partial days" and watchkeeper.completeness."""

    partial_fraction: float = Field(
        default=0.5, gt=0, lt=1,
        description="a day is partial below this share of its expected rows (the median of the "
        "trailing 7 days, or on a model's first days the share of a usual day's traffic its "
        "timestamps cover); its drift, skew and prediction verdicts are not alerted. The "
        "ingestion suite's min_rows is this share of the expected rows")


class ModelSpec(_Strict):
    name: str
    task: Literal["binary_classification", "regression", "ranking"]
    description: str = ""
    owner: str = "watchkeeper"
    timezone: str = "UTC"
    start_date: date | None = Field(
        default=None,
        description="the first day the model is monitored: its DAGs start at that day's midnight "
        "in `timezone`, and `watchkeeper run` refuses earlier days, naming this field. Unset: the "
        "DAGs start on 1970-01-01, so any past day can run (catchup is off: a scheduler starts "
        "with the newest day)")
    retries: int = Field(default=2, ge=0)
    source: Source
    landing: Landing = Landing()
    columns: Columns
    features: list[Feature] = Field(min_length=1)
    prediction: Prediction
    segments: list[str] = []
    reference: Reference
    labels: LabelSpec | None = None
    suites: Suites = Suites()
    drift: DriftSpec = DriftSpec()
    predictions: PredictionMonitorSpec = PredictionMonitorSpec()
    completeness: CompletenessSpec = Field(
        default=CompletenessSpec(),
        description="when a day counts as partial (far fewer rows than usual): its distributions "
                    "are stored, not alerted; see README 'Partial days'")
    slos: list[Slo] = []
    alerts: Alerts = Alerts()
    gate: GateSpec = GateSpec()
    report_retention_days: int | None = Field(default=None, ge=1)
    candidate: CandidateSpec | None = None  # issue 10: a shadow / canary rollout

    @field_validator("candidate")
    @classmethod
    def _candidate_fits_model(cls, v, info):
        # A field validator (not the model validator) so the error names the `candidate` field.
        if v is None:
            return v
        task = info.data.get("task")
        if task not in ROLLOUT_METRICS:
            raise ValueError(f"shadow and canary comparisons support "
                             f"{' and '.join(ROLLOUT_METRICS)}, not {task}")
        wrong = [m for m in v.margins if m not in ROLLOUT_METRICS[task]]
        if wrong:
            raise ValueError(f"margins: {', '.join(wrong)} do not apply to {task}; use "
                             f"{', '.join(ROLLOUT_METRICS[task])}")
        unbounded = [m for m in v.margins if m in UNBOUNDED_METRICS and m not in v.difference_bounds]
        if unbounded:
            raise ValueError(f"margins: {', '.join(unbounded)} need difference_bounds."
                             f"{unbounded[0]} (the largest per-row loss difference the test "
                             "assumes; larger ones are clipped)")
        if "labels" in info.data and info.data.get("labels") is None:
            raise ValueError("a candidate is compared on labels: the spec needs a `labels` block")
        return v

    # Set by load_spec: where the spec came from, for messages and relative paths.
    spec_path: str = Field(default="", exclude=True)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not NAME_RE.match(v):
            raise ValueError(
                f"{v!r}: use lower-case letters, digits and underscores, starting with a letter"
            )
        return v

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown timezone {v!r} (use an IANA name such as Europe/Berlin)")
        return v

    @model_validator(mode="after")
    def _cross_checks(self):
        names = [f.name for f in self.features]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"features listed twice: {', '.join(dupes)}")
        cats = {f.name for f in self.features if f.kind == "categorical"}
        for seg in self.segments:
            if seg not in cats:
                raise ValueError(
                    f"segment column {seg!r} must be one of the categorical features "
                    f"({', '.join(sorted(cats)) or 'none declared'})"
                )
        if self.task == "binary_classification" and not self.prediction.score:
            raise ValueError("prediction.score is required for binary_classification")
        if self.task == "regression" and not self.prediction.label:
            raise ValueError("prediction.label (the predicted value) is required for regression")
        if self.task == "ranking" and not (self.prediction.score and self.prediction.query_group):
            raise ValueError("prediction.score and prediction.query_group are required for ranking")
        half = self.drift.reference_days // 2
        for f in self.features:  # issue 14: the previous cycle's days must all lie before ds
            if f.season_days is not None and f.season_days <= half:
                raise ValueError(
                    f"feature {f.name!r}: seasonal period {f.season_days} days is not longer than "
                    f"half the drift window (drift.reference_days {self.drift.reference_days} // 2 = "
                    f"{half}); the previous cycle's days would reach the day itself")
        slo_names = [s.name for s in self.slos]
        if len(set(slo_names)) != len(slo_names):
            raise ValueError("SLO names must be unique")
        for s in self.slos:
            if s.kind == "timeslice" and s.threshold is None and s.sli not in BOOLEAN_SLIS:
                raise ValueError(
                    f"SLO {s.name!r}: a timeslice SLI needs `threshold` (the value a good day meets)"
                )
        problems = _quality_slo_problems(self.slos, self.task)
        if problems:
            raise ValueError("; ".join(problems))
        return self

    # ----- derived views --------------------------------------------------------------------
    @property
    def pii_columns(self) -> frozenset[str]:
        return frozenset(f.name for f in self.features if f.pii)

    @property
    def drift_groups(self) -> list[list[str]]:
        """The features in groups of drift.features_per_task, in spec order (the mapped tasks)."""
        names, size = [f.name for f in self.features], self.drift.features_per_task
        return [names[i:i + size] for i in range(0, len(names), size)]

    @property
    def numerical(self) -> list[str]:
        return [f.name for f in self.features if f.kind == "numerical"]

    @property
    def categorical(self) -> list[str]:
        return [f.name for f in self.features if f.kind == "categorical"]

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def root(self) -> Path:
        """Project root for relative paths: the checkout that holds include/models/<spec>."""
        if self.spec_path:
            p = Path(self.spec_path).resolve()
            if p.parent.name == "models" and p.parent.parent.name == "include":
                return p.parent.parent.parent
        return paths.project_root()

    def resolve(self, template: str, ds: str | None = None) -> str:
        """Expand {home}, {project} and {ds}; relative file paths resolve against the root."""
        out = template.replace("{home}", str(paths.home())).replace("{project}", str(self.root()))
        if ds is not None:
            out = out.replace("{ds}", ds)
        return out

    def resolve_path(self, template: str, ds: str | None = None) -> Path:
        p = Path(self.resolve(template, ds))
        return p if p.is_absolute() else self.root() / p

    def suite_path(self, stage: str) -> Path | None:
        rel = getattr(self.suites, stage)
        return self.resolve_path(rel) if rel else None

    def slo(self, name: str) -> Slo:
        for s in self.slos:
            if s.name == name:
                return s
        raise KeyError(name)


# SLIs whose daily value is already a good/bad verdict, so a timeslice needs no threshold.
BOOLEAN_SLIS = {"freshness", "prediction_stability", "feature_drift"}


def _field_path(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in ("file", "sql_table", "sql_query"):
            continue  # discriminated-union tags add noise, not location
        else:
            out += ("." if out else "") + str(part)
    return out


def _problems(err: ValidationError, raw: dict) -> list[tuple[str, str]]:
    problems = []
    for e in err.errors():
        loc = e["loc"]
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown field (check the spelling; see README 'Model spec')"
        elif e["type"] == "missing":
            msg = "required field is missing"
        elif e["type"] == "union_tag_invalid":
            msg = "`kind` must be one of file, sql_table, sql_query"
        problems.append((_field_path(loc), msg))
    return problems


def parse_spec(raw: object, file: str | Path = "<spec>") -> ModelSpec:
    if not isinstance(raw, dict):
        raise SpecError(file, [("", "the file must hold a YAML mapping (key: value)")])
    try:
        spec = ModelSpec.model_validate({**raw, "spec_path": str(file)})
    except ValidationError as err:
        raise SpecError(file, _problems(err, raw)) from None
    stem = Path(str(file)).stem
    if stem not in ("<spec>",) and Path(str(file)).suffix in (".yaml", ".yml") and stem != spec.name:
        raise SpecError(file, [("name", f"{spec.name!r} must match the file name {stem!r}")])
    return spec


def load_spec(path: str | Path) -> ModelSpec:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(path, [("", "file not found")]) from None
    except (OSError, UnicodeDecodeError) as err:
        raise SpecError(path, [("", f"cannot read: {err}")]) from None
    try:
        # The C loader keeps parsing 50 specs inside a DAG file well under a second.
        raw = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise SpecError(path, [(where, f"not valid YAML: {getattr(err, 'problem', err)}")]) from None
    return parse_spec(raw, path)


def spec_files(directory: str | Path | None = None) -> list[Path]:
    d = Path(directory) if directory else paths.models_dir()
    return sorted(p for p in d.glob("*.y*ml") if p.suffix in (".yaml", ".yml"))


def load_all(directory: str | Path | None = None) -> tuple[list[ModelSpec], list[SpecError]]:
    """All specs of a folder; invalid ones are returned as errors, never silently skipped."""
    specs, errors = [], []
    for f in spec_files(directory):
        try:
            specs.append(load_spec(f))
        except SpecError as err:
            errors.append(err)
    seen: dict[str, str] = {}
    for s in specs:
        if s.name in seen:
            errors.append(SpecError(s.spec_path, [("name", f"already used by {seen[s.name]}")]))
        seen[s.name] = s.spec_path
    return specs, errors


def get_spec(name: str, directory: str | Path | None = None) -> ModelSpec:
    d = Path(directory) if directory else paths.models_dir()
    for suffix in (".yaml", ".yml"):
        p = d / f"{name}{suffix}"
        if p.exists():
            return load_spec(p)
    known = ", ".join(p.stem for p in spec_files(d)) or "none"
    raise UnknownModel(name, known)


class UnknownModel(LookupError):
    def __init__(self, name: str, known: str):
        self.name = name
        super().__init__(f"unknown model {name!r}; models that exist: {known}")


def day_bounds(spec: ModelSpec, ds: str):
    """The day `ds` in the model's timezone, as aware datetimes [start, end)."""
    from datetime import datetime

    d = date.fromisoformat(ds)
    start = datetime(d.year, d.month, d.day, tzinfo=spec.tz)
    return start, start + timedelta(days=1)
