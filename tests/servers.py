"""Real FTPS (vsftpd) and SFTP (OpenSSH) servers in containers on loopback, for remote sources.

The servers see the host's files at the same paths: every directory `open_dir` makes lies
in one served root that each server container mounts read-only. Nothing on the host changes:
the login exists only in the server images (tests/images/).
"""

import atexit
import functools
import random
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.containers import free_port, image, on_host_network, wait_for_port

__all__ = [
    "PASSWORD",
    "UID",
    "USER",
    "Ftps",
    "Sftp",
    "free_port",
    "make_ca",
    "open_dir",
    "sshd",
    "vsftpd",
]

USER = "unstoppable-test"
PASSWORD = "Remote-Secret-7f3a"
UID = 4711  # the login's user id in both server images: a writable server's files are its


@functools.cache
@functools.cache
def served_root() -> Path:
    """Return the directory, removed at exit, that holds every `open_dir` of this process."""
    root = Path(tempfile.mkdtemp(prefix="unstoppable-served-", dir="/var/tmp"))
    root.chmod(0o755)
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    return root


def open_dir(prefix: str) -> Path:
    """Return a new directory the servers' login can read (pytest's tmp_path is root-only)."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=served_root()))
    path.chmod(0o755)
    return path


def work_dir(prefix: str) -> Path:
    """Return a new directory for one server's configuration, keys and logs."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/var/tmp"))
    path.chmod(0o755)
    return path


def server_image(kind: str) -> str:
    return image(kind, LOGIN_USER=USER, LOGIN_PASSWORD=PASSWORD, LOGIN_UID=str(UID))


@dataclass
class Ftps:
    port: int
    ca: Path
    fingerprint: str
    xferlog: Path
    passive: range = range(0)
    netns: str | None = None  # the server's own network namespace, when isolated
    container: str = ""  # its Docker name: bench/soak.py stops and pauses it

    def downloads(self) -> list[str]:
        """Return the paths vsftpd's transfer log records as sent to the client."""
        if not self.xferlog.exists():
            return []
        out = []
        for line in self.xferlog.read_text().splitlines():
            fields = line.split()
            # xferlog: ... filename transfer-type action direction(o=outgoing) ...
            if len(fields) > 12 and fields[-7] == "o":
                out.append(fields[8])
        return out


def all_free(first: int, count: int = 100) -> bool:
    """Return whether ports first..first+count-1 of 127.0.0.1 can all be bound now."""
    for port in range(first, first + count):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


def make_ca(work: Path) -> tuple[Path, Path, Path]:
    """Return (ca.pem, server.pem, server.key) for 127.0.0.1, made with openssl."""

    def ssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=work, check=True, capture_output=True)

    ssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=unstoppable test CA",
    )
    ssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    )
    (work / "san.cnf").write_text("subjectAltName=IP:127.0.0.1\n")
    ssl(
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "san.cnf",
    )
    return work / "ca.pem", work / "server.pem", work / "server.key"


@contextmanager
def vsftpd(isolated: bool = False, max_per_ip: int = 0, writable: bool = False) -> Iterator[Ftps]:
    """Run vsftpd with explicit TLS required and passive ports, all on 127.0.0.1.

    `isolated`: in a network namespace of its own, reached only through its `netns` (the
    caller waits for the port); bench/ puts a slow link in front of every port it uses.
    `max_per_ip`: the most logins at once from one address, as shared hosts limit them
    (0: no limit); one more is refused with 421.
    `writable`: the login may write where its user (UID) may, as a restore to the source needs.
    """
    work = work_dir("unstoppable-vsftpd-")
    logs = work / "log"
    logs.mkdir()
    ca, cert, key = make_ca(work)
    port = free_port()
    pasv = random.randrange(40000, 59000, 100)
    if isolated:  # the proxy in front binds these on the host: below the ephemeral range
        pasv = next(p for p in iter(lambda: random.randrange(20000, 32000, 100), 0) if all_free(p))
    conf = work / "vsftpd.conf"
    conf.write_text(f"""listen=YES
listen_ipv6=NO
listen_address=127.0.0.1
listen_port={port}
background=NO
anonymous_enable=NO
local_enable=YES
write_enable={"YES" if writable else "NO"}
local_umask=022
pam_service_name=vsftpd
ssl_enable=YES
rsa_cert_file={cert}
rsa_private_key_file={key}
force_local_logins_ssl=YES
force_local_data_ssl=YES
require_ssl_reuse=NO
ssl_ciphers=HIGH
pasv_enable=YES
pasv_address=127.0.0.1
pasv_min_port={pasv}
pasv_max_port={pasv + 99}
xferlog_enable=YES
xferlog_std_format=YES
xferlog_file={logs / "xfer.log"}
seccomp_sandbox=NO
secure_chroot_dir=/var/run/vsftpd/empty
max_per_ip={max_per_ip}
""")
    out = subprocess.run(
        ["openssl", "x509", "-in", str(cert), "-noout", "-fingerprint", "-sha256"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    fingerprint = "sha256:" + out.strip().split("=", 1)[1]
    mounts = [(served_root(), "rw" if writable else "ro"), (work, "ro"), (logs, "rw")]
    network = "none" if isolated else "host"
    try:
        with on_host_network(server_image("ftps"), [str(conf)], mounts, network=network) as c:
            passive = range(pasv, pasv + 100)
            if isolated:
                wrapped = c.get_wrapped_container()
                wrapped.reload()
                pid = wrapped.attrs["State"]["Pid"]
                yield Ftps(port, ca, fingerprint, logs / "xfer.log", passive, f"/proc/{pid}/ns/net")
                return
            wait_for_port(port, c)
            name = c.get_wrapped_container().name
            yield Ftps(port, ca, fingerprint, logs / "xfer.log", passive, container=name)
    finally:
        shutil.rmtree(work, ignore_errors=True)


@dataclass
class Sftp:
    port: int
    host_key: str  # "<type> <base64>"
    client_key: Path  # private key whose public half the server accepts
    container: str = ""  # its Docker name: bench/soak.py stops and pauses it


@contextmanager
def sshd(writable: bool = False) -> Iterator[Sftp]:
    """Run OpenSSH's sshd with SFTP only, password and key login, on 127.0.0.1; `writable`:
    its login may write where its user (UID) may."""
    work = work_dir("unstoppable-sshd-")
    for name in ("host", "client"):
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(work / name)], check=True
        )
    (work / "authorized_keys").write_text((work / "client.pub").read_text())
    (work / "authorized_keys").chmod(0o644)
    port = free_port()
    conf = work / "sshd_config"
    conf.write_text(f"""Port {port}
ListenAddress 127.0.0.1
HostKey {work / "host"}
PidFile none
UsePAM no
PasswordAuthentication yes
KbdInteractiveAuthentication no
PubkeyAuthentication yes
AuthorizedKeysFile {work / "authorized_keys"}
StrictModes no
AllowUsers {USER}
Subsystem sftp internal-sftp
ForceCommand internal-sftp
""")
    mounts = [(served_root(), "rw" if writable else "ro"), (work, "ro")]
    try:
        with on_host_network(server_image("sftp"), ["-f", str(conf)], mounts) as container:
            wait_for_port(port, container)
            key_type, key = (work / "host.pub").read_text().split()[:2]
            name = container.get_wrapped_container().name
            yield Sftp(port, f"{key_type} {key}", work / "client", name)
    finally:
        shutil.rmtree(work, ignore_errors=True)
