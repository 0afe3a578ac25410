"""A job's repository as the operator sees it: its snapshots, a restore, a check."""

import contextlib
import os
import re
import secrets
import shutil
import stat
import tarfile
from datetime import UTC, datetime
from pathlib import Path

from orchestrator.config.bounds import SYSTEM_TREES
from orchestrator.config.customer import Customer, Resource
from orchestrator.errors import RunFailed
from orchestrator.launcher import Launcher
from orchestrator.model import Kind, SnapshotInfo
from orchestrator.runtime.exit_codes import ExitCode
from orchestrator.runtime.paths import RESTORE_TARGET
from orchestrator.rustic import commands, output
from orchestrator.rustic.output import last_words
from orchestrator.sources.setup import WorkerSetup, source_path, target_launch
from orchestrator.storage.layout import job_storage
from orchestrator.storage.target import check_target, open_target

# rustic's words when a repository holds no snapshot at all (not "No snapshots found for
# latest~3": that one names a selector the repository cannot satisfy, and is passed on).
NO_SNAPSHOTS = "No snapshots found. Please make sure there are snapshots in the repository."


def snapshots(launcher: Launcher, customer: Customer, resource: Resource) -> list[SnapshotInfo]:
    """Return the snapshots of `resource`, oldest first; raise RunFailed if rustic fails."""
    if not (job_storage(launcher.settings, customer.name, resource.name).hot / "config").exists():
        return []
    listing = WorkerSetup(commands.snapshots_args(launcher.cold), ())
    done = launcher.run_worker(customer, resource, Kind.SNAPSHOTS, datetime.now(UTC), listing, 600)
    if done.exit_code != 0:
        raise RunFailed(f"{customer.job(resource)}: rustic snapshots failed: {last_words(done)}")
    try:
        return output.parse_snapshots(done.stdout)
    except ValueError as exc:
        raise RunFailed(
            f"{customer.job(resource)}: {exc}: raise UNSTOPPABLE_WORKER_LOG_SIZE"
        ) from None


def restore(
    launcher: Launcher,
    customer: Customer,
    resource: Resource,
    target: Path,
    snapshot: str,
    only: tuple[str, ...] = (),
) -> tuple[int, int]:
    """Restore `snapshot` of `resource` so its files land directly in `target`; return how
    many files, and bytes, are there now.

    `target` must be an empty directory or new (then made 0700), and never a symlink: its
    last component is not followed, and the worker restores only into the very directory
    checked here. With `only`, just the files and folders those paths (relative to the
    resource's root, glob characters allowed) name. Raises RunFailed if the target is not
    fit, rustic fails, or `only` names nothing in the snapshot.
    """
    only = tuple(_only(path) for path in only)
    snapshot = _snapshot(snapshot)
    target = target.absolute()
    new = check_target(target, launcher.settings.bounds.protected + SYSTEM_TREES)
    # No worker is asked for the list first: that cost a container and a repository open
    # (key derivation) per restore. A repository never made, or one with no snapshot, says so.
    empty = f"{customer.job(resource)}: no snapshot to restore yet"
    if not (job_storage(launcher.settings, customer.name, resource.name).hot / "config").exists():
        raise RunFailed(empty)
    launcher.wait_out_deleting(customer, resource)
    identity = open_target(target, new)
    argv = commands.restore_args(
        launcher.cold, snapshot, source_path(resource), RESTORE_TARGET, only
    )
    launch = target_launch(target, identity, RESTORE_TARGET, ["rustic", *argv])
    done = launcher.run_worker(customer, resource, Kind.RESTORE, datetime.now(UTC), launch, None)
    if done.exit_code == ExitCode.SWAPPED:
        raise RunFailed(
            f"--target {target}: was replaced (by a symlink?) after it was checked; "
            "nothing was restored"
        )
    files, size = _counted(target) if done.exit_code == 0 else (0, 0)
    if done.exit_code == 0 and (files or not only):
        return files, size
    if new:  # made for this restore: a failure leaves no empty directory behind
        with contextlib.suppress(OSError):
            shutil.rmtree(target) if done.exit_code == 0 else target.rmdir()
    if done.exit_code == 0:
        named = ", ".join(repr(p) for p in only)
        raise RunFailed(f"{customer.job(resource)}: --path {named}: no file of {snapshot} there")
    if NO_SNAPSHOTS in done.stderr:
        raise RunFailed(empty)
    raise RunFailed(f"{customer.job(resource)}: restore failed: {last_words(done)}")


def _only(path: str) -> str:
    """Return a --path as the restore's include pattern takes it; RunFailed if it cannot be."""
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if not parts or ".." in parts or "\0" in path or any(c in path for c in "\n\r"):
        raise RunFailed(
            f"--path {path[:70]!r}: give a file, folder or glob inside the resource, "
            "such as wp-config.php or uploads/2026 (no '..')"
        )
    return "/".join(parts)


def _counted(target: Path) -> tuple[int, int]:
    """Return how many regular files `target` holds, and their bytes (links not followed)."""
    files = size = 0
    for folder, _dirs, names in os.walk(target):
        for name in names:
            info = os.lstat(os.path.join(folder, name))
            if stat.S_ISREG(info.st_mode):
                files, size = files + 1, size + info.st_size
    return files, size


