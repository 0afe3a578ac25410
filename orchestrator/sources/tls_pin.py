"""Certificate pinning for FTPS: fetch the server's certificate and match TLS_FINGERPRINT.

The FTP conversation (greeting, `AUTH TLS`, RFC 959 multi-line replies) is ftplib's; what is
ours is the overall deadline and that nothing is trusted here.
"""

import ftplib
import hashlib
import socket
import ssl

from orchestrator.deadline import watchdog

# The whole fetch — connect, greeting, AUTH TLS, handshake — ends within this, however
# slowly the server drips its bytes.
DEADLINE_SECONDS = 20.0


def fingerprint(der: bytes) -> str:
    """Return the `sha256:AB:CD:…` fingerprint of a DER certificate."""
    digest = hashlib.sha256(der).hexdigest().upper()
    return "sha256:" + ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


def server_certificate(
    host: str,
    port: int,
    implicit: bool,
    deadline: float = DEADLINE_SECONDS,
    address: str | None = None,
) -> bytes:
    """Return the DER certificate an FTPS server presents (explicit: after AUTH TLS).

    With `address`, that is what is connected to (the address judged a moment ago, not a
    second DNS answer); `host` is still the name the TLS handshake asks for (SNI).

    Nothing is trusted here: the caller compares the fingerprint, then hands the certificate
    to rclone as its only root, so the data connection accepts this certificate alone.
    Raises OSError (ssl.SSLError, TimeoutError, ConnectionError) when the server cannot be
    reached, refuses TLS, answers out of protocol or does not finish within `deadline`.
    """
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # verified by fingerprint, by the caller
    # latin-1: any byte a banner holds decodes; ftplib's default UTF-8 raises on some.
    ftp = ftplib.FTP_TLS(context=context, timeout=deadline, encoding="latin-1")
    with watchdog(lambda: ftp.sock, deadline) as fired:
        try:
            if implicit:
                # ftplib speaks explicit TLS only; implicit FTPS is TLS from the first byte.
                ftp.sock = socket.create_connection((address or host, port), timeout=deadline)
                ftp.sock = context.wrap_socket(ftp.sock, server_hostname=host)
            else:
                ftp.connect(address or host, port, timeout=deadline)
                ftp.host = host  # AUTH TLS names the server it means, as rclone will
                ftp.auth()
            assert isinstance(ftp.sock, ssl.SSLSocket)
            der = ftp.sock.getpeercert(binary_form=True)
        except (OSError, EOFError, UnicodeError, ftplib.Error) as exc:
            if fired.is_set():
                raise TimeoutError(f"no TLS certificate within {deadline:.0f} s") from None
            if isinstance(exc, OSError):
                raise
            if isinstance(exc, EOFError):
                raise ConnectionError("the FTP server closed the connection") from None
            raise ConnectionError(_refusal(exc)) from None
        finally:
            ftp.close()
    if not der:
        raise ssl.SSLError("the server presented no certificate")
    return der


def _refusal(exc: Exception) -> str:
    """Return what an FTP reply meant, in our words: its text is the server's to choose."""
    code = str(exc).strip()[:3]
    shown = f" (reply {code})" if code.isascii() and code.isdigit() else ""
    if isinstance(exc, ftplib.error_perm):
        return f"the FTP server refused AUTH TLS{shown}"
    return f"the FTP server answered out of protocol{shown}"
