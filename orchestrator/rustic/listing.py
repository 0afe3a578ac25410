"""What `rustic ls --long` printed, read back: a snapshot's entries, or its regular files."""

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Entry:
    """A regular file of a snapshot, as `ls --long` shows it: path relative to the root."""

    path: str
    size: int


_ESCAPE = re.compile(r"\\(u\{([0-9a-fA-F]{1,6})\}|x([0-9a-fA-F]{2})|.)")

_SIMPLE = {"n": "\n", "r": "\r", "t": "\t", "0": "\0", "\\": "\\", '"': '"', "'": "'"}


@dataclass(frozen=True)
class Item:
    """Any entry of a snapshot as `ls --long` (or `find`) shows it."""

    path: str
    type: str  # file, dir, link or other (a device, a FIFO, a socket)
    size: int
    mtime: str  # as rustic prints it, to the minute: `6 Dec 2026 13:02` (`?` for none)


_TYPES = {"-": "file", "d": "dir", "l": "link"}


def parse_long(stdout: str) -> list[Item]:
    """Return every entry `ls --long` printed; names it cannot read back are left out.

    Each line reads `<mode> <user> <group> <size> <mtime> "<path>"`, the path quoted the
    way Rust quotes strings (so a newline in a name is `\\n`, never a line break). A link's
    line goes on ` -> <target>`, unquoted: a target holding line breaks goes on over the
    next lines, as many bytes as the link's size, which are part of it, never entries.
    """
    lines = stdout.splitlines()
    items, index = [], 0
    while index < len(lines):
        item, index = entry_at(lines, index)
        if item is not None:
            items.append(item)
    return items


def entry_at(lines: list[str], index: int) -> tuple[Item | None, int]:
    """Return the entry whose line is `lines[index]` (None if it is none), and the index of
    the line after it and after any lines its link target spans."""
    line, following = lines[index], index + 1
    fields = line.split(None, 4)
    start = line.find('"')
    if len(fields) < 5 or start < 0 or not fields[3].isdigit() or len(fields[0]) != 10:
        return None, following
    quoted = quoted_at(line, start)
    if quoted is None:
        return None, following
    if line[0] == "l":  # ` -> target`: the target's bytes number the link's size
        target = line[start + len(quoted) + 2 :].removeprefix(" -> ")
        while len(target.encode()) < int(fields[3]) and following < len(lines):
            target += "\n" + lines[following]
            following += 1
    path = unquote(quoted)
    if path is None:
        return None, following
    head = line[:start].split(None, 4)  # mode, user, group, size, then the time
    mtime = head[4].strip() if len(head) > 4 else "?"
    return Item(path, _TYPES.get(line[0], "other"), int(fields[3]), mtime), following


def parse_ls(stdout: str) -> list[Entry]:
    """Return the regular files `ls --long` printed, with their sizes: what a drill compares."""
    return [Entry(item.path, item.size) for item in parse_long(stdout) if item.type == "file"]


def quoted_at(line: str, start: int) -> str | None:
    """Return the Rust-quoted string that opens at `start`, still escaped; None if unclosed."""
    index = start + 1
    while index < len(line):
        if line[index] == "\\":
            index += 2
            continue
        if line[index] == '"':
            return line[start + 1 : index]
        index += 1
    return None


def unquote(text: str) -> str | None:
    """Undo Rust's string escaping; None for bytes that are not UTF-8 (`\\x..`)."""
    bad = False

    def one(match: re.Match[str]) -> str:
        nonlocal bad
        if match.group(2):
            return chr(int(match.group(2), 16))
        if match.group(3):
            bad = True
            return ""
        return _SIMPLE.get(match.group(1), match.group(1))

    result = _ESCAPE.sub(one, text)
    return None if bad else result
