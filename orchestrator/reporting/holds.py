"""The ledger's seams for runs and maintenance: retention holds, and what drills remember.

After a suspect snapshot, nothing is forgotten until an operator releases it.

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

    def packed_ratios(self, job: str, count: int, min_added: int) -> tuple[float, ...]:
        """Return the packed share of what the job's last `count` clean backups added.

        Newest first; only backups that added at least `min_added` bytes of file data.
        """
        ...

    def locked_through(self, job: str) -> datetime | None:
        """Return the time before which everything the job wrote is known locked."""
        ...

    def lock_reached(self, job: str, when: datetime) -> None:
        """Remember that everything the job wrote before `when` is locked."""
        ...


class MemoryHolds:
    """Holds kept for one process only (tests, and a Jobs without a ledger)."""

    def __init__(self) -> None:
        self.jobs: set[str] = set()
        self.locked: dict[str, datetime] = {}

    def held(self, job: str) -> bool:
        return job in self.jobs

    def hold(self, job: str, snapshot: str, why: str, now: datetime) -> None:
        self.jobs.add(job)

    def last_files(self, job: str) -> int | None:
        return None

    def last_snapshot(self, job: str) -> str | None:
        return None

    def packed_ratios(self, job: str, count: int, min_added: int) -> tuple[float, ...]:
        return ()

    def locked_through(self, job: str) -> datetime | None:
        return self.locked.get(job)

    def lock_reached(self, job: str, when: datetime) -> None:
        self.locked[job] = when


class Drills(Protocol):
    """What maintenance keeps between runs: the next slice, damage found, the bucket's lock."""

    def next_slice(self, job: str, parts: int) -> int:
        """Return the slice (1..parts) this drill reads, and move on to the next."""
        ...

    def mark_corrupt(self, job: str, why: str, now: datetime) -> None: ...

    def corrupt(self, job: str) -> bool: ...

    def clear_corrupt(self, job: str) -> None: ...

    def record_lock(self, job: str, earliest: datetime | None, unlocked: bool) -> None: ...
