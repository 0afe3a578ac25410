"""Test servers in containers through testcontainers, on the host's network like the workers.

The only module of the tests that imports testcontainers. Images are built from the local
base image (this host cannot reach Docker Hub); servers listen on 127.0.0.1 at free ports, so
rustic in a worker container reaches them exactly as it reaches a customer's server.
"""

import functools
import os
import shutil
import socket
import tempfile
import time
import uuid
from collections.abc import Iterable
from pathlib import Path

# Ryuk, testcontainers' reaper, is an image from Docker Hub; every fixture here removes its
# own containers instead. Set before the import: testcontainers reads it once.
os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")

from testcontainers.core.container import DockerContainer
from testcontainers.core.image import DockerImage

BASE_IMAGE = "unstoppable-base:bookworm"
IMAGES = Path(__file__).resolve().parent / "images"
# Servers built once by `make provision`, copied into an image of their own name.
BINARIES = Path(__file__).resolve().parent.parent / ".tools" / "bin"


def build(context: Path, tag: str, **args: str) -> str:
    """Build `context` from the base image (Docker's layer cache makes a rebuild quick)."""
    DockerImage(
        path=context,
        tag=tag,
        clean_up=False,
        buildargs={"BASE_IMAGE": BASE_IMAGE, **args},
        rm=True,
        forcerm=True,
    ).build()
    return tag


@functools.cache
def image(name: str, **args: str) -> str:
    """Return the tag of tests/images/<name>, built once per test session."""
    tag = f"unstoppable-test-{name}:latest"
    binary = BINARIES / name
    if name not in ("minio", "versitygw"):
        return build(IMAGES / name, tag, **args)
    assert binary.exists(), f"{binary} missing: run `make provision`"
    with tempfile.TemporaryDirectory(prefix=f"unstoppable-{name}-image-") as context:
        shutil.copy(IMAGES / name / "Dockerfile", context)
        shutil.copy(binary.resolve(), Path(context) / name)
        return build(Path(context), tag)


def on_host_network(
    image: str,
    command: list[str] | None = None,
    mounts: Iterable[tuple[Path, str]] = (),
    env: dict[str, str] | None = None,
    network: str = "host",
    **options: object,
) -> DockerContainer:
    """Return an unstarted container on the host's network, each (path, mode) at its own path.

    Same-path mounts keep host paths valid inside: the tests hand them to the servers as
    they hand them to the customer files. `options` go to Docker's create as they are.
    `network="none"` gives the server a namespace of its own with only its loopback (bench/
    reaches it through a slow-link proxy).
    """
    kind = image.split(":")[0].rsplit("/", 1)[-1].removeprefix("unstoppable-")
    name = f"unstoppable-test-{kind.removeprefix('test-')}-{uuid.uuid4().hex[:8]}"
    container = DockerContainer(image, env=env, name=name)
    for path, mode in mounts:
        container.with_volume_mapping(path, str(path), mode)
    if command is not None:
        container.with_command(command)
    return container.with_kwargs(network_mode=network, **options)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, container: DockerContainer, timeout: float = 30) -> None:
    """Return once `port` on 127.0.0.1 accepts; raise with the logs if the server exited."""
    wrapped = container.get_wrapped_container()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        wrapped.reload()
        if wrapped.status not in ("created", "running"):
            logs = b"".join(container.get_logs()).decode(errors="replace")
            raise RuntimeError(f"{wrapped.name} exited: {logs[-2000:]}")
        time.sleep(0.05)
    raise RuntimeError(f"{wrapped.name} did not listen on {port} within {timeout:.0f} s")
