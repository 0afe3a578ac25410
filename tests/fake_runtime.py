"""The fake runtime: the `Runtime` protocol in memory, each worker's behaviour told by the test.

It keeps DockerRuntime's rules, which tests/test_runtime_contract.py holds both to: the
container name is the job's lock (a second run of a name in use raises JobBusy, a leftover
that exited is reaped first), a running worker of the same job under another name holds the
lock too (except a snapshot listing), `unstoppable.job` labels of running managed workers are
the running jobs, a worker past its timeout is stopped and reported `timed_out`, one that
allocates past its memory limit is killed (exit 137) and reported `oom_killed`, only the end
of each output stream is read back, and every result is read once and its worker removed. Time is real: a worker runs for its `seconds`.
"""

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from orchestrator.errors import JobBusy, RuntimeUnavailable
from orchestrator.model import JobKey, reads_only
from orchestrator.runtime.paths import SECRETS
from orchestrator.runtime.protocol import Finished, WorkerInfo, jobs_with
from orchestrator.runtime.spec import ContainerSpec, Limits, size_bytes
from orchestrator.runtime.text import tail

# What a worker that honours SIGTERM exits with when its timeout stops it (128 + 15).
STOPPED_EXIT = 143
# What a worker whose process the kernel killed for memory exits with (128 + SIGKILL).
KILLED_EXIT = 137


@dataclass(frozen=True)
class Script:
    """What a worker does: print `stdout` and `stderr`, run `seconds`, exit `exit_code`.

    A worker that hangs runs until its timeout stops it (exit STOPPED_EXIT) or the test
    ends it with `FakeRuntime.end`.
    """

    exit_code: int = 0
    stdout: str = ""
    stderr: str = ""
    seconds: float = 0.0
    hang: bool = False
    allocates: int = 0  # bytes it allocates: past its memory limit the kernel kills it


@dataclass
class _Container:
    spec: ContainerSpec
    labels: dict[str, str]  # the image's labels, then the spec's: Docker merges them so
    script: Script
    started_at: datetime
    ends_at: float | None  # time.monotonic() when it exits by itself; None while it hangs
    exit_code: int | None = None  # set once it was stopped or ended early

    def running(self) -> bool:
        if self.exit_code is not None:
            return False
        return self.ends_at is None or time.monotonic() < self.ends_at

    def oom_killed(self) -> bool:
        return self.script.allocates > size_bytes(self.spec.limits.memory)

    def result(self) -> int:
        if self.exit_code is not None:
            return self.exit_code
        return KILLED_EXIT if self.oom_killed() else self.script.exit_code

    def label(self, key: str) -> str:
        return self.labels.get(key, "")


