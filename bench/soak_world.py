"""The soak's world: customers with local, FTPS and SFTP sources, their servers, two real
daemons (one keeping cold repositories in a local folder, one in MinIO buckets with object
lock), each restarted whenever it exits, and sources changing under them.

The local daemon's data directory and its cold folder are small filesystems of their own
(tmpfs), so the soak can fill them. Everything lives under one directory of its own and
listens on 127.0.0.1 only.
"""

import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from bench.soak_daemon import Daemon
from orchestrator import __version__
from orchestrator.model import JobKey
from tests.servers import PASSWORD, USER, Ftps, Sftp, free_port, open_dir, sshd, vsftpd
from tests.test_s3 import Minio, minio_server

IMAGE = os.environ.get("UNSTOPPABLE_WORKER_IMAGE", f"unstoppable-worker:{__version__}")
# Every N seconds (croniter's sixth field): a dozen customers, often overlapping.
INTERVALS = (10, 15, 20, 30, 10, 15, 20, 30, 15, 20, 15, 30)
# (source, cold store) of each customer in turn: a dozen is 2 FTPS, 2 SFTP, 8 local; three
# of them (one SFTP, two local) keep their cold repository in MinIO.
KINDS = [("ftps", "local"), ("sftp", "s3"), ("ftps", "local"), ("sftp", "local")]
KINDS += [("local", "s3"), ("local", "local"), ("local", "local"), ("local", "s3")]
KINDS += [("local", "local")] * 4
FILESYSTEM = "256m"  # each small filesystem the soak can fill
BUCKETS = "soak-"


@dataclass
class Customer:
    name: str
    kind: str  # local | ftps | sftp
    store: str  # local | s3: which daemon has it, and where its cold repository is
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
    """One soak's directory, customers, servers and daemons."""

    root: Path
    ftps: Ftps
    sftp: Sftp
    minio: Minio
    rng: random.Random
    customers: list[Customer] = field(default_factory=list)
    daemons: dict[str, Daemon] = field(default_factory=dict)
    stopping: threading.Event = field(default_factory=threading.Event)

    @property
    def servers(self) -> dict[str, str]:
        """Each server's Docker name, by kind."""
        assert self.minio.container is not None
        minio = self.minio.container.get_wrapped_container().name
        return {"ftps": self.ftps.container, "sftp": self.sftp.container, "minio": minio}

    @property
    def filesystems(self) -> dict[str, Path]:
        """The small filesystems the soak can fill: the local daemon's data and cold folder."""
        data = self.daemons["local"].data
        return {"data": data, "cold": data / "cold"}

    def file_of(self, customer: Customer) -> Path:
        return self.root / f"customers-{customer.store}.d" / f"{customer.name}.env"

    def daemon_of(self, customer: Customer) -> Daemon:
        return self.daemons[customer.store]

    def setup(self, count: int) -> None:
        """Write `count` customers and their two daemons' settings."""
        common = {
            "PATH": os.environ["PATH"],
            "UNSTOPPABLE_CONFIG": str(self.root / "none.env"),
            "UNSTOPPABLE_WORKER_IMAGE": IMAGE,
            "UNSTOPPABLE_SOURCE_ROOTS": str(self.root),
            "UNSTOPPABLE_KEYS_DIR": str(self.root / "keys"),
            "UNSTOPPABLE_ALLOW_PRIVATE_TARGETS": "127.0.0.0/8",
            "UNSTOPPABLE_MIN_INTERVAL": "0",
            "UNSTOPPABLE_JOB_TIMEOUT": "2m",
        }
        s3 = {
            "UNSTOPPABLE_COLD_BACKEND": "s3",
            "UNSTOPPABLE_S3_ENDPOINT": self.minio.endpoint,
            "UNSTOPPABLE_S3_ACCESS_KEY_ID": self.minio.key_id,
            "UNSTOPPABLE_S3_SECRET_ACCESS_KEY": self.minio.secret,
            "UNSTOPPABLE_S3_BUCKET_PREFIX": BUCKETS,
            "UNSTOPPABLE_S3_LOCK_DAYS": "1",
        }
        for name, parallel, extra in (("local", "4", {}), ("s3", "2", s3)):
            port = free_port()
            (self.root / f"customers-{name}.d").mkdir()
            env = {
                **common,
                "UNSTOPPABLE_CUSTOMERS_DIR": str(self.root / f"customers-{name}.d"),
                "UNSTOPPABLE_DATA_DIR": str(self.root / f"data-{name}"),
                "UNSTOPPABLE_METRICS_LISTEN": f"127.0.0.1:{port}",
                "UNSTOPPABLE_MAX_PARALLEL": parallel,
                **extra,
            }
            self.daemons[name] = Daemon(name, self.root, env, port)
        small = self.daemons["local"].data
        for path in (small, small / "cold"):
            path.mkdir(parents=True)
            subprocess.run(
                ["mount", "-t", "tmpfs", "-o", f"size={FILESYSTEM},mode=0755", "soak", str(path)],
                check=True,
            )
        for index, (kind, store) in enumerate(KINDS[:count]):
            name = f"soak-{index:02d}-{kind}"
            source = self.root / "sources" / name
            source.mkdir(parents=True)
            for i in range(30):
                (source / f"page-{i}.html").write_text(f"<p>{name} page {i}</p>\n" * 20)
            for path in [source, *source.iterdir()]:
                path.chmod(0o755 if path.is_dir() else 0o644)
            interval = INTERVALS[index % len(INTERVALS)]
            customer = Customer(name, kind, store, source, interval, f"pw-{name}-71c")
            self.customers.append(customer)
            self.write(customer)

    def write(self, customer: Customer) -> None:
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
        folder = self.root / "keys" / customer.name
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
        self.file_of(customer).write_text("\n".join(lines) + "\n")

    def receipts(self) -> dict[JobKey, list[dict[str, object]]]:
        """Return each job's published receipts, read from where they were published."""
        found: dict[JobKey, list[dict[str, object]]] = {}
        s3 = self.minio.client()
        for c in self.customers:
            if c.store == "s3":
                bucket, prefix = f"{BUCKETS}{c.name}", "receipts/files/"
                pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
                keys = sorted(o["Key"] for p in pages for o in p.get("Contents", []))
                bodies = [s3.get_object(Bucket=bucket, Key=k)["Body"].read() for k in keys]
            else:
                folder = self.daemons["local"].data / "cold" / c.name / "receipts" / "files"
                bodies = [p.read_bytes() for p in sorted(folder.glob("*.json"))]
            # And those issued and not published yet (the store was away): still receipts.
            spool = self.daemon_of(c).data / "state" / "receipts" / f"{c.name}_files"
            bodies += [p.read_bytes() for p in sorted(spool.glob("[0-9]*.json"))]
            by_seq = {}
            for body in bodies:
                receipt = json.loads(body)["receipt"]
                by_seq[receipt["seq"]] = receipt
            found[c.job] = [by_seq[seq] for seq in sorted(by_seq)]
        return found

    def heal(self) -> None:
        """Start any server a fault left stopped (the engine's restart stops them all)."""
        for name in self.servers.values():
            subprocess.run(["docker", "unpause", name], capture_output=True)
            subprocess.run(["docker", "start", name], capture_output=True)
        deadline = time.monotonic() + 60
        while not self.minio.live() and time.monotonic() < deadline:
            time.sleep(0.5)


