"""Remote sources (FTPS, SFTP): the rclone configuration and secret files a worker mounts.

Credentials reach rclone as files in the run's secret directory — an rclone.conf with the
password obscured the way rclone expects, a CA or pinned certificate, a known_hosts line, an
SSH key — never as arguments or environment. The only module that imports `cryptography`.
"""

import base64
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from pydantic import SecretStr

from orchestrator.config.host_key import parse_host_key
from orchestrator.config.source import FtpsSource, SftpSource
from orchestrator.model import Reason
from orchestrator.runtime.paths import SECRETS

# rclone's fixed key for "obscured" config values: obscuring is not encryption, which is why
# the file is mode 0600 and lives only for the run (rclone fs/config/obscure/obscure.go).
_RCLONE_KEY = bytes.fromhex("9c935b48730a554d6bfd7c63c886a92bd390198eb8128afbf4de162b8b95f638")

RCLONE_CONF = "rclone.conf"

CA_FILE = "ca.pem"

KNOWN_HOSTS = "known_hosts"

SSH_KEY = "ssh-key"

CONNECTIONS_FILE = "connections"  # <R>_CONNECTIONS, read by unstoppable-remote


def obscure(secret: str) -> str:
    """Return `secret` obscured for rclone.conf (AES-CTR, random IV, base64url)."""
    iv = os.urandom(16)
    encryptor = Cipher(algorithms.AES(_RCLONE_KEY), modes.CTR(iv)).encryptor()
    data = iv + encryptor.update(secret.encode()) + encryptor.finalize()
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


@dataclass(frozen=True)
class RemotePlan:
    """What a worker needs to mount one remote source; `files` are all secret."""

    files: dict[str, SecretStr]
    insecure: bool  # certificate verification explicitly switched off


def remote_plan(
    source: FtpsSource | SftpSource,
    password: SecretStr | None,
    pinned_pem: str | None,
    key_files: Mapping[str, str] | None = None,
    address: str | None = None,
) -> RemotePlan:
    """Return the rclone.conf and companion files for `source`.

    `address` is HOST as judged just before the run: SFTP dials it (its identity is the
    pinned host key, so no second DNS answer is asked for); FTPS keeps the name, which its
    certificate is checked against.

    `pinned_pem` is the server certificate already matched against TLS_FINGERPRINT; it
    becomes the only trusted root, so rclone accepts that certificate and no other.
    `key_files` holds the text of each key file the source names, by key (TLS_CA_FILE,
    KEY_FILE), read by `config.key_files.read_key_file`.
    """
    key_files = key_files or {}
    dial = address if isinstance(source, SftpSource) and address and ":" not in address else None
    host = dial or source.HOST
    lines = ["[source]", f"host = {host}", f"port = {source.PORT}", f"user = {source.USER}"]
    files: dict[str, SecretStr] = {}
    insecure = False
    if password is not None:
        lines.append(f"pass = {obscure(password.get_secret_value())}")
    if isinstance(source, FtpsSource):
        lines.insert(1, "type = ftp")
        lines.append("tls = true" if source.TLS == "implicit" else "explicit_tls = true")
        # rclone 1.60's Go TLS 1.3 and vsftpd 3.0.3 fail the handshake with "tls: illegal
        # parameter" (seen here with both); TLS 1.2, verified, is used instead.
        lines.append("disable_tls13 = true")
        if not source.TLS_VERIFY:
            lines.append("no_check_certificate = true")
            insecure = True
        elif pinned_pem is not None:
            files[CA_FILE] = SecretStr(pinned_pem)
        elif source.TLS_CA_FILE:
            files[CA_FILE] = SecretStr(key_files["TLS_CA_FILE"])
    else:
        lines.insert(1, "type = sftp")
        lines += [
            "shell_type = none",
            "disable_hashcheck = true",
            f"known_hosts_file = {SECRETS}/{KNOWN_HOSTS}",
        ]
        files[KNOWN_HOSTS] = SecretStr(known_hosts_line(source, host) + "\n")
        if source.KEY_FILE:
            files[SSH_KEY] = SecretStr(key_files["KEY_FILE"])
            lines.append(f"key_file = {SECRETS}/{SSH_KEY}")
    files[RCLONE_CONF] = SecretStr("\n".join(lines) + "\n")
    return RemotePlan(files, insecure)


def known_hosts_line(source: SftpSource, host: str | None = None) -> str:
    """Return HOST_KEY as a known_hosts line for exactly this host (or the IPv4 address
    dialed instead) and port.

    HOST_KEY may be a whole known_hosts line or just `<type> <base64>`; the host part is
    rewritten so a non-standard port matches (`[host]:port`), the comment left out.
    """
    pinned = parse_host_key(source.HOST_KEY)
    host = host or source.HOST
    name = host if source.PORT == 22 else f"[{host}]:{source.PORT}"
    return f"{name} {pinned.type} {pinned.key}"


# What rclone prints when it cannot reach the source, ordered: first match wins.
_REASONS: tuple[tuple[Reason, re.Pattern[str]], ...] = (
    (Reason.HOST_KEY, re.compile(r"knownhosts|host key|key mismatch", re.I)),
    (Reason.TLS, re.compile(r"x509:|tls:|certificate|handshake failure", re.I)),
    (
        Reason.AUTH,
        re.compile(
            r"\b530\b|login incorrect|unable to authenticate|"
            r"authentication failed|permission denied \(",
            re.I,
        ),
    ),
    (
        Reason.CONNECT,
        re.compile(
            r"connection refused|no route to host|i/o timeout|"
            r"dial tcp|connection reset|network is unreachable|"
            r"no such host|EOF",
            re.I,
        ),
    ),
    (
        Reason.PATH_NOT_FOUND,
        re.compile(
            r"not found|no such file|doesn't exist|"
            r"\b550\b",
            re.I,
        ),
    ),
)


# What each of those means, in our words: rclone's lines quote the server (its banner, its
# replies), text the customer's server chose, which must not reach a message or a ping.
_SAID = {
    Reason.HOST_KEY: "the server's host key does not match HOST_KEY",
    Reason.TLS: "the TLS handshake with the server failed or its certificate is not trusted",
    Reason.AUTH: "the server refused the login (USER, PASSWORD or KEY_FILE)",
    Reason.CONNECT: "the server could not be reached or closed the connection (HOST, PORT)",
    Reason.PATH_NOT_FOUND: "PATH does not exist on the server",
}


def classify(stderr: str) -> Reason:
    """Return why a worker could not reach its remote source, from rclone's messages."""
    for reason, pattern in _REASONS:
        if pattern.search(stderr):
            return reason
    return Reason.CONNECT


def says_why(stderr: str) -> bool:
    """Return whether rclone's messages name a reason the server gave (not the default)."""
    return any(pattern.search(stderr) for _, pattern in _REASONS)


def unreachable(stderr: str) -> tuple[Reason, str]:
    """Return why a worker could not reach its remote source, and that in our own words."""
    reason = classify(stderr)
    return reason, _SAID[reason]
