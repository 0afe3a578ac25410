"""One daemon of the soak: its environment, its data directory, restarted whenever it exits
(as systemd would), its wall clock shiftable, and what it wrote read back for the checks."""

import contextlib
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from bench.soak_checks import Run, Tick
from orchestrator.model import JobKey

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Daemon:
    """The real daemon as `python -m bench.soak_clock` runs it; `home` holds its files."""

    name: str  # local | s3: where its cold repositories are
    home: Path
    env: dict[str, str]
    metrics_port: int
    proc: subprocess.Popen[bytes] | None = None
    exits: list[int] = field(default_factory=list)
    starts: list[datetime] = field(default_factory=list)  # each (re)start
    kills: int = 0  # SIGKILLs the harness sent
    stopping: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def data(self) -> Path:
        return Path(self.env["UNSTOPPABLE_DATA_DIR"])

    @property
    def log(self) -> Path:
        return self.home / f"daemon-{self.name}.log"

    @property
    def clock(self) -> Path:
        """The seconds its wall clock is shifted by (bench/soak_clock.py)."""
        return self.home / f"clock-{self.name}"

    def supervise(self) -> threading.Thread:
        """Start the daemon, and start it again whenever it exits, until `stopping`."""
        self.clock.write_text("0\n")

        def keep() -> None:
            while not self.stopping.is_set():
                with self.lock, open(self.log, "ab") as handle:
                    self.proc = subprocess.Popen(
                        [sys.executable, "-m", "bench.soak_clock", str(self.clock), "run"],
                        env=self.env,
                        cwd=ROOT,
                        stdout=handle,
                        stderr=handle,
                    )
                    self.starts.append(datetime.now(UTC))
                code = self.proc.wait()
                self.exits.append(code)
                if not self.stopping.is_set():
                    time.sleep(1.0)  # systemd's RestartSec

        thread = threading.Thread(target=keep, name=f"supervisor-{self.name}", daemon=True)
        thread.start()
        return thread

    def signal(self, signum: int) -> bool:
        """Send `signum` to the running daemon; return whether there was one."""
        with self.lock:
            proc = self.proc
            if proc is None or proc.poll() is not None:
                return False
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signum)
                self.kills += signum == signal.SIGKILL
                return True
        return False

    def stop(self, supervisor: threading.Thread) -> None:
        """Stop the daemon for good: SIGTERM, as systemctl stop does."""
        self.stopping.set()
        self.signal(signal.SIGCONT)
        self.signal(signal.SIGTERM)
        supervisor.join(60)

    def cli(self, *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
        """Run `unstoppable ARGS` with this daemon's settings."""
        return subprocess.run(
            [sys.executable, "-m", "orchestrator.cli", *args],
            env=self.env, cwd=ROOT, capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip

    def metrics(self) -> dict[tuple[JobKey, str], float]:
        """Return unstoppable_backup_runs_total by job and result, as /metrics shows it."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=30) as answer:
            text = answer.read().decode()
        found: dict[tuple[JobKey, str], float] = {}
        for line in text.splitlines():
            if not line.startswith("unstoppable_backup_runs_total{"):
                continue
            labels, value = line[line.index("{") + 1 :].rsplit("} ", 1)
            fields = dict(part.split("=", 1) for part in labels.split(","))
            clean = {k: v.strip('"') for k, v in fields.items()}
            job = JobKey(clean["customer"], clean["resource"])
            found[(job, clean["result"])] = float(value)
        return found

    def ledger(self) -> tuple[list[Run], list[Tick]]:
        """Return the runs and the skipped and missed times the ledger holds."""
        db = sqlite3.connect(self.data / "state" / "ledger.sqlite3")
        try:
            runs = [
                Run(
                    JobKey(c, r), kind, _when(scheduled), _when(started), result, reason,
                    _when(recorded) if recorded else None,
                )
                for c, r, kind, scheduled, started, result, reason, recorded in db.execute(
                    "SELECT customer, resource, kind, scheduled_for, started, result, reason,"
                    " recorded FROM runs ORDER BY id"
                )
            ]  # fmt: skip
            ticks = [
                Tick(JobKey(c, r), event, _when(last), int(count), _when(first) if first else None)
                for c, r, event, last, count, first in db.execute(
                    "SELECT customer, resource, event, scheduled_for, count, first FROM events"
                    " ORDER BY id"
                )
            ]
        finally:
            db.close()
        return runs, ticks


def _when(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