class EventStream:
    """Docker's container events of managed workers, read as they come (a reader that lags
    is dropped by the engine, and a pipe nobody reads fills up). When the engine restarts,
    the stream is opened again from the last event it saw: the engine replays what it
    emitted since (the workers it stopped in its restart among them)."""

    def __init__(self) -> None:
        self.events: list[dict[str, object]] = []
        self.seen: set[tuple[object, ...]] = set()
        self.stopping = threading.Event()
        self.proc: subprocess.Popen[str] | None = None
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        time.sleep(0.5)  # the subscription is live before anything happens

    def _read(self) -> None:
        since: list[str] = []
        while not self.stopping.is_set():
            self.proc = subprocess.Popen(
                ["docker", "events", "--format", "{{json .}}", "--filter", "type=container",
                 "--filter", "label=unstoppable.managed=true", *since],
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            )  # fmt: skip
            assert self.proc.stdout is not None
            for line in self.proc.stdout:
                if not line.strip():
                    continue
                event = json.loads(line)
                key = (event.get("id"), event.get("status"), event.get("timeNano"))
                if key not in self.seen:
                    self.seen.add(key)
                    self.events.append(event)
            self.proc.wait()
            if self.events:  # from the last one seen, in seconds with nanoseconds
                nano = max(int(str(e.get("timeNano", 0))) for e in self.events)
                since = ["--since", f"{nano // 10**9}.{nano % 10**9:09d}"]
            time.sleep(1.0)

    def stop(self) -> list[dict[str, object]]:
        time.sleep(1.0)
        self.stopping.set()
        if self.proc is not None:
            self.proc.terminate()
        self.reader.join(10)
        return list(self.events)


@contextlib.contextmanager
def world(seed: int, customers: int, keep: bool = False) -> Iterator[World]:
    """Yield a world with its servers up and its customers written; remove it after
    (unless `keep`: its directory is then left for a look, and named)."""
    root = open_dir("unstoppable-soak-")
    made: World | None = None
    try:
        with vsftpd() as ftps, sshd() as sftp, minio_server(root / "minio") as minio:
            made = World(root, ftps, sftp, minio, random.Random(seed))
            made.setup(customers)
            yield made
    finally:
        for daemon in made.daemons.values() if made is not None else ():
            daemon.stopping.set()  # interrupted (Ctrl-C): no daemon outlives the soak
            daemon.signal(signal.SIGCONT)
            daemon.signal(signal.SIGKILL)
        if keep:  # the servers' tree goes when this process ends: a copy stays
            kept = Path("/var/tmp") / f"kept-{root.name}"
            shutil.copytree(root, kept, symlinks=True, dirs_exist_ok=True)
            print(f"kept a copy of the soak's directory: {kept}", file=sys.stderr)
        if made is not None and "local" in made.daemons:
            for path in reversed(made.filesystems.values()):
                subprocess.run(["umount", "-l", str(path)], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)
