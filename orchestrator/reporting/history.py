"""The run history: every run, skip and missed time, durable in the ledger's database.

Besides the history it keeps, in the same transaction as each append, the per-job aggregates
that `status` and `/metrics` read, so neither ever scans the history.
"""

import sqlite3
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import NamedTuple

from orchestrator.model import JobKey, Kind, Result, RunRecord
from orchestrator.reporting.job_memory import PRUNED, VERIFIED, state_key
from orchestrator.reporting.store import Database, add_totals, iso, parse_iso, set_value


class Event(StrEnum):
    """A scheduled time that did not become a run."""

    SKIPPED = "skipped"  # another run of the job was in progress, or it waited too long
    MISSED = "missed"  # the daemon was down or blocked at the time


class RunRow(NamedTuple):
    """One run as the history lists it."""

    customer: str
    resource: str
    kind: str
    scheduled_for: str
    result: str
    reason: str


# Backup durations, in seconds: a minute-long job and a twelve-hour one both land mid-range.
DURATION_BUCKETS = (1, 5, 15, 60, 300, 900, 1800, 3600, 7200, 14400, 43200)


@dataclass(frozen=True)
class JobStatus:
    """What the ledger knows of one job."""

    customer: str
    resource: str
    last_run: datetime | None = None
    result: str | None = None
    reason: str | None = None
    message: str | None = None
    last_success: datetime | None = None
    files_new: int | None = None
    files_changed: int | None = None
    data_added: int | None = None
    bytes_processed: int | None = None
    totals: dict[tuple[str, str], float] = field(default_factory=dict)

    @property
    def job(self) -> JobKey:
        return JobKey(self.customer, self.resource)

    def total(self, name: str, label: str | None = None) -> float:
        """Return the aggregate `name` for `label`, or summed over every label."""
        if label is not None:
            return self.totals.get((name, label), 0.0)
        return sum(v for (n, _), v in self.totals.items() if n == name)

    @property
    def skipped(self) -> int:
        return int(self.total("skipped"))

    @property
    def missed(self) -> int:
        return int(self.total("missed"))


