"""Scheduled work beside the backups: retention with prune, and restore drills.

Both run on their own schedules (`<R>_PRUNE_SCHEDULE`, `<R>_VERIFY_SCHEDULE`) under the job's
one lock, so neither ever runs at the same time as a backup of the same job. A drill judges
the repository by what it gives back: it reads a rotating slice of the cold packs (`check
--read-data-subset`), then restores a random sample of files of the newest clean snapshot and
compares each with its source where the source file is unchanged since.
"""

import logging
import random
from dataclasses import replace
from datetime import UTC, datetime

from orchestrator.config.customer import Customer, Resource
from orchestrator.config.settings import Settings
from orchestrator.drill import (
    DRILL,
    SAMPLE,
    SAMPLE_BYTES,
    Drill,
    choose,
    damage_or_failure,
    drill_words,
)
from orchestrator.errors import RunStopped
from orchestrator.judgement import over_memory, worker_failure
from orchestrator.launcher import Launcher
from orchestrator.model import Kind, Outcome, Reason, Result, RunRecord, Work
from orchestrator.reporting.ledger import Ledger
from orchestrator.reporting.seams import Drills, LockProgress, PastRuns, RunMemory
from orchestrator.runtime.exit_codes import ExitCode
from orchestrator.runtime.protocol import Finished
from orchestrator.rustic import commands, output
from orchestrator.rustic.listing import parse_ls
from orchestrator.rustic.output import last_words
from orchestrator.sources.setup import WorkerSetup, source_path
from orchestrator.storage import halfway
from orchestrator.storage.layout import job_storage, lock_live
from orchestrator.storage.s3_values import StorageError

log = logging.getLogger(__name__)


