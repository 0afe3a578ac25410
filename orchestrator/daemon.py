"""`unstoppable run`: keep every customer × resource backed up on its schedule.

The loop sleeps until the next scheduled time or an event (a run ended, SIGHUP, the periodic
look at customers.d), asks the pure planner what to do, and does it. Docker is the record of
what runs: a restarted daemon adopts the workers it left behind.
"""

import functools
import logging
import signal
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from types import FrameType
from typing import TYPE_CHECKING, TypeVar

from orchestrator import ticks
from orchestrator.config.customer import Customer, Customers
from orchestrator.config.settings import Settings
from orchestrator.dispatch import Dispatcher
from orchestrator.errors import RuntimeUnavailable
from orchestrator.model import JobKey, Kind
from orchestrator.planner import JobSpec, PlanState
from orchestrator.reporting.ledger import Ledger
from orchestrator.roster import Roster, specs_of
from orchestrator.runtime.protocol import Runtime
from orchestrator.schedule import expected_interval
from orchestrator.status.access import Pages
from orchestrator.status.server import serve_status
from orchestrator.storage.layout import job_storage

if TYPE_CHECKING:
    from orchestrator.reporting.views import DaemonView

log = logging.getLogger(__name__)
STOP_PUBLISHING = 30.0  # seconds a stopping daemon gives its last receipts to be published
T = TypeVar("T")
CONFIG_POLL_SECONDS = 5.0
ADOPT_EVERY = timedelta(seconds=60)


