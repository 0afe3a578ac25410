"""What the engine says, made readable: its times and its errors' first line."""

import re
from collections import deque
from collections.abc import Iterable
from datetime import UTC, datetime


def parse_time(text: str) -> datetime:
    """Return Docker's RFC 3339 time (nanoseconds, Z) as an aware datetime, to the second."""
    match = re.match(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.\d+)?(Z|[+-]\d\d:\d\d)$", text)
    if not match or text.startswith("0001-"):
        return datetime.now(UTC)
    return datetime.fromisoformat(match.group(1) + match.group(2).replace("Z", "+00:00"))


def short(exc: Exception) -> str:
    return str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__


CUT = "[output cut:"  # how a stream whose start was dropped begins


def tail(chunks: Iterable[bytes], keep: int) -> str:
    """Return the last `keep` bytes of the stream `chunks` as text, holding no more than
    `keep` bytes and one chunk at any time.

    A cut stream starts at its first whole line after the cut, under a line that says so.
    """
    want, keep = keep, keep + 1  # one byte more: was the cut on a line's start?
    kept: deque[bytes] = deque()
    size, cut = 0, False
    for chunk in chunks:
        if not chunk:
            continue
        kept.append(chunk[-keep:])
        size += len(kept[-1])
        cut = cut or len(chunk) > keep
        while len(kept) > 1 and size - len(kept[0]) >= keep:
            size -= len(kept.popleft())
            cut = True
    data = b"".join(kept)
    start = max(0, len(data) - keep)
    if not (cut or start):
        return data.decode("utf-8", "replace")
    # Decoded straight from the joined buffer: no second copy of the tail is made.
    line = data.find(b"\n", start)
    whole = memoryview(data)[line + 1 :] if line >= 0 else memoryview(b"")
    return f"{CUT} only its last {want} bytes were read]\n" + str(whole, "utf-8", "replace")
