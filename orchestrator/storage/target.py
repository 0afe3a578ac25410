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


def check_target(target: Path, protected: tuple[Path, ...] = ()) -> bool:
    """Refuse a target that is a symlink, not an empty directory of ours, or lies (as its
    parents resolve) inside a `protected` tree; return whether it is new.

    Raises RunFailed naming the target and the rule.
    """
    try:
        parent = Path(os.path.realpath(target.parent))
    except OSError as exc:
        raise RunFailed(f"--target {target}: cannot be resolved: {exc.strerror}") from None
    for tree in protected:
        if (parent / target.name).is_relative_to(tree):
            raise RunFailed(f"--target {target}: lies inside {tree}, which a restore never writes")
    try:
        info = os.lstat(target)
    except FileNotFoundError:
        return True
    except OSError as exc:
        raise RunFailed(f"--target {target}: {exc.strerror}") from None
    if stat.S_ISLNK(info.st_mode):
        raise RunFailed(SYMLINK.format(target=target))
    _identity_if_empty(target, chmod=False)
    return False


def open_target(target: Path, new: bool = False) -> str:
    """Create `target` (mode 0700) if it is `new`, open it without following a symlink, make
    it 0700 and return its `device:inode`, which the worker compares with what it was given.

    Raises RunFailed if it is a symlink, not an empty directory of this process's user, or
    was checked as new and has appeared since (someone else made it in between).
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.mkdir(target, MODE)
    except FileExistsError:
        if new and not target.is_symlink():
            raise RunFailed(
                f"--target {target}: appeared after it was checked (made by someone else?); "
                "nothing was restored"
            ) from None
    except OSError as exc:
        raise RunFailed(f"--target {target}: cannot create it: {exc.strerror}") from None
    return _identity_if_empty(target, chmod=True)


def _identity_if_empty(target: Path, chmod: bool) -> str:
    """Open `target` with O_NOFOLLOW; check it is an empty directory owned by this process's
    user; make it 0700 if `chmod`; return `dev:inode`."""
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
        info = os.fstat(fd)
        if info.st_uid != os.geteuid():  # another user could read what is restored
            raise RunFailed(
                f"--target {target}: belongs to uid {info.st_uid}, not to this user: give a "
                "new path, or a directory of this user"
            )
        if os.listdir(fd):
            raise RunFailed(f"--target {target}: must be an empty directory or not exist yet")
        if chmod:  # through the descriptor: the umask, or whoever made it, set the mode
            os.fchmod(fd, MODE)
    finally:
        os.close(fd)
    return f"{info.st_dev}:{info.st_ino}"
