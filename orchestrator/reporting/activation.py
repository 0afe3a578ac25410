"""systemd socket activation: the listening socket a socket unit holds for the daemon.

The unit keeps the port bound while the daemon restarts, so no other local process can take
it in between and answer Prometheus in the daemon's name.
"""

import ipaddress
import socket
import threading
from collections.abc import Mapping, MutableMapping
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer
from wsgiref.types import WSGIApplication

LISTEN_FDS_START = 3  # SD_LISTEN_FDS_START: the first descriptor systemd passes


def inherited_listener(environ: Mapping[str, str], pid: int) -> int | None:
    """Return the descriptor systemd's socket activation passed to process `pid`, or None.

    sd_listen_fds(3): LISTEN_PID names the process meant (not a child that inherited the
    variables), LISTEN_FDS counts descriptors from 3; the first is the metrics socket.
    """
    if environ.get("LISTEN_PID", "").strip() != str(pid):
        return None
    count = environ.get("LISTEN_FDS", "").strip()
    return LISTEN_FDS_START if count.isascii() and count.isdigit() and int(count) >= 1 else None


def listening_socket(fd: int) -> socket.socket:
    """Return the listening TCP socket at descriptor `fd`; raise OSError if it is not one."""
    sock = socket.socket(fileno=fd)
    if sock.type != socket.SOCK_STREAM or not sock.getsockopt(
        socket.SOL_SOCKET, socket.SO_ACCEPTCONN
    ):
        sock.detach()
        raise OSError(f"descriptor {fd} is not a listening stream socket")
    return sock


def take_socket(environ: MutableMapping[str, str], pid: int) -> socket.socket | None:
    """Return the metrics socket systemd passed to process `pid`, or None; the variables
    go, so that nothing this process starts takes them for its own.

    Raises OSError if the descriptor passed is not a listening stream socket.
    """
    fd = inherited_listener(environ, pid)
    for key in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        environ.pop(key, None)
    return None if fd is None else listening_socket(fd)


def same_address(sock: socket.socket, listen: str) -> bool:
    """Return whether `sock` listens on `listen` (host:port, as UNSTOPPABLE_METRICS_LISTEN)."""
    host, _, port = listen.rpartition(":")
    bound_host, bound_port = sock.getsockname()[:2]
    try:
        wanted = ipaddress.ip_address(host.strip("[]") or "127.0.0.1")
        return (wanted, int(port)) == (ipaddress.ip_address(bound_host), int(bound_port))
    except ValueError:
        return False


def where(sock: socket.socket | None, listen: str) -> str:
    """Return the URL /metrics is served at, saying when systemd's socket overrides `listen`."""
    if sock is None:
        return f"http://{listen}/metrics"
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in str(host) else str(host)
    note = "" if f"{shown}:{port}" == listen else f", not UNSTOPPABLE_METRICS_LISTEN={listen}"
    return f"http://{shown}:{port}/metrics (the socket systemd holds{note})"


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True  # a hung scraper never holds the daemon's exit


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Log nothing per scrape."""


def serve_wsgi(sock: socket.socket, app: WSGIApplication) -> None:
    """Serve `app` on the listening socket `sock` from a thread of its own."""
    address = sock.getsockname()
    server = _Server(address[:2], _QuietHandler, bind_and_activate=False)
    server.socket.close()
    server.socket = sock
    server.server_name, server.server_port = str(address[0]), int(address[1])
    server.setup_environ()  # what binding would have done
    server.set_app(app)
    threading.Thread(target=server.serve_forever, daemon=True, name="metrics").start()
