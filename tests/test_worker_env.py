"""What a worker's processes see: the customer's CA is rclone's alone, never rustic's.

An FTPS resource's TLS_CA_FILE (or pinned certificate) replaces the system roots for rclone.
Exported to the whole worker, it would reach rustic as SSL_CERT_FILE too, and rustic would
then trust the customer's certificate — chosen by the customer — for the cold store's TLS.
"""

import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest

from orchestrator.commands.context import launcher_on_runtime
from orchestrator.config.customer_file import load_customers
from orchestrator.config.settings_file import load_settings
from orchestrator.model import Kind
from tests.conftest import Site
from tests.servers import Ftps
from tests.test_remote import fill, ftps, ftps_customer, source  # noqa: F401 (fixtures)

pytestmark = pytest.mark.docker


def test_the_customer_ca_reaches_rclone_and_never_the_command(
    site: Site,
    ftps: Ftps,  # noqa: F811
    unique: str,
    source: Path,  # noqa: F811
) -> None:
    fill(source)
    ftps_customer(site, unique, ftps, source)
    settings = load_settings(site.env)
    customer = load_customers(settings.CUSTOMERS_DIR, None, settings.confinement).get(unique)
    resource = customer.resource("site")
    workers = launcher_on_runtime(settings)
    # What rustic would see: the environment of the command the worker runs on the mount.
    launch = workers.setup(customer, resource, None, ["sh", "-c", "env; ls /remote/site"])
    done = workers.run_worker(customer, resource, Kind.CHECK, datetime.now(UTC), launch, 120)
    assert done.exit_code == 0, done.stderr  # rclone verified the server with the CA
    assert "index.html" in done.stdout  # and mounted it
    assert "PATH=" in done.stdout  # the environment was printed
    assert "SSL_CERT_FILE" not in done.stdout


def test_the_guard_fails_closed_when_tmp_is_full(site: Site) -> None:
    """An unlistable directory is a refusal even with no room left in the worker's /tmp."""
    tree = site.root / "guarded"
    (tree / "closed").mkdir(parents=True)
    (tree / "closed" / "hidden.txt").write_text("x")
    (tree / "open.txt").write_text("y")
    (tree / "closed").chmod(0)
    script = "dd if=/dev/zero of=/tmp/fill bs=4k 2>/dev/null; unstoppable-guard /src 1 1 0"
    done = subprocess.run(
        ["docker", "run", "--rm", "--cap-drop", "ALL", "--read-only", "--user", "65534",
         "--tmpfs", "/tmp:size=64k", "-v", f"{tree}:/src:ro", "--entrypoint", "sh",
         site.env["UNSTOPPABLE_WORKER_IMAGE"], "-c", script],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 3, (done.returncode, done.stderr)
    assert "cannot list the source" in done.stderr and "Permission denied" in done.stderr
