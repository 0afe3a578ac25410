"""How a finished run is written down: one rule for the daemon and the CLI alike.

A backup that did not run (its job was busy) is a skip, not a run; a maintenance step that
did not run is neither. Everything else is a run of the history. The daemon's `Recorder`
writes through the same rule but never raises: a full disk is counted, and the loop goes on.
What it could not write is owed, in order, and written (with its receipt) when the ledger
takes writes again: a full disk delays the record of a run, and never loses it, unless the
daemon is killed before space returns (then a run it launched is launched again at start).
"""

import logging
import threading
from collections import deque
from collections.abc import Callable
from datetime import datetime
from typing import Any

from orchestrator.errors import RuntimeUnavailable
from orchestrator.model import JobKey, Kind, Outcome, Reason, Result, RunRecord, Work
from orchestrator.receipts.issuer import Issuer
from orchestrator.receipts.receipted import Receipted
from orchestrator.reporting.history import Event
from orchestrator.reporting.ledger import Ledger
from orchestrator.reporting.seams import RunLog

log = logging.getLogger(__name__)
# Records held while the ledger takes no writes (a full disk): hours of a big server's runs.
OWED = 100_000


def record(history: RunLog, run: RunRecord) -> None:
    """Write `run` into `history` as a run or a skip (or not at all); raise what the write does."""
    if run.outcome.result is not Result.SKIPPED:
        history.record_run(run)
    elif run.kind is Kind.BACKUP:
        reason = run.outcome.reason or Reason.OVERLAP
        history.record_event(run.job, Event.SKIPPED, reason.value, run.scheduled_for)
    # a drill with nothing to read yet, or a busy job's maintenance: the log says it


def failed_record(
    work: Work, scheduled_for: datetime, started: datetime, exc: Exception
) -> RunRecord:
    """Return the record of a run that raised `exc`: Docker away, or a bug of ours."""
    if isinstance(exc, RuntimeUnavailable):
        outcome = Outcome(Result.FAILURE, Reason.RUNTIME, str(exc))
    else:
        outcome = Outcome(
            Result.FAILURE,
            Reason.INTERNAL,
            f"the run stopped on an internal error ({type(exc).__name__}); the daemon's log "
            "has its trace",
        )
    return RunRecord.of(work, scheduled_for, started, outcome)


class Recorder:
    """Records the daemon's runs and events; a failed write is logged and counted, not raised."""

    def __init__(
        self, ledger: Ledger, count: Callable[[str], None], issuer: Issuer | None = None
    ) -> None:
        # Each run and each time that did not run gets its receipt too, when receipts are on.
        self.history: RunLog = (
            ledger.history
            if issuer is None
            else Receipted(ledger.history, issuer, count, retried=True)
        )
        self.db = ledger.db
        self.count = count
        self.lock = threading.Lock()  # runs end on threads of their own
        self.failing = False
        self.owed: deque[tuple[Callable[..., object], tuple[Any, ...]]] = deque(maxlen=OWED)

    def record(self, run: RunRecord) -> None:
        """Write a finished run down (see `record`)."""
        self.write(record, self.history, run)

    def event(
        self,
        job: JobKey,
        event: Event,
        reason: str,
        scheduled_for: datetime,
        count: int = 1,
        first: datetime | None = None,
    ) -> None:
        """Write down a skipped or `count` missed scheduled times of `job`."""
        self.write(self.history.record_event, job, event, reason, scheduled_for, count, first)

    def write(self, write: Callable[..., object], *args: Any, owe: bool = True) -> bool:
        """Call a ledger write after those still owed; log and count a failure, and owe
        the write (unless not `owe`: a state the next tick writes anew)."""
        with self.lock:
            if self._flush() and self._tried(write, args):
                return True
            self.count("ledger")
            if owe:
                if len(self.owed) == OWED:
                    log.error("%d ledger writes owed: the oldest is dropped", OWED)
                self.owed.append((write, args))  # in order, behind those owed before
            return False

    def flush(self) -> bool:
        """Write what is owed, in order; return whether nothing is owed any more."""
        with self.lock:
            return self._flush()

    def _flush(self) -> bool:
        had = len(self.owed)
        while self.owed:
            write, args = self.owed[0]
            if not self._tried(write, args):
                return False
            self.owed.popleft()
        if had:
            log.warning("the ledger takes writes again: %d owed record(s) written", had)
        return True

    def _tried(self, write: Callable[..., object], args: tuple[Any, ...]) -> bool:
        """Call `write`; a failure is logged once until a write succeeds again."""
        try:
            write(*args)
        except Exception as exc:
            if not self.failing:
                log.error(
                    "cannot write the ledger (%s): %s; owed until it can", write.__name__, exc
                )
            self.failing = True
            try:
                self.db.recover_if_corrupt(exc)
            except Exception:  # moving a corrupt file aside on a full or read-only disk
                log.exception("cannot recover the ledger")
            return False
        self.failing = False
        return True

    @staticmethod
    def log(run: RunRecord) -> None:
        """Log how `run` ended: an error unless it succeeded."""
        outcome = run.outcome
        level = logging.INFO if outcome.result is Result.SUCCESS else logging.ERROR
        log.log(
            level,
            "%s: %s %s%s: %s",
            run.job,
            run.kind.value,
            outcome.result.value,
            f" ({outcome.reason.value})" if outcome.reason else "",
            outcome.message,
        )
