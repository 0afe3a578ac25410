"""A restore back to the source, end to end: real vsftpd and OpenSSH that take writes, a local
source folder, the worker image and rustic.

The servers serve host folders at their own paths, so what a restore wrote there is read back
here, byte for byte, with its times.
"""

import hashlib
import json
import os
import re
import shutil
import stat
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from orchestrator.model import JobKey, Kind, Work
from orchestrator.runtime.paths import CACHE, COLD, HOT, SECRETS
from orchestrator.runtime.spec import Limits, Mount, Placement, spec_for
from orchestrator.sources.setup import WorkerSetup
from orchestrator.storage.repo_dirs import JobStorage
from orchestrator.to_source import unputtable
from tests.conftest import Site
from tests.servers import PASSWORD, UID, Ftps, Sftp, open_dir, sshd, vsftpd
from tests.test_local_backup import customer_text
from tests.test_remote import ftps_customer, sftp_customer

pytestmark = pytest.mark.docker

State = dict[str, tuple[str, int, int]]  # path: (sha256 or "dir" or "link", mtime, mode)


@pytest.fixture(scope="module")
def ftps() -> Iterator[Ftps]:
    with vsftpd(writable=True) as server:
        yield server


@pytest.fixture(scope="module")
def sftp() -> Iterator[Sftp]:
    with sshd(writable=True) as server:
        yield server


@pytest.fixture
def source() -> Iterator[Path]:
    path = open_dir("unstoppable-to-source-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


def fill(root: Path, owner: int | None = UID) -> None:
    """A small site, every file with a time of its own in the past and a mode of its own."""
    (root / "nested" / "deeper").mkdir(parents=True)
    (root / "empty").mkdir()
    (root / "index.html").write_text("<h1>home</h1>\n")
    (root / "with space.txt").write_text("spaces\n")
    (root / "ünïcødé.txt").write_text("unicode\n")
    (root / "nested" / "deeper" / "data.bin").write_bytes(os.urandom(300_000))
    for i in range(6):
        (root / "nested" / f"page-{i}.html").write_text(f"page {i}\n" * 50)
    (root / "wp-config.php").write_text("<?php // secret\n")
    for n, path in enumerate(sorted(root.rglob("*"))):
        path.chmod(0o750 if path.is_dir() else (0o600 if path.name == "wp-config.php" else 0o644))
        os.utime(path, (1_700_000_000 + n * 3600, 1_700_000_000 + n * 3600))
        if owner is not None:
            os.chown(path, owner, owner)
    if owner is not None:
        os.chown(root, owner, owner)


def state(root: Path, skip: str | None = None) -> State:
    """Return every entry under `root` (but the folder `skip`): content hash, mtime, mode."""
    found: State = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        if skip and (rel == skip or rel.startswith(skip + "/")):
            continue
        info = path.lstat()
        kind = (
            "link"
            if stat.S_ISLNK(info.st_mode)
            else "dir"
            if stat.S_ISDIR(info.st_mode)
            else hashlib.sha256(path.read_bytes()).hexdigest()
        )
        found[rel] = (kind, int(info.st_mtime), stat.S_IMODE(info.st_mode))
    return found


def contents(snapshot: State) -> dict[str, str]:
    return {p: k for p, (k, _t, _m) in snapshot.items() if k not in ("dir", "link")}


def file_times(snapshot: State) -> dict[str, int]:
    return {p: t for p, (k, t, _m) in snapshot.items() if k not in ("dir", "link")}


def to_source(site: Site, name: str, resource: str, *args: str) -> dict[str, object]:
    done = site.cli("restore", name, resource, "--to-source", "--json", *args)
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout))


def modes(snapshot: State) -> dict[str, int]:
    return {p: m for p, (_k, _t, m) in snapshot.items()}


