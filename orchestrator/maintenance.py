"""Scheduled work beside the backups: retention with prune, and restore drills.

Both run on their own schedules (`<R>_PRUNE_SCHEDULE`, `<R>_VERIFY_SCHEDULE`) under the job's
one lock, so neither ever runs at the same time as a backup of the same job. A drill judges
the repository by what it gives back: it reads a rotating slice of the cold packs (`check
--read-data-subset`), then restores a random sample of files of the newest clean snapshot and
compares each with its source where the source file is unchanged since.
"""

import logging
import random
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from orchestrator import rustic, s3
from orchestrator.customer import Customer, Resource, SourceType
from orchestrator.errors import JobBusy, RuntimeUnavailable, SecretError
from orchestrator.launches import Launch, source_path
from orchestrator.runs import Jobs, RunRecord, last_words, worker_failure
from orchestrator.runtime import Finished
from orchestrator.rustic import Entry, Outcome, Reason, Result
from orchestrator.storage import job_storage
from orchestrator.worker import Kind, job_id

log = logging.getLogger(__name__)
DRILL = "/usr/local/bin/unstoppable-drill"
SAMPLE = "/usr/local/bin/unstoppable-sample"
# A drill restores at most this much, so a sample that hits a 50 GB dump stays a drill.
SAMPLE_BYTES = 512 * 1024 * 1024
# What rustic says when it read data that is not what was written: damage, not an outage.
_DAMAGE = re.compile(
    r"mac check failed|decryption failed|hash mismatch|error checking pack"
    r"|related to `cryptographic operations`|pack \w+ (does not exist|is missing|not found)",
    re.IGNORECASE,
)


class Drills(Protocol):
    """What a drill keeps between runs: the next slice, and damage it found."""

    def next_slice(self, job: str, parts: int) -> int:
        """Return the slice (1..parts) this drill reads, and move on to the next."""
        ...

    def mark_corrupt(self, job: str, why: str, now: datetime) -> None: ...

    def corrupt(self, job: str) -> bool: ...

    def clear_corrupt(self, job: str) -> None: ...


@dataclass(frozen=True)
class Drill:
    """How much of the repository one drill covers."""

    part: int
    parts: int

    @property
    def full(self) -> bool:
        return self.parts == 1


