"""The change-anomaly rule, table-driven, and the history the ledger keeps for it.

The packed shares below are what zstd (rustic's compression, level 3) makes of files of
2-20 kB here: a word soup 0.16, invoice lines 0.28, prose 0.39; hex of random bytes 0.51,
base64 0.75, random bytes themselves a hair over 1.
"""

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from orchestrator.model import JobKey, Kind, Outcome, Reason, Result, RunRecord, Summary
from orchestrator.reporting.ledger import Ledger
from orchestrator.reporting.store import SCHEMA
from orchestrator.sources.anomaly import CEILING, HISTORY, MIN_ADDED_BYTES, judge, usual


def _summary(new: int, changed: int, total: int, added: int, packed: int) -> Summary:
    return Summary("id", "t", new, changed, added, 0, total, added, packed)


def _rewrite(share: float) -> Summary:
    """Every one of 300 files rewritten, their new data packed to `share` of its size."""
    return _summary(0, 300, 300, 3_000_000, int(3_000_000 * share))


def _churn(share: float) -> Summary:
    """An ordinary day: 12 of 300 files edited and 2 added, packed to `share`."""
    return _summary(2, 12, 302, 150_000, int(150_000 * share))


TEXT = (0.30, 0.27, 0.31, 0.29, 0.28)  # a tree of invoices and notes, newest first
SOUP = (0.16, 0.15, 0.17)  # very repetitive text: logs, generated reports
PROSE = (0.39, 0.40, 0.38, 0.39)
MEDIA = (1.003, 1.002, 1.004)  # photos, archives: random bytes plus the packs' overhead
MIXED = (0.70, 0.68, 0.72)  # office documents: zipped XML, PDFs, a few text files


@pytest.mark.parametrize(
    ("summary", "previous", "suspect"),
    [
        # An ordinary day: a few text files edited, compresses.
        (_summary(1, 4, 100, 40_000, 9_000), 99, False),
        # An ordinary day on photos: few files, incompressible, but few.
        (_summary(2, 3, 100, 4_000_000, 3_990_000), 98, False),
        # Every file rewritten with data that does not compress: encryption in place.
        (_summary(0, 100, 100, 800_000, 801_000), 100, True),
        # Every file renamed (new names, same contents: nothing added): ransomware's suffix.
        (_summary(100, 0, 100, 0, 0), 100, True),
        # Encrypted and renamed: new names, incompressible data, the old names gone.
        (_summary(100, 0, 100, 800_000, 801_000), 100, True),
        # Every file rewritten, but the new data compresses: a re-export, not encryption.
        (_summary(0, 90, 100, 800_000, 200_000), 100, False),
        # chmod -R: every file "changed", no data added.
        (_summary(0, 100, 100, 0, 0), 100, False),
        # A bulk upload of new photos: most files new and incompressible, nothing gone.
        (_summary(80, 0, 100, 8_000_000, 8_000_000), 20, False),
        # Every file overwritten with zeros, same sizes: compresses to nothing.
        (_summary(0, 300, 300, 3_272_723, 14_850), 300, True),
        # Every file encrypted and as many empty files added to dilute the share.
        (_summary(1001, 1000, 2001, 800_000, 801_000), 1000, True),
        # The first snapshot is all new by nature.
        (_summary(100, 0, 100, 800_000, 801_000), None, False),
        # Too few files to judge.
        (_summary(0, 3, 3, 800_000, 801_000), 3, False),
    ],
)
def test_the_change_anomaly_rule(summary: Summary, previous: int | None, suspect: bool) -> None:
    verdict = judge(summary, previous, 50)
    assert verdict.suspect is suspect, verdict.why


@pytest.mark.parametrize(
    ("summary", "history", "suspect"),
    [
        # Ciphertext written as text over a text tree: packs far worse than its edits do.
        (_rewrite(0.754), TEXT, True),  # base64
        (_rewrite(0.506), TEXT, True),  # hex
        (_rewrite(0.754), SOUP, True),
        (_rewrite(0.506), SOUP, True),
        (_rewrite(0.506), PROSE, True),  # hex still clears prose's 0.39 by more than 0.1
        # No usual yet (nothing measured, or fewer than three days of it): the absolute rule,
        # which lets base64 and hex through and still catches raw ciphertext.
        (_rewrite(0.754), (), False),
        (_rewrite(0.506), TEXT[:2], False),
        (_rewrite(1.003), (), True),
        # A mass rewrite of the job's own kind of data: a re-export, a search-and-replace.
        (_rewrite(0.31), TEXT, False),
        (_rewrite(0.42), PROSE, False),
        # Just under and just over the job's usual + 0.1 (TEXT's usual is 0.29).
        (_rewrite(0.385), TEXT, False),
        (_rewrite(0.395), TEXT, False),  # over usual + 0.1 but under the floor of 0.4
        (_rewrite(0.41), TEXT, True),
        # A very compressible tree rewritten at three times its usual: under the floor.
        (_rewrite(0.35), SOUP, False),
        # Ordinary days are never judged by compression, whatever the history.
        (_churn(0.75), TEXT, False),
        (_churn(0.506), SOUP, False),
        (_churn(1.003), MEDIA, False),  # an incompressible tree's churn
        (_churn(0.30), TEXT, False),
        # An incompressible tree rewritten wholesale still trips the absolute line: its
        # encryption in place looks no different (README: ANOMALY=off for such a tree).
        (_rewrite(1.003), MEDIA, True),
        # A tree that already packs to 0.7: its usual is held at the ceiling (0.64), so base64
        # still clears it, and a re-export of its own kind of data does not.
        (_rewrite(0.754), MIXED, True),
        (_rewrite(0.72), MIXED, False),
        # A limit, not a wish: hex over such a tree passes.
        (_rewrite(0.506), MIXED, False),
        # One odd day (a PDF uploaded) does not move the usual: a low quantile is kept.
        (_rewrite(0.506), (0.29, 1.0, 0.30, 0.28), True),
        # An attacker who dripped incompressible files into six of the last ten backups
        # (never judged: few files change) has not moved the usual.
        (_rewrite(0.506), (1.0, 0.3) * 3 + (1.0, 1.0, 0.3, 0.3), True),
        (_rewrite(0.754), (1.0, 0.3) * 3 + (1.0, 1.0, 0.3, 0.3), True),
        # Nine days in ten: the usual rises, but never past the ceiling: base64 is caught.
        (_rewrite(0.754), (1.0,) * 9 + (0.3,), True),
        # Only the last HISTORY days count: an older era of media no longer does.
        (_rewrite(0.506), TEXT * 2 + MEDIA * 5, True),
    ],
)
def test_a_mass_rewrite_is_judged_against_the_jobs_own_history(
    summary: Summary, history: tuple[float, ...], suspect: bool
) -> None:
    verdict = judge(summary, 300, 50, history)
    assert verdict.suspect is suspect, verdict.why
    if suspect and history and summary.data_added_files_packed < summary.data_added_files * 0.9:
        assert "usually pack to" in verdict.why and "base64, hex" in verdict.why