def new_folder_then_overwrite(
    site: Site, name: str, resource: str, root: Path, with_modes: bool = True
) -> State:
    """What every kind of source must show: the new folder identical to the snapshot with the
    live files untouched, an existing folder refused, and --overwrite replacing exactly what
    it announced. `with_modes`: the snapshot holds the source's modes (a local folder; a
    remote backup reads through rclone's mount, which shows every file 0644)."""
    fill(root)
    odd = root / "nested" / 'it\'s "odd" [1]*?.txt'  # quotes and glob characters
    odd.write_text("odd\n")
    os.chown(odd, UID, UID)
    site.cli("backup", name, check=True)
    snapshot = state(root)
    snap_id = json.loads(site.cli("snapshots", name, resource, "--json", check=True).stdout)[0][
        "id"
    ]
    (root / "index.html").write_text("<h1>home, live since</h1>\n")  # the live site moved on
    live = state(root)

    done = to_source(site, name, resource)
    folder = str(done["destination"]).rsplit("/", 1)[1]
    assert re.fullmatch(rf"restored-{snap_id[:8]}-\d{{8}}T\d{{6}}Z", folder), folder
    assert done["snapshot"] == snap_id and done["files"] == len(contents(snapshot))
    restored = state(root / folder)
    assert contents(restored) == contents(snapshot)
    # Modification times of files: every protocol here carries them (to the second).
    assert file_times(restored) == file_times(snapshot)
    assert {p for p, (k, _t, _m) in restored.items() if k == "dir"} == {
        p for p, (k, _t, _m) in snapshot.items() if k == "dir"
    }  # the empty folder too
    assert state(root, skip=folder) == live, "a live file was touched"
    if with_modes:
        assert modes(restored) == modes(snapshot)

    # A folder that exists is never written into without --overwrite.
    again = site.cli("restore", name, resource, "--to-source", "--into", folder)
    assert again.returncode == 1 and "exists already" in again.stderr, again.stderr
    assert "--overwrite" in again.stderr
    assert state(root / folder) == restored

    # --into a new folder of one's own naming, a single file.
    done = to_source(site, name, resource, "--into", "old/config", "--path", "wp-config.php")
    assert done["files"] == 1
    assert (root / "old" / "config" / "wp-config.php").read_bytes() == b"<?php // secret\n"
    for made in (root / "old", root / "old" / "config"):  # the customer's, like PATH
        assert made.stat().st_uid == root.stat().st_uid, made
    shutil.rmtree(root / "old")
    shutil.rmtree(root / folder)

    # Over the live files: it says which it replaces, then replaces exactly those.
    (root / "nested" / "page-1.html").write_text("defaced\n")
    (root / "nested" / "page-2.html").unlink()
    (root / "nested" / "extra.html").write_text("added live, kept\n")
    os.chown(root / "nested" / "extra.html", UID, UID)
    before = state(root)
    done_raw = site.cli(
        "restore", name, resource, "--to-source", "--overwrite", "--json",
        "--path", "index.html", "--path", "nested",
    )  # fmt: skip
    assert done_raw.returncode == 0, done_raw.stderr
    done = json.loads(done_raw.stdout)
    expected = sorted(
        p
        for p in contents(snapshot)
        if (p == "index.html" or p.startswith("nested/")) and p in contents(before)
    )
    assert sorted(done["replaced"]) == expected
    assert "nested/page-2.html" not in expected  # restored anew, not a replacement
    announced = done_raw.stderr.split("will be replaced:", 1)[1]
    assert sorted(line.strip() for line in announced.strip().splitlines()) == expected
    after = state(root)
    changed = {p for p in before if p in after and after[p] != before[p] and before[p][0] != "dir"}
    assert changed <= set(expected), f"replaced without saying so: {changed - set(expected)}"
    for rel in [*expected, "nested/page-2.html"]:
        assert after[rel][0] == snapshot[rel][0], rel
    assert after["nested/extra.html"] == before["nested/extra.html"]
    for rel in ("with space.txt", "ünïcødé.txt", "wp-config.php"):  # outside the selection
        assert after[rel] == before[rel]
    return snapshot


def test_to_source_over_ftps(site: Site, ftps: Ftps, unique: str, source: Path) -> None:
    name = f"tf-{unique}"
    ftps_customer(site, name, ftps, source)
    new_folder_then_overwrite(site, name, "site", source, with_modes=False)


def test_to_source_over_sftp_with_a_password(
    site: Site, sftp: Sftp, unique: str, source: Path
) -> None:
    name = f"ts-{unique}"
    sftp_customer(site, name, sftp, source, auth=f"MAIL_PASSWORD={PASSWORD}")
    new_folder_then_overwrite(site, name, "mail", source, with_modes=False)


