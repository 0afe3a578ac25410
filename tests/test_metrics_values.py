"""/metrics value by value: known runs and events in a ledger, the collector in a registry
of its own, and each sample read back with `get_sample_value`.
"""

import os
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from orchestrator import __version__
from orchestrator.model import JobKey, Kind, Outcome, Reason, Result, RunRecord, Summary
from orchestrator.reporting.history import Event
from orchestrator.reporting.ledger import Ledger
from orchestrator.reporting.metrics import BackupCollector
from orchestrator.reporting.views import DaemonView, JobView

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
SUMMARY = Summary("4f8c9e1a", "2026-03-02T10:00:01Z", 2, 1, 9123, 52480, 40, 8011, 3540)
ACME = {"customer": "acme", "resource": "files"}
BETA = {"customer": "beta", "resource": "db"}
SNAPSHOT_MTIME = 1_772_445_600.0  # when the newest snapshot file of acme/files was written
VERIFIED_AT = T0 + timedelta(days=1, seconds=90)


def run(
    kind: Kind,
    start: timedelta,
    seconds: float,
    result: Result,
    reason: Reason = Reason.NONE,
    summary: Summary | None = None,
) -> RunRecord:
    started = T0 + start
    return RunRecord(
        JobKey("acme", "files"),
        kind,
        started,
        started,
        started + timedelta(seconds=seconds),
        Outcome(result, reason, "", summary),
    )


# acme/files, oldest first: durations 30, 0.5, 100, 50000 (past the top bucket) and 5 s
# (on a bound: Prometheus buckets count up to and including their bound).
BACKUPS = [
    run(Kind.BACKUP, timedelta(0), 30, Result.SUCCESS, summary=SUMMARY),
    run(Kind.BACKUP, timedelta(hours=1), 0.5, Result.FAILURE, Reason.SOURCE_MISSING),
    run(Kind.BACKUP, timedelta(hours=2), 100, Result.FAILURE, Reason.RUSTIC),
    run(Kind.BACKUP, timedelta(hours=3), 50_000, Result.TIMEOUT, Reason.TIMEOUT),
    run(Kind.BACKUP, timedelta(days=2), 5, Result.SUSPECT, summary=SUMMARY),
]
MAINTENANCE = [
    run(Kind.VERIFY, timedelta(days=1), 90, Result.SUCCESS),
    run(Kind.VERIFY, timedelta(days=3), 10, Result.FAILURE, Reason.RUSTIC),
    run(Kind.VERIFY, timedelta(days=4), 10, Result.CORRUPT),
    run(Kind.PRUNE, timedelta(days=1, hours=1), 60, Result.SUCCESS),
    run(Kind.PRUNE, timedelta(days=2, hours=1), 60, Result.FAILURE, Reason.PRUNE),
]


def view(snapshots: Path) -> DaemonView:
    return DaemonView(
        jobs=(
            JobView(
                JobKey("acme", "files"), T0.timestamp() + 7 * 86400, 3600.0, snapshots, 604800.0
            ),
            JobView(JobKey("beta", "db"), None, 86400.0, snapshots.parent / "none"),
        ),
        valid_customers=("acme", "beta"),
        invalid_customers=("broken",),
        running=frozenset({JobKey("beta", "db")}),
        heartbeat=1_772_445_601.5,
        rustic_version="0.11.4",
        errors=(("clock", 2), ("runtime", 1)),
    )


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., float | None]:
    root = tmp_path_factory.mktemp("metrics")
    ledger = Ledger(root / "state")
    for record in BACKUPS + MAINTENANCE:
        ledger.history.record_run(record)
    ledger.history.record_event(JobKey.parse("acme/files"), Event.SKIPPED, "overlap", T0)
    ledger.history.record_event(
        JobKey.parse("acme/files"), Event.SKIPPED, "overlap", T0 + timedelta(hours=1)
    )
    ledger.history.record_event(JobKey.parse("acme/files"), Event.SKIPPED, "max_parallel", T0)
    ledger.history.record_event(JobKey.parse("acme/files"), Event.MISSED, "", T0, 3)
    ledger.history.record_event(
        JobKey.parse("acme/files"), Event.MISSED, "", T0 + timedelta(days=1), 2
    )
    ledger.memory.hold(
        JobKey.parse("acme/files"), SUMMARY.snapshot_id, "rustic backed up no file at all", T0
    )
    ledger.memory.mark_corrupt(
        JobKey.parse("acme/files"), "pack 1234 is missing", T0 + timedelta(days=4)
    )
    snapshots = root / "snapshots"
    snapshots.mkdir()
    for name, mtime in (("a1", SNAPSHOT_MTIME - 3600), ("b2", SNAPSHOT_MTIME)):
        (snapshots / name).write_text("{}")
        os.utime(snapshots / name, (mtime, mtime))
    registry = CollectorRegistry()
    registry.register(BackupCollector(ledger, lambda: view(snapshots)))

    def get(name: str, labels: dict[str, str] | None = None) -> float | None:
        return registry.get_sample_value(name, labels or {})

    return get


