"""Receipts issued late: for ledger rows a killed process wrote but never gave a receipt.

Each job's spool remembers the newest ledger row of each table its receipts stand for; the
daemon's publishing thread issues, in order and once a minute, a receipt for every row
after those (a run, a skipped or missed time) older than SETTLE. Known limit: a command
killed after writing its row, while the daemon receipted a newer row of the same job, is
below the mark and stays without a receipt. A job whose spool remembers nothing (its first
receipts, or a lost data directory) is left as it is: its history is not receipted afresh.
"""

import logging
from datetime import UTC, datetime, timedelta

from orchestrator.model import RunRecord
from orchestrator.receipts.issuer import Issuer
from orchestrator.receipts.spool import Entry
from orchestrator.reporting.entries import since
from orchestrator.reporting.store import Database

log = logging.getLogger(__name__)


# A row younger than this is left to the process that wrote it, which issues its receipt
# at once: issuing it here as well would give one run two receipts.
SETTLE = timedelta(seconds=60)


def reconcile(issuer: Issuer, db: Database) -> int:
    """Issue the receipts the ledger's rows are owed; return how many were issued."""
    issued, before = 0, datetime.now(UTC) - SETTLE
    for job in issuer.jobs():
        marks = issuer.marks_of(job)
        for table, row, item in since(db, job, marks, before):
            entry = Entry(table, row)
            if isinstance(item, RunRecord):
                issuer.run(item, entry)
            else:
                issuer.ticks(job, item.event, item.reason, item.last, item.count, item.first, entry)
            issued += 1
    if issued:
        log.warning("issued %d receipt(s) a stopped process owed (its ledger rows)", issued)
    return issued