def test_to_source_over_sftp_with_a_key(site: Site, sftp: Sftp, unique: str, source: Path) -> None:
    name = f"tsk-{unique}"
    sftp_customer(site, name, sftp, source)
    fill(source)
    locked = source / "locked"  # closed to writes, its owner's too
    locked.mkdir()
    (locked / "inside.txt").write_text("inside\n")
    for path, mode in ((locked / "inside.txt", 0o400), (locked, 0o500)):
        path.chmod(mode)
        os.chown(path, UID, UID)
    site.cli("backup", name, check=True)
    snapshot = state(source)
    done = to_source(site, name, "mail", "--into", "back")
    assert done["files"] == len(contents(snapshot))
    back = state(source / "back")
    assert contents(back) == contents(snapshot)
    assert file_times(back) == file_times(snapshot)


def test_to_source_of_a_local_folder_keeps_modes_and_owners(site: Site, unique: str) -> None:
    name = f"tl-{unique}"
    root = site.root / "www"
    root.mkdir()
    site.customer(name, customer_text("pw-to-source", root))
    snapshot = new_folder_then_overwrite(site, name, "files", root)
    # A local restore writes as the host does: modes and owners come back too.
    done = to_source(site, name, "files", "--into", "copy")
    copy = root / "copy"
    assert done["files"] == len(contents(snapshot))
    assert state(copy) == snapshot
    assert stat.S_IMODE(copy.stat().st_mode) == stat.S_IMODE(root.stat().st_mode)
    assert (copy / "wp-config.php").stat().st_mode & 0o777 == 0o600
    assert (copy / "nested").stat().st_mode & 0o777 == 0o750
    assert (copy / "index.html").stat().st_uid == UID
    # A folder of PATH that leads elsewhere (a symlink) is never written through.
    elsewhere = site.root / "elsewhere"
    elsewhere.mkdir()
    (root / "escape").symlink_to(elsewhere)
    refused = site.cli("restore", name, "files", "--to-source", "--into", "escape/x")
    assert refused.returncode == 1 and "is not a folder" in refused.stderr, refused.stderr
    assert not list(elsewhere.iterdir())
    assert not list((site.data / "restores").iterdir())  # its private copy removed


def test_what_a_server_cannot_take_is_found(tmp_path: Path) -> None:
    """rclone puts no symlink on a server: they are named, and the restore fails. (A remote
    backup reads through rclone's mount, which shows a link as the file it points to, so a
    remote snapshot holds none today; this stays true if a snapshot ever does.)"""
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "file").write_text("x")
    (tmp_path / "a" / "to-file").symlink_to("file")
    (tmp_path / "a" / "to-dir").symlink_to("b")
    (tmp_path / "dangling").symlink_to("/nowhere")
    os.mkfifo(tmp_path / "a" / "fifo")
    assert unputtable(tmp_path) == ("a/fifo", "a/to-dir", "a/to-file", "dangling")


def test_to_source_rules_are_said_before_anything_runs(site: Site, unique: str) -> None:
    name = f"tr-{unique}"
    root = site.root / "www"
    root.mkdir()
    (root / "a.txt").write_text("a\n")
    site.customer(name, customer_text("pw-rules", root))
    for args, said in [
        (["--to-source", "--target", str(site.root / "t")], "one of --target"),
        (["--into", "x"], "go with --to-source"),
        (["--overwrite", "--target", str(site.root / "t")], "go with --to-source"),
        (["--to-source", "--into", "../up"], "no '..'"),
        (["--to-source", "--into", "/abs"], "no leading '/'"),
    ]:
        done = site.cli("restore", name, "files", *args)
        assert done.returncode == 1 and said in done.stderr, (args, done.stderr)
    assert sorted(p.name for p in root.iterdir()) == ["a.txt"]


def test_the_put_worker_sees_no_repository() -> None:
    """Putting files on a customer's server needs its secrets, never the repositories."""
    storage = JobStorage(Path("/d/hot"), Path("/d/cold"), Path("/d/cache"))
    placement = Placement("img", "cli", storage, Path("/run/s"), Limits(), apparmor=False)
    work = Work(JobKey("acme", "www"), Kind.RESTORE)
    when = datetime(2026, 12, 6, tzinfo=UTC)
    staged = (Mount(Path("/d/restores/x/tree"), "/staged"),)
    put = WorkerSetup(["remote", "/srv", ".", "new"], staged, repositories=False)
    rustic = WorkerSetup(["restore"], ())
    put_mounts = {m.target for m in spec_for(work, when, put, placement).mounts}
    assert put_mounts == {SECRETS, "/staged"}
    assert {HOT, COLD, CACHE} <= {m.target for m in spec_for(work, when, rustic, placement).mounts}
