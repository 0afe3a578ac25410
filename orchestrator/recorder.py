"""How a finished run is written down: one rule for the daemon and the CLI alike.

A backup that did not run (its job was busy) is a skip, not a run; a maintenance step that
did not run is neither. Everything else is a run of the history. The daemon's `Recorder`
writes through the same rule but never raises: a full disk is counted, and the loop goes on.
What it could not write is owed, in order, and written (with its receipt) when the ledger
takes writes again: a full disk delays the record of a run, and never loses it, unless the
daemon is killed before space returns (then a run it launched is launched again at start).
"""

import contextlib
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
from orchestrator.reporting.store import transient, unreadable_for_now

log = logging.getLogger(__name__)
# Records held while the ledger takes no writes (a full disk): hours of a big server's runs.
OWED = 100_000
RUN, EVENT = "run", "event"


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
    elif unreadable_for_now(exc):  # a full data disk: the ledger a run reads before or after
        outcome = Outcome(
            Result.FAILURE,
            Reason.INTERNAL,
            f"the run stopped: the daemon's ledger could not be read ({exc}); is the disk of "
            "UNSTOPPABLE_DATA_DIR full or failing?",
        )
    else:
        outcome = Outcome(
            Result.FAILURE,
            Reason.INTERNAL,
            f"the run stopped on an internal error ({type(exc).__name__}); the daemon's log "
            "has its trace",
        )
    return RunRecord.of(work, scheduled_for, started, outcome)


class Recorder:
    """Records the daemon's runs and events; a failed write is logged and counted, not raised.

    A write the ledger refuses for now (sqlite's operational errors: a full disk, an I/O
    error, a lock) is owed, in order, and written (with its receipt) once it takes writes
    again. One it can never take (a value sqlite refuses) is not owed, or it would hold
    every later record back: it is dropped, counted, and still gets its receipt (standing
    for no ledger row), as does the oldest owed record when OWED are waiting.
    """

    def __init__(
        self, ledger: Ledger, count: Callable[[str], None], issuer: Issuer | None = None
    ) -> None:
        # Each run and each time that did not run gets its receipt too, when receipts are on.
        self.history: RunLog = ledger.history
        self.given_up: RunLog = ledger.history
        if issuer is not None:
            self.history = Receipted(ledger.history, issuer, count, retried=True)
            self.given_up = Receipted(ledger.history, issuer, count)
        self.db = ledger.db
        self.count = count
        self.lock = threading.Lock()  # runs end on threads of their own
        self.failing = False
        self.owed: deque[tuple[str, tuple[Any, ...]]] = deque()

    def record(self, run: RunRecord) -> None:
        """Write a finished run down (see `record`)."""
        self._recorded(RUN, (run,))

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
        self._recorded(EVENT, (job, event, reason, scheduled_for, count, first))

    def write(self, write: Callable[..., object], *args: Any) -> bool:
        """Write a state the next tick writes anew (never owed), after what is owed."""
        with self.lock:
            if self._flush():
                try:
                    write(*args)
                    return True
                except Exception as exc:
                    self._failed(exc)
            self.count("ledger")
            return False

    def flush(self) -> bool:
        """Write what is owed, in order; return whether nothing is owed any more."""
        with self.lock:
            return self._flush()

    def _recorded(self, what: str, args: tuple[Any, ...]) -> None:
        # Nothing owed (the usual case): written outside the lock, so one job's slow
        # receipt (its store's answer) never holds back another's record or the tick.
        if not self.owed and self._written(what, args):
            return
        with self.lock:
            if self._flush() and self._written(what, args):
                return
            self.count("ledger")
            if len(self.owed) >= OWED:
                self._give_up(*self.owed.popleft(), None)
            self.owed.append((what, args))

    def _written(self, what: str, args: tuple[Any, ...]) -> bool:
        """Write it; True if written or given up for good, False if owed from now."""
        try:
            self._apply(what, args, self.history)
            self.failing = False
            return True
        except Exception as exc:
            if not transient(exc):
                self._give_up(what, args, exc)
                return True
            self._failed(exc)
            return False

    def _flush(self) -> bool:
        written = 0
        while self.owed:
            what, args = self.owed[0]
            try:
                self._apply(what, args, self.history)
            except Exception as exc:
                if transient(exc):
                    self._failed(exc)
                    return False
                self.owed.popleft()
                self._give_up(what, args, exc)
                continue
            self.owed.popleft()
            written += 1
        if written:
            log.warning("the ledger takes writes again: %d owed record(s) written", written)
        self.failing = False
        return True

    def _apply(self, what: str, args: tuple[Any, ...], history: RunLog) -> None:
        if what == RUN:
            record(history, *args)
        else:
            history.record_event(*args)

    def _give_up(self, what: str, args: tuple[Any, ...], exc: Exception | None) -> None:
        """Drop a record from the ledger; its receipt is still issued, for no row."""
        self.count("ledger")
        if exc is not None:
            log.error("a record the ledger cannot take is dropped, receipted: %r", exc)
        elif not self.failing:
            log.error("%d ledger records owed: the oldest are dropped, receipted", OWED)
        with contextlib.suppress(Exception):  # the same write fails again, then receipts
            self._apply(what, args, self.given_up)

    def _failed(self, exc: Exception) -> None:
        """Log the first failure of a run of them; move a corrupt ledger aside."""
        if not self.failing:
            log.error("cannot write the ledger: %s; owed until it can", exc)
        self.failing = True
        try:
            self.db.recover_if_corrupt(exc)
        except Exception:  # moving a corrupt file aside on a full or read-only disk
            log.exception("cannot recover the ledger")

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