class Maintenance:
    """Prunes and drills a job's repositories through the same runtime as its backups."""

    def __init__(self, launcher: Launcher, ledger: Ledger) -> None:
        self.launcher = launcher
        self.settings = launcher.settings
        self.drills: Drills = ledger.memory  # the next slice, damage found
        self.memory: RunMemory = ledger.memory  # the retention hold
        self.past: PastRuns = ledger.history  # the newest clean snapshot
        self.locks: LockProgress = ledger.locks

    def prune(self, customer: Customer, resource: Resource, scheduled_for: datetime) -> RunRecord:
        """Forget by KEEP_* (with the floors of `commands.forget_args`), then prune.

        While the job's retention is held after a suspect snapshot, nothing is forgotten
        or pruned. Without KEEP_* nothing is forgotten; prune only drops unreferenced data.
        """
        started = datetime.now(UTC)
        try:
            pruned = self._prune(customer, resource, scheduled_for)
        except RunStopped as stop:  # raised by its run of rustic: forget may have begun
            pruned = replace(stop.outcome, forgot=bool(customer.keep))
        outcome = self._locked(customer, resource, pruned)
        if outcome.result is Result.FAILURE and outcome.reason is Reason.PRUNE:
            running = self.launcher.runtime.running_jobs
            outcome = halfway.said(self.settings, running, customer.job(resource), started, outcome)
        return RunRecord.of(
            Work(customer.job(resource), Kind.PRUNE), scheduled_for, started, outcome
        )

    def _locked(self, customer: Customer, resource: Resource, pruned: Outcome) -> Outcome:
        """Extend the lock of the live objects, held or not; a failure fails the run."""
        began = datetime.now(UTC)
        try:
            report = lock_live(self.settings, customer.name, resource.name)
        except StorageError as exc:
            return replace(
                pruned,
                result=Result.FAILURE,
                reason=Reason.STORAGE,
                message=f"{pruned.message}; lock: {exc}",
            )
        if report is None:
            return pruned
        self.locks.record_lock(customer.job(resource), report.earliest, report.unlocked)
        if not report.complete:
            return replace(
                pruned,
                result=Result.FAILURE,
                reason=Reason.STORAGE,
                message=f"{pruned.message}; lock renewal stopped at UNSTOPPABLE_JOB_TIMEOUT "
                f"after {report.extended} of {report.live} live object(s)",
            )
        if report.unlocked:
            note = "the bucket has NO object lock: its history is not protected"
        else:
            self.locks.lock_reached(customer.job(resource), began)
            until = report.earliest.isoformat() if report.earliest else "-"
            note = (
                f"{report.extended} of {report.live} live object(s) locked further, all to {until}"
            )
        return replace(pruned, message=f"{pruned.message}; {note}")

    def _prune(self, customer: Customer, resource: Resource, scheduled_for: datetime) -> Outcome:
        job = customer.job(resource)
        if self.memory.held(job):
            return Outcome(
                Result.SUCCESS,
                Reason.NONE,
                "retention held since a suspect snapshot: nothing forgotten or pruned until "
                "`unstoppable release`",
            )
        if self.drills.corrupt(job):
            # Forgetting now could drop intact old snapshots and keep the damaged ones.
            return Outcome(
                Result.SUCCESS,
                Reason.NONE,
                "retention held since a drill found damage: nothing forgotten or pruned until "
                "a full drill (`unstoppable verify --full`) reads clean",
            )
        if not _has_repository(self.settings, customer, resource):
            return Outcome(Result.SUCCESS, Reason.NONE, "no repository yet: nothing to prune")
        if job in self.launcher.runtime.reading_jobs():  # the planner's check, once more
            return Outcome(
                Result.SKIPPED,
                Reason.OVERLAP,
                "a restore or listing of this job is reading: nothing pruned while it runs",
            )
        cold = self.launcher.cold
        if customer.keep:
            argv = commands.forget_args(cold, customer.keep, self.settings.min_keep_within_seconds)
            what = "forget --prune"
        else:
            argv = commands.prune_args(cold)
            what = argv[-1]  # rustic's subcommand, as the operator would type it
        done = self._run(customer, resource, Kind.PRUNE, scheduled_for, argv)
        forgot = bool(customer.keep)  # a forget that failed may have forgotten some
        if done.exit_code != 0:
            failed = f"{what} failed: {last_words(done)}"
            return Outcome(Result.FAILURE, Reason.PRUNE, failed, forgot=forgot)
        return Outcome(Result.SUCCESS, Reason.NONE, f"{what} finished", forgot=forgot)

    def verify(
        self, customer: Customer, resource: Resource, scheduled_for: datetime, full: bool = False
    ) -> RunRecord:
        """Run one restore drill; `full` reads every pack instead of the next slice."""
        started = datetime.now(UTC)
        job = customer.job(resource)
        if not _has_repository(self.settings, customer, resource):
            outcome = Outcome(Result.SKIPPED, Reason.NONE, "no repository yet: nothing to verify")
            return RunRecord.of(Work(job, Kind.VERIFY), scheduled_for, started, outcome)
        parts = 1 if full else resource.source.VERIFY_SLICES
        drill = Drill(self.drills.next_slice(job, parts) if parts > 1 else 1, parts)
        try:
            outcome = self._verify(customer, resource, scheduled_for, drill)
        except RunStopped as stop:
            outcome = stop.outcome
        outcome = replace(outcome, drill=(drill.part, drill.parts))
        if outcome.result is Result.CORRUPT:
            self.drills.mark_corrupt(job, outcome.message, datetime.now(UTC))
        return RunRecord.of(Work(job, Kind.VERIFY), scheduled_for, started, outcome)

    def _verify(
        self, customer: Customer, resource: Resource, scheduled_for: datetime, drill: Drill
    ) -> Outcome:
        job, parts = customer.job(resource), drill.parts
        cold = self.launcher.cold
        checked = self._run(
            customer,
            resource,
            Kind.VERIFY,
            scheduled_for,
            commands.check_subset_args(cold, drill.part, parts),
        )
        problems, _ = output.judge_check(checked.exit_code, checked.stderr)
        slice_text = "every pack" if drill.full else f"slice {drill.part}/{parts} of the packs"
        if problems:
            return damage_or_failure(f"check of {slice_text}: {problems[0]}", checked)
        sample = resource.source.VERIFY_SAMPLE
        restored = self._restore_sample(customer, resource, scheduled_for, sample)
        if drill.full:
            self.drills.clear_corrupt(job)
        return Outcome(Result.SUCCESS, Reason.NONE, f"{slice_text} read clean; {restored}")

    def _restore_sample(
        self, customer: Customer, resource: Resource, scheduled_for: datetime, sample: int
    ) -> str:
        """Restore up to `sample` files of the newest clean snapshot and compare them.

        Return what the comparison found; raise RunStopped with what ended the drill.
        """
        if sample == 0:
            return "no file restored (VERIFY_SAMPLE=0)"
        cold = self.launcher.cold
        snapshot = self.past.last_snapshot(customer.job(resource)) or "latest"
        root = source_path(resource)
        # The worker keeps a random sample of the listing: millions of names stay there.
        listing = WorkerSetup(
            [str(sample * 3), str(SAMPLE_BYTES), "--", *commands.ls_args(cold, snapshot, root)],
            (),
            entrypoint=(SAMPLE,),
        )
        listed = self._run(customer, resource, Kind.VERIFY, scheduled_for, listing.argv, listing)
        if listed.exit_code != 0:
            raise RunStopped(damage_or_failure(f"listing snapshot {snapshot[:8]}", listed))
        chosen = choose(parse_ls(listed.stdout), sample, SAMPLE_BYTES, random.Random())
        if not chosen:
            if self.past.last_files(customer.job(resource)):
                raise RunStopped(
                    Outcome(
                        Result.FAILURE,
                        Reason.RUSTIC,
                        f"snapshot {snapshot[:8]} should hold files, but its listing named none "
                        "that a drill can restore (unreadable listing, or every file over "
                        f"{SAMPLE_BYTES // 2**20} MiB)",
                    )
                )
            return f"snapshot {snapshot[:8]} holds no regular file to restore"
        command = [DRILL, snapshot, root, root, *commands.global_args(cold), "--", *chosen]
        launch = self.launcher.setup(customer, resource, None, command)
        done = self._run(customer, resource, Kind.VERIFY, scheduled_for, launch.argv, launch)
        if done.exit_code != 0:
            raise RunStopped(_drill_failure(resource, done))
        counts = dict(part.split("=", 1) for part in done.stdout.split() if part.count("=") == 1)
        return (
            f"{counts.get('restored', '?')} file(s) of snapshot {snapshot[:8]} restored, "
            f"{counts.get('compared', '?')} equal to their unchanged source, "
            f"{counts.get('changed', '?')} changed since"
        )

    def _run(
        self,
        customer: Customer,
        resource: Resource,
        kind: Kind,
        scheduled_for: datetime,
        argv: list[str],
        launch: WorkerSetup | None = None,
    ) -> Finished:
        """Run one step under the job's lock; raise RunStopped if it stopped short.

        A step killed past its memory limit, or cut off at UNSTOPPABLE_JOB_TIMEOUT, ends
        the run: what it printed is no answer to judge.
        """
        timeout = self.settings.job_timeout_seconds
        launch = launch or WorkerSetup(argv, ())
        done = self.launcher.run_worker(customer, resource, kind, scheduled_for, launch, timeout)
        if (killed := over_memory(done)) is not None:
            raise RunStopped(killed)
        if done.timed_out:
            raise RunStopped(_timeout(self.settings))
        return done


