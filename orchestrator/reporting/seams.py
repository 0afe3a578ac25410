"""The ledger's seams: what runs, drills, recovery and the daemon each need of it.

Each is one small `Protocol` that one of the ledger's stores (reporting/ledger.py) meets:
a user sees only what it reads and writes.
"""

from datetime import datetime
from typing import Protocol

from orchestrator.model import JobKey, RunRecord
from orchestrator.reporting.history import Event
from orchestrator.sources.guard import Baseline


class RunMemory(Protocol):
    """What a backup consults and leaves about its job: its baseline and retention hold."""

    def baseline_now(self, job: JobKey) -> Baseline | None: ...

    def held(self, job: JobKey) -> bool: ...

    def hold(self, job: JobKey, snapshot: str, why: str, now: datetime) -> None: ...


class PastRuns(Protocol):
    """What a job's earlier clean backups say, for judging the next one."""

    def last_files(self, job: JobKey) -> int | None:
        """Return how many files the job's last clean snapshot held, if there is one."""
        ...

    def last_snapshot(self, job: JobKey) -> str | None:
        """Return the id of the job's last clean snapshot, if there is one."""
        ...

    def packed_ratios(self, job: JobKey, count: int, min_added: int) -> tuple[float, ...]:
        """Return the packed share of what the job's last `count` clean backups added.

        Newest first; only backups that added at least `min_added` bytes of file data.
        """
        ...


class LockProgress(Protocol):
    """How far a job's writes are known locked, and what its last lock extension saw."""

    def locked_through(self, job: JobKey) -> datetime | None:
        """Return the time before which everything the job wrote is known locked."""
        ...

    def lock_reached(self, job: JobKey, when: datetime) -> None:
        """Remember that everything the job wrote before `when` is locked."""
        ...

    def record_lock(self, job: JobKey, earliest: datetime | None, unlocked: bool) -> None: ...


class Drills(Protocol):
    """What maintenance keeps between drills: the next slice, and damage found."""

    def next_slice(self, job: JobKey, parts: int) -> int:
        """Return the slice (1..parts) this drill reads, and move on to the next."""
        ...

    def mark_corrupt(self, job: JobKey, why: str, now: datetime) -> None: ...

    def corrupt(self, job: JobKey) -> bool: ...

    def clear_corrupt(self, job: JobKey) -> None: ...


class RunLog(Protocol):
    """Where finished runs, skips and missed times are written."""

    def record_run(self, run: RunRecord) -> int | None:
        """Write `run`; return its id in the ledger (None: a log that keeps none)."""
        ...

    def record_event(
        self,
        job: JobKey,
        event: Event,
        reason: str,
        scheduled_for: datetime,
        count: int = 1,
        first: datetime | None = None,
    ) -> int | None: ...


class Marks(Protocol):
    """The ledger's small key-value state: the last tick, a job paused for recovery."""

    def set_state(self, key: str, value: str) -> None: ...

    def get_state(self, key: str) -> str | None: ...

    def clear_state(self, key: str) -> None: ...
