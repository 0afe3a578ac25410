"""Maintenance beside the backups (issue 12, items 4 and 5), end to end with real workers.

Prune runs on its own schedule under the job's lock; a restore drill reads the cold packs,
restores a sample and compares it with the source, and damage reaches Alertmanager.
"""

import json
import os
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.model import JobKey
from orchestrator.reporting.history import Event
from orchestrator.reporting.ledger import Ledger
from tests.conftest import SLOW_IMAGE, Site
from tests.helpers import DaemonProcess, Events, assert_never_overlapping, starts, wait_until
from tests.servers import open_dir
from tests.test_monitoring import Receiver, metric, receiver, stack  # noqa: F401 (fixtures)
from tests.test_remote import ftps, ftps_customer  # noqa: F401 (ftps: fixture)

pytestmark = pytest.mark.docker

# Names a shell, a glob or a line-based parser would get wrong.
AWKWARD = ("plain.txt", "with space.txt", "star*[x]?.txt", 'quote"and\\slash', "new\nline", "ü.txt")


@pytest.fixture
def tree() -> Iterator[Path]:
    path = open_dir("unstoppable-drill-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


def fill(root: Path) -> None:
    (root / "sub" / "deeper").mkdir(parents=True)
    for i, name in enumerate(AWKWARD):
        (root / name).write_text(f"{name} {i}\n" * (50 + i))
    (root / "sub" / "deeper" / "big.bin").write_bytes(os.urandom(3 * 1024 * 1024))
    (root / "sub" / "empty").write_bytes(b"")
    secret = root / "sub" / "nobody-may-read"
    secret.write_text("owned by someone else, mode 000\n")
    os.chown(secret, 12345, 12345)
    secret.chmod(0o000)
    os.symlink("plain.txt", root / "link")
    for path in [root, *root.rglob("*")]:
        if path.is_dir() and not path.is_symlink():
            path.chmod(0o755)


def local_customer(site: Site, name: str, tree: Path, extra: str = "") -> None:
    sample = "" if "VERIFY_SAMPLE" in extra else "FILES_VERIFY_SAMPLE=100\n"
    site.customer(
        name,
        f'SCHEDULE="0 3 * * *"\nREPO_PASSWORD=pw\nRESOURCES=files\n'
        f"FILES_TYPE=local\nFILES_PATH={tree}\n{sample}{extra}",
    )


def regular_files(tree: Path) -> int:
    return sum(1 for p in tree.rglob("*") if p.is_file() and not p.is_symlink())


def test_a_drill_restores_every_kind_of_name_and_compares_it_with_the_source(
    site: Site, unique: str, tree: Path
) -> None:
    name = f"drill-{unique}"
    fill(tree)
    local_customer(site, name, tree)
    job = f"{name}/files"
    done = site.cli("verify", name)
    assert done.returncode == 1 and "no repository yet" in done.stdout, done.stdout
    site.cli("backup", name, check=True)
    count = regular_files(tree)

    done = site.cli("verify", name, "--full", check=True)
    line = done.stdout.strip()
    assert f"{job} verify: success: every pack read clean" in line, line
    assert f"{count} file(s) of snapshot" in line, line
    assert f"{count} equal to their unchanged source, 0 changed since" in line, line

    # An edit since the snapshot is not damage: that file is restored but not compared.
    (tree / "plain.txt").write_text("edited after the backup\n")
    done = site.cli("verify", name, "--full", check=True)
    assert f"{count - 1} equal to their unchanged source, 1 changed since" in done.stdout

    # Same size, same mtime, other bytes: the restore no longer matches. Damage is
    # reported, remembered, and only a clean full drill lifts it.
    victim = tree / "with space.txt"
    before = victim.stat()
    original = victim.read_bytes()
    victim.write_bytes(original.upper())
    os.utime(victim, ns=(before.st_atime_ns, before.st_mtime_ns))
    done = site.cli("verify", name, "--full")
    assert done.returncode == 1
    assert f"{job} verify: corrupt: restore drill: restored with\\ space.txt differs" in (
        done.stdout
    ), done.stdout
    corrupt, verified = Ledger(site.data / "state").memory.maintenance_state()
    assert JobKey.parse(job) in corrupt and JobKey.parse(job) in verified
    victim.write_bytes(original)
    os.utime(victim, ns=(before.st_atime_ns, before.st_mtime_ns))
    site.cli("verify", name, "--full", check=True)
    corrupt, _ = Ledger(site.data / "state").memory.maintenance_state()
    assert JobKey.parse(job) not in corrupt


def test_drills_read_the_packs_in_rotating_slices(site: Site, unique: str, tree: Path) -> None:
    name = f"slices-{unique}"
    fill(tree)
    local_customer(site, name, tree, "FILES_VERIFY_SLICES=3\nFILES_VERIFY_SAMPLE=2\n")
    site.cli("backup", name, check=True)
    lines = [site.cli("verify", name, check=True).stdout for _ in range(4)]
    for line, part in zip(lines, (1, 2, 3, 1), strict=True):
        assert f"slice {part}/3 of the packs read clean; 2 file(s)" in line, line


def test_a_drill_of_an_ftps_source_compares_through_the_mount(
    site: Site, unique: str, tree: Path, request: pytest.FixtureRequest
) -> None:
    name = f"drillftp-{unique}"
    for i in range(6):
        (tree / f"page-{i}.html").write_text(f"<p>page {i}</p>\n" * 40)
        (tree / f"page-{i}.html").chmod(0o644)
    ftps_customer(site, name, request.getfixturevalue("ftps"), tree, extra="")
    site.cli("backup", name, check=True)
    done = site.cli("verify", name, "--full", check=True)
    assert "6 file(s) of snapshot" in done.stdout, done.stdout
    assert "6 equal to their unchanged source" in done.stdout, done.stdout


def cold_data_pack(site: Site, name: str) -> Path:
    """Return a pack that only the cold repository holds: file contents, not trees."""
    cold = site.data / "cold" / name / "files" / "data"
    hot = site.data / "hot" / name / "files" / "data"
    hot_names = {p.name for p in hot.rglob("*") if p.is_file()}
    packs = [p for p in cold.rglob("*") if p.is_file() and p.name not in hot_names]
    assert packs, "no data pack in the cold repository"
    return max(packs, key=lambda p: p.stat().st_size)


def test_a_flipped_cold_pack_fires_backup_corrupt_end_to_end(
    site: Site,
    unique: str,
    tree: Path,
    receiver: Receiver,  # noqa: F811
    stack: dict[str, int],  # noqa: F811
) -> None:
    name = f"flip-{unique}"
    fill(tree)
    every5 = "* * * * * */5"
    local_customer(site, name, tree, f'FILES_VERIFY_SCHEDULE="{every5}"\nFILES_VERIFY_SLICES=1\n')
    site.env["UNSTOPPABLE_METRICS_LISTEN"] = f"127.0.0.1:{stack['metrics']}"
    site.cli("backup", name, check=True)
    pack = cold_data_pack(site, name)
    data = bytearray(pack.read_bytes())
    for offset in range(len(data) // 2, len(data) // 2 + 16):
        data[offset] ^= 0xFF
    pack.write_bytes(bytes(data))

    daemon = DaemonProcess(site)
    daemon.start()
    try:
        wait_until(
            lambda: any(a["customer"] == name for a in receiver.firing("BackupCorrupt")),
            120,
            "BackupCorrupt at the webhook",
        )
        job = f"{name}/files"
        assert metric(stack["metrics"], "unstoppable_verify_corrupt", job) == 1
        assert (
            metric(stack["metrics"], "unstoppable_verify_last_success_timestamp_seconds", job)
            is None
        )
        rows = Ledger(site.data / "state").history.runs(JobKey.parse(job))
        drills = [row for row in rows if row.kind == "verify"]
        assert drills and all(row.result == "corrupt" for row in drills), drills
    finally:
        daemon.signal(signal.SIGTERM)
        assert daemon.wait(15) == 0
    assert "MAC check failed" in daemon.text() or "error checking pack" in daemon.text()


def test_prune_runs_on_its_schedule_and_never_beside_a_backup(
    site: Site, unique: str, tree: Path, slow_image: str
) -> None:
    name = f"prune-{unique}"
    (tree / "a.txt").write_text("a")
    (tree / "a.txt").chmod(0o644)
    site.env["UNSTOPPABLE_WORKER_IMAGE"] = SLOW_IMAGE
    site.env["UNSTOPPABLE_MIN_KEEP_WITHIN"] = "1s"
    site.customer(
        name,
        f'SCHEDULE="* * * * * */2"\nREPO_PASSWORD=pw\nKEEP_LAST=1\nRESOURCES=files\n'
        f'FILES_TYPE=local\nFILES_PATH={tree}\nFILES_PRUNE_SCHEDULE="* * * * * */15"\n'
        'FILES_VERIFY_SCHEDULE="0 3 1 1 *"\n',
    )
    site.cli("backup", name, check=True)
    (site.data / "cold" / name / "files" / ".test-prune-delay").write_text("6")
    events = Events()
    daemon = DaemonProcess(site)
    daemon.start()
    job = JobKey(name, "files")
    ledger = Ledger(site.data / "state")
    try:
        wait_until(
            lambda: (
                # Two prunes: the first may fire before a second snapshot exists to forget.
                sum(1 for row in ledger.history.runs(job) if row.kind == "prune") >= 2
                and sum(1 for row in ledger.history.runs(job) if row.kind == "backup") >= 4
            ),
            90,
            "a prune and backups around it",
        )
    finally:
        daemon.signal(signal.SIGTERM)
        assert daemon.wait(15) == 0
    seen = events.stop()
    assert_never_overlapping(seen, str(job))
    kinds = [attributes["unstoppable.kind"] for attributes in starts(seen, str(job))]
    assert "prune" in kinds and "backup" in kinds, kinds
    prunes = [row for row in ledger.history.runs(job) if row.kind == "prune"]
    assert all(row.result == "success" for row in prunes), prunes
    # The backups due while the six-second prune held the job: skipped and counted.
    assert ledger.history.event_count(job, Event.SKIPPED, "overlap") >= 1
    snapshots = json.loads(site.cli("snapshots", name, "files", "--json", check=True).stdout)
    backups = sum(
        1 for row in ledger.history.runs(job) if row.kind == "backup" and row.result == "success"
    )
    assert len(snapshots) < backups, (len(snapshots), backups)
