"""What stopped a run before rustic answered, what the worker scripts' exit codes mean, and
whether what a run wrote is locked."""

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from orchestrator.config.customer import Resource
from orchestrator.config.settings import Settings
from orchestrator.config.source import SourceType
from orchestrator.errors import JobBusy, RunStopped, RuntimeUnavailable, SecretError
from orchestrator.model import JobKey, Outcome, Reason, Result
from orchestrator.reporting.seams import LockProgress
from orchestrator.runtime import apparmor
from orchestrator.runtime.exit_codes import ExitCode
from orchestrator.runtime.protocol import Finished
from orchestrator.rustic import output
from orchestrator.rustic.output import MEMORY_WORDS, last_words
from orchestrator.sources import remote as sources
from orchestrator.storage import s3_values
from orchestrator.storage.layout import lock_live

# What can stop a run before its worker gives an answer, and the outcome each one means.
STOPPED_BEFORE_RUSTIC = (SecretError, JobBusy, RuntimeUnavailable, s3_values.StorageError)


@contextmanager
def stopping() -> Iterator[None]:
    """Turn an outside error that stops a run (STOPPED_BEFORE_RUSTIC) into RunStopped.

    Used where those errors enter a run: resolving its secrets and starting its worker.
    """
    try:
        yield
    except STOPPED_BEFORE_RUSTIC as exc:
        raise RunStopped(stopped(exc)) from None


def stopped(exc: Exception) -> Outcome:
    """Return the outcome of a run that one of STOPPED_BEFORE_RUSTIC stopped."""
    if isinstance(exc, JobBusy):  # its words name the worker in the way, for the operator
        return Outcome(
            Result.SKIPPED,
            Reason.OVERLAP,
            f"another run of this job is in progress ({exc}); not queued",
        )
    if isinstance(exc, SecretError):
        return Outcome(Result.FAILURE, Reason.SECRETS, str(exc))
    if isinstance(exc, s3_values.StorageError):
        return Outcome(Result.FAILURE, Reason.STORAGE, str(exc))
    return Outcome(Result.FAILURE, Reason.RUNTIME, str(exc))


def over_memory(done: Finished) -> Outcome | None:
    """Return the failure of a worker the kernel killed past its memory limit, if it was.

    Told in our words alone: what the worker printed last may quote a customer's server.
    A backup whose rustic still exited 0 with its snapshot is judged as that snapshot (a
    suspect one must be tagged and held, not hidden behind `memory`).
    """
    if not done.oom_killed:
        return None
    if done.exit_code == 0 and output.parse_snapshot(done.stdout) is not None:
        return None
    return Outcome(Result.FAILURE, Reason.MEMORY, f"{MEMORY_WORDS} (exit {done.exit_code})")


def worker_failure(resource: Resource, done: Finished) -> Outcome | None:
    """Return the failure the worker scripts reported before their command ran, or the
    memory limit stopped it with, if any.

    An unreachable remote source is told in our words: rclone's quote the server.
    """
    if (killed := over_memory(done)) is not None:
        return killed
    remote = resource.type is not SourceType.LOCAL
    if done.exit_code == ExitCode.UNREADABLE and remote:
        return Outcome(Result.FAILURE, *sources.unreachable(done.stderr))
    if done.exit_code == ExitCode.MOUNT and remote:
        return _mount_failure(done)
    reason = _worker_reason(resource, done)
    if reason is None:
        return None
    return Outcome(Result.FAILURE, reason, last_words(done))


def _mount_failure(done: Finished) -> Outcome:
    """Return why rclone's mount failed, in our words: its lines may quote the server.

    The server may refuse at mount time what it allowed the probe before (a login); that is
    its reason. Otherwise the FUSE mount itself was refused; no line of rclone's is kept,
    since any of them may carry a server's reply.
    """
    # The kernel's and fusermount's complaints ("/dev/fuse: no such file") are the mount's.
    server = "\n".join(line for line in done.stderr.splitlines() if "fuse" not in line.lower())
    if sources.says_why(server):
        return Outcome(Result.FAILURE, *sources.unreachable(server))
    return Outcome(Result.FAILURE, Reason.MOUNT, apparmor.MOUNT_HINT)


def _worker_reason(resource: Resource, done: Finished) -> Reason | None:
    """Return the reason the worker scripts' own exit codes give, before rustic ran.

    Both: 4 the source shrank below its floor, 7 it was empty (unstoppable-guard). Local:
    3 it could not be listed, 6 it was swapped before the mount. Remote: 3 unreachable
    (rclone's words tell why), 5 the FUSE mount was refused.
    """
    local = resource.type is SourceType.LOCAL
    code = done.exit_code
    if code == ExitCode.SHRUNK:
        return Reason.SOURCE_SHRUNK
    if code == ExitCode.EMPTY:
        return Reason.SOURCE_EMPTY
    if code == ExitCode.UNREADABLE:
        return Reason.SOURCE_UNREADABLE if local else sources.classify(done.stderr)
    if code == ExitCode.SWAPPED and local:
        return Reason.SOURCE_REFUSED
    if code == ExitCode.MOUNT and not local:
        return Reason.MOUNT
    return None


def locked_written(
    settings: Settings, locks: LockProgress, job: JobKey, outcome: Outcome
) -> Outcome:
    """Lock what the job wrote since its objects were last known locked, reading each lock
    back; an unlocked write fails the run.

    A store that does not apply the bucket's default retention (versitygw 1.8) would leave
    a new snapshot deletable until the next prune. Whatever the run's outcome, its packs may
    be in the bucket. The pass starts where the last complete one (or prune) began, so what
    a failed pass, a run cut off, a killed daemon or `recover` left is covered by the next.
    A snapshot that could not be locked is not protected, so the run fails (a suspect one
    stays suspect: its hold matters more).
    """
    began = datetime.now(UTC)
    try:
        since = locks.locked_through(job)
        report = lock_live(settings, job.customer, job.resource, since=since)
    except s3_values.StorageError as exc:
        why = f"its new objects could not be locked: {exc}"
    else:
        if report is None or report.unlocked or report.complete:
            if report is not None and report.complete and not report.unlocked:
                locks.lock_reached(job, began)
            return outcome
        why = "locking its new objects stopped at UNSTOPPABLE_JOB_TIMEOUT"
    if outcome.result is Result.SUCCESS:
        return Outcome(Result.FAILURE, Reason.STORAGE, f"{outcome.message}; but {why}")
    return Outcome(outcome.result, outcome.reason, f"{outcome.message}; {why}", outcome.summary)
