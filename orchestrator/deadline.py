"""Overall deadlines for the network steps the daemon takes outside a worker.

A socket timeout bounds each read, not a conversation: a server that answers one byte a
second never trips it. `watchdog` shuts a socket down when its deadline passes, which wakes
any read, write or TLS handshake blocked on it; `call` bounds a step whose sockets a library
owns (the Infisical SDK, the S3 client) by running it in a thread it stops waiting for.
"""

import contextlib
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

T = TypeVar("T")


class DeadlineExceeded(TimeoutError):
    """A network step did not finish within its overall deadline."""


@contextmanager
def watchdog(sock: Callable[[], socket.socket | None], seconds: float) -> Iterator[threading.Event]:
    """Shut down the socket `sock()` returns once `seconds` have passed, unless done by then.

    `sock` is asked at the deadline, so a socket replaced meanwhile (wrapped in TLS) is
    the one shut down. Yields an event that is set if the deadline fired.
    """
    fired = threading.Event()

    def fire() -> None:
        fired.set()
        current = sock()
        if current is not None:
            with contextlib.suppress(OSError):  # already closed
                current.shutdown(socket.SHUT_RDWR)

    timer = threading.Timer(seconds, fire)
    timer.daemon = True
    timer.start()
    try:
        yield fired
    finally:
        timer.cancel()


def call(step: Callable[[], T], seconds: float, what: str) -> T:
    """Return `step()`, or raise DeadlineExceeded naming `what` after `seconds`.

    The step's thread is left to end by itself (its own per-read timeouts); nothing waits
    for it, so no run holds a slot past the deadline.
    """
    box: dict[str, T | BaseException] = {}

    def target() -> None:
        try:
            box["value"] = step()
        except BaseException as exc:  # handed to the caller below
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True, name=f"deadline: {what}")
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        raise DeadlineExceeded(f"{what}: no answer within {seconds:.0f} s")
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["value"]  # type: ignore[return-value]
