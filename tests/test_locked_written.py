"""What a backup's outcome becomes when what it wrote could not be locked (no Docker needed)."""

from datetime import UTC, datetime
from pathlib import Path

import pytest

from orchestrator import judgement
from orchestrator.config.settings_file import load_settings
from orchestrator.model import JobKey, Outcome, Reason, Result
from orchestrator.reporting.ledger import Ledger
from orchestrator.storage.lock import LockReport
from orchestrator.storage.s3_values import StorageError

JOB = JobKey("a", "files")
STARTED = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
SUCCESS = Outcome(Result.SUCCESS, Reason.NONE, "snapshot 1a2b3c4d saved")
SUSPECT = Outcome(Result.SUSPECT, Reason.NONE, "snapshot 1a2b3c4d is suspect: emptied")
FAILED = Outcome(Result.FAILURE, Reason.RUSTIC, "rustic failed")


def refused() -> LockReport:
    raise StorageError("bucket ub-a at 127.0.0.1:9000: the object store said AccessDenied")


@pytest.mark.parametrize(
    ("outcome", "lock", "result", "reason", "said", "advances"),
    [
        # locked (or nothing to lock): the outcome stands as it was
        (SUCCESS, lambda: LockReport(3, 3, STARTED, False), Result.SUCCESS, Reason.NONE, "", True),
        (SUCCESS, lambda: None, Result.SUCCESS, Reason.NONE, "", False),
        # an unlocked bucket is reported by itself (BackupBucketUnlocked), not per run
        (SUCCESS, lambda: LockReport(0, 0, None, True), Result.SUCCESS, Reason.NONE, "", False),
        # refused: a snapshot that is not protected fails the run
        (SUCCESS, refused, Result.FAILURE, Reason.STORAGE, "locked: bucket ub-a", False),
        # stopped at the deadline: the same
        (
            SUCCESS,
            lambda: LockReport(9, 4, STARTED, False, complete=False),
            Result.FAILURE,
            Reason.STORAGE,
            "stopped at UNSTOPPABLE_JOB_TIMEOUT",
            False,
        ),
        # a suspect snapshot stays suspect (its hold matters more), the reason added
        (SUSPECT, refused, Result.SUSPECT, Reason.NONE, "could not be locked", False),
        # a failed run keeps its own reason, the lock's added
        (FAILED, refused, Result.FAILURE, Reason.RUSTIC, "could not be locked", False),
    ],
)
def test_a_backup_whose_writes_are_not_locked_says_so(
    monkeypatch: pytest.MonkeyPatch,
    outcome: Outcome,
    lock: object,
    result: Result,
    reason: Reason,
    said: str,
    advances: bool,
    tmp_path: Path,
) -> None:
    asked: list[datetime | None] = []

    def lock_live(settings: object, customer: str, resource: str, since: datetime | None) -> object:
        assert (customer, resource) == ("a", "files")
        asked.append(since)
        return lock()  # type: ignore[operator]

    monkeypatch.setattr(judgement, "lock_live", lock_live)
    settings = load_settings(environ={})
    holds = Ledger(tmp_path / "state").locks
    holds.lock_reached(JOB, STARTED)  # the last complete pass began then
    before = datetime.now(UTC)
    judged = judgement.locked_written(settings, holds, JOB, outcome)
    assert asked == [STARTED]  # from where the last complete pass began
    assert (judged.result, judged.reason) == (result, reason)
    assert judged.message.startswith(outcome.message) and said in judged.message
    if not said:
        assert judged == outcome
    # Only a complete pass over a locked bucket moves the mark; else the next one redoes it.
    mark = holds.locked_through(JOB)
    assert mark is not None
    assert mark >= before if advances else mark == STARTED


def test_the_first_pass_of_a_job_covers_everything_then_only_what_came_after(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    asked: list[datetime | None] = []

    def lock_live(settings: object, customer: str, resource: str, since: datetime | None) -> object:
        asked.append(since)
        return LockReport(1, 1, STARTED, False)

    monkeypatch.setattr(judgement, "lock_live", lock_live)
    settings, holds = load_settings(environ={}), Ledger(tmp_path / "state").locks
    judgement.locked_written(settings, holds, JOB, SUCCESS)
    judgement.locked_written(settings, holds, JOB, SUCCESS)
    assert asked[0] is None and asked[1] is not None and asked[1] <= datetime.now(UTC)
