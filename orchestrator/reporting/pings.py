"""Dead-man's-switch pings (healthchecks.io style): start, success and fail of every run.

A second channel that needs neither this host's Prometheus nor this host: a check that
stops hearing from a job alerts by itself. Which URL a job pings: its resource's `PING_URL`,
else the customer's `PING_URL` + `/<resource>`, else the global `UNSTOPPABLE_PING_URL` +
`/<customer>_<resource>` (healthchecks' slug URLs).
"""

import http.client
import logging
import threading
import time
from urllib.parse import urlsplit

from orchestrator.config.customer import Customer, Customers, Resource
from orchestrator.deadline import watchdog
from orchestrator.errors import ConfigError
from orchestrator.model import Result, RunRecord, job_id

log = logging.getLogger(__name__)

SUFFIX = {"start": "/start", "success": "", "fail": "/fail"}

TIMEOUT_SECONDS = 10  # one attempt, connect to answer, however slowly the server drips

ATTEMPTS = 3


def ping_url(global_base: str | None, customer: Customer, resource: Resource) -> str | None:
    """Return the check URL of `customer`/`resource`, or None when no ping is configured."""
    if own := resource.source.PING_URL:
        return own
    if customer.ping_url:
        return f"{customer.ping_url.rstrip('/')}/{resource.name}"
    if global_base:
        # `_` cannot occur in names, so no two jobs share a slug (`a-b`+`c`, `a`+`b-c`).
        return f"{global_base.rstrip('/')}/{customer.name}_{resource.name}"
    return None


class Pinger:
    """Sends pings in background threads: in order per job, never delaying a run."""

    def __init__(self, global_base: str | None = None) -> None:
        self.global_base = global_base  # UNSTOPPABLE_PING_URL
        self.lock = threading.Lock()
        self.last: dict[str, threading.Thread] = {}

    def ping(self, url: str, event: str, body: str, job: str) -> None:
        """Queue the `event` ping of `job`; it goes out after the job's earlier pings."""
        with self.lock:
            previous = self.last.get(job)
            thread = threading.Thread(
                target=self._send, args=(previous, url, event, body, job), daemon=True
            )
            self.last[job] = thread
            thread.start()

    def job(self, customer: Customer, resource: Resource, event: str, body: str) -> None:
        """Queue the `event` ping of a job, if it has a ping URL."""
        if url := ping_url(self.global_base, customer, resource):
            self.ping(url, event, body, job_id(customer.name, resource.name))

    def result(self, customers: Customers, record: RunRecord) -> None:
        """Queue the success or fail ping of a recorded run; call it after recording."""
        if record.outcome.result is Result.SKIPPED:
            return
        try:
            customer = customers.get(record.customer)
            resource = customer.resource(record.resource)
        except ConfigError:
            return  # the customer is gone or broken; its file's problem is reported already
        outcome = record.outcome
        event = "success" if outcome.result is Result.SUCCESS else "fail"
        reason = f" ({outcome.reason.value})" if outcome.reason else ""
        self.job(customer, resource, event, f"{outcome.result.value}{reason}: {outcome.message}")

    def drain(self, seconds: float) -> None:
        """Wait up to `seconds` for the pings still in flight (a CLI about to exit)."""
        end = time.monotonic() + seconds
        with self.lock:
            threads = list(self.last.values())
        for thread in threads:
            thread.join(max(0.0, end - time.monotonic()))

    @staticmethod
    def _send(previous: threading.Thread | None, url: str, event: str, body: str, job: str) -> None:
        if previous is not None:
            previous.join(ATTEMPTS * (TIMEOUT_SECONDS + ATTEMPTS))
        send(url, event, body, job)


def send(url: str, event: str, body: str, job: str) -> bool:
    """POST `body` to the `event` endpoint of `url`; return whether it was delivered.

    Never raises: a ping that cannot be delivered must not fail the backup. A 4xx answer
    is final (the check does not exist or the URL is wrong); other failures are retried.
    The URL is not logged, since a ping key in it lets anyone report on the job's behalf.
    """
    target = url.rstrip("/") + SUFFIX[event]
    data = body.encode("utf-8")[:10_000]
    host = urlsplit(url).hostname
    why = ""
    for attempt in range(1, ATTEMPTS + 1):
        try:
            status = _post(target, data)
        except (OSError, ValueError, http.client.HTTPException) as exc:
            # Never str(exc): some messages quote the URL, and its path holds the ping key.
            why = (exc.strerror if isinstance(exc, OSError) else None) or type(exc).__name__
        else:
            if 200 <= status < 300:
                return True
            why = f"HTTP {status}"
            if 400 <= status < 500:
                break
        if attempt < ATTEMPTS:
            time.sleep(attempt)
    log.warning("%s: %s ping to %s failed: %s", job, event, host, why)
    return False


def _post(target: str, data: bytes) -> int:
    """POST `data` to `target` within TIMEOUT_SECONDS overall; return the HTTP status."""
    parts = urlsplit(target)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("not an http(s) URL")
    kind = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    connection = kind(parts.hostname, parts.port, timeout=TIMEOUT_SECONDS)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    try:
        with watchdog(lambda: connection.sock, TIMEOUT_SECONDS) as fired:
            try:
                connection.request("POST", path, data, {"Content-Type": "text/plain"})
                response = connection.getresponse()
                response.read(4096)
                return int(response.status)
            except (OSError, http.client.HTTPException):
                if fired.is_set():
                    raise TimeoutError(f"no answer within {TIMEOUT_SECONDS} s") from None
                raise
    finally:
        connection.close()
