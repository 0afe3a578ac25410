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

import re
import shutil
from datetime import datetime
from pathlib import Path

from orchestrator.config.settings import Settings
from orchestrator.storage.layout import job_storage, open_bucket, state_dir
from orchestrator.storage.repo_dirs import JobStorage

SNAPSHOT_ID = re.compile(r"[0-9a-f]{64}")


def aside_of(settings: Settings, customer: str, resource: str) -> Path:
    """Return where the job's halfway snapshots are kept (not made)."""
    return state_dir(settings) / "halfway" / f"{customer}_{resource}"


def cold_snapshots(settings: Settings, customer: str, resource: str) -> set[str]:
    """Return the snapshot ids the cold repository holds now."""
    storage = job_storage(settings, customer, resource)
    folder_name = storage.snapshot_files.name  # the same in both repositories
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
    """Move out of the hot repository the snapshot files written since `since` that the
    cold repository lacks; return their ids. Raises OSError or StorageError when the cold
    repository cannot be listed (then nothing is moved)."""
    storage = job_storage(settings, customer, resource)
    hot = storage.snapshot_files
    if hot.is_symlink() or storage.hot.is_symlink() or not hot.is_dir():
        return []
    fresh = [
        p
        for p in hot.iterdir()
        if SNAPSHOT_ID.fullmatch(p.name)
        and not p.is_symlink()
        and p.is_file()
        and p.stat().st_mtime >= since.timestamp() - 1
    ]
    if not fresh:
        return []
    cold = cold_snapshots(settings, customer, resource)
    moved = []
    for path in sorted(fresh):
        if path.name in cold:
            continue
        aside = aside_of(settings, customer, resource)
        aside.mkdir(parents=True, exist_ok=True, mode=0o700)
        shutil.move(path, aside / path.name)
        moved.append(path.name)
    return moved


def unborn(storage: JobStorage) -> list[str]:
    """Clear what a first `init` that failed half way left (the hot key written, the cold
    one not: a full disk), when the cold repository has no `config`: no repository exists,
    and the next `backup --init` would add a second key beside the first, a mismatch rustic
    refuses for good. Returns the files removed. Only for a cold repository on this host,
    only where the hot one holds no snapshot, and never through a symlink (the worker could
    write these folders)."""
    if storage.cold is None or storage.cold.is_symlink() or (storage.cold / "config").exists():
        return []
    if any(storage.snapshot_files.glob("*")):  # a repository that held snapshots: not ours
        return []
    removed = []
    for folder in (storage.hot / "keys", storage.cold / "keys"):
        if folder.is_symlink() or not folder.is_dir():
            continue
        for key in folder.iterdir():
            if SNAPSHOT_ID.fullmatch(key.name) and not key.is_symlink() and key.is_file():
                key.unlink()
                removed.append(str(key))
    config = storage.hot / "config"
    if removed and config.is_file() and not config.is_symlink():
        config.unlink()
        removed.append(str(config))
    return removed
