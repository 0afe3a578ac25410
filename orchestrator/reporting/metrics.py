"""`/metrics`: the only module that imports prometheus_client.

Every scrape reads the ledger (what survives restarts), the repositories' own snapshot files
(what was really written, whatever the daemon believes) and the daemon's live view (what is
configured, running and next).
"""

import logging
import os
import socket
from collections.abc import Callable, Iterator
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
from orchestrator.errors import ServeFailed
from orchestrator.model import JobKey, Result
from orchestrator.reporting.activation import same_address, serve_wsgi, take_socket, where
from orchestrator.reporting.history import DURATION_BUCKETS, JobStatus
from orchestrator.reporting.job_samples import JOB, job_samples, maintenance_samples
from orchestrator.reporting.ledger import Ledger
from orchestrator.reporting.views import DAEMON_ERRORS, DaemonView

log = logging.getLogger(__name__)


class BackupCollector(Collector):
    """Builds the metric families of DESIGN.md at scrape time."""

    def __init__(self, ledger: Ledger, view: Callable[[], DaemonView]) -> None:
        self.ledger = ledger
        self.view = view
        self.failing: set[JobKey] = set()  # jobs whose samples raised, until they do not
        self.failures = 0  # how often a job's samples started to raise: counted once each

    def collect(self) -> Iterator[Metric]:
        view = self.view()
        g = _Families()
        errors = dict(view.errors)
        try:
            status = {s.job: s for s in self.ledger.history.status()}
            held = self.ledger.memory.held_jobs()
            corrupt, verified = self.ledger.memory.maintenance_state()
            pruned = self.ledger.memory.prune_results()
            locks, unlocked = self.ledger.locks.lock_state()
        except Exception:  # a damaged or full ledger must not take the scrape down
            status, held, corrupt, verified, pruned = {}, set(), set(), {}, {}
            locks, unlocked = {}, set()
            errors["ledger"] = errors.get("ledger", 0) + 1
        undelivered = dict(view.undelivered)
        for job in view.jobs:
            key = job.job
            try:  # one job's part of the scrape; a bug in it must not hide everyone else's
                labels = [key.customer, key.resource]
                s = status.get(key) or JobStatus(key.customer, key.resource)
                job_samples(g, labels, s, job, key in view.running)
                g.gauge(
                    "backup_held",
                    "1 while retention is held after a suspect snapshot",
                    JOB,
                    labels,
                    1 if key in held else 0,
                )
                maintenance_samples(g, labels, s, job, corrupt, verified)
                if (last_prune := pruned.get(key)) is not None:
                    g.gauge(
                        "prune_last_run_success",
                        "1 if the job's last forget/prune succeeded",
                        JOB,
                        labels,
                        1 if last_prune == Result.SUCCESS.value else 0,
                    )
                g.gauge(
                    "receipts_undelivered",
                    "receipts issued but not yet published where the customer can read them",
                    JOB,
                    labels,
                    undelivered.get(key, 0),
                )
                if (until := locks.get(key)) is not None:
                    g.gauge(
                        "lock_until_timestamp_seconds",
                        "the soonest the object lock of a live object of the cold repository ends",
                        JOB,
                        labels,
                        until.timestamp(),
                    )
                self.failing.discard(key)
            except Exception:
                if key not in self.failing:  # once, not per scrape
                    self.failing.add(key)
                    self.failures += 1
                    log.exception("metrics of %s failed", key)
        errors["metrics"] = errors.get("metrics", 0) + self.failures
        for what in DAEMON_ERRORS:
            g.counter(
                "daemon_errors",
                "problems the daemon logged and survived, by where they came from",
                ["what"],
                [what],
                errors.get(what, 0),
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


def serve_daemon(listen: str, collector: BackupCollector) -> None:
    """Serve `collector` on the socket systemd holds for it, else on `listen`.

    Raises ServeFailed when neither can be served: under systemd the socket unit holds the
    port across restarts, so nobody else can take it while the daemon is down.
    """
    try:
        sock = take_socket(os.environ, os.getpid())
        if sock is not None and not same_address(sock, listen):
            # Served elsewhere, the configured address would be free for anyone to answer.
            raise ValueError(
                f"systemd passed a socket on {where(sock, listen).split(' ')[0]}: make the "
                "socket unit's ListenStream the same address"
            )
        serve(listen, collector, sock)
    except (OSError, ValueError, OverflowError) as exc:
        raise ServeFailed(
            f"cannot serve /metrics (UNSTOPPABLE_METRICS_LISTEN={listen}): {exc}; the "
            "daemon does not start without it (another daemon, or a process posing as "
            "one, may hold the port)"
        ) from None
    log.info("metrics on %s", where(sock, listen))
