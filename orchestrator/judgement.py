"""What stopped a run before rustic answered, and what the worker scripts' exit codes mean."""

from orchestrator.config.customer import Resource
from orchestrator.config.source import SourceType
from orchestrator.errors import JobBusy, RuntimeUnavailable, SecretError
from orchestrator.model import Outcome, Reason, Result
from orchestrator.runtime import apparmor
from orchestrator.runtime.protocol import Finished
from orchestrator.rustic import output
from orchestrator.sources import remote as sources
from orchestrator.storage import s3

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
    return output.error_summary(done.stderr) if done.stderr.strip() else f"exit {done.exit_code}"
