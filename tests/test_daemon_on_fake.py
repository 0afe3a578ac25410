"""The daemon's tick, finish and adoption on the fake runtime: real customer files, a real
ledger, a fixed clock where the daemon takes one, and workers that do what each case says.

The fake is held to Docker's behaviour by tests/test_runtime_contract.py; what is judged
here is the daemon: what it launches, skips, adopts and records, and what /metrics says.
"""

import json
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from orchestrator.config.settings import Settings
from orchestrator.daemon import Daemon
from orchestrator.model import JobKey, Kind, Outcome, Reason, Result, RunRecord, Summary, Work
from orchestrator.recovery import RECOVERING
from orchestrator.reporting.history import Event, RunRow
from orchestrator.reporting.job_memory import state_key
from orchestrator.reporting.ledger import Ledger
from orchestrator.reporting.metrics import BackupCollector
from orchestrator.runtime.paths import SECRETS
from orchestrator.runtime.protocol import Finished
from orchestrator.runtime.spec import ContainerSpec, Mount, container_name, labels
from orchestrator.storage.layout import secrets_dir
from tests.fake_runtime import FakeRuntime, Script

IMAGE = "unstoppable-worker:fake"
NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)  # on the hour: every hourly job is due
LAST_TICK = NOW - timedelta(seconds=1)
# What `rustic backup --json` (0.11) prints on stdout: the snapshot it wrote.
SNAPSHOT_ID = "4f8c9e1a7b3d52c06e9f1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f"
SUMMARY = {
    "files_new": 2,
    "files_changed": 1,
    "files_unmodified": 37,
    "total_files_processed": 40,
    "total_bytes_processed": 52480,
    "dirs_new": 0,
    "dirs_changed": 1,
    "dirs_unmodified": 4,
    "total_dirs_processed": 5,
    "total_dirsize_processed": 2310,
    "data_blobs": 3,
    "tree_blobs": 2,
    "data_added": 9123,
    "data_added_packed": 4210,
    "data_added_files": 8011,
    "data_added_files_packed": 3540,
    "data_added_trees": 1112,
    "data_added_trees_packed": 670,
    "command": "rustic backup --init --json --no-scan --host acme -- /srv/acme/files",
    "backup_start": "2026-03-02T10:00:01.102335914+00:00",
    "backup_end": "2026-03-02T10:00:01.471028552+00:00",
    "backup_duration": 0.368692638,
    "total_duration": 0.380577163,
}
SNAPSHOT = {
    "time": "2026-03-02T10:00:01.482913077+00:00",
    "program_version": "rustic v0.11.4",
    "tree": "9d1c0e2b4f6a8c3e5d7f9b1a3c5e7d9f0b2d4f6a8c0e2b4d6f8a0c2e4b6d8f0a",
    "paths": ["/srv/acme/files"],
    "hostname": "acme",
    "username": "",
    "uid": 0,
    "gid": 0,
    "tags": ["unstoppable-clean"],
    "summary": SUMMARY,
    "id": SNAPSHOT_ID,
}
WROTE = Script(0, json.dumps(SNAPSHOT, indent=2) + "\n", "[INFO] backup finished\n")
# The same with no file at all in it (an EXCLUDE that hides everything).
EMPTY = json.dumps({**SNAPSHOT, "summary": {**SUMMARY, "total_files_processed": 0}})


@dataclass
class World:
    """A daemon on the fake runtime, with its customers directory and ledger in tmp_path."""

    root: Path
    settings: Settings
    fake: FakeRuntime
    ledger: Ledger
    daemon: Daemon

    def customer(self, name: str, schedule: str = "0 * * * *") -> Path:
        """Write a valid customer file with one local resource `files`; return its source."""
        source = self.root / f"src-{name}"
        source.mkdir(exist_ok=True)
        (source / "data.txt").write_text(name)
        (self.settings.CUSTOMERS_DIR / f"{name}.env").write_text(
            f'SCHEDULE="{schedule}"\nREPO_PASSWORD=pw-{name}\nRESOURCES=files\n'
            f"FILES_TYPE=local\nFILES_PATH={source}\n"
            # Maintenance far from NOW, so each case sees its backups only.
            'FILES_PRUNE_SCHEDULE="0 0 1 1 *"\nFILES_VERIFY_SCHEDULE="0 0 1 1 *"\n'
        )
        return source

    def tick(self, now: datetime = NOW, last_tick: datetime = LAST_TICK) -> None:
        """Reread customers.d, plan at `now`, and wait until every run it launched is done."""
        self.daemon.load_config()
        self.daemon.tick(last_tick, now)
        self.settle()

    def settle(self) -> None:
        deadline = time.monotonic() + 30
        while self.daemon.dispatch.in_flight:
            assert time.monotonic() < deadline, (
                f"runs never finished: {self.daemon.dispatch.in_flight}"
            )
            time.sleep(0.01)

    def metric(self, name: str, customer: str, **extra: str) -> float | None:
        registry = CollectorRegistry()
        registry.register(BackupCollector(self.ledger, self.daemon.view))
        return registry.get_sample_value(name, {"customer": customer, "resource": "files", **extra})

    def leftover(
        self,
        customer: str,
        script: Script,
        kind: Kind = Kind.BACKUP,
        origin: str = "daemon",
        scheduled_for: datetime = NOW - timedelta(hours=1),
        started_at: datetime | None = None,
        instance: str = "",
    ) -> ContainerSpec:
        """Start a worker as an earlier daemon (or the CLI) did, with a secrets directory;
        `instance`: the installation it names (none: a worker of an earlier version)."""
        name = container_name(JobKey(customer, "files"), kind, scheduled_for)
        secrets = secrets_dir(self.settings) / f"{name}.0123456789abcdef"
        secrets.mkdir(parents=True)
        (secrets / "repo-password").write_text(f"pw-{customer}")
        spec = ContainerSpec(
            name,
            IMAGE,
            ("rustic", "backup"),
            labels(JobKey(customer, "files"), kind, scheduled_for, origin, instance),
            (Mount(secrets, SECRETS),),
        )
        self.fake.script(name, script)
        self.fake.start(spec, started_at)
        return spec


