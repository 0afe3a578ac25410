"""Workers as Docker Swarm services (UNSTOPPABLE_RUNTIME=swarm), on a single-node swarm.

The swarm is initialised for this module and left again after it. What runs is judged from
the engine's own events, `docker service inspect` and `docker inspect`, not from the daemon.
"""

import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from orchestrator.errors import RuntimeUnavailable
from orchestrator.model import JobKey, Kind
from orchestrator.reporting.history import Event
from orchestrator.reporting.ledger import Ledger
from orchestrator.runtime.paths import SECRETS
from orchestrator.runtime.protocol import Finished
from orchestrator.runtime.spec import ContainerSpec, Limits, Mount, container_name, labels
from tests.conftest import ROOT, Site, worker_image
from tests.fake_runtime import KILLED_EXIT, STOPPED_EXIT, Script
from tests.helpers import (
    DaemonProcess,
    Events,
    assert_never_overlapping,
    customer,
    running_workers,
    starts,
    wait_until,
)
from tests.test_remote import contents
from tests.test_runtime_contract import shell

pytestmark = pytest.mark.docker
EVERY_5S = "* * * * * */5"


def docker(*args: str) -> str:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=True).stdout


def services(prefix: str) -> list[str]:
    names = docker(
        "service", "ls", "--filter", "label=unstoppable.managed=true", "--format", "{{.Name}}"
    )
    return [n for n in names.split() if n.startswith(f"unstoppable_{prefix}")]


def orphan_secrets() -> set[str]:
    """Return the managed secrets no service refers to: a run's that was never removed."""
    found = docker("secret", "ls", "-q", "--filter", "label=unstoppable.managed=true").split()
    held = set()
    for name in services(""):
        spec = json.loads(docker("service", "inspect", name))[0]["Spec"]
        held |= {s["SecretID"] for s in spec["TaskTemplate"]["ContainerSpec"].get("Secrets") or []}
    return {secret for secret in found if not any(h.startswith(secret) for h in held)}


@pytest.fixture(scope="module")
def swarm(docker_ready: None) -> Iterator[None]:
    """A single-node swarm on 127.0.0.1 for this module; left (with --force) after it."""
    before = docker("info", "--format", "{{.Swarm.LocalNodeState}}").strip()
    assert before == "inactive", f"this engine is already in a swarm ({before}): not touching it"
    docker("swarm", "init", "--advertise-addr", "127.0.0.1")
    try:
        yield
    finally:
        for name in services(""):
            subprocess.run(["docker", "service", "rm", name], capture_output=True)
        docker("swarm", "leave", "--force")


@pytest.fixture
def swarm_site(site: Site, swarm: None) -> Site:
    site.env["UNSTOPPABLE_RUNTIME"] = "swarm"
    return site


def test_the_daemon_runs_each_job_as_a_swarm_service_and_adopts_after_kill_9(
    swarm_site: Site, daemon: DaemonProcess, unique: str, slow_image: str
) -> None:
    site = swarm_site
    site.env["UNSTOPPABLE_WORKER_IMAGE"] = slow_image
    slow, quick = f"sw1-{unique}", f"sw2-{unique}"
    customer(site, slow, EVERY_5S, delay=14)
    source = customer(site, quick, EVERY_5S)
    (source / "more.bin").write_bytes(bytes(range(256)) * 400)
    ledger = Ledger(site.data / "state")
    events = Events()
    daemon.start()
    wait_until(lambda: services(slow), 30, "the slow customer's service")
    # While it runs: its secrets are swarm secrets, seen nowhere an inspection shows.
    name = services(slow)[0]
    service = docker("service", "inspect", name)
    spec = json.loads(service)[0]["Spec"]
    secrets = spec["TaskTemplate"]["ContainerSpec"]["Secrets"]
    assert {s["File"]["Name"] for s in secrets} == {"/run/unstoppable/secrets/repo-password"}
    assert spec["Labels"]["unstoppable.job"] == f"{slow}/files"
    assert spec["Mode"] == {"ReplicatedJob": {"MaxConcurrent": 1, "TotalCompletions": 1}}
    wait_until(
        lambda: docker("ps", "-q", "--filter", f"label=com.docker.swarm.service.name={name}"),
        30,
        "its task's container",
    )
    task = docker("ps", "-q", "--filter", f"label=com.docker.swarm.service.name={name}").split()[0]
    container = json.loads(docker("inspect", task))[0]
    for shown in (service, json.dumps(container["Config"]), json.dumps(container["HostConfig"])):
        assert f"pw-{slow}" not in shown
    assert not [e for e in container["Config"]["Env"] or [] if "PASSWORD" in e.upper()]
    assert not list((site.data / "secrets").glob(f"*{slow}*/*")), "no copy left on the disk"

    # kill -9 of the daemon mid-run; the service outlives it and is adopted, not doubled.
    daemon.signal(signal.SIGKILL)
    daemon.wait(5)
    time.sleep(6)  # a scheduled time of the slow job passes while no daemon runs
    assert services(slow) == [name], "the run must outlive the daemon"
    daemon.start()
    wait_until(
        lambda: ledger.history.runs(JobKey.parse(f"{slow}/files")), 60, "the adopted run's result"
    )
    wait_until(
        lambda: len(ledger.history.runs(JobKey.parse(f"{slow}/files"))) >= 2,
        60,
        "a later run of it",
    )
    wait_until(
        lambda: len(ledger.history.runs(JobKey.parse(f"{quick}/files"))) >= 3,
        60,
        "the quick customer",
    )
    daemon.signal(signal.SIGTERM)
    assert daemon.wait(10) == 0
    wait_until(lambda: not running_workers("sw"), 60, "the last tasks to end")
    log = events.stop()

    assert_never_overlapping(log, f"{slow}/files", f"{quick}/files")
    first = starts(log, f"{slow}/files")
    for attributes in first + starts(log, f"{quick}/files"):
        assert attributes["com.docker.swarm.task.id"]
        assert attributes["com.docker.swarm.service.name"]
        assert attributes["unstoppable.managed"] == "true"
        assert attributes["unstoppable.kind"] == "backup"
    runs = ledger.history.runs(JobKey.parse(f"{slow}/files"))
    adopted = datetime.fromisoformat(first[0]["unstoppable.scheduled-for"].replace("Z", "+00:00"))
    assert runs[0].scheduled_for == adopted.isoformat() and runs[0].result == "success", runs
    assert (
        sum(
            1
            for s in first
            if s["unstoppable.scheduled-for"] == first[0]["unstoppable.scheduled-for"]
        )
        == 1
    )
    assert ledger.history.event_count(JobKey.parse(f"{slow}/files"), Event.SKIPPED, "overlap") >= 1
    assert "adopting" in daemon.text()
    assert {r.result for r in ledger.history.runs(JobKey.parse(f"{quick}/files"))} == {"success"}
    assert not orphan_secrets()

    target = site.root / "restored"
    site.cli("restore", quick, "files", "--target", str(target), check=True)
    assert contents(target) == contents(source)