class Maintenance:
    """Prunes and drills a job's repositories through the same runtime as its backups."""

    def __init__(self, jobs: Jobs, drills: Drills) -> None:
        self.jobs = jobs
        self.drills = drills

    def prune(self, customer: Customer, resource: Resource, scheduled_for: datetime) -> RunRecord:
        """Forget by KEEP_* (with the floors of `rustic.forget_args`), then prune.

        While the job's retention is held after a suspect snapshot, nothing is forgotten
        or pruned. Without KEEP_* nothing is forgotten; prune only drops unreferenced data.
        """
        started = datetime.now(UTC)
        outcome = self._prune(customer, resource, scheduled_for)
        return RunRecord(
            customer.name,
            resource.name,
            Kind.PRUNE,
            scheduled_for,
            started,
            datetime.now(UTC),
            outcome,
        )

    def _prune(self, customer: Customer, resource: Resource, scheduled_for: datetime) -> Outcome:
        job = job_id(customer.name, resource.name)
        if self.jobs.holds.held(job):
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
        if not _has_repository(self.jobs, customer, resource):
            return Outcome(Result.SUCCESS, Reason.NONE, "no repository yet: nothing to prune")
        cold = self.jobs.cold
        if customer.keep:
            argv = rustic.forget_args(
                cold, customer.keep, self.jobs.settings.min_keep_within_seconds
            )
            what = "forget --prune"
        else:
            argv, what = rustic.prune_args(cold), "prune"
        done = self._run(customer, resource, Kind.PRUNE, scheduled_for, argv)
        if isinstance(done, Outcome):
            return done
        if done.timed_out:
            return _timeout(self.jobs)
        if done.exit_code != 0:
            return Outcome(Result.FAILURE, Reason.PRUNE, f"{what} failed: {last_words(done)}")
        return Outcome(Result.SUCCESS, Reason.NONE, f"{what} finished")

    def verify(
        self, customer: Customer, resource: Resource, scheduled_for: datetime, full: bool = False
    ) -> RunRecord:
        """Run one restore drill; `full` reads every pack instead of the next slice."""
        started = datetime.now(UTC)
        outcome = self._verify(customer, resource, scheduled_for, full)
        job = job_id(customer.name, resource.name)
        if outcome.result is Result.CORRUPT:
            self.drills.mark_corrupt(job, outcome.message, datetime.now(UTC))
        return RunRecord(
            customer.name,
            resource.name,
            Kind.VERIFY,
            scheduled_for,
            started,
            datetime.now(UTC),
            outcome,
        )

    def _verify(
        self, customer: Customer, resource: Resource, scheduled_for: datetime, full: bool
    ) -> Outcome:
        job = job_id(customer.name, resource.name)
        if not _has_repository(self.jobs, customer, resource):
            return Outcome(Result.SKIPPED, Reason.NONE, "no repository yet: nothing to verify")
        parts = 1 if full else int(resource.maintenance("VERIFY_SLICES"))
        drill = Drill(self.drills.next_slice(job, parts) if parts > 1 else 1, parts)
        cold = self.jobs.cold
        checked = self._run(
            customer,
            resource,
            Kind.VERIFY,
            scheduled_for,
            rustic.check_subset_args(cold, drill.part, parts),
        )
        if isinstance(checked, Outcome):
            return checked
        if checked.timed_out:
            return _timeout(self.jobs)
        problems, _ = rustic.judge_check(checked.exit_code, checked.stderr)
        slice_text = "every pack" if drill.full else f"slice {drill.part}/{parts} of the packs"
        if problems:
            return _damage_or_failure(f"check of {slice_text}: {problems[0]}", checked)
        sample = int(resource.maintenance("VERIFY_SAMPLE"))
        restored = self._restore_sample(customer, resource, scheduled_for, sample)
        if isinstance(restored, Outcome):
            return restored
        if drill.full:
            self.drills.clear_corrupt(job)
        return Outcome(Result.SUCCESS, Reason.NONE, f"{slice_text} read clean; {restored}")

    def _restore_sample(
        self, customer: Customer, resource: Resource, scheduled_for: datetime, sample: int
    ) -> str | Outcome:
        """Restore up to `sample` files of the newest clean snapshot and compare them."""
        if sample == 0:
            return "no file restored (VERIFY_SAMPLE=0)"
        cold = self.jobs.cold
        snapshot = self.jobs.holds.last_snapshot(job_id(customer.name, resource.name)) or "latest"
        root = source_path(resource)
        # The worker keeps a random sample of the listing: millions of names stay there.
        listing = Launch(
            [str(sample * 3), str(SAMPLE_BYTES), "--", *rustic.ls_args(cold, snapshot, root)],
            (),
            entrypoint=(SAMPLE,),
        )
        listed = self._run(customer, resource, Kind.VERIFY, scheduled_for, listing.argv, listing)
        if isinstance(listed, Outcome):
            return listed
        if listed.timed_out:
            return _timeout(self.jobs)
        if listed.exit_code != 0:
            return _damage_or_failure(f"listing snapshot {snapshot[:8]}", listed)
        chosen = choose(rustic.parse_ls(listed.stdout), sample, SAMPLE_BYTES, random.Random())
        if not chosen:
            if self.jobs.holds.last_files(job_id(customer.name, resource.name)):
                return Outcome(
                    Result.FAILURE,
                    Reason.RUSTIC,
                    f"snapshot {snapshot[:8]} should hold files, but its listing named none "
                    "that a drill can restore (unreadable listing, or every file over "
                    f"{SAMPLE_BYTES // 2**20} MiB)",
                )
            return f"snapshot {snapshot[:8]} holds no regular file to restore"
        command = [DRILL, snapshot, root, root, *rustic.global_args(cold), "--", *chosen]
        try:
            launch = self._launch(customer, resource, command)
        except SecretError as exc:
            return Outcome(Result.FAILURE, Reason.SECRETS, str(exc))
        if isinstance(launch, Outcome):
            return launch
        done = self._run(customer, resource, Kind.VERIFY, scheduled_for, launch.argv, launch)
        if isinstance(done, Outcome):
            return done
        if done.timed_out:
            return _timeout(self.jobs)
        if done.exit_code == 9:
            return Outcome(Result.CORRUPT, Reason.NONE, f"restore drill: {_drill_words(done)}")
        if done.exit_code == 8:
            return _damage_or_failure("restore drill", done)
        if done.exit_code == 10:
            return Outcome(
                Result.FAILURE, Reason.SOURCE_UNREADABLE, f"restore drill: {_drill_words(done)}"
            )
        if done.exit_code != 0:
            outcome = worker_failure(resource, done)
            return outcome or Outcome(
                Result.FAILURE, Reason.RUSTIC, f"restore drill: {last_words(done)}"
            )
        counts = dict(part.split("=", 1) for part in done.stdout.split() if part.count("=") == 1)
        return (
            f"{counts.get('restored', '?')} file(s) of snapshot {snapshot[:8]} restored, "
            f"{counts.get('compared', '?')} equal to their unchanged source, "
            f"{counts.get('changed', '?')} changed since"
        )

    def _launch(
        self, customer: Customer, resource: Resource, command: list[str]
    ) -> Launch | Outcome:
        """Return the worker that runs `command` beside the source, mounted as for a backup."""
        if resource.type is SourceType.LOCAL:
            return self.jobs.local_launch(customer, resource, guard=None, command=command)
        return self.jobs.remote_launch(customer, resource, guard=None, command=command)

    def _run(
        self,
        customer: Customer,
        resource: Resource,
        kind: Kind,
        scheduled_for: datetime,
        argv: list[str],
        launch: Launch | None = None,
    ) -> Finished | Outcome:
        """Run one step under the job's lock; the failure that stopped it as an Outcome."""
        try:
            return self.jobs.run_worker(
                customer,
                resource,
                kind,
                scheduled_for,
                argv,
                launch.mounts if launch else (),
                timeout=self.jobs.settings.job_timeout_seconds,
                launch=launch,
            )
        except JobBusy:
            return Outcome(Result.SKIPPED, Reason.OVERLAP, "another run of this job is in progress")
        except SecretError as exc:
            return Outcome(Result.FAILURE, Reason.SECRETS, str(exc))
        except RuntimeUnavailable as exc:
            return Outcome(Result.FAILURE, Reason.RUNTIME, str(exc))
        except s3.StorageError as exc:
            return Outcome(Result.FAILURE, Reason.STORAGE, str(exc))


