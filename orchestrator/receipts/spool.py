"""A job's receipt spool, `DATA_DIR/state/receipts/<customer>_<resource>/`: its files, its
locks, and what it says of the chain's head and of receipts still to deliver.

`<seq>.json`: sealed, not published yet; `<seq>.post`: published, still to be POSTed;
`head.json`: the newest receipt's `seq` and digest; `.lock` (issuing), `.deliver` (delivering).
"""

import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from orchestrator.config.settings import Settings
from orchestrator.model import JobKey
from orchestrator.receipts.posting import POSTING
from orchestrator.storage.layout import state_dir

HEAD = "head.json"
RUNS, EVENTS = "runs", "events"  # the ledger's tables a receipt's row is in


RECENT = 500  # ledger rows remembered per table: more than any one restart leaves owed


@dataclass(frozen=True)
class Entry:
    """The ledger row a receipt stands for: its table, and its id (None: not written)."""

    table: str
    row: int | None


@dataclass(frozen=True)
class Marks:
    """The ledger rows a job's receipts stand for: of one ledger file, the newest RECENT
    of each table (a row below the oldest of them is done)."""

    ledger: str
    rows: dict[str, tuple[int, ...]]

    def done(self, entry: Entry) -> bool:
        rows = self.rows.get(entry.table, ())
        return entry.row is not None and bool(rows) and (entry.row in rows or entry.row < rows[0])

    def adding(self, entry: Entry) -> "Marks":
        if entry.row is None:
            return self
        rows = sorted({*self.rows.get(entry.table, ()), entry.row})[-RECENT:]
        return Marks(self.ledger, {**self.rows, entry.table: tuple(rows)})

    def fields(self) -> dict[str, object]:
        return {"ledger": self.ledger, **{t: list(r) for t, r in self.rows.items()}}


def marks_of(head: dict[str, object], ledger: str) -> Marks:
    """Return the marks kept in a job's head, if they are of `ledger` (else none: a ledger
    replaced, moved aside or restored, numbers its rows afresh)."""
    if head.get("ledger") != ledger:
        return Marks(ledger, {})
    rows = {}
    for table in (RUNS, EVENTS):
        found = head.get(table)
        if isinstance(found, list) and all(isinstance(v, int) for v in found):
            rows[table] = tuple(sorted(found))
    return Marks(ledger, rows)


def owe_from(folder: Path, marks: Marks, entry: Entry | None) -> None:
    """Remember, when a job's first receipt cannot be issued (the chain's head, read from
    the store, unreadable), that its ledger rows from `entry`'s on are owed: the publishing
    thread issues them late (receipts/reconcile.py) instead of never."""
    if entry is None or entry.row is None or marks.rows.get(entry.table):
        return
    owed = Marks(marks.ledger, {**marks.rows, entry.table: (entry.row - 1,)})
    put_down(folder / HEAD, json.dumps(owed.fields()).encode(), over=True)


def spool_of(settings: Settings, job: JobKey) -> Path:
    """Return the job's spool folder (not made)."""
    return state_dir(settings) / "receipts" / f"{job.customer}_{job.resource}"


def spooled(settings: Settings, job: JobKey) -> tuple[int | None, str | None, int]:
    """Return the `seq` and digest of the job's newest receipt as this server last wrote
    it (None, None before its first), and how many of its receipts wait to be published."""
    folder = spool_of(settings, job)
    try:
        head = json.loads((folder / HEAD).read_text())
        seq, newest = int(head["seq"]), str(head["digest"])
    except (OSError, ValueError, KeyError, TypeError):
        seq, newest = None, None
    try:
        left = waiting(folder)
    except OSError:
        left = 0
    return seq, newest, left


def waiting(folder: Path) -> int:
    """Return how many receipts in a job's spool wait to be published or POSTed."""
    return sum(
        1 for p in folder.iterdir() if p.name[:1].isdigit() and p.suffix in (".json", POSTING)
    )


@contextmanager
def locked(folder: Path, name: str = ".lock", wait: bool = True) -> Iterator[bool]:
    """Hold the lock file `name` of a job's spool; yield whether it is held (without
    `wait`, it is not when another holds it)."""
    fd = os.open(folder / name, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)


def put_down(path: Path, data: bytes, over: bool) -> None:
    """Write `path` whole, to disk, under a name of its own first: then renamed over what
    is there (`over`), or linked into place, which never writes over a file."""
    own = path.with_name(f".{path.name}.{os.getpid()}.new")
    with open(own, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    if over:
        os.replace(own, path)
        return
    try:
        os.link(own, path)
    finally:
        os.unlink(own)
