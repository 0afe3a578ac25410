"""The run ledger: every run, skip and missed time, durable in SQLite under DATA_DIR/state."""

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from orchestrator.runs import RunRecord
from orchestrator.rustic import Result

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY,
    customer TEXT NOT NULL,
    resource TEXT NOT NULL,
    kind TEXT NOT NULL,
    scheduled_for TEXT NOT NULL,
    started TEXT NOT NULL,
    ended TEXT NOT NULL,
    result TEXT NOT NULL,
    reason TEXT NOT NULL,
    message TEXT NOT NULL,
    snapshot_id TEXT,
    files_new INTEGER,
    files_changed INTEGER,
    data_added INTEGER,
    bytes_processed INTEGER
);
CREATE INDEX IF NOT EXISTS runs_job ON runs (customer, resource, id);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY,
    customer TEXT NOT NULL,
    resource TEXT NOT NULL,
    event TEXT NOT NULL,          -- skipped | missed
    reason TEXT NOT NULL,
    scheduled_for TEXT NOT NULL,
    count INTEGER NOT NULL,
    recorded TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_job ON events (customer, resource, event);
CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


@dataclass(frozen=True)
class JobStatus:
    """What the ledger knows of one job."""

    customer: str
    resource: str
    last_run: datetime | None
    result: str | None
    reason: str | None
    message: str | None
    last_success: datetime | None
    skipped: int
    missed: int


class Ledger:
    """Appends runs and events; a connection per call keeps threads and processes apart."""

    def __init__(self, state_dir: Path) -> None:
        state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.path = state_dir / "ledger.sqlite3"
        with self._connect() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(SCHEMA)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=30)
        try:
            with db:
                yield db
        finally:
            db.close()

    def record_run(self, run: RunRecord) -> None:
        """Append one finished run."""
        s = run.outcome.summary
        with self._connect() as db:
            db.execute(
                "INSERT INTO runs (customer, resource, kind, scheduled_for, started, ended, result,"
                " reason, message, snapshot_id, files_new, files_changed, data_added,"
                " bytes_processed) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    run.customer,
                    run.resource,
                    run.kind.value,
                    _iso(run.scheduled_for),
                    _iso(run.started),
                    _iso(run.ended),
                    run.outcome.result.value,
                    run.outcome.reason.value,
                    run.outcome.message,
                    s.snapshot_id if s else None,
                    s.files_new if s else None,
                    s.files_changed if s else None,
                    s.data_added if s else None,
                    s.bytes_processed if s else None,
                ),
            )

    def record_event(
        self, job: str, event: str, reason: str, scheduled_for: datetime, count: int = 1
    ) -> None:
        """Append a skipped run or `count` missed scheduled times of `job`."""
        customer, resource = job.split("/", 1)
        with self._connect() as db:
            db.execute(
                "INSERT INTO events (customer, resource, event, reason, scheduled_for, count,"
                " recorded) VALUES (?,?,?,?,?,?,?)",
                (
                    customer,
                    resource,
                    event,
                    reason,
                    _iso(scheduled_for),
                    count,
                    _iso(datetime.now(UTC)),
                ),
            )

    def set_state(self, key: str, value: str) -> None:
        with self._connect() as db:
            db.execute(
                "INSERT INTO state (key, value) VALUES (?, ?) ON CONFLICT(key) DO "
                "UPDATE SET value = excluded.value",
                (key, value),
            )

    def get_state(self, key: str) -> str | None:
        with self._connect() as db:
            row = db.execute("SELECT value FROM state WHERE key = ?", (key,)).fetchone()
        return str(row[0]) if row else None

    def runs(self, job: str | None = None) -> list[tuple[str, ...]]:
        """Return (customer, resource, kind, scheduled_for, result, reason) rows, oldest first."""
        query = "SELECT customer, resource, kind, scheduled_for, result, reason FROM runs"
        args: tuple[str, ...] = ()
        if job:
            query += " WHERE customer = ? AND resource = ?"
            args = tuple(job.split("/", 1))
        with self._connect() as db:
            return [tuple(row) for row in db.execute(query + " ORDER BY id", args)]

    def event_count(self, job: str, event: str, reason: str | None = None) -> int:
        customer, resource = job.split("/", 1)
        query = (
            "SELECT COALESCE(SUM(count), 0) FROM events WHERE customer=? AND resource=? AND event=?"
        )
        args: tuple[str, ...] = (customer, resource, event)
        if reason is not None:
            query += " AND reason = ?"
            args += (reason,)
        with self._connect() as db:
            return int(db.execute(query, args).fetchone()[0])

    def status(self) -> list[JobStatus]:
        """Return the latest backup run, last success and counts of every job in the ledger."""
        with self._connect() as db:
            rows = db.execute(
                """
                SELECT j.customer, j.resource,
                  (SELECT ended FROM runs r WHERE r.customer=j.customer AND r.resource=j.resource
                     AND kind='backup' ORDER BY id DESC LIMIT 1),
                  (SELECT result || char(31) || reason || char(31) || message FROM runs r
                     WHERE r.customer=j.customer AND r.resource=j.resource AND kind='backup'
                     ORDER BY id DESC LIMIT 1),
                  (SELECT ended FROM runs r WHERE r.customer=j.customer AND r.resource=j.resource
                     AND kind='backup' AND result=? ORDER BY id DESC LIMIT 1),
                  (SELECT COALESCE(SUM(count),0) FROM events e WHERE e.customer=j.customer
                     AND e.resource=j.resource AND event='skipped'),
                  (SELECT COALESCE(SUM(count),0) FROM events e WHERE e.customer=j.customer
                     AND e.resource=j.resource AND event='missed')
                FROM (SELECT customer, resource FROM runs UNION SELECT customer, resource
                      FROM events) j ORDER BY j.customer, j.resource
                """,
                (Result.SUCCESS.value,),
            ).fetchall()
        out = []
        for customer, resource, last_run, latest, last_success, skipped, missed in rows:
            result = reason = message = None
            if latest:
                result, reason, message = latest.split("\x1f", 2)
            out.append(
                JobStatus(
                    customer,
                    resource,
                    _dt(last_run),
                    result,
                    reason,
                    message,
                    _dt(last_success),
                    int(skipped),
                    int(missed),
                )
            )
        return out


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat()


def _dt(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None
