"""One run of a job: build its worker, run it, judge what rustic left behind."""

import logging
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from orchestrator import anomaly, apparmor, deadline, pings, rustic, s3, sources
from orchestrator.anomaly import Verdict
from orchestrator.customer import Customer, Customers, Resource, SourceType, env_prefix
from orchestrator.errors import ConfigError, JobBusy, RunFailed, RuntimeUnavailable, SecretError
from orchestrator.launches import Launch, local_launch, remote_launch, source_path
from orchestrator.runtime import Finished, Runtime, WorkerInfo
from orchestrator.rustic import Outcome, Reason, Result, SnapshotInfo, Summary
from orchestrator.secrets import Resolver, remove_secrets, secret_files
from orchestrator.settings import Settings
from orchestrator.source_guard import DEFAULT_THRESHOLD, Baseline, Floor, floor
from orchestrator.storage import COLD_PROFILE, bucket, cold_profile, job_storage, secrets_dir
from orchestrator.worker import (
    RESTORE_TARGET,
    ContainerSpec,
    Kind,
    Mount,
    apparmor_options,
    capabilities,
    container_name,
    job_id,
    labels,
    repo_mounts,
)

log = logging.getLogger(__name__)
BUCKET_DEADLINE_SECONDS = 60.0


class Holds(Protocol):
    """Where a job's retention hold is kept: the ledger, or memory."""

    def held(self, job: str) -> bool: ...

    def hold(self, job: str, snapshot: str, why: str, now: datetime) -> None: ...

    def last_files(self, job: str) -> int | None:
        """Return how many files the job's last clean snapshot held, if there is one."""
        ...

    def last_snapshot(self, job: str) -> str | None:
        """Return the id of the job's last clean snapshot, if there is one."""
        ...


class MemoryHolds:
    """Holds kept for one process only (tests, and a Jobs without a ledger)."""

    def __init__(self) -> None:
        self.jobs: set[str] = set()

    def held(self, job: str) -> bool:
        return job in self.jobs

    def hold(self, job: str, snapshot: str, why: str, now: datetime) -> None:
        self.jobs.add(job)

    def last_files(self, job: str) -> int | None:
        return None

    def last_snapshot(self, job: str) -> str | None:
        return None


@dataclass(frozen=True)
class RunRecord:
    """What happened to one run of a job."""

    customer: str
    resource: str
    kind: Kind
    scheduled_for: datetime
    started: datetime
    ended: datetime
    outcome: Outcome

    @property
    def job(self) -> str:
        return job_id(self.customer, self.resource)


