"""At run time: a name is resolved and judged before anything connects, key files re-read.

Everything here stays on loopback: `localhost` resolves from /etc/hosts, and the servers
that prove nothing was sent listen on 127.0.0.1.
"""

import ipaddress
import os
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest
from pydantic import SecretStr

from orchestrator.config.confinement import Confinement
from orchestrator.config.customer_file import load_customer
from orchestrator.config.settings import Settings
from orchestrator.errors import RunStopped
from orchestrator.model import Outcome, Reason, Result
from orchestrator.reporting import pings
from orchestrator.runs import Jobs
from orchestrator.sources.setup import remote_launch
from orchestrator.sources.targets import reach_problem
from tests.fake_runtime import FakeRuntime
from tests.hostile import HOST_KEY

LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))
IMAGE = "unstoppable-worker:fake"


def test_a_name_resolving_to_loopback_is_refused_unless_every_address_is_allowed() -> None:
    refused = reach_problem("localhost", 22, ())
    assert refused is not None and refused[0] is Reason.SOURCE_REFUSED
    assert refused[1].startswith("resolves to an address that is a loopback")
    assert "127.0.0.1" not in refused[1]  # never which address: that maps our network
    assert reach_problem("localhost", 22, LOOPBACK) is None


@pytest.mark.parametrize("host", ["2130706433", "0x7f.1", "0177.0.0.1", "::ffff:127.0.0.1"])
def test_other_spellings_of_loopback_are_refused_at_run_time_too(host: str) -> None:
    refused = reach_problem(host, 21, ())
    assert refused is not None and refused[0] is Reason.SOURCE_REFUSED