def make_world(root: Path, fake: FakeRuntime, timeout: str = "1h") -> World:
    (root / "customers.d").mkdir()
    settings = Settings(
        CUSTOMERS_DIR=root / "customers.d",
        DATA_DIR=root / "data",
        WORKER_IMAGE=IMAGE,
        JOB_TIMEOUT=timeout,
        SOURCE_ROOTS=str(root),
        MIN_INTERVAL="0",
    )
    ledger = Ledger(root / "data" / "state")
    return World(root, settings, fake, ledger, Daemon(settings, fake, ledger))


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    world = make_world(tmp_path, FakeRuntime({IMAGE: {"unstoppable.rustic-version": "0.11.4"}}))
    yield world
    for name in world.fake.names():  # never leave a daemon thread waiting on a hanging worker
        world.fake.end(name)


def lose_engine(fake: FakeRuntime, times: int) -> None:
    """Make the next `times` collects fail as an engine lost for good does: the worker is
    left where it is, running or not."""
    from orchestrator.errors import RuntimeUnavailable

    collect, lost = fake.collect, [True] * times

    def losing(name: str, timeout: float | None, limits: object = None) -> Finished:
        if lost.pop() if lost else False:
            raise RuntimeUnavailable("cannot reach the Docker engine for 300 s")
        return collect(name, timeout)

    fake.collect = losing  # type: ignore[method-assign]


def killed_while_launching(world: World) -> None:
    """A daemon killed after writing a tick that launches two runs: `lost` never reached
    Docker, `started` did (its worker is there)."""
    world.customer("lost")
    world.customer("started")
    world.fake.script("unstoppable_lost_files", WROTE)
    tick = {"at": NOW.isoformat(), "pending": [],
            "launching": [["lost/files", "backup", NOW.isoformat()],
                          ["started/files", "backup", NOW.isoformat()]]}  # fmt: skip
    world.ledger.db.set_state("last_tick", json.dumps(tick))
    world.leftover("started", WROTE, scheduled_for=NOW)


def run_row(customer: str, result: str, reason: str = "", at: datetime = NOW) -> RunRow:
    return RunRow(customer, "files", Kind.BACKUP.value, at.isoformat(), result, reason)


