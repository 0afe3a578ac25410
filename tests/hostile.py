"""A customers directory full of broken files, beside good ones: no test lives here."""

import os
import socket
import threading
import time
from pathlib import Path

# A well-formed ed25519 public key (of no server): 32 bytes 00..1f.
HOST_KEY = "AAAAC3NzaC1lZDI1NTE5AAAAIAABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhscHR4f"

VALID = 'SCHEDULE="{schedule}"\nREPO_PASSWORD=pw-{name}\nRESOURCES={resource}\n{key}_TYPE=local\n{key}_PATH={source}\n'


def valid_text(name: str, resource: str, source: Path, schedule: str) -> str:
    key = resource.upper().replace("-", "_")
    return VALID.format(schedule=schedule, name=name, resource=resource, key=key, source=source)


def write_broken(directory: Path, source: Path, suffix: str) -> dict[str, str]:
    """Write one broken customer file of each kind; return {file name: expected message}.

    Each message is the part of the problem line after `path: `, so a test can check that
    `validate` names the file and says what to fix. `suffix` keeps names unique per test.
    """
    good = valid_text("x", "files", source, "0 * * * *")
    expected: dict[str, str] = {}

    def write(stem: str, text: str | bytes, message: str) -> Path:
        name = f"{stem}-{suffix}.env"
        path = directory / name
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
        expected[name] = message
        return path

    write("superscript", good + "KEEP_LAST=²\n", "KEEP_LAST: must be a whole number")
    write("huge-keep", good + "KEEP_DAILY=99999999999\n", "KEEP_DAILY: must be a whole number")
    write(
        "arabic-port",
        good.replace("RESOURCES=files", "RESOURCES=files,site")
        + "SITE_TYPE=ftps\nSITE_HOST=127.0.0.1\nSITE_PORT=٢١\nSITE_USER=u\n"
        "SITE_PASSWORD=p\nSITE_PATH=/\n",
        "SITE_PORT: must be a TCP port number",
    )
    write("fullwidth", good + "FILES_SCHEDULE=0 * * * *\nKEEP_LAST=１\n", "KEEP_LAST: must be")
    write(
        "never-fires",
        good.replace('SCHEDULE="0 * * * *"', 'SCHEDULE="0 0 30 2 *"'),
        "SCHEDULE: never fires within the next 5 years",
    )
    write(
        "bad-zone",
        good + "TIMEZONE=../../../etc/passwd\n",
        "TIMEZONE: not an IANA time zone",
    )
    write("not-utf8", good.encode() + b"# caf\xe9\n", "line 6: not UTF-8 text")
    write("nul-byte", good + "KEEP_LAST=1\x00\n", "KEEP_LAST: contains a control character")
    write("huge-file", good + "#" * (1024 * 1024 + 10) + "\n", "larger than 1024 KiB")
    write(
        "system-path",
        good.replace(f"FILES_PATH={source}", "FILES_PATH=/etc"),
        "FILES_PATH: must not be or lie inside /etc",
    )
    # Reaching beyond its own confinement (issue 21), whatever the installation allows.
    write(
        "other-secret",
        good.replace(
            "REPO_PASSWORD=pw-x", "REPO_PASSWORD=infisical:/customers/other/REPO_PASSWORD"
        ),
        "REPO_PASSWORD: an infisical reference must lie in this customer's folder /customers/",
    )
    sftp = good.replace("RESOURCES=files", "RESOURCES=files,mail") + (
        f"MAIL_TYPE=sftp\nMAIL_HOST=sftp.example.com\nMAIL_USER=u\nMAIL_PATH=/\n"
        f'MAIL_HOST_KEY="ssh-ed25519 {HOST_KEY}"\n'
    )
    write(
        "host-ssh-key",
        sftp + "MAIL_KEY_FILE=/etc/ssh/ssh_host_ed25519_key\n",
        "MAIL_KEY_FILE: must lie in this customer's key directory",
    )
    write(
        "metadata-host",
        sftp.replace("sftp.example.com", "169.254.169.254") + "MAIL_PASSWORD=p\n",
        "MAIL_HOST: is a loopback, private, link-local, multicast or reserved address",
    )
    write(
        "octal-host",
        sftp.replace("sftp.example.com", "0177.0.0.1") + "MAIL_PASSWORD=p\n",
        "MAIL_HOST: an IPv4 address must be written as four decimal numbers",
    )
    write(
        "ca-host-key",
        sftp.replace('MAIL_HOST_KEY="', 'MAIL_HOST_KEY="@cert-authority *.example.com ')
        + "MAIL_PASSWORD=p\n",
        "MAIL_HOST_KEY: a @cert-authority line pins no host key",
    )
    link = directory.parent / f"to-proc-{suffix}"
    link.symlink_to("/proc/self")
    write(
        "symlinked-path",
        good.replace(f"FILES_PATH={source}", f"FILES_PATH={link}"),
        "FILES_PATH: resolves to /proc/",
    )
    # Not files at all, or not reachable ones.
    dangling = directory / f"dangling-{suffix}.env"
    dangling.symlink_to(directory / "no-such-target")
    expected[dangling.name] = "a symlink to nothing (dangling)"
    loop = directory / f"loop-{suffix}.env"
    loop.symlink_to(loop)
    expected[loop.name] = "cannot read: Too many levels of symbolic links"
    fifo = directory / f"fifo-{suffix}.env"
    os.mkfifo(fifo)
    expected[fifo.name] = "a FIFO, not a regular file"
    sock_path = directory / f"sock-{suffix}.env"
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(sock_path))
    sock.close()
    expected[sock_path.name] = "a socket, not a regular file"
    (directory / f"folder-{suffix}.env").mkdir()
    expected[f"folder-{suffix}.env"] = "a directory, not a regular file"
    bad_name = os.fsencode(directory) + b"/bad\xff" + suffix.encode() + b".env"
    with open(bad_name, "wb") as handle:
        handle.write(good.encode())
    expected[f"bad\\xff{suffix}.env"] = "file name: the customer name"
    return expected


class DripServer:
    """A TCP server on loopback that sends `payload` one byte a second, forever."""

    def __init__(self, payload: bytes) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.port = self.sock.getsockname()[1]
        self.payload = payload
        self.stop = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._drip, args=(conn,), daemon=True).start()

    def _drip(self, conn: socket.socket) -> None:
        with conn:
            for i in range(10_000):
                if self.stop.is_set():
                    return
                try:
                    conn.sendall(self.payload[i % len(self.payload) : i % len(self.payload) + 1])
                except OSError:
                    return
                time.sleep(1)

    def close(self) -> None:
        self.stop.set()
        self.sock.close()
