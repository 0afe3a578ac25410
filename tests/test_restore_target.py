"""A restore target is never followed through a symlink, and a new one is 0700 whatever the umask.

The CLI refusing a symlink end to end is in tests/test_local_backup.py; the worker's own
device:inode check (exit 6) is the one local backups use, proven by
tests/test_unstoppable.py::test_a_directory_swapped_before_the_mount_is_not_read.
"""

import os
import stat
from pathlib import Path

import pytest

from orchestrator.errors import RunFailed
from orchestrator.storage.target import check_target, open_target


@pytest.mark.parametrize("umask", [0o000, 0o022, 0o777])
def test_a_new_target_is_made_0700_whatever_the_umask(tmp_path: Path, umask: int) -> None:
    target = tmp_path / "deep" / "new"
    old = os.umask(umask)
    try:
        check_target(target)
        identity = open_target(target)
    finally:
        os.umask(old)
    info = os.lstat(target)
    assert stat.S_ISDIR(info.st_mode)
    assert stat.S_IMODE(info.st_mode) == 0o700
    assert identity == f"{info.st_dev}:{info.st_ino}"


def test_an_existing_empty_directory_of_ours_is_made_0700(tmp_path: Path) -> None:
    target = tmp_path / "there"
    target.mkdir(mode=0o755)
    target.chmod(0o755)
    assert check_target(target) is False
    open_target(target)
    assert stat.S_IMODE(os.lstat(target).st_mode) == 0o700


def test_a_directory_made_by_someone_else_between_check_and_open_is_refused(
    tmp_path: Path,
) -> None:
    target = tmp_path / "new"
    assert check_target(target) is True
    target.mkdir(mode=0o777)  # another local user, while the snapshot listing ran
    with pytest.raises(RunFailed, match="appeared after it was checked"):
        open_target(target, new=True)


def test_another_users_directory_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "theirs"
    target.mkdir()
    os.chown(target, 65534, 65534)  # nobody's
    for step in (check_target, open_target):
        with pytest.raises(RunFailed, match="belongs to uid 65534, not to this user"):
            step(target)


def test_a_target_inside_a_protected_tree_is_refused_as_its_parents_resolve(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    (data / "cold").mkdir(parents=True)
    (tmp_path / "innocent").symlink_to(data / "cold")
    with pytest.raises(RunFailed, match=r"lies inside .*/data, which a restore never writes"):
        check_target(tmp_path / "innocent" / "restore", (data,))


def test_a_symlink_to_an_empty_directory_is_refused(tmp_path: Path) -> None:
    elsewhere = tmp_path / "etc"
    elsewhere.mkdir()
    link = tmp_path / "target"
    link.symlink_to(elsewhere)
    for step in (check_target, open_target):
        with pytest.raises(RunFailed, match=r"--target .*/target: is a symlink; a restore never"):
            step(link)
    assert list(elsewhere.iterdir()) == []


def test_a_dangling_symlink_is_refused_and_not_created_through(tmp_path: Path) -> None:
    link = tmp_path / "target"
    link.symlink_to(tmp_path / "would-be-created")
    for step in (check_target, open_target):
        with pytest.raises(RunFailed, match="is a symlink"):
            step(link)
    assert not (tmp_path / "would-be-created").exists()


def test_a_symlink_swapped_in_after_the_check_is_refused_when_opened(tmp_path: Path) -> None:
    target = tmp_path / "target"
    check_target(target)  # new: fine
    elsewhere = tmp_path / "etc"
    elsewhere.mkdir()
    target.symlink_to(elsewhere)  # the swap, between the check and the open
    with pytest.raises(RunFailed, match="is a symlink"):
        open_target(target)


@pytest.mark.parametrize("what", ["file", "non-empty"])
def test_a_file_or_a_non_empty_directory_is_refused(tmp_path: Path, what: str) -> None:
    target = tmp_path / "target"
    if what == "file":
        target.write_text("x")
    else:
        target.mkdir()
        (target / "keep-me").write_text("precious")
    for step in (check_target, open_target):
        with pytest.raises(RunFailed, match="must be an empty directory or not exist yet"):
            step(target)
