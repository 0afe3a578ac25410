"""Worker container specs: labels, names, mounts and argv of one run, as plain data."""

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from orchestrator.model import JobKey, Kind, Work
from orchestrator.runtime.paths import CACHE, COLD, HOT, SECRETS
from orchestrator.storage.repo_dirs import JobStorage

if TYPE_CHECKING:
    from orchestrator.config.settings import Settings

NAME_PREFIX = "unstoppable_"
SERVICE_NAME_LIMIT = 63  # swarm's limit on a service name


@dataclass(frozen=True)
class Mount:
    source: Path
    target: str
    read_only: bool = True


SIZE_UNITS = {"k": 2**10, "m": 2**20, "g": 2**30}
KEEP_STDOUT = 2**20  # what a run keeps of a worker's output: the end, where the result is
KEEP_STDERR = 64 * 2**10
REMOTE_ROOT = "/remote"  # where a remote worker mounts its source (sources/setup.py)
REMOTE_ROOT_SIZE = "1m"  # only mountpoints live there


def size_bytes(size: str) -> int:
    """Return Docker's size `512m` (k, m or g; settings checked its form) in bytes."""
    return int(size[:-1]) * SIZE_UNITS[size[-1].lower()]


SNAPSHOT_LOG = "256m"  # the least a snapshot listing's worker keeps of its output


@dataclass(frozen=True)
class Limits:
    """What one worker may use. Past `memory` the kernel kills it (recorded as `memory`);
    past `pids` it cannot fork; the engine keeps `log_size` of its output (one file) and
    the runtime reads back only the last `stdout_bytes`/`stderr_bytes` of each stream.
    The root filesystem is read-only: /tmp is a tmpfs of `tmpfs`, /remote a tiny one for
    FUSE mountpoints; everything else written goes to the repository and cache mounts.
    """

    memory: str = "2g"
    pids: int = 512
    log_size: str = "10m"
    tmpfs: str = "64m"
    stdout_bytes: int = KEEP_STDOUT
    stderr_bytes: int = KEEP_STDERR

    @classmethod
    def of(cls, settings: "Settings", kind: Kind) -> "Limits":
        """Return the limits the settings give a worker of `kind`. A snapshot listing's
        answer is its whole output, so it keeps as much as the engine does."""
        s = settings
        if kind is not Kind.SNAPSHOTS:
            return cls(s.WORKER_MEMORY, s.WORKER_PIDS, s.WORKER_LOG_SIZE, s.WORKER_TMPFS)
        # rustic prints ~1.6 KB of JSON a snapshot, ~5 KB in the engine's log format: a job
        # of 5-minute backups kept a week (2 000 snapshots) outgrows a 10m log.
        log = max(s.WORKER_LOG_SIZE, SNAPSHOT_LOG, key=size_bytes)
        return cls(s.WORKER_MEMORY, s.WORKER_PIDS, log, s.WORKER_TMPFS, size_bytes(log))

    def scratch(self) -> tuple[tuple[str, str], ...]:
        """Return the writable tmpfs mounts of a read-only worker: (target, size)."""
        return (("/tmp", self.tmpfs), (REMOTE_ROOT, REMOTE_ROOT_SIZE))


@dataclass(frozen=True)
class ContainerSpec:
    """Everything needed to start one worker; nothing in it is secret."""

    name: str
    image: str
    command: tuple[str, ...]
    labels: tuple[tuple[str, str], ...]
    mounts: tuple[Mount, ...]
    network_mode: str = "host"
    cap_drop: tuple[str, ...] = ()
    cap_add: tuple[str, ...] = ()
    devices: tuple[str, ...] = ()
    entrypoint: tuple[str, ...] = ()
    security_opt: tuple[str, ...] = ()
    limits: Limits = Limits()


# The AppArmor profile install.sh loads (worker-image/apparmor/unstoppable-worker): Docker's
# default profile denies `mount`, and a remote worker mounts its source with FUSE.
APPARMOR_PROFILE = "unstoppable-worker"


def apparmor_options(remote: bool, enabled: bool, loaded: frozenset[str]) -> tuple[str, ...]:
    """Return the security options that let a worker's FUSE mount pass AppArmor.

    Only a remote worker mounts; on a host without AppArmor nothing is needed. When the
    profile is not loaded, none is asked for (Docker would refuse to start the worker), so
    the mount is refused and the run says so with reason `mount`.
    """
    if remote and enabled and APPARMOR_PROFILE in loaded:
        return (f"apparmor={APPARMOR_PROFILE}",)
    return ()


