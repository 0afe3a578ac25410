"""One customer's fault is that customer's alone: injected at every boundary of a run.

Two customers are due in the same tick. Whatever `bad` raises — while its file is loaded,
its schedule planned, its worker prepared or launched, its output judged, its run reported
or its metrics scraped — and with exception types that are not ours, `good` is backed up in
that same tick, `bad`'s run is recorded (reason `internal` where it ran at all), the problem
is counted under `unstoppable_daemon_errors_total{what}`, and the daemon's loop goes on.
"""

import contextlib
import os
import sqlite3
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from orchestrator import launcher, planner
from orchestrator.config import bounds, customer_file
from orchestrator.daemon import Daemon
from orchestrator.errors import RuntimeUnavailable
from orchestrator.model import JobKey
from orchestrator.reporting import metrics
from orchestrator.reporting.history import Event
from orchestrator.reporting.ledger import Ledger
from orchestrator.reporting.metrics import BackupCollector
from orchestrator.rustic import output
from tests.fake_runtime import FakeRuntime
from tests.test_daemon_on_fake import IMAGE, NOW, WROTE, World, make_world, run_row


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    world = make_world(tmp_path, FakeRuntime({IMAGE: {"unstoppable.rustic-version": "0.11.4"}}))
    for name in ("good", "bad"):
        world.customer(name)
        world.fake.script(f"unstoppable_{name}_files", WROTE)
    yield world
    for name in world.fake.names():
        world.fake.end(name)


def errors(world: World, what: str) -> float | None:
    registry = CollectorRegistry()
    registry.register(BackupCollector(world.ledger, world.daemon.view))
    return registry.get_sample_value("unstoppable_daemon_errors_total", {"what": what})


def only_for_bad(original: Callable[..., Any], exc: BaseException, bad: Callable[..., bool]) -> Any:
    """Return `original`, wrapped to raise `exc` when the call is `bad`'s."""

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if bad(*args, **kwargs):
            raise exc
        return original(*args, **kwargs)

    return wrapped


def mentions_bad(*args: Any, **kwargs: Any) -> bool:
    return any("bad" in str(a) for a in (*args, *kwargs.values()))


def test_a_file_whose_loading_raises_is_a_named_problem(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        customer_file,
        "load_customer",
        only_for_bad(customer_file.load_customer, KeyError("boom"), mentions_bad),
    )
    world.tick()
    loaded = world.daemon.customers
    assert [c.name for c in loaded.valid] == ["good"]
    assert loaded.invalid == ("bad",)
    assert loaded.problems == (
        f"{world.settings.CUSTOMERS_DIR}/bad.env: file: cannot be loaded (KeyError); see the log",
    )
    assert world.ledger.history.runs(JobKey.parse("good/files")) == [run_row("good", "success")]
    assert errors(world, "config") == 1