def test_two_runs_of_one_job_never_start_together_across_the_cluster(
    swarm_site: Site, unique: str, slow_image: str
) -> None:
    """The service name is the lock: a CLI run beside a running one is skipped, not doubled."""
    site = swarm_site
    site.env["UNSTOPPABLE_WORKER_IMAGE"] = slow_image
    name = f"swlock-{unique}"
    customer(site, name, "0 3 * * *", delay=8)
    events = Events()
    first = subprocess.Popen(
        [sys.executable, "-m", "orchestrator.cli", "backup", name],
        env=site.env,
        cwd=ROOT,
        text=True,
        stdout=subprocess.PIPE,
    )
    wait_until(lambda: services(name), 30, "the first run's service")
    second = site.cli("backup", name)
    out = first.communicate(timeout=60)[0]
    assert first.returncode == 0, out
    log = events.stop()
    assert f"{name}/files: skipped (overlap)" in second.stdout, second.stdout
    assert len(starts(log, f"{name}/files")) == 1
    assert not services(name) and not orphan_secrets()


def test_a_remote_source_is_refused_on_swarm_with_what_to_do(swarm_site: Site, unique: str) -> None:
    """Services get no /dev/fuse here: said plainly, and the run fails, nothing started."""
    name = f"swftp-{unique}"
    swarm_site.customer(
        name,
        'SCHEDULE="0 3 * * *"\nREPO_PASSWORD=pw\nRESOURCES=site\nSITE_TYPE=ftps\n'
        "SITE_HOST=127.0.0.1\nSITE_USER=u\nSITE_PASSWORD=p\nSITE_PATH=/\nSITE_TLS_VERIFY=false\n",
    )
    done = swarm_site.cli("backup", name)
    assert done.returncode != 0
    assert "UNSTOPPABLE_RUNTIME=docker" in done.stdout + done.stderr, done.stdout + done.stderr
    assert not services(name)


def swarm_spec(
    customer: str, script: Script, image: str | None = None, limits: Limits | None = None
) -> ContainerSpec:
    return ContainerSpec(
        name=container_name(JobKey(customer, "files"), Kind.BACKUP, datetime.now(UTC)),
        image=image or worker_image(),
        command=(shell(script),),
        labels=labels(JobKey(customer, "files"), Kind.BACKUP, datetime.now(UTC), "daemon"),
        mounts=(),
        entrypoint=("sh", "-c"),
        limits=limits or Limits(),
    )


