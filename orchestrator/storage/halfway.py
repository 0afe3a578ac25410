"""Snapshots that reached the hot repository and not the cold one: set aside, never lost.

rustic writes a snapshot's file to the hot repository, then to the cold one. A backup that
fails between the two (the cold disk full, the bucket gone at the last write) leaves the
hot repository naming a snapshot the cold one lacks: every `check` then fails, and every
drill reads damage the data does not have. Such a snapshot was never whole, and its run is
recorded as failed. After a backup that rustic itself failed (its worker gone, none of
the job running), the snapshot files that run wrote (newer than its start) and the cold
repository lacks are moved out of the hot one into `DATA_DIR/state/halfway/<c>_<r>/`,
which no worker mounts, kept for a look: nothing is deleted, and the cold repository is
only read. The worker could write the folders read here: a symlinked folder or file, or a
name that is no snapshot id, is never followed or moved.
"""

import logging
import re
import shutil
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from orchestrator.config.settings import Settings
from orchestrator.model import JobKey, Outcome
from orchestrator.storage.layout import job_storage, open_bucket, state_dir
from orchestrator.storage.repo_dirs import JobStorage

SNAPSHOT_ID = re.compile(r"[0-9a-f]{64}")  # a repository file's id
INDEX = "index"
log = logging.getLogger(__name__)


def aside_of(settings: Settings, customer: str, resource: str) -> Path:
    """Return where the job's halfway snapshots are kept (not made)."""
    return state_dir(settings) / "halfway" / f"{customer}_{resource}"


def cold_files(settings: Settings, customer: str, resource: str, folder_name: str) -> set[str]:
    """Return the names the cold repository holds in `folder_name` (snapshots, index) now."""
    storage = job_storage(settings, customer, resource)
    if storage.cold is not None:
        folder = storage.cold / folder_name
        if folder.is_symlink():
            raise OSError(f"{folder} is a symbolic link: not followed")
        return {p.name for p in folder.iterdir()} if folder.is_dir() else set()
    bucket = open_bucket(settings, customer)
    try:
        prefix = f"{resource}/{folder_name}/"
        return {
            v.key.removeprefix(prefix)
            for v in bucket.versions(prefix)
            if v.latest and not v.deleted
        }
    finally:
        bucket.close()


def set_aside(settings: Settings, customer: str, resource: str, since: datetime) -> list[str]:
    """Move out of the hot repository the snapshot and index files written since `since`
    that the cold repository lacks (a backup or a prune cut short between the two); return
    their ids. Raises OSError or StorageError when the cold repository cannot be listed
    (then nothing is moved)."""
    storage = job_storage(settings, customer, resource)
    moved = []
    for hot in (storage.snapshot_files, storage.hot / INDEX):
        if storage.hot.is_symlink():
            break
        fresh = [p for p in _ids(hot) if p.stat().st_mtime >= since.timestamp() - 1]
        if not fresh:
            continue
        cold = cold_files(settings, customer, resource, hot.name)
        for path in sorted(fresh):
            if path.name in cold:
                continue
            aside = aside_of(settings, customer, resource) / hot.name
            aside.mkdir(parents=True, exist_ok=True, mode=0o700)
            shutil.move(path, aside / path.name)
            moved.append(path.name)
    return moved


def said(
    settings: Settings,
    running: Callable[[], frozenset[JobKey]],
    job: JobKey,
    started: datetime,
    outcome: Outcome,
) -> Outcome:
    """Set aside what the failed run left in the hot repository alone, and say so; never
    while a worker of the job is `running` (a command's run, begun since: mid-write)."""
    try:
        if job in running():
            return outcome
        moved = set_aside(settings, job.customer, job.resource, started)
    except Exception as exc:  # the cold repository cannot be listed: the next check says
        log.error("%s: cannot compare its repositories' files: %s", job, exc)
        return outcome
    if not moved:
        return outcome
    names = ", ".join(m[:8] for m in moved)
    message = f"{outcome.message}; {names} never reached the cold repository: set aside"
    return Outcome(outcome.result, outcome.reason, message, outcome.summary)


def unborn(storage: JobStorage, running: Callable[[], bool]) -> list[str]:
    """Clear what a first `init` that failed half way left (the hot key written, the cold
    one not: a full disk), when the cold repository has no `config`: no repository exists,
    and the next `backup --init` would add a second key beside the first, a mismatch rustic
    refuses for good. Returns the files removed. Only for a cold repository on this host,
    only where the hot one holds no snapshot, never while a worker of the job is `running`
    (asked only when there is something to clear), and never through a symlink (the worker
    could write these folders)."""
    if storage.cold is None or storage.cold.is_symlink() or (storage.cold / "config").exists():
        return []
    if any(storage.snapshot_files.glob("*")):  # a repository that held snapshots: not ours
        return []
    keys = [*_ids(storage.hot / "keys"), *_ids(storage.cold / "keys")]
    if not keys or running():
        return []
    for key in keys:
        key.unlink()
    removed = [str(key) for key in keys]
    config = storage.hot / "config"
    if config.is_file() and not config.is_symlink():
        config.unlink()
        removed.append(str(config))
    return removed


def _ids(folder: Path) -> list[Path]:
    """Return the repository files in `folder` (named by their id), none through a symlink."""
    if folder.is_symlink() or not folder.is_dir():
        return []
    return [
        p
        for p in folder.iterdir()
        if SNAPSHOT_ID.fullmatch(p.name) and not p.is_symlink() and p.is_file()
    ]
