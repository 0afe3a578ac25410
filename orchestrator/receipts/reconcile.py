"""Receipts issued late: for ledger rows a killed process wrote but never gave a receipt.

Each job's spool remembers the newest ledger row of each table its receipts stand for; the
daemon's publishing thread issues, in order and once a minute, a receipt for every row
after those (a run, a skipped or missed time) older than SETTLE. Known limit: a command
killed after writing its row, while the daemon receipted a newer row of the same job, is
below the mark and stays without a receipt. A job whose spool remembers nothing (its first
receipts, or a lost data directory) is left as it is: its history is not receipted afresh.
"""

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from orchestrator.config.settings import Settings
from orchestrator.model import RunRecord
from orchestrator.receipts.issuer import Issuer
from orchestrator.receipts.spool import Entry
from orchestrator.receipts.terms import JobTerms
from orchestrator.reporting.entries import since
from orchestrator.reporting.store import LEDGER_ID, Database

log = logging.getLogger(__name__)


# A row younger than this is left to the process that wrote it, which issues its receipt
# at once: issuing it here as well would give one run two receipts.
SETTLE = timedelta(seconds=60)


def reconcile(issuer: Issuer, db: Database) -> int:
    """Issue the receipts the ledger's rows are owed; return how many were issued. One
    job's trouble (its spool, a row that cannot be read) is its own: the others go on."""
    issuer.ledger_id = db.get_state(LEDGER_ID) or ""
    issued, before = 0, datetime.now(UTC) - SETTLE
    for job in issuer.jobs():
        try:
            marks = issuer.marks_of(job)
            for table, row, item in since(db, job, marks.rows, before):
                entry = Entry(table, row)
                if marks.done(entry):
                    continue
                if isinstance(item, RunRecord):
                    issuer.run(item, entry)
                else:
                    issuer.ticks(
                        job, item.event, item.reason, item.last, item.count, item.first, entry
                    )
                issued += 1
        except Exception:
            log.exception("%s: the receipts its ledger rows are owed could not be issued", job)
    if issued:
        log.warning("issued %d receipt(s) a stopped process owed (its ledger rows)", issued)
    return issued


def owed(issuer: Issuer, db: Database, every: float = 60.0) -> Callable[[], object]:
    """Return what the publishing thread calls on each pass: `reconcile`, at most once
    `every` seconds (a pass follows every receipt issued, and reconciling reads every job)."""
    last = [float("-inf")]

    def maybe() -> object:
        if time.monotonic() - last[0] < every:
            return 0
        last[0] = time.monotonic()
        return reconcile(issuer, db)

    return maybe


def issuer_for(settings: Settings, terms: JobTerms, db: Database) -> Issuer | None:
    """Return what issues this server's receipts, or None (logged) if its key is unusable:
    the runs go on, receipts or not."""
    try:
        issuer = Issuer(settings, terms, background=True)
    except Exception as exc:
        log.error("receipts are off: %s", exc)
        return None
    issuer.owed = owed(issuer, db)
    try:  # read again at each pass of late receipts: a full disk now must not turn them off
        issuer.ledger_id = db.get_state(LEDGER_ID) or ""
    except Exception as exc:
        log.error("the ledger cannot be read yet (%s); receipts go on", exc)
    return issuer
