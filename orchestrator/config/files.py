"""A strict reader for `.env` files: python-dotenv's parser, our rules; nothing expanded.

A file is read without ever blocking (a FIFO or socket named `*.env` is refused, not
opened for a read that never ends), up to MAX_BYTES. A UTF-8 byte-order mark and CRLF line
endings are accepted; a lone carriage return, and any control character but the tab in a
value, are refused, since values end up in mounts, rclone.conf lines and labels.

Escapes in double quotes are python-dotenv's (`\\` is one backslash, `\"` a quote, `\n` a
line break, which is then refused); before 0.3 a backslash simply took the next character.
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

MAX_BLANKS = 64
MAX_SETTINGS = 10_000  # 200 resources of 25 keys each is 5000
_NAMED = re.compile(r"[ \t]*(?:export[ \t]+)?([A-Za-z_][A-Za-z0-9_]*)[ \t]*=")
# Any blank python-dotenv's `\s` takes: NBSP, form feed and the like count as well.
_LONG_BLANKS = re.compile(rf"[^\S\n]{{{MAX_BLANKS + 1}}}")

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
        raise ConfigError([f"{path}: {file_kind(mode)}, not a regular file: remove or rename it"])


def file_kind(mode: int) -> str:
    """Return what kind of file `mode` (st_mode) is, in words: "a FIFO", "a directory", …"""
    if stat.S_ISREG(mode):
        return "a regular file"
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def parse_dotenv(path: Path) -> dict[str, tuple[str, int]]:
    """Return {KEY: (value, line number)} for the file at `path`.

    Values are never expanded (`$` is literal). Raises ConfigError listing every
    malformed line, duplicate key or unreadable file, without printing a value.
    """
    return parse_text(path, read_text(path))


def parse_text(path: Path, text: str) -> dict[str, tuple[str, int]]:
    """Return {KEY: (value, line number)} for `text`, the contents of `path`.

    python-dotenv's parser reads each `KEY=value` line (quotes, escapes, `export`, comments);
    the rules around it are ours, and come first so that no line costs more than its length:
    a key is a shell name, set once; a value holds no control character but the tab — so
    `"a\\nb"`, which the parser turns into two lines, is refused rather than handed on as a
    different secret than the operator wrote. Raises ConfigError listing every problem.
    """
    lines = text.replace("\r\n", "\n").split("\n")
    problems: list[str] = []
    settings: list[tuple[int, str]] = []
    for number, line in enumerate(lines, start=1):
        if "\r" in line:
            problems.append(f"{path}: line {number}: a carriage return inside a line")
        elif _LONG_BLANKS.search(line):
            # python-dotenv strips a comment from an unquoted value with `\s+#.*`, which
            # backtracks over a run of blanks: quadratic, minutes for a hostile 1 MiB line.
            problems.append(f"{path}: line {number}: more than {MAX_BLANKS} blanks in a row")
        elif not line.strip() or line.lstrip().startswith("#"):
            continue
        elif _NAMED.match(line):
            settings.append((number, line))
        else:
            problems.append(f"{path}: line {number}: expected KEY=value")
    if len(settings) > MAX_SETTINGS:
        raise ConfigError([f"{path}: more than {MAX_SETTINGS} settings: not a customer file"])
    values = _bindings(path, settings, problems)
    if problems:
        raise ConfigError(problems)
    return values


def _bindings(
    path: Path, settings: list[tuple[int, str]], problems: list[str]
) -> dict[str, tuple[str, int]]:
    """Return the values python-dotenv reads from the `settings` (number, line); add problems."""
    values: dict[str, tuple[str, int]] = {}
    numbers = [number for number, _ in settings]
    for binding in parse_stream(io.StringIO("\n".join(line for _, line in settings))):
        number = numbers[min(binding.original.line, len(numbers)) - 1]
        named = _NAMED.match(binding.original.string)
        key, value = binding.key, binding.value
        if binding.error or key is None or value is None:
            what = named.group(1) if named else f"line {number}"
            problems.append(
                f"{path}: {what}: a quote is not closed, or text follows it (line {number})"
            )
            continue
        if _CONTROL.search(value):
            problems.append(f"{path}: {key}: contains a control character (line {number})")
            continue
        if key in values:
            problems.append(f"{path}: {key}: set twice (lines {values[key][1]} and {number})")
            continue
        values[key] = (value, number)
    return values
