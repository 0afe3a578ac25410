"""The soak's world: customers with local, FTPS and SFTP sources, their servers, the real
daemon restarted whenever it exits (as systemd would), and sources changing under it.

Everything lives under one directory of its own and listens on 127.0.0.1 only.
"""

import contextlib
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from bench.soak_checks import Run, Tick
from orchestrator import __version__
from orchestrator.model import JobKey
from tests.servers import PASSWORD, USER, Ftps, Sftp, free_port, open_dir, sshd, vsftpd

ROOT = Path(__file__).resolve().parent.parent
IMAGE = os.environ.get("UNSTOPPABLE_WORKER_IMAGE", f"unstoppable-worker:{__version__}")
# Every N seconds (croniter's sixth field): a dozen customers, often overlapping.
INTERVALS = (10, 15, 20, 30, 10, 15, 20, 30, 15, 20, 15, 30)


@dataclass
class Customer:
    name: str
    kind: str  # local | ftps | sftp
    source: Path
    interval: int
    password: str

    @property
    def job(self) -> JobKey:
        return JobKey(self.name, "files")

    @property
    def schedule(self) -> str:
        return f"* * * * * */{self.interval}"


@dataclass
class World:
    """One soak's directory, customers, servers and daemon."""

    root: Path
    ftps: Ftps
    sftp: Sftp
    rng: random.Random
    customers: list[Customer] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    metrics_port: int = 0
    daemon: subprocess.Popen[bytes] | None = None
    exits: list[int] = field(default_factory=list)
    starts: list[datetime] = field(default_factory=list)  # each (re)start of the daemon
    started_at: datetime | None = None
    stopping: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def log(self) -> Path:
        return self.root / "daemon.log"

    def file_of(self, customer: Customer) -> Path:
        return self.root / "customers.d" / f"{customer.name}.env"

    def setup(self, count: int) -> None:
        """Write `count` customers: FTPS and SFTP ones first, the rest local."""
        (self.root / "customers.d").mkdir()
        keys = self.root / "keys"
        self.metrics_port = free_port()
        self.env = {
            "PATH": os.environ["PATH"],
            "UNSTOPPABLE_CONFIG": str(self.root / "none.env"),
            "UNSTOPPABLE_CUSTOMERS_DIR": str(self.root / "customers.d"),
            "UNSTOPPABLE_DATA_DIR": str(self.data),
            "UNSTOPPABLE_WORKER_IMAGE": IMAGE,
            "UNSTOPPABLE_SOURCE_ROOTS": str(self.root),
            "UNSTOPPABLE_KEYS_DIR": str(keys),
            "UNSTOPPABLE_ALLOW_PRIVATE_TARGETS": "127.0.0.0/8",
            "UNSTOPPABLE_MIN_INTERVAL": "0",
            "UNSTOPPABLE_METRICS_LISTEN": f"127.0.0.1:{self.metrics_port}",
            "UNSTOPPABLE_JOB_TIMEOUT": "2m",
            "UNSTOPPABLE_MAX_PARALLEL": "4",
        }
        kinds = ["ftps", "sftp", "ftps", "sftp"] + ["local"] * max(0, count - 4)
        for index, kind in enumerate(kinds[:count]):
            name = f"soak-{index:02d}-{kind}"
            source = self.root / "sources" / name
            source.mkdir(parents=True)
            for i in range(30):
                (source / f"page-{i}.html").write_text(f"<p>{name} page {i}</p>\n" * 20)
            for path in [source, *source.iterdir()]:
                path.chmod(0o755 if path.is_dir() else 0o644)
            customer = Customer(
                name, kind, source, INTERVALS[index % len(INTERVALS)], f"pw-{name}-71c"
            )
            self.customers.append(customer)
            self.write(customer, keys)

    def write(self, customer: Customer, keys: Path | None = None) -> None:
        """Write (or put back) the customer's file."""
        lines = [
            f'SCHEDULE="{customer.schedule}"',
            f"REPO_PASSWORD={customer.password}",
            "KEEP_LAST=3",
            "RESOURCES=files",
            f"FILES_TYPE={customer.kind}",
            f"FILES_PATH={customer.source}",
            # Maintenance every two minutes at a second of its own: it takes the job's
            # lock, and far more often it would crowd out the backups it is there for.
            f'FILES_PRUNE_SCHEDULE="*/2 * * * * {7 + customer.interval}"',
            f'FILES_VERIFY_SCHEDULE="1-59/2 * * * * {37 + customer.interval // 2}"',
        ]
        keys = keys or self.root / "keys"
        folder = keys / customer.name
        if customer.kind == "ftps":
            folder.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(self.ftps.ca, folder / "ca.pem")
            lines += [
                "FILES_HOST=127.0.0.1",
                f"FILES_PORT={self.ftps.port}",
                f"FILES_USER={USER}",
                f"FILES_PASSWORD={PASSWORD}",
                f"FILES_TLS_CA_FILE={folder / 'ca.pem'}",
            ]
        elif customer.kind == "sftp":
            folder.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(self.sftp.client_key, folder / "client")
            (folder / "client").chmod(0o600)
            lines += [
                "FILES_HOST=127.0.0.1",
                f"FILES_PORT={self.sftp.port}",
                f"FILES_USER={USER}",
                f'FILES_HOST_KEY="{self.sftp.host_key}"',
                f"FILES_KEY_FILE={folder / 'client'}",
            ]
        file = self.file_of(customer)
        file.write_text("\n".join(lines) + "\n")

    # --- the daemon, kept running as systemd would ------------------------------------------

    def supervise(self) -> threading.Thread:
        """Start the daemon, and start it again whenever it exits, until `stopping`."""

        def keep() -> None:
            while not self.stopping.is_set():
                with self.lock, open(self.log, "ab") as handle:
                    self.daemon = subprocess.Popen(
                        [sys.executable, "-m", "orchestrator.cli", "run"],
                        env=self.env,
                        cwd=ROOT,
                        stdout=handle,
                        stderr=handle,
                    )
                    self.starts.append(datetime.now(UTC))
                    if self.started_at is None:
                        self.started_at = self.starts[0]
                code = self.daemon.wait()
                if self.stopping.is_set():
                    self.exits.append(code)
                    return
                self.exits.append(code)
                time.sleep(1.0)  # systemd's RestartSec

        thread = threading.Thread(target=keep, name="supervisor", daemon=True)
        thread.start()
        return thread

    def signal(self, signum: int) -> bool:
        """Send `signum` to the running daemon; return whether there was one."""
        with self.lock:
            daemon = self.daemon
        if daemon is None or daemon.poll() is not None:
            return False
        with contextlib.suppress(ProcessLookupError):
            daemon.send_signal(signum)
            return True
        return False

    def stop(self, supervisor: threading.Thread) -> None:
        """Stop the daemon for good: SIGTERM, as systemctl stop does."""
        self.stopping.set()
        self.signal(signal.SIGCONT)
        self.signal(signal.SIGTERM)
        supervisor.join(60)

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

    # --- what the daemon wrote ---------------------------------------------------------------

    def ledger(self) -> tuple[list[Run], list[Tick]]:
        """Return the runs and the skipped and missed times the ledger holds."""
        db = sqlite3.connect(self.data / "state" / "ledger.sqlite3")
        try:
            runs = [
                Run(JobKey(c, r), kind, _when(scheduled), _when(started), result, reason)
                for c, r, kind, scheduled, started, result, reason in db.execute(
                    "SELECT customer, resource, kind, scheduled_for, started, result, reason"
                    " FROM runs ORDER BY id"
                )
            ]
            ticks = [
                Tick(JobKey(c, r), event, _when(last), int(count))
                for c, r, event, last, count in db.execute(
                    "SELECT customer, resource, event, scheduled_for, count FROM events ORDER BY id"
                )
            ]
        finally:
            db.close()
        return runs, ticks

    def receipts(self) -> dict[JobKey, list[dict[str, object]]]:
        found: dict[JobKey, list[dict[str, object]]] = {}
        for customer in self.customers:
            folder = self.data / "cold" / customer.name / "receipts" / "files"
            files = sorted(folder.glob("*.json")) if folder.is_dir() else []
            found[customer.job] = [json.loads(p.read_text())["receipt"] for p in files]
        return found


