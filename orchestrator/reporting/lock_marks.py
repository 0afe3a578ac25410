"""What the ledger knows of each job's object lock: how far it is known to reach."""

import logging
from datetime import datetime

from orchestrator.model import JobKey
from orchestrator.reporting.job_memory import keyed, state_key
from orchestrator.reporting.store import Database, iso, set_value, transient

log = logging.getLogger(__name__)

LOCKED = "locked:"  # the soonest a live object of the job's cold repository is unlocked
UNLOCKED = "unlocked:"  # a customer whose bucket has no object lock
LOCKED_THROUGH = "locked-through:"  # everything the job wrote before then is locked


class LockMarks:
    """Lock ends and lock progress per job, and the customers whose bucket has no lock."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def record_lock(self, job: JobKey, earliest: datetime | None, unlocked: bool) -> None:
        """Remember what the job's last lock extension saw of its bucket."""
        locked, customer = state_key(LOCKED, job), UNLOCKED + job.customer
        with self.db.connect() as db:
            db.execute("DELETE FROM state WHERE key IN (?, ?)", (locked, customer))
            if earliest is not None:
                set_value(db, locked, iso(earliest))
            if unlocked:
                set_value(db, customer, "1")

    def locked_through(self, job: JobKey) -> datetime | None:
        """Return the time before which everything the job wrote is known locked; None
        (lock it all) while the ledger cannot be read: the run that asks has already run,
        and its outcome must not be lost to a full data disk."""
        try:
            found = self.db.get_state(state_key(LOCKED_THROUGH, job))
        except Exception as exc:
            if not transient(exc):
                raise
            log.warning("%s: lock progress unreadable (%s): every live object is checked", job, exc)
            return None
        return datetime.fromisoformat(found) if found else None

    def lock_reached(self, job: JobKey, when: datetime) -> None:
        """Remember that everything the job wrote before `when` is locked; a ledger that
        takes no write now only makes the next pass start earlier."""
        try:
            self.db.set_state(state_key(LOCKED_THROUGH, job), iso(when))
        except Exception as exc:
            if not transient(exc):
                raise
            log.warning("%s: lock progress not remembered (%s)", job, exc)

    def lock_state(self) -> tuple[dict[JobKey, datetime], set[str]]:
        """Return each job's soonest lock end, and the customers whose bucket has no lock."""
        until: dict[JobKey, datetime] = {}
        unlocked: set[str] = set()
        with self.db.connect() as db:
            for key, value in db.execute(
                "SELECT key, value FROM state WHERE key LIKE ? OR key LIKE ?",
                (LOCKED + "%", UNLOCKED + "%"),
            ):
                if key.startswith(UNLOCKED):
                    unlocked.add(key.removeprefix(UNLOCKED))
                elif (job := keyed(LOCKED, key)) is not None:
                    until[job] = datetime.fromisoformat(value)
        return until, unlocked
