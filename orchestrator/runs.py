"""One run of a job: build its worker, run it, judge what rustic left behind."""

import logging
from datetime import UTC, datetime

from orchestrator.config.customer import Customer, Resource
from orchestrator.config.settings import Settings
from orchestrator.errors import RunStopped
from orchestrator.judgement import locked_written, worker_failure
from orchestrator.launcher import Launcher
from orchestrator.model import Kind, Outcome, Reason, Result, RunRecord, Work
from orchestrator.reporting import pings
from orchestrator.reporting.ledger import Ledger
from orchestrator.reporting.seams import LockProgress, PastRuns, RunMemory
from orchestrator.runtime.protocol import Finished, Runtime
from orchestrator.rustic import commands, output
from orchestrator.rustic.output import last_words
from orchestrator.secrets.files import Resolver
from orchestrator.sources import anomaly
from orchestrator.sources.guard import Floor, floor
from orchestrator.sources.setup import WorkerSetup
from orchestrator.storage import halfway
from orchestrator.storage.layout import job_storage, state_dir

log = logging.getLogger(__name__)
BUCKET_DEADLINE_SECONDS = 60.0
# rustic's own failure, of a backup or of a prune: what it wrote to hot alone is set aside.
HALFWAY_REASONS = (Reason.RUSTIC, Reason.PRUNE)