def _when(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class EventStream:
    """Docker's container events of managed workers, read as they come (a reader that
    lags is dropped by the engine, and a pipe nobody reads fills up)."""

    def __init__(self) -> None:
        self.events: list[dict[str, object]] = []
        self.proc = subprocess.Popen(
            ["docker", "events", "--format", "{{json .}}", "--filter", "type=container",
             "--filter", "label=unstoppable.managed=true"],
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        time.sleep(0.3)  # the subscription is live before anything happens

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.strip():
                self.events.append(json.loads(line))

    def stop(self) -> list[dict[str, object]]:
        time.sleep(1.0)
        self.proc.terminate()
        self.reader.join(10)
        return list(self.events)


@contextlib.contextmanager
def world(seed: int, customers: int, keep: bool = False) -> Iterator[World]:
    """Yield a world with its servers up and its customers written; remove it after
    (unless `keep`: its directory is then left for a look, and named)."""
    root = open_dir("unstoppable-soak-")
    try:
        with vsftpd() as ftps, sshd() as sftp:
            made = World(root, ftps, sftp, random.Random(seed))
            made.setup(customers)
            yield made
    finally:
        if keep:  # the servers' tree goes when this process ends: a copy stays
            kept = Path("/var/tmp") / f"kept-{root.name}"
            shutil.copytree(root, kept, symlinks=True, dirs_exist_ok=True)
            print(f"kept a copy of the soak's directory: {kept}", file=sys.stderr)
        shutil.rmtree(root, ignore_errors=True)
