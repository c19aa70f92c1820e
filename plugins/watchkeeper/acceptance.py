"""Expected change (issue 14): an audited acceptance that a feature's new distribution is the new
normal, and the choice of each feature's drift/skew reference that follows from it.

Pure module, standard library only: `watchkeeper gate` imports it (through `watchkeeper.gate`)
and must start in well under a second. Store I/O lives in `watchkeeper.gatekeeper` (the
wk_event rows, like overrides), the comparisons in `watchkeeper.analysis`.

An acceptance (feature, optional segment COL=VALUE, reason, since, until, known_on, who) means:

* runs as of a day ds with known_on <= ds and since <= ds <= until (inclusive; no until: open
  ended) and not revoked as of ds measure skew AND drift of that feature (or only that segment's
  rows) against the ACCEPTED WINDOW: the staged batches of the days since..known_on before ds,
  the 28 most recent of them. Runs as of an earlier day never see it (as-of semantics).
* budgets evaluated as of a day E >= known_on count a feature_drift day d with since <= d <= until
  as good when every drifted row of that day is covered by such an acceptance and was NOT
  measured against that acceptance's own window (a row that still drifts against the accepted
  window is a further change, never excused). The past as known before E is not rewritten.
* a revocation (revoked_on) ends both: runs and evaluations as of revoked_on or later ignore it.

Seasonal features (spec `seasonal`) get their drift reference from the same days of the previous
cycle, and their skew rows are reported but not alerted. Before a cycle of history exists they are
compared with the trailing window; while that window holds fewer than `min_window_days` days (the
days drift needs to learn the feature's day-to-day spread) their drift is reported, not alerted:
yesterday alone says nothing about how far a seasonal input moves in a day.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

__all__ = [
    "ACCEPTED_WINDOW_DAYS",
    "Acceptance",
    "AcceptanceError",
    "FeatureInfo",
    "NotAlerted",
    "ReferencePlan",
    "ReferencePlans",
    "accepted_window",
    "excused_days",
    "new_acceptance",
    "parse_day",
    "parse_segment",
    "plan_references",
    "previous_cycle_days",
    "previous_cycle_staged",
    "revoke",
]

ACCEPTED_WINDOW_DAYS = 28  # the newest staged days of since..known_on an accepted window keeps
_ID = re.compile(r"^acc-[0-9a-f]{8}$")


class AcceptanceError(ValueError):
    """An acceptance (or its revocation) was refused, or a stored one cannot be read. The message
    names the field and why."""


def parse_day(value: Any, what: str) -> str:
    """A day 'YYYY-MM-DD' (or a date) as its ISO text; AcceptanceError naming `what` otherwise."""
    return _day(value, what)


def _day(value: Any, what: str) -> str:
    if isinstance(value, date) and not hasattr(value, "hour"):
        return value.isoformat()
    if isinstance(value, str):
        try:
            parsed = date.fromisoformat(value.strip())
        except ValueError:
            parsed = None
        if parsed is not None and len(value.strip()) == 10:
            return parsed.isoformat()
    raise AcceptanceError(f"{what}: expected a day YYYY-MM-DD, got {value!r}")


def parse_segment(text: str | Mapping[str, Any] | None, segments: Sequence[str],
                  feature: str | None = None, model: str = "") -> tuple[str, str] | None:
    """'country=DE' (or {"country": "DE"}) -> ("country", "DE"), checked against the spec's
    segment columns; None for no segment."""
    if text is None or (isinstance(text, str) and not text.strip()):
        return None
    where = "acceptance refused, segment"
    if isinstance(text, Mapping):
        if len(text) != 1:
            raise AcceptanceError(f"{where}: expected one COLUMN=VALUE, got {dict(text)!r}")
        ((col, value),) = text.items()
        col, value = str(col), "" if value is None else str(value)
    else:
        col, sep, value = str(text).partition("=")
        if not sep:
            raise AcceptanceError(f"{where}: {text!r} is not COLUMN=VALUE (e.g. country=DE)")
    col, value = col.strip(), value.strip()
    if col not in segments:
        known = ", ".join(segments) or "none declared"
        raise AcceptanceError(f"{where}: {col!r} is not a segment column of model {model!r} "
                              f"(segments: {known})")
    if not value:
        raise AcceptanceError(f"{where}: {text!r} names no value after '=' (e.g. {col}=DE)")
    if feature is not None and col == feature:
        raise AcceptanceError(f"{where}: {col!r} is the feature itself; the segment column's own "
                              "distribution is compared only over the whole batch (accept the "
                              "feature without --segment)")
    return col, value


@dataclass(frozen=True)
class Acceptance:
    """One stored acceptance of expected change (see the module docstring)."""

    id: str
    model: str
    feature: str
    segment: tuple[str, str] | None
    reason: str
    since: str
    until: str | None
    created_by: str
    created_at: str  # ISO datetime (UTC)
    known_on: str
    revoked_on: str | None = None
    revoked_by: str | None = None
    revoke_reason: str | None = None

    # -- when it applies --------------------------------------------------------------------
    def known_as_of(self, day: str) -> bool:
        """Known (and not yet revoked) to anything evaluated as of `day`."""
        return self.known_on <= day and not (self.revoked_on is not None and self.revoked_on <= day)

    def covers_day(self, day: str) -> bool:
        return self.since <= day and (self.until is None or day <= self.until)

    def active_for_run(self, ds: str) -> bool:
        """A run as of ds measures against the accepted window."""
        return self.known_as_of(ds) and self.covers_day(ds)

    def matches(self, feature: str, segment: Mapping[str, Any] | None) -> bool:
        """Whether a drift/skew row (feature, segment) is what was accepted: every row of the
        feature for a whole-feature acceptance, only that segment's row otherwise."""
        if feature != self.feature:
            return False
        if self.segment is None:
            return True
        if not segment or len(segment) != 1:
            return False
        ((col, value),) = segment.items()
        return col == self.segment[0] and str(value) == self.segment[1]

    def overlaps(self, first: str, last: str) -> bool:
        return self.since <= last and (self.until is None or self.until >= first)

    @property
    def label(self) -> str:
        """The reference label of rows measured against its window."""
        return f"accepted:{self.id}"

    @property
    def what(self) -> str:
        """'amount' or 'amount [country=DE]'."""
        return self.feature + (f" [{self.segment[0]}={self.segment[1]}]" if self.segment else "")

    def status(self, day: str) -> str:
        """active | scheduled | expired | revoked | not known yet, as of `day`."""
        if self.revoked_on is not None and self.revoked_on <= day:
            return "revoked"
        if self.known_on > day:
            return "not known yet"
        if self.until is not None and self.until < day:
            return "expired"
        if self.since > day:
            return "scheduled"
        return "active"

    def describe(self) -> str:
        until = f"until {self.until}" if self.until else "open-ended"
        return (f"{self.what} since {self.since}, {until} (accepted by {self.created_by} on "
                f"{self.known_on}, {self.id}: {self.reason!r})")

    # -- storage ------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "model": self.model, "feature": self.feature,
            "segment": None if self.segment is None else {self.segment[0]: self.segment[1]},
            "reason": self.reason, "since": self.since, "until": self.until,
            "created_by": self.created_by, "created_at": self.created_at,
            "known_on": self.known_on, "revoked_on": self.revoked_on,
            "revoked_by": self.revoked_by, "revoke_reason": self.revoke_reason,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Acceptance:
        """Read a stored acceptance back (AcceptanceError naming the field when it does not fit)."""
        label = f"stored acceptance {data.get('id')!r}" if isinstance(data, Mapping) else "acceptance"
        if not isinstance(data, Mapping):
            raise AcceptanceError(f"{label}: expected a mapping, got {type(data).__name__}")
        keys = ("id", "model", "feature", "reason", "since", "created_by", "created_at", "known_on")
        missing = [k for k in keys if not data.get(k)]
        if missing:
            raise AcceptanceError(f"{label}: missing field(s) {missing}")
        seg = data.get("segment")
        if seg is not None:
            if not isinstance(seg, Mapping) or len(seg) != 1:
                raise AcceptanceError(f"{label}, field 'segment': expected one {{column: value}}, "
                                      f"got {seg!r}")
            ((col, value),) = seg.items()
            seg = (str(col), str(value))
        until = data.get("until")
        return cls(
            id=str(data["id"]), model=str(data["model"]), feature=str(data["feature"]),
            segment=seg, reason=str(data["reason"]),
            since=_day(data["since"], f"{label}, field 'since'"),
            until=None if until is None else _day(until, f"{label}, field 'until'"),
            created_by=str(data["created_by"]), created_at=str(data["created_at"]),
            known_on=_day(data["known_on"], f"{label}, field 'known_on'"),
            revoked_on=None if data.get("revoked_on") is None
            else _day(data["revoked_on"], f"{label}, field 'revoked_on'"),
            revoked_by=data.get("revoked_by"), revoke_reason=data.get("revoke_reason"))


