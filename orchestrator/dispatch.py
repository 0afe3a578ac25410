"""Carrying out a tick's plan: runs start in threads, their records reach the ledger.

The daemon's half that touches runs: what to launch now (from the pure planner), which
workers of a previous daemon to adopt, and how every finished run is recorded, pinged and
logged. A run that fails in any way is recorded; nothing here raises into the loop.
"""

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime

from orchestrator import ticks
from orchestrator.adoption import (
    adopt,
    claimed_times,
    in_ledger,
    own_workers,
    remove_leftover_secrets,
    time_of,
)
from orchestrator.config.customer import Customers
from orchestrator.config.settings import Settings
from orchestrator.maintenance import Maintenance
from orchestrator.model import JobKey, Kind, Outcome, Reason, Result, RunRecord, Work
from orchestrator.planner import JobSpec, Launch, PlanState, plan
from orchestrator.receipts.reconcile import issuer_for
from orchestrator.receipts.terms import terms_of
from orchestrator.recorder import Recorder, failed_record
from orchestrator.recovery import RECOVERING
from orchestrator.reporting.history import Event
from orchestrator.reporting.job_memory import state_key
from orchestrator.reporting.ledger import Ledger
from orchestrator.runs import Jobs
from orchestrator.runtime.protocol import Runtime, WorkerInfo
from orchestrator.secrets.files import remove_secrets, resolver_for
from orchestrator.storage.layout import instance_of, secrets_dir

log = logging.getLogger(__name__)


