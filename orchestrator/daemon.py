"""`unstoppable run`: keep every customer × resource backed up on its schedule.

The loop sleeps until the next scheduled time or an event (a run ended, SIGHUP, the periodic
look at customers.d), asks the pure planner what to do, and does it. Docker is the record of
what runs: a restarted daemon adopts the workers it left behind.
"""

import logging
import os
import signal
import threading
import time
from datetime import UTC, datetime, timedelta
from types import FrameType
from typing import TYPE_CHECKING

from orchestrator.config.customer import Customers
from orchestrator.config.customer_file import files_signature, load_customers
from orchestrator.config.durations import parse_duration
from orchestrator.config.settings import Settings
from orchestrator.dispatch import Dispatch
from orchestrator.errors import RuntimeUnavailable, ServeFailed, UnstoppableError
from orchestrator.maintenance import Maintenance
from orchestrator.model import Kind, split_job
from orchestrator.planner import BACKUP, JobSpec, PlanState
from orchestrator.reporting.activation import take_socket, where
from orchestrator.reporting.ledger import Ledger
from orchestrator.runs import Jobs
from orchestrator.runtime.protocol import Runtime
from orchestrator.schedule import expected_interval
from orchestrator.secrets.files import resolver_for
from orchestrator.storage.layout import job_storage

if TYPE_CHECKING:
    from orchestrator.reporting.views import DaemonView

log = logging.getLogger(__name__)
CONFIG_POLL_SECONDS = 5.0
CLOCK_TOLERANCE = timedelta(seconds=2)
ADOPT_EVERY = timedelta(seconds=60)


