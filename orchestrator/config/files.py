"""A strict reader for `.env` files: python-dotenv's parser, our rules; nothing expanded.

A file is read without ever blocking (a FIFO or socket named `*.env` is refused, not
opened for a read that never ends), up to MAX_BYTES. A UTF-8 byte-order mark and CRLF line
endings are accepted; any other control character in a value is refused, since values end
up in mounts, rclone.conf lines and labels.
"""

import errno
import io
import os
import re
import stat
from pathlib import Path

from dotenv.parser import parse_stream

from orchestrator.errors import ConfigError

MAX_BYTES = 1024 * 1024

_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
MAX_BLANKS = 64
_NAMED = re.compile(r"[ \t]*(?:export[ \t]+)?([A-Za-z_][A-Za-z0-9_]*)[ \t]*=")
_LONG_BLANKS = re.compile(rf"[ \t]{{{MAX_BLANKS + 1}}}")

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
    """Return {KEY: (value, line number)} for `text`, the contents of `path`.

    python-dotenv's parser reads the lines (quotes, escapes, `export`, comments); the rules
    on top are ours: a key is a shell name, a key is set once, and a value holds no control
    character — so `"a\\nb"`, which the parser turns into two lines, is refused rather than
    handed on as a different secret than the operator wrote.
    """
    values: dict[str, tuple[str, int]] = {}
    problems: list[str] = []
    if blanks := _LONG_BLANKS.search(text):
        # python-dotenv strips a comment from an unquoted value with `\s+#.*`, which
        # backtracks over a run of blanks: quadratic, minutes for a hostile 1 MiB line.
        number = text.count("\n", 0, blanks.start()) + 1
        raise ConfigError([f"{path}: line {number}: more than {MAX_BLANKS} blanks in a row"])
    # Blank and comment lines never reach the parser: it spends a Python loop on each, and a
    # file of half a million `#` lines must still be judged in moments.
    lines = [
        (number, line)
        for number, line in enumerate(text.replace("\r\n", "\n").split("\n"), start=1)
        if line.strip(" \t") and not line.lstrip(" \t").startswith("#")
    ]
    numbers = [number for number, _ in lines]
    for binding in parse_stream(io.StringIO("\n".join(line for _, line in lines))):
        number = numbers[min(binding.original.line, len(numbers)) - 1]
        if binding.error:
            named = _NAMED.match(binding.original.string)
            where = f"{named.group(1)}: a quote is not closed, or text follows it" if named else ""
            problems.append(
                f"{path}: {where} (line {number})"
                if where
                else f"{path}: line {number}: expected KEY=value"
            )
            continue
        key, value = binding.key, binding.value
        if key is None:
            continue  # a blank or comment line
        if value is None or not _KEY.fullmatch(key):
            problems.append(f"{path}: line {number}: expected KEY=value")
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