def test_the_swarm_runtime_keeps_the_runtime_contract(swarm: None, unique: str) -> None:
    """What the contract tests ask of DockerRuntime, where swarm can give it."""
    from orchestrator.runtime.swarm import SwarmRuntime

    runtime = SwarmRuntime()
    name = f"swc-{unique}"
    done = runtime.run(swarm_spec(name, Script(exit_code=3, stdout="out\n", stderr="err\n")), 60)
    assert done == Finished(3, "out\n", "err\n", timed_out=False)
    # Over its memory limit: killed, and said so (the task's container knows, its status not).
    hog = Script(stdout="begun\n", allocates=200 * 2**20)
    done = runtime.run(swarm_spec(name, hog, limits=Limits(memory="32m")), 60)
    assert done == Finished(KILLED_EXIT, "begun\n", "", timed_out=False, oom_killed=True)
    # Only the end of the output is read back; the root is read-only, /tmp is not.
    noisy = Script(stdout="".join(f"line {i:04}\n" for i in range(300)))
    done = runtime.run(swarm_spec(name, noisy, limits=Limits(stdout_bytes=100)), 60)
    assert done.stdout.startswith("[output cut: only its last 100 bytes were read]\n")
    assert done.stdout.endswith("line 0299\n") and len(done.stdout) < 160
    probe = Script(stdout="x")  # its command is replaced below: writes where it may not
    spec = swarm_spec(name, probe)
    spec = replace(spec, command=("touch /tmp/ok && ! touch /etc/nope 2>/dev/null",))
    assert runtime.run(spec, 60).exit_code == 0
    # Past its timeout: stopped as a container is (SIGTERM, the trap answers), and said so.
    started = time.monotonic()
    done = runtime.run(swarm_spec(name, Script(stdout="begun\n", hang=True)), timeout=3)
    assert done == Finished(STOPPED_EXIT, "begun\n", "", timed_out=True)
    assert time.monotonic() - started < 40
    # A missing image: a clear error, nothing left behind.
    with pytest.raises(RuntimeUnavailable, match="not found"):
        runtime.run(swarm_spec(name, Script(), image="unstoppable-no-such-image:never"), 60)
    # A run whose collector died: its ended service holds the name until the next run reaps it.
    left = swarm_spec(name, Script(exit_code=4))
    runtime._create(left, left.name, [])
    wait_until(lambda: JobKey(name, "files") not in runtime.running_jobs(), 30, "the left run")
    # Its own only: a run an earlier test's daemon left at its stop is the next daemon's.
    assert [w.name for w in runtime.workers() if w.label("customer") == name] == [left.name]
    done = runtime.run(swarm_spec(name, Script(stdout="fresh\n")), 60)
    assert done == Finished(0, "fresh\n", "", False)
    assert not services(name)
    assert not [w for w in runtime.workers() if w.label("customer") == name]
    with pytest.raises(RuntimeUnavailable, match="vanished"):
        runtime.collect(f"unstoppable_{name}_never", timeout=5)


def test_secrets_of_a_run_that_never_got_its_service_are_swept(
    swarm: None, unique: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A daemon killed between creating a run's secrets and its service leaves them unused:
    the next listing removes them once old enough, and never a running run's secret."""
    from orchestrator.runtime import swarm_secrets
    from orchestrator.runtime.swarm import SwarmRuntime

    runtime = SwarmRuntime()
    orphan = tmp_path / "orphan"
    orphan.mkdir()
    (orphan / "repo-password").write_text("pw-orphan")
    runtime.secrets.create(orphan, f"orphan-{unique}")  # ...and the daemon dies here
    assert not list(orphan.iterdir()), "the host copy goes once the swarm holds it"
    assert secrets_of(f"orphan-{unique}")
    live = tmp_path / "live"
    live.mkdir()
    (live / "repo-password").write_text("pw-live")
    spec = ContainerSpec(
        name=container_name(JobKey(f"sws-{unique}", "files"), Kind.BACKUP, datetime.now(UTC)),
        image=worker_image(),
        command=("sleep 4; cat /run/unstoppable/secrets/repo-password",),
        labels=labels(JobKey(f"sws-{unique}", "files"), Kind.BACKUP, datetime.now(UTC), "daemon"),
        mounts=(Mount(live, SECRETS),),
        entrypoint=("sh", "-c"),
    )
    done: list[Finished] = []
    thread = threading.Thread(target=lambda: done.append(runtime.run(spec, 60)))
    thread.start()
    wait_until(lambda: services(f"sws-{unique}"), 30, "the live run's service")
    monkeypatch.setattr(swarm_secrets, "ORPHAN_AGE", timedelta(0))
    runtime.workers()
    assert not secrets_of(f"orphan-{unique}")
    thread.join(60)
    assert done == [Finished(0, "pw-live", "", False)]
    assert not orphan_secrets()


def secrets_of(run: str) -> list[str]:
    return docker("secret", "ls", "-q", "--filter", f"label=unstoppable.run={run}").split()


def test_a_job_whose_name_is_past_swarms_limit_runs_under_its_short_name(
    swarm_site: Site, unique: str
) -> None:
    """Swarm allows 63 letters, digits, '-' and '_' in a service name: a 60-character
    customer's runs go under the shortened name, and its backup restores."""
    site = swarm_site
    name = f"long-{'x' * 46}-{unique}"
    source = customer(site, name, "0 3 * * *")
    events = Events()
    site.cli("backup", name, check=True)
    log = events.stop()
    (started,) = starts(log, f"{name}/files")
    service = started["com.docker.swarm.service.name"]
    assert len(service) <= 63 and "__" in service and service.startswith("unstoppable_long-")
    target = site.root / "restored"
    site.cli("restore", name, "files", "--target", str(target), check=True)
    assert contents(target) == contents(source)
