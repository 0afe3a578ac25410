"""Cron schedules (the only module that imports croniter), computed in the customer's zone."""

from datetime import UTC, datetime
from itertools import pairwise
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadCronError, croniter


def check_cron(expression: str) -> None:
    """Raise ValueError if `expression` is not a 5- or 6-field cron expression."""
    fields = expression.split()
    if len(fields) not in (5, 6):
        raise ValueError("expected 5 cron fields (or 6, the last being seconds)")
    try:
        croniter(expression, datetime(2000, 1, 1, tzinfo=UTC), hash_id=b"check")
    except (CroniterBadCronError, ValueError, KeyError) as exc:
        raise ValueError(f"not a valid cron expression ({exc})") from None


def check_timezone(name: str) -> None:
    """Raise ValueError if `name` is not an IANA time zone."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError("not an IANA time zone such as UTC or Europe/Berlin") from None


def next_fire(expression: str, timezone: str, after: datetime, hash_id: str = "") -> datetime:
    """Return the first time strictly after `after` that `expression` names, in UTC.

    The expression is read in `timezone` (DST-aware); `hash_id` spreads `H` fields.
    """
    zone = ZoneInfo(timezone)
    it = croniter(expression, after.astimezone(zone), hash_id=hash_id.encode() or None)
    pinned_hours = expression.split()[1] != "*"
    while True:
        fire: datetime = it.get_next(datetime)
        local = fire.astimezone(zone)
        # When clocks fall back, a wall time happens twice. Like Vixie cron, a job pinned to
        # certain hours runs at the first one only; an every-hour job keeps its real hours.
        if pinned_hours and local.fold == 1 and _ambiguous(local):
            continue
        return fire.astimezone(UTC)


def _ambiguous(local: datetime) -> bool:
    return local.replace(fold=0).utcoffset() != local.replace(fold=1).utcoffset()


def expected_interval(expression: str, timezone: str, now: datetime, samples: int = 8) -> float:
    """Return the longest gap, in seconds, between the next `samples` scheduled times.

    The longest, not the typical: a weekday-only job is overdue after a weekend plus a day,
    not after a day.
    """
    times = [now]
    for _ in range(samples + 1):
        times.append(next_fire(expression, timezone, times[-1], "interval"))
    return max((b - a).total_seconds() for a, b in pairwise(times[1:]))
