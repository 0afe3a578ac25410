"""A job's repository as the operator sees it: its snapshots, a restore, a check."""

import contextlib
import os
import re
import shutil
import stat
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

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

Measure = Callable[[], tuple[int | None, int]]  # files arrived so far (None: not known), bytes


class Watch(Protocol):
    """Who follows a restore as it goes (commands/progress.py shows it on a terminal)."""

    def expect(self, files: int | None, total: int | None) -> None: ...

    def watch(self, measure: Measure) -> contextlib.AbstractContextManager[None]: ...


class Quiet:
    """Follows nothing."""

    def expect(self, files: int | None, total: int | None) -> None:
        return None

    def watch(self, measure: Measure) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()


QUIET = Quiet()

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
    staging: bool = False,
    watch: Watch = QUIET,
) -> tuple[int, int]:
    """Restore `snapshot` of `resource` so its files land directly in `target`; return how
    many files, and bytes, are there now.

    `target` must be an empty directory or new (then made 0700), and never a symlink: its
    last component is not followed, and the worker restores only into the very directory
    checked here. With `only`, just the files and folders those paths (relative to the
    resource's root, glob characters allowed) name. Raises RunFailed if the target is not
    fit, rustic fails, or `only` names nothing in the snapshot. `staging`: `target` is a
    private folder of the data directory, made for a restore on its way elsewhere
    (to_source.py); the data directory is otherwise never a target.
    """
    only = tuple(only_path(path) for path in only)
    snapshot = snapshot_selector(snapshot)
    target = target.absolute()
    protected = () if staging else launcher.settings.bounds.protected + SYSTEM_TREES
    new = check_target(target, protected)
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
    with watch.watch(lambda: _arrived(target)):
        done = launcher.run_worker(
            customer, resource, Kind.RESTORE, datetime.now(UTC), launch, None
        )
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


def only_path(path: str) -> str:
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


def _arrived(target: Path) -> tuple[int, int]:
    """Return the files in `target` and the bytes written into them so far: rustic sizes
    each file first and fills it after, so what counts is what is allocated."""
    files = size = 0
    for folder, _dirs, names in os.walk(target):
        for name in names:
            with contextlib.suppress(OSError):
                info = os.lstat(os.path.join(folder, name))
                if stat.S_ISREG(info.st_mode):
                    files += 1
                    size += min(info.st_size, info.st_blocks * 512)
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


def snapshot_selector(snapshot: str) -> str:
    """Return `--snapshot` if it is `latest`, `latest~N` or an id (or its prefix)."""
    if re.fullmatch(r"latest(~[0-9]{1,6})?|[0-9a-fA-F]{1,64}", snapshot):
        return snapshot
    raise RunFailed(f"--snapshot {snapshot[:70]!r}: expected an id (or a prefix), or latest")
