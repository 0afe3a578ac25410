"""A run log that also issues receipts: what the daemon and the command line record through.

The ledger is written first, as before; a receipt that cannot be issued is logged and
counted (`receipts`), and never stops a run from being recorded. Each receipt notes (in the
job's spool, not in the receipt) the ledger row it stands for, so a process killed between
the two leaves a row that the next daemon issues late (receipts/reconcile.py).

A ledger that cannot be written (full, corrupt) still gets its receipt issued, unless the
caller writes again later (`retried`: the daemon's Recorder), which issues it then, once.
"""

import logging
from collections.abc import Callable
from datetime import datetime

from orchestrator.model import JobKey, RunRecord
from orchestrator.receipts.issuer import Issuer
from orchestrator.receipts.spool import EVENTS, RUNS, Entry
from orchestrator.reporting.history import Event
from orchestrator.reporting.seams import RunLog

log = logging.getLogger(__name__)


class Receipted:
    """`history`, with a receipt issued for each run and each time that did not run."""

    def __init__(
        self,
        history: RunLog,
        issuer: Issuer,
        count: Callable[[str], None] = lambda _w: None,
        retried: bool = False,
    ) -> None:
        self.history = history
        self.issuer = issuer
        self.count = count
        self.retried = retried

    def record_run(self, run: RunRecord) -> int | None:
        def issue(row: int | None) -> None:
            self.issuer.run(run, Entry(RUNS, row))

        return self._written(lambda: self.history.record_run(run), issue, run.job)

    def record_event(
        self,
        job: JobKey,
        event: Event,
        reason: str,
        scheduled_for: datetime,
        count: int = 1,
        first: datetime | None = None,
    ) -> int | None:
        def issue(row: int | None) -> None:
            entry = Entry(EVENTS, row)
            self.issuer.ticks(job, event.value, reason, scheduled_for, count, first, entry)

        def write() -> int | None:
            return self.history.record_event(job, event, reason, scheduled_for, count, first)

        return self._written(write, issue, job)

    def _written(
        self,
        write: Callable[[], int | None],
        issue: Callable[[int | None], None],
        job: JobKey,
    ) -> int | None:
        """Write the row, then issue its receipt; a row that cannot be written gets its
        receipt now (standing for no row) unless the caller writes it again later."""
        try:
            row = write()
        except Exception:
            if not self.retried:
                self._issue(lambda: issue(None), job)
            raise
        self._issue(lambda: issue(row), job)
        return row

    def _issue(self, issue: Callable[[], None], job: JobKey) -> None:
        try:
            issue()
        except Exception as exc:
            self.count("receipts")
            log.error("%s: no receipt could be issued: %s", job, exc)
