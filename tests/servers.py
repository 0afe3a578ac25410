"""Real FTPS (vsftpd) and SFTP (OpenSSH) servers on loopback, for the remote-source tests."""

import random
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

USER = "unstoppable-test"
PASSWORD = "Remote-Secret-7f3a"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ensure_user() -> None:
    """Create the login the servers authenticate (idempotent) and set its password."""
    if subprocess.run(["id", USER], capture_output=True).returncode != 0:
        subprocess.run(["useradd", "--no-create-home", "--shell", "/bin/sh", USER], check=True)
    # vsftpd changes into the home directory at login and fails when it does not exist.
    subprocess.run(["usermod", "--home", "/", USER], check=True)
    subprocess.run(["chpasswd"], input=f"{USER}:{PASSWORD}\n", text=True, check=True)


def open_dir(prefix: str) -> Path:
    """Return a new directory the test user can read (pytest's tmp_path is root-only)."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/var/tmp"))
    path.chmod(0o755)
    return path


def wait_for_port(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    for _ in range(100):
        if process.poll() is not None:
            raise RuntimeError(f"server exited: {log.read_text()[-2000:]}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"server did not listen on {port}")


@dataclass
class Ftps:
    port: int
    ca: Path
    fingerprint: str
    xferlog: Path

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
def vsftpd() -> Iterator[Ftps]:
    """Run vsftpd with explicit TLS required and passive ports, all on 127.0.0.1."""
    ensure_user()
    work = open_dir("unstoppable-vsftpd-")
    ca, cert, key = make_ca(work)
    port = free_port()
    pasv = random.randrange(40000, 59000, 100)
    conf = work / "vsftpd.conf"
    conf.write_text(f"""listen=YES
listen_ipv6=NO
listen_address=127.0.0.1
listen_port={port}
background=NO
anonymous_enable=NO
local_enable=YES
write_enable=NO
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
xferlog_file={work / "xfer.log"}
seccomp_sandbox=NO
secure_chroot_dir=/var/run/vsftpd/empty
""")
    Path("/var/run/vsftpd/empty").mkdir(parents=True, exist_ok=True)
    out = subprocess.run(
        ["openssl", "x509", "-in", str(cert), "-noout", "-fingerprint", "-sha256"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    fingerprint = "sha256:" + out.strip().split("=", 1)[1]
    log = work / "vsftpd.out"
    with open(log, "wb") as handle:
        process = subprocess.Popen(["vsftpd", str(conf)], stdout=handle, stderr=handle)
    try:
        wait_for_port(port, process, log)
        yield Ftps(port, ca, fingerprint, work / "xfer.log")
    finally:
        process.terminate()
        process.wait(10)
        shutil.rmtree(work, ignore_errors=True)


@dataclass
class Sftp:
    port: int
    host_key: str  # "<type> <base64>"
    client_key: Path  # private key whose public half the server accepts


@contextmanager
def sshd() -> Iterator[Sftp]:
    """Run OpenSSH's sshd with SFTP only, password and key login, on 127.0.0.1."""
    ensure_user()
    work = open_dir("unstoppable-sshd-")
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(work / "host")], check=True
    )
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(work / "client")], check=True
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
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    log = work / "sshd.log"
    with open(log, "wb") as handle:
        process = subprocess.Popen(
            ["/usr/sbin/sshd", "-D", "-e", "-f", str(conf)], stdout=handle, stderr=handle
        )
    try:
        wait_for_port(port, process, log)
        key_type, key = (work / "host.pub").read_text().split()[:2]
        yield Sftp(port, f"{key_type} {key}", work / "client")
    finally:
        process.terminate()
        process.wait(10)
        shutil.rmtree(work, ignore_errors=True)
