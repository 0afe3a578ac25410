"""Carrying out a tick's plan: runs start in threads, their records reach the ledger.

The daemon's half that touches runs: what to launch now (from the pure planner), which
workers of a previous daemon to adopt, and how every finished run is recorded, pinged and
logged. A run that fails in any way is recorded; nothing here raises into the loop.
"""

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from orchestrator.adoption import adopt
from orchestrator.config.customer import Customers
from orchestrator.config.settings import Settings
from orchestrator.errors import RuntimeUnavailable
from orchestrator.maintenance import Maintenance
from orchestrator.model import Kind, Outcome, Reason, Result, RunRecord, split_job
from orchestrator.planner import BACKUP, JobSpec, Launch, PlanState, plan
from orchestrator.recovery import RECOVERING
from orchestrator.reporting.ledger import Ledger
from orchestrator.runs import Jobs
from orchestrator.runtime.protocol import Runtime, WorkerInfo
from orchestrator.secrets.files import remove_secrets
from orchestrator.storage.layout import secrets_dir

log = logging.getLogger(__name__)
# A secrets directory no container mounts is a leftover once it is this old; younger ones
# may belong to a run being created right now (by the CLI, beside the daemon).
LEFTOVER_SECRETS_AGE = 600.0
ADOPTED_KINDS = tuple(k.value for k in (Kind.BACKUP, Kind.FORGET, Kind.PRUNE, Kind.VERIFY))


class Dispatch:
    """Launches, adopts and records runs; the daemon's loop calls `tick` and `adopt`."""

    settings: Settings
    runtime: Runtime
    ledger: Ledger
    jobs: Jobs
    maintenance: Maintenance
    customers: Customers
    specs: list[JobSpec]
    state: PlanState
    in_flight: set[str]
    lock: threading.Lock
    wake: threading.Event
    adopted: bool
    errors: dict[str, int]
    unschedulable: set[str]

    def count(self, what: str) -> None:
        """Count one problem the daemon survived, by where it came from."""
        with self.lock:
            self.errors[what] = self.errors.get(what, 0) + 1

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
            self.count("plan")
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
            try:
                threading.Thread(target=self._launch, args=(launch,), daemon=True).start()
            except RuntimeError as exc:  # no thread to be had: this run fails, the rest go on
                self.count("run")
                log.error("%s: cannot start its run: %s", launch.job, exc)
                customer, resource = split_job(launch.job)
                now_ = _now()
                outcome = Outcome(Result.FAILURE, Reason.INTERNAL, f"cannot start the run: {exc}")
                self._finish(
                    launch.job,
                    RunRecord(
                        customer,
                        resource,
                        Kind(launch.kind),
                        launch.scheduled_for,
                        now_,
                        now_,
                        outcome,
                    ),
                )
        return now

    def _write(self, write: Callable[..., None], *args: Any) -> bool:
        """Call a ledger write; log and count a failure instead of raising it."""
        try:
            write(*args)
            return True
        except Exception as exc:
            self.count("ledger")
            log.error("cannot write the ledger (%s): %s", write.__name__, exc)
            try:
                self.ledger.recover_if_corrupt(exc)
            except Exception:  # moving a corrupt file aside on a full or read-only disk
                log.exception("cannot recover the ledger")
            return False

    def _anything_due(self, now: datetime) -> bool:
        if self.state.pending:
            return True
        return any(self.state.next_due.get(spec, now) <= now for spec in self.specs)

    def _recovering(self, job: str) -> bool:
        """Return whether `unstoppable recover` paused the job (an unreadable ledger: no)."""
        try:
            return self.ledger.get_state(RECOVERING + job) is not None
        except Exception:
            return False

    def _launch(self, launch: Launch) -> None:
        customer_name, resource_name = split_job(launch.job)
        kind = Kind(launch.kind)
        started = _now()
        try:
            record = self._run(customer_name, resource_name, kind, launch)
        except Exception as exc:  # the run's own fault boundary: this job's problem alone
            self.count("run")
            log.exception("%s: the %s run raised %s", launch.job, kind.value, type(exc).__name__)
            runtime = isinstance(exc, RuntimeUnavailable)
            outcome = Outcome(
                Result.FAILURE,
                Reason.RUNTIME if runtime else Reason.INTERNAL,
                str(exc)
                if runtime
                else f"the run stopped on an internal error "
                f"({type(exc).__name__}); the daemon's log has its trace",
            )
            record = RunRecord(
                customer_name, resource_name, kind, launch.scheduled_for, started, _now(), outcome
            )
        self._finish(launch.job, record)

    def _run(self, customer_name: str, resource_name: str, kind: Kind, launch: Launch) -> RunRecord:
        """Prepare, launch and judge one run; whatever it raises is the caller's to record."""
        customer = self.customers.get(customer_name)
        resource = customer.resource(resource_name)
        if self._recovering(launch.job):
            now = _now()
            outcome = Outcome(Result.SKIPPED, Reason.OVERLAP, "the job is being recovered")
            return RunRecord(
                customer_name, resource_name, kind, launch.scheduled_for, now, now, outcome
            )
        if kind is Kind.PRUNE:
            return self.maintenance.prune(customer, resource, launch.scheduled_for)
        if kind is Kind.VERIFY:
            return self.maintenance.verify(customer, resource, launch.scheduled_for)
        return self.jobs.backup(customer, resource, launch.scheduled_for)

    def _adopt_one(self, worker: WorkerInfo) -> None:
        try:
            record = adopt(self.jobs, worker, self.customers)
        except Exception:
            self.count("adopt")
            log.exception("%s: cannot adopt %s", worker.label("job"), worker.name)
            with self.lock:
                self.in_flight.discard(worker.label("job"))
            return
        self._finish(worker.label("job"), record)

    def _finish(self, job: str, record: RunRecord) -> None:
        """Record, ping and log a finished run; a failure in any of them is counted, not raised."""
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
        try:
            if record.kind is Kind.BACKUP:  # a dead man's switch watches the backups
                self.jobs.pinger.result(self.customers, record)  # after recording
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
        except Exception:
            self.count("report")
            log.exception("%s: reporting the %s run failed", job, record.kind.value)


def _now() -> datetime:
    return datetime.now(UTC)
