"""Worker container specs: labels, names, mounts and argv of one run, as plain data."""

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from orchestrator.model import Kind, job_id
from orchestrator.runtime.paths import CACHE, COLD, HOT, SECRETS
from orchestrator.storage.layout import JobStorage

NAME_PREFIX = "unstoppable_"
SERVICE_NAME_LIMIT = 63  # swarm's limit on a service name


@dataclass(frozen=True)
class Mount:
    source: Path
    target: str
    read_only: bool = True


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
    customer: str, resource: str, kind: Kind, scheduled_for: datetime, origin: str = "cli"
) -> tuple[tuple[str, str], ...]:
    """Return the labels DESIGN.md fixes for a worker container, and who started it."""
    return (
        ("unstoppable.managed", "true"),
        ("unstoppable.customer", customer),
        ("unstoppable.resource", resource),
        ("unstoppable.job", job_id(customer, resource)),
        ("unstoppable.kind", kind.value),
        ("unstoppable.scheduled-for", scheduled_for.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")),
        ("unstoppable.origin", origin),
    )


def container_name(customer: str, resource: str, kind: Kind, scheduled_for: datetime) -> str:
    """Return the worker's name: `unstoppable_<customer>_<resource>`.

    `_` cannot occur in customer or resource names, so two different jobs never share a
    name (with `-` as the separator, `a-b`+`c` and `a`+`b-c` did). Every kind that writes
    to or reads data from the repository shares one name per job, so Docker itself refuses
    a second one while the first exists: a race-free mutex. Listing snapshots is read-only
    and short, so it gets a name of its own.
    """
    base = f"{NAME_PREFIX}{customer}_{resource}"
    if kind is Kind.SNAPSHOTS:
        return f"{base}_snapshots_{scheduled_for.strftime('%Y%m%dT%H%M%S%fZ')}"
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


# A swarm task past its deadline gets SIGTERM and this long before SIGKILL, as a container.
STOP_GRACE_NANOSECONDS = 30 * 10**9


def task_template(
    spec: ContainerSpec, labels: dict[str, str], where: str, secrets: list[dict[str, Any]]
) -> dict[str, Any]:
    """Return the Engine API's TaskTemplate of a swarm service that runs `spec` once.

    The secrets directory is not mounted: its files come as `secrets` (swarm secret
    references). Never restarted; placed by the constraint `where`.
    """
    container: dict[str, Any] = {
        "Image": spec.image,
        "Args": list(spec.command),
        "Labels": labels,
        "Mounts": [
            {"Type": "bind", "Source": str(m.source), "Target": m.target, "ReadOnly": m.read_only}
            for m in spec.mounts
            if m.target != SECRETS
        ],
        "Secrets": secrets,
        "StopGracePeriod": STOP_GRACE_NANOSECONDS,
        "CapabilityAdd": list(spec.cap_add),
        "CapabilityDrop": list(spec.cap_drop),
        "Env": [],
    }
    if spec.entrypoint:
        container["Command"] = list(spec.entrypoint)
    return {
        "ContainerSpec": container,
        "RestartPolicy": {"Condition": "none"},
        "Placement": {"Constraints": [where]},
        "Networks": [{"Target": spec.network_mode}] if spec.network_mode else [],
    }
