"""Cron schedules (the only module that imports croniter), computed in the customer's zone."""

import re
from datetime import UTC, datetime
from itertools import pairwise
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

# A schedule must fire within this many years of today: "0 0 30 2 *" never does, and a job
# that never runs is a customer silently without backups.
HORIZON_YEARS = 5
MAX_LENGTH = 200  # croniter's parse grows with the expression; real ones are short


def check_cron(expression: str, timezone: str = "UTC", now: datetime | None = None) -> None:
    """Raise ValueError unless `expression` is a 5- or 6-field cron expression that fires.

    It must fire within HORIZON_YEARS after `now` (default: the clock), read in `timezone`.
    """
    if len(expression) > MAX_LENGTH:
        raise ValueError(f"longer than {MAX_LENGTH} characters")
    fields = expression.split()
    if len(fields) not in (5, 6) or not expression.isascii():
        raise ValueError("expected 5 cron fields (or 6, the last being seconds)")
    start = now or datetime.now(UTC)
    try:
        croniter(expression, start, hash_id=b"check")
    except Exception as exc:  # croniter raises several types for bad text; all mean the same
        raise ValueError(f"not a valid cron expression ({_short(exc)})") from None
    try:
        fire = next_fire(expression, timezone, start, "check")
    except ValueError:
        fire = None
    if fire is None or (fire - start).days > 366 * HORIZON_YEARS:
        raise ValueError(
            f"never fires within the next {HORIZON_YEARS} years (a date that never comes)"
        )


def check_timezone(name: str) -> None:
    """Raise ValueError if `name` is not an IANA time zone."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError, UnicodeError):
        raise ValueError("not an IANA time zone such as UTC or Europe/Berlin") from None


def next_fire(expression: str, timezone: str, after: datetime, hash_id: str = "") -> datetime:
    """Return the first time strictly after `after` that `expression` names, in UTC.

    The expression is read in `timezone` (DST-aware); `hash_id` spreads `H` fields.
    Raises ValueError when the expression names no time within HORIZON_YEARS.
    """
    zone = ZoneInfo(timezone)
    try:
        it = croniter(
            expression,
            after.astimezone(zone),
            hash_id=hash_id.encode() or None,
            max_years_between_matches=HORIZON_YEARS,
        )
    except Exception as exc:
        raise ValueError(f"not a valid cron expression ({_short(exc)})") from None
    pinned_hours = expression.split()[1] != "*"
    while True:
        try:
            fire: datetime = it.get_next(datetime)
        except Exception as exc:  # "failed to find next date", or an overflow past year 9999
            raise ValueError(f"no next time ({_short(exc)})") from None
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


def _short(exc: Exception) -> str:
    """Return croniter's complaint without the expression it quotes (messages name no value)."""
    text = re.sub(r"\[[^\]]*\]|'[^']*'|\"[^\"]*\"", "…", str(exc))
    return text.splitlines()[0][:120] if text.strip() else type(exc).__name__
