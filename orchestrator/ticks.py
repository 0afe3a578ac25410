"""Where the scheduler's clock starts, and when it has moved back: the ledger's word on time.

The ledger remembers the last tick, so a restarted daemon counts what it missed, and in
the same value the runs that were due but still waiting for a slot, so a daemon killed
while they waited runs them after its restart instead of losing their times. A clock
stepped back behind that tick would leave every job waiting until it caught up; both
checks here notice it and count from now instead.
"""

import json
import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta

from orchestrator.model import JobKey, Kind, Work
from orchestrator.reporting.seams import Marks

log = logging.getLogger(__name__)
CLOCK_TOLERANCE = timedelta(seconds=2)


def tick_value(now: datetime, pending: Mapping[Work, datetime]) -> str:
    """Return what the ledger keeps of a tick: its time, and the runs still waiting."""
    waiting = [[str(w.job), w.kind.value, when.isoformat()] for w, when in pending.items()]
    return json.dumps({"at": now.isoformat(), "pending": waiting})


def start_pending(ledger: Marks) -> dict[Work, datetime]:
    """Return the runs that were waiting at the last tick (none if it cannot be read)."""
    try:
        stored = json.loads(ledger.get_state("last_tick") or "{}")
        return {
            Work(JobKey.parse(job), Kind(kind)): datetime.fromisoformat(when)
            for job, kind, when in stored.get("pending", [])
        }
    except Exception:  # a value from before pending was kept, or unreadable: none waited
        return {}


def start_tick(ledger: Marks, now: datetime, count: Callable[[str], None]) -> datetime:
    """Return the last tick the ledger remembers, or `now` if it is unreadable or ahead."""
    try:
        stored = ledger.get_state("last_tick")
        if stored and stored.startswith("{"):
            stored = json.loads(stored)["at"]
        last_tick = datetime.fromisoformat(stored) if stored else now
    except Exception as exc:
        count("ledger")
        log.error("cannot read the last tick from the ledger (%s); counting from now", exc)
        return now
    if last_tick.tzinfo is None:
        last_tick = last_tick.replace(tzinfo=UTC)
    if last_tick > now + CLOCK_TOLERANCE:
        count("clock")
        log.error(
            "the ledger's last tick %s is ahead of the clock %s: the clock moved back; "
            "scheduling from now",
            last_tick.isoformat(),
            now.isoformat(),
        )
        return now
    return last_tick


def moved_back(last_tick: datetime, now: datetime, count: Callable[[str], None]) -> bool:
    """Return whether the clock moved back behind `last_tick`; log and count it if so."""
    if last_tick <= now + CLOCK_TOLERANCE:
        return False
    count("clock")
    log.error(
        "the clock moved back by %.0f s; recomputing every schedule from now",
        (last_tick - now).total_seconds(),
    )
    return True
