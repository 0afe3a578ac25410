"""The daemon with its wall clock shifted: the soak's clock fault.

    python -m bench.soak_clock OFFSET_FILE run

Runs `unstoppable` (here: `run`) with the daemon's clock source, and only it, reading the
seconds in OFFSET_FILE (re-read at most twice a second; missing or unreadable means 0) and
adding them to the wall clock, as a clock stepped by NTP or set by hand would look to it.
Python's monotonic clock is left alone, as a real step leaves it (libfaketime moves both,
and its sleep breaks in Python 3.11).
"""

import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from orchestrator import cli, daemon, dispatch


class Offset:
    """The shift in OFFSET_FILE, read again after half a second."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.value = 0.0
        self.read_at = float("-inf")

    def now(self) -> datetime:
        if time.monotonic() - self.read_at > 0.5:
            self.read_at = time.monotonic()
            try:
                self.value = float(self.path.read_text().strip() or 0)
            except (OSError, ValueError):
                self.value = 0.0
        return datetime.now(UTC) + timedelta(seconds=self.value)


if __name__ == "__main__":
    offset = Offset(Path(sys.argv[1]))
    daemon._now = offset.now
    dispatch._now = offset.now
    sys.exit(cli.main(sys.argv[2:]))
