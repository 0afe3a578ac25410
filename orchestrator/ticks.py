"""Where the scheduler's clock starts, and when it has moved back: the ledger's word on time.

The ledger remembers the last tick, so a restarted daemon counts what it missed, and in
the same value the runs that were due but still waiting for a slot, so a daemon killed
while they waited runs them after its restart instead of losing their times. A clock
stepped back behind that tick would leave every job waiting until it caught up; both
checks here notice it and count from now instead.
"""

import json
import logging
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta

from orchestrator.adoption import ran
from orchestrator.model import JobKey, Kind, Work
from orchestrator.reporting.ledger import Ledger
from orchestrator.reporting.seams import Marks
from orchestrator.reporting.store import unreadable_for_now
from orchestrator.runtime.protocol import Runtime

log = logging.getLogger(__name__)
CLOCK_TOLERANCE = timedelta(seconds=2)


def tick_value(
    now: datetime, pending: Mapping[Work, datetime], launching: Mapping[Work, datetime]
) -> str:
    """Return what the ledger keeps of a tick: its time, the runs still waiting, and the
    runs about to be launched."""

    def listed(works: Mapping[Work, datetime]) -> list[list[str]]:
        return [[str(w.job), w.kind.value, when.isoformat()] for w, when in works.items()]

    return json.dumps(
        {"at": now.isoformat(), "pending": listed(pending), "launching": listed(launching)}
    )


def start_pending(ledger: Marks, key: str = "pending") -> dict[Work, datetime]:
    """Return the runs that were waiting at the last tick, or (`key` "launching") were
    launched and not recorded yet; each entry read on its own, one that cannot be read
    (no time zone, no job) left out, and none at all if the tick cannot be read."""
    try:
        stored = json.loads(ledger.get_state("last_tick") or "{}")
        entries = stored.get(key, []) if isinstance(stored, dict) else []
    except Exception:  # a value from before these were kept, or unreadable: none
        return {}
    found: dict[Work, datetime] = {}
    for entry in entries if isinstance(entries, list) else []:
        try:
            job, kind, when = entry
            moment = datetime.fromisoformat(when)
            if moment.tzinfo is None:
                continue
            found[Work(JobKey.parse(job), Kind(kind))] = moment
        except (TypeError, ValueError):
            continue
    return found


def waiting_at_start(ledger: Ledger, runtime: Runtime, now: datetime) -> dict[Work, datetime]:
    """Return the runs a restarted daemon lets wait again: those waiting for a slot at the
    last tick, and those it launched that reached neither Docker nor the ledger; none
    dated after `now` (the clock moved back: their times come round again). With Docker
    away, a launched run waits again too: the first tick plans only after the workers were
    asked for, and leaves the times they stand for to their adoption (dispatch `claimed`)."""
    waiting = start_pending(ledger.db)
    launching = start_pending(ledger.db, "launching")
    if launching:
        try:
            found = [(w.job, w.label("kind"), w.label("scheduled-for")) for w in runtime.workers()]
        except Exception as exc:
            log.warning("the runs launched before the last stop wait for Docker: %s", exc)
            found = []
        try:
            waiting = {**unlaunched(launching, found, lambda w, t: ran(ledger, w, t)), **waiting}
        except Exception as exc:  # the ledger away: not knowing, none launched twice
            log.error("the runs launched before the last stop cannot be checked: %s", exc)
    return {work: when for work, when in waiting.items() if when <= now}


def unlaunched(
    launching: Mapping[Work, datetime],
    workers: Iterable[tuple[JobKey | None, str, str]],
    ran: Callable[[Work, datetime], bool],
) -> dict[Work, datetime]:
    """Return the runs a killed daemon was about to launch that never reached Docker: no
    worker of theirs (job, kind, scheduled-for label) and no run in the ledger."""
    started = set(workers)
    return {
        work: when
        for work, when in launching.items()
        if (work.job, work.kind.value, when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
        not in started
        and not ran(work, when)
    }


def start_tick(
    ledger: Marks, now: datetime, count: Callable[[str], None], quiet: bool = False
) -> datetime | None:
    """Return the last tick the ledger remembers, or `now` if it is damaged or ahead; None
    while it cannot be read for now (a full disk: asked again, and the times since that
    tick are then caught up or counted missed, not passed over)."""
    try:
        stored = ledger.get_state("last_tick")
        if stored and stored.startswith("{"):
            stored = json.loads(stored)["at"]
        last_tick = datetime.fromisoformat(stored) if stored else now
    except Exception as exc:
        count("ledger")
        if unreadable_for_now(exc):
            if not quiet:
                log.error("cannot read the last tick from the ledger yet (%s); waiting", exc)
            return None
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
