"""The swarm runtime's pure parts: service names, the task template, NODE= (no Docker)."""

from datetime import UTC, datetime
from pathlib import Path

import pytest

from orchestrator.config.customer_file import load_customer
from orchestrator.config.settings import load_settings
from orchestrator.errors import ConfigError
from orchestrator.model import Kind
from orchestrator.runtime.paths import SECRETS
from orchestrator.runtime.spec import (
    SERVICE_NAME_LIMIT,
    ContainerSpec,
    Mount,
    container_name,
    service_name,
    task_template,
)

WHEN = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def test_service_names_stay_within_swarms_limit_and_apart() -> None:
    short = container_name("acme", "files", Kind.BACKUP, WHEN)
    assert service_name(short) == short
    a, b = "a" * 63, "b" * 63
    long_one = service_name(container_name(a, b, Kind.BACKUP, WHEN))
    other = service_name(container_name(a, b[:-1] + "c", Kind.BACKUP, WHEN))
    assert len(long_one) == len(other) == SERVICE_NAME_LIMIT
    assert long_one != other  # the names differ only past the cut: the hash tells them apart
    assert long_one == service_name(container_name(a, b, Kind.BACKUP, WHEN))  # the lock


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
    assert [m["Target"] for m in container["Mounts"]] == ["/repo/hot"]
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


@pytest.mark.parametrize("node", ["worker-2", "bk.example.net", "n1"])
def test_node_pins_a_customer_whose_resources_are_remote(tmp_path: Path, node: str) -> None:
    path = tmp_path / "acme.env"
    path.write_text(f"{REMOTE}NODE={node}\n")
    assert load_customer(path).node == node


def test_a_customer_with_a_local_resource_is_not_pinned_elsewhere(tmp_path: Path) -> None:
    """Its PATH is resolved and checked on the daemon's node: mounted elsewhere, it would
    be whatever that node has there."""
    with pytest.raises(ConfigError, match="NODE: a customer with local resources runs on"):
        customer_file(tmp_path, "NODE=worker-2\n")
    assert customer_file(tmp_path, "").node is None


@pytest.mark.parametrize(
    "node", ["", "a b", "n1,node.role==manager", "n1!=x", "-lead", "trail-", "a/b", "x=y", "é"]
)
def test_a_node_a_constraint_could_be_built_from_is_refused(tmp_path: Path, node: str) -> None:
    with pytest.raises(ConfigError, match="NODE: must be a swarm node's hostname"):
        customer_file(tmp_path, f'NODE="{node}"\n')


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
