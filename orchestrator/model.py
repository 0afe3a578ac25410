"""The value types every layer shares: jobs and their work, kinds of run, outcomes and records."""

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

# ANSI escape sequences (CSI with its parameters, OSC up to its terminator, two-byte ESC),
# then any C0 or C1 control character or DEL left over.
_ESCAPES = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"  # CSI: colours, cursor, screen
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?"  # OSC: window titles, hyperlinks
    r"|\x9b[0-?]*[ -/]*[@-~]"  # CSI as one C1 character
    r"|\x1b[ -/]*[0-~]?"  # any other escape (ESC c resets the terminal)
)
_CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# Unicode's own line breaks, and the marks that reorder or hide text (bidi overrides and
# isolates, zero-width characters): a line that reads one way and is another.
_UNICODE = re.compile("[\u2028\u2029\u0085]|[\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff]")


def plain(text: str) -> str:
    """Return outside text (a server's, rustic's, rclone's) safe to show on one line.

    Escape sequences go, line breaks (Unicode's too) and tabs become blanks, other control
    characters (C0, DEL, C1) and the marks that reorder or hide text (bidi, zero-width) go:
    such text reaches terminals, logs, status pages and ping bodies.
    """
    text = _ESCAPES.sub("", text)
    text = _UNICODE.sub(lambda m: " " if m.group() in "\u2028\u2029" else "", text)
    return _CONTROLS.sub(lambda m: " " if m.group() in "\t\n\r" else "", text)


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

    @property
    def reads_only(self) -> bool:
        """Whether a worker of this kind only reads the repository (a listing, a restore).

        Such a worker has a name of its own and never holds the job: a backup runs beside
        it. A prune, which deletes what a reader may be reading, waits for it to end.
        """
        return self in (Kind.SNAPSHOTS, Kind.RESTORE)


def reads_only(kind_label: str) -> bool:
    """Return whether a worker's `unstoppable.kind` label names a kind that only reads."""
    return kind_label in (Kind.SNAPSHOTS.value, Kind.RESTORE.value)


@dataclass(frozen=True, order=True)
class JobKey:
    """One customer × resource: the unit of scheduling, of the overlap lock, and of history.

    Its text `customer/resource` is the `unstoppable.job` label and the ledger's key; no
    name holds a `/` (config/names.py), so the text reads back unambiguously.
    """

    customer: str
    resource: str

    def __str__(self) -> str:
        return f"{self.customer}/{self.resource}"

    @classmethod
    def parse(cls, text: str) -> "JobKey":
        """Return the job whose text (label, ledger key) is `text`; ValueError if none."""
        customer, slash, resource = text.partition("/")
        if not (customer and slash and resource):
            raise ValueError(f"not a job: {text[:80]!r}")
        return cls(customer, resource)


@dataclass(frozen=True, order=True)
class Work:
    """One kind of work of a job: what is scheduled, pending and launched."""

    job: JobKey
    kind: Kind = Kind.BACKUP

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", Kind(self.kind))

    def __str__(self) -> str:
        """Return `customer/resource`, or `customer/resource#kind` beside the backups.

        Also the seed of the job's hashed (`H`) cron fields: it must never change.
        """
        return str(self.job) if self.kind is Kind.BACKUP else f"{self.job}#{self.kind.value}"


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
    INTERNAL = "internal"  # the run raised something nobody expected: a bug, logged with its trace
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
    tree: str = ""  # the snapshot's root tree id: what a receipt names besides the snapshot


@dataclass(frozen=True)
class Outcome:
    """How a run ended; its message is always `plain`, whoever built it from what."""

    result: Result
    reason: Reason
    message: str
    summary: Summary | None = None
    drill: tuple[int, int] | None = None  # a restore drill's slice: part of parts (1 of 1: all)
    forgot: bool = False  # a prune that ran `forget` (KEEP_*): snapshots may be gone since

    def __post_init__(self) -> None:
        object.__setattr__(self, "message", plain(self.message))


@dataclass(frozen=True)
class SnapshotInfo:
    id: str
    time: datetime
    paths: tuple[str, ...]
    host: str
    tags: tuple[str, ...] = ()
    summary: "Summary | None" = None  # what its backup read and wrote, as rustic recorded


@dataclass(frozen=True)
class RunRecord:
    """What happened to one run of a job."""

    job: JobKey
    kind: Kind
    scheduled_for: datetime
    started: datetime
    ended: datetime
    outcome: Outcome

    @classmethod
    def of(
        cls,
        work: Work,
        scheduled_for: datetime,
        started: datetime,
        outcome: Outcome,
        ended: datetime | None = None,
    ) -> "RunRecord":
        """Return the record of `work`, started at `started`, that ends now (or `ended`)."""
        return cls(work.job, work.kind, scheduled_for, started, ended or datetime.now(UTC), outcome)

    @property
    def customer(self) -> str:
        return self.job.customer

    @property
    def resource(self) -> str:
        return self.job.resource
