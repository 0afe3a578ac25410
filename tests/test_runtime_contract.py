"""One contract for both runtimes: the fake the pure tests use must behave as Docker does.

Every test runs twice: on FakeRuntime, and on DockerRuntime against the real engine with
the worker image, its entrypoint replaced by `sh -c` and a script that does what the
fake's `Script` says. Only the Docker half needs the engine (`-m "not docker"` skips it).
"""

import shlex
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from orchestrator.errors import JobBusy, RuntimeUnavailable
from orchestrator.model import JobKey, Kind
from orchestrator.runtime.paths import SECRETS
from orchestrator.runtime.protocol import Finished, Runtime
from orchestrator.runtime.spec import ContainerSpec, Limits, Mount, container_name, labels
from tests.conftest import worker_image
from tests.fake_runtime import KILLED_EXIT, STOPPED_EXIT, FakeRuntime, Script

SCHEDULED = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
RUSTIC_VERSION = "unstoppable.rustic-version"


def shell(script: Script) -> str:
    """Return the `sh -c` program that does in a real worker what `script` says."""
    steps = [f"trap 'exit {STOPPED_EXIT}' TERM"] if script.hang else []
    if script.stdout:
        steps.append(f"printf %s {shlex.quote(script.stdout)}")
    if script.stderr:
        steps.append(f"printf %s {shlex.quote(script.stderr)} >&2")
    if script.allocates:  # tail holds a line in memory: one without a newline, whole
        # In a subshell whose stderr is dropped: sh reports a killed child ("Killed").
        steps.append(f"(head -c {script.allocates} /dev/zero | tail >/dev/null) 2>/dev/null")
        steps.append("rc=$?; [ $rc -eq 0 ] || exit $rc")
    if script.hang:
        steps.append("sleep 3600 & wait")  # wait, unlike sleep, returns to run the trap
    elif script.seconds:
        steps.append(f"sleep {script.seconds}")
    steps.append(f"exit {script.exit_code}")
    return "; ".join(steps)


@dataclass
class Harness:
    """One runtime under test, and how to give its workers a behaviour."""

    runtime: Runtime
    image: str
    busy: float  # how long a worker runs for the tests that need one running
    tell: Callable[[ContainerSpec, Script], None]  # the fake is told; Docker runs `shell`
    leave: Callable[[ContainerSpec], None]  # start it and walk away (a daemon killed)
    customer: str = field(default_factory=lambda: f"ct-{uuid.uuid4().hex[:8]}")
    secrets: Path | None = None

    def spec(
        self,
        script: Script,
        resource: str = "files",
        kind: Kind = Kind.BACKUP,
        image: str | None = None,
        origin: str = "daemon",
        limits: Limits | None = None,
    ) -> ContainerSpec:
        spec = ContainerSpec(
            name=container_name(JobKey(self.customer, resource), kind, datetime.now(UTC)),
            image=image or self.image,
            command=(shell(script),),
            labels=labels(JobKey(self.customer, resource), kind, SCHEDULED, origin),
            mounts=(Mount(self.secrets, SECRETS),) if self.secrets else (),
            entrypoint=("sh", "-c"),
            limits=limits or Limits(),
        )
        self.tell(spec, script)
        return spec

    def job(self, resource: str = "files") -> JobKey:
        return JobKey(self.customer, resource)

    def ours(self) -> list[str]:
        """Return the names of the managed containers this test created."""
        return sorted(
            w.name for w in self.runtime.workers() if w.label("customer") == self.customer
        )


@contextmanager
def fake_harness(tmp_path: Path) -> Iterator[Harness]:
    image = "unstoppable-worker:fake"
    fake = FakeRuntime({image: {RUSTIC_VERSION: "0.11.4"}})
    yield Harness(
        fake,
        image,
        busy=1.0,
        tell=lambda spec, script: fake.script(spec.name, script),
        leave=fake.start,
        secrets=tmp_path / "secrets",
    )


@contextmanager
def docker_harness(tmp_path: Path) -> Iterator[Harness]:
    from orchestrator.runtime.docker import DockerRuntime

    image = worker_image()
    if subprocess.run(["docker", "image", "inspect", image], capture_output=True).returncode:
        pytest.fail(f"worker image {image} missing or Docker unreachable: run `make provision`")

    def leave(spec: ContainerSpec) -> None:
        argv = ["docker", "run", "-d", "--name", spec.name, "--entrypoint", spec.entrypoint[0]]
        argv += [arg for key, value in spec.labels for arg in ("--label", f"{key}={value}")]
        for m in spec.mounts:
            argv += ["--mount", f"type=bind,src={m.source},dst={m.target},readonly"]
        subprocess.run([*argv, spec.image, *spec.entrypoint[1:], *spec.command], check=True)

    (tmp_path / "secrets").mkdir()
    harness = Harness(
        DockerRuntime(),
        image,
        busy=3.0,
        tell=lambda spec, script: None,
        leave=leave,
        secrets=tmp_path / "secrets",
    )
    try:
        yield harness
    finally:
        remove_containers(harness.customer)


