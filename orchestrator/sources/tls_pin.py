"""Certificate pinning for FTPS: fetch the server's certificate and match TLS_FINGERPRINT."""

import hashlib
import socket
import ssl
from typing import BinaryIO

from orchestrator.deadline import watchdog

# The whole fetch — connect, greeting, AUTH TLS, handshake — ends within this, however
# slowly the server drips its bytes.
DEADLINE_SECONDS = 20.0


def fingerprint(der: bytes) -> str:
    """Return the `sha256:AB:CD:…` fingerprint of a DER certificate."""
    digest = hashlib.sha256(der).hexdigest().upper()
    return "sha256:" + ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


def server_certificate(
    host: str, port: int, implicit: bool, deadline: float = DEADLINE_SECONDS
) -> bytes:
    """Return the DER certificate an FTPS server presents (explicit: after AUTH TLS).

    Nothing is trusted here: the caller compares the fingerprint, then hands the certificate
    to rclone as its only root, so the data connection accepts this certificate alone.
    Raises OSError (ssl.SSLError, TimeoutError) when the server cannot be reached, refuses
    TLS or does not finish within `deadline` seconds.
    """
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # verified by fingerprint, by the caller
    holder: list[socket.socket] = []
    with (
        watchdog(lambda: holder[0] if holder else None, deadline) as fired,
        socket.create_connection((host, port), timeout=deadline) as raw,
    ):
        holder.append(raw)
        try:
            if not implicit:
                reader = raw.makefile("rb")
                _expect(reader, "220")
                raw.sendall(b"AUTH TLS\r\n")
                _expect(reader, "234")
            with context.wrap_socket(raw, server_hostname=host) as tls:
                der = tls.getpeercert(binary_form=True)
        except (ConnectionError, ssl.SSLError, OSError) as exc:
            if fired.is_set():
                raise TimeoutError(f"no TLS certificate within {deadline:.0f} s") from None
            raise exc
    if not der:
        raise ssl.SSLError("the server presented no certificate")
    return der


def _expect(reader: BinaryIO, code: str) -> None:
    """Read one FTP reply and check its code; accept RFC 959 multi-line replies.

    A multi-line reply starts `NNN-` and ends at a line `NNN `; the lines between may
    carry any text, with or without a code.
    """
    first = _line(reader)
    if first[:3] != code or first[3:4] not in (" ", "-"):
        raise ConnectionError(f"unexpected FTP reply: {first.strip()[:100]}")
    if first[3:4] == " ":
        return
    for _ in range(1000):
        if _line(reader).startswith(code + " "):
            return
    raise ConnectionError("an FTP reply of more than 1000 lines")


def _line(reader: BinaryIO) -> str:
    line = reader.readline(1024).decode("latin-1")
    if not line:
        raise ConnectionError("the FTP server closed the connection")
    return line
