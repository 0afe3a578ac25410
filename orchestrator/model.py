"""The value types every layer shares: job ids, kinds of run, outcomes and records."""

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class Kind(StrEnum):
    BACKUP = "backup"
    FORGET = "forget"  # after each backup, before 0.3 (still adopted)
    PRUNE = "prune"  # scheduled maintenance: forget by KEEP_*, then prune
    VERIFY = "verify"  # scheduled restore drill
    RESTORE = "restore"
    SNAPSHOTS = "snapshots"
    CHECK = "check"
    TAG = "tag"
    RECOVER = "recover"  # the hot repository rebuilt from the cold one


def job_id(customer: str, resource: str) -> str:
    """Return the `unstoppable.job` label value of a customer × resource."""
    return f"{customer}/{resource}"


def split_job(job: str) -> tuple[str, str]:
    """Return (customer, resource) of the job id `customer/resource`."""
    customer, resource = job.split("/", 1)
    return customer, resource


class Result(StrEnum):
    SUCCESS = "success"
    FAILURE = "failure"
    TIMEOUT = "timeout"
    SKIPPED = "skipped"  # not a run: another run of the job was in progress
    SUSPECT = "suspect"  # a snapshot was written, but it looks like encryption in place
    CORRUPT = "corrupt"  # a restore drill found damage: the repository does not give back


class Reason(StrEnum):
    """Why a run failed: a small closed set, used as a metric label."""

    NONE = ""
    OVERLAP = "overlap"
    SOURCE_MISSING = "source_missing"
    SOURCE_REFUSED = "source_refused"
    SOURCE_EMPTY = "source_empty"
    MOUNT = "mount"
    SOURCE_UNREADABLE = "source_unreadable"
    REPOSITORY = "repository"
    INTERRUPTED = "interrupted"
    TIMEOUT = "timeout"
    FORGET = "forget"
    PRUNE = "prune"
    SECRETS = "secrets"
    RUNTIME = "runtime"
    CONNECT = "connect"
    TLS = "tls"
    AUTH = "auth"
    HOST_KEY = "host_key"
    PATH_NOT_FOUND = "path_not_found"
    SOURCE_SHRUNK = "source_shrunk"
    STORAGE = "storage"
    RUSTIC = "rustic"
    MEMORY = "memory"  # the worker went over UNSTOPPABLE_WORKER_MEMORY and was killed


@dataclass(frozen=True)
class Summary:
    """What a backup wrote, from the snapshot rustic printed."""

    snapshot_id: str
    time: str
    files_new: int
    files_changed: int
    data_added: int
    bytes_processed: int
    files_total: int = 0
    data_added_files: int = 0
    data_added_files_packed: int = 0


@dataclass(frozen=True)
class Outcome:
    result: Result
    reason: Reason
    message: str
    summary: Summary | None = None


@dataclass(frozen=True)
class SnapshotInfo:
    id: str
    time: datetime
    paths: tuple[str, ...]
    host: str
    tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class RunRecord:
    """What happened to one run of a job."""

    customer: str
    resource: str
    kind: Kind
    scheduled_for: datetime
    started: datetime
    ended: datetime
    outcome: Outcome

    @property
    def job(self) -> str:
        return job_id(self.customer, self.resource)