def remove_containers(customer: str) -> None:
    """Remove what a failed test left, by the test's own customer label."""
    names = subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"label=unstoppable.customer={customer}"],
        capture_output=True,
        text=True,
    ).stdout.split()
    if names:
        subprocess.run(["docker", "rm", "-f", *names], capture_output=True)


@pytest.fixture(params=["fake", pytest.param("docker", marks=pytest.mark.docker)])
def h(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Harness]:
    make = fake_harness if request.param == "fake" else docker_harness
    with make(tmp_path) as harness:
        yield harness


def in_background(run: Callable[[], Finished]) -> tuple[threading.Thread, list[object]]:
    """Start `run` in a thread; the list receives its result or its exception."""
    out: list[object] = []

    def target() -> None:
        try:
            out.append(run())
        except Exception as exc:
            out.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, out


def until(predicate: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def test_exit_code_and_both_streams_come_back(h: Harness) -> None:
    spec = h.spec(Script(exit_code=3, stdout="out\n", stderr="err\n"))
    assert h.runtime.run(spec, timeout=60) == Finished(3, "out\n", "err\n", timed_out=False)
    assert h.ours() == [], "a run reaps its worker"
    assert h.job() not in h.runtime.running_jobs()


def test_the_name_is_the_jobs_lock_while_a_run_is_in_progress(h: Harness) -> None:
    first = h.spec(Script(stdout="first\n", seconds=h.busy))
    thread, out = in_background(lambda: h.runtime.run(first, timeout=60))
    until(lambda: h.job() in h.runtime.running_jobs(), "the first run to show")

    with pytest.raises(JobBusy):
        h.runtime.run(h.spec(Script(stdout="second\n")), timeout=60)  # the same name
    assert h.job() in h.runtime.running_jobs(), "a refused run leaves the first alone"
    thread.join(60)
    assert out == [Finished(0, "first\n", "", False)]
    assert h.job() not in h.runtime.running_jobs()
    assert h.ours() == []


def test_a_running_worker_of_the_job_under_another_name_holds_the_lock(h: Harness) -> None:
    first = h.spec(Script(seconds=h.busy))
    other = ContainerSpec(  # an older version's name for the same job
        f"{first.name}-old", first.image, first.command, first.labels, (), entrypoint=("sh", "-c")
    )
    h.tell(other, Script(seconds=h.busy))
    thread, out = in_background(lambda: h.runtime.run(other, timeout=60))
    until(lambda: h.job() in h.runtime.running_jobs(), "the old-named run to show")

    with pytest.raises(JobBusy):
        h.runtime.run(first, timeout=60)
    listing = h.spec(Script(stdout="[]\n"), kind=Kind.SNAPSHOTS)  # read-only: never waits
    assert h.runtime.run(listing, timeout=60) == Finished(0, "[]\n", "", False)
    thread.join(60)
    assert out == [Finished(0, "", "", False)]
    assert h.ours() == []


def test_a_run_past_its_timeout_is_stopped_and_says_so(h: Harness) -> None:
    spec = h.spec(Script(stdout="begun\n", hang=True))
    started = time.monotonic()
    done = h.runtime.run(spec, timeout=1)
    assert done == Finished(STOPPED_EXIT, "begun\n", "", timed_out=True)
    assert 1 <= time.monotonic() - started < 30
    assert h.ours() == []
    assert h.job() not in h.runtime.running_jobs()


def test_a_worker_left_running_is_listed_then_collected_and_reaped(h: Harness) -> None:
    spec = h.spec(Script(exit_code=5, stdout="left\n", stderr="behind\n", seconds=h.busy))
    before = datetime.now(UTC).replace(microsecond=0)
    h.leave(spec)

    (worker,) = [w for w in h.runtime.workers() if w.name == spec.name]
    assert worker.running
    assert set(spec.labels) <= set(worker.labels)
    assert worker.labels == tuple(sorted(worker.labels))
    # Docker gives a container its image's labels too.
    assert worker.label("rustic-version") == h.runtime.image_label(h.image, RUSTIC_VERSION)
    assert worker.label("job") == str(h.job()) and worker.label("origin") == "daemon"
    assert worker.label("scheduled-for") == "2026-03-02T10:00:00Z"
    assert before <= worker.started_at <= datetime.now(UTC) + timedelta(seconds=1)
    assert worker.started_at.tzinfo is not None
    assert worker.secrets == str(h.secrets)
    assert h.job() in h.runtime.running_jobs()

    assert h.runtime.collect(spec.name, timeout=60) == Finished(5, "left\n", "behind\n", False)
    assert h.ours() == []
    assert h.job() not in h.runtime.running_jobs()


def test_a_worker_that_exited_unwatched_is_listed_collected_and_frees_its_name(
    h: Harness,
) -> None:
    spec = h.spec(Script(exit_code=2, stdout="done\n"))
    h.leave(spec)
    until(lambda: not any(w.running for w in h.runtime.workers() if w.name == spec.name), "exit")

    assert h.ours() == [spec.name]
    assert h.job() not in h.runtime.running_jobs()
    assert h.runtime.collect(spec.name, timeout=60) == Finished(2, "done\n", "", False)
    assert h.ours() == []

    h.leave(h.spec(Script(exit_code=4)))
    until(lambda: not any(w.running for w in h.runtime.workers() if w.name == spec.name), "exit")
    again = h.spec(Script(stdout="fresh\n"))
    assert h.runtime.run(again, timeout=60) == Finished(0, "fresh\n", "", False)
    assert h.ours() == []


def test_collecting_a_worker_that_is_gone_is_runtime_unavailable(h: Harness) -> None:
    with pytest.raises(RuntimeUnavailable, match="vanished"):
        h.runtime.collect(f"unstoppable_{h.customer}_never", timeout=5)


def test_a_missing_image_is_runtime_unavailable_and_leaves_nothing(h: Harness) -> None:
    spec = h.spec(Script(), image="unstoppable-no-such-image:never")
    with pytest.raises(RuntimeUnavailable, match="not found"):
        h.runtime.run(spec, timeout=60)
    assert h.ours() == []


def test_image_labels_are_read_and_missing_ones_are_none(h: Harness) -> None:
    version = h.runtime.image_label(h.image, RUSTIC_VERSION)
    assert version is not None and version[0].isdigit()
    assert h.runtime.image_label(h.image, "unstoppable.no-such-label") is None
    assert h.runtime.image_label("unstoppable-no-such-image:never", RUSTIC_VERSION) is None


def test_a_worker_over_its_memory_limit_is_killed_and_says_so(h: Harness) -> None:
    limits = Limits(memory="32m")
    spec = h.spec(Script(stdout="begun\n", allocates=200 * 2**20, seconds=30), limits=limits)
    started = time.monotonic()
    done = h.runtime.run(spec, timeout=60)
    assert done == Finished(KILLED_EXIT, "begun\n", "", timed_out=False, oom_killed=True)
    assert time.monotonic() - started < 25, "killed at once, not after its 30 s"
    assert h.ours() == []

    within = h.spec(Script(stdout="fits\n", allocates=8 * 2**20), limits=limits)
    assert h.runtime.run(within, timeout=60) == Finished(0, "fits\n", "", False, False)


def test_only_the_end_of_each_output_stream_is_read_back(h: Harness) -> None:
    out = "".join(f"out line {i:04}\n" for i in range(400))  # 5600 bytes
    err = "".join(f"err {i:03}\n" for i in range(100))  # 800 bytes
    limits = Limits(stdout_bytes=1000, stderr_bytes=100)
    done = h.runtime.run(h.spec(Script(stdout=out, stderr=err), limits=limits), timeout=60)
    assert (
        done.stdout
        == "[output cut: only its last 1000 bytes were read]\n"
        + out[-1000:][out[-1000:].index("\n") + 1 :]
    )
    assert done.stdout.endswith("out line 0399\n")
    assert done.stderr.splitlines()[0] == "[output cut: only its last 100 bytes were read]"
    assert done.stderr.splitlines()[-1] == "err 099"
    whole = h.runtime.run(h.spec(Script(stdout="short\n"), limits=limits), timeout=60)
    assert whole.stdout == "short\n"


@pytest.mark.docker
def test_a_docker_worker_writes_only_to_its_mounts_and_tmpfs_within_its_pids(
    tmp_path: Path,
) -> None:
    with docker_harness(tmp_path) as h:
        spec = h.spec(Script(), limits=Limits(pids=32, tmpfs="1m"))
        probe = (
            "touch /tmp/ok && mkdir -p /remote/site && ! touch /etc/nope 2>/dev/null"
            " && ! head -c 2m /dev/zero > /tmp/big 2>/dev/null"  # /tmp is 1m
            " && ! (for i in $(seq 64); do sleep 5 & done; wait) 2>/dev/null"  # 32 pids
            " && echo confined"
        )
        done = h.runtime.run(replace(spec, command=(probe,)), timeout=60)
        assert done == Finished(0, "confined\n", "", False)


def test_a_restore_reads_beside_a_backup_and_is_known_as_a_reader(h: Harness) -> None:
    """A restore never holds the job: a backup runs beside it; a prune is told it reads."""
    restore = h.spec(Script(stdout="restored\n", seconds=h.busy), kind=Kind.RESTORE)
    thread, out = in_background(lambda: h.runtime.run(restore, timeout=60))
    until(lambda: h.job() in h.runtime.reading_jobs(), "the restore to show as reading")
    assert h.job() not in h.runtime.running_jobs(), "a reader does not hold the job"
    backup = h.spec(Script(stdout="backed up\n"))
    assert h.runtime.run(backup, timeout=60) == Finished(0, "backed up\n", "", False)
    thread.join(60)
    assert out == [Finished(0, "restored\n", "", False)]
    assert h.job() not in h.runtime.reading_jobs()
    assert h.ours() == []
