"""Durations written the way operators write them: `90s`, `15m`, `12h`, `1h30m`, `2d`."""

import re

_PART = re.compile(r"([0-9]{1,9})([smhd])")

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_SECONDS = 36500 * 86400


def parse_duration(text: str) -> int:
    """Return the number of seconds `text` names; raise ValueError if it names none.

    A bare number is seconds. Zero is refused: a zero timeout would stop every run at once.
    """
    text = text.strip()
    if re.fullmatch(r"[0-9]{1,9}", text):
        seconds = int(text)
    else:
        parts = _PART.findall(text)
        if not parts or "".join(n + u for n, u in parts) != text:
            raise ValueError("expected a duration such as 90s, 15m, 12h or 1h30m")
        seconds = sum(int(n) * _UNITS[u] for n, u in parts)
    if seconds <= 0:
        raise ValueError("a duration must be longer than zero")
    if seconds > MAX_SECONDS:
        # A timedelta ends near 2.7 million years; nothing here means more than a century.
        raise ValueError("a duration must be at most 100 years (36500d)")
    return seconds
