"""What a backup's outcome becomes when what it wrote could not be locked (no Docker needed)."""

from datetime import UTC, datetime

import pytest

from orchestrator import judgement
from orchestrator.config.settings import load_settings
from orchestrator.model import Outcome, Reason, Result
from orchestrator.storage.lock import LockReport
from orchestrator.storage.s3 import StorageError

STARTED = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
SUCCESS = Outcome(Result.SUCCESS, Reason.NONE, "snapshot 1a2b3c4d saved")
SUSPECT = Outcome(Result.SUSPECT, Reason.NONE, "snapshot 1a2b3c4d is suspect: emptied")
FAILED = Outcome(Result.FAILURE, Reason.RUSTIC, "rustic failed")


def refused() -> LockReport:
    raise StorageError("bucket ub-a at 127.0.0.1:9000: the object store said AccessDenied")


@pytest.mark.parametrize(
    ("outcome", "lock", "result", "reason", "said"),
    [
        # locked (or nothing to lock): the outcome stands as it was
        (SUCCESS, lambda: LockReport(3, 3, STARTED, False), Result.SUCCESS, Reason.NONE, ""),
        (SUCCESS, lambda: None, Result.SUCCESS, Reason.NONE, ""),
        # an unlocked bucket is reported by itself (BackupBucketUnlocked), not per run
        (SUCCESS, lambda: LockReport(0, 0, None, True), Result.SUCCESS, Reason.NONE, ""),
        # refused: a snapshot that is not protected fails the run
        (SUCCESS, refused, Result.FAILURE, Reason.STORAGE, "could not be locked: bucket ub-a"),
        # stopped at the deadline: the same
        (
            SUCCESS,
            lambda: LockReport(9, 4, STARTED, False, complete=False),
            Result.FAILURE,
            Reason.STORAGE,
            "stopped at UNSTOPPABLE_JOB_TIMEOUT",
        ),
        # a suspect snapshot stays suspect (its hold matters more), the reason added
        (SUSPECT, refused, Result.SUSPECT, Reason.NONE, "could not be locked"),
        # a failed run keeps its own reason, the lock's added
        (FAILED, refused, Result.FAILURE, Reason.RUSTIC, "could not be locked"),
    ],
)
def test_a_backup_whose_writes_are_not_locked_says_so(
    monkeypatch: pytest.MonkeyPatch,
    outcome: Outcome,
    lock: object,
    result: Result,
    reason: Reason,
    said: str,
) -> None:
    asked: list[datetime | None] = []

    def lock_live(settings: object, customer: str, resource: str, since: datetime) -> object:
        assert (customer, resource) == ("a", "files")
        asked.append(since)
        return lock()  # type: ignore[operator]

    monkeypatch.setattr(judgement, "lock_live", lock_live)
    settings = load_settings(environ={})
    judged = judgement.locked_written(settings, "a", "files", outcome, STARTED)
    assert asked == [STARTED]  # only what this run wrote
    assert (judged.result, judged.reason) == (result, reason)
    assert judged.message.startswith(outcome.message) and said in judged.message
    if not said:
        assert judged == outcome