class Listener:
    """A TCP port on 127.0.0.1 that counts who connects."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.sock.settimeout(0.3)
        self.port = self.sock.getsockname()[1]

    def connected(self) -> bool:
        try:
            conn, _ = self.sock.accept()
        except TimeoutError:
            return False
        conn.close()
        return True


def customer(tmp_path: Path, text: str, confinement: Confinement) -> tuple[object, object]:
    path = tmp_path / "acme.env"
    path.write_text('SCHEDULE="0 * * * *"\nREPO_PASSWORD=pw\n' + text)
    loaded = load_customer(path, confinement)
    return loaded, loaded.resources[0]


def test_a_host_name_pointing_at_loopback_fails_the_run_before_anything_connects(
    tmp_path: Path,
) -> None:
    """The FTPS pin would connect first of all; a refused HOST stops even that."""
    listener = Listener()
    text = (
        f"RESOURCES=web\nWEB_TYPE=ftps\nWEB_HOST=localhost\nWEB_PORT={listener.port}\n"
        f"WEB_USER=u\nWEB_PASSWORD=p\nWEB_PATH=/\nWEB_TLS_FINGERPRINT=sha256:{':'.join(['AB'] * 32)}\n"
    )
    cust, res = customer(tmp_path, text, Confinement())
    with pytest.raises(RunStopped) as stop:
        remote_launch([], cust, res, SecretStr("p"), None, Confinement())  # type: ignore[arg-type]
    assert stop.value.outcome == Outcome(
        Result.FAILURE,
        Reason.SOURCE_REFUSED,
        "WEB_HOST: resolves to an address that is a loopback, private, link-local, multicast or"
        " reserved address, outside UNSTOPPABLE_ALLOW_PRIVATE_TARGETS",
    )
    assert not listener.connected()
    socket.create_connection(("127.0.0.1", listener.port)).close()
    assert listener.connected()  # the listener does notice a connection
    listener.sock.close()


@pytest.mark.parametrize("swap", ["fifo", "dev-zero", "big"])
def test_a_key_file_swapped_after_validate_is_refused_at_run_setup_within_a_second(
    tmp_path: Path, swap: str
) -> None:
    keys = tmp_path / "keys"
    (keys / "acme").mkdir(parents=True)
    key = keys / "acme" / "id"
    key.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\n")
    confinement = Confinement(keys_dir=keys, private_targets=LOOPBACK)
    text = (
        "RESOURCES=mail\nMAIL_TYPE=sftp\nMAIL_HOST=127.0.0.1\nMAIL_USER=u\nMAIL_PATH=/\n"
        f'MAIL_HOST_KEY="ssh-ed25519 {HOST_KEY}"\nMAIL_KEY_FILE={key}\n'
    )
    cust, res = customer(tmp_path, text, confinement)
    key.unlink()
    if swap == "fifo":
        os.mkfifo(key)  # a writer that never comes: a blocking open would wait forever
    elif swap == "dev-zero":
        key.symlink_to("/dev/zero")  # a read that never ends
    else:
        key.write_bytes(b"A" * (10 * 1024 * 1024))
    started = time.monotonic()
    with pytest.raises(RunStopped) as stop:
        remote_launch([], cust, res, None, None, confinement)  # type: ignore[arg-type]
    assert time.monotonic() - started < 1
    launch = stop.value.outcome
    assert (launch.result, launch.reason) == (Result.FAILURE, Reason.SECRETS)
    assert launch.message.startswith("MAIL_KEY_FILE: ")
    assert {"fifo": "a FIFO", "dev-zero": "symbolic link", "big": "larger than 64 KiB"}[
        swap
    ] in launch.message


class Recorder(BaseHTTPRequestHandler):
    bodies: ClassVar[list[bytes]] = []

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        type(self).bodies.append(self.rfile.read(length))
        self.send_response(200)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def hc() -> Iterator[tuple[int, list[bytes]]]:
    Recorder.bodies = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1], Recorder.bodies
    server.shutdown()
    server.server_close()


def test_a_customer_ping_to_a_private_host_is_not_sent(hc: tuple[int, list[bytes]]) -> None:
    port, bodies = hc
    url = f"http://localhost:{port}/check"
    assert pings.send(url, "success", "ok", "acme/web", judged=()) is False
    assert bodies == []
    assert pings.send(url, "success", "ok", "acme/web", judged=LOOPBACK) is True
    # The operator's own UNSTOPPABLE_PING_URL is not judged (judged=None).
    assert pings.send(url, "fail", "a\x1b]0;x\x07b\x9b2Jc\n", "acme/web") is True
    assert bodies == [b"ok", b"abc "]


def test_a_refused_ping_url_fails_the_run_and_nothing_starts(
    tmp_path: Path, hc: tuple[int, list[bytes]]
) -> None:
    port, bodies = hc
    (tmp_path / "srv").mkdir()
    settings = Settings(
        CUSTOMERS_DIR=tmp_path / "customers.d",
        DATA_DIR=tmp_path / "data",
        WORKER_IMAGE=IMAGE,
        SOURCE_ROOTS=str(tmp_path),
        MIN_INTERVAL="0",
    )
    fake = FakeRuntime({IMAGE: {}})
    jobs = Jobs(settings, fake)
    cust, res = customer(
        tmp_path,
        f"PING_URL=http://localhost:{port}/hc\nRESOURCES=files\nFILES_TYPE=local\n"
        f"FILES_PATH={tmp_path}/srv\n",
        settings.confinement,
    )
    record = jobs.backup(cust, res, datetime.now(UTC))  # type: ignore[arg-type]
    assert (record.outcome.result, record.outcome.reason) == (Result.FAILURE, Reason.SOURCE_REFUSED)
    assert record.outcome.message.startswith("PING_URL: its host resolves to an address that is")
    assert fake.started == []
    jobs.pinger.drain(5)
    assert bodies == []


def test_a_ping_goes_to_the_address_judged_not_to_a_second_dns_answer(
    hc: tuple[int, list[bytes]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """DNS rebinding: the customer's name answers 127.0.0.1 (allowed), then 127.0.0.2."""
    port, bodies = hc
    real = socket.getaddrinfo
    answers = iter(["127.0.0.1"] + ["127.0.0.2"] * 10)

    def rebinding(host: str, *args: object, **kwargs: object) -> list[object]:
        if host == "hc.customer.test":
            return real(next(answers), *args, **kwargs)  # type: ignore[arg-type]
        return real(host, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    only_one = (ipaddress.ip_network("127.0.0.1/32"),)
    url = f"http://hc.customer.test:{port}/check"
    assert pings.send(url, "success", "ok", "acme/web", judged=only_one) is True
    assert bodies == [b"ok"]  # at 127.0.0.1: nothing listens on 127.0.0.2
    assert next(answers) == "127.0.0.2", "the name was resolved once, for the judgement"


def test_sftp_dials_the_judged_address_and_ftps_keeps_the_name() -> None:
    from orchestrator.config.source import parse_source
    from orchestrator.sources.remote import remote_plan

    sftp, _ = parse_source(
        {"TYPE": "sftp", "HOST": "files.example.com", "PORT": "2222", "USER": "u",
         "PASSWORD": "p", "PATH": "/", "HOST_KEY": f"ssh-ed25519 {HOST_KEY}"},
        "UTC",
    )  # fmt: skip
    ftps, _ = parse_source(
        {"TYPE": "ftps", "HOST": "ftp.example.com", "USER": "u", "PASSWORD": "p", "PATH": "/"},
        "UTC",
    )
    assert sftp is not None and ftps is not None
    plan = remote_plan(sftp, SecretStr("p"), None, {}, "203.0.113.7")  # type: ignore[arg-type]
    conf = plan.files["rclone.conf"].get_secret_value()
    assert "host = 203.0.113.7\n" in conf
    known = plan.files["known_hosts"].get_secret_value()
    assert known.startswith("[203.0.113.7]:2222 ssh-ed25519 ")
    plan = remote_plan(ftps, SecretStr("p"), None, {}, "203.0.113.8")  # type: ignore[arg-type]
    assert "host = ftp.example.com\n" in plan.files["rclone.conf"].get_secret_value()


@pytest.mark.parametrize(("line", "sent"), [("", "8"), ("MAIL_CONNECTIONS=3\n", "3")])
def test_connections_reach_the_worker_as_a_file_not_an_argument(
    tmp_path: Path, line: str, sent: str
) -> None:
    """An older worker image ignores a file it does not know; an argument it would run."""
    text = (
        "RESOURCES=mail\nMAIL_TYPE=sftp\nMAIL_HOST=127.0.0.1\nMAIL_USER=u\nMAIL_PATH=/srv\n"
        f'MAIL_HOST_KEY="ssh-ed25519 {HOST_KEY}"\nMAIL_PASSWORD=p\n{line}'
    )
    confinement = Confinement(private_targets=LOOPBACK)
    cust, res = customer(tmp_path, text, confinement)
    launch = remote_launch([], cust, res, SecretStr("p"), None, confinement)  # type: ignore[arg-type]
    assert launch.files["connections"].get_secret_value() == sent
    assert launch.argv[:6] == ["/srv", "/remote/mail", "-", "0", "1", "--"]
