"""The pure parts of maintenance: listings, samples, slices, config keys, the ledger's memory."""

import random
from datetime import UTC, datetime
from pathlib import Path

import pytest

from orchestrator.config.customer_file import load_customer
from orchestrator.drill import choose
from orchestrator.errors import ConfigError
from orchestrator.model import JobKey, Kind, Outcome, Reason, Result, RunRecord
from orchestrator.recovery import RECOVERING
from orchestrator.reporting.job_memory import state_key
from orchestrator.reporting.ledger import Ledger
from orchestrator.rustic.commands import check_subset_args
from orchestrator.rustic.listing import Entry, parse_ls

# What `rustic ls --long --recursive` printed here for a tree of awkward names.
LISTING = """\
drwxr-xr-x     root     root         0 29 Nov 2026 19:17 "sub"
-rw-r--r--     root     root         1 29 Nov 2026 19:17 "sub/nl\\nname\\"q\\\\b"
-rw-r--r--     root     root         6 29 Nov 2026 19:16 "sub/we ird*[x].txt"
-rw-r--r--     12345    12345     4096 29 Nov 2026 19:16 "ctl\\u{7f}\\t.txt"
-rw-r--r--     root     root         3 29 Nov 2026 19:16 "bad\\xff.bin"
prw-r--r--     root     root         0 29 Nov 2026 19:17 "fifo"
lrwxrwxrwx     root     root         2 29 Nov 2026 19:17 "link" -> f1
-rw-r--r--     root     root        12 29 Nov 2026 19:16 "with \\"quotes\\" -> arrow"
"""


def test_ls_listing_yields_regular_files_with_their_real_names() -> None:
    assert parse_ls(LISTING) == [
        Entry('sub/nl\nname"q\\b', 1),
        Entry("sub/we ird*[x].txt", 6),
        Entry("ctl\x7f\t.txt", 4096),
        Entry('with "quotes" -> arrow', 12),
    ]


def test_ls_listing_ignores_noise() -> None:
    assert parse_ls("") == []
    assert parse_ls('[INFO] something\n-rw garbage\n-rw-r--r-- a b notanumber x y "f"\n') == []


def test_a_sample_is_random_bounded_in_count_and_bytes() -> None:
    entries = [Entry(f"f{i}", 100) for i in range(50)] + [Entry("huge", 10**12)]
    one = choose(entries, 10, 10_000, random.Random(1))
    two = choose(entries, 10, 10_000, random.Random(2))
    assert len(one) == 10 and len(set(one)) == 10 and "huge" not in one
    assert one != two
    assert len(choose(entries, 1000, 450, random.Random(3))) == 4
    assert choose([], 10, 10, random.Random(4)) == []


def test_check_reads_one_slice_or_everything() -> None:
    cold = ["--repository", "/repo/cold"]
    assert check_subset_args(cold, 2, 4)[-4:] == [
        "check",
        "--read-data",
        "--read-data-subset",
        "2/4",
    ]
    assert check_subset_args(cold, 1, 1)[-2:] == ["check", "--read-data"]


def customer_file(tmp_path: Path, extra: str) -> Path:
    path = tmp_path / "acme.env"
    path.write_text(
        'SCHEDULE="0 3 * * *"\nREPO_PASSWORD=pw\nRESOURCES=files\n'
        f"FILES_TYPE=local\nFILES_PATH={tmp_path}\n{extra}"
    )
    return path


