"""Is a day's batch complete? The pure judgment of a *partial* day.

A partial day is a batch with far fewer rows than usual because the upstream job delivered only
part of the day (the first hours, typically). It is not a random sample of the day: it is a
time-biased one, so every distribution test (drift, skew, score drift, coverage) flags it as a
shift although nothing about the model or its inputs changed. Watchkeeper therefore judges
completeness first and, on a partial day, computes and stores the comparisons but does not alert
on them (see `watchkeeper.analysis`).

The rule (`judge_partial`): a day is partial when its rows < `fraction` x the expected rows.

- *trailing median*: expected = the median of the trailing days' row counts, when at least
  `MIN_KNOWN_DAYS` (3) of them are known.
- *time of day*, on a model's first days: the share of a usual day's traffic that falls between
  the batch's first and last timestamps, from the time-of-day profile of the training set's
  timestamps (in the model's timezone); expected = rows / share, so the rule reads share <
  fraction. A 42-row day that stops at 06:00 covers a few percent of a usual day's traffic and is
  partial on day 1. With very few rows the timestamps cannot tell a partial day from a quiet
  one (a complete day of n events covers less than the share with probability
  n s^(n-1) - (n-1) s^n); such a day is not judged unless that chance is below `CHANCE_LEVEL`.
- neither basis: not judged, and the record says why.

Everything here is a function of its arguments: no clock, no store, no files.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, tzinfo
from typing import Any

import numpy as np
import pandas as pd

MIN_KNOWN_DAYS = 3  # trailing row counts needed before their median is the expected size
TRAILING_DAYS = 7  # how many trailing days the median looks at
PROFILE_MIN_ROWS = 100  # training timestamps needed for a time-of-day profile
CHANCE_LEVEL = 1e-3  # a complete day covering this little of the day by chance: below this
MINUTES = 24 * 60

BASIS_MEDIAN = "trailing_median"
BASIS_TIME_OF_DAY = "time_of_day"


class CompletenessError(ValueError):
    """An argument of the judgment is malformed (a programming error of the caller)."""


@dataclass(frozen=True)
class TrafficProfile:
    """How a usual day's traffic spreads over the clock: events per minute of the local day.

    Built from the training set's timestamps (`from_timestamps`), so it is the model's own
    rhythm: a fraud model's night is quiet, a delivery model peaks at lunch and dinner.
    """

    per_minute: tuple[float, ...]  # MINUTES counts, minute 0 = local midnight
    n: int

    def __post_init__(self) -> None:
        if len(self.per_minute) != MINUTES:
            raise CompletenessError(f"TrafficProfile.per_minute: {MINUTES} counts expected, "
                                    f"got {len(self.per_minute)}")

    @classmethod
    def from_timestamps(cls, timestamps: pd.Series, tz: tzinfo) -> TrafficProfile | str:
        """The profile of these timestamps in timezone `tz`, or the reason there is none.

        Naive timestamps are UTC (how batches and training sets store them)."""
        seconds = local_seconds(timestamps, tz)
        if seconds.size < PROFILE_MIN_ROWS:
            return (f"the training set has {seconds.size} timestamp(s); a time-of-day profile "
                    f"needs {PROFILE_MIN_ROWS}")
        hours = np.unique((seconds // 3600).astype(int))
        if hours.size < 2:
            return ("the training set's timestamps all fall in one hour of the day (dates "
                    "without a time?): they give no time-of-day profile")
        counts = np.bincount((seconds // 60).astype(int).clip(0, MINUTES - 1), minlength=MINUTES)
        return cls(per_minute=tuple(float(c) for c in counts), n=int(seconds.size))

    def share_before(self, second_of_day: float) -> float:
        """The share of a usual day's events before this local second of the day (linear
        within the minute)."""
        counts = np.asarray(self.per_minute)
        s = float(np.clip(second_of_day, 0.0, MINUTES * 60.0))
        minute = int(s // 60)
        full = counts[:minute].sum()
        part = counts[minute] * (s - minute * 60) / 60.0 if minute < MINUTES else 0.0
        return float((full + part) / counts.sum())

    def share_between(self, first_second: float, last_second: float) -> float:
        """The share of a usual day's events from `first_second` to `last_second` (inclusive
        of the minute the last event falls in: the last event is *in* the covered span)."""
        return max(0.0, self.share_before(last_second + 1.0) - self.share_before(first_second))

    def to_dict(self) -> dict[str, Any]:
        return {"per_minute": list(self.per_minute), "n": self.n}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrafficProfile:
        return cls(per_minute=tuple(float(v) for v in data["per_minute"]), n=int(data["n"]))


@dataclass(frozen=True)
class PartialDay:
    """The completeness judgment of one day's batch; `to_dict()` is what the store keeps.

    partial: True / False, or None when not judged (`reason` says why).
    expected: the expected rows (the trailing median, or rows / covered share).
    basis: "trailing_median", "time_of_day" or None.
    covered_share: the share of a usual day's traffic between the batch's first and last
        timestamps (time-of-day basis only).
    first_event / last_event: the batch's first and last timestamps inside the day, local
        HH:MM (when the batch has timestamps), so a reader sees where the day stops.
    """

    partial: bool | None
    rows: int
    expected: float | None
    basis: str | None
    fraction: float
    reason: str
    known_days: int = 0
    covered_share: float | None = None
    first_event: str | None = None
    last_event: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def is_partial(record: dict | None) -> bool:
    """Whether a stored record (PartialDay.to_dict(), or None) says the day is partial."""
    return bool(record) and record.get("partial") is True


def local_seconds(timestamps: pd.Series, tz: tzinfo) -> np.ndarray:
    """Seconds since local midnight (wall clock in `tz`) of the non-null timestamps."""
    ts = pd.to_datetime(pd.Series(timestamps), errors="coerce", utc=True).dropna()
    if ts.empty:
        return np.empty(0)
    local = ts.dt.tz_convert(tz)
    return (local.dt.hour * 3600 + local.dt.minute * 60 + local.dt.second
            + local.dt.microsecond / 1e6).to_numpy(dtype=float)


def _inside_day(timestamps: pd.Series | None, day_start: datetime, day_end: datetime) -> pd.Series:
    if timestamps is None:
        return pd.Series([], dtype="datetime64[ns, UTC]")
    ts = pd.to_datetime(pd.Series(timestamps), errors="coerce", utc=True).dropna()
    start, end = pd.Timestamp(day_start).tz_convert("UTC"), pd.Timestamp(day_end).tz_convert("UTC")
    return ts[(ts >= start) & (ts < end)]


def _hhmm(ts: pd.Timestamp, tz: tzinfo) -> str:
    return ts.tz_convert(tz).strftime("%H:%M")


def _chance_of_span(n: int, share: float) -> float:
    """P(the events of a complete day of n events span at most `share` of its traffic): the
    range of n uniforms on [0, 1] is at most s with probability n s^(n-1) - (n-1) s^n."""
    if n <= 1:
        return 1.0
    s = min(max(share, 0.0), 1.0)
    return float(min(1.0, n * s ** (n - 1) - (n - 1) * s ** n))


def judge_partial(rows: int, *, fraction: float, trailing_counts: Sequence[int] = (),
                  timestamps: pd.Series | None = None, day_start: datetime | None = None,
                  day_end: datetime | None = None, profile: TrafficProfile | str | None = None,
                  tz: tzinfo | None = None) -> PartialDay:
    """Judge whether a day of `rows` rows is partial (see the module docstring for the rule).

    trailing_counts: row counts of the trailing complete-or-not days, newest first (the
        median of the first TRAILING_DAYS is used when at least MIN_KNOWN_DAYS are known).
    timestamps, day_start, day_end, tz: the batch's event timestamps and the day's bounds
        (aware datetimes) in the model's timezone; they say where the batch stops.
    profile: the training set's TrafficProfile, or a string saying why there is none.
    """
    if not 0 < fraction < 1:
        raise CompletenessError(f"fraction must be in (0, 1), got {fraction!r}")
    if rows < 0:
        raise CompletenessError(f"rows must be >= 0, got {rows!r}")
    counts = [int(c) for c in list(trailing_counts)[:TRAILING_DAYS]]
    first = last = None
    inside = pd.Series([], dtype="datetime64[ns, UTC]")
    if day_start is not None and day_end is not None and tz is not None:
        inside = _inside_day(timestamps, day_start, day_end)
        if not inside.empty:
            first, last = inside.min(), inside.max()
    span = {"first_event": None if first is None else _hhmm(first, tz),
            "last_event": None if last is None else _hhmm(last, tz)}
    common = {"rows": int(rows), "fraction": float(fraction), "known_days": len(counts), **span}
    verdict_tail = "judged as incomplete data, not as a shift"
    events = f"events {span['first_event']}-{span['last_event']}" if first is not None else ""

    if len(counts) >= MIN_KNOWN_DAYS:
        expected = float(np.median(counts))
        partial = rows < fraction * expected
        head = (f"{rows} rows vs {expected:g} expected (median of the last {len(counts)} days"
                f"{'; ' + events if events else ''})")
        reason = (f"partial day: {head}; {verdict_tail}" if partial else
                  f"complete: {head}; partial below {fraction:.0%} of it")
        return PartialDay(partial=partial, expected=expected, basis=BASIS_MEDIAN, reason=reason,
                          **common)

    known = (f"{len(counts)} earlier day(s) known, the trailing median needs {MIN_KNOWN_DAYS}")
    if isinstance(profile, str) or profile is None:
        why = profile or "no time-of-day profile of the training set"
        return PartialDay(partial=None, expected=None, basis=None,
                          reason=f"not judged: {known}; {why}", **common)
    if first is None:
        return PartialDay(partial=None, expected=None, basis=None,
                          reason=f"not judged: {known}; no timestamp of the batch falls inside "
                                 "the day", **common)
    n_inside = int(inside.size)
    if n_inside > 1 and first == last:
        return PartialDay(partial=None, expected=None, basis=None,
                          reason=f"not judged: {known}; all {n_inside} events carry the same "
                                 f"timestamp ({span['first_event']}: dates without a time?)",
                          **common)
    share = profile.share_between(float(local_seconds(pd.Series([first]), tz)[0]),
                                  float(local_seconds(pd.Series([last]), tz)[0]))
    if share <= 0:
        return PartialDay(partial=None, expected=None, basis=None, covered_share=0.0,
                          reason=f"not judged: {known}; the batch's {events} fall where the "
                                 "training set saw no traffic", **common)
    expected = rows / share
    head = (f"{rows} rows vs {expected:.0f} expected ({events} cover {share:.1%} of a usual "
            f"day's traffic, by the training set's time-of-day profile)")
    if share < fraction and _chance_of_span(n_inside, share) >= CHANCE_LEVEL:
        return PartialDay(partial=None, expected=None, basis=None, covered_share=share,
                          reason=f"not judged: {known}; {n_inside} event(s) ({events}) are too few "
                                 "to tell a partial day from a quiet one by their timestamps",
                          **common)
    partial = share < fraction
    reason = (f"partial day: {head}; {verdict_tail}" if partial else
              f"complete: {head}; partial below {fraction:.0%} of it")
    return PartialDay(partial=partial, expected=expected, basis=BASIS_TIME_OF_DAY, reason=reason,
                      covered_share=share, **common)
