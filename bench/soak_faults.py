"""The soak's faults: each injected at a random time for a random while, overlapping others.

Kinds this machine can make now: the daemon killed (-9) or stopped (SIGSTOP), a worker
killed, an FTPS or SFTP server stopped or frozen (paused: it accepts and never answers), a
customer file replaced by garbage, a source taken away. Each is cleared when its
while is over; the injector says when the last one cleared.
"""

import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from bench.soak_world import Customer, World

KINDS = (
    "daemon_kill",
    "daemon_stop",
    "worker_kill",
    "server_stop",
    "server_freeze",
    "customer_garbage",
    "source_unreadable",
)


@dataclass
class Injector:
    """Injects faults into `world` until told to stop, and keeps count."""

    world: World
    kinds: tuple[str, ...] = KINDS
    counts: Counter[str] = field(default_factory=Counter)
    broken: dict[str, list[tuple[datetime, datetime]]] = field(default_factory=dict)
    threads: list[threading.Thread] = field(default_factory=list)
    busy: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)
    cleared: datetime | None = None

    def run(self, seconds: float, gap: tuple[float, float] = (2.0, 8.0)) -> None:
        """Inject for `seconds`: the kind injected least so far next, at random gaps."""
        end = time.monotonic() + seconds
        rng = self.world.rng
        while time.monotonic() < end:
            time.sleep(rng.uniform(*gap))
            fewest = min(self.counts[k] for k in self.kinds)
            kind = rng.choice([k for k in self.kinds if self.counts[k] == fewest])
            thread = threading.Thread(target=self._inject, args=(kind,), daemon=True)
            thread.start()
            self.threads.append(thread)

    def clear(self) -> datetime:
        """Wait for every fault to clear; return when the last one did."""
        for thread in self.threads:
            thread.join(120)
        return self.cleared or datetime.now(UTC)

    def _inject(self, kind: str) -> None:
        rng = self.world.rng
        action: Callable[[float], bool] = getattr(self, f"_{kind}")
        if action(rng.uniform(3.0, 25.0)):
            with self.lock:
                self.counts[kind] += 1
                now = datetime.now(UTC)
                self.cleared = max(self.cleared or now, now)

    def _claim(self, target: str) -> bool:
        with self.lock:
            if target in self.busy:
                return False
            self.busy.add(target)
            return True

    def _free(self, target: str) -> None:
        with self.lock:
            self.busy.discard(target)

    def _daemon_kill(self, _while: float) -> bool:
        return self.world.signal(signal.SIGKILL)

    def _daemon_stop(self, seconds: float) -> bool:
        if not self._claim("daemon-stop") or not self.world.signal(signal.SIGSTOP):
            self._free("daemon-stop")
            return False
        time.sleep(seconds)
        self.world.signal(signal.SIGCONT)
        self._free("daemon-stop")
        return True

    def _worker_kill(self, _while: float) -> bool:
        ours = [f"label=unstoppable.customer={c.name}" for c in self.world.customers]
        found = []
        for label in ours:
            out = subprocess.run(
                ["docker", "ps", "-q", "--filter", label], capture_output=True, text=True
            ).stdout.split()
            found += out
        if not found:
            return False
        victim = self.world.rng.choice(found)
        return subprocess.run(["docker", "kill", victim], capture_output=True).returncode == 0

    def _server(self, seconds: float, off: str, on: str) -> bool:
        name = self.world.rng.choice([self.world.ftps.container, self.world.sftp.container])
        if not self._claim(name):
            return False
        try:
            subprocess.run(["docker", off, name], capture_output=True, check=True)
            time.sleep(seconds)
        finally:
            subprocess.run(["docker", on, name], capture_output=True)
            self._free(name)
        return True

    def _server_stop(self, seconds: float) -> bool:
        return self._server(seconds, "stop", "start")

    def _server_freeze(self, seconds: float) -> bool:
        return self._server(seconds, "pause", "unpause")

    def _victim(self, local: bool = False) -> Customer | None:
        choices = [c for c in self.world.customers if c.kind == "local" or not local]
        customer = self.world.rng.choice(choices)
        return customer if self._claim(customer.name) else None

    def _customer_garbage(self, seconds: float) -> bool:
        customer = self._victim()
        if customer is None:
            return False
        began = datetime.now(UTC)
        file = self.world.file_of(customer)
        try:
            file.write_bytes(self.world.rng.randbytes(300) + b"\nRESOURCES=\x00\n")
            time.sleep(seconds)
        finally:
            self.world.write(customer)
            with self.lock:
                self.broken.setdefault(customer.name, []).append((began, datetime.now(UTC)))
            self._free(customer.name)
        return True

    def _source_unreadable(self, seconds: float) -> bool:
        """Take the source away (renamed: a root worker reads through any mode) and back."""
        customer = self._victim()
        if customer is None:
            return False
        aside = customer.source.with_name(customer.source.name + ".away")
        try:
            customer.source.rename(aside)
            time.sleep(seconds)
        finally:
            aside.rename(customer.source)
            self._free(customer.name)
        return True
