"""Receipts POSTed to the customer's RECEIPT_URL as well, once published, in order.

A receipt published where it belongs waits in the spool as `<seq>.post` until its POST is
taken (any 2xx). One the URL does not take is tried again with the next delivery, counted
as undelivered like any other: never dropped while the customer file names a URL. The URL
is a customer's: its host is judged just before each POST, as a ping's is. In the daemon,
each job's POSTs go out from a thread of their own, one at a time per job: a customer's
endpoint that drips its answers holds up its own receipts, never the publishing of others'.
"""

import fcntl
import logging
import os
import threading
import time
from pathlib import Path

from orchestrator.config.addresses import Network
from orchestrator.model import JobKey
from orchestrator.reporting.pings import post_once

log = logging.getLogger(__name__)

POSTING = ".post"  # a receipt published in place, still to be POSTed


def post_waiting(folder: Path, job: JobKey, url: str | None, allowed: tuple[Network, ...]) -> None:
    """POST the job's receipts waiting in `folder`, oldest first, stopping at one refused;
    `url` None: the customer's file, loaded, names none. One poster of a job at a time,
    whoever asks (the daemon, a command): two would POST each receipt twice."""
    fd = os.open(folder / ".posting", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return  # another is posting them
        _post_all(folder, job, url, allowed)
    finally:
        os.close(fd)


def _post_all(folder: Path, job: JobKey, url: str | None, allowed: tuple[Network, ...]) -> None:
    waiting = sorted(folder.glob("[0-9]*" + POSTING))
    if url is None:  # the URL was taken out: they are published, and nobody wants a copy
        for path in waiting:
            path.unlink(missing_ok=True)
        return
    for path in waiting:
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            continue
        why = post_once(url, data, "application/json", allowed)
        if why is not None:
            log.warning("%s: receipt %s not POSTed to its RECEIPT_URL yet: %s", job, path.stem, why)
            return
        path.unlink(missing_ok=True)


class Posts:
    """Sends each job's waiting receipts to its URL: at once (`background` off, a command
    that exits next), else from one thread per job with POSTs to make."""

    def __init__(self, allowed: tuple[Network, ...], background: bool) -> None:
        self.allowed = allowed
        self.background = background
        self.lock = threading.Lock()
        self.busy: dict[JobKey, threading.Thread] = {}

    def post(self, folder: Path, job: JobKey, url: str | None) -> None:
        """POST what waits in `folder` for `job`; in the background, unless one is under way."""
        if not self.background:
            post_waiting(folder, job, url, self.allowed)
            return
        with self.lock:
            if (running := self.busy.get(job)) is not None and running.is_alive():
                return  # it goes on with what waits; the next delivery looks again
            thread = threading.Thread(
                target=post_waiting, args=(folder, job, url, self.allowed), daemon=True
            )
            self.busy[job] = thread
            thread.start()

    def join(self, seconds: float) -> None:
        """Wait up to `seconds` for the POSTs under way (a daemon about to stop)."""
        end = time.monotonic() + seconds
        with self.lock:
            threads = list(self.busy.values())
        for thread in threads:
            thread.join(max(0.0, end - time.monotonic()))
