"""versitygw, the second S3 server with object lock: S3 in front of a posix directory.

The orchestrator never holds its root key here. Measured on versitygw 1.8.0: a bucket's
default retention is not applied to new objects, and lifecycle rules are NotImplemented, so
what protects the data is the lock the orchestrator puts on each object after each backup.
The daemon's key is a `userplus` account (it may create buckets, and owns the ones it made).
"""

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.containers import DockerContainer, free_port, image, on_host_network, wait_for_port
from tests.test_s3 import s3_client

ROOT_KEY, ROOT_SECRET = "vgw-root", "vgw-Root-Secret-5a1c"
DAEMON_KEY, DAEMON_SECRET = "unstoppable-daemon", "vgw-Daemon-Secret-77e0"


@dataclass
class Versitygw:
    """versitygw in a container on the host's network, its directories bind-mounted."""

    port: int
    container: DockerContainer
    key_id: str = DAEMON_KEY  # what the backup server holds
    secret: str = DAEMON_SECRET

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self, key_id: str | None = None, secret: str | None = None) -> Any:
        """Return a boto3 S3 client, with the daemon's key unless told."""
        return s3_client(self.endpoint, key_id or self.key_id, secret or self.secret)

    def root(self) -> Any:
        return self.client(ROOT_KEY, ROOT_SECRET)

    def admin(self, *args: str) -> str:
        """Run `versitygw admin ARGS` against this server with the root key."""
        command = ["versitygw", "admin", "-a", ROOT_KEY, "-s", ROOT_SECRET]
        command += ["--endpoint-url", self.endpoint, *args]
        code, out = self.container.get_wrapped_container().exec_run(command)
        text = out.decode(errors="replace")
        assert code == 0, f"versitygw admin {' '.join(args)}: {text}"
        return text


@contextmanager
def versitygw_server(work: Path) -> Iterator[Versitygw]:
    """Run versitygw with versioning and its own user store; the daemon gets a userplus key."""
    data, versions, iam = work / "data", work / "versions", work / "iam"
    for path in (data, versions, iam):
        path.mkdir(parents=True, exist_ok=True)
    port = free_port()
    command = ["--port", f"127.0.0.1:{port}", "--iam-dir", str(iam)]
    command += ["posix", "--versioning-dir", str(versions), str(data)]
    env = {"ROOT_ACCESS_KEY": ROOT_KEY, "ROOT_SECRET_KEY": ROOT_SECRET}
    mounts = [(data, "rw"), (versions, "rw"), (iam, "rw")]
    container = on_host_network(image("versitygw"), command, mounts, env=env).start()
    try:
        wait_for_port(port, container)
        server = Versitygw(port, container)
        server.admin("create-user", "-a", DAEMON_KEY, "-s", DAEMON_SECRET, "-r", "userplus")
        yield server
    finally:
        container.stop()
