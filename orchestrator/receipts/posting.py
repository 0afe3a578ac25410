"""Receipts POSTed to the customer's RECEIPT_URL as well, once published, in order.

A receipt published where it belongs waits in the spool as `<seq>.post` until its POST is
taken (any 2xx). One the URL does not take is tried again with the next delivery, counted
as undelivered like any other: never dropped while the customer file names a URL. The URL
is a customer's: its host is judged just before each POST, as a ping's is.
"""

import logging
from pathlib import Path

from orchestrator.config.addresses import Network
from orchestrator.model import JobKey
from orchestrator.reporting.pings import post_once

log = logging.getLogger(__name__)

POSTING = ".post"  # a receipt published in place, still to be POSTed


def post_waiting(folder: Path, job: JobKey, url: str | None, allowed: tuple[Network, ...]) -> None:
    """POST the job's receipts waiting in `folder`, oldest first, stopping at one refused."""
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
