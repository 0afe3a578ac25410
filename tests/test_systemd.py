"""The systemd unit: valid for systemd itself, and shaped the way the daemon relies on."""

import configparser
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
UNIT = ROOT / "systemd" / "unstoppable.service"


def test_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    assert shutil.which("systemd-analyze"), "systemd-analyze missing: run `make provision`"
    # verify checks that ExecStart exists: point it at this checkout's installed command.
    unit = tmp_path / "unstoppable.service"
    unit.write_text(
        UNIT.read_text().replace(
            "/opt/unstoppable/venv/bin/unstoppable", str(ROOT / ".venv" / "bin" / "unstoppable")
        )
    )
    done = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "unstoppable.service" not in done.stderr, done.stderr


def test_unit_restarts_always_reloads_on_hup_and_spares_workers() -> None:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(UNIT)
    service = parser["Service"]
    assert service["Restart"] == "always"
    assert service["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert service["ExecStart"].endswith("unstoppable run")
    assert service["KillMode"] == "process"  # SIGTERM the daemon, never its workers
    assert service["NoNewPrivileges"] == "yes"
    assert "docker.service" in parser["Unit"]["After"]
