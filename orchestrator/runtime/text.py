"""What the engine says, made readable: its times and its errors' first line."""

import re
from datetime import UTC, datetime


def parse_time(text: str) -> datetime:
    """Return Docker's RFC 3339 time (nanoseconds, Z) as an aware datetime, to the second."""
    match = re.match(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.\d+)?(Z|[+-]\d\d:\d\d)$", text)
    if not match or text.startswith("0001-"):
        return datetime.now(UTC)
    return datetime.fromisoformat(match.group(1) + match.group(2).replace("Z", "+00:00"))


def short(exc: Exception) -> str:
    return str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
