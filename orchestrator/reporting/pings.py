"""Dead-man's-switch pings (healthchecks.io style): start, success and fail of every run.

A second channel that needs neither this host's Prometheus nor this host: a check that
stops hearing from a job alerts by itself. Which URL a job pings: its resource's `PING_URL`,
else the customer's `PING_URL` + `/<resource>`, else the global `UNSTOPPABLE_PING_URL` +
`/<customer>_<resource>` (healthchecks' slug URLs).
"""

import http.client
import logging
import socket
import threading
import time
from urllib.parse import urlsplit

from orchestrator.config.addresses import Network
from orchestrator.config.customer import Customer, Customers, Resource
from orchestrator.config.names import env_prefix
from orchestrator.deadline import watchdog
from orchestrator.errors import ConfigError
from orchestrator.model import Outcome, Reason, Result, RunRecord, plain
from orchestrator.sources.targets import vetted

log = logging.getLogger(__name__)

SUFFIX = {"start": "/start", "success": "", "fail": "/fail"}

TIMEOUT_SECONDS = 10  # one attempt, connect to answer, however slowly the server drips

ATTEMPTS = 3


def ping_url(global_base: str | None, customer: Customer, resource: Resource) -> str | None:
    """Return the check URL of `customer`/`resource`, or None when no ping is configured."""
    if owned := customer_ping(customer, resource):
        return owned[1]
    if global_base:
        # `_` cannot occur in names, so no two jobs share a slug (`a-b`+`c`, `a`+`b-c`).
        return f"{global_base.rstrip('/')}/{customer.name}_{resource.name}"
    return None


def customer_ping(customer: Customer, resource: Resource) -> tuple[str, str] | None:
    """Return (KEY, URL) of the check URL the customer's file sets for a job, if it sets one."""
    if own := resource.source.PING_URL:
        return env_prefix(resource.name) + "PING_URL", own
    if customer.ping_url:
        return "PING_URL", f"{customer.ping_url.rstrip('/')}/{resource.name}"
    return None


def refused(url: str, allowed: tuple[Network, ...]) -> tuple[Reason, str] | None:
    """Return why the customer's ping `url` may not be sent to now (its host judged), or None."""
    return _vetted(url, allowed)[1]


def _vetted(
    url: str, allowed: tuple[Network, ...]
) -> tuple[tuple[str, ...], tuple[Reason, str] | None]:
    """Return the addresses the ping `url` may be sent to now, or why it may not be sent."""
    try:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return (), (Reason.SOURCE_REFUSED, "is not an http(s) URL with a valid host and port")
    if not host:
        return (), (Reason.SOURCE_REFUSED, "is not an http(s) URL with a host")
    return vetted(host, port, allowed)


def refusal(customer: Customer, resource: Resource, allowed: tuple[Network, ...]) -> Outcome | None:
    """Return the failure of a run whose own PING_URL points where customers may not reach.

    Its name is resolved now, before any ping goes out. A host that cannot be resolved is
    not a refusal: the backup matters more than its ping, which then fails by itself.
    """
    owned = customer_ping(customer, resource)
    if owned is None:
        return None
    key, url = owned
    problem = refused(url, allowed)
    if problem is None or problem[0] is not Reason.SOURCE_REFUSED:
        return None
    return Outcome(Result.FAILURE, Reason.SOURCE_REFUSED, f"{key}: its host {problem[1]}")


class Pinger:
    """Sends pings in background threads: in order per job, never delaying a run."""

    def __init__(self, global_base: str | None = None, allowed: tuple[Network, ...] = ()) -> None:
        self.global_base = global_base  # UNSTOPPABLE_PING_URL, the operator's: not judged
        self.allowed = allowed  # UNSTOPPABLE_ALLOW_PRIVATE_TARGETS, for customers' URLs
        self.lock = threading.Lock()
        self.last: dict[str, threading.Thread] = {}

    def ping(
        self, url: str, event: str, body: str, job: str, judged: tuple[Network, ...] | None = None
    ) -> None:
        """Queue the `event` ping of `job`; it goes out after the job's earlier pings.

        With `judged` (a customer's URL), its host is resolved and judged just before.
        """
        with self.lock:
            previous = self.last.get(job)
            thread = threading.Thread(
                target=self._send, args=(previous, url, event, body, job, judged), daemon=True
            )
            self.last[job] = thread
            thread.start()

    def job(self, customer: Customer, resource: Resource, event: str, body: str) -> None:
        """Queue the `event` ping of a job, if it has a ping URL."""
        if url := ping_url(self.global_base, customer, resource):
            judged = self.allowed if customer_ping(customer, resource) else None
            self.ping(url, event, body, str(customer.job(resource)), judged)

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
    def _send(
        previous: threading.Thread | None,
        url: str,
        event: str,
        body: str,
        job: str,
        judged: tuple[Network, ...] | None,
    ) -> None:
        if previous is not None:
            previous.join(ATTEMPTS * (TIMEOUT_SECONDS + ATTEMPTS))
        send(url, event, body, job, judged)


