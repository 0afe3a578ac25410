"""`unstoppable run`: keep every customer × resource backed up on its schedule.

The loop sleeps until the next scheduled time or an event (a run ended, SIGHUP, the periodic
look at customers.d), asks the pure planner what to do, and does it. Docker is the record of
what runs: a restarted daemon adopts the workers it left behind.
"""

import logging
import signal
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from types import FrameType
from typing import TYPE_CHECKING, Any

from orchestrator.config.customer import Customers, files_signature, load_customers
from orchestrator.config.settings import Settings
from orchestrator.errors import RuntimeUnavailable, UnstoppableError
from orchestrator.maintenance import Maintenance
from orchestrator.model import Kind, Outcome, Reason, Result, RunRecord
from orchestrator.planner import BACKUP, JobSpec, Launch, PlanState, plan
from orchestrator.reporting.ledger import Ledger
from orchestrator.runs import Jobs
from orchestrator.runtime.protocol import Runtime, WorkerInfo
from orchestrator.schedule import expected_interval
from orchestrator.secrets.files import remove_secrets, resolver_for
from orchestrator.storage.layout import job_storage, secrets_dir

if TYPE_CHECKING:
    from orchestrator.reporting.metrics import DaemonView

log = logging.getLogger(__name__)
CONFIG_POLL_SECONDS = 5.0
CLOCK_TOLERANCE = timedelta(seconds=2)
ADOPT_EVERY = timedelta(seconds=60)
# A secrets directory no container mounts is a leftover once it is this old; younger ones
# may belong to a run being created right now (by the CLI, beside the daemon).
LEFTOVER_SECRETS_AGE = 600.0
ADOPTED_KINDS = tuple(k.value for k in (Kind.BACKUP, Kind.FORGET, Kind.PRUNE, Kind.VERIFY))


