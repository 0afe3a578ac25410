"""Cron schedules (the only module that imports croniter), computed in the customer's zone."""

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from itertools import islice, pairwise
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
        yield fire.astimezone(UTC)


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


GAP_SAMPLES = 300  # fire times read from now on
GAP_BUDGET = 20_000  # fire times one customer file may cost, all its schedules together


class GapCheck:
    """Finds schedules that fire more often than a limit, within a budget per customer file.

    A lower bound read from the expression's own fields settles most schedules at once
    (`0 3 * * *` cannot fire twice within 23 hours). The rest are sampled: the next
    GAP_SAMPLES fire times, and those around each of the next twelve month ends (where a
    `59 23 L * *` meets a `0 0 1 * *`). A file whose schedules would cost more than the
    budget is refused, rather than holding up every other customer's load.
    """

    def __init__(self, limit: int, now: datetime | None = None, budget: int = GAP_BUDGET):
        self.limit = limit
        self.now = now or datetime.now(UTC)
        self.budget = budget
        self.seen: dict[str, int | None] = {}

    def gap(self, expression: str) -> int | None:
        """Return a gap shorter than the limit, in seconds, `expression` has; else None.

        The expression is read in UTC: how often a schedule fires is a matter of its
        fields, and a clock change once a year (1:00 → 3:00 in one real hour) is not a rate.
        Raises ValueError when checking it would exceed the budget (or it is invalid).
        """
        if self.limit <= 0:
            return None
        if expression not in self.seen:
            self.seen[expression] = self._gap(expression)
        return self.seen[expression]

    def _gap(self, expression: str) -> int | None:
        if _lower_bound(expression) >= self.limit:
            return None
        starts = [self.now]
        for month in range(1, 13):
            first = (self.now.replace(day=1) + timedelta(days=32 * month)).replace(day=1)
            starts.append(first.replace(hour=0, minute=0, second=0) - timedelta(hours=1))
        shortest: float | None = None
        for index, start in enumerate(starts):
            count = GAP_SAMPLES if index == 0 else 24
            if self.budget < count:
                raise ValueError(
                    "too irregular to check against UNSTOPPABLE_MIN_INTERVAL within this "
                    "file's budget: simplify it"
                )
            self.budget -= count
            times = list(islice(fires(expression, "UTC", start, "check"), count))
            for a, b in pairwise(times):
                gap = (b - a).total_seconds()
                shortest = gap if shortest is None else min(shortest, gap)
            if shortest is not None and shortest < self.limit:
                return int(shortest)
        return None


def _lower_bound(expression: str) -> float:
    """Return seconds no two fire times of `expression` can be closer than, read in UTC."""
    fields = croniter(expression, datetime(2000, 1, 1, tzinfo=UTC), hash_id=b"check").expanded
    seconds = fields[5] if len(fields) > 5 else [0]
    for values, unit, span in ((seconds, 1, 60), (fields[0], 60, 60), (fields[1], 3600, 24)):
        numbers = list(range(span)) if values == ["*"] else sorted(int(v) for v in values)
        if len(numbers) > 1:
            # Consecutive fires lie within one unit, or across its end: first after last.
            gaps = [b - a for a, b in pairwise(numbers)] + [span - numbers[-1] + numbers[0]]
            return min(gaps) * unit
    return 86400
