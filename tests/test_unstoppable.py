"""The daemon against hostile input and a hostile host, end to end with real Docker.

What ran is judged from Docker's event stream and the ledger, never from the daemon's word.
"""

import ipaddress
import os
import signal
import sqlite3
import subprocess
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from orchestrator.model import JobKey
from orchestrator.reporting.history import Event
from orchestrator.reporting.ledger import Ledger
from tests.conftest import Site
from tests.helpers import (
    DaemonProcess,
    Events,
    assert_never_overlapping,
    restart_dockerd,
    running_workers,
    wait_until,
)
from tests.hostile import HOST_KEY, DripServer, valid_text, write_broken
from tests.servers import free_port

pytestmark = pytest.mark.docker
EVERY_5S = "* * * * * */5"


def source(site: Site, name: str, delay: int = 0) -> Path:
    path = site.root / f"src-{name}"
    path.mkdir(exist_ok=True)
    (path / "data.txt").write_text(f"data of {name}")
    if delay:
        (path / ".test-delay").write_text(str(delay))
    return path


def successes(ledger: Ledger, job: str | JobKey) -> int:
    key = JobKey.parse(job) if isinstance(job, str) else job
    return sum(1 for row in ledger.history.runs(key) if row.result == "success")


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        return str(response.read().decode())


def windows(events: list[dict[str, object]], job: str) -> list[tuple[int, int]]:
    """Return the (start, die) times in ns of every worker of `job`, from Docker's events."""
    opened: list[int] = []
    spans = []
    for event in sorted(events, key=lambda e: int(e["timeNano"])):  # type: ignore[call-overload]
        if event["Actor"]["Attributes"].get("unstoppable.job") != job:  # type: ignore[index]
            continue
        if event["status"] == "start":
            opened.append(int(event["timeNano"]))  # type: ignore[call-overload]
        elif event["status"] == "die" and opened:
            spans.append((opened.pop(0), int(event["timeNano"])))  # type: ignore[call-overload]
    return spans


def test_broken_files_and_colliding_names_stop_nobody(
    site: Site, daemon: DaemonProcess, unique: str, slow_image: str
) -> None:
    """A minute beside 17 broken files: the good customer runs every tick, both colliders too."""
    port = free_port()
    site.env["UNSTOPPABLE_WORKER_IMAGE"] = slow_image
    site.env["UNSTOPPABLE_METRICS_LISTEN"] = f"127.0.0.1:{port}"
    broken = write_broken(site.customers, source(site, f"b-{unique}"), unique)
    good = f"good-{unique}"
    site.customer(good, valid_text(good, "files", source(site, good), EVERY_5S))
    # Joined with '-', both were "c<u>-a-site": one container name, one secrets directory.
    left, right = (f"c{unique}-a", "site"), (f"c{unique}", "a-site")
    for name, resource in (left, right):
        site.customer(name, valid_text(name, resource, source(site, name, delay=3), EVERY_5S))
    events = Events()
    daemon.start()
    ledger = Ledger(site.data / "state")
    colliders = [JobKey(name, resource) for name, resource in (left, right)]
    wait_until(
        lambda: (
            successes(ledger, f"{good}/files") >= 10
            and all(successes(ledger, job) >= 5 for job in colliders)
        ),
        90,
        "ten runs of the good customer and five of each collider",
    )
    assert daemon.proc is not None and daemon.proc.poll() is None, "the daemon must keep running"
    metrics = scrape(port)
    daemon.signal(signal.SIGTERM)
    assert daemon.wait(15) == 0
    log = events.stop()

    assert_never_overlapping(log, *(f"{name}/{resource}" for name, resource in (left, right)))
    assert successes(ledger, f"{good}/files") >= 10, ledger.history.runs(
        JobKey.parse(f"{good}/files")
    )
    assert ledger.history.event_count(JobKey.parse(f"{good}/files"), Event.SKIPPED) == 0
    for name, resource in (left, right):
        job = JobKey(name, resource)
        assert successes(ledger, job) >= 5, ledger.history.runs(job)
        assert {row.result for row in ledger.history.runs(job)} == {"success"}, ledger.history.runs(
            job
        )
        assert ledger.history.event_count(job, Event.SKIPPED) == 0, f"{job} was skipped"
    # Both colliding jobs really ran at the same time, by Docker's own account.
    a, b = windows(log, f"{left[0]}/{left[1]}"), windows(log, f"{right[0]}/{right[1]}")
    assert any(s1 < e2 and s2 < e1 for s1, e1 in a for s2, e2 in b), "never concurrent"
    for name in broken:
        stem = name.removesuffix(".env").replace("\\", "\\\\")  # escaped as in the text format
        assert f'unstoppable_config_valid{{customer="{stem}"}} 0.0' in metrics, stem
    assert f'unstoppable_config_valid{{customer="{good}"}} 1.0' in metrics
    assert "Traceback" not in daemon.text()


