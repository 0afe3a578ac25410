"""Cron schedules (the only module that imports croniter), computed in the customer's zone."""

import re
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from itertools import pairwise
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

# A schedule must fire within this many years of today: "0 0 30 2 *" never does, and a job
# that never runs is a customer silently without backups.
HORIZON_YEARS = 5
MAX_LENGTH = 200  # croniter's parse grows with the expression; real ones are short


class CronInvalid(ValueError):
    """The text is no cron expression croniter can read."""


def check_cron(expression: str, timezone: str = "UTC", now: datetime | None = None) -> None:
    """Raise ValueError unless `expression` is a 5- or 6-field cron expression that fires.

    It must fire within HORIZON_YEARS after `now` (default: the clock), read in `timezone`.
    """
    if len(expression) > MAX_LENGTH:
        raise ValueError(f"longer than {MAX_LENGTH} characters")
    fields = expression.split()
    if len(fields) not in (5, 6) or not expression.isascii():
        raise ValueError("expected 5 cron fields (or 6, the last being seconds)")
    if "R" in expression.upper():
        # croniter draws an R field anew on every computation: no rate can be promised.
        raise ValueError("R (a random time) is not supported: use H, a spread that stays put")
    start = now or datetime.now(UTC)
    try:  # one parse: its first time tells both whether it reads and whether it fires
        fire: datetime | None = next_fire(expression, timezone, start, "validation")
    except CronInvalid:
        raise
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
    return next(fires(expression, timezone, after, hash_id))


def fires(expression: str, timezone: str, after: datetime, hash_id: str = "") -> Iterator[datetime]:
    """Yield the times `expression` names after `after`, in UTC, as `next_fire` would.

    Raises ValueError when the expression is invalid or names no next time.
    """
    zone = ZoneInfo(timezone)
    try:
        it = croniter(
            expression,
            after.astimezone(zone),
            hash_id=hash_id.encode() or None,
            max_years_between_matches=HORIZON_YEARS,
        )
    except Exception as exc:  # croniter raises several types for bad text; all mean the same
        raise CronInvalid(f"not a valid cron expression ({_short(exc)})") from None
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
        yield fire.astimezone(UTC)


def _ambiguous(local: datetime) -> bool:
    return local.replace(fold=0).utcoffset() != local.replace(fold=1).utcoffset()


def expected_interval(expression: str, timezone: str, now: datetime, samples: int = 8) -> float:
    """Return the longest gap, in seconds, between the next `samples` scheduled times.

    The longest, not the typical: a weekday-only job is overdue after a weekend plus a day,
    not after a day.
    """
    upcoming = fires(expression, timezone, now, "interval")  # parsed once for every sample
    times = [next(upcoming) for _ in range(samples + 1)]
    return max((b - a).total_seconds() for a, b in pairwise(times))


def _short(exc: Exception) -> str:
    """Return croniter's complaint without the expression it quotes (messages name no value)."""
    text = re.sub(r"\[[^\]]*\]|'[^']*'|\"[^\"]*\"", "…", str(exc))
    return text.splitlines()[0][:120] if text.strip() else type(exc).__name__


DAY = 86400


class GapCheck:
    """Finds schedules that fire more often than a limit, from their fields alone.

    The fields below a day (seconds, minutes, hours) name the same times on every day the
    others select, so the shortest gap within a day is exact. Across midnight, the last time
    of one day and the first of the next are as close as they get whenever two consecutive
    days fire; that is counted as if they always may (day-of-month and weekday select days
    with OR, `L` and `#` move with the calendar): a schedule only that close across some
    midnights is still refused. No fire times are enumerated, so no schedule is slow.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.seen: dict[str, int | None] = {}

    def gap(self, expression: str) -> int | None:
        """Return a gap shorter than the limit, in seconds, `expression` has; else None.

        The expression is read in UTC: how often a schedule fires is a matter of its
        fields, and a clock change once a year (1:00 → 3:00 in one real hour) is not a rate.
        Raises ValueError when the expression is invalid.
        """
        if self.limit <= 0:
            return None
        if expression not in self.seen:
            shortest = shortest_gap(expression)
            self.seen[expression] = shortest if shortest < self.limit else None
        return self.seen[expression]


def shortest_gap(expression: str) -> int:
    """Return the shortest time in seconds between two fire times of `expression` (UTC)."""
    try:
        fields = croniter(expression, datetime(2000, 1, 1, tzinfo=UTC), hash_id=b"check").expanded
    except Exception as exc:
        raise ValueError(f"not a valid cron expression ({_short(exc)})") from None
    seconds = _values(fields[5], 60) if len(fields) > 5 else [0]
    if len(seconds) > 1:  # within a minute, or into the next one: under a minute either way
        return min([b - a for a, b in pairwise(seconds)] + [60 - seconds[-1] + seconds[0]])
    times = sorted(
        h * 3600 + m * 60 + seconds[0]
        for h in _values(fields[1], 24)
        for m in _values(fields[0], 60)
    )
    return min([b - a for a, b in pairwise(times)] + [DAY - times[-1] + times[0]])


def _values(field: Sequence[object], span: int) -> list[int]:
    """Return the numbers a croniter field names, `*` spelled out."""
    return list(range(span)) if list(field) == ["*"] else sorted({int(str(v)) for v in field})
