"""What `rustic find` and `rustic diff` printed, read back: a file's history, two snapshots
told apart. Paths are Rust-quoted by rustic and unquoted here (listing.py's rules)."""

import re
from dataclasses import dataclass

from orchestrator.rustic.listing import Item, entry_at, quoted_at, unquote

_FOUND = re.compile(r"^found in ([0-9a-f]{8,64}) from (\S+ \S+)")
# The change marks of `rustic diff`: added, removed, modified, metadata only, type changed.
_CHANGES = {"+": "added", "-": "removed", "M": "changed", "U": "metadata", "T": "type"}


@dataclass(frozen=True)
class Found:
    """One match of `find`: the snapshot (id prefix, time) that holds `item`."""

    snapshot: str
    time: str
    item: Item


@dataclass(frozen=True)
class Change:
    """One entry that differs between two snapshots."""

    change: str  # added, removed, changed, metadata or type
    path: str


def parse_find(stdout: str) -> list[Found]:
    """Return every match `find --all` printed, snapshot by snapshot, in its order."""
    found: list[Found] = []
    snapshot = when = ""
    lines, index = stdout.splitlines(), 0
    while index < len(lines):
        if match := _FOUND.match(lines[index]):
            snapshot, when = match.group(1), match.group(2)
            index += 1
            continue
        item, index = entry_at(lines, index)  # a link's target lines are never a header
        if item is not None and snapshot:
            found.append(Found(snapshot, when, item))
    return found


def parse_diff(stdout: str) -> list[Change]:
    """Return the entries `diff` marked, in its order; its summary lines are left out."""
    changes = []
    for line in stdout.splitlines():
        mark, rest = line[:1], line[1:]
        start = rest.find('"')
        if mark not in _CHANGES or start < 0 or rest[:start].strip():
            continue
        quoted = quoted_at(rest, start)
        if quoted is not None and (path := unquote(quoted)) is not None:
            changes.append(Change(_CHANGES[mark], path))
    return changes