class Daemon(Dispatch):
    """The scheduler loop; `request_stop` and `request_reload` may be called from anywhere."""

    def __init__(self, settings: Settings, runtime: Runtime, ledger: Ledger) -> None:
        self.settings = settings
        self.runtime = runtime
        self.ledger = ledger
        self.jobs = Jobs(
            settings,
            runtime,
            origin="daemon",
            baseline=ledger.baseline_now,
            holds=ledger,
            resolver=resolver_for(settings),
        )
        self.maintenance = Maintenance(self.jobs, ledger)
        self.customers = Customers((), (), ())
        self.specs: list[JobSpec] = []
        self.state = PlanState()
        self.in_flight: set[str] = set()
        self.lock = threading.Lock()
        self.wake = threading.Event()
        self.stopping = threading.Event()
        self.reload = threading.Event()
        self.signature: tuple[tuple[str, int, int], ...] | None = None
        self.heartbeat = time.time()
        self.intervals: dict[tuple[str, str], float] = {}
        self.rustic_version = "unknown"
        self.adopted = False
        self.errors: dict[str, int] = {}
        self.unschedulable: set[str] = set()
        locked = settings.COLD_BACKEND == "s3" and settings.S3_LOCK_DAYS > 0
        self.lock_margin = float(parse_duration(settings.S3_LOCK_MARGIN)) if locked else None

    def request_stop(self) -> None:
        self.stopping.set()
        self.wake.set()

    def request_reload(self) -> None:
        self.reload.set()
        self.wake.set()

    def install_signal_handlers(self) -> None:
        def stop(signum: int, frame: FrameType | None) -> None:
            log.info(
                "received %s: no new runs; running workers are left for the next start",
                signal.Signals(signum).name,
            )
            self.request_stop()

        def reload(signum: int, frame: FrameType | None) -> None:
            self.request_reload()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGHUP, reload)

    def run(self) -> int:
        """Schedule until asked to stop; return the exit code.

        Nothing a customer file, the ledger, the clock or Docker does ends this loop: each
        problem is logged, counted in `unstoppable_daemon_errors_total` and retried. Only
        a /metrics that cannot be served stops it, at once (ServeFailed).
        """
        self.serve_metrics()
        self.load_config()
        self.rustic_version = (
            self.runtime.image_label(self.settings.WORKER_IMAGE, "unstoppable.rustic-version")
            or "unknown"
        )
        last_tick = self.start_tick(_now())
        next_poll = next_adopt = _now()
        log.info(
            "scheduling %d job(s) of %d customer(s)",
            sum(1 for spec in self.specs if spec.kind == BACKUP),
            len(self.customers.valid),
        )
        while not self.stopping.is_set():
            now = _now()
            self.heartbeat = now.timestamp()
            try:
                if not self.adopted or now >= next_adopt:
                    next_adopt = now + ADOPT_EVERY
                    self.adopt()
                if self.reload.is_set() or now >= next_poll:
                    self.reload.clear()
                    self.load_config()
                    next_poll = datetime.fromtimestamp(now.timestamp() + CONFIG_POLL_SECONDS, UTC)
                last_tick = self.tick(self.clock_checked(last_tick, now), now)
            except RuntimeUnavailable as exc:
                self.count("runtime")
                log.error("cannot plan: %s; retrying", exc)
            except Exception:  # the loop must outlive any bug; the next tick retries
                self.count("internal")
                log.exception("tick failed; retrying")
                next_poll = min(next_poll, datetime.fromtimestamp(now.timestamp() + 1, UTC))
            wake_at = min([next_poll, *self.state.next_due.values()], default=next_poll)
            self.wake.wait(max(0.0, (wake_at - _now()).total_seconds()))
            self.wake.clear()
        log.info("stopped; %d run(s) left to the next start", len(self.in_flight))
        return 0

    def start_tick(self, now: datetime) -> datetime:
        """Return the last tick the ledger remembers, or `now` if it is unreadable or ahead."""
        try:
            stored = self.ledger.get_state("last_tick")
            last_tick = datetime.fromisoformat(stored) if stored else now
        except Exception as exc:
            self.count("ledger")
            log.error("cannot read the last tick from the ledger (%s); counting from now", exc)
            return now
        if last_tick.tzinfo is None:
            last_tick = last_tick.replace(tzinfo=UTC)
        if last_tick > now + CLOCK_TOLERANCE:
            self.count("clock")
            log.error(
                "the ledger's last tick %s is ahead of the clock %s: the clock moved back; "
                "scheduling from now",
                last_tick.isoformat(),
                now.isoformat(),
            )
            return now
        return last_tick

    def clock_checked(self, last_tick: datetime, now: datetime) -> datetime:
        """Return `last_tick`, or `now` with the schedule recomputed if the clock moved back.

        Without this, a clock stepped back by a day would leave every job waiting a day.
        """
        if last_tick <= now + CLOCK_TOLERANCE:
            return last_tick
        self.count("clock")
        log.error(
            "the clock moved back by %.0f s; recomputing every schedule from now",
            (last_tick - now).total_seconds(),
        )
        self.state = PlanState({}, self.state.pending)
        return now

    def serve_metrics(self) -> None:
        """Serve /metrics on the socket systemd holds for it, else on UNSTOPPABLE_METRICS_LISTEN.

        Raises ServeFailed if it cannot: a daemon carrying on without its port leaves it to
        whoever takes it, and a process posing as the daemon there tells Prometheus every
        backup is fine. Under systemd the socket unit holds the port across restarts.
        """
        from orchestrator.reporting.metrics import BackupCollector, serve

        listen = self.settings.METRICS_LISTEN
        try:
            sock = take_socket(os.environ, os.getpid())
            serve(listen, BackupCollector(self.ledger, self.view), sock)
        except (OSError, ValueError) as exc:
            raise ServeFailed(
                f"cannot serve /metrics (UNSTOPPABLE_METRICS_LISTEN={listen}): {exc}; the "
                "daemon does not start without it (another daemon, or a process posing as "
                "one, may hold the port)"
            ) from None
        log.info("metrics on %s", where(sock, listen))

    def view(self) -> "DaemonView":
        """Return what a scrape needs from the live daemon."""
        from orchestrator.reporting.views import DaemonView, JobView

        try:
            docker = self.runtime.running_jobs()
        except RuntimeUnavailable:
            docker = frozenset()
        with self.lock:
            running = docker | frozenset(self.in_flight)
        next_due = self.state.next_due
        now = _now()
        verify = {spec.id: spec for spec in self.specs if spec.kind == Kind.VERIFY.value}
        jobs = []
        for spec in self.specs:
            if spec.kind != BACKUP:
                continue
            customer, resource = split_job(spec.id)
            drill = verify.get(spec.id)
            due = next_due.get(spec)
            jobs.append(
                JobView(
                    customer,
                    resource,
                    due.timestamp() if due else None,
                    self.interval(spec, now),
                    job_storage(self.settings, customer, resource).hot / "snapshots",
                    self.interval(drill, now) if drill else None,
                )
            )
        return DaemonView(
            tuple(jobs),
            tuple(c.name for c in self.customers.valid),
            self.customers.invalid,
            running,
            self.heartbeat,
            self.rustic_version,
            tuple(sorted(self.errors.items())),
            self.lock_margin,
        )

    def interval(self, spec: JobSpec, now: datetime) -> float:
        """Return the longest gap between scheduled times of `spec`, computed once."""
        key = (spec.schedule, spec.timezone)
        if key not in self.intervals:
            self.intervals[key] = expected_interval(spec.schedule, spec.timezone, now)
        return self.intervals[key]

    def load_config(self) -> None:
        """Reread customers.d if any file changed; a broken file disables only its customer."""
        try:
            signature = files_signature(self.settings.CUSTOMERS_DIR)
            if signature == self.signature:
                return
            customers = load_customers(
                self.settings.CUSTOMERS_DIR, self.settings.bucket_prefix, self.settings.bounds
            )
        except UnstoppableError as exc:
            # The directory itself is unreadable: keep the customers already loaded.
            log.error(
                "%s; keeping the %d customer(s) loaded before", exc, len(self.customers.valid)
            )
            return
        self.signature = signature
        for problem in customers.problems:
            log.error("customer disabled: %s", problem)
        self.customers = customers
        self.specs = [
            spec
            for c in customers.valid
            for r in c.resources
            for spec in (
                JobSpec(f"{c.name}/{r.name}", r.schedule, c.timezone),
                JobSpec(f"{c.name}/{r.name}", r.source.PRUNE_SCHEDULE, c.timezone, "prune"),
                JobSpec(f"{c.name}/{r.name}", r.source.VERIFY_SCHEDULE, c.timezone, "verify"),
            )
        ]
        log.info(
            "loaded %d customer(s), %d disabled, %d job(s)",
            len(customers.valid),
            len(customers.invalid),
            sum(1 for spec in self.specs if spec.kind == BACKUP),
        )


def _now() -> datetime:
    return datetime.now(UTC)
