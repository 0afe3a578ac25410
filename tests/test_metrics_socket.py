"""Where /metrics listens: the socket systemd passes, else UNSTOPPABLE_METRICS_LISTEN, else
nowhere and the daemon does not start.

The same, with `unstoppable run` as a real process, is in tests/test_daemon.py.
"""

import socket
import urllib.request
from pathlib import Path

import pytest

from orchestrator.config.settings import Settings
from orchestrator.daemon import Daemon
from orchestrator.errors import ServeFailed
from orchestrator.reporting.activation import (
    LISTEN_FDS_START,
    inherited_listener,
    listening_socket,
    take_socket,
    where,
)
from orchestrator.reporting.ledger import Ledger
from tests.fake_runtime import FakeRuntime

PID = 4242


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"LISTEN_PID": "4242", "LISTEN_FDS": "1"}, LISTEN_FDS_START),
        ({"LISTEN_PID": "4242", "LISTEN_FDS": "2"}, LISTEN_FDS_START),
        ({"LISTEN_PID": "4243", "LISTEN_FDS": "1"}, None),  # meant for our parent
        ({"LISTEN_FDS": "1"}, None),
        ({"LISTEN_PID": "4242"}, None),
        ({"LISTEN_PID": "4242", "LISTEN_FDS": "0"}, None),
        ({"LISTEN_PID": "4242", "LISTEN_FDS": "-1"}, None),
        ({"LISTEN_PID": "4242", "LISTEN_FDS": "١"}, None),  # an Arabic-Indic one
        ({"LISTEN_PID": "4242", "LISTEN_FDS": "one"}, None),
        ({}, None),
    ],
)
def test_only_a_socket_passed_to_this_very_process_is_taken(
    environ: dict[str, str], expected: int | None
) -> None:
    assert inherited_listener(environ, PID) == expected


def test_the_activation_variables_are_dropped_once_read() -> None:
    environ = {"LISTEN_PID": "1", "LISTEN_FDS": "1", "LISTEN_FDNAMES": "metrics", "PATH": "/b"}
    assert take_socket(environ, PID) is None
    assert environ == {"PATH": "/b"}


def test_a_descriptor_that_is_not_listening_is_refused() -> None:
    with socket.socket() as idle:
        with pytest.raises(OSError, match="not a listening stream socket"):
            listening_socket(idle.fileno())
        idle.getsockname()  # still open: refusing it did not close the descriptor
    with pytest.raises(OSError):
        listening_socket(2**20)  # no such descriptor


def daemon(tmp_path: Path, listen: str) -> Daemon:
    settings = Settings(
        CUSTOMERS_DIR=tmp_path / "customers.d", DATA_DIR=tmp_path / "data", METRICS_LISTEN=listen
    )
    return Daemon(settings, FakeRuntime(), Ledger(tmp_path / "data" / "state"))


def test_a_metrics_port_someone_else_holds_is_fatal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LISTEN_PID", raising=False)
    with socket.socket() as impostor:
        impostor.bind(("127.0.0.1", 0))
        impostor.listen()
        listen = f"127.0.0.1:{impostor.getsockname()[1]}"
        with pytest.raises(ServeFailed, match=f"UNSTOPPABLE_METRICS_LISTEN={listen}"):
            daemon(tmp_path, listen).serve_metrics()
        with pytest.raises(ServeFailed, match="UNSTOPPABLE_METRICS_LISTEN=nonsense"):
            daemon(tmp_path, "nonsense").serve_metrics()


def test_metrics_are_served_on_an_inherited_socket_and_the_setting_is_not_bound(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bound = socket.socket()
    bound.bind(("127.0.0.1", 0))
    bound.listen()
    port = bound.getsockname()[1]
    listen = f"127.0.0.1:{port}"  # held by systemd's socket: a bind of it would fail
    held = listening_socket(bound.detach())  # the daemon's from here on, as systemd's is
    monkeypatch.setattr("orchestrator.reporting.metrics.take_socket", lambda environ, pid: held)
    daemon(tmp_path, listen).serve_metrics()
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        text = answer.read().decode()
    assert "unstoppable_scheduler_heartbeat_timestamp_seconds" in text
    assert where(held, listen) == f"http://127.0.0.1:{port}/metrics (the socket systemd holds)"
    assert where(None, listen) == f"http://{listen}/metrics"


def test_an_inherited_socket_elsewhere_than_the_setting_is_fatal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Served on another port, the configured one would be free for an impostor."""
    bound = socket.socket()
    bound.bind(("127.0.0.1", 0))
    bound.listen()
    held = listening_socket(bound.detach())
    monkeypatch.setattr("orchestrator.reporting.metrics.take_socket", lambda environ, pid: held)
    with pytest.raises(ServeFailed, match="make the socket unit's ListenStream the same"):
        daemon(tmp_path, "127.0.0.1:1").serve_metrics()
    held.close()
    with pytest.raises(ServeFailed, match=r"UNSTOPPABLE_METRICS_LISTEN=127\.0\.0\.1:99999"):
        monkeypatch.setattr("orchestrator.reporting.metrics.take_socket", lambda e, p: None)
        daemon(tmp_path, "127.0.0.1:99999").serve_metrics()