class Dispatcher:
    """Launches, adopts and records runs; the daemon's loop calls `tick` and `adopt`."""

    def __init__(
        self,
        settings: Settings,
        runtime: Runtime,
        ledger: Ledger,
        count: Callable[[str], None],
        wake: threading.Event,
    ) -> None:
        self.settings = settings
        self.runtime = runtime
        self.resolver = resolver_for(settings)
        self.jobs = Jobs(settings, runtime, ledger, origin="daemon", resolver=self.resolver)
        self.maintenance = Maintenance(self.jobs.launcher, ledger)
        self.issuer = issuer_for(settings, terms_of(lambda: self.customers), ledger.db)
        self.recorder = Recorder(ledger, count, self.issuer)
        self.ledger, self.marks = ledger, ledger.db
        self.count = count  # a problem survived, counted by where it came from
        self.wake = wake  # set when a run ends: its job may be due again
        self.customers = Customers((), (), ())
        self.specs: list[JobSpec] = []
        self.state = PlanState()
        self.in_flight: set[JobKey] = set()
        self.launching: dict[Work, datetime] = {}  # launched, not recorded yet: kept in ticks
        self.lock = threading.Lock()
        self.adopted = False
        self.strays: set[str] = set()  # workers being collected, never recorded
        self.claimed: set[tuple[Work, datetime]] = set()  # times a left worker stands for
        self.recorded: set[tuple[Work, datetime]] = set()  # times recorded, workers maybe not
        self.unschedulable: set[str] = set()

    def use(self, customers: Customers, specs: list[JobSpec]) -> None:
        """Plan `specs` from the next tick on; runs look their customer up in `customers`."""
        self.customers, self.specs = customers, specs

    def running(self, docker: frozenset[JobKey]) -> frozenset[JobKey]:
        """Return the jobs busy now: those Docker runs, and those with a run in flight."""
        with self.lock:
            return docker | frozenset(self.in_flight)

    def adopt(self) -> None:
        """Collect the workers nobody waits for; remove secrets nobody uses any more.

        At start, those a previous daemon left; later, those a run gave up on while the
        Docker engine was away. Raises RuntimeUnavailable while Docker cannot be asked;
        the loop tries again.
        """
        with self.lock:
            recorded = set(self.recorded)
        workers = self.runtime.workers()
        own = own_workers(workers, instance_of(self.settings))
        with self.lock:  # claims are kept until a tick has planned past them
            self.claimed |= claimed_times(own)
            self.recorded -= recorded - {key for w in own if (key := time_of(w)) is not None}
        self.adopted = True
        for worker in own:
            job = worker.job
            if job is None:  # no job of ours: collected, never recorded against anyone
                with self.lock:
                    if worker.name in self.strays:
                        continue
                    self.strays.add(worker.name)
                threading.Thread(target=self._collect_stray, args=(worker,), daemon=True).start()
                continue
            with self.lock:
                if job in self.in_flight:
                    continue  # a run of ours is waiting for it
                self.in_flight.add(job)
            state = "running" if worker.running else "finished"
            log.info("%s: adopting %s (%s)", job, worker.name, state)
            threading.Thread(target=self._adopt_one, args=(job, worker), daemon=True).start()
        remove_leftover_secrets(secrets_dir(self.settings), workers)

    def tick(self, last_tick: datetime, now: datetime) -> datetime:
        """Plan once at `now` and carry it out; return the new last tick."""
        # Docker is asked only when something may launch; an idle tick just moves the clock,
        # so a customer added later counts its schedule from now, not from hours ago.
        due = self._anything_due(now)
        if due and not self.adopted:  # the times a killed daemon's workers stand for first
            self.adopt()
        docker = self.runtime.running_jobs() if due else frozenset()
        # Readers matter to a prune alone: asked for only when one may launch now.
        reading = self.runtime.reading_jobs() if self._prune_due(now) else frozenset()
        decision = plan(
            self.specs,
            self.running(docker),
            self.state,
            last_tick,
            now,
            self.settings.MAX_PARALLEL,
            self.settings.CATCH_UP,
            self.settings.per_customer_share,
            reading,
            frozenset(self.claimed),
        )
        with self.lock:  # a claim is planned past once; one after `now` (the clock) waits
            self.claimed = {claim for claim in self.claimed if claim[1] > now}
        unschedulable = {str(work) for work in decision.unschedulable}
        for work in sorted(unschedulable - self.unschedulable):
            self.count("plan")
            log.error("%s: its schedule names no next time; the job is not scheduled", work)
        self.unschedulable = unschedulable
        for skip in decision.skip:
            log.warning(
                "%s: skipped the backup of %s (%s)",
                skip.job,
                skip.scheduled_for.isoformat(),
                skip.reason,
            )
            self.recorder.event(skip.job, Event.SKIPPED, skip.reason, skip.scheduled_for)
        for missed in decision.missed:
            log.warning(
                "%s: missed %d scheduled %s time(s), the last %s",
                missed.work.job,
                missed.count,
                missed.work.kind.value,
                missed.last.isoformat(),
            )
            if missed.work.kind is Kind.BACKUP:  # a missed drill shows as BackupUnverified
                job, first, why = missed.work.job, missed.first, missed.reason
                self.recorder.event(job, Event.MISSED, why, missed.last, missed.count, first)
        # Written before launching (with the runs still waiting for a slot), so a crash right
        # after can never launch these again, nor lose those. If the ledger cannot be written
        # (disk full), the runs still start: a backup that runs twice after a crash is better
        # than none.
        with self.lock:  # launched and not yet recorded: kept in every tick until they are
            self.launching.update({launch.work: launch.scheduled_for for launch in decision.launch})
            launching = dict(self.launching)
        value = ticks.tick_value(now, decision.state.pending, launching)
        self.recorder.write(self.marks.set_state, "last_tick", value)
        self.state = decision.state
        for launch in decision.launch:
            with self.lock:
                self.in_flight.add(launch.job)
            try:
                threading.Thread(target=self._launch, args=(launch,), daemon=True).start()
            except RuntimeError as exc:  # no thread to be had: this run fails, the rest go on
                self.count("run")
                log.error("%s: cannot start its run: %s", launch.job, exc)
                outcome = Outcome(Result.FAILURE, Reason.INTERNAL, f"cannot start the run: {exc}")
                started = _now()
                self._finish(RunRecord.of(launch.work, launch.scheduled_for, started, outcome))
        return now

    def _anything_due(self, now: datetime) -> bool:
        if self.state.pending:
            return True
        return any(self.state.next_due.get(spec, now) <= now for spec in self.specs)

    def _prune_due(self, now: datetime) -> bool:
        """Return whether a prune is pending or due at `now`."""
        if any(work.kind is Kind.PRUNE for work in self.state.pending):
            return True
        due = self.state.next_due
        return any(s.kind is Kind.PRUNE and due.get(s, now) <= now for s in self.specs)

    def _recovering(self, job: JobKey) -> bool:
        """Return whether `unstoppable recover` paused the job (an unreadable ledger: no)."""
        try:
            return self.marks.get_state(state_key(RECOVERING, job)) is not None
        except Exception:
            return False

    def _launch(self, launch: Launch) -> None:
        started = _now()
        try:
            record = self._run(launch)
        except Exception as exc:  # the run's own fault boundary: this job's problem alone
            self.count("run")
            log.exception(
                "%s: the %s run raised %s", launch.job, launch.kind.value, type(exc).__name__
            )
            record = failed_record(launch.work, launch.scheduled_for, started, exc)
        self._finish(record)

    def _run(self, launch: Launch) -> RunRecord:
        """Prepare, launch and judge one run; whatever it raises is the caller's to record."""
        customer = self.customers.get(launch.job.customer)
        resource = customer.resource(launch.job.resource)
        if self._recovering(launch.job):
            outcome = Outcome(Result.SKIPPED, Reason.OVERLAP, "the job is being recovered")
            return RunRecord.of(launch.work, launch.scheduled_for, _now(), outcome)
        if launch.kind is Kind.PRUNE:
            return self.maintenance.prune(customer, resource, launch.scheduled_for)
        if launch.kind is Kind.VERIFY:
            return self.maintenance.verify(customer, resource, launch.scheduled_for)
        return self.jobs.backup(customer, resource, launch.scheduled_for)

    def _adopt_one(self, job: JobKey, worker: WorkerInfo) -> None:
        """Collect, judge and record a worker nobody waits for; one whose time is recorded
        already (`recorded`, or in the ledger) is judged for what judging does, not recorded."""
        key = time_of(worker)
        with self.lock:
            again = key in self.recorded
        again = again or (key is not None and in_ledger(self.ledger, key))
        try:
            record = adopt(self.jobs, job, worker, self.customers)
        except Exception as exc:
            self.count("adopt")
            log.exception("%s: cannot adopt %s", job, worker.name)
            if key is None or again:  # nothing to account for (again): only collected
                self._collect_stray(worker)
            else:  # its time is accounted for as a failure; a later pass judges it again
                with self.lock:
                    self.recorded.add(key)
                self._finish(failed_record(key[0], key[1], worker.started_at, exc))
            with self.lock:
                self.in_flight.discard(job)
            return
        if again:
            log.warning("%s: %s judged %s; its time was recorded already", job, worker.name,
                        record.outcome.result.value)  # fmt: skip
            with self.lock:
                self.in_flight.discard(job)
                if record.outcome.reason is not Reason.RUNTIME:  # else it is still there
                    self.recorded.discard(key)
            self.wake.set()
            return
        self._finish(record)

    def _collect_stray(self, worker: WorkerInfo) -> None:
        """Collect a worker whose run is not to be recorded, and remove its secrets."""
        log.warning("%s: collected, not recorded (no job or no time of ours)", worker.name)
        try:
            self.runtime.collect(worker.name, self.settings.job_timeout_seconds)
            remove_secrets(secrets_dir(self.settings), worker.secrets)
        except Exception:
            self.count("adopt")
            log.exception("cannot collect %s", worker.name)
        finally:
            with self.lock:
                self.strays.discard(worker.name)

    def _finish(self, record: RunRecord) -> None:
        """Record, ping and log a finished run; a failure in any of them is counted, not raised."""
        try:
            self.recorder.record(record)
        finally:
            with self.lock:
                if record.outcome.reason is Reason.RUNTIME:  # its worker may be adopted later
                    self.recorded.add((Work(record.job, record.kind), record.scheduled_for))
                self.in_flight.discard(record.job)
                work = Work(record.job, record.kind)
                if self.launching.get(work) == record.scheduled_for:
                    del self.launching[work]
            self.wake.set()
        try:
            if record.kind is Kind.BACKUP:  # a dead man's switch watches the backups
                self.jobs.pinger.result(self.customers, record)  # after recording
            self.recorder.log(record)
        except Exception:
            self.count("report")
            log.exception("%s: reporting the %s run failed", record.job, record.kind.value)


def _now() -> datetime:
    return datetime.now(UTC)
