"""One run of a job: build its worker, run it, judge what rustic left behind."""

import logging
from datetime import UTC, datetime

from orchestrator import deadline
from orchestrator.config.customer import Customer, Resource
from orchestrator.config.names import env_prefix
from orchestrator.config.settings import Settings
from orchestrator.config.source import SourceType
from orchestrator.errors import JobBusy, RuntimeUnavailable, SecretError
from orchestrator.judgement import (
    STOPPED_BEFORE_RUSTIC,
    last_words,
    locked_written,
    stopped,
    worker_failure,
)
from orchestrator.model import Kind, Outcome, Reason, Result, RunRecord
from orchestrator.reporting import pings
from orchestrator.reporting.ledger import Ledger
from orchestrator.reporting.seams import LockProgress, PastRuns, RunMemory
from orchestrator.runtime import apparmor
from orchestrator.runtime.paths import COLD_PROFILE
from orchestrator.runtime.protocol import Finished, Runtime
from orchestrator.runtime.spec import (
    ContainerSpec,
    Limits,
    Mount,
    apparmor_options,
    capabilities,
    container_name,
    labels,
    repo_mounts,
)
from orchestrator.rustic import commands, output
from orchestrator.secrets.files import Resolver, secret_files
from orchestrator.sources import anomaly
from orchestrator.sources.guard import Floor, floor
from orchestrator.sources.setup import WorkerSetup, local_launch, local_source, remote_launch
from orchestrator.storage import s3_values
from orchestrator.storage.layout import (
    bucket,
    bucket_lock,
    cold_profile,
    job_storage,
    open_bucket,
    secrets_dir,
    state_dir,
)