@pytest.mark.parametrize(
    ("extra", "key"),
    [
        ('FILES_PRUNE_SCHEDULE="61 * * * *"\n', "FILES_PRUNE_SCHEDULE"),
        ('FILES_VERIFY_SCHEDULE="0 0 30 2 *"\n', "FILES_VERIFY_SCHEDULE"),
        ("FILES_VERIFY_SLICES=0\n", "FILES_VERIFY_SLICES"),
        ("FILES_VERIFY_SLICES=1001\n", "FILES_VERIFY_SLICES"),
        ("FILES_VERIFY_SAMPLE=-1\n", "FILES_VERIFY_SAMPLE"),
        ("FILES_VERIFY_SAMPLE=２\n", "FILES_VERIFY_SAMPLE"),
    ],
)
def test_bad_maintenance_keys_are_named(tmp_path: Path, extra: str, key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_customer(customer_file(tmp_path, extra))
    assert f": {key}: " in str(caught.value)


def test_maintenance_defaults_and_overrides(tmp_path: Path) -> None:
    plain = load_customer(customer_file(tmp_path, "")).resources[0]
    assert plain.source.PRUNE_SCHEDULE == "H H * * H"
    assert plain.source.VERIFY_SLICES == 4
    custom = load_customer(
        customer_file(tmp_path, 'FILES_VERIFY_SCHEDULE="0 4 * * 0"\nFILES_VERIFY_SAMPLE=0\n')
    ).resources[0]
    assert custom.source.VERIFY_SCHEDULE == "0 4 * * 0"
    assert custom.source.VERIFY_SAMPLE == 0


def record(kind: Kind, result: Result, ended: datetime) -> RunRecord:
    return RunRecord(
        JobKey("acme", "files"), kind, ended, ended, ended, Outcome(result, Reason.NONE, "m")
    )


def test_the_ledger_rotates_slices_and_remembers_damage(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "state")
    assert [ledger.memory.next_slice(JobKey.parse("acme/files"), 3) for _ in range(7)] == [
        1,
        2,
        3,
        1,
        2,
        3,
        1,
    ]
    assert ledger.memory.next_slice(JobKey.parse("beta/db"), 3) == 1  # per job
    ledger.memory.mark_corrupt(
        JobKey.parse("acme/files"), "pack 4f97 MAC check failed", datetime.now(UTC)
    )
    assert ledger.memory.maintenance_state()[0] == {JobKey("acme", "files")}
    ledger.memory.clear_corrupt(JobKey.parse("acme/files"))
    assert ledger.memory.maintenance_state()[0] == set()


def test_drills_and_prunes_leave_the_backup_status_alone(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "state")
    backup_end = datetime(2026, 11, 29, 3, tzinfo=UTC)
    ledger.history.record_run(record(Kind.BACKUP, Result.SUCCESS, backup_end))
    drill_end = datetime(2026, 11, 29, 4, tzinfo=UTC)
    ledger.history.record_run(record(Kind.VERIFY, Result.SUCCESS, drill_end))
    ledger.history.record_run(record(Kind.VERIFY, Result.CORRUPT, drill_end))
    ledger.history.record_run(record(Kind.PRUNE, Result.FAILURE, drill_end))
    (status,) = ledger.history.status()
    assert status.result == "success" and status.last_run == backup_end
    assert status.total("runs") == 1
    assert status.total("verify_runs", "success") == 1
    assert status.total("verify_runs", "corrupt") == 1
    assert status.total("prune_runs", "failure") == 1
    assert ledger.memory.maintenance_state()[1] == {JobKey("acme", "files"): drill_end}


def test_only_rustic_words_make_a_failed_restore_damage() -> None:
    from orchestrator.drill import damage_or_failure
    from orchestrator.runtime.protocol import Finished

    disk_full = Finished(
        8,
        "",
        "[DRILL] cannot restore site-packages/cryptography/MAC\\ check\\ failed.py from "
        "snapshot 4f970d1c:\n[ERROR] No space left on device (os error 28)\n",
    )
    outcome = damage_or_failure("restore drill", disk_full)
    assert outcome.result is Result.FAILURE, outcome
    assert "No space left" in outcome.message and "cryptography" in outcome.message
    damaged = Finished(
        8,
        "",
        "[DRILL] cannot restore a.txt from snapshot 4f970d1c:\n"
        "[ERROR] error restoring: `rustic_core` experienced an error related to "
        "`cryptographic operations`.\n\nMessage:\nData decryption failed, MAC check failed.\n",
    )
    assert damage_or_failure("restore drill", damaged).result is Result.CORRUPT
    killed = Finished(137, "", "[ERROR] error checking pack 4f970d1c : MAC check failed\n")
    assert damage_or_failure("check", killed).result is Result.FAILURE


def test_the_last_prune_result_is_kept_per_job(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "state")
    now = datetime(2026, 11, 29, 4, tzinfo=UTC)
    ledger.history.record_run(record(Kind.PRUNE, Result.FAILURE, now))
    assert ledger.memory.prune_results() == {JobKey("acme", "files"): "failure"}
    ledger.history.record_run(record(Kind.PRUNE, Result.SUCCESS, now))
    assert ledger.memory.prune_results() == {JobKey("acme", "files"): "success"}


def test_the_ledger_keys_on_disk_keep_their_spelling(tmp_path: Path) -> None:
    """A ledger written before JobKey must read the same: its state keys are a file format."""
    ledger = Ledger(tmp_path / "state")
    job = JobKey("acme", "files")
    at = datetime(2026, 11, 29, 4, tzinfo=UTC)
    ledger.memory.hold(job, "1a2b3c4d", "emptied", at)
    ledger.memory.mark_corrupt(job, "pack missing", at)
    ledger.memory.next_slice(job, 4)
    ledger.history.record_run(record(Kind.VERIFY, Result.SUCCESS, at))
    ledger.history.record_run(record(Kind.PRUNE, Result.SUCCESS, at))
    ledger.locks.record_lock(job, at, unlocked=True)
    ledger.locks.lock_reached(job, at)
    with ledger.db.connect() as db:
        keys = {key for (key,) in db.execute("SELECT key FROM state")}
    assert keys == {
        "hold:acme/files",
        "corrupt:acme/files",
        "slice:acme/files",
        "verified:acme/files",
        "pruned:acme/files",
        "locked:acme/files",
        "unlocked:acme",
        "locked-through:acme/files",
        "ledger_id",  # the file's own identity: receipts' marks name it
    }
    # And a ledger that holds them (as 0.2.0 wrote it) reads back as the same jobs.
    assert ledger.memory.held_jobs() == {job}
    assert ledger.memory.maintenance_state()[0] == {job}
    assert ledger.locks.lock_state() == ({job: at}, {"acme"})
    assert state_key(RECOVERING, job) == "recovering:acme/files"  # `unstoppable recover`


def test_a_drill_worker_killed_by_a_signal_is_interrupted_not_rustics_failure(
    tmp_path: Path,
) -> None:
    from orchestrator.maintenance import _drill_failure
    from orchestrator.runtime.protocol import Finished

    file = tmp_path / "acme.env"
    file.write_text(
        f"SCHEDULE=0 3 * * *\nREPO_PASSWORD=p\nRESOURCES=www\nWWW_TYPE=local\nWWW_PATH={tmp_path}\n"
    )
    resource = load_customer(file).resource("www")
    killed = _drill_failure(resource, Finished(137, "", ""))
    assert (killed.result, killed.reason) == (Result.FAILURE, Reason.INTERRUPTED)
    plain = _drill_failure(resource, Finished(1, "", "[ERROR] something\n"))
    assert plain.reason is Reason.RUSTIC