class FakeRuntime:
    """Runs no container: each worker does what its `Script` says, in memory."""

    def __init__(
        self,
        images: Mapping[str, Mapping[str, str]] | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.images = {image: dict(labels) for image, labels in (images or {}).items()}
        self.clock = clock
        self.scripts: dict[str, Script] = {}
        self.default = Script()
        self.available = True  # False: the engine is gone, every call says so
        self.started: list[ContainerSpec] = []  # every worker started, in order
        self._containers: dict[str, _Container] = {}
        self._changed = threading.Condition()

    # --- what the test tells it -------------------------------------------------------------

    def script(self, name: str, script: Script) -> None:
        """Make every worker named `name` behave as `script` (others: `self.default`)."""
        self.scripts[name] = script

    def start(self, spec: ContainerSpec, started_at: datetime | None = None) -> None:
        """Start `spec` and walk away, as a daemon killed right after starting it did.

        Raises JobBusy and RuntimeUnavailable as `run` does.
        """
        self._up()
        script = self.scripts.get(spec.name, self.default)
        with self._changed:
            self._refuse_if_busy(spec)
            leftover = self._containers.get(spec.name)
            if leftover is not None and leftover.running():
                raise JobBusy(f"{spec.name} is running: the job is busy, try again when it ends")
            if spec.image not in self.images:
                raise RuntimeUnavailable(f"worker image {spec.image} not found")
            moment = started_at or self.clock()
            killed = script.allocates > size_bytes(spec.limits.memory)  # before it hangs
            self._containers[spec.name] = _Container(
                spec,
                {**self.images[spec.image], **dict(spec.labels)},
                script,
                moment.astimezone(UTC).replace(microsecond=0),  # Docker's precision
                None
                if script.hang and not killed
                else time.monotonic() + (0 if killed else script.seconds),
            )
            self.started.append(spec)
            self._changed.notify_all()

    def end(self, name: str, exit_code: int | None = None) -> None:
        """Make the running worker `name` exit now, with `exit_code` or its script's."""
        with self._changed:
            container = self._containers[name]
            if container.running():
                container.exit_code = container.script.exit_code if exit_code is None else exit_code
            self._changed.notify_all()

    def names(self) -> set[str]:
        """Return the names of every container it holds, running or not, managed or not."""
        with self._changed:
            return set(self._containers)

    # --- the Runtime protocol ---------------------------------------------------------------

    def running_jobs(self) -> frozenset[JobKey]:
        """Return the jobs (`unstoppable.job` labels) of running managed containers."""
        self._up()
        with self._changed:
            running = [dict(c.spec.labels) for c in self._managed() if c.running()]
            return jobs_with(running, reading=False)

    def reading_jobs(self) -> frozenset[JobKey]:
        """Return the jobs with a running managed container that only reads."""
        self._up()
        with self._changed:
            running = [dict(c.spec.labels) for c in self._managed() if c.running()]
            return jobs_with(running, reading=True)

    def image_label(self, image: str, key: str) -> str | None:
        """Return the label `key` of the local image `image`, or None."""
        if not self.available:
            return None
        return self.images.get(image, {}).get(key)

    def workers(self) -> list[WorkerInfo]:
        """Return every managed container, running or not."""
        self._up()
        with self._changed:
            return [
                WorkerInfo(
                    c.spec.name,
                    tuple(sorted(c.labels.items())),
                    c.running(),
                    c.started_at,
                    next((str(m.source) for m in c.spec.mounts if m.target == SECRETS), ""),
                )
                for c in self._managed()
            ]

    def collect(self, name: str, timeout: float | None, limits: Limits | None = None) -> Finished:
        """Wait for the worker `name` (stopping it after `timeout` s), read the end of its
        output as `limits` says (an adopted one: the defaults), remove it."""
        limits = limits or Limits()
        self._up()
        deadline = None if timeout is None else time.monotonic() + max(timeout, 0.001)
        timed_out = False
        with self._changed:
            container = self._containers.get(name)
            if container is None:
                raise RuntimeUnavailable(f"{name}: the worker vanished before its result was read")
            while container.running():
                now = time.monotonic()
                if deadline is not None and now >= deadline:
                    container.exit_code = STOPPED_EXIT
                    timed_out = True
                    break
                waits = [t - now for t in (container.ends_at, deadline) if t is not None]
                self._changed.wait(min(waits) if waits else None)
            if self._containers.get(name) is not container:
                raise RuntimeUnavailable(f"{name}: the worker vanished before its result was read")
            del self._containers[name]
            self._changed.notify_all()
        script = container.script
        return Finished(
            container.result(),
            tail([script.stdout.encode()], limits.stdout_bytes),
            tail([script.stderr.encode()], limits.stderr_bytes),
            timed_out,
            container.oom_killed() and not timed_out,
        )

    def run(self, spec: ContainerSpec, timeout: float | None) -> Finished:
        """Start `spec`, wait for it (stopping it after `timeout` s), read it, remove it.

        Raises JobBusy if a container of that name exists, RuntimeUnavailable otherwise.
        """
        self.start(spec)
        return self.collect(spec.name, timeout, spec.limits)

    # --- the rules DockerRuntime keeps ------------------------------------------------------

    def _up(self) -> None:
        if not self.available:
            raise RuntimeUnavailable("cannot reach the Docker engine: the fake engine is down")

    def _managed(self) -> list[_Container]:
        return [c for c in self._containers.values() if c.label("unstoppable.managed") == "true"]

    def _refuse_if_busy(self, spec: ContainerSpec) -> None:
        """Raise JobBusy if a running worker of the same job holds another name."""
        labels = dict(spec.labels)
        job = labels.get("unstoppable.job")
        if not job or reads_only(labels.get("unstoppable.kind", "")):
            return
        for other in self._containers.values():
            if (
                other.spec.name != spec.name
                and other.running()
                and other.label("unstoppable.job") == job
                and not reads_only(other.label("unstoppable.kind"))
            ):
                raise JobBusy(f"{other.spec.name} is running a run of {job}")
