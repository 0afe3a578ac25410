"""A worker's spec in the Engine API's words: docker-py's create arguments, a swarm task."""

from typing import Any

from orchestrator.runtime.paths import SECRETS
from orchestrator.runtime.spec import ContainerSpec, size_bytes


def create_options(spec: ContainerSpec) -> dict[str, Any]:
    """Return the arguments of docker-py's `containers.create` that make `spec` a worker.

    No privilege gained by exec (no-new-privileges), no environment, a read-only root with
    tmpfs scratch space, and the limits of `spec.limits`; swap is not allowed on top of the
    memory limit, so a worker past it is killed, not slowed to a crawl.
    """
    limits = spec.limits
    return {
        "image": spec.image,
        "command": list(spec.command),
        "name": spec.name,
        "labels": dict(spec.labels),
        "mounts": [
            {"Type": "bind", "Source": str(m.source), "Target": m.target, "ReadOnly": m.read_only}
            for m in spec.mounts
        ],
        "network_mode": spec.network_mode,
        "cap_drop": list(spec.cap_drop) or None,
        "cap_add": list(spec.cap_add) or None,
        "security_opt": ["no-new-privileges", *spec.security_opt],
        "devices": [f"{d}:{d}:rwm" for d in spec.devices] or None,
        "entrypoint": list(spec.entrypoint) or None,
        "environment": {},
        "mem_limit": limits.memory,
        "memswap_limit": limits.memory,
        "pids_limit": limits.pids,
        "log_config": {
            "type": "json-file",
            "config": {"max-size": limits.log_size, "max-file": "1"},
        },
        "read_only": True,
        "tmpfs": {target: f"size={size}" for target, size in limits.scratch()},
    }


# A swarm task past its deadline gets SIGTERM and this long before SIGKILL, as a container.
STOP_GRACE_NANOSECONDS = 30 * 10**9


def task_template(
    spec: ContainerSpec, labels: dict[str, str], where: str, secrets: list[dict[str, Any]]
) -> dict[str, Any]:
    """Return the Engine API's TaskTemplate of a swarm service that runs `spec` once.

    The secrets directory is not mounted: its files come as `secrets` (swarm secret
    references). Never restarted; placed by the constraint `where`.
    """
    limits = spec.limits
    container: dict[str, Any] = {
        "Image": spec.image,
        "Args": list(spec.command),
        "Labels": labels,
        "Mounts": [
            {"Type": "bind", "Source": str(m.source), "Target": m.target, "ReadOnly": m.read_only}
            for m in spec.mounts
            if m.target != SECRETS
        ]
        + [
            {"Type": "tmpfs", "Target": target, "TmpfsOptions": {"SizeBytes": size_bytes(size)}}
            for target, size in limits.scratch()
        ],
        "ReadOnly": True,
        "Secrets": secrets,
        "StopGracePeriod": STOP_GRACE_NANOSECONDS,
        "CapabilityAdd": list(spec.cap_add),
        "CapabilityDrop": list(spec.cap_drop),
        "Env": [],
    }
    if spec.entrypoint:
        container["Command"] = list(spec.entrypoint)
    # A service has no memory-swap limit (the Engine API's Resources lacks MemorySwap): on a
    # node with swap accounting a worker may swap as much again before it is killed.
    return {
        "ContainerSpec": container,
        "Resources": {
            "Limits": {"MemoryBytes": size_bytes(limits.memory), "Pids": limits.pids},
        },
        "LogDriver": {
            "Name": "json-file",
            "Options": {"max-size": limits.log_size, "max-file": "1"},
        },
        "RestartPolicy": {"Condition": "none"},
        "Placement": {"Constraints": [where]},
        "Networks": [{"Target": spec.network_mode}] if spec.network_mode else [],
    }