def new_acceptance(spec: Any, *, id: str, feature: str | None, reason: str | None,
                   segment: str | Mapping[str, Any] | None = None, since: str | None = None,
                   until: str | None = None, known_on: str, today: str, created_by: str | None,
                   created_at: str, default_since: str | None = None) -> Acceptance:
    """Validate and build an acceptance of `spec` (a ModelSpec: its features and segments).

    `since` defaults to `default_since` (the onset of the feature's open drift/skew incident, which
    the caller reads from the outbox) or, failing that, to known_on. Every refusal names the field.
    """
    model = spec.name
    where = "acceptance refused"
    if not _ID.match(id or ""):
        raise AcceptanceError(f"{where}, id: {id!r} is not acc-<8 hex digits>")
    names = [f.name for f in spec.features]
    if feature is None or not str(feature).strip():
        raise AcceptanceError(f"{where}, feature: required (the feature whose change is expected)")
    feature = str(feature).strip()
    if feature not in names:
        raise AcceptanceError(f"{where}, feature: {feature!r} is not a feature of model {model!r} "
                              f"(features: {', '.join(names)})")
    seg = parse_segment(segment, list(spec.segments), feature, model)
    if reason is None or not str(reason).strip():
        raise AcceptanceError(f"{where}, reason: required and not blank (say why the change is "
                              "expected: a new pricing, a season, a new market)")
    if not created_by or not str(created_by).strip():
        raise AcceptanceError(f"{where}, by: required (who accepts the change)")
    known = _day(known_on, f"{where}, as_of")
    now = _day(today, f"{where}, today")
    if known > now:
        raise AcceptanceError(f"{where}, as_of: {known} is after today ({now}); an acceptance "
                              "cannot be known before it is made")
    first = _day(since, f"{where}, since") if since not in (None, "") else (default_since or known)
    first = _day(first, f"{where}, since")
    if first > known:
        raise AcceptanceError(f"{where}, since: {first} is after the day the acceptance becomes "
                              f"known ({known}); the accepted window is the staged days "
                              "since..known_on, so the new normal must have begun by then")
    last = None if until in (None, "") else _day(until, f"{where}, until")
    if last is not None and last < first:
        raise AcceptanceError(f"{where}, until: {last} is before since {first}; an acceptance "
                              "must end on or after its first day")
    return Acceptance(id=id, model=model, feature=feature, segment=seg, reason=str(reason).strip(),
                      since=first, until=last, created_by=str(created_by).strip(),
                      created_at=created_at, known_on=known)