def ended(record: RunRecord) -> float:
    return record.ended.timestamp()


B = "unstoppable_backup_"
EXPECTED = [
    # What the ledger holds of the backups of acme/files.
    (B + "runs_total", {**ACME, "result": "success"}, 1),
    (B + "runs_total", {**ACME, "result": "failure"}, 2),
    (B + "runs_total", {**ACME, "result": "timeout"}, 1),
    (B + "runs_total", {**ACME, "result": "suspect"}, 1),
    (B + "failures_total", {**ACME, "reason": "source_missing"}, 1),
    (B + "failures_total", {**ACME, "reason": "rustic"}, 1),
    (B + "failures_total", {**ACME, "reason": "timeout"}, 1),  # a timeout is a failure too
    (B + "failures_total", {**ACME, "reason": ""}, None),  # a suspect run is no failure
    (B + "failures_total", {**ACME, "reason": "prune"}, None),  # prunes are counted apart
    (B + "skipped_total", {**ACME, "reason": "overlap"}, 2),
    (B + "skipped_total", {**ACME, "reason": "max_parallel"}, 1),
    (B + "missed_total", ACME, 5),
    (B + "last_success_timestamp_seconds", ACME, ended(BACKUPS[0])),
    (B + "last_run_timestamp_seconds", ACME, ended(BACKUPS[-1])),
    (B + "last_run_success", ACME, 0),  # the last run was the suspect one
    # From the last successful run's summary: a suspect run's summary does not replace it.
    (B + "last_added_bytes", ACME, 9123),
    (B + "last_processed_bytes", ACME, 52480),
    (B + "last_files_new", ACME, 2),
    (B + "last_files_changed", ACME, 1),
    (B + "held", ACME, 1),
    # Durations 0.5, 5, 30, 100 and 50000 s, cumulative per upper bound.
    (B + "duration_seconds_bucket", {**ACME, "le": "1.0"}, 1),
    (B + "duration_seconds_bucket", {**ACME, "le": "5.0"}, 2),
    (B + "duration_seconds_bucket", {**ACME, "le": "15.0"}, 2),
    (B + "duration_seconds_bucket", {**ACME, "le": "60.0"}, 3),
    (B + "duration_seconds_bucket", {**ACME, "le": "300.0"}, 4),
    (B + "duration_seconds_bucket", {**ACME, "le": "3600.0"}, 4),
    (B + "duration_seconds_bucket", {**ACME, "le": "43200.0"}, 4),
    (B + "duration_seconds_bucket", {**ACME, "le": "+Inf"}, 5),
    (B + "duration_seconds_count", ACME, 5),
    (B + "duration_seconds_sum", ACME, 50_135.5),
    # What the daemon's view adds.
    (B + "running", ACME, 0),
    (B + "next_run_timestamp_seconds", ACME, T0.timestamp() + 7 * 86400),
    (B + "expected_interval_seconds", ACME, 3600),
    ("unstoppable_repo_snapshots", ACME, 2),
    ("unstoppable_repo_latest_snapshot_timestamp_seconds", ACME, SNAPSHOT_MTIME),
    # Restore drills and prunes, apart from the backups.
    ("unstoppable_verify_runs_total", {**ACME, "result": "success"}, 1),
    ("unstoppable_verify_runs_total", {**ACME, "result": "failure"}, 1),
    ("unstoppable_verify_runs_total", {**ACME, "result": "timeout"}, 0),
    ("unstoppable_verify_runs_total", {**ACME, "result": "corrupt"}, 1),
    ("unstoppable_verify_last_success_timestamp_seconds", ACME, VERIFIED_AT.timestamp()),
    ("unstoppable_verify_expected_interval_seconds", ACME, 604800),
    ("unstoppable_verify_corrupt", ACME, 1),
    ("unstoppable_prune_runs_total", {**ACME, "result": "success"}, 1),
    ("unstoppable_prune_runs_total", {**ACME, "result": "failure"}, 1),
    ("unstoppable_prune_last_run_success", ACME, 0),  # the last prune failed
    # A job the ledger has never seen: zero counts, no timestamps, running by the view.
    (B + "runs_total", {**BETA, "result": "success"}, 0),
    (B + "skipped_total", {**BETA, "reason": "overlap"}, 0),
    (B + "missed_total", BETA, 0),
    (B + "duration_seconds_count", BETA, 0),
    (B + "duration_seconds_bucket", {**BETA, "le": "+Inf"}, 0),
    (B + "last_success_timestamp_seconds", BETA, None),
    (B + "last_run_success", BETA, None),
    (B + "last_added_bytes", BETA, None),
    (B + "next_run_timestamp_seconds", BETA, None),
    (B + "running", BETA, 1),
    (B + "held", BETA, 0),
    ("unstoppable_repo_snapshots", BETA, 0),
    ("unstoppable_repo_latest_snapshot_timestamp_seconds", BETA, None),
    ("unstoppable_verify_corrupt", BETA, 0),
    ("unstoppable_verify_last_success_timestamp_seconds", BETA, None),
    ("unstoppable_verify_expected_interval_seconds", BETA, None),
    ("unstoppable_prune_last_run_success", BETA, None),
    # The daemon itself.
    ("unstoppable_config_valid", {"customer": "acme"}, 1),
    ("unstoppable_config_valid", {"customer": "broken"}, 0),
    ("unstoppable_scheduler_heartbeat_timestamp_seconds", {}, 1_772_445_601.5),
    ("unstoppable_build_info", {"version": __version__, "rustic_version": "0.11.4"}, 1),
    ("unstoppable_daemon_errors_total", {"what": "clock"}, 2),
    ("unstoppable_daemon_errors_total", {"what": "runtime"}, 1),
    ("unstoppable_daemon_errors_total", {"what": "ledger"}, 0),
]


@pytest.mark.parametrize(
    ("name", "labels", "value"),
    EXPECTED,
    ids=[f"{n.removeprefix('unstoppable_')}{sorted(lb.items())}" for n, lb, _ in EXPECTED],
)
def test_sample(
    sample: Callable[..., float | None], name: str, labels: dict[str, str], value: float | None
) -> None:
    assert sample(name, labels) == value


def test_a_damaged_ledger_is_counted_and_the_scrape_goes_on(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "state")
    ledger.history.record_run(BACKUPS[0])
    ledger.db.path.write_bytes(b"this is no SQLite database" * 100)
    registry = CollectorRegistry()
    registry.register(BackupCollector(ledger, lambda: view(tmp_path / "snapshots")))
    assert registry.get_sample_value("unstoppable_daemon_errors_total", {"what": "ledger"}) == 1
    assert registry.get_sample_value(B + "runs_total", {**ACME, "result": "success"}) == 0
    assert registry.get_sample_value(B + "running", BETA) == 1