def test_a_dripping_ftps_server_holds_only_its_own_job(
    site: Site, daemon: DaemonProcess, unique: str
) -> None:
    """The certificate fetch ends at its deadline with a reason; the others run meanwhile."""
    drip = DripServer(b"220-" + b"x" * 10_000)
    slow, fast = f"drip-{unique}", f"fast-{unique}"
    site.customer(
        slow,
        f'SCHEDULE="{EVERY_5S}"\nREPO_PASSWORD=pw\nRESOURCES=site\nSITE_TYPE=ftps\n'
        f"SITE_HOST=127.0.0.1\nSITE_PORT={drip.port}\nSITE_USER=u\nSITE_PASSWORD=p\n"
        f"SITE_PATH=/\nSITE_TLS_FINGERPRINT=sha256:{':'.join(['AB'] * 32)}\n",
    )
    site.customer(fast, valid_text(fast, "files", source(site, fast), EVERY_5S))
    try:
        daemon.start()
        ledger = Ledger(site.data / "state")
        wait_until(
            lambda: ledger.history.runs(JobKey.parse(f"{slow}/site")), 60, "the dripping job to end"
        )
    finally:
        daemon.signal(signal.SIGTERM)
        daemon.wait(15)
        drip.close()
    with sqlite3.connect(site.data / "state" / "ledger.sqlite3") as db:
        started, ended, result, reason, message = db.execute(
            "SELECT started, ended, result, reason, message FROM runs"
            " WHERE customer = ? ORDER BY id LIMIT 1",
            (slow,),
        ).fetchone()
        fast_runs = db.execute(
            "SELECT count(*) FROM runs WHERE customer = ? AND result = 'success' AND ended <= ?",
            (fast, ended),
        ).fetchone()[0]
    held = datetime.fromisoformat(ended) - datetime.fromisoformat(started)
    assert (result, reason) == ("failure", "connect"), message
    assert "within 20 s" in message
    assert held < timedelta(seconds=30), held
    assert fast_runs >= 3, "the other customer must be backed up while the server drips"


def test_a_customer_with_more_resources_than_slots_leaves_room_for_others(
    site: Site, daemon: DaemonProcess, unique: str, slow_image: str
) -> None:
    """MAX_PARALLEL=2, one customer with 3 slow resources: another's job starts on time."""
    site.env["UNSTOPPABLE_WORKER_IMAGE"] = slow_image
    site.env["UNSTOPPABLE_MAX_PARALLEL"] = "2"
    heavy, light = f"heavy-{unique}", f"light-{unique}"
    lines = ['SCHEDULE="* * * * * 0,30"\nREPO_PASSWORD=pw\nRESOURCES=r-1,r-2,r-3\n']
    for r in ("r-1", "r-2", "r-3"):
        key = r.upper().replace("-", "_")
        lines.append(f"{key}_TYPE=local\n{key}_PATH={source(site, f'{heavy}-{r}', delay=20)}\n")
    site.customer(heavy, "".join(lines))
    site.customer(light, valid_text(light, "files", source(site, light), "* * * * * 5,35"))
    events = Events()
    daemon.start()
    ledger = Ledger(site.data / "state")
    # Whichever fires first after the start, judge the first light run after a heavy start.
    wait_until(lambda: running_workers(heavy), 60, "the heavy customer's workers")
    before = successes(ledger, f"{light}/files")
    wait_until(lambda: successes(ledger, f"{light}/files") > before, 90, "a light run beside them")
    daemon.signal(signal.SIGTERM)
    daemon.wait(15)
    subprocess.run(
        f"docker ps -q --filter label=unstoppable.customer={heavy} | xargs -r docker rm -f",
        shell=True,
        check=False,
    )
    log = events.stop()

    heavy_spans = [s for r in ("r-1", "r-2", "r-3") for s in windows(log, f"{heavy}/{r}")]
    heavy_starts = sorted(start for start, _ in heavy_spans)
    assert heavy_starts, "the heavy customer ran"
    light_start = min(s for s, _ in windows(log, f"{light}/files") if s > heavy_starts[0])
    # The light job started while the heavy customer's first run still held its slot.
    first_heavy_end = min(end for _, end in heavy_spans)
    assert light_start < first_heavy_end, "the light job waited for the heavy customer"
    concurrent_heavy = sum(1 for s, e in heavy_spans if s <= light_start < e)
    assert concurrent_heavy == 1, "the heavy customer holds its share, one slot of two"
    assert ledger.history.event_count(JobKey.parse(f"{light}/files"), Event.SKIPPED) == 0


