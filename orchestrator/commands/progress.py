"""A restore's progress line on the terminal: files, bytes, rate and time left.

The workers' own output is read only when they end, so progress is measured from outside:
what has arrived in the target folder, the archive's size, the bytes streamed, rclone's
statistics. Only on a terminal: a pipe or a log gets the summary line alone.
"""

import contextlib
import sys
import threading
import time
from collections.abc import Iterator
from typing import TextIO

from orchestrator.commands.context import size
from orchestrator.repository import Measure

EVERY = 1.0  # seconds between two updates of the line


class Progress:
    """Shows one line that `watch(measure)` keeps up to date while its block runs."""

    def __init__(self, job: str, out: TextIO = sys.stderr) -> None:
        self.job = job
        self.out = out
        self.files: int | None = None  # what the whole restore holds, when known
        self.bytes: int | None = None

    def expect(self, files: int | None, total: int | None) -> None:
        """Set what the whole restore holds (for the share done and the time left)."""
        self.files, self.bytes = files, total

    @contextlib.contextmanager
    def watch(self, measure: Measure) -> Iterator[None]:
        if not self.out.isatty():
            yield
            return
        stop = threading.Event()
        started = time.monotonic()

        def show() -> None:
            pause = EVERY
            while not stop.wait(pause):
                began = time.monotonic()
                try:
                    files, done = measure()
                except OSError:  # a file vanished while it was measured: next time
                    continue
                # A walk of a big tree costs: it takes a tenth of the time at most.
                pause = max(EVERY, 10 * (time.monotonic() - began))
                self.out.write("\r\x1b[K" + self.line(files, done, time.monotonic() - started))
                self.out.flush()

        shower = threading.Thread(target=show, name="progress", daemon=True)
        shower.start()
        try:
            yield
        finally:
            stop.set()
            shower.join()
            self.out.write("\r\x1b[K")
            self.out.flush()

    def line(self, files: int | None, done: int, elapsed: float) -> str:
        """Return the line for `files` and `done` bytes after `elapsed` seconds."""
        parts = [self.job]
        if files is not None:
            parts.append(f"{files}" + (f"/{self.files}" if self.files else "") + " files")
        parts.append(size(done) + (f"/{size(self.bytes)}" if self.bytes else ""))
        rate = done / elapsed if elapsed > 0 else 0.0
        parts.append(f"{size(int(rate))}/s")
        if self.bytes and rate > 0 and done <= self.bytes:
            left = int((self.bytes - done) / rate)
            parts.append(f"ETA {left // 3600}:{left // 60 % 60:02d}:{left % 60:02d}")
        return ", ".join(parts)