log = logging.getLogger(__name__)
BUCKET_DEADLINE_SECONDS = 60.0


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
        self.runtime = runtime
        self.origin = origin  # "daemon" marks the workers a restarted daemon adopts
        ledger = ledger or Ledger(state_dir(settings))
        self.memory: RunMemory = ledger.memory  # the source's baseline, the retention hold
        self.past: PastRuns = ledger.history  # what earlier clean backups held
        self.locks: LockProgress = ledger.locks  # how far the job's writes are locked
        self.resolver = resolver or Resolver()
        self.cold = commands.cold_args(settings.COLD_BACKEND == "s3")
        self.buckets_ready: set[str] = set()
        self.pinger = pings.Pinger(settings.PING_URL, settings.private_targets)

    def backup(self, customer: Customer, resource: Resource, scheduled_for: datetime) -> RunRecord:
        """Back up `resource` now; retention is maintenance's (`Maintenance.prune`).

        Never raises for a failed run: the record says what failed and why.
        """
        started = datetime.now(UTC)
        outcome = pings.refusal(customer, resource, self.settings.private_targets)
        if outcome is None:
            when = f"scheduled for {scheduled_for.isoformat()}"
            self.pinger.job(customer, resource, "start", when)
            outcome = self._backup(customer, resource, scheduled_for)
        record = RunRecord(
            customer.job(resource),
            Kind.BACKUP,
            scheduled_for,
            started,
            datetime.now(UTC),
            outcome,
        )
        return record

    def _backup(self, customer: Customer, resource: Resource, scheduled_for: datetime) -> Outcome:
        try:
            launch = self.setup(customer, resource, self.floor(customer, resource))
            if isinstance(launch, Outcome):
                return launch
            done = self.run_worker(
                customer,
                resource,
                Kind.BACKUP,
                scheduled_for,
                launch.argv,
                launch.mounts,
                timeout=self.settings.job_timeout_seconds,
                launch=launch,
            )
        except STOPPED_BEFORE_RUSTIC as exc:
            return stopped(exc)
        outcome = self.judge(customer, resource, scheduled_for, done)
        return locked_written(self.settings, self.locks, customer.job(resource), outcome)

    def setup(
        self,
        customer: Customer,
        resource: Resource,
        guard: Floor | None,
        command: list[str] | None = None,
    ) -> WorkerSetup | Outcome:
        """Return the worker of a backup (or `command`) beside the source, or why not.

        A local PATH is resolved now, at run time: a symlink swapped in since the file was
        loaded must not point the worker at /etc. The resolved path is what is mounted.
        """
        if resource.type is SourceType.LOCAL:
            found = local_source(self.settings.bounds, resource.path, customer.name)
            if isinstance(found, Outcome):
                return found
            real, identity = found
            return local_launch(self.cold, customer, resource, real, identity, guard, command)
        password = None
        if resource.password:
            key = env_prefix(resource.name) + "PASSWORD"
            password = self.resolver.resolve(resource.password, customer.name, key)
        confinement = self.settings.confinement
        return remote_launch(self.cold, customer, resource, password, guard, confinement, command)

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
        steps = [(commands.tag_suspect_args(self.cold, snapshot), f"tagged {commands.TAG_SUSPECT}")]
        if last_good:
            steps.append(
                (
                    commands.tag_pinned_args(self.cold, last_good),
                    f"snapshot {last_good[:8]} pinned",
                )
            )
        notes = []
        for argv, done_note in steps:
            try:
                done = self.run_worker(
                    customer, resource, Kind.TAG, scheduled_for, argv, (), timeout=600
                )
                ok = done.exit_code == 0
                notes.append(done_note if ok else f"not {done_note}: {last_words(done)}")
            except (SecretError, RuntimeUnavailable, JobBusy) as exc:
                notes.append(f"not {done_note}: {exc}")
        note = "; ".join(notes)
        return Outcome(
            Result.SUSPECT,
            Reason.NONE,
            f"snapshot {snapshot[:8]} is suspect: {why}; {note}; retention held until "
            "`unstoppable release`",
            written.summary,
        )

    def run_worker(
        self,
        customer: Customer,
        resource: Resource,
        kind: Kind,
        scheduled_for: datetime,
        argv: list[str],
        extra: tuple[Mount, ...],
        timeout: float | None,
        launch: "WorkerSetup | None" = None,
    ) -> Finished:
        storage = job_storage(self.settings, customer.name, resource.name)
        for directory in (storage.hot, storage.cache, storage.cold):
            if directory is not None:
                directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        password = self.resolver.resolve(customer.repo_password, customer.name, "REPO_PASSWORD")
        job = customer.job(resource)
        name = container_name(job, kind, scheduled_for)
        remote = launch is not None and launch.remote
        cap_drop, cap_add = capabilities(kind, remote)
        files = {commands.PASSWORD_FILE: password, **(launch.files if launch else {})}
        key = None
        if customer.cold_key is not None:
            key_id, ref = customer.cold_key
            key = (key_id, self.resolver.resolve(ref, customer.name, "COLD_S3_SECRET_ACCESS_KEY"))
        if (profile := cold_profile(self.settings, customer.name, resource.name, key)) is not None:
            files[COLD_PROFILE] = profile
            if kind is Kind.BACKUP:
                self._ensure_bucket(customer.name)
        with secret_files(secrets_dir(self.settings), name, files) as secrets:
            spec = ContainerSpec(
                name=name,
                image=self.settings.WORKER_IMAGE,
                command=tuple(argv),
                labels=labels(job, kind, scheduled_for, self.origin),
                mounts=repo_mounts(storage, secrets) + extra,
                cap_drop=cap_drop,
                cap_add=cap_add,
                devices=("/dev/fuse",) if remote else (),
                entrypoint=launch.entrypoint if launch else (),
                security_opt=apparmor_options(
                    remote,
                    remote and apparmor.enabled(),
                    apparmor.loaded_profiles() if remote else frozenset(),
                ),
                limits=Limits.of(self.settings, kind),
            )
            return self.runtime.run(spec, timeout)

    def _ensure_bucket(self, customer: str) -> None:
        """Create the customer's bucket once per process; StorageError if that fails.

        One without object lock is used, and reported (here, and by each prune).
        """
        name = bucket(self.settings, customer)
        if name in self.buckets_ready:
            return
        lock = bucket_lock(self.settings)
        store = open_bucket(self.settings, customer)
        try:
            state = deadline.call(
                lambda: store.ensure(lock), BUCKET_DEADLINE_SECONDS, f"bucket {name}"
            )
        except deadline.DeadlineExceeded as exc:
            raise s3_values.StorageError(str(exc)) from None
        finally:
            store.close()
        if lock is not None and state is s3_values.BucketState.UNLOCKED:
            log.error(
                "%s: bucket %s has no object lock: its history is not protected", customer, name
            )
        self.buckets_ready.add(name)
