"""The ledger's SQLite file: its schema, one connection per call, and recovery from damage.

A connection per call keeps threads and processes apart; a corrupt file is moved aside for
forensics and a new one starts, so a damaged ledger never stops the daemon. The ledger's
stores (history, job memory, lock marks) each hold this one `Database`.
"""

import logging
import secrets
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

log = logging.getLogger(__name__)

_RECOVERY = threading.Lock()
_CREATING = threading.RLock()

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
MIGRATIONS = (
    ("runs", "files_total", "INTEGER"),
    # What a backup's file data took before and after packing: the anomaly rule's history.
    ("runs", "data_added_files", "INTEGER"),
    ("runs", "data_added_files_packed", "INTEGER"),
    # The first of a missed range: a receipt issued late (receipts/reconcile.py) names it.
    ("events", "first", "TEXT"),
    # When a run was written (its end may be hours before, for a command's many resources).
    ("runs", "recorded", "TEXT"),
)
LEDGER_ID = "ledger_id"  # random, made with the file: receipts' marks belong to one ledger


class Database:
    """The ledger's database file and the small key-value state beside its history."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.path = state_dir / "ledger.sqlite3"
        self.ready = False
        try:
            self._ensure()
        except (OSError, sqlite3.OperationalError) as exc:
            # A full or read-only disk at start is an error of the moment: the daemon starts,
            # counts each write that fails, and the schema is made by the first call that can.
            log.error("the ledger %s cannot be opened yet (%s); retrying on use", self.path, exc)

    def _ensure(self) -> None:
        """Make the state directory and the schema once; raise what stops that."""
        if self.ready:
            return
        self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            self._create()
        except sqlite3.DatabaseError as exc:
            if not self.recover_if_corrupt(exc):
                raise
            self._create()
        self.ready = True

    def _healthy(self) -> bool:
        try:
            with self._open() as db:
                db.execute("SELECT count(*) FROM state").fetchone()
            return True
        except sqlite3.DatabaseError:
            return False

    def _create(self) -> None:
        with self._open() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(SCHEMA)
            db.execute(
                "INSERT OR IGNORE INTO state VALUES (?, ?)", (LEDGER_ID, secrets.token_hex(8))
            )
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
    def connect(self) -> Iterator[sqlite3.Connection]:
        """Open one transaction on the file (made, with its schema, on first use)."""
        if not self.ready:
            with _CREATING:
                self._ensure()
        with self._open() as db:
            yield db

    @contextmanager
    def _open(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=30)
        try:
            with db:
                yield db
        finally:
            db.close()

    def set_state(self, key: str, value: str) -> None:
        with self.connect() as db:
            set_value(db, key, value)

    def clear_state(self, key: str) -> None:
        with self.connect() as db:
            db.execute("DELETE FROM state WHERE key = ?", (key,))

    def get_state(self, key: str) -> str | None:
        with self.connect() as db:
            row = db.execute("SELECT value FROM state WHERE key = ?", (key,)).fetchone()
        return str(row[0]) if row else None


def set_value(db: sqlite3.Connection, key: str, value: str) -> None:
    """Set the state `key` to `value`, inside the caller's transaction."""
    db.execute(
        "INSERT INTO state (key, value) VALUES (?, ?) ON CONFLICT(key) DO "
        "UPDATE SET value = excluded.value",
        (key, value),
    )


def add_totals(
    db: sqlite3.Connection, job: tuple[str, str], adds: list[tuple[str, str, float]]
) -> None:
    """Add each (name, label, value) to the job's running totals."""
    db.executemany(
        "INSERT INTO totals VALUES (?,?,?,?,?) ON CONFLICT DO UPDATE SET value = value + "
        "excluded.value",
        [(*job, name, label, value) for name, label, value in adds],
    )


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat()


def parse_iso(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def transient(exc: Exception) -> bool:
    """Return whether the ledger may take a write it refused later: a full disk, an I/O
    error, a lock, a file to move aside; not a value sqlite refuses, which it refuses for good."""
    return (
        isinstance(exc, (sqlite3.OperationalError, OSError)) or type(exc) is sqlite3.DatabaseError
    )


def unreadable_for_now(exc: Exception) -> bool:
    """Return whether a read failed for now (a full disk, an I/O error, a lock)."""
    return isinstance(exc, sqlite3.OperationalError)
