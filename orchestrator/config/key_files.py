"""Key files a customer file names (sftp KEY_FILE, ftps TLS_CA_FILE): its own, read safely.

A key file is copied into a worker's secrets, so a customer file naming `/etc/shadow`, the
host's SSH key or another customer's key would hand it over. It must lie, as written, in
`UNSTOPPABLE_KEYS_DIR/<customer>/`, and it is read by walking that directory one name at a
time without following a symlink, as a regular file that is opened without blocking (a
FIFO, device or socket is refused, not read), at most MAX_BYTES, within a deadline (a hung
network filesystem). `validate` and each run read it through this one function.
"""

import errno
import os
import stat
from collections.abc import Sequence
from pathlib import Path

from orchestrator import deadline
from orchestrator.config.files import file_kind
from orchestrator.errors import SecretError

MAX_BYTES = 64 * 1024

DEADLINE_SECONDS = 5.0

_DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC


def key_path_problem(path: str, root: Path) -> str | None:
    """Return why `path` may not be a key file of the customer whose directory is `root`."""
    if not path.startswith("/"):
        return "must be an absolute path"
    if any(part in ("", ".", "..") for part in path.split("/")[1:]):
        return "must not hold '..', '.' or an empty part ('//')"
    where = Path(path)
    if where == root or not where.is_relative_to(root):
        return f"must lie in this customer's key directory {root}/ (UNSTOPPABLE_KEYS_DIR)"
    return None


def read_key_file(path: str, root: Path) -> str:
    """Return the text of the key file `path`, which must lie in `root`.

    Raises SecretError saying why it may not or cannot be read; never its contents.
    """
    why = key_path_problem(path, root)
    if why is not None:
        raise SecretError(why)
    parts = Path(path).relative_to(root).parts
    try:
        data = deadline.call(lambda: _read(root, parts), DEADLINE_SECONDS, "reading it")
    except deadline.DeadlineExceeded:
        raise SecretError(f"could not be read within {DEADLINE_SECONDS:.0f} s") from None
    except OSError as exc:
        raise SecretError(_os_problem(exc)) from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise SecretError("is not text (a PEM file is expected)") from None


def _read(root: Path, parts: Sequence[str]) -> bytes:
    """Return the bytes of root/parts, walked without following a link below `root`."""
    # The customer's directory itself is the operator's: it may be a link to another disk.
    directory = os.open(root, _DIRECTORY)
    try:
        for part in parts[:-1]:
            inner = os.open(part, _DIRECTORY | os.O_NOFOLLOW, dir_fd=directory)
            os.close(directory)
            directory = inner
        fd = os.open(parts[-1], _FILE, dir_fd=directory)
    finally:
        os.close(directory)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise SecretError(f"is {file_kind(info.st_mode)}, not a regular file")
        if info.st_size > MAX_BYTES:
            raise SecretError(f"is larger than {MAX_BYTES // 1024} KiB: not a key file")
        data = b""
        while len(data) <= MAX_BYTES and (chunk := os.read(fd, 65536)):
            data += chunk
    finally:
        os.close(fd)
    if len(data) > MAX_BYTES:
        raise SecretError(f"is larger than {MAX_BYTES // 1024} KiB: not a key file")
    return data


def _os_problem(exc: OSError) -> str:
    if exc.errno == errno.ELOOP:
        return "is or lies behind a symbolic link (key files are read without following links)"
    if exc.errno == errno.ENOTDIR:
        return "lies below a symbolic link or a file that is not a directory"
    if exc.errno == errno.ENOENT:
        return "does not exist"
    if exc.errno == errno.ENXIO:
        return "is a socket, not a regular file"
    return f"cannot be read: {exc.strerror or type(exc).__name__}"


KEY_FILE_KEYS = ("TLS_CA_FILE", "KEY_FILE")


def named_in(source: object) -> list[tuple[str, str]]:
    """Return (KEY, path) of every key file a source names (ftps TLS_CA_FILE, sftp KEY_FILE)."""
    found = ((key, getattr(source, key, None)) for key in KEY_FILE_KEYS)
    return [(key, path) for key, path in found if isinstance(path, str) and path]