def choose(entries: list[Entry], count: int, budget: int, rng: random.Random) -> list[str]:
    """Return up to `count` random paths of `entries` whose sizes add up to at most `budget`."""
    shuffled = list(entries)
    rng.shuffle(shuffled)
    chosen: list[str] = []
    total = 0
    for entry in shuffled:
        if len(chosen) >= count:
            break
        if total + entry.size <= budget:
            chosen.append(entry.path)
            total += entry.size
    return chosen


def _has_repository(jobs: Jobs, customer: Customer, resource: Resource) -> bool:
    return (job_storage(jobs.settings, customer.name, resource.name).hot / "config").exists()


def _timeout(jobs: Jobs) -> Outcome:
    return Outcome(
        Result.TIMEOUT,
        Reason.TIMEOUT,
        f"stopped after UNSTOPPABLE_JOB_TIMEOUT={jobs.settings.JOB_TIMEOUT}",
    )


def _drill_words(done: Finished) -> str:
    """Return what the drill script itself said last (its `[DRILL]` lines)."""
    said = [line for line in done.stderr.splitlines() if line.startswith("[DRILL] ")]
    return said[-1].removeprefix("[DRILL] ")[:300] if said else last_words(done)


def _damage_or_failure(step: str, done: Finished) -> Outcome:
    """Tell damage (the repository gave back something else) from an outage (it did not answer)."""
    cause = last_words(done)
    # The drill's own lines name the customer's files; only rustic's words can say damage.
    text = "\n".join(line for line in done.stderr.splitlines() if not line.startswith("[DRILL]"))
    if any(line.startswith("[DRILL] ") for line in done.stderr.splitlines()):
        step = f"{step}: {_drill_words(done)}"
        cause = rustic.error_summary(text) if text.strip() else f"exit {done.exit_code}"
    if done.exit_code < 128 and _DAMAGE.search(text):
        return Outcome(Result.CORRUPT, Reason.NONE, f"{step}: {cause}")
    if done.exit_code >= 128:
        return Outcome(Result.FAILURE, Reason.INTERRUPTED, f"{step}: {cause}")
    reason = rustic.judge_backup(done.exit_code, "", text).reason
    return Outcome(Result.FAILURE, reason, f"{step}: {cause}")