def test_an_unresolvable_path_is_a_refusal_naming_its_key(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The audit's case: a PATH through a link the daemon may not follow (/proc/1/cwd)."""
    link = world.root / "src-bad" / "mount"
    link.symlink_to("/proc/1/cwd")
    try:
        os.path.realpath(link)
    except OSError:
        pass  # this host refuses it for real, as the audit found
    else:  # elsewhere the same refusal, injected at the same call
        monkeypatch.setattr(
            bounds,
            "realpath",
            only_for_bad(bounds.realpath, PermissionError(13, "Permission denied"), mentions_bad),
        )
    text = (world.settings.CUSTOMERS_DIR / "bad.env").read_text()
    (world.settings.CUSTOMERS_DIR / "bad.env").write_text(
        text.replace(f"FILES_PATH={world.root / 'src-bad'}", f"FILES_PATH={link}")
    )
    world.tick()
    assert world.daemon.customers.problems == (
        f"{world.settings.CUSTOMERS_DIR}/bad.env: FILES_PATH: cannot be resolved: "
        "Permission denied",
    )
    assert world.ledger.history.runs(JobKey.parse("good/files")) == [run_row("good", "success")]


def test_a_schedule_that_raises_leaves_the_other_jobs_planned(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        planner,
        "next_fire",
        only_for_bad(planner.next_fire, ZeroDivisionError(), mentions_bad),
    )
    world.tick()
    assert world.ledger.history.runs(JobKey.parse("good/files")) == [run_row("good", "success")]
    assert world.ledger.history.runs(JobKey.parse("bad/files")) == []
    assert "bad/files" in world.daemon.dispatch.unschedulable
    assert errors(world, "plan") == 3  # its backup, prune and drill schedules


@pytest.mark.parametrize(
    "stage",
    ["prepare", "launch", "judge"],
)
def test_a_run_that_raises_is_recorded_as_internal(
    world: World, monkeypatch: pytest.MonkeyPatch, stage: str
) -> None:
    if stage == "prepare":
        monkeypatch.setattr(
            launcher,
            "local_source",
            only_for_bad(launcher.local_source, RecursionError("deep"), mentions_bad),
        )
    elif stage == "launch":
        fake_run = world.fake.run
        monkeypatch.setattr(
            world.fake,
            "run",
            only_for_bad(
                fake_run, ConnectionResetError(104, "reset"), lambda spec, t: "bad" in spec.name
            ),
        )
    else:
        world.fake.script("unstoppable_bad_files", WROTE.__class__(0, "BAD", ""))
        monkeypatch.setattr(
            output,
            "judge_backup",
            only_for_bad(output.judge_backup, IndexError(), lambda code, out, err: out == "BAD"),
        )
    world.tick()
    assert world.ledger.history.runs(JobKey.parse("good/files")) == [run_row("good", "success")]
    assert world.ledger.history.runs(JobKey.parse("bad/files")) == [
        run_row("bad", "failure", "internal")
    ]
    status = {s.customer: s for s in world.ledger.history.status()}
    assert "internal error" in (status["bad"].message or "")
    assert errors(world, "run") == 1
    assert not world.daemon.dispatch.in_flight


def test_a_run_whose_ledger_read_fails_says_which_disk_to_look_at(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The soak's full data disk: sqlite answered a run's first read (its shrink floor) with
    "disk I/O error", and the run was recorded as a bug of ours."""
    import sqlite3

    memory = world.daemon.dispatch.jobs.memory
    monkeypatch.setattr(
        memory,
        "baseline_now",
        only_for_bad(memory.baseline_now, sqlite3.OperationalError("disk I/O error"), mentions_bad),
    )
    world.tick()
    assert world.ledger.history.runs(JobKey.parse("good/files")) == [run_row("good", "success")]
    assert world.ledger.history.runs(JobKey.parse("bad/files")) == [
        run_row("bad", "failure", "internal")
    ]
    status = {s.customer: s for s in world.ledger.history.status()}
    assert status["bad"].message == (
        "the run stopped: the daemon's ledger could not be read (disk I/O error); is the disk of "
        "UNSTOPPABLE_DATA_DIR full or failing?"
    )
    assert not world.daemon.dispatch.in_flight


def test_a_ledger_unreadable_after_the_worker_ran_keeps_the_runs_own_outcome(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The 20-minute soak: a backup whose rustic failed on a full cold disk, judged while the
    data disk was full too, lost its outcome to the lock-progress read after it ("internal"),
    and with it the set-aside of the snapshot it left in the hot repository alone."""
    import sqlite3

    db = world.ledger.locks.db
    real = db.get_state

    def unreadable(key: str) -> str | None:
        if key.startswith("locked-through:"):
            raise sqlite3.OperationalError("disk I/O error")
        return real(key)

    monkeypatch.setattr(db, "get_state", unreadable)
    monkeypatch.setattr(
        db,
        "set_state",
        lambda *_: (_ for _ in ()).throw(sqlite3.OperationalError("disk I/O error")),
    )
    world.fake.script(
        "unstoppable_bad_files", WROTE.__class__(1, "", "[ERROR] No space left on device\n")
    )
    world.tick()
    assert world.ledger.history.runs(JobKey.parse("good/files")) == [run_row("good", "success")]
    assert world.ledger.history.runs(JobKey.parse("bad/files")) == [
        run_row("bad", "failure", "rustic")
    ]
    assert errors(world, "run") == 0


def test_a_report_that_raises_is_counted_and_the_run_kept(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    pinger = world.daemon.dispatch.jobs.pinger
    monkeypatch.setattr(
        pinger,
        "result",
        only_for_bad(pinger.result, TypeError("ping"), lambda cs, record: record.customer == "bad"),
    )
    world.tick()
    assert world.ledger.history.runs(JobKey.parse("good/files")) == [run_row("good", "success")]
    assert world.ledger.history.runs(JobKey.parse("bad/files")) == [run_row("bad", "success")]
    assert errors(world, "report") == 1
    assert not world.daemon.dispatch.in_flight


def test_a_scrape_of_one_job_that_raises_keeps_the_others(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    world.tick()
    monkeypatch.setattr(
        metrics,
        "maintenance_samples",
        only_for_bad(
            metrics.maintenance_samples, UnicodeError(), lambda g, labels, *_: "bad" in labels
        ),
    )
    registry = CollectorRegistry()
    registry.register(BackupCollector(world.ledger, world.daemon.view))
    for _ in range(3):  # counted once, not once per scrape
        value = registry.get_sample_value(
            "unstoppable_backup_last_run_success", {"customer": "good", "resource": "files"}
        )
        assert value == 1
        sample = {"what": "metrics"}
        assert registry.get_sample_value("unstoppable_daemon_errors_total", sample) == 1


def test_a_reload_that_hangs_never_delays_the_tick(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file whose reading stalls (a hung mount) leaves the last good view ticking."""
    (world.settings.CUSTOMERS_DIR / "bad.env").unlink()
    world.tick()
    assert [c.name for c in world.daemon.customers.valid] == ["good"]
    release = threading.Event()

    def stalled(path: Path, *args: Any) -> Any:
        if "bad" in str(path):
            release.wait(30)
        return load(path, *args)

    load = customer_file.load_customer
    monkeypatch.setattr(customer_file, "load_customer", stalled)
    world.customer("bad")
    started = time.monotonic()
    world.daemon.load_config()
    assert time.monotonic() - started < 5
    assert [c.name for c in world.daemon.customers.valid] == ["good"], "the last view goes on"
    assert errors(world, "config") == 1
    release.set()
    deadline = time.monotonic() + 10
    while [c.name for c in world.daemon.customers.valid] != ["bad", "good"]:
        assert time.monotonic() < deadline, "the stalled read's view never arrived"
        world.daemon.load_config()


@pytest.fixture
def full_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB filesystem filled to the last byte, mounted in tmp_path; needs root."""
    disk = tmp_path / "full"
    disk.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(disk)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        (disk / "state").mkdir()
        fd = os.open(disk / "filler", os.O_WRONLY | os.O_CREAT)
        with contextlib.suppress(OSError):
            while os.write(fd, b"\0" * 4096):
                pass
        os.close(fd)
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=True)


def test_a_full_disk_at_start_does_not_stop_the_daemon(tmp_path: Path, full_disk: Path) -> None:
    """The ledger cannot even be created: the daemon starts, counts, and recovers with the disk.

    No backup is written meanwhile: the source guard's baseline lives in the ledger, and a
    snapshot judged without it could pass a wiped source off as clean.
    """
    world = make_world(tmp_path, FakeRuntime({IMAGE: {"unstoppable.rustic-version": "0.11.4"}}))
    ledger = Ledger(full_disk / "state")  # used to raise "database or disk is full"
    world = World(
        world.root, world.settings, world.fake, ledger, Daemon(world.settings, world.fake, ledger)
    )
    world.customer("good")
    world.fake.script("unstoppable_good_files", WROTE)
    # Its last tick unreadable: none is made up (the times since it are not passed over);
    # the loop asks again each round and plans from it once it can be read.
    assert world.daemon.start_tick(NOW) is None
    world.tick()
    assert world.fake.started == []
    # Read at start, the tick's mark, the run's record, and this scrape's own read.
    assert errors(world, "ledger") == 4
    assert errors(world, "run") == 1  # the run could not read its baseline
    with pytest.raises(sqlite3.OperationalError):
        ledger.history.runs(JobKey.parse("good/files"))
    (full_disk / "filler").unlink()  # space again: the schema is made by the next write
    world.tick(NOW + timedelta(hours=1), NOW + timedelta(hours=1) - timedelta(seconds=1))
    # The run that failed for want of its baseline was owed, not lost: written first.
    assert ledger.history.runs(JobKey.parse("good/files")) == [
        run_row("good", "failure", "internal"),
        run_row("good", "success", at=NOW + timedelta(hours=1)),
    ]


def test_a_schedule_whose_interval_raises_keeps_the_others_metrics(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    from orchestrator import daemon

    world.customer("bad", "30 * * * *")
    world.tick()
    monkeypatch.setattr(
        daemon,
        "expected_interval",
        only_for_bad(
            daemon.expected_interval,
            OverflowError(),
            lambda schedule, tz, now: schedule == "30 * * * *",
        ),
    )
    assert world.metric("unstoppable_backup_last_run_success", "good") == 1
    assert world.metric("unstoppable_backup_next_run_timestamp_seconds", "bad") is None
    assert errors(world, "metrics") == 1


def test_a_path_on_a_hung_mount_is_refused_in_seconds_and_the_rest_load(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """realpath that never returns (a hung NFS mount) costs its customer, and one thread."""
    hung = threading.Event()
    monkeypatch.setattr(bounds, "RESOLVE_SECONDS", 0.3)
    monkeypatch.setattr(
        bounds,
        "realpath",
        lambda path: hung.wait(60) and "" if "src-bad" in str(path) else os.path.realpath(path),
    )
    try:
        started = time.monotonic()
        world.tick()
        assert time.monotonic() - started < 5
        assert [c.name for c in world.daemon.customers.valid] == ["good"]
        assert world.daemon.customers.problems == (
            f"{world.settings.CUSTOMERS_DIR}/bad.env: FILES_PATH: cannot be resolved: "
            "no answer within 0 s (a hung mount?)",
        )
        assert world.ledger.history.runs(JobKey.parse("good/files")) == [run_row("good", "success")]
        looking = sum(t.name == "resolve a source path" for t in threading.enumerate())
        (world.settings.CUSTOMERS_DIR / "bad.env").touch()  # a reload asks again: no new thread
        os.utime(world.settings.CUSTOMERS_DIR / "bad.env", (1, 1))
        world.daemon.load_config()
        assert "no answer since an earlier look" in world.daemon.customers.problems[0]
        assert sum(t.name == "resolve a source path" for t in threading.enumerate()) == looking
    finally:
        hung.set()


def test_a_slow_first_read_keeps_the_catch_up_after_downtime(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Down since 07:00, hourly jobs, and customers.d takes longer than a tick to read."""
    world.ledger.db.set_state("last_tick", (NOW - timedelta(hours=3)).isoformat())
    release = threading.Event()
    load = customer_file.load_customer

    def slow(path: Path, *args: Any) -> Any:
        release.wait(30)
        return load(path, *args)

    monkeypatch.setattr(customer_file, "load_customer", slow)
    last_tick = world.daemon.start_tick(NOW)
    world.daemon.load_config()  # not read yet: the tick must not move the clock
    assert world.daemon.plan_tick(last_tick, NOW) == last_tick
    release.set()
    deadline = time.monotonic() + 10
    while not world.daemon.viewed:
        assert time.monotonic() < deadline
        world.daemon.load_config()
    world.daemon.plan_tick(last_tick, NOW)
    world.settle()
    assert world.ledger.history.runs(JobKey.parse("good/files")) == [run_row("good", "success")]
    assert (
        world.ledger.history.event_count(JobKey.parse("good/files"), Event.MISSED) == 2
    )  # 08:00 and 09:00


def test_an_engine_that_is_down_is_asked_again_each_second_not_in_a_busy_loop(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Times are due and Docker does not answer: the loop tries again a second later. It
    spun before (the due times stayed in the past: no wait at all), burning a core and
    writing thousands of log lines a second for as long as the engine was away."""
    world.customer("good", "* * * * * *")
    asked: list[float] = []

    def down() -> frozenset[JobKey]:
        asked.append(time.monotonic())
        raise RuntimeUnavailable("cannot reach the Docker engine")

    monkeypatch.setattr(world.daemon, "serve_metrics", lambda: None)
    loop = threading.Thread(target=world.daemon.run, daemon=True)
    loop.start()
    time.sleep(2.5)  # planned with the engine up: the next times are known, then due
    monkeypatch.setattr(world.fake, "running_jobs", down)
    time.sleep(4.0)
    world.daemon.request_stop()
    loop.join(10)
    assert not loop.is_alive()
    assert 2 <= len(asked) <= 7, f"Docker asked {len(asked)} times in 4 s"


def test_a_clock_set_back_while_the_engine_is_down_is_recomputed_once(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The clock steps back while every tick fails (Docker away): the schedule is recomputed
    once, from then. It was recomputed at every failed tick, each from that very second:
    counted again each time, and the times between the ticks were never planned at all."""
    from orchestrator import daemon as daemon_module

    world.customer("good", "* * * * * */2")
    shift = [0.0]
    monkeypatch.setattr(
        daemon_module, "_now", lambda: datetime.now(UTC) + timedelta(seconds=shift[0])
    )
    monkeypatch.setattr(world.daemon, "serve_metrics", lambda: None)
    real = world.fake.running_jobs

    def down() -> frozenset[JobKey]:
        raise RuntimeUnavailable("cannot reach the Docker engine")

    loop = threading.Thread(target=world.daemon.run, daemon=True)
    loop.start()
    time.sleep(2.5)
    monkeypatch.setattr(world.fake, "running_jobs", down)
    shift[0] = -30.0
    time.sleep(4.0)
    monkeypatch.setattr(world.fake, "running_jobs", real)
    time.sleep(3.0)
    world.daemon.request_stop()
    loop.join(10)
    assert not loop.is_alive()
    assert errors(world, "clock") == 1


def test_a_last_tick_unreadable_at_start_is_waited_for_not_made_up(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A daemon restarted on a full disk could not read its last tick and counted from
    now: the times since the last one were neither run nor missed (the 20-minute soak)."""
    import sqlite3

    world.customer("good", "* * * * * */10")
    before = datetime.now(UTC) - timedelta(seconds=35)
    world.ledger.db.set_state("last_tick", before.isoformat())
    real = world.ledger.db.get_state
    full = [True]

    def get_state(key: str) -> str | None:
        if full[0]:
            raise sqlite3.OperationalError("disk I/O error")
        return real(key)

    monkeypatch.setattr(world.ledger.db, "get_state", get_state)
    monkeypatch.setattr(world.daemon, "serve_metrics", lambda: None)
    loop = threading.Thread(target=world.daemon.run, daemon=True)
    loop.start()
    time.sleep(2.0)
    full[0] = False
    time.sleep(2.0)
    world.daemon.request_stop()
    loop.join(10)
    assert not loop.is_alive()
    job = JobKey.parse("good/files")
    missed = world.ledger.history.event_count(job, Event.MISSED)
    ran = len(world.ledger.history.runs(job))
    assert missed + ran >= 3, (missed, ran)  # every time since `before`, none passed over
