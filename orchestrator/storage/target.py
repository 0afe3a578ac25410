"""A restore target: a directory of this host, opened without following a symlink, made 0700.

A restore runs as root with the capabilities to write any file it is told to. A target that
is (or becomes) a symlink would point it at /etc, so the target's last component is never
followed, a new one is made readable by root alone whatever the caller's umask, and the
worker checks that what Docker mounted is the very directory checked here (`device:inode`).
"""

import errno
import os
import stat
from pathlib import Path

from orchestrator.errors import RunFailed

MODE = 0o700
SYMLINK = (
    "--target {target}: is a symlink; a restore never follows one: give the directory it "
    "points to, or a new path"
)


def check_target(target: Path) -> None:
    """Refuse a target that is a symlink, not a directory, or not empty; it may be new.

    Raises RunFailed naming the target and the rule.
    """
    try:
        info = os.lstat(target)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise RunFailed(f"--target {target}: {exc.strerror}") from None
    if stat.S_ISLNK(info.st_mode):
        raise RunFailed(SYMLINK.format(target=target))
    _identity_if_empty(target)


def open_target(target: Path) -> str:
    """Create `target` (mode 0700) if it is new, open it without following a symlink and
    return its `device:inode`, which the worker compares with what it was given.

    Raises RunFailed if it is a symlink, not a directory, or not empty.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.mkdir(target, MODE)
        created = True
    except FileExistsError:
        created = False
    except OSError as exc:
        raise RunFailed(f"--target {target}: cannot create it: {exc.strerror}") from None
    return _identity_if_empty(target, chmod=created)


def _identity_if_empty(target: Path, chmod: bool = False) -> str:
    """Open `target` with O_NOFOLLOW; check it is an empty directory; return `dev:inode`."""
    try:
        fd = os.open(target, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        # O_DIRECTORY with O_NOFOLLOW on a symlink: ENOTDIR on Linux, ELOOP by POSIX.
        if exc.errno in (errno.ELOOP, errno.ENOTDIR) and target.is_symlink():
            raise RunFailed(SYMLINK.format(target=target)) from None
        if exc.errno == errno.ENOTDIR:
            raise RunFailed(
                f"--target {target}: must be an empty directory or not exist yet"
            ) from None
        raise RunFailed(f"--target {target}: {exc.strerror}") from None
    try:
        if chmod:  # through the descriptor: the umask left its mark on mkdir's mode
            os.fchmod(fd, MODE)
        if os.listdir(fd):
            raise RunFailed(f"--target {target}: must be an empty directory or not exist yet")
        info = os.fstat(fd)
    finally:
        os.close(fd)
    return f"{info.st_dev}:{info.st_ino}"
