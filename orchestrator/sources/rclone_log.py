"""What rclone's JSON log (`--use-json-log`) says of a copy: how far it is, what failed."""

import contextlib
import json
import os
from pathlib import Path

SHOWN = 20  # failed files named in a message; the rest counted


def sent(log: Path) -> tuple[int | None, int]:
    """Return (files, bytes) rclone has put so far, from the last statistics in its log."""
    try:
        with open(log, "rb") as handle:
            handle.seek(max(0, handle.seek(0, os.SEEK_END) - 65536))
            tail = handle.read().decode(errors="replace")
    except OSError:
        return None, 0
    for line in reversed(tail.splitlines()):
        with contextlib.suppress(ValueError, AttributeError):
            stats = json.loads(line)["stats"]
            return int(stats["transfers"]), int(stats["bytes"])
    return None, 0


def failures(log: Path) -> str:
    """Return the files rclone's log says it could not write, with why (the first few)."""
    failed = []
    with contextlib.suppress(OSError):
        for line in log.read_text(errors="replace").splitlines():
            with contextlib.suppress(ValueError, AttributeError):
                entry = json.loads(line)
                if entry.get("level") == "error":
                    what = str(entry.get("object") or "?")
                    what = what if what.isprintable() else repr(what)
                    failed.append(f"{what} ({_plain(entry.get('msg', ''))})")
    shown = "; ".join(failed[:SHOWN])
    return shown + (f"; and {len(failed) - SHOWN} more" if len(failed) > SHOWN else "")


def _plain(message: object) -> str:
    """Return rclone's words on one line, without control characters (they may quote the
    server or a file name)."""
    text = " ".join(str(message).split())[:200]
    return "".join(c if c.isprintable() else "?" for c in text)
