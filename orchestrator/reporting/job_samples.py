"""What each job contributes to a scrape: its backup, drill and prune samples.

The families themselves are built in metrics.py, the only module that imports
prometheus_client; this one says which samples a job has, through the `Samples` seam.
"""

from datetime import datetime
from typing import Protocol

from orchestrator.model import JobKey, Result
from orchestrator.reporting.history import JobStatus
from orchestrator.reporting.views import JobView, snapshot_files

JOB = ["customer", "resource"]


class Samples(Protocol):
    """Where samples go: one family per metric name."""

    def gauge(self, name: str, doc: str, keys: list[str], values: list[str], v: float) -> None: ...

    def counter(
        self, name: str, doc: str, keys: list[str], values: list[str], v: float
    ) -> None: ...

    def histogram(self, name: str, doc: str, values: list[str], s: JobStatus) -> None: ...


def job_samples(g: Samples, labels: list[str], s: JobStatus, job: JobView, running: bool) -> None:
    b = "backup_"
    if s.last_success:
        g.gauge(
            b + "last_success_timestamp_seconds",
            "end of the last successful run",
            JOB,
            labels,
            s.last_success.timestamp(),
        )
    if s.last_run:
        g.gauge(
            b + "last_run_timestamp_seconds",
            "end of the last run",
            JOB,
            labels,
            s.last_run.timestamp(),
        )
        g.gauge(
            b + "last_run_success",
            "1 if the last run succeeded",
            JOB,
            labels,
            1 if s.result == Result.SUCCESS.value else 0,
        )
    for result in (Result.SUCCESS, Result.FAILURE, Result.TIMEOUT, Result.SUSPECT):
        g.counter(
            b + "runs",
            "finished runs by result",
            [*JOB, "result"],
            [*labels, result.value],
            s.total("runs", result.value),
        )
    for (name, reason), value in sorted(s.totals.items()):
        if name == "failures":
            g.counter(
                b + "failures", "failed runs by reason", [*JOB, "reason"], [*labels, reason], value
            )
    for reason in ("overlap", "max_parallel"):
        g.counter(
            b + "skipped",
            "scheduled runs not started",
            [*JOB, "reason"],
            [*labels, reason],
            s.total("skipped", reason),
        )
    g.counter(
        b + "missed", "scheduled times that passed with no run", JOB, labels, s.total("missed")
    )
    g.gauge(b + "running", "1 while a run is in progress", JOB, labels, 1 if running else 0)
    g.histogram(b + "duration_seconds", "duration of finished runs", labels, s)
    if job.next_run is not None:
        g.gauge(b + "next_run_timestamp_seconds", "next scheduled time", JOB, labels, job.next_run)
    g.gauge(
        b + "expected_interval_seconds",
        "longest gap between scheduled times",
        JOB,
        labels,
        job.expected_interval,
    )
    last: tuple[tuple[str, int | None], ...] = (
        ("last_added_bytes", s.data_added),
        ("last_processed_bytes", s.bytes_processed),
        ("last_files_new", s.files_new),
        ("last_files_changed", s.files_changed),
    )
    for metric, amount in last:
        if amount is not None:
            g.gauge(b + metric, "from the last successful run's summary", JOB, labels, amount)
    count, latest = snapshot_files(job.snapshots_dir)
    g.gauge("repo_snapshots", "snapshot files in the repository", JOB, labels, count)
    if latest:
        g.gauge(
            "repo_latest_snapshot_timestamp_seconds",
            "when the newest snapshot file was written",
            JOB,
            labels,
            latest,
        )


def maintenance_samples(
    g: Samples,
    labels: list[str],
    s: JobStatus,
    job: JobView,
    corrupt: set[JobKey],
    verified: dict[JobKey, datetime],
) -> None:
    name = job.job
    for result in (Result.SUCCESS, Result.FAILURE, Result.TIMEOUT, Result.CORRUPT):
        g.counter(
            "verify_runs",
            "finished restore drills by result",
            [*JOB, "result"],
            [*labels, result.value],
            s.total("verify_runs", result.value),
        )
    for result in (Result.SUCCESS, Result.FAILURE, Result.TIMEOUT):
        g.counter(
            "prune_runs",
            "finished forget/prune runs by result",
            [*JOB, "result"],
            [*labels, result.value],
            s.total("prune_runs", result.value),
        )
    if name in verified:
        g.gauge(
            "verify_last_success_timestamp_seconds",
            "end of the last successful restore drill",
            JOB,
            labels,
            verified[name].timestamp(),
        )
    if job.verify_interval is not None:
        g.gauge(
            "verify_expected_interval_seconds",
            "longest gap between scheduled restore drills",
            JOB,
            labels,
            job.verify_interval,
        )
    g.gauge(
        "verify_corrupt",
        "1 from a drill that found damage until a drill reading every pack finds none",
        JOB,
        labels,
        1 if name in corrupt else 0,
    )