def test_the_usual_is_a_low_quantile_of_the_last_days_and_none_without_enough() -> None:
    assert usual(()) is None
    assert usual((0.3, 0.3)) is None
    assert usual((0.2, 0.9, 0.3)) == 0.2
    assert usual((0.9, 0.3, 0.35, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9)) == CEILING
    assert usual((0.9, 0.3, 0.35, 0.31, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9)) == 0.35
    assert usual((0.1,) * HISTORY + (0.9,) * 50) == 0.1


NOW = datetime(2026, 12, 6, 3, tzinfo=UTC)


def _run(
    n: int,
    result: Result,
    summary: Summary | None,
    kind: Kind = Kind.BACKUP,
    customer: str = "acme",
) -> RunRecord:
    at = NOW + timedelta(hours=n)
    outcome = Outcome(result, Reason.NONE, "m", summary)
    return RunRecord(JobKey(customer, "files"), kind, at, at, at, outcome)


def test_the_ledger_keeps_the_packed_history_across_a_reopen(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "state")
    ledger.history.record_run(_run(0, Result.SUCCESS, _summary(300, 0, 300, 3_000_000, 480_000)))
    ledger.history.record_run(_run(1, Result.SUCCESS, _summary(1, 9, 301, 100_000, 30_000)))
    # Left out: too little added to say anything, a suspect run, a failure, a drill,
    # another job.
    ledger.history.record_run(
        _run(2, Result.SUCCESS, _summary(0, 1, 301, MIN_ADDED_BYTES - 1, 100))
    )
    ledger.history.record_run(_run(3, Result.SUSPECT, _rewrite(0.754)))
    ledger.history.record_run(_run(4, Result.FAILURE, None))
    ledger.history.record_run(_run(5, Result.SUCCESS, _summary(0, 0, 0, 9_000, 9_000), Kind.VERIFY))
    ledger.history.record_run(_run(5, Result.SUCCESS, _rewrite(0.9), customer="beta"))
    ledger.history.record_run(_run(6, Result.SUCCESS, _summary(2, 12, 303, 200_000, 50_000)))

    reopened = Ledger(tmp_path / "state")
    assert reopened.history.packed_ratios(JobKey.parse("acme/files"), 10, MIN_ADDED_BYTES) == (
        0.25,
        0.3,
        0.16,
    )
    assert reopened.history.packed_ratios(JobKey.parse("acme/files"), 2, MIN_ADDED_BYTES) == (
        0.25,
        0.3,
    )
    assert reopened.history.packed_ratios(JobKey.parse("gamma/files"), 10, MIN_ADDED_BYTES) == ()


def test_a_ledger_from_before_the_history_is_migrated_and_its_old_runs_left_out(
    tmp_path: Path,
) -> None:
    """A ledger written before the packed sizes were kept gains the columns on open."""
    state = tmp_path / "state"
    state.mkdir()
    with sqlite3.connect(state / "ledger.sqlite3") as db:
        db.executescript(SCHEMA)  # the first release's tables, without any later column
        db.execute(
            "INSERT INTO runs (customer, resource, kind, scheduled_for, started, ended, result,"
            " reason, message, data_added) VALUES ('acme','files','backup','t','t','t',"
            "'success','','old run',50000)"
        )
    ledger = Ledger(state)
    assert ledger.history.packed_ratios(JobKey.parse("acme/files"), 10, MIN_ADDED_BYTES) == ()
    assert ledger.history.last_snapshot(JobKey.parse("acme/files")) is None
    ledger.history.record_run(_run(1, Result.SUCCESS, _summary(1, 9, 301, 100_000, 30_000)))
    assert ledger.history.packed_ratios(JobKey.parse("acme/files"), 10, MIN_ADDED_BYTES) == (0.3,)
    assert len(ledger.history.runs(JobKey.parse("acme/files"))) == 2
