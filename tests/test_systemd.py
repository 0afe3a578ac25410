"""The systemd unit, judged by systemd itself and against what it starts.

Each check ties the unit to something outside it: systemd's own parser and security
analysis, the venv layout install.sh creates and pyproject's console script, and the
signals the daemon really handles.
"""

import configparser
import os
import re
import shlex
import shutil
import signal
import subprocess
import threading
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.config.settings import Settings
from orchestrator.daemon import Daemon
from orchestrator.reporting.ledger import Ledger
from tests.fake_runtime import FakeRuntime

ROOT = Path(__file__).resolve().parent.parent
UNIT = ROOT / "systemd" / "unstoppable.service"
SOCKET = ROOT / "systemd" / "unstoppable-metrics.socket"
INSTALL = ROOT / "install.sh"
# systemd-analyze security's exposure scale runs from 0.0 (locked down) to 10.0 (none).
MAX_EXPOSURE = 5.0


def unit(path: Path = UNIT) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(path)
    return parser


def exec_start() -> list[str]:
    return shlex.split(unit()["Service"]["ExecStart"])


@pytest.fixture
def local_unit(tmp_path: Path) -> Path:
    """The unit with ExecStart pointing at this checkout's venv: systemd checks it exists."""
    assert shutil.which("systemd-analyze"), "systemd-analyze missing: run `make provision`"
    binary = exec_start()[0]
    text = UNIT.read_text()
    assert text.count(binary) == 1, f"{binary} is the ExecStart binary and nothing else"
    local = tmp_path / UNIT.name
    local.write_text(text.replace(binary, str(ROOT / ".venv" / "bin" / Path(binary).name)))
    shutil.copy(SOCKET, tmp_path / SOCKET.name)  # the service requires it: it is loaded too
    return local


def test_systemd_accepts_every_line_of_the_unit(local_unit: Path) -> None:
    socket_unit = local_unit.parent / SOCKET.name
    done = subprocess.run(
        ["systemd-analyze", "verify", str(local_unit), str(socket_unit)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    # An unknown or misspelt key is only a warning naming the file: none is allowed.
    assert UNIT.name not in done.stderr, done.stderr
    assert SOCKET.name not in done.stderr, done.stderr


def test_the_metrics_port_is_held_by_the_socket_unit_install_sh_installs() -> None:
    """systemd binds the port before the daemon and keeps it across the daemon's restarts."""
    service, socket_unit = unit(), unit(SOCKET)
    assert socket_unit["Socket"]["ListenStream"] == Settings().METRICS_LISTEN
    assert socket_unit["Socket"]["Service"] == UNIT.name
    assert socket_unit["Install"]["WantedBy"] == "sockets.target"
    assert service["Service"]["Sockets"] == SOCKET.name
    assert SOCKET.name in service["Unit"]["Requires"].split()
    assert SOCKET.name in service["Unit"]["After"].split()
    script = INSTALL.read_text()
    assert 'install -m 0644 "$src/systemd/unstoppable-metrics.socket" "$SOCKET"' in script
    assert re.search(r"^SOCKET=/etc/systemd/system/unstoppable-metrics\.socket$", script, re.M)
    assert "systemctl enable unstoppable-metrics.socket unstoppable" in script
    assert f"DEFAULT_METRICS={Settings().METRICS_LISTEN}" in script


def test_the_unit_keeps_its_hardening(local_unit: Path) -> None:
    done = subprocess.run(
        [
            "systemd-analyze",
            "security",
            "--offline=true",
            f"--threshold={int(MAX_EXPOSURE * 10)}",
            "--no-pager",
            str(local_unit),
        ],
        capture_output=True,
        text=True,
    )
    found = re.search(r"Overall exposure level for \S+: (\d+\.\d)", done.stdout + done.stderr)
    assert found, done.stdout + done.stderr
    assert float(found.group(1)) <= MAX_EXPOSURE, done.stdout
    assert done.returncode == 0, done.stderr


def test_exec_start_is_the_command_install_sh_installs() -> None:
    script = INSTALL.read_text()
    prefix = re.search(r"^PREFIX=(\S+)$", script, re.MULTILINE)
    assert prefix, "install.sh sets PREFIX"
    assert 'python3 -m venv "$PREFIX/venv"' in script
    assert 'install -m 0644 "$src/systemd/unstoppable.service" "$UNIT"' in script
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    binary, *args = exec_start()
    name = Path(binary).name
    assert binary == f"{prefix.group(1)}/venv/bin/{name}"
    assert scripts.get(name) == "orchestrator.cli:main"
    # The same console script, installed in this checkout's venv, takes these arguments.
    done = subprocess.run(
        [str(ROOT / ".venv" / "bin" / name), *args, "--help"], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert "the daemon" in done.stdout


def test_the_unit_restarts_the_daemon_and_spares_its_workers() -> None:
    service, section = unit()["Service"], unit()["Unit"]
    assert service["Restart"] == "always"  # a crash or a failed start is retried forever
    assert section["StartLimitIntervalSec"] == "0"  # ...without systemd giving up
    assert service["KillMode"] == "process"  # stop signals the daemon, never its workers
    assert "docker.service" in section["After"].split()


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    settings = Settings(CUSTOMERS_DIR=tmp_path / "customers.d", DATA_DIR=tmp_path / "data")
    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    try:
        yield Daemon(settings, FakeRuntime(), Ledger(tmp_path / "data" / "state"))
    finally:
        for signum, handler in saved.items():
            signal.signal(signum, handler)


def arrives(flag: threading.Event) -> bool:
    deadline = time.monotonic() + 5
    while not flag.is_set():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_the_signals_systemd_sends_are_the_ones_the_daemon_handles(daemon: Daemon) -> None:
    service = unit()["Service"]
    reload = shlex.split(service["ExecReload"])
    assert reload[0] == "/bin/kill" and reload[-1] == "$MAINPID", reload
    reload_signal = signal.Signals["SIG" + reload[1].removeprefix("-").removeprefix("SIG")]
    stop_signal = signal.Signals[service.get("KillSignal", "SIGTERM")]
    daemon.install_signal_handlers()
    for signum in (reload_signal, stop_signal):  # else the signal below would end pytest
        assert callable(signal.getsignal(signum)), f"the daemon does not handle {signum.name}"

    os.kill(os.getpid(), reload_signal)
    assert arrives(daemon.reload), f"systemctl reload sends {reload_signal.name}"
    assert not daemon.stopping.is_set(), "a reload must not stop the daemon"
    os.kill(os.getpid(), stop_signal)
    assert arrives(daemon.stopping), f"systemctl stop sends {stop_signal.name}"