def revoke(a: Acceptance, *, on: str, by: str | None, reason: str | None) -> Acceptance:
    """The acceptance revoked as of `on` (runs and evaluations as of `on` or later ignore it)."""
    where = f"revocation of {a.id} refused"
    day = _day(on, f"{where}, as_of")
    if a.revoked_on is not None:
        raise AcceptanceError(f"{where}: already revoked on {a.revoked_on} by {a.revoked_by}")
    if day < a.known_on:
        raise AcceptanceError(f"{where}, as_of: {day} is before the acceptance became known "
                              f"({a.known_on})")
    if not by or not str(by).strip():
        raise AcceptanceError(f"{where}, by: required (who revokes it)")
    from dataclasses import replace

    return replace(a, revoked_on=day, revoked_by=str(by).strip(),
                   revoke_reason=(reason or "").strip() or None)


def newest(acceptances: Iterable[Acceptance]) -> Acceptance | None:
    """Of several acceptances of the same thing, the one made last wins."""
    return max(acceptances, key=lambda a: (a.known_on, a.created_at, a.id), default=None)


# ----- references of a day's comparisons -------------------------------------------------------


def accepted_window(a: Acceptance, ds: str, staged_days: Iterable[str],
                    limit: int = ACCEPTED_WINDOW_DAYS) -> list[str]:
    """The staged days since..known_on strictly before ds (a day is never its own reference),
    the `limit` most recent of them, oldest first."""
    days = sorted(d for d in set(staged_days) if a.since <= d <= a.known_on and d < ds)
    return days[-limit:]