def check(launcher: Launcher, customer: Customer, resource: Resource, read_data: bool) -> int:
    """Run `rustic check`; return how many harmless leftover packs it found.

    Packs that no index references are what an interrupted backup uploaded before it
    stopped: garbage that `forget --prune` removes, not damage. Anything else rustic
    warns about, and every error, raises RunFailed.
    """
    checking = WorkerSetup(commands.check_args(launcher.cold, read_data), ())
    done = launcher.run_worker(customer, resource, Kind.CHECK, datetime.now(UTC), checking, None)
    problems, leftovers = output.judge_check(done.exit_code, done.stderr)
    if problems:
        raise RunFailed(
            f"{customer.job(resource)}: check failed: {problems[0]}"
            + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else "")
        )
    return leftovers


ARCHIVE = "archive"  # the file's name in the run's own directory, before it takes its own


def archive(
    launcher: Launcher,
    customer: Customer,
    resource: Resource,
    file: Path,
    snapshot: str,
    only: tuple[str, ...] = (),
) -> int:
    """Write `snapshot` of `resource` (or just `only`) as one tar archive at `file` (`.tar`,
    or `.tar.gz`/`.tgz` gzipped); return its size.

    The worker writes into a new private directory beside `file` (the same checks as a
    restore target), and the archive then takes its name by a hard link, which never
    replaces a file: `file` must not exist. Raises RunFailed saying what to fix.
    """
    only = tuple(_only(path) for path in only)
    snapshot = _snapshot(snapshot)
    file = file.absolute()
    if not file.name.endswith((".tar", ".tar.gz", ".tgz")):
        raise RunFailed(f"--archive {file}: name it FILE.tar, or FILE.tar.gz to gzip it")
    if os.path.lexists(file):
        raise RunFailed(f"--archive {file}: exists already; an archive never replaces a file")
    if not (job_storage(launcher.settings, customer.name, resource.name).hot / "config").exists():
        raise RunFailed(f"{customer.job(resource)}: no snapshot to restore yet")
    launcher.wait_out_deleting(customer, resource)
    own = file.with_name(f".{file.name[:200]}.unstoppable-{secrets.token_hex(4)}")
    try:
        new = check_target(own, launcher.settings.bounds.protected + SYSTEM_TREES)
        identity = open_target(own, new)
    except RunFailed as exc:  # said of the private folder: told of the archive asked for
        raise RunFailed(f"--archive {file}: {str(exc).split(': ', 1)[-1]}") from None
    try:
        inside = f"{RESTORE_TARGET}/{ARCHIVE}"
        gzip = not file.name.endswith(".tar")
        argv = commands.dump_args(
            launcher.cold, snapshot, source_path(resource), inside, gzip, only
        )
        launch = target_launch(own, identity, RESTORE_TARGET, ["rustic", *argv])
        done = launcher.run_worker(
            customer, resource, Kind.RESTORE, datetime.now(UTC), launch, None
        )
        if done.exit_code == ExitCode.SWAPPED:
            raise RunFailed(f"--archive {file}: its folder was replaced while it was written")
        if done.exit_code != 0:
            if NO_SNAPSHOTS in done.stderr:
                raise RunFailed(f"{customer.job(resource)}: no snapshot to restore yet")
            raise RunFailed(f"{customer.job(resource)}: archive failed: {last_words(done)}")
        return _name_archive(own, identity, file, bool(only))
    finally:
        shutil.rmtree(own, ignore_errors=True)


def _name_archive(own: Path, identity: str, file: Path, selected: bool) -> int:
    """Give the archive the worker wrote in `own` the name `file`; return its size.

    Everything is done through a descriptor of `own`, checked to be the very directory
    made for it (someone able to rename it in FILE's folder cannot swap in their own).
    """
    try:
        fd = os.open(own, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        raise RunFailed(f"--archive {file}: its private folder is gone") from None
    try:
        info = os.fstat(fd)
        if f"{info.st_dev}:{info.st_ino}" != identity:
            raise RunFailed(f"--archive {file}: its private folder was replaced")
        try:
            written = os.stat(ARCHIVE, dir_fd=fd, follow_symlinks=False)
        except FileNotFoundError:
            raise RunFailed(f"--archive {file}: the worker wrote no archive") from None
        if not stat.S_ISREG(written.st_mode):
            raise RunFailed(f"--archive {file}: the worker wrote no archive")
        if selected and _empty_tar(fd):
            raise RunFailed(f"--archive {file}: --path names nothing in the snapshot")
        archive_fd = os.open(ARCHIVE, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
        try:
            os.fchmod(archive_fd, 0o600)
        finally:
            os.close(archive_fd)
        try:
            os.link(ARCHIVE, file, src_dir_fd=fd, follow_symlinks=False)
        except FileExistsError:
            raise RunFailed(f"--archive {file}: appeared meanwhile; it was not replaced") from None
        return written.st_size
    finally:
        os.close(fd)


def _empty_tar(folder: int) -> bool:
    """Return whether the archive in `folder` (a descriptor) holds no entry at all."""
    fd = os.open(ARCHIVE, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=folder)
    try:
        with os.fdopen(fd, "rb") as handle, tarfile.open(fileobj=handle, mode="r:*") as tar:
            return tar.next() is None
    except tarfile.TarError as exc:
        raise RunFailed(f"the archive rustic wrote cannot be read back: {exc}") from None


def _snapshot(snapshot: str) -> str:
    """Return `--snapshot` if it is `latest`, `latest~N` or an id (or its prefix)."""
    if re.fullmatch(r"latest(~[0-9]{1,6})?|[0-9a-fA-F]{1,64}", snapshot):
        return snapshot
    raise RunFailed(f"--snapshot {snapshot[:70]!r}: expected an id (or a prefix), or latest")
