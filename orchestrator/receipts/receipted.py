"""A run log that also issues receipts: what the daemon and the command line record through.

The ledger is written first, as before; a receipt that cannot be issued is logged and
counted (`receipts`), and never stops a run from being recorded.
"""

import logging
from collections.abc import Callable
from datetime import datetime

from orchestrator.model import JobKey, RunRecord
from orchestrator.receipts.issuer import Issuer
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

    def record_run(self, run: RunRecord) -> None:
        try:  # a ledger that cannot be written (corrupt, full) loses no receipt
            self.history.record_run(run)
        finally:
            self._issue(lambda: self.issuer.run(run), run.job)

    def record_event(
        self,
        job: JobKey,
        event: Event,
        reason: str,
        scheduled_for: datetime,
        count: int = 1,
        first: datetime | None = None,
    ) -> None:
        try:
            self.history.record_event(job, event, reason, scheduled_for, count, first)
        finally:
            self._issue(
                lambda: self.issuer.ticks(job, event.value, reason, scheduled_for, count, first),
                job,
            )

    def _issue(self, issue: Callable[[], None], job: JobKey) -> None:
        try:
            issue()
        except Exception as exc:
            self.count("receipts")
            log.error("%s: no receipt could be issued: %s", job, exc)
