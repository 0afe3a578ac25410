"""A strict reader for `.env` files: `KEY=value` lines, quotes, comments; nothing expanded.

A file is read without ever blocking (a FIFO or socket named `*.env` is refused, not
opened for a read that never ends), up to MAX_BYTES. A UTF-8 byte-order mark and CRLF line
endings are accepted; any other control character in a value is refused, since values end
up in mounts, rclone.conf lines and labels.
"""

import errno
import os
import re
import stat
from pathlib import Path

from orchestrator.errors import ConfigError

MAX_BYTES = 1024 * 1024

_LINE = re.compile(r"^(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)$")

_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")

_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


def read_text(path: Path) -> str:
    """Return the text of the regular file at `path`, at most MAX_BYTES of UTF-8.

    Raises ConfigError naming the file and what is wrong with it: a dangling symlink,
    something other than a regular file, too large, unreadable, or not UTF-8.
    """
    try:
        _require_regular(path, os.stat(path).st_mode)  # a socket cannot even be opened
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
    except OSError as exc:
        if exc.errno == errno.ENOENT and path.is_symlink():
            raise ConfigError([f"{path}: a symlink to nothing (dangling)"]) from None
        raise ConfigError([f"{path}: cannot read: {exc.strerror or exc}"]) from None
    try:
        _require_regular(path, os.fstat(fd).st_mode)  # swapped since the stat above
        data = b""
        while len(data) <= MAX_BYTES and (chunk := os.read(fd, 65536)):
            data += chunk
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror or exc}"]) from None
    finally:
        os.close(fd)
    if len(data) > MAX_BYTES:
        raise ConfigError([f"{path}: larger than {MAX_BYTES // 1024} KiB: not a customer file"])
    try:
        return data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ConfigError([f"{path}: line {line}: not UTF-8 text"]) from None


def _require_regular(path: Path, mode: int) -> None:
    if not stat.S_ISREG(mode):
        kind = next((name for test, name in _KINDS if test(mode)), "not a regular file")
        raise ConfigError([f"{path}: {kind}, not a regular file: remove or rename it"])


def parse_dotenv(path: Path) -> dict[str, tuple[str, int]]:
    """Return {KEY: (value, line number)} for the file at `path`.

    Values are never expanded (`$` is literal). Raises ConfigError listing every
    malformed line, duplicate key or unreadable file, without printing a value.
    """
    return parse_text(path, read_text(path))


def parse_text(path: Path, text: str) -> dict[str, tuple[str, int]]:
    """Return {KEY: (value, line number)} for `text`, the contents of `path`."""
    values: dict[str, tuple[str, int]] = {}
    problems: list[str] = []
    for number, raw in enumerate(text.split("\n"), start=1):
        line = raw.removesuffix("\r").strip(" \t")
        if not line or line.startswith("#"):
            continue
        match = _LINE.match(line)
        if not match:
            problems.append(f"{path}: line {number}: expected KEY=value")
            continue
        key, rest = match.groups()
        try:
            value = _unquote(rest)
        except ValueError as exc:
            problems.append(f"{path}: {key}: {exc} (line {number})")
            continue
        if _CONTROL.search(value):
            problems.append(f"{path}: {key}: contains a control character (line {number})")
            continue
        if key in values:
            problems.append(f"{path}: {key}: set twice (lines {values[key][1]} and {number})")
            continue
        values[key] = (value, number)
    if problems:
        raise ConfigError(problems)
    return values


def _unquote(rest: str) -> str:
    if rest[:1] in ('"', "'"):
        quote = rest[0]
        out, i = [], 1
        while i < len(rest):
            char = rest[i]
            if char == "\\" and quote == '"' and i + 1 < len(rest):
                out.append(rest[i + 1])
                i += 2
                continue
            if char == quote:
                tail = rest[i + 1 :].strip()
                if tail and not tail.startswith("#"):
                    raise ValueError("text after the closing quote")
                return "".join(out)
            out.append(char)
            i += 1
        raise ValueError("unterminated quote")
    # An unquoted value ends at a comment that follows whitespace. A linear scan: a regex
    # split backtracks over every run of blanks, quadratic in a hostile file.
    for i, char in enumerate(rest):
        if char == "#" and i > 0 and rest[i - 1] in " \t":
            return rest[:i].strip()
    return rest.strip()
