"""The history's rows by id: what a receipt stands for, for whoever must catch up with it.

A process killed between writing a run to the ledger and issuing its receipt leaves a row
no receipt stands for; receipts/reconcile.py issues them late from here.
"""

from dataclasses import dataclass
from datetime import UTC, datetime

from orchestrator.model import JobKey, Kind, Outcome, Reason, Result, RunRecord, Summary
from orchestrator.reporting.store import Database


@dataclass(frozen=True)
class EventRow:
    """A skipped or missed row of the history."""

    event: str
    reason: str
    last: datetime
    count: int
    first: datetime | None


def since(
    db: Database, job: JobKey, marks: dict[str, tuple[int, ...]], before: datetime
) -> list[tuple[str, int, RunRecord | EventRow]]:
    """Return (table, id, row) of each run and event of `job` from the oldest of its marks
    on (a table without marks: none of it) written before `before`, oldest first."""
    found: list[tuple[datetime, str, int, RunRecord | EventRow]] = []
    with db.connect() as connection:
        if marks.get("runs"):
            for row in connection.execute(
                "SELECT id, kind, scheduled_for, started, ended, result, reason, message,"
                " snapshot_id, files_total, bytes_processed, data_added, recorded FROM runs"
                " WHERE customer = ? AND resource = ? AND id > ? ORDER BY id",
                (job.customer, job.resource, marks["runs"][0]),
            ):
                run = _run(job, row)
                written = _at(row[12]) if row[12] else run.ended
                found.append((written, "runs", int(row[0]), run))
        if marks.get("events"):
            for row in connection.execute(
                "SELECT id, event, reason, scheduled_for, count, first, recorded FROM events"
                " WHERE customer = ? AND resource = ? AND id > ? ORDER BY id",
                (job.customer, job.resource, marks["events"][0]),
            ):
                first = _at(row[5]) if row[5] else None
                event = EventRow(str(row[1]), str(row[2]), _at(row[3]), int(row[4]), first)
                found.append((_at(row[6]), "events", int(row[0]), event))
    found = [item for item in found if item[0] < before]
    return [(table, row_id, item) for _when, table, row_id, item in sorted(found, key=_order)]


def _order(item: tuple[datetime, str, int, object]) -> tuple[datetime, str, int]:
    return item[0], item[1], item[2]


def _run(job: JobKey, row: tuple[object, ...]) -> RunRecord:
    _id, kind, scheduled, started, ended, result, reason, message, snapshot = row[:9]
    files, read, added = (int(v) if isinstance(v, int) else 0 for v in row[9:12])
    summary = Summary(str(snapshot), "", 0, 0, added, read, files) if snapshot else None
    # A prune issued late may have forgotten snapshots: the ledger does not say, and the
    # receipt must not make one it took look taken behind the prunes' back.
    forgot = str(kind) == Kind.PRUNE.value
    outcome = Outcome(
        Result(str(result)), Reason(str(reason)), str(message or ""), summary, forgot=forgot
    )
    return RunRecord(job, Kind(str(kind)), _at(scheduled), _at(started), _at(ended), outcome)


def _at(text: object) -> datetime:
    moment = datetime.fromisoformat(str(text))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