def previous_cycle_days(ds: str, period: int, reference_days: int) -> list[str]:
    """reference_days days centred on ds - period (ds - period - R//2 .. ds - period + R - R//2 - 1),
    those before ds."""
    centre = date.fromisoformat(ds) - timedelta(days=period)
    half = reference_days // 2
    days = [(centre + timedelta(days=k)).isoformat() for k in range(-half, reference_days - half)]
    return [d for d in days if d < ds]


def previous_cycle_staged(ds: str, period: int, reference_days: int,
                          staged: Iterable[str]) -> tuple[list[str], list[str], int]:
    """(the previous cycle's days, those of them staged, how many must be staged): a seasonal
    reference uses the previous cycle only when `cycle and len(staged days) >= needed`."""
    cycle = previous_cycle_days(ds, period, reference_days)
    have = set(staged)
    return cycle, [d for d in cycle if d in have], (reference_days + 1) // 2


@dataclass(frozen=True)
class FeatureInfo:
    """What the planner needs of a spec feature."""

    name: str
    season_days: int | None = None


@dataclass(frozen=True)
class ReferencePlan:
    """One reference and the features (or the one segment row) compared with it.

    label: "training" (skew's usual reference), "window" (drift's trailing clean days),
    "accepted:<id>" (an acceptance's window), "seasonal:previous_cycle". `days` are the staged
    days that make the reference (None: the training set).
    """

    label: str
    features: tuple[str, ...]
    days: tuple[str, ...] | None
    segment: tuple[str, str] | None = None
    acceptance: str | None = None
    period: int | None = None

    @property
    def usual(self) -> bool:
        return self.label in ("training", "window")

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "features": list(self.features),
                "days": None if self.days is None else list(self.days),
                "segment": None if self.segment is None else {self.segment[0]: self.segment[1]},
                "acceptance": self.acceptance, "period": self.period}


@dataclass(frozen=True)
class NotAlerted:
    """Rows that are measured and stored but never alerted (drifted False), and why."""

    feature: str
    segment: tuple[str, str] | None
    reason: str

    def matches(self, feature: str, segment: Mapping[str, Any] | None) -> bool:
        if feature != self.feature:
            return False
        if self.segment is None:
            return True
        return bool(segment) and len(segment) == 1 and \
            next(iter(segment)) == self.segment[0] and str(next(iter(segment.values()))) == self.segment[1]