def capabilities(kind: Kind, remote: bool = False) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Return (cap_drop, cap_add) for a worker of `kind`.

    Reading a customer's files of any owner needs DAC_READ_SEARCH and nothing else: the
    repositories belong to root. Mounting a remote source with FUSE needs SYS_ADMIN (and
    /dev/fuse) instead. A restore recreates owners (CHOWN), modes and times of files it
    does not own (FOWNER, FSETID for set-id bits), writes into directories whose restored
    mode denies it (DAC_OVERRIDE) and device nodes (MKNOD): that and nothing else.
    """
    if kind is Kind.RESTORE:
        return ("ALL",), ("CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "MKNOD")
    if remote:
        return ("ALL",), ("SYS_ADMIN",)
    return ("ALL",), ("DAC_READ_SEARCH",)


def labels(
    job: JobKey, kind: Kind, scheduled_for: datetime, origin: str = "cli", instance: str = ""
) -> tuple[tuple[str, str], ...]:
    """Return the labels DESIGN.md fixes for a worker container, who started it, and for
    which installation (`instance`: two on one Docker engine never adopt each other's)."""
    return (
        ("unstoppable.managed", "true"),
        ("unstoppable.customer", job.customer),
        ("unstoppable.resource", job.resource),
        ("unstoppable.job", str(job)),
        ("unstoppable.kind", kind.value),
        ("unstoppable.scheduled-for", scheduled_for.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")),
        ("unstoppable.origin", origin),
        *((("unstoppable.instance", instance),) if instance else ()),
    )


def container_name(job: JobKey, kind: Kind, scheduled_for: datetime) -> str:
    """Return the worker's name: `unstoppable_<customer>_<resource>`.

    `_` cannot occur in customer or resource names, so two different jobs never share a
    name (with `-` as the separator, `a-b`+`c` and `a`+`b-c` did). Every kind that writes
    to the repository shares one name per job, so Docker itself refuses a second one while
    the first exists: a race-free mutex. A worker that only reads (a listing, a restore)
    gets a name of its own: a restore of hours must not stop the job's backups.
    """
    base = f"{NAME_PREFIX}{job.customer}_{job.resource}"
    if kind.reads_only:
        return f"{base}_{kind.value}_{scheduled_for.strftime('%Y%m%dT%H%M%S%fZ')}"
    return base


def service_name(name: str) -> str:
    """Return the service name of a worker `name`: itself, or shortened past 63 characters.

    The hash keeps two long names of different jobs apart, and one job's name the same on
    every call: the name is the job's lock.
    """
    if len(name) <= SERVICE_NAME_LIMIT:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:12]
    # Swarm allows letters, digits, '-' and '_' only. A whole name never holds "__" (customer
    # and resource names are not empty and hold no '_'), so a cut name never equals one.
    return f"{name[: SERVICE_NAME_LIMIT - 14]}__{digest}"


def repo_mounts(storage: JobStorage, secrets: Path) -> tuple[Mount, ...]:
    """Return the mounts every rustic command needs: repositories, cache and secrets."""
    mounts = [
        Mount(storage.hot, HOT, read_only=False),
        Mount(storage.cache, CACHE, read_only=False),
        Mount(secrets, SECRETS, read_only=True),
    ]
    if storage.cold is not None:
        mounts.append(Mount(storage.cold, COLD, read_only=False))
    return tuple(mounts)


class Command(Protocol):
    """What a run's worker is told to do (sources/setup.py's WorkerSetup is one)."""

    @property
    def argv(self) -> list[str]: ...

    @property
    def mounts(self) -> tuple[Mount, ...]: ...

    @property
    def entrypoint(self) -> tuple[str, ...]: ...

    @property
    def remote(self) -> bool: ...  # it mounts a remote source with FUSE

    @property
    def repositories(self) -> bool: ...  # it runs rustic: the job's repositories are mounted


@dataclass(frozen=True)
class Placement:
    """What this host gives one run's worker: image, directories, limits, confinement."""

    image: str
    origin: str  # who starts it: "daemon" marks the workers a restarted daemon adopts
    storage: JobStorage
    secrets: Path  # the run's own directory of secret files
    limits: Limits
    apparmor: bool  # AppArmor is on on this host
    profiles: frozenset[str] = frozenset()  # the AppArmor profiles loaded, if it is
    instance: str = ""  # which installation's worker (storage/layout.py `instance_of`)


def spec_for(
    work: Work, scheduled_for: datetime, command: Command, placement: Placement
) -> ContainerSpec:
    """Return the worker that does `command` for `work`, placed as `placement` says."""
    remote = command.remote
    cap_drop, cap_add = capabilities(work.kind, remote)
    return ContainerSpec(
        name=container_name(work.job, work.kind, scheduled_for),
        image=placement.image,
        command=tuple(command.argv),
        labels=labels(work.job, work.kind, scheduled_for, placement.origin, placement.instance),
        mounts=(
            repo_mounts(placement.storage, placement.secrets)
            if command.repositories
            else (Mount(placement.secrets, SECRETS, read_only=True),)
        )
        + command.mounts,
        cap_drop=cap_drop,
        cap_add=cap_add,
        devices=("/dev/fuse",) if remote else (),
        entrypoint=command.entrypoint,
        security_opt=apparmor_options(
            remote, remote and placement.apparmor, placement.profiles if remote else frozenset()
        ),
        limits=placement.limits,
    )
