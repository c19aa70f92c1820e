"""A model's day and Airflow's logical date, in the model's timezone.

A model's day `ds` runs from midnight to midnight in its timezone (`timezone` in the spec); its
DAGs run with the logical date at that midnight, and their start date is a midnight in the same
timezone, so a start date and the runs of that day line up. Airflow's own `ds` template is the UTC
date of the logical date: for a timezone east of UTC it is the day before (midnight in Tokyo is
15:00 UTC the previous day), so tasks take the model's day from here, never from `ds`.

Standard library only: DAG files import this at parse time.
"""

from __future__ import annotations

from datetime import date, datetime, timezone, tzinfo
from zoneinfo import ZoneInfo


def _zone(tz: str | tzinfo | None) -> tzinfo:
    if tz is None:
        return timezone.utc
    return tz if isinstance(tz, tzinfo) else ZoneInfo(str(tz))


def logical_date(ds: str, tz: str | tzinfo | None) -> datetime:
    """Midnight of the model day `ds` in the model's timezone (an aware datetime)."""
    d = date.fromisoformat(ds)
    return datetime(d.year, d.month, d.day, tzinfo=_zone(tz))


def local_ds(when, tz: str | tzinfo | None) -> str | None:
    """The model day (YYYY-MM-DD) a logical date falls on in the model's timezone; None for None."""
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when.astimezone(_zone(tz)).date().isoformat()
