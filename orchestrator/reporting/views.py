"""What only the running daemon knows, handed to each scrape: its jobs, workers and repositories."""

import os
from dataclasses import dataclass
from pathlib import Path

from orchestrator.model import JobKey

# Where a problem the daemon survived came from: `unstoppable_daemon_errors_total{what}`.
# adopt: collecting a previous daemon's workers; config: loading customers.d (a file that
# raised, a reload that failed or hung); plan: a tick; run: a run that raised (recorded with
# reason `internal`); report: recording, pinging or logging a finished run; metrics: a job's
# part of a scrape; clock, ledger, runtime: the clock, the ledger and Docker; status: the
# status pages' port that could not be bound.
DAEMON_ERRORS = (
    "adopt",
    "clock",
    "config",
    "internal",
    "ledger",
    "metrics",
    "plan",
    "receipts",
    "report",
    "run",
    "runtime",
    "status",
)


@dataclass(frozen=True)
class JobView:
    job: JobKey
    next_run: float | None
    expected_interval: float
    snapshots_dir: Path  # the hot repository's snapshots/, one file per snapshot
    verify_interval: float | None = None  # longest gap between the job's restore drills


@dataclass(frozen=True)
class DaemonView:
    """What only the running daemon knows, handed to each scrape."""

    jobs: tuple[JobView, ...]
    valid_customers: tuple[str, ...]
    invalid_customers: tuple[str, ...]
    running: frozenset[JobKey]
    heartbeat: float
    rustic_version: str
    errors: tuple[tuple[str, int], ...] = ()  # problems the daemon survived, by origin
    lock_margin: float | None = None  # seconds: a lock ending sooner is BackupLockExpiring
    undelivered: tuple[tuple[JobKey, int], ...] = ()  # receipts not published yet, by job


def snapshot_files(directory: Path) -> tuple[int, float]:
    """Return how many snapshot files `directory` holds and the newest one's mtime."""
    count, latest = 0, 0.0
    try:
        with os.scandir(directory) as entries:
            for entry in entries:
                if entry.is_file():
                    count += 1
                    latest = max(latest, entry.stat().st_mtime)
    except OSError:
        pass
    return count, latest
