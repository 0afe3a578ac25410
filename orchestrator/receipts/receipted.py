"""A run log that also issues receipts: what the daemon and the command line record through.

The ledger is written first, as before; a receipt that cannot be issued is logged and
counted (`receipts`), and never stops a run from being recorded. Each receipt notes (in the
job's spool, not in the receipt) the ledger row it stands for, so a process killed between
the two leaves a row that the next daemon issues late (receipts/reconcile.py).
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
        self, history: RunLog, issuer: Issuer, count: Callable[[str], None] = lambda _w: None
    ) -> None:
        self.history = history
        self.issuer = issuer
        self.count = count

    def record_run(self, run: RunRecord) -> int | None:
        row = None
        try:  # a ledger that cannot be written (corrupt, full) loses no receipt
            row = self.history.record_run(run)
            return row
        finally:
            self._issue(lambda: self.issuer.run(run, Entry(RUNS, row)), run.job)

    def record_event(
        self,
        job: JobKey,
        event: Event,
        reason: str,
        scheduled_for: datetime,
        count: int = 1,
        first: datetime | None = None,
    ) -> int | None:
        row = None
        try:
            row = self.history.record_event(job, event, reason, scheduled_for, count, first)
            return row
        finally:
            entry = Entry(EVENTS, row)
            self._issue(
                lambda: self.issuer.ticks(
                    job, event.value, reason, scheduled_for, count, first, entry
                ),
                job,
            )

    def _issue(self, issue: Callable[[], None], job: JobKey) -> None:
        try:
            issue()
        except Exception as exc:
            self.count("receipts")
            log.error("%s: no receipt could be issued: %s", job, exc)