def test_a_corrupt_ledger_and_a_clock_behind_the_ledger_are_survived(
    site: Site, daemon: DaemonProcess, unique: str
) -> None:
    """Garbage in the ledger file, and a last tick a day ahead: backups go on at once."""
    port = free_port()
    site.env["UNSTOPPABLE_METRICS_LISTEN"] = f"127.0.0.1:{port}"
    name = f"led-{unique}"
    site.customer(name, valid_text(name, "files", source(site, name), EVERY_5S))
    state = site.data / "state"
    state.mkdir(parents=True)
    (state / "ledger.sqlite3").write_bytes(os.urandom(8192))
    daemon.start()
    wait_until(lambda: "moved aside" in daemon.text(), 30, "the daemon to set the ledger aside")
    ledger = Ledger(state)
    wait_until(lambda: successes(ledger, f"{name}/files") >= 2, 60, "backups in a new ledger")
    assert len(list(state.glob("ledger.sqlite3.corrupt-*"))) == 1, "the damaged file is kept"
    daemon.signal(signal.SIGTERM)
    assert daemon.wait(15) == 0

    # The clock is now a day behind what the ledger remembers (as after a clock step back).
    ledger.db.set_state("last_tick", (datetime.now(UTC) + timedelta(days=1)).isoformat())
    before = successes(ledger, f"{name}/files")
    daemon.start()
    wait_until(lambda: successes(ledger, f"{name}/files") > before, 30, "a run despite the jump")
    assert 'unstoppable_daemon_errors_total{what="clock"} 1.0' in scrape(port)
    daemon.signal(signal.SIGTERM)
    assert daemon.wait(15) == 0
    assert "Traceback" not in daemon.text()


def test_a_refused_fuse_mount_is_its_own_reason(site: Site, unique: str) -> None:
    """A worker whose FUSE mount is refused (as AppArmor's default profile does) says `mount`."""
    from orchestrator.config.confinement import Confinement
    from orchestrator.config.customer_file import load_customer
    from orchestrator.config.settings_file import load_settings
    from orchestrator.runs import Jobs
    from orchestrator.runtime.docker import DockerRuntime
    from orchestrator.runtime.paths import SECRETS
    from orchestrator.runtime.spec import ContainerSpec, Mount

    secrets = site.root / "secrets"
    secrets.mkdir()
    (secrets / "rclone.conf").write_text("[source]\ntype = local\n")
    remote = site.root / "remote"
    remote.mkdir()
    (remote / "file.txt").write_text("x")
    runtime = DockerRuntime()
    # The real worker script and rclone, with everything a mount needs except the
    # permission to mount: the same refusal AppArmor's docker-default gives.
    done = runtime.run(
        ContainerSpec(
            name=f"unstoppable_mount-{unique}_site",
            image=site.env["UNSTOPPABLE_WORKER_IMAGE"],
            command=(str(remote), "/remote/site", "0", "0", "0", "--", "backup"),
            labels=(("unstoppable.managed", "true"), ("unstoppable.customer", f"mount-{unique}")),
            mounts=(Mount(secrets, SECRETS), Mount(remote, str(remote))),
            cap_drop=("ALL",),
            entrypoint=("/usr/local/bin/unstoppable-remote",),
        ),
        timeout=120,
    )
    assert done.exit_code == 5, (done.exit_code, done.stderr)
    assert "cannot mount source:" in done.stderr

    path = site.customer(
        f"mount-{unique}",
        'SCHEDULE="0 * * * *"\nREPO_PASSWORD=pw\nRESOURCES=site\nSITE_TYPE=sftp\n'
        "SITE_HOST=127.0.0.1\nSITE_USER=u\nSITE_PASSWORD=p\nSITE_PATH=/\n"
        f"SITE_HOST_KEY=ssh-ed25519 {HOST_KEY}\n",
    )
    loopback = Confinement(private_targets=(ipaddress.ip_network("127.0.0.0/8"),))
    customer = load_customer(path, loopback)
    jobs = Jobs(load_settings(site.env), runtime)
    outcome = jobs.judge(customer, customer.resources[0], datetime.now(UTC), done)
    assert (outcome.result.value, outcome.reason.value) == ("failure", "mount")
    # Our words alone: rclone's lines may quote the server.
    assert "AppArmor" in outcome.message and "cannot mount" not in outcome.message