class Jobs:
    """Runs rustic commands for customers' resources through a runtime."""

    def __init__(
        self,
        settings: Settings,
        runtime: Runtime,
        ledger: Ledger | None = None,
        origin: str = "cli",
        resolver: Resolver | None = None,
    ) -> None:
        self.settings = settings
        self.launcher = Launcher(settings, runtime, resolver or Resolver(), origin)
        ledger = ledger or Ledger(state_dir(settings))
        self.memory: RunMemory = ledger.memory  # the source's baseline, the retention hold
        self.past: PastRuns = ledger.history  # what earlier clean backups held
        self.locks: LockProgress = ledger.locks  # how far the job's writes are locked
        self.pinger = pings.Pinger(settings.PING_URL, settings.private_targets)

    def backup(self, customer: Customer, resource: Resource, scheduled_for: datetime) -> RunRecord:
        """Back up `resource` now; retention is maintenance's (`Maintenance.prune`).

        Never raises for a failed run: the record says what failed and why.
        """
        started = datetime.now(UTC)
        try:
            outcome = self._backup(customer, resource, scheduled_for)
        except RunStopped as stop:
            outcome = stop.outcome
        outcome = self.halfway(customer, resource, started, outcome)
        return RunRecord.of(Work(customer.job(resource)), scheduled_for, started, outcome)

    def halfway(
        self, customer: Customer, resource: Resource, started: datetime, outcome: Outcome
    ) -> Outcome:
        """After rustic's own failure of a backup (or of an adopted prune): storage/halfway.py
        `said`."""
        if outcome.result is not Result.FAILURE or outcome.reason not in HALFWAY_REASONS:
            return outcome
        runtime = self.launcher.runtime
        return halfway.said(
            self.settings, runtime.running_jobs, customer.job(resource), started, outcome
        )

    def _backup(self, customer: Customer, resource: Resource, scheduled_for: datetime) -> Outcome:
        """Back up `resource`; raise RunStopped if the run stops before rustic answers."""
        refused = pings.refusal(customer, resource, self.settings.private_targets)
        if refused is not None:
            raise RunStopped(refused)
        self.pinger.job(customer, resource, "start", f"scheduled for {scheduled_for.isoformat()}")
        self._unborn(customer, resource)
        launch = self.launcher.setup(customer, resource, self.floor(customer, resource))
        timeout = self.settings.job_timeout_seconds
        done = self.launcher.run_worker(
            customer, resource, Kind.BACKUP, scheduled_for, launch, timeout
        )
        outcome = self.judge(customer, resource, scheduled_for, done)
        return locked_written(self.settings, self.locks, customer.job(resource), outcome)

    def _unborn(self, customer: Customer, resource: Resource) -> None:
        """Clear what a first init that failed half way left (storage/halfway.py `unborn`),
        never while a worker of the job runs (its own init, begun since)."""
        job = customer.job(resource)
        try:
            storage = job_storage(self.settings, customer.name, resource.name)
            cleared = halfway.unborn(storage, lambda: job in self.launcher.runtime.running_jobs())
        except Exception as exc:  # the backup's own init says what is wrong, if anything
            log.error("%s: cannot look for a failed first init: %s", job, exc)
            return
        if cleared:
            log.warning(
                "%s: a first init that failed half way left %d file(s): removed", job, len(cleared)
            )

    def floor(self, customer: Customer, resource: Resource) -> Floor:
        """Return what the source must still hold for a snapshot of it to be written."""
        threshold, allow_empty = resource.source.SHRINK_THRESHOLD, resource.source.ALLOW_EMPTY
        return floor(self.memory.baseline_now(customer.job(resource)), threshold, allow_empty)

    def judge(
        self, customer: Customer, resource: Resource, scheduled_for: datetime, done: Finished
    ) -> Outcome:
        if done.timed_out:
            return Outcome(
                Result.TIMEOUT,
                Reason.TIMEOUT,
                f"stopped after UNSTOPPABLE_JOB_TIMEOUT={self.settings.JOB_TIMEOUT}",
            )
        if (failed := worker_failure(resource, done)) is not None:
            return failed
        outcome = output.judge_backup(done.exit_code, done.stdout, done.stderr)
        job = customer.job(resource)
        if outcome.result is Result.SUCCESS and outcome.summary is not None:
            verdict = anomaly.below_floor(outcome.summary, self.floor(customer, resource))
            if not verdict.suspect:
                previous = self.past.last_files(job)
                ratios = self.past.packed_ratios(job, anomaly.HISTORY, anomaly.MIN_ADDED_BYTES)
                verdict = anomaly.judge_resource(resource, outcome.summary, previous, ratios)
            if verdict.suspect:
                return self._suspect(customer, resource, scheduled_for, outcome, verdict.why)
        if outcome.result is Result.SUCCESS and self.memory.held(job):
            return Outcome(
                outcome.result,
                outcome.reason,
                f"{outcome.message}; retention held since a suspect snapshot: nothing "
                "forgotten until `unstoppable release`",
                outcome.summary,
            )
        return outcome

    def _suspect(
        self,
        customer: Customer,
        resource: Resource,
        scheduled_for: datetime,
        written: Outcome,
        why: str,
    ) -> Outcome:
        """Tag a suspect snapshot in the repository and hold the job's retention."""
        assert written.summary is not None
        snapshot = written.summary.snapshot_id
        job = customer.job(resource)
        last_good = self.past.last_snapshot(job)
        self.memory.hold(job, snapshot, why, datetime.now(UTC))
        # The suspect snapshot leaves the clean ones; the last clean one before it is pinned,
        # so not even a release followed by weeks of forget can take the state before this.
        cold = self.launcher.cold
        steps = [(commands.tag_suspect_args(cold, snapshot), f"tagged {commands.TAG_SUSPECT}")]
        if last_good:
            steps.append(
                (
                    commands.tag_pinned_args(cold, last_good),
                    f"snapshot {last_good[:8]} pinned",
                )
            )
        notes = []
        for argv, done_note in steps:
            try:
                tag = WorkerSetup(argv, ())
                done = self.launcher.run_worker(
                    customer, resource, Kind.TAG, scheduled_for, tag, 600
                )
                ok = done.exit_code == 0
                notes.append(done_note if ok else f"not {done_note}: {last_words(done)}")
            except RunStopped as stop:
                notes.append(f"not {done_note}: {stop.outcome.message}")
        note = "; ".join(notes)
        return Outcome(
            Result.SUSPECT,
            Reason.NONE,
            f"snapshot {snapshot[:8]} is suspect: {why}; {note}; retention held until "
            "`unstoppable release`",
            written.summary,
        )