class Jobs:
    """Runs rustic commands for customers' resources through a runtime."""

    def __init__(
        self,
        settings: Settings,
        runtime: Runtime,
        origin: str = "cli",
        baseline: Callable[[str], Baseline | None] = lambda job: None,
        resolver: Resolver | None = None,
        holds: "Holds | None" = None,
    ) -> None:
        self.settings = settings
        self.runtime = runtime
        self.origin = origin  # "daemon" marks the workers a restarted daemon adopts
        self.baseline = baseline  # what the job's source held lately, to notice a shrink
        self.holds: Holds = holds or MemoryHolds()  # retention held after a suspect snapshot
        self.resolver = resolver or Resolver()
        self.cold = rustic.cold_args(settings.COLD_BACKEND == "s3")
        self.buckets_ready: set[str] = set()
        self.pinger = pings.Pinger()

    def backup(self, customer: Customer, resource: Resource, scheduled_for: datetime) -> RunRecord:
        """Back up `resource` now; retention is maintenance's (`Maintenance.prune`).

        Never raises for a failed run: the record says what failed and why.
        """
        started = datetime.now(UTC)
        self.ping(customer, resource, "start", f"scheduled for {scheduled_for.isoformat()}")
        outcome = self._backup(customer, resource, scheduled_for)
        record = RunRecord(
            customer.name,
            resource.name,
            Kind.BACKUP,
            scheduled_for,
            started,
            datetime.now(UTC),
            outcome,
        )
        return record

    def ping(self, customer: Customer, resource: Resource, event: str, body: str) -> None:
        """Send the `event` ping of the job in the background, if it has a ping URL."""
        if url := pings.ping_url(self.settings.PING_URL, customer, resource):
            self.pinger.ping(url, event, body, job_id(customer.name, resource.name))

    def ping_result(self, customers: Customers, record: "RunRecord") -> None:
        """Send the success or fail ping of a recorded run; call it after recording."""
        if record.outcome.result is Result.SKIPPED:
            return
        try:
            customer = customers.get(record.customer)
            resource = customer.resource(record.resource)
        except ConfigError:
            return  # the customer is gone or broken; its file's problem is reported already
        outcome = record.outcome
        event = "success" if outcome.result is Result.SUCCESS else "fail"
        reason = f" ({outcome.reason.value})" if outcome.reason else ""
        self.ping(customer, resource, event, f"{outcome.result.value}{reason}: {outcome.message}")

    def _backup(self, customer: Customer, resource: Resource, scheduled_for: datetime) -> Outcome:
        try:
            if resource.type is SourceType.LOCAL:
                launch = self.local_launch(customer, resource, self.floor(customer, resource))
            else:
                launch = self.remote_launch(customer, resource, self.floor(customer, resource))
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
        return self._judge(customer, resource, scheduled_for, done)

    def local_launch(
        self,
        customer: Customer,
        resource: Resource,
        guard: Floor | None,
        command: list[str] | None = None,
    ) -> Launch | Outcome:
        """Return the worker of a backup (or `command`) of a local directory, or why not.

        PATH is resolved now, at run time: a symlink swapped in since the file was loaded
        must not point the worker at /etc. The resolved path is what is mounted.
        """
        real, why = self.settings.bounds.resolved_problem(resource.path)
        if why:
            return Outcome(Result.FAILURE, Reason.SOURCE_REFUSED, f"PATH {why}")
        try:
            info = os.stat(real)
            is_dir = stat.S_ISDIR(info.st_mode)
        except OSError:
            is_dir = False
        if not is_dir:
            return Outcome(
                Result.FAILURE,
                Reason.SOURCE_MISSING,
                f"PATH {resource.path[:200]} is not a directory on this host",
            )
        identity = f"{info.st_dev}:{info.st_ino}"
        return local_launch(self.cold, customer, resource, real, identity, guard, command)

    def remote_launch(
        self,
        customer: Customer,
        resource: Resource,
        guard: Floor | None,
        command: list[str] | None = None,
    ) -> Launch | Outcome:
        """Return the worker of a backup (or `command`) of a remote source, or why not."""
        password = (
            self.resolver.resolve(
                resource.password, customer.name, env_prefix(resource.name) + "PASSWORD"
            )
            if resource.password
            else None
        )
        return remote_launch(self.cold, customer, resource, password, guard, command)

    def floor(self, customer: Customer, resource: Resource) -> Floor:
        """Return what the source must still hold for a snapshot of it to be written."""
        threshold = int(resource.option("SHRINK_THRESHOLD") or DEFAULT_THRESHOLD)
        allow_empty = (resource.option("ALLOW_EMPTY") or "false").lower() == "true"
        return floor(self.baseline(job_id(customer.name, resource.name)), threshold, allow_empty)

    def _judge(
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
        outcome = rustic.judge_backup(done.exit_code, done.stdout, done.stderr)
        job = job_id(customer.name, resource.name)
        if outcome.result is Result.SUCCESS and outcome.summary is not None:
            verdict = self._below_floor(customer, resource, outcome.summary)
            if not verdict.suspect:
                verdict = self._anomaly(customer, resource, outcome.summary)
            if verdict.suspect:
                return self._suspect(customer, resource, scheduled_for, outcome, verdict.why)
        if outcome.result is Result.SUCCESS and self.holds.held(job):
            return Outcome(
                outcome.result,
                outcome.reason,
                f"{outcome.message}; retention held since a suspect snapshot: nothing "
                "forgotten until `unstoppable release`",
                outcome.summary,
            )
        return outcome

    def _anomaly(self, customer: Customer, resource: Resource, summary: Summary) -> Verdict:
        """Judge a fresh snapshot against the job's history (the change-anomaly rule)."""
        if (resource.option("ANOMALY") or "on").lower() == "off":
            return Verdict(False, "ANOMALY=off")
        changed = int(resource.option("ANOMALY_CHANGED") or anomaly.DEFAULT_CHANGED)
        previous = self.holds.last_files(job_id(customer.name, resource.name))
        return anomaly.judge(summary, previous, changed)

    def _below_floor(self, customer: Customer, resource: Resource, summary: Summary) -> Verdict:
        """Hold rustic's own count to the floor too: EXCLUDE can hide what the guard counted."""
        guard = self.floor(customer, resource)
        if summary.files_total == 0 and not guard.allow_empty:
            return Verdict(True, "rustic backed up no file at all (EXCLUDE?)")
        if summary.files_total < guard.min_files or summary.bytes_processed < guard.min_bytes:
            return Verdict(
                True,
                f"rustic backed up {summary.files_total} file(s) and {summary.bytes_processed} "
                f"byte(s), below the floor of {guard.min_files} and {guard.min_bytes}",
            )
        return Verdict(False, "above the floor")

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
        job = job_id(customer.name, resource.name)
        last_good = self.holds.last_snapshot(job)
        self.holds.hold(job, snapshot, why, datetime.now(UTC))
        # The suspect snapshot leaves the clean ones; the last clean one before it is pinned,
        # so not even a release followed by weeks of forget can take the state before this.
        steps = [(rustic.tag_suspect_args(self.cold, snapshot), f"tagged {rustic.TAG_SUSPECT}")]
        if last_good:
            steps.append(
                (
                    rustic.tag_pinned_args(self.cold, last_good),
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

    def adopt(self, worker: WorkerInfo, customers: Customers) -> RunRecord:
        """Collect a worker a previous daemon left running, and judge it.

        The run keeps its original scheduled time; its secret files are removed afterwards.
        A prune is judged by its exit code; a drill is one step of several, so it is
        recorded as interrupted and runs again on its schedule.
        """
        kind = Kind(worker.label("kind"))
        customer_name, resource_name = worker.label("customer"), worker.label("resource")
        scheduled_for = datetime.fromisoformat(worker.label("scheduled-for").replace("Z", "+00:00"))
        elapsed = (datetime.now(UTC) - worker.started_at).total_seconds()
        try:
            done = self.runtime.collect(worker.name, self.settings.job_timeout_seconds - elapsed)
        except RuntimeUnavailable as exc:
            done = None
            outcome = Outcome(Result.FAILURE, Reason.RUNTIME, str(exc))
        else:
            # Only once the worker is gone: a worker left running keeps its secrets.
            remove_secrets(secrets_dir(self.settings), worker.secrets)
        if done is not None:
            try:
                customer = customers.get(customer_name)
                resource = customer.resource(resource_name)
            except ConfigError:
                customer = None
            if kind in (Kind.FORGET, Kind.PRUNE):
                ok = done.exit_code == 0 and not done.timed_out
                outcome = Outcome(
                    Result.SUCCESS if ok else Result.FAILURE,
                    Reason.NONE if ok else Reason.PRUNE,
                    f"{kind.value} finished" if ok else f"{kind.value} failed: {last_words(done)}",
                )
            elif kind is Kind.VERIFY:
                outcome = Outcome(
                    Result.FAILURE,
                    Reason.INTERRUPTED,
                    "a restore drill step was left by a previous daemon; the drill runs again",
                )
            elif customer is None:
                outcome = rustic.judge_backup(done.exit_code, done.stdout, done.stderr)
            else:
                outcome = self._judge(customer, resource, scheduled_for, done)
        record = RunRecord(
            customer_name,
            resource_name,
            Kind.BACKUP if kind is Kind.FORGET else kind,
            scheduled_for,
            worker.started_at,
            datetime.now(UTC),
            outcome,
        )
        return record

    def snapshots(self, customer: Customer, resource: Resource) -> list[SnapshotInfo]:
        """Return the snapshots of `resource`, oldest first; raise RunFailed if rustic fails."""
        if not (job_storage(self.settings, customer.name, resource.name).hot / "config").exists():
            return []
        done = self.run_worker(
            customer,
            resource,
            Kind.SNAPSHOTS,
            datetime.now(UTC),
            rustic.snapshots_args(self.cold),
            (),
            timeout=600,
        )
        if done.exit_code != 0:
            raise RunFailed(
                f"{customer.name}/{resource.name}: rustic snapshots failed: {last_words(done)}"
            )
        return rustic.parse_snapshots(done.stdout)

    def restore(self, customer: Customer, resource: Resource, target: Path, snapshot: str) -> None:
        """Restore `snapshot` of `resource` so its files land directly in `target`.

        Raises RunFailed if `target` is not empty or rustic fails.
        """
        target = target.absolute()
        if target.exists() and (not target.is_dir() or any(target.iterdir())):
            raise RunFailed(f"--target {target}: must be an empty directory or not exist yet")
        if not self.snapshots(customer, resource):
            raise RunFailed(f"{customer.name}/{resource.name}: no snapshot to restore yet")
        target.mkdir(parents=True, exist_ok=True)
        argv = rustic.restore_args(self.cold, snapshot, source_path(resource), RESTORE_TARGET)
        done = self.run_worker(
            customer,
            resource,
            Kind.RESTORE,
            datetime.now(UTC),
            argv,
            (Mount(target, RESTORE_TARGET, read_only=False),),
            timeout=None,
        )
        if done.exit_code != 0:
            raise RunFailed(f"{customer.name}/{resource.name}: restore failed: {last_words(done)}")

    def check(self, customer: Customer, resource: Resource, read_data: bool) -> int:
        """Run `rustic check`; return how many harmless leftover packs it found.

        Packs that no index references are what an interrupted backup uploaded before it
        stopped: garbage that `forget --prune` removes, not damage. Anything else rustic
        warns about, and every error, raises RunFailed.
        """
        done = self.run_worker(
            customer,
            resource,
            Kind.CHECK,
            datetime.now(UTC),
            rustic.check_args(self.cold, read_data),
            (),
            timeout=None,
        )
        problems, leftovers = rustic.judge_check(done.exit_code, done.stderr)
        if problems:
            raise RunFailed(
                f"{customer.name}/{resource.name}: check failed: {problems[0]}"
                + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else "")
            )
        return leftovers

    def run_worker(
        self,
        customer: Customer,
        resource: Resource,
        kind: Kind,
        scheduled_for: datetime,
        argv: list[str],
        extra: tuple[Mount, ...],
        timeout: float | None,
        launch: "Launch | None" = None,
    ) -> Finished:
        storage = job_storage(self.settings, customer.name, resource.name)
        for directory in (storage.hot, storage.cache, storage.cold):
            if directory is not None:
                directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        password = self.resolver.resolve(customer.repo_password, customer.name, "REPO_PASSWORD")
        name = container_name(customer.name, resource.name, kind, scheduled_for)
        remote = launch is not None and launch.remote
        cap_drop, cap_add = capabilities(kind, remote)
        files = {rustic.PASSWORD_FILE: password, **(launch.files if launch else {})}
        if (profile := cold_profile(self.settings, customer.name, resource.name)) is not None:
            files[COLD_PROFILE] = profile
            if kind is Kind.BACKUP:
                self._ensure_bucket(customer.name)
        with secret_files(secrets_dir(self.settings), name, files) as secrets:
            spec = ContainerSpec(
                name=name,
                image=self.settings.WORKER_IMAGE,
                command=tuple(argv),
                labels=labels(customer.name, resource.name, kind, scheduled_for, self.origin),
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
            )
            return self.runtime.run(spec, timeout)

    def _ensure_bucket(self, customer: str) -> None:
        """Create the customer's bucket once per process; StorageError if that fails."""
        name = bucket(self.settings, customer)
        if name in self.buckets_ready:
            return
        secret, token = self.settings.S3_SECRET_ACCESS_KEY, self.settings.S3_SESSION_TOKEN
        try:
            deadline.call(
                lambda: s3.ensure_bucket(
                    self.settings.S3_ENDPOINT or "",
                    self.settings.S3_REGION,
                    self.settings.S3_ACCESS_KEY_ID or "",
                    secret.get_secret_value() if secret else "",
                    name,
                    session_token=token.get_secret_value() if token else None,
                ),
                BUCKET_DEADLINE_SECONDS,
                f"bucket {name}",
            )
        except deadline.DeadlineExceeded as exc:
            raise s3.StorageError(str(exc)) from None
        self.buckets_ready.add(name)


# What can stop a run before its worker gives an answer, and the outcome each one means.
STOPPED_BEFORE_RUSTIC = (SecretError, JobBusy, RuntimeUnavailable, s3.StorageError)


def stopped(exc: Exception) -> Outcome:
    """Return the outcome of a run that one of STOPPED_BEFORE_RUSTIC stopped."""
    if isinstance(exc, JobBusy):
        return Outcome(
            Result.SKIPPED, Reason.OVERLAP, "another run of this job is in progress; not queued"
        )
    if isinstance(exc, SecretError):
        return Outcome(Result.FAILURE, Reason.SECRETS, str(exc))
    if isinstance(exc, s3.StorageError):
        return Outcome(Result.FAILURE, Reason.STORAGE, str(exc))
    return Outcome(Result.FAILURE, Reason.RUNTIME, str(exc))


def worker_failure(resource: Resource, done: Finished) -> Outcome | None:
    """Return the failure the worker scripts reported before their command ran, if any."""
    reason = _worker_reason(resource, done)
    if reason is None:
        return None
    message = last_words(done)
    if reason is Reason.MOUNT:
        message = f"{apparmor.MOUNT_HINT}: {message}"
    return Outcome(Result.FAILURE, reason, message)


def _worker_reason(resource: Resource, done: Finished) -> Reason | None:
    """Return the reason the worker scripts' own exit codes give, before rustic ran.

    Both: 4 the source shrank below its floor, 7 it was empty (unstoppable-guard). Local:
    3 it could not be listed, 6 it was swapped before the mount. Remote: 3 unreachable
    (rclone's words tell why), 5 the FUSE mount was refused.
    """
    local = resource.type is SourceType.LOCAL
    code = done.exit_code
    if code == 4:
        return Reason.SOURCE_SHRUNK
    if code == 7:
        return Reason.SOURCE_EMPTY
    if code == 3:
        return Reason.SOURCE_UNREADABLE if local else sources.classify(done.stderr)
    if code == 6 and local:
        return Reason.SOURCE_REFUSED
    if code == 5 and not local:
        return Reason.MOUNT
    return None


def last_words(done: Finished) -> str:
    return rustic.error_summary(done.stderr) if done.stderr.strip() else f"exit {done.exit_code}"