@pytest.mark.parametrize(
    ("script", "result", "reason"),
    [
        (WROTE, "success", ""),
        # rustic's own failures, told apart by what it wrote on stderr.
        (Script(1, "", "[ERROR] no suitable key found!\n"), "failure", "repository"),
        (
            Script(1, "", "[ERROR] error sending request for url (http://127.0.0.1:9000/)\n"),
            "failure",
            "storage",
        ),
        (Script(1, "", "[ERROR] tree 9d1c0e2b not found\n"), "failure", "rustic"),
        (Script(137, "", ""), "failure", "interrupted"),
        (Script(0, "", "[INFO] received SIGTERM\n"), "failure", "interrupted"),
        (
            Script(0, WROTE.stdout, "[WARN] error reading /srv/x: Permission denied (os error 13)"),
            "failure",
            "source_unreadable",
        ),
        # The worker scripts' exit codes, before rustic ran.
        (Script(3, "", "ls: cannot open directory\n"), "failure", "source_unreadable"),
        (Script(4, "", "source holds 1 file(s), below 20\n"), "failure", "source_shrunk"),
        (Script(6, "", "source was swapped\n"), "failure", "source_refused"),
        (Script(7, "", "source is empty\n"), "failure", "source_empty"),
        # A snapshot of nothing at all is written, but held as suspect.
        (Script(0, EMPTY, ""), "suspect", ""),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_a_due_backup_is_run_once_and_recorded_as_its_worker_ended(
    world: World, script: Script, result: str, reason: str
) -> None:
    world.customer("acme")
    world.fake.script("unstoppable_acme_files", script)
    world.tick()

    # One backup; a suspect snapshot is then tagged by a worker of its own.
    kinds = [dict(s.labels)["unstoppable.kind"] for s in world.fake.started]
    assert kinds == (["backup", "tag"] if result == "suspect" else ["backup"])
    spec = dict(world.fake.started[0].labels)
    assert (spec["unstoppable.job"], spec["unstoppable.origin"]) == ("acme/files", "daemon")
    assert spec["unstoppable.scheduled-for"] == "2026-03-02T10:00:00Z"
    assert world.fake.started[0].image == IMAGE
    assert world.ledger.history.runs(JobKey.parse("acme/files")) == [
        run_row("acme", result, reason)
    ]
    assert world.fake.names() == set(), "every worker is reaped"
    assert list(secrets_dir(world.settings).iterdir()) == [], "no secret outlives its run"

    counted = world.metric("unstoppable_backup_runs_total", "acme", result=result)
    assert counted == 1
    success = world.metric("unstoppable_backup_last_run_success", "acme")
    assert success == (1 if result == "success" else 0)
    if reason:
        assert world.metric("unstoppable_backup_failures_total", "acme", reason=reason) == 1
    if result == "success":
        added = world.metric("unstoppable_backup_last_added_bytes", "acme")
        assert added == SUMMARY["data_added"]
    assert world.metric("unstoppable_backup_held", "acme") == (1 if result == "suspect" else 0)


# Every one of the 40 files rewritten as base64 of ciphertext: packs to 75 % of its size.
BASE64 = json.dumps(
    {
        **SNAPSHOT,
        "summary": {
            **SUMMARY,
            "files_new": 0,
            "files_changed": 40,
            "data_added_files": 400_000,
            "data_added_files_packed": 301_000,
        },
    }
)


@pytest.mark.parametrize(("days", "result"), [(3, "suspect"), (0, "success"), (2, "success")])
def test_a_base64_rewrite_is_judged_against_the_jobs_own_history(
    world: World, days: int, result: str
) -> None:
    """The daemon hands the ledger's history to the rule: a text job's usual is its own."""
    for n in range(days):  # clean days of text edits, packed to 30 %
        at = NOW - timedelta(days=days - n)
        summary = Summary(f"s{n}", "t", 0, 4, 20_000, 52_480, 40, 20_000, 6_000)
        outcome = Outcome(Result.SUCCESS, Reason.NONE, "ok", summary)
        world.ledger.history.record_run(
            RunRecord(JobKey("acme", "files"), Kind.BACKUP, at, at, at, outcome)
        )
    if not days:  # a job seen once before, whose one backup added nothing to measure
        summary = Summary("s", "t", 40, 0, 0, 52_480, 40, 0, 0)
        outcome = Outcome(Result.SUCCESS, Reason.NONE, "ok", summary)
        at = NOW - timedelta(days=1)
        world.ledger.history.record_run(
            RunRecord(JobKey("acme", "files"), Kind.BACKUP, at, at, at, outcome)
        )
    world.customer("acme")
    world.fake.script("unstoppable_acme_files", Script(0, BASE64, ""))
    world.tick()
    (last,) = [
        row
        for row in world.ledger.history.runs(JobKey.parse("acme/files"))
        if row.scheduled_for == NOW.isoformat()
    ]
    assert last[4] == result
    assert world.metric("unstoppable_backup_held", "acme") == (1 if result == "suspect" else 0)


def test_a_worker_past_the_job_timeout_is_stopped_and_recorded_as_timeout(tmp_path: Path) -> None:
    world = make_world(tmp_path, FakeRuntime({IMAGE: {}}), timeout="1s")
    world.customer("slow")
    world.fake.script("unstoppable_slow_files", Script(stdout="partial", hang=True))
    world.tick()
    assert world.ledger.history.runs(JobKey.parse("slow/files")) == [
        run_row("slow", "timeout", "timeout")
    ]
    assert world.fake.names() == set()
    assert world.metric("unstoppable_backup_failures_total", "slow", reason="timeout") == 1


def test_a_backup_due_while_its_job_runs_is_skipped_and_counted(world: World) -> None:
    world.customer("busy")
    world.customer("free")
    world.fake.script("unstoppable_free_files", WROTE)
    held = world.leftover("busy", Script(hang=True), origin="cli")  # `unstoppable backup busy`
    world.tick()

    assert [s.name for s in world.fake.started] == [held.name, "unstoppable_free_files"]
    assert world.ledger.history.runs(JobKey.parse("busy/files")) == []
    assert (
        world.ledger.history.event_count(JobKey.parse("busy/files"), Event.SKIPPED, "overlap") == 1
    )
    assert world.metric("unstoppable_backup_skipped_total", "busy", reason="overlap") == 1
    assert world.metric("unstoppable_backup_skipped_total", "busy", reason="max_parallel") == 0
    assert world.metric("unstoppable_backup_running", "busy") == 1
    assert world.ledger.history.runs(JobKey.parse("free/files")) == [run_row("free", "success")]
    assert world.metric("unstoppable_backup_skipped_total", "free", reason="overlap") == 0

    world.fake.end(held.name)
    world.fake.collect(held.name, timeout=5)  # the CLI reads its worker
    world.fake.script(held.name, WROTE)
    later = NOW + timedelta(hours=1)
    world.tick(later, NOW)
    assert world.ledger.history.runs(JobKey.parse("busy/files")) == [
        run_row("busy", "success", at=later)
    ]
    assert world.metric("unstoppable_backup_running", "busy") == 0


def test_a_job_being_recovered_is_paused_and_the_others_run(world: World) -> None:
    """`unstoppable recover` marks the job in the ledger: the daemon starts none of its runs."""
    world.customer("lost")
    world.customer("fine")
    world.fake.script("unstoppable_fine_files", WROTE)
    world.ledger.db.set_state(state_key(RECOVERING, JobKey("lost", "files")), NOW.isoformat())
    world.tick()

    assert [s.name for s in world.fake.started] == ["unstoppable_fine_files"]
    assert world.ledger.history.runs(JobKey.parse("lost/files")) == []
    assert (
        world.ledger.history.event_count(JobKey.parse("lost/files"), Event.SKIPPED, "overlap") == 1
    )
    assert world.ledger.history.runs(JobKey.parse("fine/files")) == [run_row("fine", "success")]


class StaleView(FakeRuntime):
    """A runtime whose list of running jobs was read before another worker started."""

    def running_jobs(self) -> frozenset[JobKey]:
        return frozenset()


def test_a_run_the_runtime_refuses_as_busy_is_a_skip_not_a_failure(tmp_path: Path) -> None:
    world = make_world(tmp_path, StaleView({IMAGE: {}}))
    world.customer("race")
    held = world.leftover("race", Script(hang=True), origin="cli")
    world.tick()

    assert [s.name for s in world.fake.started] == [held.name], "the name is the lock"
    assert world.ledger.history.runs(JobKey.parse("race/files")) == []
    assert (
        world.ledger.history.event_count(JobKey.parse("race/files"), Event.SKIPPED, "overlap") == 1
    )
    world.fake.end(held.name)


@pytest.mark.parametrize(
    ("kind", "script", "kind_recorded", "result", "reason"),
    [
        (Kind.BACKUP, WROTE, "backup", "success", ""),
        (Kind.BACKUP, Script(1, "", "[ERROR] wrong password\n"), "backup", "failure", "repository"),
        (Kind.BACKUP, Script(4, "", "source shrank\n"), "backup", "failure", "source_shrunk"),
        (Kind.FORGET, Script(0), "backup", "success", ""),  # 0.2's forget after a backup
        (Kind.PRUNE, Script(0), "prune", "success", ""),
        (Kind.PRUNE, Script(1, "", "[ERROR] lock held\n"), "prune", "failure", "prune"),
        (Kind.VERIFY, Script(0), "verify", "failure", "interrupted"),  # one step of several
    ],
    ids=lambda v: v.value if isinstance(v, Kind) else (v if isinstance(v, str) else None),
)
def test_a_worker_left_by_a_previous_daemon_is_adopted_and_judged_not_duplicated(
    world: World, kind: Kind, script: Script, kind_recorded: str, result: str, reason: str
) -> None:
    world.customer("acme")
    scheduled = NOW - timedelta(hours=1)
    left = world.leftover(
        "acme", Script(script.exit_code, script.stdout, script.stderr, hang=True), kind
    )
    world.daemon.load_config()
    world.daemon.adopt()
    assert world.daemon.dispatch.in_flight == {JobKey("acme", "files")}

    world.daemon.tick(LAST_TICK, NOW)  # 10:00 is due while the adopted 09:00 run goes on
    assert [s.name for s in world.fake.started] == [left.name], "no second worker of the job"
    assert (
        world.ledger.history.event_count(JobKey.parse("acme/files"), Event.SKIPPED, "overlap") == 1
    )

    world.fake.end(left.name)
    world.settle()
    row = ("acme", "files", kind_recorded, scheduled.isoformat(), result, reason)
    assert world.ledger.history.runs(JobKey.parse("acme/files")) == [row]
    assert world.fake.names() == set(), "the adopted worker is reaped"
    assert list(secrets_dir(world.settings).iterdir()) == [], "and its secrets removed"
    world.daemon.adopt()
    assert world.daemon.dispatch.in_flight == set(), "a worker is adopted once"


def test_another_installations_worker_on_the_same_engine_is_never_adopted(
    world: World,
) -> None:
    """Two installations (two data directories) share one Docker engine: each adopts its
    own workers only. A soak with two daemons saw one record the other's runs in its own
    ledger, for customers it does not have, and take them from the ledger they belong to."""
    from orchestrator.storage.layout import instance_of

    world.customer("acme")
    other = world.leftover("beta", WROTE, instance="0123456789abcdef")
    own = world.leftover("acme", WROTE, instance=instance_of(world.settings))
    world.daemon.load_config()
    world.daemon.adopt()
    world.settle()
    assert world.ledger.history.runs(JobKey.parse("beta/files")) == []
    assert world.fake.names() == {other.name}, "left to the installation it belongs to"
    assert world.ledger.history.runs(JobKey.parse("acme/files")) == [
        run_row("acme", "success", at=NOW - timedelta(hours=1))
    ]
    assert own.name not in world.fake.names()


def test_a_worker_that_ended_while_no_daemon_ran_is_adopted_too(world: World) -> None:
    world.customer("acme")
    left = world.leftover("acme", WROTE)
    world.daemon.load_config()
    world.daemon.adopt()
    world.settle()
    assert world.ledger.history.runs(JobKey.parse("acme/files")) == [
        run_row("acme", "success", at=NOW - timedelta(hours=1))
    ]
    assert world.fake.names() == set()
    assert world.fake.started == [world.fake.started[0]] and world.fake.started[0].name == left.name


def test_an_adopted_worker_past_the_job_timeout_is_stopped_as_a_timeout(world: World) -> None:
    world.customer("acme")
    started = datetime.now(UTC) - timedelta(hours=2)  # JOB_TIMEOUT is 1h
    world.leftover("acme", Script(hang=True), started_at=started)
    world.daemon.load_config()
    world.daemon.adopt()
    world.settle()
    assert world.ledger.history.runs(JobKey.parse("acme/files")) == [
        run_row("acme", "timeout", "timeout", at=NOW - timedelta(hours=1))
    ]
    assert world.fake.names() == set()


def test_workers_of_the_cli_are_left_to_the_cli(world: World) -> None:
    world.customer("acme")
    left = world.leftover("acme", WROTE, origin="cli")
    world.daemon.load_config()
    world.daemon.adopt()
    assert world.daemon.dispatch.in_flight == set()
    assert world.fake.names() == {left.name}, "the CLI reads its own worker"
    assert world.ledger.history.runs(JobKey.parse("acme/files")) == []
    assert world.fake.collect(left.name, timeout=5) == Finished(0, WROTE.stdout, WROTE.stderr)


def test_a_broken_customer_file_never_stops_another_customer(world: World) -> None:
    world.customer("good")
    gone = world.customer("gone")
    world.fake.script("unstoppable_good_files", WROTE)
    world.fake.script("unstoppable_gone_files", WROTE)
    (world.settings.CUSTOMERS_DIR / "broken.env").write_text('SCHEDULE="nonsense"\n')
    (world.settings.CUSTOMERS_DIR / "Bad_Name.env").write_text("")
    world.daemon.load_config()
    (gone / "data.txt").unlink()
    gone.rmdir()  # valid when loaded, gone when its run starts
    world.tick()

    assert world.ledger.history.runs(JobKey.parse("good/files")) == [run_row("good", "success")]
    assert world.ledger.history.runs(JobKey.parse("gone/files")) == [
        run_row("gone", "failure", "source_missing")
    ]
    assert [s.name for s in world.fake.started] == ["unstoppable_good_files"]
    assert any(
        p.startswith(f"{world.settings.CUSTOMERS_DIR}/broken.env: SCHEDULE")
        for p in world.daemon.customers.problems
    )
    registry = CollectorRegistry()
    registry.register(BackupCollector(world.ledger, world.daemon.view))
    for customer, valid in (("good", 1), ("gone", 1), ("broken", 0), ("Bad_Name", 0)):
        assert (
            registry.get_sample_value("unstoppable_config_valid", {"customer": customer}) == valid
        ), customer

    # A file that breaks later disables only its own customer; the others go on.
    (world.settings.CUSTOMERS_DIR / "good.env").write_text("RESOURCES=files\n")
    world.customer("other")
    world.fake.script("unstoppable_other_files", WROTE)
    later = NOW + timedelta(hours=1)
    world.tick(later, NOW)
    assert world.ledger.history.runs(JobKey.parse("other/files")) == [
        run_row("other", "success", at=later)
    ]
    assert world.ledger.history.runs(JobKey.parse("good/files")) == [run_row("good", "success")]


def test_a_worker_whose_job_label_names_no_job_is_collected_and_never_recorded(
    world: World,
) -> None:
    """A worker with our labels but a job no name could make: collected, its secrets removed,
    charged to nobody; the customer its other labels name goes on."""
    world.customer("acme")
    world.leftover("acme", WROTE)
    stray = ContainerSpec(
        "unstoppable_stray",
        IMAGE,
        ("rustic", "backup"),
        tuple(
            (k, "no-slash-here" if k == "unstoppable.job" else v)
            for k, v in labels(JobKey("acme", "files"), Kind.BACKUP, NOW, "daemon")
        ),
        (Mount(secrets_dir(world.settings) / "unstoppable_stray.0123456789abcdef", SECRETS),),
    )
    (secrets_dir(world.settings) / "unstoppable_stray.0123456789abcdef").mkdir()
    world.fake.script(stray.name, WROTE)
    world.fake.start(stray, None)
    world.daemon.load_config()
    world.daemon.adopt()
    world.settle()
    deadline = time.monotonic() + 5
    while stray.name in world.fake.names() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert stray.name not in world.fake.names(), "the stray worker is collected"
    assert not (secrets_dir(world.settings) / "unstoppable_stray.0123456789abcdef").exists()
    assert world.daemon.dispatch.strays == set()
    rows = world.ledger.history.runs(JobKey.parse("acme/files"))
    assert rows == [run_row("acme", "success", at=NOW - timedelta(hours=1))], "only its own"


def test_a_run_waiting_for_a_slot_when_the_daemon_dies_runs_after_its_restart(
    tmp_path: Path,
) -> None:
    """kill -9 while a due run waits for a slot: its time is neither lost nor counted twice."""
    fake = FakeRuntime({IMAGE: {"unstoppable.rustic-version": "0.11.4"}})
    world = make_world(tmp_path, fake)
    narrow = world.settings.model_copy(update={"MAX_PARALLEL": 1})
    world.daemon = Daemon(narrow, fake, world.ledger)
    world.customer("first")
    world.customer("second")
    fake.script("unstoppable_first_files", Script(hang=True))
    fake.script("unstoppable_second_files", WROTE)
    world.daemon.load_config()
    world.daemon.tick(LAST_TICK, NOW)  # first runs; second waits for the one slot
    deadline = time.monotonic() + 10
    while not fake.started and time.monotonic() < deadline:
        time.sleep(0.01)
    assert [s.name for s in fake.started] == ["unstoppable_first_files"]
    # The daemon is killed: a new one starts over the same ledger and Docker.
    world.daemon = Daemon(narrow, fake, world.ledger)
    last_tick = world.daemon.start_tick(NOW + timedelta(seconds=30))
    fake.end("unstoppable_first_files")
    world.daemon.load_config()
    world.daemon.adopt()
    world.settle()
    world.daemon.tick(last_tick, NOW + timedelta(seconds=30))
    world.settle()
    second = JobKey.parse("second/files")
    assert world.ledger.history.runs(second) == [run_row("second", "success")]  # its own time
    assert world.ledger.history.event_count(second, Event.MISSED) == 0
    assert world.ledger.history.event_count(second, Event.SKIPPED) == 0
    for name in fake.names():
        fake.end(name)


def test_runs_a_killed_daemon_was_launching_are_run_unless_docker_or_the_ledger_has_them(
    world: World,
) -> None:
    """Killed after writing its tick, before Docker started the workers: not lost, not twice."""
    killed_while_launching(world)
    later = NOW + timedelta(seconds=20)
    last_tick = world.daemon.start_tick(later)
    assert last_tick == NOW
    world.daemon.load_config()
    world.daemon.adopt()
    world.settle()
    world.daemon.tick(last_tick, later)
    world.settle()
    assert world.ledger.history.runs(JobKey.parse("lost/files")) == [run_row("lost", "success")]
    assert world.ledger.history.runs(JobKey.parse("started/files")) == [
        run_row("started", "success")
    ]  # adopted, and not launched again
    for customer in ("lost", "started"):
        job = JobKey(customer, "files")
        assert world.ledger.history.event_count(job, Event.SKIPPED) == 0
        assert world.ledger.history.event_count(job, Event.MISSED) == 0


def test_times_while_a_customer_file_is_broken_are_missed_for_config_not_lost(
    world: World,
) -> None:
    world.customer("flaky", "* * * * * */10")
    world.fake.script("unstoppable_flaky_files", WROTE)
    job = JobKey.parse("flaky/files")
    world.tick(NOW, NOW - timedelta(seconds=1))
    file = world.settings.CUSTOMERS_DIR / "flaky.env"
    good = file.read_text()
    file.write_text("RESOURCES=\x00 garbage\n")
    world.daemon.roster.signature = None  # read it again now, not at the next poll
    world.tick(NOW + timedelta(seconds=25), NOW)  # :10 and :20 pass while it is broken
    assert world.ledger.history.event_count(job, Event.MISSED, "config") == 2
    file.write_text(good)
    world.daemon.roster.signature = None
    world.tick(NOW + timedelta(seconds=31), NOW + timedelta(seconds=25))
    assert [r.scheduled_for for r in world.ledger.history.runs(job)] == [
        NOW.isoformat(),
        (NOW + timedelta(seconds=30)).isoformat(),
    ]


def test_a_launched_run_stays_in_every_tick_until_it_is_recorded(world: World) -> None:
    from orchestrator import ticks

    world.customer("slow", "* * * * * */10")
    world.fake.script("unstoppable_slow_files", Script(hang=True))
    world.daemon.load_config()
    world.daemon.tick(NOW - timedelta(seconds=1), NOW)
    world.daemon.tick(NOW, NOW + timedelta(seconds=5))  # a tick with nothing new to launch
    kept = ticks.start_pending(world.ledger.db, "launching")
    assert kept == {Work(JobKey.parse("slow/files"), Kind.BACKUP): NOW}
    deadline = time.monotonic() + 10
    while not world.fake.started and time.monotonic() < deadline:
        time.sleep(0.01)
    world.fake.end("unstoppable_slow_files")
    world.settle()
    world.daemon.tick(NOW + timedelta(seconds=5), NOW + timedelta(seconds=6))
    assert ticks.start_pending(world.ledger.db, "launching") == {}


def test_a_tick_that_cannot_be_read_or_checked_never_stops_the_start(world: World) -> None:
    from orchestrator import ticks

    aware, naive = NOW.isoformat(), NOW.replace(tzinfo=None).isoformat()
    later = (NOW + timedelta(hours=1)).isoformat()
    tick = {"at": aware, "pending": [["a/files", "backup", aware], ["b/files", "backup", naive],
            ["c", "backup", aware], ["d/files", "nonsense", aware], ["e/files", "backup", later]],
            "launching": [["f/files", "backup", aware]]}  # fmt: skip
    world.ledger.db.set_state("last_tick", json.dumps(tick))

    class Broken:
        def runs(self, job: JobKey) -> list[RunRow]:
            raise sqlite3.DatabaseError("database disk image is malformed")

    world.ledger.history = Broken()  # type: ignore[assignment]
    waiting = ticks.waiting_at_start(world.ledger, world.fake, NOW + timedelta(seconds=30))
    # Only the readable, past entry: a naive time, no job, an unknown kind, a time still to
    # come (the clock moved back) are left out; the launched one cannot be checked: waits not.
    assert waiting == {Work(JobKey.parse("a/files"), Kind.BACKUP): NOW}


def test_a_daemon_started_before_its_engine_waits_for_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """It exited (code 1) when Docker was away at its start: five times in the soak."""
    from orchestrator.commands import act
    from orchestrator.errors import RuntimeUnavailable

    answers: list[object] = [RuntimeUnavailable("cannot reach the Docker engine")] * 2
    engine = FakeRuntime()

    def open_runtime(_settings: object) -> FakeRuntime:
        if answers:
            raise answers.pop()  # type: ignore[misc]
        return engine

    monkeypatch.setattr(act, "open_runtime", open_runtime)
    monkeypatch.setattr(act, "ENGINE_WAIT", 0.01)
    assert act.patient_runtime(make_world(tmp_path, engine).settings) is engine
    assert answers == []


def test_an_adopted_prune_that_failed_half_way_has_what_it_left_in_hot_alone_set_aside(
    world: World,
) -> None:
    """The 20-minute soak: a prune cut short by a full cold disk, its daemon killed, was
    adopted and recorded, but the index file it had written to the hot repository alone
    stayed, and every check and drill of the job failed after ("cold file for hot file")."""
    from orchestrator.storage import halfway
    from orchestrator.storage.layout import job_storage

    world.customer("acme")
    storage = job_storage(world.settings, "acme", "files")
    assert storage.cold is not None
    (storage.cold / "index").mkdir(parents=True)
    began = datetime.now(UTC) - timedelta(seconds=5)
    left = world.leftover(
        "acme",
        Script(1, "", "[ERROR] No space left on device (os error 28)\n", hang=True),
        Kind.PRUNE,
        started_at=began,
    )
    (storage.hot / "index").mkdir(parents=True)
    (storage.hot / "index" / ("9" * 64)).write_bytes(b"an index the cold disk refused")
    world.daemon.load_config()
    world.daemon.adopt()
    world.fake.end(left.name)
    world.settle()

    [run] = world.ledger.history.runs(JobKey.parse("acme/files"))
    assert run[2:] == ("prune", run[3], "failure", "prune")
    db = sqlite3.connect(world.root / "data" / "state" / "ledger.sqlite3")
    [(message,)] = db.execute("SELECT message FROM runs").fetchall()
    db.close()
    assert message.startswith("prune failed: No space left on device"), message
    assert message.endswith("99999999 never reached the cold repository: set aside"), message
    assert not (storage.hot / "index" / ("9" * 64)).exists()
    aside = halfway.aside_of(world.settings, "acme", "files") / "index" / ("9" * 64)
    assert aside.read_bytes() == b"an index the cold disk refused"


def test_a_killed_daemons_worker_for_a_time_its_last_tick_never_named_is_run_once(
    world: World,
) -> None:
    """The 20-minute soak: a daemon killed (its data disk full) after launching 09:00 and
    before a tick naming it was written. The restarted daemon counted 09:00 missed, then
    adopted the worker: one time, missed and run. The first tick now asks Docker for a
    previous daemon's workers before it plans, and leaves their times to their adoption."""
    world.customer("acme")
    world.ledger.db.set_state(
        "last_tick", json.dumps({"at": (NOW - timedelta(minutes=61)).isoformat(), "pending": []})
    )
    hanging = Script(0, WROTE.stdout, WROTE.stderr, hang=True)
    left = world.leftover("acme", hanging, scheduled_for=NOW - timedelta(hours=1))
    later = NOW + timedelta(seconds=5)
    last_tick = world.daemon.start_tick(later)
    assert last_tick == NOW - timedelta(minutes=61)
    world.daemon.load_config()
    world.daemon.tick(last_tick, later)  # no adoption pass before it: the tick asks first
    world.fake.end(left.name)
    world.settle()
    job = JobKey.parse("acme/files")
    assert world.ledger.history.runs(job) == [
        run_row("acme", "success", at=NOW - timedelta(hours=1))
    ]
    assert world.ledger.history.event_count(job, Event.MISSED) == 0
    # 10:00 came while the adopted run went on: skipped, as any overlap.
    assert world.ledger.history.event_count(job, Event.SKIPPED, "overlap") == 1
    assert world.daemon.dispatch.claimed == set(), "a claim is planned past once"


def test_claims_outlive_an_adoption_pass_that_finds_their_worker_gone(world: World) -> None:
    """Adoption runs before the first tick plans; a worker that ended at once is collected
    and gone at the next pass, which must not forget the time it stood for."""
    world.customer("acme")
    world.fake.script("unstoppable_acme_files", WROTE)
    world.leftover("acme", WROTE, scheduled_for=NOW - timedelta(hours=1))
    world.daemon.load_config()
    world.daemon.adopt()
    world.settle()
    world.daemon.adopt()  # the worker is gone now
    world.tick(NOW + timedelta(seconds=5), NOW - timedelta(minutes=61))
    job = JobKey.parse("acme/files")
    assert [row.scheduled_for for row in world.ledger.history.runs(job)] == [
        (NOW - timedelta(hours=1)).isoformat(),
        NOW.isoformat(),
    ]
    assert world.ledger.history.event_count(job, Event.MISSED) == 0


def test_a_claimed_time_whose_adoption_raises_is_recorded_once_as_a_failure(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug while judging a left worker: its time is accounted for once (a failure), and
    a later adoption pass judges the worker again without recording it again."""
    import orchestrator.dispatch

    def broken(*_args: object) -> RunRecord:
        raise RuntimeError("a bug of ours")

    world.customer("acme")
    left = world.leftover("acme", WROTE, scheduled_for=NOW - timedelta(hours=1))
    world.daemon.load_config()
    with monkeypatch.context() as patch:
        patch.setattr(orchestrator.dispatch, "adopt", broken)
        world.daemon.adopt()
        world.settle()
    job = JobKey.parse("acme/files")
    assert world.ledger.history.runs(job) == [
        run_row("acme", "failure", "internal", at=NOW - timedelta(hours=1))
    ]
    world.daemon.adopt()  # the worker is still there: collected, not recorded again
    deadline = time.monotonic() + 10
    while left.name in world.fake.names():
        assert time.monotonic() < deadline, "the worker was never collected"
        time.sleep(0.01)
    world.daemon.adopt()
    world.settle()
    assert len(world.ledger.history.runs(job)) == 1
    assert world.ledger.history.event_count(job, Event.MISSED) == 0


def test_a_worker_whose_time_was_recorded_while_docker_was_lost_is_judged_not_recorded_again(
    world: World,
) -> None:
    """Docker lost for good while an adopted worker ran: its time is recorded `runtime` and
    the worker left running. Once the engine is back, the next pass collects and judges it
    (what judging sets aside or holds must happen) and never records the time again."""
    world.customer("acme")
    left = world.leftover("acme", Script(0, EMPTY, "", hang=True))  # a snapshot of nothing
    lose_engine(world.fake, times=1)
    world.daemon.load_config()
    world.daemon.adopt()
    world.settle()
    job = JobKey.parse("acme/files")
    [row] = world.ledger.history.runs(job)
    assert (row.result, row.reason) == ("failure", "runtime")
    assert left.name in world.fake.names(), "left running, as Docker could not be asked"
    world.fake.script(left.name, Script())  # the tag steps judging it runs, under its name
    world.fake.end(left.name)
    world.daemon.adopt()
    world.settle()
    assert world.ledger.history.runs(job) == [row], "one time, one record"
    assert world.ledger.memory.held(job), "judged: the suspect snapshot holds retention"
    assert world.fake.names() == set() and list(secrets_dir(world.settings).iterdir()) == []
    assert world.daemon.dispatch.recorded == set()
    world.daemon.adopt()
    world.settle()
    assert world.ledger.history.runs(job) == [row]


def test_a_time_the_ledger_holds_already_is_judged_and_never_recorded_twice(
    world: World,
) -> None:
    """A worker whose run is in the ledger already: its removal failed, or the daemon
    that recorded it (Docker lost for good) was restarted before the engine came back.
    Judged again, as adoption does, and not recorded again, by a daemon that never saw it."""
    world.customer("acme")
    scheduled = NOW - timedelta(hours=1)
    left = world.leftover("acme", WROTE, scheduled_for=scheduled)
    outcome = Outcome(Result.FAILURE, Reason.RUNTIME, "cannot reach the Docker engine")
    world.ledger.history.record_run(
        RunRecord.of(Work(JobKey("acme", "files")), scheduled, NOW, outcome)
    )
    world.daemon.load_config()
    world.daemon.adopt()
    world.settle()
    [row] = world.ledger.history.runs(JobKey.parse("acme/files"))
    assert (row.result, row.reason) == ("failure", "runtime")
    assert left.name not in world.fake.names(), "collected all the same"


def test_docker_lost_again_while_a_recorded_worker_is_judged_keeps_it_recorded_once(
    world: World,
) -> None:
    """The engine flaps: the pass that judges a worker whose time is recorded loses Docker
    again. The worker is still there; the pass after that must not record it either."""
    world.customer("acme")
    left = world.leftover("acme", Script(0, WROTE.stdout, WROTE.stderr, hang=True))
    lose_engine(world.fake, times=2)
    world.daemon.load_config()
    job = JobKey.parse("acme/files")
    for _ in range(2):  # recorded `runtime`; then judged, Docker lost again
        world.daemon.adopt()
        world.settle()
        assert left.name in world.fake.names()
    world.fake.end(left.name)
    world.daemon.adopt()
    world.settle()
    [row] = world.ledger.history.runs(job)
    assert (row.result, row.reason) == ("failure", "runtime")
    assert world.fake.names() == set()


def test_runs_launched_before_a_stop_with_docker_away_wait_again_and_docker_has_the_last_word(
    world: World,
) -> None:
    """Killed after writing its tick; restarted while the engine is away. Its launched runs
    once counted nothing when Docker could not be asked (neither run nor missed): they
    wait again, and a worker Docker turns out to hold is adopted, never run twice."""
    killed_while_launching(world)
    later = NOW + timedelta(seconds=20)
    world.fake.available = False
    last_tick = world.daemon.start_tick(later)
    assert last_tick == NOW
    world.fake.available = True
    world.tick(later, last_tick)
    for customer in ("lost", "started"):
        job = JobKey(customer, "files")
        assert world.ledger.history.runs(job) == [run_row(customer, "success")]
        assert world.ledger.history.event_count(job, Event.MISSED) == 0
        assert world.ledger.history.event_count(job, Event.SKIPPED) == 0
    assert [spec.name for spec in world.fake.started].count("unstoppable_started_files") == 1
