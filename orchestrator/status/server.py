"""Serving the status pages on UNSTOPPABLE_STATUS_LISTEN: `/status/<customer>` and `/status/`.

A customer's page opens with its own STATUS_TOKEN (or the operator's admin token), sent as a
bearer token or as the password of HTTP basic authentication; `/status/` with the admin token
alone. No credentials: 401 with a challenge. Credentials that do not open the page: 403,
whether the customer exists or not, so a token never learns whose pages there are. Tokens are
compared as SHA-256 digests in constant time.

The pages are a convenience: a port that cannot be bound is logged, counted (`status`) and
tried again every minute, and never stops the backups.
"""

import base64
import binascii
import hashlib
import hmac
import logging
import socket
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from orchestrator.config.customer import Customers
from orchestrator.config.names import NAME
from orchestrator.config.settings import Settings
from orchestrator.errors import SecretError
from orchestrator.reporting.ledger import Ledger
from orchestrator.secrets.files import Resolver
from orchestrator.status.facts import gather, of_customer
from orchestrator.status.page import customer_page, overview_page

log = logging.getLogger(__name__)

BIND_RETRY_SECONDS = 60.0
READ_SECONDS = 10.0  # a client that drips its request is dropped after this long
MAX_CLIENTS = 32  # connections served at once; more are closed at once
HEADERS = {
    "Content-Type": "text/html; charset=utf-8",
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
    "frame-ancestors 'none'; form-action 'none'; base-uri 'none'",
}
CHALLENGE = 'Basic realm="backup status", charset="UTF-8"'

Answer = tuple[int, dict[str, str], bytes]


class Pages:
    """Answers one request for a status page: who may see what, and the page itself."""

    def __init__(
        self,
        settings: Settings,
        ledger: Ledger,
        customers: Callable[[], Customers],
        resolver: Resolver,
    ) -> None:
        self.settings = settings
        self.ledger = ledger
        self.customers = customers  # the daemon's current view of customers.d
        self.resolver = resolver
        admin = settings.STATUS_ADMIN_TOKEN
        self.admin = _digest(admin.get_secret_value()) if admin else None

    def answer(self, path: str, authorization: str | None) -> Answer:
        """Return the status, headers and body of a GET of `path`."""
        route = path.split("?", 1)[0].split("#", 1)[0]
        if route in ("/status", "/status/"):
            return self._overview(authorization)
        name = route.removeprefix("/status/").removesuffix("/")
        if not route.startswith("/status/") or not NAME.fullmatch(name):
            return _plain(404, "no such page")
        return self._customer(name, authorization)

    def _overview(self, authorization: str | None) -> Answer:
        offered = credential(authorization)
        if offered is None:
            return _challenge()
        if not self._is_admin(offered):
            return _plain(403, "this token does not open this page")
        customers = self.customers()
        facts = gather(self.settings, self.ledger, customers, datetime.now(UTC))
        return _page(overview_page(facts, customers.invalid, datetime.now(UTC)))

    def _customer(self, name: str, authorization: str | None) -> Answer:
        offered = credential(authorization)
        if offered is None:
            return _challenge()
        customers = self.customers()
        customer = customers.by_name.get(name)
        allowed = self._is_admin(offered)
        if not allowed and customer is not None and customer.status_token is not None:
            try:
                token = self.resolver.resolve(customer.status_token, name, "STATUS_TOKEN")
            except SecretError as exc:
                log.warning("%s: status page not served: %s", name, exc)
                return _plain(503, "this page cannot be opened just now; try again later")
            allowed = hmac.compare_digest(_digest(offered), _digest(token.get_secret_value()))
        if not allowed:
            return _plain(403, "this token does not open this page")
        if customer is None:  # only the operator learns that there is no such customer
            return _plain(404, "no such customer (or its file is disabled: see the log)")
        now = datetime.now(UTC)
        facts = of_customer(gather(self.settings, self.ledger, customers, now, name), name)
        return _page(customer_page(name, facts, now))

    def _is_admin(self, offered: str) -> bool:
        return self.admin is not None and hmac.compare_digest(_digest(offered), self.admin)


def credential(authorization: str | None) -> str | None:
    """Return the token an Authorization header offers (bearer, or basic's password)."""
    scheme, _, value = (authorization or "").strip().partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer" and value:
        return value
    if scheme.lower() == "basic" and value:
        try:
            decoded = base64.b64decode(value, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        _user, colon, password = decoded.partition(":")
        return password if colon and password else None
    return None


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


def _challenge() -> Answer:
    status, headers, body = _plain(401, "this page needs its token")
    return status, {**headers, "WWW-Authenticate": CHALLENGE}, body


def _plain(status: int, text: str) -> Answer:
    body = f"<!doctype html><title>{status}</title><p>{text}</p>".encode()
    return status, dict(HEADERS), body


def _page(html: str) -> Answer:
    return 200, dict(HEADERS), html.encode("utf-8")


class _Handler(BaseHTTPRequestHandler):
    server_version = "status"  # no software or version named to the world
    sys_version = ""
    timeout = READ_SECONDS
    pages: Pages

    def do_GET(self) -> None:
        self._send(*self._answer(), body=True)

    def do_HEAD(self) -> None:
        self._send(*self._answer(), body=False)

    def _answer(self) -> Answer:
        try:
            return self.pages.answer(self.path, self.headers.get("Authorization"))
        except Exception:  # a bug of ours: this request's problem alone
            log.exception("status page %s failed", self.path[:100])
            return _plain(500, "this page failed; we have been alerted")

    def _send(self, status: int, headers: dict[str, str], data: bytes, body: bool) -> None:
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if body:
            self.wfile.write(data)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Answer a malformed request or an unknown method plainly, naming no software."""
        self.close_connection = True
        self._send(*_plain(code, "not a request this server answers"), body=True)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("status: " + format, *args)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    slots: threading.BoundedSemaphore  # one per server: see `bind`

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self.slots.acquire(blocking=False):
            self.shutdown_request(request)  # busy: closed at once, never queued
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()


def bind(listen: str, pages: Pages) -> ThreadingHTTPServer:
    """Return a server of `pages` bound to `listen` (host:port); raise OSError or ValueError."""
    host, _, port = listen.rpartition(":")
    host = host.strip("[]")
    handler = type("Handler", (_Handler,), {"pages": pages})
    server_class: type[_Server] = type(
        "Server",
        (_Server,),
        {
            "address_family": socket.AF_INET6 if ":" in host else socket.AF_INET,
            "slots": threading.BoundedSemaphore(MAX_CLIENTS),
        },
    )
    return server_class((host, int(port)), handler)


def serve_status(
    settings: Settings,
    pages: Pages,
    count: Callable[[str], None],
    stopping: threading.Event,
) -> None:
    """Serve the pages from a thread of their own; bind again every minute until it works."""
    listen = settings.STATUS_LISTEN
    if not listen:
        return

    def keep_serving() -> None:
        while not stopping.is_set():
            try:
                server = bind(listen, pages)
            except (OSError, ValueError, OverflowError) as exc:
                count("status")
                log.error(
                    "cannot serve the status pages on UNSTOPPABLE_STATUS_LISTEN=%s: %s; "
                    "trying again in %d s (backups go on)",
                    listen,
                    exc,
                    BIND_RETRY_SECONDS,
                )
                stopping.wait(BIND_RETRY_SECONDS)
                continue
            log.info("status pages on %s", listen)
            server.serve_forever()
            return

    threading.Thread(target=keep_serving, name="status", daemon=True).start()
