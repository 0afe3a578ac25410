"""What `rustic ls --long` printed, read back: the regular files of a snapshot."""

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Entry:
    """A regular file of a snapshot, as `ls --long` shows it: path relative to the root."""

    path: str
    size: int


_ESCAPE = re.compile(r"\\(u\{([0-9a-fA-F]{1,6})\}|x([0-9a-fA-F]{2})|.)")

_SIMPLE = {"n": "\n", "r": "\r", "t": "\t", "0": "\0", "\\": "\\", '"': '"', "'": "'"}


def parse_ls(stdout: str) -> list[Entry]:
    """Return the regular files `ls --long` printed; names it cannot read back are left out.

    Each line reads `<mode> <user> <group> <size> <date> <time> "<path>"`, the path quoted
    the way Rust quotes strings (so a newline in a name is `\\n`, never a line break).
    """
    entries = []
    for line in stdout.splitlines():
        if not line.startswith("-"):
            continue  # directories, links, devices, fifos: nothing to compare byte for byte
        fields = line.split(None, 4)
        start, end = line.find('"'), line.rstrip().rfind('"')
        if len(fields) < 5 or start < 0 or end <= start or not fields[3].isdigit():
            continue
        path = _unquote(line[start + 1 : end])
        if path is not None:
            entries.append(Entry(path, int(fields[3])))
    return entries


def _unquote(text: str) -> str | None:
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
