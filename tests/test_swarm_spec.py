"""The swarm runtime's pure parts: service names, the task template, NODE= (no Docker)."""

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from orchestrator.config.customer_file import load_customer
from orchestrator.config.settings_file import load_settings
from orchestrator.errors import ConfigError
from orchestrator.model import JobKey, Kind
from orchestrator.runtime.engine_options import task_template
from orchestrator.runtime.paths import SECRETS
from orchestrator.runtime.spec import (
    SERVICE_NAME_LIMIT,
    ContainerSpec,
    Mount,
    container_name,
    service_name,
)

WHEN = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def test_service_names_stay_within_swarms_limit_and_apart() -> None:
    short = container_name(JobKey("acme", "files"), Kind.BACKUP, WHEN)
    assert service_name(short) == short
    a, b = "a" * 63, "b" * 63
    long_one = service_name(container_name(JobKey(a, b), Kind.BACKUP, WHEN))
    other = service_name(container_name(JobKey(a, b[:-1] + "c"), Kind.BACKUP, WHEN))
    assert len(long_one) == len(other) == SERVICE_NAME_LIMIT
    assert long_one != other  # the names differ only past the cut: the hash tells them apart
    assert long_one == service_name(container_name(JobKey(a, b), Kind.BACKUP, WHEN))  # the lock
    # swarmkit's rule for a service name (controlapi isValidDNSName): the cut one passes it.
    swarm_rule = re.compile(r"^[a-zA-Z0-9](?:[-_]*[A-Za-z0-9]+)*$")
    snapshots = service_name(
        container_name(JobKey("acme-corporation", "website"), Kind.SNAPSHOTS, WHEN)
    )
    for name in (short, long_one, other, snapshots):
        assert swarm_rule.fullmatch(name) and len(name) <= SERVICE_NAME_LIMIT, name
    # A cut name holds "__", which no whole name can: a short customer whose resource is
    # named like a long one's cut and digest never gets its service name.
    assert "__" in long_one and "__" not in short
    head, digest = long_one.removeprefix("unstoppable_").split("_", 1)[0], long_one[-12:]
    forged = container_name(JobKey(head[:40], f"{head[40:]}-{digest}"), Kind.BACKUP, WHEN)
    assert service_name(forged) != long_one


def test_the_task_template_carries_no_secret_mount_and_never_restarts(tmp_path: Path) -> None:
    spec = ContainerSpec(
        name="unstoppable_acme_files",
        image="unstoppable-worker:test",
        command=("backup",),
        labels=(("unstoppable.job", "acme/files"),),
        mounts=(Mount(tmp_path / "hot", "/repo/hot", False), Mount(tmp_path / "s", SECRETS)),
        cap_drop=("ALL",),
        cap_add=("DAC_READ_SEARCH",),
        entrypoint=("unstoppable-local",),
    )
    reference = {"SecretID": "x", "SecretName": "unstoppable-1", "File": {"Name": "p"}}
    template = task_template(spec, {"unstoppable.job": "acme/files"}, "node.id==n1", [reference])
    container = template["ContainerSpec"]
    assert [m["Target"] for m in container["Mounts"] if m["Type"] == "bind"] == ["/repo/hot"]
    assert container["Secrets"] == [reference] and container["Env"] == []
    assert container["Command"] == ["unstoppable-local"] and container["Args"] == ["backup"]
    assert (container["CapabilityDrop"], container["CapabilityAdd"]) == (
        ["ALL"],
        ["DAC_READ_SEARCH"],
    )
    assert template["RestartPolicy"] == {"Condition": "none"}
    assert template["Placement"] == {"Constraints": ["node.id==n1"]}
    assert template["Networks"] == [{"Target": "host"}]


REMOTE = (
    'SCHEDULE="0 3 * * *"\nREPO_PASSWORD=x\nRESOURCES=site\nSITE_TYPE=ftps\nSITE_HOST=ftp.example\n'
    "SITE_USER=u\nSITE_PASSWORD=p\nSITE_PATH=/\nSITE_TLS_VERIFY=false\n"
)


@pytest.mark.parametrize("remote", [True, False])
def test_node_is_refused_with_what_to_do_instead(tmp_path: Path, remote: bool) -> None:
    """Nothing pinned to another node could run there on this engine: local sources are
    resolved and hot repositories kept on the daemon's node, and remote sources need a
    device swarm services do not get. Refused by name, rather than accepted and ignored."""
    path = tmp_path / "acme.env"
    if remote:
        path.write_text(f"{REMOTE}NODE=worker-2\n")
        with pytest.raises(ConfigError) as caught:
            load_customer(path)
    else:
        with pytest.raises(ConfigError) as caught:
            customer_file(tmp_path, "NODE=worker-2\n")
    assert "NODE: pinning a customer to another node is not supported" in str(caught.value)
    assert "run a daemon on that node" in str(caught.value)


def test_the_runtime_setting_is_docker_or_swarm() -> None:
    assert load_settings(environ={}).RUNTIME == "docker"
    assert load_settings(environ={"UNSTOPPABLE_RUNTIME": "swarm"}).RUNTIME == "swarm"
    with pytest.raises(ConfigError, match="UNSTOPPABLE_RUNTIME"):
        load_settings(environ={"UNSTOPPABLE_RUNTIME": "kubernetes"})


def customer_file(tmp_path: Path, lines: str):  # type: ignore[no-untyped-def]
    source = tmp_path / "src"
    source.mkdir(exist_ok=True)
    path = tmp_path / "acme.env"
    path.write_text(
        f'SCHEDULE="0 3 * * *"\nREPO_PASSWORD=x\nRESOURCES=files\nFILES_TYPE=local\n'
        f"FILES_PATH={source}\n{lines}"
    )
    return load_customer(path)