@dataclass(frozen=True)
class ReferencePlans:
    """Every reference of one day's drift or skew comparisons of a feature group."""

    kind: str
    plans: tuple[ReferencePlan, ...]
    not_alerted: tuple[NotAlerted, ...] = ()
    notes: tuple[str, ...] = ()

    def claimed_segments(self) -> set[tuple[str, str, str]]:
        """(feature, column, value) rows taken over by a segment acceptance's window."""
        return {(p.features[0], *p.segment) for p in self.plans if p.segment is not None}

    def label_of(self, feature: str, segment: Mapping[str, Any] | None) -> str:
        for p in self.plans:
            if p.segment is not None and feature == p.features[0] and segment and \
                    len(segment) == 1 and next(iter(segment)) == p.segment[0] and \
                    str(next(iter(segment.values()))) == p.segment[1]:
                return p.label
        for p in self.plans:
            if p.segment is None and feature in p.features:
                return p.label
        return "training" if self.kind == "skew" else "window"

    def restrict(self, features: Iterable[str] | None) -> ReferencePlans:
        """The plans of a feature group (None: every feature), planned for the whole day so that
        the mapped groups and one process over all features decide alike."""
        if features is None:
            return self
        keep = set(features)
        plans = []
        for p in self.plans:
            names = tuple(n for n in p.features if n in keep)
            if names:
                plans.append(ReferencePlan(p.label, names, p.days, p.segment, p.acceptance, p.period))
        return ReferencePlans(self.kind, tuple(plans),
                              tuple(n for n in self.not_alerted if n.feature in keep),
                              tuple(n for n in self.notes if n.split(":", 1)[0] in keep))

    def not_alerted_reason(self, feature: str, segment: Mapping[str, Any] | None) -> str | None:
        for n in self.not_alerted:
            if n.matches(feature, segment):
                return n.reason
        return None


def plan_references(kind: str, ds: str, features: Sequence[FeatureInfo],
                    acceptances: Iterable[Acceptance], *, staged_days: Iterable[str],
                    clean_window: Sequence[str] | None, reference_days: int,
                    window_limit: int = ACCEPTED_WINDOW_DAYS,
                    min_window_days: int = 1) -> ReferencePlans:
    """Pick each feature's reference for a day's drift or skew (rules in the module docstring).

    In order: an acceptance active for ds (the newest, if several) -> its window; a seasonal
    feature's drift -> the previous cycle when at least half its days are staged, else the
    trailing window; otherwise the usual reference (training set for skew, the clean window for
    drift). Features sharing a reference are grouped in one plan.
    """
    if kind not in ("drift", "skew"):
        raise AcceptanceError(f"plan_references: kind must be 'drift' or 'skew', got {kind!r}")
    staged = set(staged_days)
    usual_label = "training" if kind == "skew" else "window"
    usual_days = None if kind == "skew" else tuple(clean_window or ())
    usual_text = "training set" if kind == "skew" else "trailing clean window"
    active = [a for a in acceptances if a.active_for_run(ds)]
    groups: dict[tuple, list[str]] = {(usual_label, usual_days, None, None, None): []}
    not_alerted: list[NotAlerted] = []
    notes: list[str] = []

    def add(key: tuple, name: str) -> None:
        groups.setdefault(key, []).append(name)

    for f in features:
        whole = newest(a for a in active if a.feature == f.name and a.segment is None)
        window = accepted_window(whole, ds, staged, window_limit) if whole else []
        if whole and window:
            add((whole.label, tuple(window), None, whole.id, None), f.name)
        elif whole:
            add((usual_label, usual_days, None, None, None), f.name)
            not_alerted.append(NotAlerted(f.name, None, (
                f"accepted as expected change ({whole.id}), but no staged day of its window "
                f"{whole.since}..{whole.known_on} precedes {ds} yet: measured against the "
                f"{usual_text}, not alerted")))
        elif f.season_days and kind == "drift":
            cycle, have, need = previous_cycle_staged(ds, f.season_days, reference_days, staged)
            if cycle and len(have) >= need:
                add(("seasonal:previous_cycle", tuple(have), None, None, f.season_days), f.name)
            else:
                add((usual_label, usual_days, None, None, None), f.name)
                span = f"{cycle[0]}..{cycle[-1]}" if cycle else "none"
                notes.append(f"{f.name}: seasonal (period {f.season_days} days); {len(have)} of "
                             f"{len(cycle)} days of the previous cycle ({span}) are staged, "
                             f"{need} needed: compared with the trailing window")
                if len(usual_days or ()) < min_window_days:
                    not_alerted.append(NotAlerted(f.name, None, (
                        f"seasonal feature with {len(usual_days or ())} day(s) in its trailing "
                        f"window, {min_window_days} needed to learn its day-to-day spread: "
                        "reported, not alerted")))
        else:
            add((usual_label, usual_days, None, None, None), f.name)
        if f.season_days and kind == "skew" and not whole:
            not_alerted.append(NotAlerted(f.name, None, (
                f"seasonal feature (period {f.season_days} days): skew against the training set "
                "is reported, not alerted")))
        if whole:
            continue  # a whole-feature acceptance covers its segment rows too
        by_segment: dict[tuple[str, str], list[Acceptance]] = {}
        for a in active:
            if a.feature == f.name and a.segment is not None:
                by_segment.setdefault(a.segment, []).append(a)
        for seg, items in sorted(by_segment.items()):
            a = newest(items)
            assert a is not None
            window = accepted_window(a, ds, staged, window_limit)
            if window:
                add((a.label, tuple(window), seg, a.id, None), f.name)
            else:
                not_alerted.append(NotAlerted(f.name, seg, (
                    f"accepted as expected change ({a.id}), but no staged day of its window "
                    f"{a.since}..{a.known_on} precedes {ds} yet: measured against the "
                    f"{usual_text}, not alerted")))
    plans = tuple(ReferencePlan(label=k[0], features=tuple(v), days=k[1], segment=k[2],
                                acceptance=k[3], period=k[4])
                  for k, v in groups.items() if v)
    return ReferencePlans(kind=kind, plans=plans, not_alerted=tuple(not_alerted),
                          notes=tuple(notes))