def test_a_worker_of_the_old_naming_is_adopted_and_still_holds_its_job(
    site: Site, daemon: DaemonProcess, unique: str
) -> None:
    """A worker started as unstoppable-<customer>-<resource> by an earlier version."""
    name = f"old-{unique}"
    site.customer(name, valid_text(name, "files", source(site, name), EVERY_5S))
    scheduled = "2026-01-01T00:00:00Z"
    labels = {
        "unstoppable.managed": "true",
        "unstoppable.customer": name,
        "unstoppable.resource": "files",
        "unstoppable.job": f"{name}/files",
        "unstoppable.kind": "backup",
        "unstoppable.scheduled-for": scheduled,
        "unstoppable.origin": "daemon",
    }
    argv = ["docker", "run", "-d", "--name", f"unstoppable-{name}-files", "--entrypoint", "sleep"]
    for key, value in labels.items():
        argv += ["--label", f"{key}={value}"]
    events = Events()
    subprocess.run([*argv, site.env["UNSTOPPABLE_WORKER_IMAGE"], "12"], check=True,
                   capture_output=True)  # fmt: skip
    daemon.start()
    ledger = Ledger(site.data / "state")
    wait_until(lambda: successes(ledger, f"{name}/files") >= 1, 90, "a backup after adoption")
    daemon.signal(signal.SIGTERM)
    assert daemon.wait(15) == 0
    log = events.stop()

    runs = ledger.history.runs(JobKey.parse(f"{name}/files"))
    assert runs[0].scheduled_for.startswith("2026-01-01T00:00:00"), (
        "the old worker's run was adopted"
    )
    assert_never_overlapping(log, f"{name}/files")  # no new worker ran beside the old one
    gone = subprocess.run(["docker", "ps", "-aq", "--filter", f"name=unstoppable-{name}-files"],
                          capture_output=True, text=True).stdout.strip()  # fmt: skip
    assert not gone, "the adopted worker is removed once collected"


def test_a_directory_swapped_before_the_mount_is_not_read(site: Site, unique: str) -> None:
    """The worker compares what it got mounted with the directory checked: a swap is refused."""
    from orchestrator.config.customer_file import load_customer
    from orchestrator.config.settings_file import load_settings
    from orchestrator.runs import Jobs
    from orchestrator.runtime.docker import DockerRuntime
    from orchestrator.runtime.spec import ContainerSpec
    from orchestrator.rustic.commands import cold_args
    from orchestrator.sources.guard import Floor
    from orchestrator.sources.setup import local_launch

    checked, swapped_in = source(site, f"checked-{unique}"), source(site, f"other-{unique}")
    name = f"swap-{unique}"
    path = site.customer(name, valid_text(name, "files", checked, "0 * * * *"))
    customer = load_customer(path)
    info = os.stat(checked)
    # What the daemon checked is `checked`; what Docker mounts is what PATH names by then.
    launch = local_launch(
        cold_args(False), customer, customer.resources[0], str(swapped_in),
        f"{info.st_dev}:{info.st_ino}", Floor(0, 0, False),
    )  # fmt: skip
    runtime = DockerRuntime()
    done = runtime.run(
        ContainerSpec(
            name=f"unstoppable_{name}_files",
            image=site.env["UNSTOPPABLE_WORKER_IMAGE"],
            command=tuple(launch.argv),
            labels=(("unstoppable.managed", "true"), ("unstoppable.customer", name)),
            mounts=launch.mounts,
            entrypoint=launch.entrypoint,
        ),
        timeout=120,
    )
    assert done.exit_code == 6, (done.exit_code, done.stderr)
    outcome = Jobs(load_settings(site.env), runtime).judge(
        customer, customer.resources[0], datetime.now(UTC), done
    )
    assert (outcome.result.value, outcome.reason.value) == ("failure", "source_refused")
    assert "replaced" in outcome.message


def test_docker_restarted_mid_run_is_survived_and_recorded(
    site: Site, daemon: DaemonProcess, unique: str, slow_image: str
) -> None:
    """The engine goes away under a running worker: recorded, never a timeout; runs go on."""
    site.env["UNSTOPPABLE_WORKER_IMAGE"] = slow_image
    name = f"dock-{unique}"
    site.customer(name, valid_text(name, "files", source(site, name, delay=8), "* * * * * */20"))
    daemon.start()
    ledger = Ledger(site.data / "state")
    wait_until(
        lambda: subprocess.run(
            ["docker", "ps", "-q", "--filter", f"label=unstoppable.customer={name}"],
            capture_output=True, text=True,
        ).stdout.strip(),
        60,
        "a running worker",
    )  # fmt: skip
    restart_dockerd()
    wait_until(lambda: successes(ledger, f"{name}/files") >= 1, 120, "a backup after the restart")
    assert daemon.proc is not None and daemon.proc.poll() is None, "the daemon must keep running"
    daemon.signal(signal.SIGTERM)
    assert daemon.wait(15) == 0
    runs = ledger.history.runs(JobKey.parse(f"{name}/files"))
    first = runs[0]
    assert first[4] == "failure" and first[5] != "timeout", runs
    assert any(r.result == "success" for r in runs[1:]), runs
    assert "Traceback" not in daemon.text()
