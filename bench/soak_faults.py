"""The soak's faults: each injected at a random time for a random while, overlapping others.

Every kind this machine can make: a daemon killed (-9) or stopped (SIGSTOP), its wall clock
shifted; the Docker engine killed or stopped and started again; a worker killed; an FTPS,
SFTP or MinIO server stopped, frozen (paused: it accepts and never answers) or slow (paused
and resumed by turns); the data directory's or the cold folder's filesystem full; a customer
file replaced by garbage; a source taken away. Each is cleared when its while is over; the
injector says when the last one cleared, and which times a clock set back brings round again.
"""

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from bench.soak_daemon import Daemon
from bench.soak_world import Customer, World
from orchestrator.model import JobKey
from tests.helpers import restart_dockerd

KINDS = (
    "daemon_kill",
    "daemon_stop",
    "clock_shift",
    "engine_restart",
    "worker_kill",
    "server_stop",
    "server_freeze",
    "server_slow",
    "data_full",
    "cold_full",
    "customer_garbage",
    "source_unreadable",
)
SERVERS = ("ftps", "sftp", "minio")


@dataclass
class Injector:
    """Injects faults into `world` until told to stop, and keeps count."""

    world: World
    kinds: tuple[str, ...] = KINDS
    counts: Counter[str] = field(default_factory=Counter)
    broken: dict[str, list[tuple[datetime, datetime]]] = field(default_factory=dict)
    # Per daemon: the spans of its own clock's times that a clock set back brought round
    # again (they may be accounted for twice: the daemon counts `clock` and recomputes).
    repeated: dict[str, list[tuple[datetime, datetime]]] = field(default_factory=dict)
    threads: list[threading.Thread] = field(default_factory=list)
    busy: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)
    cleared: datetime | None = None
    timeline: list[tuple[str, datetime, datetime]] = field(default_factory=list)

    def run(self, seconds: float, gap: tuple[float, float] = (2.0, 8.0)) -> None:
        """Inject for `seconds`: the kind injected least so far next, at random gaps."""
        end = time.monotonic() + seconds
        rng = self.world.rng
        tried: Counter[str] = Counter()
        while time.monotonic() < end:
            time.sleep(rng.uniform(*gap))
            fewest = min(self.counts[k] + tried[k] // 3 for k in self.kinds)
            kind = rng.choice([k for k in self.kinds if self.counts[k] + tried[k] // 3 == fewest])
            tried[kind] += 1  # a kind that cannot land now (its target busy) yields, in time
            thread = threading.Thread(target=self._inject, args=(kind,), daemon=True)
            thread.start()
            self.threads.append(thread)

    def clear(self) -> datetime:
        """Wait for every fault to clear; return when the last one did."""
        for thread in self.threads:
            thread.join(180)
        return self.cleared or datetime.now(UTC)

    def _inject(self, kind: str) -> None:
        rng = self.world.rng
        action: Callable[[float], bool] = getattr(self, f"_{kind}")
        began = datetime.now(UTC)
        try:
            landed = action(rng.uniform(3.0, 25.0))
        except (OSError, subprocess.SubprocessError) as exc:  # the engine away, say
            print(f"fault {kind} not injected: {exc}")
            landed = False
        if landed:
            with self.lock:
                self.counts[kind] += 1
                now = datetime.now(UTC)
                self.cleared = max(self.cleared or now, now)
                self.timeline.append((kind, began, now))

    def _claim(self, target: str) -> bool:
        with self.lock:
            if target in self.busy:
                return False
            self.busy.add(target)
            return True

    def _free(self, target: str) -> None:
        with self.lock:
            self.busy.discard(target)

    def _daemon(self) -> Daemon:
        return self.world.rng.choice(list(self.world.daemons.values()))

    def _daemon_kill(self, _while: float) -> bool:
        return self._daemon().signal(signal.SIGKILL)

    def _daemon_stop(self, seconds: float) -> bool:
        daemon = self._daemon()
        target = f"stop-{daemon.name}"
        if not self._claim(target):
            return False
        try:
            if not daemon.signal(signal.SIGSTOP):
                return False
            time.sleep(seconds)
            daemon.signal(signal.SIGCONT)
            return True
        finally:
            self._free(target)

    def _clock_shift(self, seconds: float) -> bool:
        """Step the daemon's wall clock by up to two minutes either way, and back."""
        daemon = self._daemon()
        target = f"clock-{daemon.name}"
        if not self._claim(target):
            return False
        shift = self.world.rng.choice([-1, 1]) * self.world.rng.uniform(15, 120)
        spans = self.repeated.setdefault(daemon.name, [])
        try:
            began = datetime.now(UTC)
            daemon.clock.write_text(f"{shift:.1f}\n")
            if shift < 0:  # its times in (now - |shift|, now] come round again
                spans.append((began + timedelta(seconds=shift), began))
            time.sleep(seconds)
        finally:
            ended = datetime.now(UTC)
            daemon.clock.write_text("0\n")
            if shift > 0:  # set back to the true time: (now, now + shift] again
                spans.append((ended, ended + timedelta(seconds=shift)))
            self._free(target)
        return True

    def _engine_restart(self, seconds: float) -> bool:
        """Kill (or stop) the Docker engine, leave it down a while, start it again."""
        if not self._claim("engine"):
            return False
        try:
            how = self.world.rng.choice([signal.SIGKILL, signal.SIGTERM])
            restart_dockerd(how, min(seconds, 10.0))
        finally:
            self.world.heal()  # no restart policy: the servers come back as an operator's would
            self._free("engine")
        return True

    def _worker_kill(self, seconds: float) -> bool:
        """Kill a running worker, waiting up to `seconds` for one: workers are short, and a
        kind that finds nothing to hit in a two-minute soak would prove nothing about it."""
        labels = [f"label=unstoppable.customer={c.name}" for c in self.world.customers]
        deadline = time.monotonic() + seconds
        while True:
            found = []
            for label in labels:
                found += subprocess.run(
                    ["docker", "ps", "-q", "--filter", label], capture_output=True, text=True
                ).stdout.split()
            if found:
                victim = self.world.rng.choice(found)
                kill = subprocess.run(["docker", "kill", victim], capture_output=True)
                if kill.returncode == 0:
                    return True  # else it ended on its own just now: look again
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.3)

    def _server(self, seconds: float, off: str, on: str) -> bool:
        name = self.world.servers[self.world.rng.choice(SERVERS)]
        if not self._claim(name):
            return False
        try:
            if subprocess.run(["docker", off, name], capture_output=True).returncode != 0:
                return False
            time.sleep(seconds)
            return True
        finally:
            subprocess.run(["docker", on, name], capture_output=True)
            subprocess.run(
                ["docker", "start", name], capture_output=True
            )  # after an engine restart
            self._free(name)

    def _server_stop(self, seconds: float) -> bool:
        return self._server(seconds, "stop", "start")

    def _server_freeze(self, seconds: float) -> bool:
        return self._server(seconds, "pause", "unpause")

    def _server_slow(self, seconds: float) -> bool:
        """Pause the server for 0.4 s of every 0.5: it answers, five times slower."""
        name = self.world.servers[self.world.rng.choice(SERVERS)]
        if not self._claim(name):
            return False
        end = time.monotonic() + seconds
        try:
            while time.monotonic() < end:
                if subprocess.run(["docker", "pause", name], capture_output=True).returncode:
                    return False
                time.sleep(0.4)
                subprocess.run(["docker", "unpause", name], capture_output=True)
                time.sleep(0.1)
            return True
        finally:
            subprocess.run(["docker", "unpause", name], capture_output=True)
            self._free(name)

    def _full(self, seconds: float, which: str) -> bool:
        """Fill the filesystem to its last byte for a while, then free it."""
        path = self.world.filesystems[which]
        if not self._claim(f"full-{which}"):
            return False
        filler = path / ".soak-filler"
        try:
            with open(filler, "wb") as handle:
                free = os.statvfs(path).f_bavail * os.statvfs(path).f_frsize
                with contextlib.suppress(OSError):
                    os.posix_fallocate(handle.fileno(), 0, max(free, 1))
                with contextlib.suppress(OSError):
                    while True:  # the last bytes, and what was freed meanwhile
                        handle.write(b"\0" * 65536)
                        handle.flush()
            time.sleep(seconds)
            return True
        finally:
            filler.unlink(missing_ok=True)
            self._free(f"full-{which}")

    def _data_full(self, seconds: float) -> bool:
        return self._full(seconds, "data")

    def _cold_full(self, seconds: float) -> bool:
        return self._full(seconds, "cold")

    def _victim(self) -> Customer | None:
        customer = self.world.rng.choice(self.world.customers)
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


def repeated_for(injector: Injector, world: World) -> dict[JobKey, list[tuple[datetime, datetime]]]:
    """Return each job's spans of times a clock set back brought round again."""
    return {c.job: injector.repeated.get(c.store, []) for c in world.customers}
