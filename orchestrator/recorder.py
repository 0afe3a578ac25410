"""How a finished run is written down: one rule for the daemon and the CLI alike.

A backup that did not run (its job was busy) is a skip, not a run; a maintenance step that
did not run is neither. Everything else is a run of the history. The daemon's `Recorder`
writes through the same rule but never raises: a full disk is counted, and the loop goes on.
"""

import logging
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
            ledger.history if issuer is None else Receipted(ledger.history, issuer, count)
        )
        self.db = ledger.db
        self.count = count

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

    def write(self, write: Callable[..., object], *args: Any) -> bool:
        """Call a ledger write; log and count a failure instead of raising it."""
        try:
            write(*args)
            return True
        except Exception as exc:
            self.count("ledger")
            log.error("cannot write the ledger (%s): %s", write.__name__, exc)
            try:
                self.db.recover_if_corrupt(exc)
            except Exception:  # moving a corrupt file aside on a full or read-only disk
                log.exception("cannot recover the ledger")
            return False

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
