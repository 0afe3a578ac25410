"""What the ledger remembers of each job besides its history: holds, drills, baselines.

Kept as keys of the ledger's state table (`hold:acme/www`), which `state_key` alone spells.
"""

import json
from datetime import UTC, datetime

from orchestrator.model import JobKey, Kind, Result
from orchestrator.reporting.store import Database, iso, set_value
from orchestrator.sources.guard import WINDOW, Baseline

HOLD = "hold:"  # a job's retention hold after a suspect snapshot
CORRUPT = "corrupt:"  # damage a restore drill found, until a full drill reads clean
SLICE = "slice:"  # the slice of the packs the job's next drill reads
VERIFIED = "verified:"  # when the job's last restore drill succeeded
PRUNED = "pruned:"  # the result of the job's last prune


def state_key(prefix: str, job: JobKey) -> str:
    """Return the state-table key of what `prefix` names for `job`."""
    return prefix + str(job)


def keyed(prefix: str, key: str) -> JobKey | None:
    """Return the job a state-table key names under `prefix`, or None if it names none."""
    try:
        return JobKey.parse(key.removeprefix(prefix))
    except ValueError:
        return None


class JobMemory:
    """Holds, accepts, drill slices and damage marks: read by runs, drills and `status`."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def prune_results(self) -> dict[JobKey, str]:
        """Return the result of each job's last prune."""
        with self.db.connect() as db:
            rows = db.execute("SELECT key, value FROM state WHERE key LIKE ?", (PRUNED + "%",))
            found = {keyed(PRUNED, str(key)): str(value) for key, value in rows}
        return {job: value for job, value in found.items() if job is not None}

    def next_slice(self, job: JobKey, parts: int) -> int:
        """Return the slice (1..parts) the job's drill reads now, and move on to the next."""
        key = state_key(SLICE, job)
        with self.db.connect() as db:
            row = db.execute("SELECT value FROM state WHERE key = ?", (key,)).fetchone()
            done = int(row[0]) if row and str(row[0]).isdigit() else 0
            set_value(db, key, str(done + 1))
        return done % parts + 1

    def mark_corrupt(self, job: JobKey, why: str, now: datetime) -> None:
        """Remember that a drill found damage in the job's repository."""
        self.db.set_state(state_key(CORRUPT, job), json.dumps({"why": why, "at": iso(now)}))

    def corrupt(self, job: JobKey) -> bool:
        """Return whether a drill found damage that no full drill has cleared since."""
        return self.db.get_state(state_key(CORRUPT, job)) is not None

    def clear_corrupt(self, job: JobKey) -> None:
        """Forget the damage: a drill that read every pack found none."""
        self.db.clear_state(state_key(CORRUPT, job))

    def maintenance_state(self) -> tuple[set[JobKey], dict[JobKey, datetime]]:
        """Return the jobs with damage found, and when each job's last drill succeeded."""
        corrupt: set[JobKey] = set()
        verified: dict[JobKey, datetime] = {}
        with self.db.connect() as db:
            for key, value in db.execute(
                "SELECT key, value FROM state WHERE key LIKE ? OR key LIKE ?",
                (CORRUPT + "%", VERIFIED + "%"),
            ):
                if key.startswith(CORRUPT) and (job := keyed(CORRUPT, key)) is not None:
                    corrupt.add(job)
                elif (job := keyed(VERIFIED, key)) is not None:
                    verified[job] = datetime.fromisoformat(value)
        return corrupt, verified

    def baseline(self, job: JobKey, now: datetime) -> Baseline | None:
        """Return the most files and bytes a successful backup of `job` saw in the window.

        Only runs after the operator's last `accept` count. With none in the window (a
        monthly schedule, two weeks of failures), the last successful run is the baseline:
        an old baseline is still a floor. None only when there was never one.
        """
        since = iso(now - WINDOW)
        clean = (job.customer, job.resource, Kind.BACKUP.value, Result.SUCCESS.value)
        with self.db.connect() as db:
            accepted = db.execute(
                "SELECT MAX(at) FROM accepts WHERE customer = ? AND resource = ?",
                (job.customer, job.resource),
            ).fetchone()[0]
            row = db.execute(
                "SELECT MAX(files_total), MAX(bytes_processed), COUNT(*) FROM runs"
                " WHERE customer = ? AND resource = ? AND kind = ? AND result = ?"
                " AND ended >= ? AND ended > ?",
                (*clean, since, accepted or ""),
            ).fetchone()
            if not row or not row[2]:
                row = db.execute(
                    "SELECT files_total, bytes_processed, 1 FROM runs"
                    " WHERE customer = ? AND resource = ? AND kind = ?"
                    " AND result = ? AND ended > ? ORDER BY id DESC LIMIT 1",
                    (*clean, accepted or ""),
                ).fetchone()
        if not row or not row[2]:
            return None
        return Baseline(int(row[0] or 0), int(row[1] or 0))

    def baseline_now(self, job: JobKey) -> Baseline | None:
        """Return the baseline of `job` as of this moment."""
        return self.baseline(job, datetime.now(UTC))

    def hold(self, job: JobKey, snapshot: str, why: str, now: datetime) -> None:
        """Hold the job's retention after the suspect `snapshot`: nothing is forgotten."""
        value = json.dumps({"snapshot": snapshot, "why": why, "at": iso(now)})
        self.db.set_state(state_key(HOLD, job), value)

    def marks(self, job: JobKey) -> tuple[dict[str, str] | None, dict[str, str] | None]:
        """Return what holds the job's retention and what damage a drill found, if any."""
        return _mark(self.db.get_state(state_key(HOLD, job))), _mark(
            self.db.get_state(state_key(CORRUPT, job))
        )

    def last_drill(self, job: JobKey) -> tuple[datetime, str, str] | None:
        """Return when the job's last restore drill ended, its result and its reason (a drill
        skipped, with no repository yet or beside another run, is none)."""
        with self.db.connect() as db:
            row = db.execute(
                "SELECT ended, result, reason FROM runs WHERE customer = ? AND resource = ?"
                " AND kind = ? AND result != ? ORDER BY id DESC LIMIT 1",
                (job.customer, job.resource, Kind.VERIFY.value, Result.SKIPPED.value),
            ).fetchone()
        if row is None:
            return None
        return datetime.fromisoformat(str(row[0])), str(row[1]), str(row[2])

    def held(self, job: JobKey) -> bool:
        """Return whether the job's retention is held."""
        return self.db.get_state(state_key(HOLD, job)) is not None

    def release(self, job: JobKey) -> str | None:
        """Lift the job's hold; return what held it (JSON), or None if nothing did."""
        key = state_key(HOLD, job)
        with self.db.connect() as db:
            row = db.execute("SELECT value FROM state WHERE key = ?", (key,)).fetchone()
            db.execute("DELETE FROM state WHERE key = ?", (key,))
        return str(row[0]) if row else None

    def held_jobs(self) -> set[JobKey]:
        """Return the jobs whose retention is held."""
        with self.db.connect() as db:
            rows = db.execute("SELECT key FROM state WHERE key LIKE ?", (HOLD + "%",))
            found = {keyed(HOLD, str(key)) for (key,) in rows}
        return {job for job in found if job is not None}

    def accept(self, job: JobKey, who: str, now: datetime) -> None:
        """Record that `who` accepted the job's source as it is now: a new baseline starts."""
        with self.db.connect() as db:
            db.execute(
                "INSERT INTO accepts (customer, resource, at, who) VALUES (?,?,?,?)",
                (job.customer, job.resource, iso(now), who),
            )

    def accepts(self, job: JobKey) -> list[tuple[str, str]]:
        """Return (when, who) of every accept of `job`, oldest first."""
        with self.db.connect() as db:
            return [
                (str(at), str(who))
                for at, who in db.execute(
                    "SELECT at, who FROM accepts WHERE customer = ? AND resource = ? ORDER BY id",
                    (job.customer, job.resource),
                )
            ]


def _mark(value: str | None) -> dict[str, str] | None:
    """Return a hold or damage mark as its fields (an unreadable one still marks)."""
    if value is None:
        return None
    try:
        found = json.loads(value)
    except ValueError:
        return {}
    return {str(k): str(v) for k, v in found.items()} if isinstance(found, dict) else {}
