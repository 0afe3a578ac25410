"""Retention holds: after a suspect snapshot, nothing is forgotten until an operator releases.

The ledger keeps them durably; `MemoryHolds` keeps them for one process (tests, and a `Jobs`
without a ledger).
"""

from datetime import datetime
from typing import Protocol


class Holds(Protocol):
    """Where a job's retention hold is kept: the ledger, or memory."""

    def held(self, job: str) -> bool: ...

    def hold(self, job: str, snapshot: str, why: str, now: datetime) -> None: ...

    def last_files(self, job: str) -> int | None:
        """Return how many files the job's last clean snapshot held, if there is one."""
        ...

    def last_snapshot(self, job: str) -> str | None:
        """Return the id of the job's last clean snapshot, if there is one."""
        ...


class MemoryHolds:
    """Holds kept for one process only (tests, and a Jobs without a ledger)."""

    def __init__(self) -> None:
        self.jobs: set[str] = set()

    def held(self, job: str) -> bool:
        return job in self.jobs

    def hold(self, job: str, snapshot: str, why: str, now: datetime) -> None:
        self.jobs.add(job)

    def last_files(self, job: str) -> int | None:
        return None

    def last_snapshot(self, job: str) -> str | None:
        return None