class Daemon:
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
        problem is logged, counted in `unstoppable_daemon_errors_total` and retried.
        """
        self.load_config()
        self.rustic_version = (
            self.runtime.image_label(self.settings.WORKER_IMAGE, "unstoppable.rustic-version")
            or "unknown"
        )
        self.serve_metrics()
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

    def count(self, what: str) -> None:
        """Count one problem the daemon survived, by where it came from."""
        with self.lock:
            self.errors[what] = self.errors.get(what, 0) + 1

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
        """Serve /metrics on UNSTOPPABLE_METRICS_LISTEN; a bind failure is logged, not fatal.

        Without metrics the daemon still backs up, and the failed scrape raises
        OrchestratorDown, which is the loud outcome an operator needs.
        """
        from orchestrator.reporting.metrics import BackupCollector, serve

        try:
            serve(self.settings.METRICS_LISTEN, BackupCollector(self.ledger, self.view))
            log.info("metrics on http://%s/metrics", self.settings.METRICS_LISTEN)
        except (OSError, ValueError) as exc:
            log.error("cannot serve metrics on %s: %s", self.settings.METRICS_LISTEN, exc)

    def view(self) -> "DaemonView":
        """Return what a scrape needs from the live daemon."""
        from orchestrator.reporting.metrics import DaemonView, JobView

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
            customer, resource = spec.id.split("/", 1)
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
                JobSpec(f"{c.name}/{r.name}", r.maintenance("PRUNE_SCHEDULE"), c.timezone, "prune"),
                JobSpec(
                    f"{c.name}/{r.name}", r.maintenance("VERIFY_SCHEDULE"), c.timezone, "verify"
                ),
            )
        ]
        log.info(
            "loaded %d customer(s), %d disabled, %d job(s)",
            len(customers.valid),
            len(customers.invalid),
            sum(1 for spec in self.specs if spec.kind == BACKUP),
        )

    def adopt(self) -> None:
        """Collect the workers nobody waits for; remove secrets nobody uses any more.

        At start, those a previous daemon left; later, those a run gave up on while the
        Docker engine was away. Raises RuntimeUnavailable while Docker cannot be asked;
        the loop tries again.
        """
        workers = self.runtime.workers()
        self.adopted = True
        in_use = {w.secrets for w in workers}
        base = secrets_dir(self.settings)
        if base.is_dir():
            for leftover in base.iterdir():
                try:
                    age = time.time() - leftover.lstat().st_mtime
                except OSError:
                    continue
                if str(leftover) not in in_use and age > LEFTOVER_SECRETS_AGE:
                    remove_secrets(base, str(leftover))
        for worker in workers:
            if worker.label("origin") != "daemon" or worker.label("kind") not in ADOPTED_KINDS:
                continue
            job = worker.label("job")
            with self.lock:
                if job in self.in_flight:
                    continue  # a run of ours is waiting for it
                self.in_flight.add(job)
            log.info(
                "%s: adopting %s (%s)",
                job,
                worker.name,
                "running" if worker.running else "finished",
            )
            threading.Thread(target=self._adopt_one, args=(worker,), daemon=True).start()

    def tick(self, last_tick: datetime, now: datetime) -> datetime:
        """Plan once at `now` and carry it out; return the new last tick."""
        # Docker is asked only when something may launch; an idle tick just moves the clock,
        # so a customer added later counts its schedule from now, not from hours ago.
        docker = self.runtime.running_jobs() if self._anything_due(now) else frozenset()
        with self.lock:
            running = docker | frozenset(self.in_flight)
        decision = plan(
            self.specs,
            running,
            self.state,
            last_tick,
            now,
            self.settings.MAX_PARALLEL,
            self.settings.CATCH_UP,
            self.settings.per_customer_share,
        )
        for job in sorted(set(decision.unschedulable) - self.unschedulable):
            log.error("%s: its schedule names no next time; the job is not scheduled", job)
        self.unschedulable = set(decision.unschedulable)
        for skip in decision.skip:
            log.warning(
                "%s: skipped the %s of %s (%s)",
                skip.job,
                skip.kind,
                skip.scheduled_for.isoformat(),
                skip.reason,
            )
            if skip.kind == BACKUP:
                self._write(
                    self.ledger.record_event, skip.job, "skipped", skip.reason, skip.scheduled_for
                )
        for missed in decision.missed:
            log.warning(
                "%s: missed %d scheduled %s time(s), the last %s",
                missed.job,
                missed.count,
                missed.kind,
                missed.last.isoformat(),
            )
            if missed.kind == BACKUP:  # a missed drill shows as BackupUnverified instead
                self._write(
                    self.ledger.record_event, missed.job, "missed", "", missed.last, missed.count
                )
        # Written before launching, so a crash right after can never launch these again. If
        # the ledger cannot be written (disk full), the runs still start: a backup that runs
        # twice after a crash is better than none.
        self._write(self.ledger.set_state, "last_tick", now.isoformat())
        self.state = decision.state
        for launch in decision.launch:
            with self.lock:
                self.in_flight.add(launch.job)
            threading.Thread(target=self._launch, args=(launch,), daemon=True).start()
        return now

    def _write(self, write: Callable[..., None], *args: Any) -> bool:
        """Call a ledger write; log and count a failure instead of raising it."""
        try:
            write(*args)
            return True
        except Exception as exc:
            self.count("ledger")
            log.error("cannot write the ledger (%s): %s", write.__name__, exc)
            self.ledger.recover_if_corrupt(exc)
            return False

    def _anything_due(self, now: datetime) -> bool:
        if self.state.pending:
            return True
        return any(self.state.next_due.get(spec, now) <= now for spec in self.specs)

    def _launch(self, launch: Launch) -> None:
        customer_name, resource_name = launch.job.split("/", 1)
        kind = Kind(launch.kind)
        try:
            customer = self.customers.get(customer_name)
            resource = customer.resource(resource_name)
            if kind is Kind.PRUNE:
                record = self.maintenance.prune(customer, resource, launch.scheduled_for)
            elif kind is Kind.VERIFY:
                record = self.maintenance.verify(customer, resource, launch.scheduled_for)
            else:
                record = self.jobs.backup(customer, resource, launch.scheduled_for)
        except Exception as exc:  # a broken run must never take the daemon down
            log.exception("%s: run failed unexpectedly", launch.job)
            now = _now()
            record = RunRecord(
                customer_name,
                resource_name,
                kind,
                launch.scheduled_for,
                now,
                now,
                Outcome(Result.FAILURE, Reason.RUNTIME, str(exc)),
            )
        self._finish(launch.job, record)

    def _adopt_one(self, worker: WorkerInfo) -> None:
        try:
            record = self.jobs.adopt(worker, self.customers)
        except Exception:
            log.exception("%s: cannot adopt %s", worker.label("job"), worker.name)
            with self.lock:
                self.in_flight.discard(worker.label("job"))
            return
        self._finish(worker.label("job"), record)

    def _finish(self, job: str, record: RunRecord) -> None:
        try:
            if record.outcome.result is Result.SKIPPED and record.kind is not Kind.BACKUP:
                pass  # a drill with nothing to read yet, or a busy job: logged below only
            elif record.outcome.result is Result.SKIPPED:
                self._write(
                    self.ledger.record_event,
                    job,
                    "skipped",
                    Reason.OVERLAP.value,
                    record.scheduled_for,
                )
            else:
                self._write(self.ledger.record_run, record)
        finally:
            with self.lock:
                self.in_flight.discard(job)
            self.wake.set()
        if record.kind is Kind.BACKUP:  # a dead man's switch watches the backups
            self.jobs.ping_result(self.customers, record)  # after recording, off the run's clock
        level = logging.INFO if record.outcome.result is Result.SUCCESS else logging.ERROR
        log.log(
            level,
            "%s: %s %s%s: %s",
            job,
            record.kind.value,
            record.outcome.result.value,
            f" ({record.outcome.reason.value})" if record.outcome.reason else "",
            record.outcome.message,
        )


def _now() -> datetime:
    return datetime.now(UTC)
