"""The source guard: how much a source must still hold before a snapshot of it is written.

An emptied, shrunk or half-deleted source must never become the newest snapshot that
retention keeps instead of the last good one. The floor is taken from the largest of the
job's successful runs within a window (not the last run, so a shrink in small steps is
still caught) and is checked by the worker before rustic starts.
"""

import math
from dataclasses import dataclass
from datetime import timedelta

# How far back the baseline looks: long enough to catch a shrink spread over two weeks of
# daily runs, short enough that a real, accepted change ages out.
WINDOW = timedelta(days=14)


@dataclass(frozen=True)
class Baseline:
    """The most a job's source held in a successful run within the window."""

    files: int
    bytes: int


@dataclass(frozen=True)
class Floor:
    """What a worker requires of the source before it backs it up."""

    min_files: int
    min_bytes: int
    allow_empty: bool

    def argv(self) -> list[str]:
        """Return the floor as the worker scripts take it: MIN_FILES MIN_BYTES ALLOW_EMPTY."""
        return [str(self.min_files), str(self.min_bytes), "1" if self.allow_empty else "0"]


def floor(baseline: Baseline | None, threshold: int, allow_empty: bool) -> Floor:
    """Return the floor for a source: `threshold` percent of the baseline's files and bytes.

    Without a baseline (a first run, or just after `unstoppable accept`) only an empty
    source is refused, and only unless `allow_empty`.
    """
    if baseline is None or threshold <= 0:
        return Floor(0, 0, allow_empty)
    return Floor(
        math.ceil(baseline.files * threshold / 100),
        math.ceil(baseline.bytes * threshold / 100),
        allow_empty,
    )