def _drill_failure(resource: Resource, done: Finished) -> Outcome:
    """Return what a restore drill's exit code other than 0 says of the repository."""
    if done.exit_code == ExitCode.DRILL_DIFFERS:
        return Outcome(Result.CORRUPT, Reason.NONE, f"restore drill: {drill_words(done)}")
    if done.exit_code == ExitCode.DRILL_FAILED:
        return damage_or_failure("restore drill", done)
    if done.exit_code == ExitCode.DRILL_SOURCE:
        return Outcome(
            Result.FAILURE, Reason.SOURCE_UNREADABLE, f"restore drill: {drill_words(done)}"
        )
    failed = worker_failure(resource, done)
    if failed is None and done.exit_code >= 128:  # killed by a signal: nothing of rustic's
        failed = Outcome(
            Result.FAILURE, Reason.INTERRUPTED, f"restore drill: exit {done.exit_code}"
        )
    return failed or Outcome(Result.FAILURE, Reason.RUSTIC, f"restore drill: {last_words(done)}")


def _has_repository(settings: Settings, customer: Customer, resource: Resource) -> bool:
    return (job_storage(settings, customer.name, resource.name).hot / "config").exists()


def _timeout(settings: Settings) -> Outcome:
    return Outcome(
        Result.TIMEOUT,
        Reason.TIMEOUT,
        f"stopped after UNSTOPPABLE_JOB_TIMEOUT={settings.JOB_TIMEOUT}",
    )
