"""SLO arithmetic: rolling-window error budgets, burn rates and alert levels.

Pure module: plain values and dataclasses in and out. Standard library only, because the
`watchkeeper gate` CLI imports this module (through `watchkeeper.gate`) and must start in well
under a second; no pandas, numpy, pydantic, Airflow, Great Expectations or Evidently here.

The arithmetic
==============

An SLO has an objective O (0 < O < 1) over a rolling window of W days (default 28) ending at the
evaluation day ``as_of``, both ends included: ``window_start = as_of - (W - 1) days``.

* Events. A *timeslice* SLI contributes one event per day: the day is good or bad (OpenSLO
  ``Timeslices``). A *ratio* SLI contributes ``total_events`` events per day, of which
  ``good_events`` are good. A point that is provisional (labels not mature yet), or that carries no
  value (None: e.g. a quality day whose verdict is "inconclusive"), is left out of both good and
  total: it neither helps nor hurts the budget.
* ``total`` = events in the window, ``bad`` = total - good.
* The *end* of the evaluation, ``burn_as_of``: ``as_of`` for every SLO except model-quality SLOs
  (``quality=True``), whose newest days are never mature (labels arrive late). For those it is the
  newest day with a mature value, ``data_as_of``, when that day lies in the window (else None:
  nothing recent enough to judge). Burn windows end there, and young windows are measured to it.
* Young windows. ``days_observed`` = calendar days from the SLO's first point (its first SLI day,
  of any kind, on or before ``as_of``; the window start when the history is older) to the end,
  both included; ``span`` = calendar days from the window start to the end (W, or for a quality
  SLO the part of the window up to its newest mature day). While the history is shorter than the
  window, the events seen are scaled to the full window:
  ``allowed_bad = (1 - O) * total * span / days_observed``. With a full history the factor is 1
  and ``allowed_bad = (1 - O) * total``. So one bad day on day 1 of a 28-day 0.9 timeslice SLO
  uses 1 / (0.1 * 1 * 28) = 36 % of the budget, exactly as one bad day does on a full window; a
  young window does not let a single bad first day "spend" 28 days of budget.
* ``budget_remaining = 1 - bad / allowed_bad``: 1.0 untouched, 0.0 exactly spent, negative when
  overspent (-0.5 means 150 % of the budget is gone).
* Burn rate over the last w days (w = 1, 3, 7), the days ``burn_as_of - (w - 1) .. burn_as_of``:
  ``burn_w = (bad_w / total_w) / (1 - O)``. Burn 1.0 spends the budget exactly over the window;
  burn 2.8 spends 10 % of a 28-day budget per day. Burn windows are counted from the points given,
  independently of W (they matter even if W were shorter than 7 days).
* Alert, adapted to daily batches from the SRE workbook's multiwindow, multi-burn-rate alerts:
  - ``"page"`` when burn_3d >= page_burn (2.8) and burn_1d >= page_burn; for a timeslice SLO also
    at least ``min_bad_days_page`` (2) bad days among the last 3, because a single daily slice is
    coarse: one bad day gives burn_1d = 1/(1-O) and burn_3d = 1/(3(1-O)), which for O >= 0.9 is
    above 2.8 on its own.
  - else ``"ticket"`` when burn_7d >= ticket_burn (1.0) and burn_1d >= ticket_burn; for a
    timeslice SLO also at least ``min_bad_days_ticket`` (2) bad days among the last 7, for the
    same reason: one bad day gives burn_7d = 1/(7(1-O)) = 1.43 at O = 0.9, so without the rule
    every single noisy day would ticket.
  - else None.
* ``mature_days``: days in the window with a non-provisional value (for a ratio SLI, a day with
  at least one event), plus mature days judged "inconclusive" (``SliPoint.inconclusive``): they
  add no event, but their labels did mature. The gate uses it to refuse judging a model-quality
  SLO on too few days.
* ``data_as_of``: the newest day on or before ``as_of`` with a non-provisional value (it may lie
  before the window; it is shown to people, the gate's staleness rule uses the snapshot's ``ds``).

Edge cases (choices, not accidents)
===================================

* Empty window, or every point in it provisional / None: ``total = 0``, ``allowed_bad = 0``,
  ``budget_remaining = None`` ("no data": nothing was measured, so the budget is neither intact
  nor spent; the gate treats it as inconclusive). Burn rates are None, alert None.
* Zero total in a burn window (e.g. the newest day of a monitor SLI has not been scored): that
  burn rate is None, and a rule needing it does not fire. The short window is there to confirm
  the burn is *still happening*; a day without measurements cannot confirm it. A quality SLO's
  burn windows end at its newest mature day, so its newest provisional days do not hide a burn.
* A ratio day with ``total_events == 0`` adds nothing and is not a mature day.
* Points dated after ``as_of`` are ignored: a snapshot is built only from what could be known on
  ``as_of``, so re-evaluating an old day reproduces its snapshot (the caller passes the values as
  they were known then; restated values are the store's concern).
* Two points for the same day are an error (the store upserts one value per model, SLI and day),
  never silently summed or dropped.
* Values are rounded to 10 decimal places so that float noise (1 - 0.9 = 0.09999999999999998)
  cannot turn "exactly at the threshold" into "just below it".
* Snapshots stored before ``burn_as_of``, ``bad_days_7d`` and ``days_observed`` existed read back
  with ``burn_as_of = ds`` (what their burn windows ended at) and None for the other two.

Choosing an objective for daily timeslices
==========================================

With W = 28 and O = 0.9 a timeslice SLO allows 2.8 bad days: one noisy day uses 1/2.8 = 36 % of
the budget (remaining 0.64) and, being a single bad slice, neither pages nor tickets. Two bad
days within 7 ticket, two within 3 page, three in 28 exhaust the budget. O = 0.95 allows 1.4 bad
days (one noisy day leaves 0.29); any O above 1 - 1/28 = 0.964 allows less than one bad day, so a
single noisy day spends the whole budget and closes the gate. The demo uses 0.9 for daily
timeslices for that reason. Ratio SLIs are fine-grained and take tighter objectives.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass, field, fields
from datetime import date, timedelta
from typing import Any, Literal

__all__ = [
    "ALERT_LEVELS",
    "BudgetSnapshot",
    "GATE_SCOPES",
    "SLO_KINDS",
    "SliPoint",
    "SliPointError",
    "SloDef",
    "SloDefinitionError",
    "SloError",
    "SnapshotError",
    "VERDICTS",
    "day_verdict",
    "evaluate",
    "parse_ds",
]

SLO_KINDS = ("ratio", "timeslice")
GATE_SCOPES = frozenset({"model", "features"})
ALERT_LEVELS = ("page", "ticket")
BURN_WINDOWS = (1, 3, 7)
VERDICTS = ("good", "bad", "inconclusive")
_DIGITS = 10  # rounding of stored floats; see "Values are rounded" in the module docstring


class SloError(ValueError):
    """Base class of every error raised by watchkeeper.slo."""


class SloDefinitionError(SloError):
    """An SLO definition is invalid (names the SLO, the field and the reason)."""


class SliPointError(SloError):
    """An SLI point is invalid, or does not fit the SLO it is evaluated against."""


class SnapshotError(SloError):
    """A stored budget snapshot cannot be read back (names the field and the reason)."""


def parse_ds(value: str | date, what: str = "ds") -> date:
    """Parse a 'YYYY-MM-DD' day (or accept a date); SloError naming `what` otherwise."""
    if isinstance(value, date) and not hasattr(value, "hour"):
        return value
    if isinstance(value, str):
        try:
            parsed = date.fromisoformat(value)
        except ValueError:
            parsed = None
        # fromisoformat also takes '20250101'; the store and the paths use the dashed form only.
        if parsed is not None and len(value) == 10:
            return parsed
    raise SloError(f"{what}: expected a day as 'YYYY-MM-DD', got {value!r}")


def _round(x: float) -> float:
    return round(x, _DIGITS) + 0.0  # + 0.0 turns -0.0 into 0.0


@dataclass(frozen=True)
class SloDef:
    """One SLO of a model spec.

    `sli` is the name the SLI values are stored under; `gates` the deployment scopes it gates
    ("model": model deployments, "features": feature-pipeline rollouts); `quality` marks a
    model-quality SLO (computed from late labels): the gate refuses to judge it on too few mature
    days, and its burn windows end at its newest mature day. `min_bad_days_page` and
    `min_bad_days_ticket` are the bad days a timeslice SLO needs among the last 3 (page) and the
    last 7 (ticket) days besides the burn rates.
    """

    name: str
    sli: str
    kind: Literal["ratio", "timeslice"]
    objective: float
    window_days: int = 28
    gates: frozenset[str] = field(default_factory=lambda: frozenset({"model"}))
    quality: bool = False
    page_burn: float = 2.8
    ticket_burn: float = 1.0
    min_bad_days_page: int = 2
    min_bad_days_ticket: int = 2

    def __post_init__(self) -> None:
        where = f"SLO {self.name!r}"

        def bad(fieldname: str, reason: str) -> SloDefinitionError:
            return SloDefinitionError(f"{where}, field '{fieldname}': {reason}")

        if not isinstance(self.name, str) or not self.name.strip():
            raise bad("name", "must be a non-empty string")
        if not isinstance(self.sli, str) or not self.sli.strip():
            raise bad("sli", "must be a non-empty string naming the stored SLI")
        if self.kind not in SLO_KINDS:
            raise bad("kind", f"must be one of {list(SLO_KINDS)}, got {self.kind!r}")
        if not _is_number(self.objective) or not 0.0 < float(self.objective) < 1.0:
            raise bad("objective", f"must be a number strictly between 0 and 1, got {self.objective!r}")
        object.__setattr__(self, "objective", float(self.objective))
        if not _is_int(self.window_days) or self.window_days < 1:
            raise bad("window_days", f"must be a whole number of days >= 1, got {self.window_days!r}")
        if isinstance(self.gates, str):
            # frozenset("model") would silently become {'m','o','d','e','l'}
            raise bad("gates", f"must be a set of scopes, not the string {self.gates!r}")
        try:
            gates = frozenset(self.gates)
        except TypeError:
            raise bad("gates", f"must be a set of scopes, got {self.gates!r}") from None
        if not gates or not gates <= GATE_SCOPES:
            raise bad(
                "gates",
                f"must be a non-empty subset of {sorted(GATE_SCOPES)}, got {sorted(map(str, gates))}",
            )
        object.__setattr__(self, "gates", gates)
        if not isinstance(self.quality, bool):
            raise bad("quality", f"must be true or false, got {self.quality!r}")
        for name in ("page_burn", "ticket_burn"):
            value = getattr(self, name)
            if not _is_number(value) or not float(value) > 0.0:
                raise bad(name, f"must be a positive number, got {value!r}")
            object.__setattr__(self, name, float(value))
        if not _is_int(self.min_bad_days_page) or not 1 <= self.min_bad_days_page <= 3:
            raise bad(
                "min_bad_days_page",
                f"must be 1, 2 or 3 (bad days among the last 3), got {self.min_bad_days_page!r}",
            )
        if not _is_int(self.min_bad_days_ticket) or not 1 <= self.min_bad_days_ticket <= 7:
            raise bad(
                "min_bad_days_ticket",
                f"must be a whole number 1..7 (bad days among the last 7), got {self.min_bad_days_ticket!r}",
            )

    @property
    def error_budget_fraction(self) -> float:
        """1 - objective, rounded so that 1 - 0.9 is 0.1 and not 0.09999999999999998."""
        return round(1.0 - self.objective, 12)


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _as_bool_or_none(value: Any, what: str) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    # numpy.bool_ from a DataFrame row is not a bool subclass; accept it, reject 0/1 and strings.
    if type(value).__name__ == "bool_":
        return bool(value)
    raise SliPointError(f"{what}: expected true, false or None, got {value!r}")


@dataclass(frozen=True)
class SliPoint:
    """One day's SLI value.

    Timeslice: `good` says whether the day met its threshold (one event). Ratio: `good_events`
    out of `total_events`. `provisional` (labels not mature yet) or a None value: the day counts in
    neither good nor total. `inconclusive` (good None): a mature quality day that missed its
    threshold within the uncertainty of its label count; no event, but a mature day.
    """

    ds: str
    good: bool | None = None
    good_events: float | None = None
    total_events: float | None = None
    provisional: bool = False
    inconclusive: bool = False

    def __post_init__(self) -> None:
        where = f"SLI point ds={self.ds!r}"
        try:
            day = parse_ds(self.ds, f"{where}, field 'ds'")
        except SloError as exc:
            raise SliPointError(str(exc)) from None
        object.__setattr__(self, "ds", day.isoformat())
        object.__setattr__(self, "good", _as_bool_or_none(self.good, f"{where}, field 'good'"))
        provisional = _as_bool_or_none(self.provisional, f"{where}, field 'provisional'")
        if provisional is None:
            raise SliPointError(f"{where}, field 'provisional': expected true or false, got None")
        object.__setattr__(self, "provisional", provisional)
        inconclusive = _as_bool_or_none(self.inconclusive, f"{where}, field 'inconclusive'")
        if inconclusive is None or (inconclusive and self.good is not None):
            raise SliPointError(
                f"{where}, field 'inconclusive': expected true (with good None) or false, got "
                f"{self.inconclusive!r} with good={self.good!r}")
        object.__setattr__(self, "inconclusive", inconclusive)
        for name in ("good_events", "total_events"):
            value = getattr(self, name)
            if value is None:
                continue
            if not isinstance(value, numbers.Real) or isinstance(value, bool):
                raise SliPointError(f"{where}, field '{name}': expected a number or None, got {value!r}")
            if math.isnan(value):
                raise SliPointError(
                    f"{where}, field '{name}': is NaN; pass None for a missing value "
                    "(NaN is refused so that a computation bug is not mistaken for 'no data')"
                )
            if math.isinf(value) or value < 0:
                raise SliPointError(f"{where}, field '{name}': must be a finite number >= 0, got {value!r}")
            object.__setattr__(self, name, float(value))
        if (self.good_events is None) != (self.total_events is None):
            raise SliPointError(
                f"{where}: good_events and total_events must both be set or both be None, got "
                f"good_events={self.good_events!r}, total_events={self.total_events!r}"
            )
        if self.good_events is not None and self.good_events > self.total_events:  # type: ignore[operator]
            raise SliPointError(
                f"{where}: good_events ({self.good_events:g}) exceeds total_events ({self.total_events:g})"
            )

    def events(self, kind: str, slo_name: str = "?") -> tuple[float, float] | None:
        """(good, total) this point contributes to an SLO of `kind`, or None when it adds nothing."""
        if kind == "timeslice":
            if self.good is None and self.good_events is not None:
                raise SliPointError(
                    f"SLO {slo_name!r} is a timeslice SLO but SLI point ds={self.ds} carries only "
                    f"ratio events ({self.good_events:g}/{self.total_events:g}) and no good/bad flag"
                )
            if self.provisional or self.good is None:
                return None
            return (1.0, 1.0) if self.good else (0.0, 1.0)
        if self.total_events is None and self.good is not None:
            raise SliPointError(
                f"SLO {slo_name!r} is a ratio SLO but SLI point ds={self.ds} carries only a "
                f"good/bad flag (good={self.good}) and no good_events/total_events"
            )
        if self.provisional or self.total_events is None:
            return None
        return (self.good_events, self.total_events)  # type: ignore[return-value]


@dataclass(frozen=True)
class BudgetSnapshot:
    """The budget of one SLO as known on `ds` (see the module docstring for every field)."""

    slo: str
    ds: str
    window_start: str
    total: float
    bad: float
    allowed_bad: float
    budget_remaining: float | None
    burn_1d: float | None
    burn_3d: float | None
    burn_7d: float | None
    bad_days_3d: int
    mature_days: int
    alert: Literal["page", "ticket"] | None
    data_as_of: str | None
    # Added later; snapshots stored without them read back with the defaults of OPTIONAL below.
    burn_as_of: str | None = None  # where the burn windows end (as_of; quality: newest mature day)
    bad_days_7d: int | None = None
    days_observed: int | None = None  # days of history the budget is scaled from (young windows)
    # Issue 14: bad days in the window counted as good because an acceptance of expected change
    # covered every drift on them, in all and per acceptance id (stored snapshots without these
    # fields read back with the defaults).
    excused_days: int = 0
    excused_by: dict[str, int] = field(default_factory=dict)

    @property
    def budget_spent(self) -> bool:
        """True when there is data and no budget left (remaining <= 0)."""
        return self.budget_remaining is not None and self.budget_remaining <= 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready plain dict; from_dict(to_dict()) gives an equal snapshot."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BudgetSnapshot:
        """Read a stored snapshot back; SnapshotError naming the field when it does not fit."""
        if not isinstance(data, dict):
            raise SnapshotError(f"budget snapshot: expected a mapping, got {type(data).__name__}")
        names = [f.name for f in fields(cls)]
        label = f"budget snapshot (slo={data.get('slo')!r}, ds={data.get('ds')!r})"
        # Stores in the field hold snapshots written before the optional fields existed.
        data = {**{k: default(data) for k, default in _OPTIONAL.items() if k not in data}, **data}
        missing = [n for n in names if n not in data]
        if missing:
            raise SnapshotError(f"{label}: missing field(s) {missing}")
        unknown = sorted(set(data) - set(names))
        if unknown:
            raise SnapshotError(f"{label}: unknown field(s) {unknown}")

        def check(name: str, ok: bool, expected: str) -> None:
            if not ok:
                raise SnapshotError(f"{label}, field '{name}': expected {expected}, got {data[name]!r}")

        check("slo", isinstance(data["slo"], str) and bool(data["slo"]), "a non-empty string")
        for name in ("ds", "window_start"):
            check(name, isinstance(data[name], str) and _valid_ds(data[name]), "a day 'YYYY-MM-DD'")
        for name in ("data_as_of", "burn_as_of"):
            day = data[name]
            check(name, day is None or (isinstance(day, str) and _valid_ds(day)), "a day or null")
        for name in ("total", "bad", "allowed_bad"):
            check(name, _is_number(data[name]) and data[name] >= 0, "a number >= 0")
        for name in ("budget_remaining", "burn_1d", "burn_3d", "burn_7d"):
            check(name, data[name] is None or _is_number(data[name]), "a number or null")
        for name in ("bad_days_3d", "mature_days"):
            check(name, _is_int(data[name]) and data[name] >= 0, "a whole number >= 0")
        for name in ("bad_days_7d", "days_observed"):
            check(name, data[name] is None or (_is_int(data[name]) and data[name] >= 0),
                  "a whole number >= 0 or null")
        check("excused_days", _is_int(data["excused_days"]) and data["excused_days"] >= 0,
              "a whole number >= 0")
        check("excused_by", isinstance(data["excused_by"], dict) and all(
            isinstance(k, str) and _is_int(v) and v >= 0 for k, v in data["excused_by"].items()),
            "a mapping of acceptance id to a whole number of days")
        alert_ok = data["alert"] is None or data["alert"] in ALERT_LEVELS
        check("alert", alert_ok, f"one of {list(ALERT_LEVELS)} or null")
        values = {n: data[n] for n in names}
        values["excused_by"] = dict(values["excused_by"])
        for name in ("total", "bad", "allowed_bad"):
            values[name] = float(values[name])
        for name in ("budget_remaining", "burn_1d", "burn_3d", "burn_7d"):
            if values[name] is not None:
                values[name] = float(values[name])
        return cls(**values)


# Fields a stored snapshot may lack (written before they existed) -> their value for it. Old
# snapshots' burn windows ended at their ds; what they did not record is unknown (None).
_OPTIONAL = {
    "burn_as_of": lambda data: data.get("ds"),
    "bad_days_7d": lambda data: None,
    "days_observed": lambda data: None,
    "excused_days": lambda data: 0,
    "excused_by": lambda data: {},
}


def _valid_ds(value: str) -> bool:
    try:
        parse_ds(value)
    except SloError:
        return False
    return True


def evaluate(slo: SloDef, points: list[SliPoint], as_of: str | date) -> BudgetSnapshot:
    """The budget snapshot of `slo` on `as_of` from the SLI points known then.

    Only points with ds in as_of - window_days + 1 .. as_of (inclusive) count toward the budget;
    burn windows are the last 1, 3 and 7 days ending at as_of (a quality SLO: at its newest
    mature day in the window). Raises SliPointError for a point that does not fit the SLO's kind
    or a day given twice.
    """
    if not isinstance(slo, SloDef):
        raise SloError(f"evaluate: slo must be a SloDef, got {type(slo).__name__}")
    end = parse_ds(as_of, f"SLO {slo.name!r}: as_of")
    start = end - timedelta(days=slo.window_days - 1)

    # day -> (good, total) or None (a day present but adding nothing: provisional or no value)
    by_day: dict[date, tuple[float, float] | None] = {}
    inconclusive_days: set[date] = set()  # mature, but no event (see mature_days)
    newest_with_data: date | None = None
    first_point: date | None = None
    for point in points:
        if not isinstance(point, SliPoint):
            raise SliPointError(f"SLO {slo.name!r}: expected SliPoint values, got {type(point).__name__}")
        day = date.fromisoformat(point.ds)
        if day in by_day:
            raise SliPointError(
                f"SLO {slo.name!r} (SLI {slo.sli!r}): two points for ds={point.ds}; the store keeps one "
                "value per model, SLI and day, so this is a caller bug"
            )
        contribution = point.events(slo.kind, slo.name)  # validates kind even for ignored days
        if day > end:
            continue  # not known yet on as_of; see "Points dated after as_of" above
        if first_point is None or day < first_point:
            first_point = day
        if contribution is not None and contribution[1] == 0:
            contribution = None  # a ratio day without events adds nothing and is not mature
        by_day[day] = contribution
        if point.inconclusive and not point.provisional:
            inconclusive_days.add(day)
        if contribution is not None and (newest_with_data is None or day > newest_with_data):
            newest_with_data = day

    # Where the burn windows end and the young-window span is measured to (module docstring).
    burn_end: date | None = end
    if slo.quality:
        in_window = newest_with_data is not None and newest_with_data >= start
        burn_end = newest_with_data if in_window else None

    def sums(first: date, last: date = end) -> tuple[float, float, int, int]:
        """good, total, days with a value, days with a bad event; over first .. last."""
        good = total = 0.0
        valued = bad_days = 0
        for day, contribution in by_day.items():
            if contribution is None or not first <= day <= last:
                continue
            good += contribution[0]
            total += contribution[1]
            valued += 1
            if contribution[1] - contribution[0] > 0:
                bad_days += 1
        return good, total, valued, bad_days

    fraction = slo.error_budget_fraction
    good, total, mature_days, _ = sums(start)
    mature_days += sum(1 for d in inconclusive_days if start <= d <= end)
    bad = total - good
    days_observed: int | None = None
    allowed_bad = fraction * total
    if burn_end is not None and first_point is not None:
        span = (burn_end - start).days + 1
        days_observed = (burn_end - max(first_point, start)).days + 1
        if 0 < days_observed < span:
            allowed_bad = allowed_bad * span / days_observed  # a young window, scaled to its span
    remaining = None if total == 0 else _round(1.0 - bad / allowed_bad)

    burns: dict[int, float | None] = {w: None for w in BURN_WINDOWS}
    bad_days_in: dict[int, int] = {w: 0 for w in BURN_WINDOWS}
    if burn_end is not None:
        for w in BURN_WINDOWS:
            g, t, _, bad_days = sums(burn_end - timedelta(days=w - 1), burn_end)
            burns[w] = None if t == 0 else _round(((t - g) / t) / fraction)
            bad_days_in[w] = bad_days

    alert = _alert_level(slo, burns[1], burns[3], burns[7], bad_days_in[3], bad_days_in[7])
    return BudgetSnapshot(
        slo=slo.name,
        ds=end.isoformat(),
        window_start=start.isoformat(),
        total=_round(total),
        bad=_round(bad),
        allowed_bad=_round(allowed_bad),
        budget_remaining=remaining,
        burn_1d=burns[1],
        burn_3d=burns[3],
        burn_7d=burns[7],
        bad_days_3d=bad_days_in[3],
        mature_days=mature_days,
        alert=alert,
        data_as_of=newest_with_data.isoformat() if newest_with_data else None,
        burn_as_of=burn_end.isoformat() if burn_end else None,
        bad_days_7d=bad_days_in[7],
        days_observed=days_observed,
    )


def day_verdict(
    value: float | None,
    lower: float | None,
    upper: float | None,
    threshold: float,
    direction: Literal["at_least", "at_most"] = "at_least",
) -> Literal["good", "bad", "inconclusive"] | None:
    """The verdict on one mature quality day from its value and one-sided confidence bounds.

    "good" when the value meets the threshold; "bad" only when the bound on the good side
    excludes it (at_least: the upper bound is below it; at_most: the lower bound is above it);
    else "inconclusive" (a missing bound cannot exclude anything). None when there is no value.
    """
    if value is None:
        return None
    v, t = _round(value), _round(threshold)
    if (v >= t) if direction == "at_least" else (v <= t):
        return "good"
    if direction == "at_least":
        excluded = upper is not None and _round(upper) < t
    else:
        excluded = lower is not None and _round(lower) > t
    return "bad" if excluded else "inconclusive"


def _alert_level(
    slo: SloDef, burn_1d: float | None, burn_3d: float | None, burn_7d: float | None,
    bad_days_3d: int, bad_days_7d: int,
) -> Literal["page", "ticket"] | None:
    def at_least(value: float | None, threshold: float) -> bool:
        return value is not None and value >= threshold

    page = at_least(burn_3d, slo.page_burn) and at_least(burn_1d, slo.page_burn)
    if page and slo.kind == "timeslice" and bad_days_3d < slo.min_bad_days_page:
        page = False
    if page:
        return "page"
    ticket = at_least(burn_7d, slo.ticket_burn) and at_least(burn_1d, slo.ticket_burn)
    if ticket and slo.kind == "timeslice" and bad_days_7d < slo.min_bad_days_ticket:
        ticket = False
    if ticket:
        return "ticket"
    return None