# ----- budgets ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class DriftDay:
    """One feature_drift SLI day as budgets see it: bad or not, and its drifted rows
    ({"feature", "segment", "reference"}) when the SLI recorded them (None: unknown)."""

    ds: str
    bad: bool
    drifted: tuple[Mapping[str, Any], ...] | None = None


@dataclass(frozen=True)
class Excused:
    """The days a set of acceptances excuses, and which acceptance excused each."""

    days: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def count_by(self, first: str, last: str) -> dict[str, int]:
        out: dict[str, int] = {}
        for d, ids in self.days.items():
            if first <= d <= last:
                for i in ids:
                    out[i] = out.get(i, 0) + 1
        return out


def excused_days(days: Iterable[DriftDay], acceptances: Iterable[Acceptance],
                 known_on: str) -> Excused:
    """The bad feature_drift days that count as good in budgets evaluated as of `known_on`: every
    drifted row of the day is covered by an acceptance known as of `known_on` whose
    since..until holds the day, and was not measured against that acceptance's own window.
    A day whose drifted rows were not recorded is never excused (nothing says what drifted)."""
    known = [a for a in acceptances if a.known_as_of(known_on)]
    out: dict[str, tuple[str, ...]] = {}
    if not known:
        return Excused(out)
    for day in days:
        if not day.bad or not day.drifted:
            continue
        ids: list[str] = []
        for row in day.drifted:
            cover = next((a for a in known if a.covers_day(day.ds)
                          and a.matches(str(row.get("feature")), row.get("segment"))
                          and row.get("reference") != a.label), None)
            if cover is None:
                break
            ids.append(cover.id)
        else:
            out[day.ds] = tuple(dict.fromkeys(ids))
    return Excused(out)
