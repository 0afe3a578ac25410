"""The run ledger: every run, skip and missed time, durable in SQLite under DATA_DIR/state.

Besides the history it keeps, in the same transaction as each append, the per-job aggregates
that `status` and `/metrics` read, so neither ever scans the history.
"""

import json
import logging
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from orchestrator.model import Kind, Result, RunRecord, split_job
from orchestrator.sources.guard import WINDOW, Baseline

log = logging.getLogger(__name__)


HOLD = "hold:"  # state key prefix: a job's retention hold after a suspect snapshot


CORRUPT = "corrupt:"  # damage a restore drill found, until a full drill reads clean


SLICE = "slice:"  # the slice of the packs the job's next drill reads


VERIFIED = "verified:"  # when the job's last restore drill succeeded


PRUNED = "pruned:"  # the result of the job's last prune


_RECOVERY = threading.Lock()


# Backup durations, in seconds: a minute-long job and a twelve-hour one both land mid-range.
DURATION_BUCKETS = (1, 5, 15, 60, 300, 900, 1800, 3600, 7200, 14400, 43200)


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
CREATE TABLE IF NOT EXISTS latest (
    customer TEXT NOT NULL,
    resource TEXT NOT NULL,
    last_run TEXT,
    result TEXT,
    reason TEXT,
    message TEXT,
    last_success TEXT,
    files_new INTEGER,
    files_changed INTEGER,
    data_added INTEGER,
    bytes_processed INTEGER,
    files_total INTEGER,
    PRIMARY KEY (customer, resource)
);
CREATE TABLE IF NOT EXISTS totals (
    customer TEXT NOT NULL,
    resource TEXT NOT NULL,
    name TEXT NOT NULL,           -- runs | failures | skipped | missed | duration_le | duration_sum
    label TEXT NOT NULL,
    value REAL NOT NULL,
    PRIMARY KEY (customer, resource, name, label)
);
CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS accepts (
    id INTEGER PRIMARY KEY,
    customer TEXT NOT NULL,
    resource TEXT NOT NULL,
    at TEXT NOT NULL,
    who TEXT NOT NULL
);
"""


# Columns added after the first release: (table, column, type), added when missing.
MIGRATIONS = (("runs", "files_total", "INTEGER"),)


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


class Ledger:
    """Appends runs and events; a connection per call keeps threads and processes apart."""

    def __init__(self, state_dir: Path) -> None:
        state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.path = state_dir / "ledger.sqlite3"
        try:
            self._create()
        except sqlite3.DatabaseError as exc:
            if not self.recover_if_corrupt(exc):
                raise
            self._create()

    def _healthy(self) -> bool:
        try:
            with self._connect() as db:
                db.execute("SELECT count(*) FROM state").fetchone()
            return True
        except sqlite3.DatabaseError:
            return False

    def _create(self) -> None:
        with self._connect() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(SCHEMA)
            for table, column, kind in MIGRATIONS:
                columns = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
                if column not in columns:
                    try:
                        db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
                    except sqlite3.OperationalError as exc:  # another process added it first
                        if "duplicate column" not in str(exc):
                            raise

    def recover_if_corrupt(self, exc: BaseException) -> bool:
        """Move a corrupt ledger aside and start a new one; return whether it was corrupt.

        The damaged file is kept beside it (`ledger.sqlite3.corrupt-<time>`) for forensics.
        Only damage is handled here: a full disk or a lock is an error of the moment.
        """
        if not isinstance(exc, sqlite3.DatabaseError) or isinstance(exc, sqlite3.OperationalError):
            return False
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        with _RECOVERY:
            if self._healthy():
                return True  # another thread has recovered it already
            for suffix in ("", "-wal", "-shm"):
                part = self.path.with_name(self.path.name + suffix)
                if part.exists():
                    part.rename(part.with_name(f"{part.name}.corrupt-{stamp}"))
            log.error(
                "the ledger %s was corrupt (%s): moved aside as *.corrupt-%s; a new one starts",
                self.path,
                exc,
                stamp,
            )
            self._create()
        return True

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=30)
        try:
            with db:
                yield db
        finally:
            db.close()

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
            db.execute(
                "INSERT INTO runs (customer, resource, kind, scheduled_for, started, ended, result,"
                " reason, message, snapshot_id, files_new, files_changed, data_added,"
                " bytes_processed, files_total) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    job[0],
                    job[1],
                    run.kind.value,
                    _iso(run.scheduled_for),
                    _iso(run.started),
                    _iso(run.ended),
                    result.value,
                    run.outcome.reason.value,
                    run.outcome.message,
                    s.snapshot_id if s else None,
                    *summary,
                ),
            )
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
                    _iso(run.ended),
                    result.value,
                    run.outcome.reason.value,
                    run.outcome.message,
                    _iso(run.ended) if success else None,
                    *(summary if success else (None,) * 5),
                ),
            )
            adds = [("runs", result.value, 1.0), ("duration_sum", "", duration)]
            if result in (Result.FAILURE, Result.TIMEOUT):
                adds.append(("failures", run.outcome.reason.value, 1.0))
            adds += [("duration_le", str(b), 1.0) for b in DURATION_BUCKETS if duration <= b]
            adds.append(("duration_le", "+Inf", 1.0))
            _add(db, job, adds)

    def _record_maintenance(self, run: RunRecord) -> None:
        result = run.outcome.result
        with self._connect() as db:
            db.execute(
                "INSERT INTO runs (customer, resource, kind, scheduled_for, started, ended, result,"
                " reason, message) VALUES (?,?,?,?,?,?,?,?,?)",
                (
                    run.customer,
                    run.resource,
                    run.kind.value,
                    _iso(run.scheduled_for),
                    _iso(run.started),
                    _iso(run.ended),
                    result.value,
                    run.outcome.reason.value,
                    run.outcome.message,
                ),
            )
            _add(db, (run.customer, run.resource), [(f"{run.kind.value}_runs", result.value, 1.0)])
            if run.kind is Kind.VERIFY and result is Result.SUCCESS:
                _set(db, VERIFIED + run.job, _iso(run.ended))
            if run.kind is Kind.PRUNE:
                _set(db, PRUNED + run.job, result.value)

    def prune_results(self) -> dict[str, str]:
        """Return the result of each job's last prune."""
        with self._connect() as db:
            rows = db.execute("SELECT key, value FROM state WHERE key LIKE ?", (PRUNED + "%",))
            return {str(key).removeprefix(PRUNED): str(value) for key, value in rows}

    def next_slice(self, job: str, parts: int) -> int:
        """Return the slice (1..parts) the job's drill reads now, and move on to the next."""
        with self._connect() as db:
            row = db.execute("SELECT value FROM state WHERE key = ?", (SLICE + job,)).fetchone()
            done = int(row[0]) if row and str(row[0]).isdigit() else 0
            _set(db, SLICE + job, str(done + 1))
        return done % parts + 1

    def mark_corrupt(self, job: str, why: str, now: datetime) -> None:
        """Remember that a drill found damage in the job's repository."""
        self.set_state(CORRUPT + job, json.dumps({"why": why, "at": _iso(now)}))

    def corrupt(self, job: str) -> bool:
        """Return whether a drill found damage that no full drill has cleared since."""
        return self.get_state(CORRUPT + job) is not None

    def clear_corrupt(self, job: str) -> None:
        """Forget the damage: a drill that read every pack found none."""
        with self._connect() as db:
            db.execute("DELETE FROM state WHERE key = ?", (CORRUPT + job,))

    def maintenance_state(self) -> tuple[set[str], dict[str, datetime]]:
        """Return the jobs with damage found, and when each job's last drill succeeded."""
        corrupt: set[str] = set()
        verified: dict[str, datetime] = {}
        with self._connect() as db:
            for key, value in db.execute(
                "SELECT key, value FROM state WHERE key LIKE ? OR key LIKE ?",
                (CORRUPT + "%", VERIFIED + "%"),
            ):
                if key.startswith(CORRUPT):
                    corrupt.add(key.removeprefix(CORRUPT))
                else:
                    verified[key.removeprefix(VERIFIED)] = datetime.fromisoformat(value)
        return corrupt, verified

    def baseline(self, job: str, now: datetime) -> Baseline | None:
        """Return the most files and bytes a successful backup of `job` saw in the window.

        Only runs after the operator's last `accept` count. With none in the window (a
        monthly schedule, two weeks of failures), the last successful run is the baseline:
        an old baseline is still a floor. None only when there was never one.
        """
        customer, resource = split_job(job)
        since = _iso(now - WINDOW)
        with self._connect() as db:
            accepted = db.execute(
                "SELECT MAX(at) FROM accepts WHERE customer = ? AND resource = ?",
                (customer, resource),
            ).fetchone()[0]
            row = db.execute(
                "SELECT MAX(files_total), MAX(bytes_processed), COUNT(*) FROM runs"
                " WHERE customer = ? AND resource = ? AND kind = 'backup' AND result = 'success'"
                " AND ended >= ? AND ended > ?",
                (customer, resource, since, accepted or ""),
            ).fetchone()
            if not row or not row[2]:
                row = db.execute(
                    "SELECT files_total, bytes_processed, 1 FROM runs"
                    " WHERE customer = ? AND resource = ? AND kind = 'backup'"
                    " AND result = 'success' AND ended > ? ORDER BY id DESC LIMIT 1",
                    (customer, resource, accepted or ""),
                ).fetchone()
        if not row or not row[2]:
            return None
        return Baseline(int(row[0] or 0), int(row[1] or 0))

    def hold(self, job: str, snapshot: str, why: str, now: datetime) -> None:
        """Hold the job's retention after the suspect `snapshot`: nothing is forgotten."""
        value = json.dumps({"snapshot": snapshot, "why": why, "at": _iso(now)})
        self.set_state(HOLD + job, value)

    def held(self, job: str) -> bool:
        """Return whether the job's retention is held."""
        return self.get_state(HOLD + job) is not None

    def release(self, job: str) -> str | None:
        """Lift the job's hold; return what held it (JSON), or None if nothing did."""
        with self._connect() as db:
            row = db.execute("SELECT value FROM state WHERE key = ?", (HOLD + job,)).fetchone()
            db.execute("DELETE FROM state WHERE key = ?", (HOLD + job,))
        return str(row[0]) if row else None

    def held_jobs(self) -> set[str]:
        """Return the jobs whose retention is held."""
        with self._connect() as db:
            rows = db.execute("SELECT key FROM state WHERE key LIKE ?", (HOLD + "%",))
            return {str(key).removeprefix(HOLD) for (key,) in rows}

    def last_files(self, job: str) -> int | None:
        """Return how many files the job's last clean (successful) backup held, if known."""
        value = self._last_success(job, "files_total")
        return int(value) if value is not None else None

    def last_snapshot(self, job: str) -> str | None:
        """Return the snapshot id of the job's last clean (successful) backup, if known."""
        value = self._last_success(job, "snapshot_id")
        return str(value) if value is not None else None

    def _last_success(self, job: str, column: str) -> int | str | None:
        customer, resource = split_job(job)
        with self._connect() as db:
            row = db.execute(
                f"SELECT {column} FROM runs WHERE customer = ? AND resource = ?"
                f" AND kind = 'backup' AND result = 'success' AND {column} IS NOT NULL"
                " ORDER BY id DESC LIMIT 1",
                (customer, resource),
            ).fetchone()
        return row[0] if row else None

    def baseline_now(self, job: str) -> Baseline | None:
        """Return the baseline of `job` as of this moment."""
        return self.baseline(job, datetime.now(UTC))

    def accept(self, job: str, who: str, now: datetime) -> None:
        """Record that `who` accepted the job's source as it is now: a new baseline starts."""
        customer, resource = split_job(job)
        with self._connect() as db:
            db.execute(
                "INSERT INTO accepts (customer, resource, at, who) VALUES (?,?,?,?)",
                (customer, resource, _iso(now), who),
            )

    def accepts(self, job: str) -> list[tuple[str, str]]:
        """Return (when, who) of every accept of `job`, oldest first."""
        customer, resource = split_job(job)
        with self._connect() as db:
            return [
                (str(at), str(who))
                for at, who in db.execute(
                    "SELECT at, who FROM accepts WHERE customer = ? AND resource = ? ORDER BY id",
                    (customer, resource),
                )
            ]

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
            _add(db, (customer, resource), [(event, reason, float(count))])

    def set_state(self, key: str, value: str) -> None:
        with self._connect() as db:
            _set(db, key, value)

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
                    _dt(last_run),
                    result,
                    reason,
                    message,
                    _dt(last_success),
                    new,
                    changed,
                    added,
                    read,
                    totals=totals.get(job, {}),
                )
            )
        return out


def _set(db: sqlite3.Connection, key: str, value: str) -> None:
    db.execute(
        "INSERT INTO state (key, value) VALUES (?, ?) ON CONFLICT(key) DO "
        "UPDATE SET value = excluded.value",
        (key, value),
    )


def _add(db: sqlite3.Connection, job: tuple[str, str], adds: list[tuple[str, str, float]]) -> None:
    db.executemany(
        "INSERT INTO totals VALUES (?,?,?,?,?) ON CONFLICT DO UPDATE SET value = value + "
        "excluded.value",
        [(*job, name, label, value) for name, label, value in adds],
    )


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat()


def _dt(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None
