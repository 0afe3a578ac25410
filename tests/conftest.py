"""Fixtures for end-to-end tests against the real Docker engine, worker image and rustic."""

import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.servers import served_root

# Ryuk, testcontainers' reaper, is an image from Docker Hub, which this host cannot reach;
# the fixtures remove their own containers. testcontainers reads this once, at import.
os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")

if TYPE_CHECKING:
    from tests.helpers import DaemonProcess

ROOT = Path(__file__).resolve().parent.parent
RUSTIC = ROOT / ".tools" / "bin" / "rustic"


def worker_image() -> str:
    from orchestrator import __version__

    return os.environ.get("UNSTOPPABLE_WORKER_IMAGE", f"unstoppable-worker:{__version__}")


# Built from the worker image under test, and tagged after it: checkouts testing different
# worker images on one engine never rebuild each other's.
SLOW_IMAGE = f"unstoppable-worker-slow:{worker_image().rsplit(':', 1)[-1]}"


@pytest.fixture(scope="session")
def docker_ready() -> None:
    """Fail (never skip) when the engine, rustic or the worker image is missing."""
    problems = []
    if not RUSTIC.exists():
        problems.append(f"{RUSTIC} missing")
    info = subprocess.run(["docker", "image", "inspect", worker_image()], capture_output=True)
    if info.returncode != 0:
        problems.append(f"worker image {worker_image()} missing or Docker unreachable")
    if problems:
        pytest.fail("; ".join(problems) + ": run `make provision`")


@dataclass
class Site:
    """A throwaway installation: its own customers directory and data directory."""

    root: Path
    customers: Path
    data: Path
    env: dict[str, str]

    def customer(self, name: str, text: str) -> Path:
        path = self.customers / f"{name}.env"
        path.write_text(text)
        return path

    def key_file(self, customer: str, source: Path) -> Path:
        """Copy `source` into the customer's key directory (KEYS_DIR/<customer>/): its path."""
        directory = self.root / "keys" / customer
        directory.mkdir(parents=True, exist_ok=True)
        target = directory / source.name
        shutil.copyfile(source, target)
        target.chmod(0o600)
        return target

    def cli(self, *args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [sys.executable, "-m", "orchestrator.cli", *args],
            env=self.env,
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=900,
        )
        if check and done.returncode != 0:
            raise AssertionError(
                f"unstoppable {' '.join(args)} exited {done.returncode}:\n"
                f"{done.stdout}\n{done.stderr}"
            )
        return done


@pytest.fixture
def site(tmp_path: Path, docker_ready: None) -> Iterator[Site]:
    from tests.containers import free_port

    customers = tmp_path / "customers.d"
    data = tmp_path / "data"
    customers.mkdir()
    env = {
        "PATH": os.environ["PATH"],
        "UNSTOPPABLE_CONFIG": str(tmp_path / "no-such-config.env"),
        "UNSTOPPABLE_CUSTOMERS_DIR": str(customers),
        "UNSTOPPABLE_DATA_DIR": str(data),
        "UNSTOPPABLE_WORKER_IMAGE": worker_image(),
        # Confinement stays on, opened just enough for a test's own tree and loopback servers.
        # Servers' logins read their trees under served_root(): pytest's tmp_path is root-only.
        "UNSTOPPABLE_SOURCE_ROOTS": f"{tmp_path},{served_root()}",
        "UNSTOPPABLE_KEYS_DIR": str(tmp_path / "keys"),
        "UNSTOPPABLE_ALLOW_PRIVATE_TARGETS": "127.0.0.0/8",
        "UNSTOPPABLE_MIN_INTERVAL": "0",
        # A daemon that cannot bind its metrics port does not start: each site has its own.
        "UNSTOPPABLE_METRICS_LISTEN": f"127.0.0.1:{free_port()}",
    }
    yield Site(tmp_path, customers, data, env)
    # Reap whatever a failed test left running, by the customers it created.
    for path in customers.glob("*.env"):
        names = subprocess.run(
            ["docker", "ps", "-aq", "--filter", f"label=unstoppable.customer={path.stem}"],
            capture_output=True,
            text=True,
        ).stdout.split()
        if names:
            subprocess.run(["docker", "rm", "-f", *names], capture_output=True)


@pytest.fixture
def unique() -> str:
    """Return a customer-name-safe suffix, so parallel or repeated runs never collide."""
    return uuid.uuid4().hex[:8]


@pytest.fixture(scope="session")
def slow_image(docker_ready: None) -> str:
    """Build the test-only worker whose rustic waits first when the source asks it to."""
    subprocess.run(
        [
            "docker",
            "build",
            "-q",
            "-t",
            SLOW_IMAGE,
            "--build-arg",
            f"WORKER_IMAGE={worker_image()}",
            str(ROOT / "tests" / "slow-worker"),
        ],
        check=True,
        capture_output=True,
    )
    return SLOW_IMAGE


@pytest.fixture
def daemon(site: Site) -> Iterator["DaemonProcess"]:
    """An `unstoppable run` of the site, killed if a test leaves it running."""
    from tests.helpers import DaemonProcess

    process = DaemonProcess(site)
    yield process
    if process.proc and process.proc.poll() is None:
        process.proc.kill()
        process.proc.wait()