class Daemon:
    """The scheduler loop; `request_stop` and `request_reload` may be called from anywhere.

    It owns the loop's timing, the view of customers.d and what a scrape shows; the
    `dispatch` it owns launches, adopts and records the runs.
    """

    def __init__(self, settings: Settings, runtime: Runtime, ledger: Ledger) -> None:
        self.settings = settings
        self.runtime = runtime
        self.ledger = ledger
        self.wake = threading.Event()
        self.errors: dict[str, int] = {}
        self.errors_lock = threading.Lock()
        self.dispatch = Dispatcher(settings, runtime, ledger, self.count, self.wake)
        self.customers = Customers((), (), ())
        self.last_good: dict[str, Customer] = {}  # each customer's file as last read whole
        self.specs: list[JobSpec] = []
        self.stopping = threading.Event()
        self.reload = threading.Event()
        self.heartbeat = time.time()
        self.intervals: dict[tuple[str, str], float] = {}
        self.rustic_version = "unknown"
        self.roster = Roster(settings, self.count)
        self.viewed = False  # whether customers.d has been read once
        self.unmeasurable: set[JobKey] = set()  # jobs whose metrics raised, until they do not
        locked = settings.COLD_BACKEND == "s3" and settings.S3_LOCK_DAYS > 0
        self.lock_margin = settings.lock_margin.total_seconds() if locked else None

    def count(self, what: str) -> None:
        """Count one problem the daemon survived, by where it came from."""
        with self.errors_lock:
            self.errors[what] = self.errors.get(what, 0) + 1

    def tick(self, last_tick: datetime, now: datetime) -> datetime:
        """Plan once at `now` and carry it out; return the new last tick."""
        return self.dispatch.tick(last_tick, now)

    def adopt(self) -> None:
        """Collect the workers nobody waits for (see `Dispatcher.adopt`)."""
        self.dispatch.adopt()

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
        pages = Pages(self.settings, self.ledger, lambda: self.customers, self.dispatch.resolver)
        serve_status(self.settings, pages, self.count, self.stopping)
        self.guarded("config", self.load_config)
        image = self.settings.WORKER_IMAGE
        label = functools.partial(self.runtime.image_label, image, "unstoppable.rustic-version")
        self.rustic_version = self.guarded("runtime", label) or "unknown"
        last_tick = self.start_tick(_now())
        next_poll = next_adopt = _now()
        issuer = self.dispatch.issuer
        publisher = threading.Thread(
            target=issuer.retry_forever if issuer else lambda: None, name="receipts", daemon=True
        )
        publisher.start()  # receipts are published as they come, and retried every minute
        log.info(
            "scheduling %d job(s) of %d customer(s)",
            sum(1 for spec in self.specs if spec.kind is Kind.BACKUP),
            len(self.customers.valid),
        )
        while not self.stopping.is_set():
            now = _now()
            self.heartbeat = now.timestamp()
            # Three steps, each its own fault boundary: a reload or an adoption that fails
            # never keeps the tick from running on the last good view.
            if not self.dispatch.adopted or now >= next_adopt:
                next_adopt = now + ADOPT_EVERY
                self.guarded("adopt", self.adopt)
            if self.reload.is_set() or now >= next_poll:
                self.reload.clear()
                self.guarded("config", self.load_config)
                next_poll = datetime.fromtimestamp(now.timestamp() + CONFIG_POLL_SECONDS, UTC)
            if last_tick is None:  # the ledger unreadable at start: nothing planned blind
                last_tick = self.guarded("ledger", functools.partial(self.start_tick, now, True))
            if self.viewed and last_tick is not None:  # a clock set back: recomputed once
                last_tick = self.clock_checked(last_tick, now)
            self.guarded("ledger", self.dispatch.recorder.flush)  # owed records, once writable
            plan = functools.partial(self.plan_tick, last_tick, now) if last_tick else None
            ticked = self.guarded("plan", plan) if plan else None
            due = self.dispatch.state.next_due.values()
            wake_at = min([next_poll, *due], default=next_poll)
            if ticked is None:  # again in a second: not at once (times still due), not later
                wake_at = datetime.fromtimestamp(now.timestamp() + 1, UTC)
            else:
                last_tick = ticked
            self.wake.wait(max(0.0, (wake_at - _now()).total_seconds()))
            self.wake.clear()
        if not self.guarded("ledger", self.dispatch.recorder.flush):
            log.error(
                "%d record(s) the ledger never took are lost", len(self.dispatch.recorder.owed)
            )
        if issuer is not None:  # one last pass, bounded: what is left waits for the next start
            issuer.stop.set()
            issuer.wake.set()
            publisher.join(STOP_PUBLISHING)
        log.info("stopped; %d run(s) left to the next start", len(self.dispatch.in_flight))
        return 0

    def plan_tick(self, last_tick: datetime, now: datetime) -> datetime:
        """Plan at `now` after checking the clock against `last_tick`; return the new one.

        Before customers.d was first read there is nothing to plan, and the last tick stays
        where the ledger left it: a slow first read must not cost the catch-up after downtime.
        """
        if not self.viewed:
            return last_tick
        return self.tick(self.clock_checked(last_tick, now), now)

    def guarded(self, what: str, step: Callable[[], T | None]) -> T | None:
        """Return what `step` returns, or None after logging and counting what it raised."""
        try:
            return step()
        except RuntimeUnavailable as exc:
            self.count("runtime")
            log.error("%s: %s; retrying", what, exc)
        except Exception:  # the loop must outlive any bug; the next round retries
            self.count(what)
            log.exception("%s failed; retrying", what)
        return None

    def start_tick(self, now: datetime, quiet: bool = False) -> datetime | None:
        """Return the last tick the ledger remembers (ticks.py `start_tick`); the runs that
        waited for a slot, or a killed daemon was launching, wait again (none lost)."""
        last_tick = ticks.start_tick(self.ledger.db, now, self.count, quiet)
        if last_tick is not None:
            waiting = ticks.waiting_at_start(self.ledger, self.runtime, now)
            self.dispatch.state = PlanState({}, waiting)
        return last_tick

    def clock_checked(self, last_tick: datetime, now: datetime) -> datetime:
        """Return `last_tick`, or `now` with the schedule recomputed if the clock moved back."""
        if not ticks.moved_back(last_tick, now, self.count):
            return last_tick
        self.dispatch.state = PlanState({}, self.dispatch.state.pending)
        return now

    def serve_metrics(self) -> None:
        """Serve /metrics on systemd's socket, else UNSTOPPABLE_METRICS_LISTEN; or ServeFailed.

        A daemon carrying on without its port leaves it to whoever takes it, and a process
        posing as the daemon there would tell Prometheus every backup is fine.
        """
        from orchestrator.reporting.metrics import BackupCollector, serve_daemon

        serve_daemon(self.settings.METRICS_LISTEN, BackupCollector(self.ledger, self.view))

    def view(self) -> "DaemonView":
        """Return what a scrape needs from the live daemon."""
        from orchestrator.reporting.views import DaemonView, JobView

        try:
            docker = self.runtime.running_jobs()
        except RuntimeUnavailable:
            docker = frozenset()
        running = self.dispatch.running(docker)
        next_due = self.dispatch.state.next_due
        now = _now()
        verify = {spec.job: spec for spec in self.specs if spec.kind is Kind.VERIFY}
        jobs = []
        for spec in self.specs:
            if spec.kind is not Kind.BACKUP or spec.dormant:  # a disabled customer's: none
                continue
            job = spec.job
            drill = verify.get(job)
            due = next_due.get(spec)
            try:  # one job's schedule must not take everyone's metrics down
                jobs.append(
                    JobView(
                        job,
                        due.timestamp() if due else None,
                        self.interval(spec, now),
                        job_storage(self.settings, job.customer, job.resource).snapshot_files,
                        self.interval(drill, now) if drill else None,
                    )
                )
                self.unmeasurable.discard(job)
            except Exception:
                if job not in self.unmeasurable:  # logged and counted once, not per scrape
                    self.unmeasurable.add(job)
                    self.count("metrics")
                    log.exception("%s: its metrics cannot be computed", job)
        return DaemonView(
            tuple(jobs),
            tuple(c.name for c in self.customers.valid),
            self.customers.invalid,
            running,
            self.heartbeat,
            self.rustic_version,
            tuple(sorted(self.errors.items())),
            self.lock_margin,
            tuple(issuer.undelivered().items()) if (issuer := self.dispatch.issuer) else (),
        )

    def interval(self, spec: JobSpec, now: datetime) -> float:
        """Return the longest gap between scheduled times of `spec`, computed once."""
        key = (spec.schedule, spec.timezone)
        if key not in self.intervals:
            self.intervals[key] = expected_interval(spec.schedule, spec.timezone, now)
        return self.intervals[key]

    def load_config(self) -> None:
        """Take customers.d's new view if it changed; a broken file disables its customer only."""
        customers = self.roster.poll(len(self.customers.valid))
        if customers is not None:
            self.apply_customers(customers)

    def apply_customers(self, customers: Customers) -> None:
        """Make `customers` the daemon's view: its jobs are what the next tick plans."""
        self.viewed = True
        for problem in customers.problems:
            log.error("customer disabled: %s", problem)
        self.specs, self.last_good = specs_of(customers, self.last_good)
        self.customers = customers
        self.dispatch.use(customers, self.specs)
        log.info(
            "loaded %d customer(s), %d disabled, %d job(s)",
            len(customers.valid),
            len(customers.invalid),
            sum(1 for spec in self.specs if spec.kind is Kind.BACKUP and not spec.dormant),
        )


def _now() -> datetime:
    return datetime.now(UTC)
