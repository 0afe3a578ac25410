"""Certificate pinning for FTPS: fetch the server's certificate and match TLS_FINGERPRINT."""

import hashlib
import socket
import ssl
from typing import BinaryIO


def fingerprint(der: bytes) -> str:
    """Return the `sha256:AB:CD:…` fingerprint of a DER certificate."""
    digest = hashlib.sha256(der).hexdigest().upper()
    return "sha256:" + ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


def server_certificate(host: str, port: int, implicit: bool, timeout: float = 15) -> bytes:
    """Return the DER certificate an FTPS server presents (explicit: after AUTH TLS).

    Nothing is trusted here: the caller compares the fingerprint, then hands the certificate
    to rclone as its only root, so the data connection accepts this certificate alone.
    Raises OSError (and ssl.SSLError) when the server cannot be reached or refuses TLS.
    """
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # verified by fingerprint, by the caller
    with socket.create_connection((host, port), timeout=timeout) as raw:
        if not implicit:
            reader = raw.makefile("rb")
            _expect(reader, "220")
            raw.sendall(b"AUTH TLS\r\n")
            _expect(reader, "234")
        with context.wrap_socket(raw, server_hostname=host) as tls:
            der = tls.getpeercert(binary_form=True)
    if not der:
        raise ssl.SSLError("the server presented no certificate")
    return der


def _expect(reader: BinaryIO, code: str) -> None:
    while True:
        line = reader.readline(1024).decode("latin-1")
        if not line:
            raise ConnectionError("the FTP server closed the connection")
        if line[:3] != code:
            raise ConnectionError(f"unexpected FTP reply: {line.strip()[:100]}")
        if line[3:4] == " ":
            return