def send(
    url: str, event: str, body: str, job: str, judged: tuple[Network, ...] | None = None
) -> bool:
    """POST `body` to the `event` endpoint of `url`; return whether it was delivered.

    Never raises: a ping that cannot be delivered must not fail the backup. A 4xx answer
    is final (the check does not exist or the URL is wrong); other failures are retried.
    With `judged`, the URL is the customer's: it is not sent unless its host resolves to
    public addresses or those networks, just now. The URL is not logged, since a ping key
    in it lets anyone report on the job's behalf.
    """
    target = url.rstrip("/") + SUFFIX[event]
    data = plain(body).encode("utf-8")[:10_000]
    host = urlsplit(url).hostname
    address = None  # a customer's URL goes to the address judged, not to a second DNS answer
    if judged is not None:
        addresses, problem = _vetted(url, judged)
        if problem is not None:
            log.warning("%s: %s ping not sent: its URL %s", job, event, problem[1])
            return False
        address = addresses[0]
    why = ""
    for attempt in range(1, ATTEMPTS + 1):
        try:
            status = _post(target, data, address)
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


class _PinnedHTTP(http.client.HTTPConnection):
    """An HTTP connection to `address`, speaking to the URL's host name (Host header)."""

    def __init__(self, host: str, port: int | None, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self.address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self.address, self.port), self.timeout)


class _PinnedHTTPS(http.client.HTTPSConnection):
    """An HTTPS connection to `address`, its certificate checked against the URL's host."""

    def __init__(self, host: str, port: int | None, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self.address = address

    def connect(self) -> None:
        raw = socket.create_connection((self.address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(raw, server_hostname=self.host)  # type: ignore[attr-defined]


def post_once(url: str, data: bytes, content_type: str, allowed: tuple[Network, ...]) -> str | None:
    """POST `data` to a customer's `url` once, its host judged just now; return None when
    it was taken (2xx), else why not, in words that never quote the URL."""
    addresses, problem = _vetted(url, allowed)
    if problem is not None:
        return f"its URL {problem[1]}"
    try:
        status = _post(url, data, addresses[0], content_type)
    except (OSError, ValueError, http.client.HTTPException) as exc:
        return (exc.strerror if isinstance(exc, OSError) else None) or type(exc).__name__
    return None if 200 <= status < 300 else f"HTTP {status}"


def _post(
    target: str, data: bytes, address: str | None = None, content_type: str = "text/plain"
) -> int:
    """POST `data` to `target` (at `address`, if given) within TIMEOUT_SECONDS overall;
    return the HTTP status."""
    parts = urlsplit(target)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("not an http(s) URL")
    connection: http.client.HTTPConnection
    if address is not None:
        pinned = _PinnedHTTPS if parts.scheme == "https" else _PinnedHTTP
        connection = pinned(parts.hostname, parts.port, address, TIMEOUT_SECONDS)
    else:
        kind = (
            http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        )
        connection = kind(parts.hostname, parts.port, timeout=TIMEOUT_SECONDS)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    try:
        with watchdog(lambda: connection.sock, TIMEOUT_SECONDS) as fired:
            try:
                connection.request("POST", path, data, {"Content-Type": content_type})
                response = connection.getresponse()
                response.read(4096)
                return int(response.status)
            except (OSError, http.client.HTTPException):
                if fired.is_set():
                    raise TimeoutError(f"no answer within {TIMEOUT_SECONDS} s") from None
                raise
    finally:
        connection.close()
