"""The run ledger: every run, skip and missed time, durable in SQLite under DATA_DIR/state.

Besides the history it keeps, in the same transaction as each append, the per-job aggregates
that `status` and `/metrics` read, so neither ever scans the history.
"""

import sqlite3
from dataclasses import dataclass, field
from datetime import UTC, datetime

from orchestrator.model import Kind, Result, RunRecord, split_job
from orchestrator.reporting.job_state import PRUNED, VERIFIED, JobState
from orchestrator.reporting.store import add_totals, iso, parse_iso, set_value

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


class Ledger(JobState):
    """Appends runs and events and folds them into the per-job aggregates."""

    def record_run(self, run: RunRecord) -> None:
        """Append one finished run and fold it into the job's aggregates.

        Prunes and drills are counted apart (`prune_runs`, `verify_runs`): the job's status
        and its backup metrics stay those of its backups.
        """
        if run.kind in (Kind.PRUNE, Kind.VERIFY):
            self._record_maintenance(run)
            return
        s = run.outcome.summary
        result = run.outcome.result
        job = (run.customer, run.resource)
        summary = (
            (s.files_new, s.files_changed, s.data_added, s.bytes_processed, s.files_total)
            if s
            else (None,) * 5
        )
        duration = max(0.0, (run.ended - run.started).total_seconds())
        with self._connect() as db:
            _insert_run(db, run, summary)
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

    def _record_maintenance(self, run: RunRecord) -> None:
        result = run.outcome.result
        with self._connect() as db:
            _insert_run(db, run, (None,) * 5)
            add_totals(
                db, (run.customer, run.resource), [(f"{run.kind.value}_runs", result.value, 1.0)]
            )
            if run.kind is Kind.VERIFY and result is Result.SUCCESS:
                set_value(db, VERIFIED + run.job, iso(run.ended))
            if run.kind is Kind.PRUNE:
                set_value(db, PRUNED + run.job, result.value)

    def record_event(
        self, job: str, event: str, reason: str, scheduled_for: datetime, count: int = 1
    ) -> None:
        """Append a skipped run or `count` missed scheduled times of `job`."""
        customer, resource = split_job(job)
        with self._connect() as db:
            db.execute(
                "INSERT INTO events (customer, resource, event, reason, scheduled_for, count,"
                " recorded) VALUES (?,?,?,?,?,?,?)",
                (
                    customer,
                    resource,
                    event,
                    reason,
                    iso(scheduled_for),
                    count,
                    iso(datetime.now(UTC)),
                ),
            )
            add_totals(db, (customer, resource), [(event, reason, float(count))])

    def runs(self, job: str | None = None) -> list[tuple[str, ...]]:
        """Return (customer, resource, kind, scheduled_for, result, reason) rows, oldest first."""
        query = "SELECT customer, resource, kind, scheduled_for, result, reason FROM runs"
        args: tuple[str, ...] = ()
        if job:
            query += " WHERE customer = ? AND resource = ?"
            args = tuple(split_job(job))
        with self._connect() as db:
            return [tuple(row) for row in db.execute(query + " ORDER BY id", args)]

    def event_count(self, job: str, event: str, reason: str | None = None) -> int:
        customer, resource = split_job(job)
        query = "SELECT COALESCE(SUM(value), 0) FROM totals WHERE customer=? AND resource=?"
        query += " AND name=?"
        args: tuple[str, ...] = (customer, resource, event)
        if reason is not None:
            query += " AND label = ?"
            args += (reason,)
        with self._connect() as db:
            return int(db.execute(query, args).fetchone()[0])

    def status(self) -> list[JobStatus]:
        """Return the aggregates of every job the ledger has seen, by customer and resource."""
        with self._connect() as db:
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


def _insert_run(db: sqlite3.Connection, run: RunRecord, summary: tuple[int | None, ...]) -> None:
    """Append `run` to the history, with the summary columns of a backup (or NULLs)."""
    s = run.outcome.summary
    db.execute(
        "INSERT INTO runs (customer, resource, kind, scheduled_for, started, ended, result,"
        " reason, message, snapshot_id, files_new, files_changed, data_added,"
        " bytes_processed, files_total, data_added_files, data_added_files_packed)"
        " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
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
        ),
    )
