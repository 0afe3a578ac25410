"""Helpers for tests that run the daemon and watch Docker: no test lives here."""

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import ROOT, Site


class Events:
    """Docker's container events for the managed workers, collected in the background."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [
                "docker",
                "events",
                "--format",
                "{{json .}}",
                "--filter",
                "type=container",
                "--filter",
                "label=unstoppable.managed=true",
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        time.sleep(0.3)  # let the subscription start before anything happens

    def stop(self) -> list[dict[str, object]]:
        time.sleep(0.5)
        self.proc.terminate()
        out = self.proc.communicate()[0]
        return [json.loads(line) for line in out.splitlines() if line.strip()]


def starts(events: list[dict[str, object]], job: str) -> list[dict[str, str]]:
    return [
        e["Actor"]["Attributes"]
        for e in events  # type: ignore[index]
        if e["status"] == "start" and e["Actor"]["Attributes"].get("unstoppable.job") == job
    ]  # type: ignore[index]


def assert_never_overlapping(events: list[dict[str, object]], *jobs: str) -> None:
    """No job ever has two running workers, by Docker's own account; and each of `jobs`
    ran at least once, so an empty or unrelated event log cannot pass for proof."""
    assert jobs, "name the jobs whose workers the log must hold"
    for job in jobs:
        assert starts(events, job), f"Docker's event log holds no worker of {job}"
    running: dict[str, int] = {}
    for event in sorted(events, key=lambda e: int(e["timeNano"])):  # type: ignore[call-overload]
        job = event["Actor"]["Attributes"].get("unstoppable.job", "")  # type: ignore[index]
        if event["status"] == "start":
            running[job] = running.get(job, 0) + 1
            assert running[job] == 1, f"two workers of {job} at once"
        elif event["status"] == "die":
            running[job] = running.get(job, 1) - 1


class DaemonProcess:
    def __init__(self, site: Site) -> None:
        self.site = site
        self.log = site.root / "daemon.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log, "ab") as handle:  # the child keeps its own descriptor
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "orchestrator.cli", "run"],
                env=self.site.env,
                cwd=ROOT,
                stdout=handle,
                stderr=handle,
            )

    def signal(self, signum: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(signum)

    def wait(self, timeout: float) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout=timeout)

    def text(self) -> str:
        return self.log.read_text()


def customer(site: Site, name: str, schedule: str, delay: int = 0, extra: str = "") -> Path:
    source = site.root / f"src-{name}"
    source.mkdir(exist_ok=True)
    (source / "data.txt").write_text(f"data of {name}")
    if delay:
        (source / ".test-delay").write_text(str(delay))
    site.customer(
        name,
        f'SCHEDULE="{schedule}"\nREPO_PASSWORD=pw-{name}\nRESOURCES=files\n'
        f"FILES_TYPE=local\nFILES_PATH={source}\n{extra}",
    )
    return source


def wait_until(predicate: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def running_workers(prefix: str) -> list[str]:
    out = subprocess.run(
        ["docker", "ps", "--filter", "label=unstoppable.managed=true", "--format", "{{.Names}}"],
        capture_output=True,
        text=True,
    ).stdout
    return [n for n in out.split() if n.startswith(f"unstoppable_{prefix}")]


def restart_dockerd(signum: int = signal.SIGTERM, down: float = 0.0) -> None:
    """Stop the Docker engine the way this host runs it (`signum`: SIGTERM as systemctl
    does, or SIGKILL as a crash), leave it down for `down` seconds, start it again and wait
    until it answers."""
    active = ["systemctl", "is-active", "--quiet", "docker"]
    if subprocess.run(active, capture_output=True, check=False).returncode == 0:
        subprocess.run(["systemctl", "kill", f"--signal={signum}", "docker"], check=True)
        time.sleep(down)
        subprocess.run(["systemctl", "restart", "docker"], check=True)
    else:
        pid = int(subprocess.run(["pgrep", "-o", "-x", "dockerd"], capture_output=True,
                                 text=True, check=True).stdout.split()[0])  # fmt: skip
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").split(b"\0")
        os.kill(pid, signum)
        wait_until(lambda: not Path(f"/proc/{pid}").exists(), 90, "dockerd to stop")
        time.sleep(down)
        # Detached through a shell that exits at once: the engine outlives its caller, like
        # the one provision started, and no Popen is left for Python to warn about.
        command = shlex.join(os.fsdecode(a) for a in argv)
        subprocess.run(
            ["sh", "-c", f"setsid {command} >>/var/log/unstoppable-dockerd.log 2>&1 &"],
            check=True,
        )
    wait_until(
        lambda: subprocess.run(["docker", "info"], capture_output=True).returncode == 0,
        90,
        "dockerd to answer again",
    )
