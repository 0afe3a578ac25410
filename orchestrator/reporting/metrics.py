"""`/metrics`: the only module that imports prometheus_client.

Every scrape reads the ledger (what survives restarts), the repositories' own snapshot files
(what was really written, whatever the daemon believes) and the daemon's live view (what is
configured, running and next).
"""

import socket
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

from prometheus_client import CollectorRegistry, make_wsgi_app, start_http_server
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from orchestrator import __version__
from orchestrator.model import Result
from orchestrator.reporting.activation import serve_wsgi
from orchestrator.reporting.ledger import DURATION_BUCKETS, JobStatus, Ledger
from orchestrator.reporting.views import DaemonView, JobView, snapshot_files

JOB = ["customer", "resource"]


class BackupCollector(Collector):
    """Builds the metric families of DESIGN.md at scrape time."""

    def __init__(self, ledger: Ledger, view: Callable[[], DaemonView]) -> None:
        self.ledger = ledger
        self.view = view

    def collect(self) -> Iterator[Metric]:
        view = self.view()
        g = _Families()
        errors = dict(view.errors)
        try:
            status = {(s.customer, s.resource): s for s in self.ledger.status()}
            held = self.ledger.held_jobs()
            corrupt, verified = self.ledger.maintenance_state()
            pruned = self.ledger.prune_results()
            locks, unlocked = self.ledger.lock_state()
        except Exception:  # a damaged or full ledger must not take the scrape down
            status, held, corrupt, verified, pruned = {}, set(), set(), {}, {}
            locks, unlocked = {}, set()
            errors["ledger"] = errors.get("ledger", 0) + 1
        for what in ("clock", "internal", "ledger", "runtime"):
            g.counter(
                "daemon_errors",
                "problems the daemon logged and survived, by where they came from",
                ["what"],
                [what],
                errors.get(what, 0),
            )
        for job in view.jobs:
            labels = [job.customer, job.resource]
            s = status.get((job.customer, job.resource)) or JobStatus(job.customer, job.resource)
            _job_metrics(g, labels, s, job, f"{job.customer}/{job.resource}" in view.running)
            g.gauge(
                "backup_held",
                "1 while retention is held after a suspect snapshot",
                JOB,
                labels,
                1 if f"{job.customer}/{job.resource}" in held else 0,
            )
            _maintenance_metrics(g, labels, s, job, corrupt, verified)
            if (last_prune := pruned.get(f"{job.customer}/{job.resource}")) is not None:
                g.gauge(
                    "prune_last_run_success",
                    "1 if the job's last forget/prune succeeded",
                    JOB,
                    labels,
                    1 if last_prune == Result.SUCCESS.value else 0,
                )
            if (until := locks.get(f"{job.customer}/{job.resource}")) is not None:
                g.gauge(
                    "lock_until_timestamp_seconds",
                    "the soonest the object lock of a live object of the cold repository ends",
                    JOB,
                    labels,
                    until.timestamp(),
                )
        if view.lock_margin is not None:
            g.gauge(
                "lock_margin_seconds",
                "BackupLockExpiring fires when a live object's lock ends sooner than this",
                [],
                [],
                view.lock_margin,
            )
        for customer in sorted(unlocked & set(view.valid_customers)):
            g.gauge(
                "bucket_unlocked",
                "1 when the customer's bucket has no object lock: its history is not protected",
                ["customer"],
                [customer],
                1,
            )
        for customer in view.valid_customers:
            g.gauge("config_valid", "1 if the customer file is valid", ["customer"], [customer], 1)
        for customer in sorted(set(view.invalid_customers) - set(view.valid_customers)):
            g.gauge("config_valid", "1 if the customer file is valid", ["customer"], [customer], 0)
        g.gauge(
            "scheduler_heartbeat_timestamp_seconds",
            "last loop of the scheduler",
            [],
            [],
            view.heartbeat,
        )
        g.gauge(
            "build_info",
            "version of the orchestrator and of rustic in the worker",
            ["version", "rustic_version"],
            [__version__, view.rustic_version],
            1,
        )
        yield from g.families.values()


def _job_metrics(
    g: "_Families", labels: list[str], s: JobStatus, job: JobView, running: bool
) -> None:
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


def _maintenance_metrics(
    g: "_Families",
    labels: list[str],
    s: JobStatus,
    job: JobView,
    corrupt: set[str],
    verified: dict[str, datetime],
) -> None:
    name = f"{job.customer}/{job.resource}"
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


class _Families:
    """Collects samples into one family per metric name."""

    def __init__(self) -> None:
        self.families: dict[str, Any] = {}

    def gauge(self, name: str, doc: str, keys: list[str], values: list[str], v: float) -> None:
        family = self.families.setdefault(
            name, GaugeMetricFamily(f"unstoppable_{name}", doc, labels=keys)
        )
        family.add_metric(values, v)

    def counter(self, name: str, doc: str, keys: list[str], values: list[str], v: float) -> None:
        family = self.families.setdefault(
            name, CounterMetricFamily(f"unstoppable_{name}", doc, labels=keys)
        )
        family.add_metric(values, v)

    def histogram(self, name: str, doc: str, values: list[str], s: JobStatus) -> None:
        family = self.families.setdefault(
            name, HistogramMetricFamily(f"unstoppable_{name}", doc, labels=JOB)
        )
        buckets = [(str(float(b)), s.total("duration_le", str(b))) for b in DURATION_BUCKETS]
        buckets.append(("+Inf", s.total("duration_le", "+Inf")))
        family.add_metric(values, buckets, s.total("duration_sum"))


def serve(
    listen: str, collector: BackupCollector, inherited: socket.socket | None = None
) -> CollectorRegistry:
    """Serve `collector` from a registry of its own on `inherited`, a listening socket (from
    systemd), or else on `listen` (host:port); return the registry.

    Raises OSError if the address cannot be bound, ValueError if it is no host:port.
    """
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    if inherited is not None:
        serve_wsgi(inherited, make_wsgi_app(registry))
        return registry
    host, _, port = listen.rpartition(":")
    start_http_server(int(port), addr=host.strip("[]") or "127.0.0.1", registry=registry)
    return registry
