"""Serving the status pages on UNSTOPPABLE_STATUS_LISTEN: `/status/<customer>` and `/status/`.

What each request is answered is `access.Pages`'s. Each connection has REQUEST_SECONDS in
all, and REQUEST_BYTES for its request line and headers: a client that drips its request,
or sends megabytes of headers, is cut off. The pages are a convenience: a port that cannot
be bound is logged, counted (`status`) and tried again every minute, and never stops the
backups.
"""

import logging
import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from orchestrator.config.settings import Settings
from orchestrator.deadline import watchdog
from orchestrator.status.access import Answer, Pages, plain

log = logging.getLogger(__name__)

BIND_RETRY_SECONDS = 60.0
REQUEST_SECONDS = 10.0  # a connection's whole life: reading the request, sending the page
REQUEST_BYTES = 32 * 1024  # its request line and headers, together
MAX_CLIENTS = 32  # connections served at once; more are closed at once


class _Bounded:
    """A request's input, cut off past `budget` bytes (request line and headers)."""

    def __init__(self, stream: Any, budget: int) -> None:
        self.stream = stream
        self.left = budget

    def readline(self, limit: int = -1) -> bytes:
        line: bytes = self.stream.readline(limit)
        self.left -= len(line)
        if self.left < 0:
            raise ConnectionAbortedError("request headers too large")
        return line

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)


class _Handler(BaseHTTPRequestHandler):
    server_version = "status"  # no software or version named to the world
    sys_version = ""
    timeout = REQUEST_SECONDS  # each read; `handle` bounds the whole connection
    pages: Pages

    def setup(self) -> None:
        super().setup()
        self.rfile = _Bounded(self.rfile, REQUEST_BYTES)  # type: ignore[assignment]

    def handle(self) -> None:
        with watchdog(lambda: self.connection, REQUEST_SECONDS):
            super().handle()

    def do_GET(self) -> None:
        self._send(*self._answer(), body=True)

    def do_HEAD(self) -> None:
        self._send(*self._answer(), body=False)

    def _answer(self) -> Answer:
        try:
            return self.pages.answer(self.path, self.headers.get("Authorization"))
        except Exception:  # a bug of ours: this request's problem alone
            log.exception("status page %s failed", self.path[:100])
            return plain(500, "this page failed; we have been alerted")

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
        self._send(*plain(code, "not a request this server answers"), body=True)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("status: " + format, *args)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    slots: threading.BoundedSemaphore  # one per server: see `bind`

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self.slots.acquire(blocking=False):
            self.shutdown_request(request)  # busy: closed at once, never queued
            return
        try:
            super().process_request(request, client_address)
        except BaseException:  # no thread: its slot is given back
            self.slots.release()
            raise

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A connection cut off (its deadline, its size) or dropped: nothing to report."""
        log.debug("status: a connection ended early", exc_info=True)

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
