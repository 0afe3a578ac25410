"""A snapshot a failed backup left in the hot repository alone is set aside, nothing else."""

import os
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from orchestrator.config.settings import Settings
from orchestrator.config.settings_file import load_settings
from orchestrator.storage import halfway
from orchestrator.storage.layout import job_storage
from orchestrator.storage.s3_values import StorageError


def local_settings(data_dir: Path) -> Settings:
    """Settings of an installation in `data_dir`, its cold repositories there too."""
    return load_settings(
        {"UNSTOPPABLE_CONFIG": str(data_dir / "none.env"), "UNSTOPPABLE_DATA_DIR": str(data_dir)}
    )


def snapshot(folder: Path, name: str, age: float = 0.0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(b"encrypted snapshot " + name.encode())
    if age:
        then = time.time() - age
        os.utime(path, (then, then))
    return path


def test_only_what_the_failed_run_wrote_and_the_cold_repository_lacks_is_moved(
    tmp_path: Path,
) -> None:
    settings = local_settings(tmp_path)
    storage = job_storage(settings, "acme", "www")
    assert storage.cold is not None
    hot, cold = storage.snapshot_files, storage.cold / "snapshots"
    snapshot(hot, "a" * 64, age=3600)  # an old one, whole in both
    snapshot(cold, "a" * 64, age=3600)
    snapshot(hot, "b" * 64, age=3600)  # old and in the hot one alone: not this run's doing
    started = datetime.now(UTC)
    halfway_one = snapshot(hot, "c" * 64)  # this run's, never reached the cold repository
    snapshot(hot, "d" * 64)  # this run's, and whole
    snapshot(cold, "d" * 64)
    assert halfway.set_aside(settings, "acme", "www", started) == ["c" * 64]
    assert sorted(p.name for p in hot.iterdir()) == ["a" * 64, "b" * 64, "d" * 64]
    kept = halfway.aside_of(settings, "acme", "www") / "snapshots" / halfway_one.name
    assert kept.read_bytes() == b"encrypted snapshot " + b"c" * 64, "kept for a look, not deleted"
    assert sorted(p.name for p in cold.iterdir()) == ["a" * 64, "d" * 64], "cold only read"
    assert halfway.set_aside(settings, "acme", "www", started) == []
    # A prune cut short the same way leaves an index file in the hot repository alone.
    index = snapshot(storage.hot / "index", "9" * 64)
    snapshot(storage.cold / "index", "8" * 64)
    assert halfway.set_aside(settings, "acme", "www", started) == ["9" * 64]
    assert not index.exists()
    assert (halfway.aside_of(settings, "acme", "www") / "index" / index.name).exists()


def test_a_cold_repository_that_cannot_be_listed_moves_nothing(tmp_path: Path) -> None:
    settings = load_settings(
        {
            "UNSTOPPABLE_CONFIG": str(tmp_path / "none.env"),
            "UNSTOPPABLE_DATA_DIR": str(tmp_path),
            "UNSTOPPABLE_COLD_BACKEND": "s3",
            "UNSTOPPABLE_S3_ENDPOINT": "http://127.0.0.1:9",  # nothing listens
            "UNSTOPPABLE_S3_ACCESS_KEY_ID": "key",
            "UNSTOPPABLE_S3_SECRET_ACCESS_KEY": "secret-secret",
        }
    )
    hot = job_storage(settings, "acme", "www").snapshot_files
    started = datetime.now(UTC)
    snapshot(hot, "c" * 64)
    with pytest.raises(StorageError):
        halfway.set_aside(settings, "acme", "www", started)
    assert [p.name for p in hot.iterdir()] == ["c" * 64]


def test_a_worker_planted_symlink_or_name_is_never_followed_or_moved(tmp_path: Path) -> None:
    """The worker can write the job's hot folder: a `snapshots` symlinked to another
    customer's, a symlinked file, or a file named as no snapshot is, stays where it is."""
    settings = local_settings(tmp_path)
    victim = job_storage(settings, "beta", "www").snapshot_files
    started = datetime.now(UTC)
    theirs = snapshot(victim, "e" * 64)  # fresh, and not in the attacker's cold repository
    attacker = job_storage(settings, "acme", "www")
    attacker.hot.mkdir(parents=True)
    attacker.snapshot_files.symlink_to(victim)
    assert halfway.set_aside(settings, "acme", "www", started) == []
    assert theirs.exists()
    attacker.snapshot_files.unlink()
    snapshot(attacker.snapshot_files, "not-a-snapshot-id")
    (attacker.snapshot_files / ("f" * 64)).symlink_to(theirs)
    assert halfway.set_aside(settings, "acme", "www", started) == []
    assert theirs.exists() and (attacker.snapshot_files / "not-a-snapshot-id").exists()


def test_a_first_init_that_failed_half_way_is_cleared_and_nothing_else(tmp_path: Path) -> None:
    """The hot key written, the cold one not (a full cold disk at the first backup): the
    next `backup --init` added a second key to the hot repository only, and rustic refused
    that job for good ("keys of hot and cold repositories don't match", the soak's seed 9)."""
    settings = local_settings(tmp_path)
    storage = job_storage(settings, "acme", "www")
    assert storage.cold is not None
    leftover = snapshot(storage.hot / "keys", "1" * 64)
    (storage.hot / "config").write_bytes(b"half")
    storage.cold.mkdir(parents=True)
    assert sorted(halfway.unborn(storage, lambda: False)) == sorted(
        [str(leftover), str(storage.hot / "config")]
    )
    assert not leftover.exists() and not (storage.hot / "config").exists()
    # A repository the cold side holds (its config) is never touched.
    kept = snapshot(storage.hot / "keys", "2" * 64)
    (storage.cold / "config").write_bytes(b"real")
    assert halfway.unborn(storage, lambda: False) == [] and kept.exists()
    # Nor is one whose hot side held snapshots (a cold side lost: an operator's case).
    (storage.cold / "config").unlink()
    snapshot(storage.snapshot_files, "3" * 64)
    assert halfway.unborn(storage, lambda: False) == [] and kept.exists()


def test_a_failed_init_is_left_alone_while_its_job_runs_or_through_a_planted_symlink(
    tmp_path: Path,
) -> None:
    settings = local_settings(tmp_path)
    storage = job_storage(settings, "acme", "www")
    assert storage.cold is not None
    leftover = snapshot(storage.hot / "keys", "1" * 64)
    storage.cold.mkdir(parents=True)
    assert halfway.unborn(storage, lambda: True) == [] and leftover.exists()  # its own init
    leftover.unlink()
    (storage.hot / "keys").rmdir()
    victim = snapshot(job_storage(settings, "beta", "www").hot / "keys", "2" * 64)
    (storage.hot / "keys").symlink_to(victim.parent)  # another customer's keys, planted
    assert halfway.unborn(storage, lambda: False) == [] and victim.exists()