class History:
    """Appends runs and events and folds them into the per-job aggregates."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def record_run(self, run: RunRecord) -> int:
        """Append one finished run and fold it into the job's aggregates.

        Prunes and drills are counted apart (`prune_runs`, `verify_runs`): the job's status
        and its backup metrics stay those of its backups.
        """
        if run.kind in (Kind.PRUNE, Kind.VERIFY):
            return self._record_maintenance(run)
        s = run.outcome.summary
        result = run.outcome.result
        job = (run.job.customer, run.job.resource)
        summary = (
            (s.files_new, s.files_changed, s.data_added, s.bytes_processed, s.files_total)
            if s
            else (None,) * 5
        )
        duration = max(0.0, (run.ended - run.started).total_seconds())
        with self.db.connect() as db:
            row = _insert_run(db, run, summary)
            success = result is Result.SUCCESS
            db.execute(
                "INSERT INTO latest VALUES (?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT DO UPDATE SET"
                " last_run=excluded.last_run, result=excluded.result, reason=excluded.reason,"
                " message=excluded.message,"
                " last_success=COALESCE(excluded.last_success, latest.last_success),"
                " files_new=COALESCE(excluded.files_new, latest.files_new),"
                " files_changed=COALESCE(excluded.files_changed, latest.files_changed),"
                " data_added=COALESCE(excluded.data_added, latest.data_added),"
                " bytes_processed=COALESCE(excluded.bytes_processed, latest.bytes_processed),"
                " files_total=COALESCE(excluded.files_total, latest.files_total)",
                (
                    job[0],
                    job[1],
                    iso(run.ended),
                    result.value,
                    run.outcome.reason.value,
                    run.outcome.message,
                    iso(run.ended) if success else None,
                    *(summary if success else (None,) * 5),
                ),
            )
            adds = [("runs", result.value, 1.0), ("duration_sum", "", duration)]
            if result in (Result.FAILURE, Result.TIMEOUT):
                adds.append(("failures", run.outcome.reason.value, 1.0))
            adds += [("duration_le", str(b), 1.0) for b in DURATION_BUCKETS if duration <= b]
            adds.append(("duration_le", "+Inf", 1.0))
            add_totals(db, job, adds)
        return row

    def _record_maintenance(self, run: RunRecord) -> int:
        result = run.outcome.result
        with self.db.connect() as db:
            row = _insert_run(db, run, (None,) * 5)
            add_totals(
                db,
                (run.job.customer, run.job.resource),
                [(f"{run.kind.value}_runs", result.value, 1.0)],
            )
            if run.kind is Kind.VERIFY and result is Result.SUCCESS:
                set_value(db, state_key(VERIFIED, run.job), iso(run.ended))
            if run.kind is Kind.PRUNE:
                set_value(db, state_key(PRUNED, run.job), result.value)
        return row

    def record_event(
        self,
        job: JobKey,
        event: Event,
        reason: str,
        scheduled_for: datetime,
        count: int = 1,
        first: datetime | None = None,
    ) -> int:
        """Append a skipped run or `count` missed scheduled times of `job` (the last at
        `scheduled_for`; `first` is for receipts, which name the whole range); return its id."""
        customer, resource = job.customer, job.resource
        with self.db.connect() as db:
            cursor = db.execute(
                "INSERT INTO events (customer, resource, event, reason, scheduled_for, count,"
                " recorded, first) VALUES (?,?,?,?,?,?,?,?)",
                (
                    customer,
                    resource,
                    event.value,
                    reason,
                    iso(scheduled_for),
                    count,
                    iso(datetime.now(UTC)),
                    iso(first) if first else None,
                ),
            )
            add_totals(db, (customer, resource), [(event.value, reason, float(count))])
        return int(cursor.lastrowid or 0)

    def runs(self, job: JobKey | None = None) -> list[RunRow]:
        """Return every run (of `job`, or of all), oldest first."""
        query = "SELECT customer, resource, kind, scheduled_for, result, reason FROM runs"
        args: tuple[str, ...] = ()
        if job:
            query += " WHERE customer = ? AND resource = ?"
            args = (job.customer, job.resource)
        with self.db.connect() as db:
            return [RunRow(*row) for row in db.execute(query + " ORDER BY id", args)]

    def event_count(self, job: JobKey, event: Event, reason: str | None = None) -> int:
        """Return how many scheduled times of `job` became `event` (for `reason`)."""
        query = "SELECT COALESCE(SUM(value), 0) FROM totals WHERE customer=? AND resource=?"
        query += " AND name=?"
        args: tuple[str, ...] = (job.customer, job.resource, event.value)
        if reason is not None:
            query += " AND label = ?"
            args += (reason,)
        with self.db.connect() as db:
            return int(db.execute(query, args).fetchone()[0])

    def last_files(self, job: JobKey) -> int | None:
        """Return how many files the job's last clean (successful) backup held, if known."""
        value = self._last_success(job, "files_total")
        return int(value) if value is not None else None

    def last_snapshot(self, job: JobKey) -> str | None:
        """Return the snapshot id of the job's last clean (successful) backup, if known."""
        value = self._last_success(job, "snapshot_id")
        return str(value) if value is not None else None

    def packed_ratios(self, job: JobKey, count: int, min_added: int) -> tuple[float, ...]:
        """Return the packed share of what the job's last `count` clean backups added.

        Newest first; only backups that added at least `min_added` bytes of file data. Runs
        recorded before the ledger kept these sizes have none and are left out.
        """
        with self.db.connect() as db:
            rows = db.execute(
                "SELECT data_added_files, data_added_files_packed FROM runs"
                " WHERE customer = ? AND resource = ? AND kind = ? AND result = ?"
                " AND data_added_files >= ? AND data_added_files_packed IS NOT NULL"
                " ORDER BY id DESC LIMIT ?",
                (
                    job.customer,
                    job.resource,
                    Kind.BACKUP.value,
                    Result.SUCCESS.value,
                    max(min_added, 1),
                    count,
                ),
            ).fetchall()
        return tuple(int(packed) / int(added) for added, packed in rows)

    def _last_success(self, job: JobKey, column: str) -> int | str | None:
        with self.db.connect() as db:
            row = db.execute(
                f"SELECT {column} FROM runs WHERE customer = ? AND resource = ?"
                f" AND kind = ? AND result = ? AND {column} IS NOT NULL"
                " ORDER BY id DESC LIMIT 1",
                (job.customer, job.resource, Kind.BACKUP.value, Result.SUCCESS.value),
            ).fetchone()
        return row[0] if row else None

    def status(self) -> list[JobStatus]:
        """Return the aggregates of every job the ledger has seen, by customer and resource."""
        with self.db.connect() as db:
            latest = {(row[0], row[1]): row for row in db.execute("SELECT * FROM latest")}
            totals: dict[tuple[str, str], dict[tuple[str, str], float]] = {}
            for customer, resource, name, label, value in db.execute("SELECT * FROM totals"):
                totals.setdefault((customer, resource), {})[(name, label)] = value
        out = []
        for job in sorted(latest.keys() | totals.keys()):
            row = latest.get(job)
            if row is None:
                out.append(JobStatus(job[0], job[1], totals=totals.get(job, {})))
                continue
            _, _, last_run, result, reason, message, last_success, new, changed, added, read, _ = (
                row
            )
            out.append(
                JobStatus(
                    job[0],
                    job[1],
                    parse_iso(last_run),
                    result,
                    reason,
                    message,
                    parse_iso(last_success),
                    new,
                    changed,
                    added,
                    read,
                    totals=totals.get(job, {}),
                )
            )
        return out


def _insert_run(db: sqlite3.Connection, run: RunRecord, summary: tuple[int | None, ...]) -> int:
    """Append `run` (with a backup's summary columns, or NULLs); return its id."""
    s = run.outcome.summary
    cursor = db.execute(
        "INSERT INTO runs (customer, resource, kind, scheduled_for, started, ended, result,"
        " reason, message, snapshot_id, files_new, files_changed, data_added,"
        " bytes_processed, files_total, data_added_files, data_added_files_packed, recorded)"
        " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
        (
            run.customer,
            run.resource,
            run.kind.value,
            iso(run.scheduled_for),
            iso(run.started),
            iso(run.ended),
            run.outcome.result.value,
            run.outcome.reason.value,
            run.outcome.message,
            s.snapshot_id if s else None,
            *summary,
            s.data_added_files if s else None,
            s.data_added_files_packed if s else None,
            iso(datetime.now(UTC)),
        ),
    )
    return int(cursor.lastrowid or 0)
