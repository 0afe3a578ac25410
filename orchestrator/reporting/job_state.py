"""What the ledger remembers per job besides its history: holds, accepts, drills, baselines."""

import json
from datetime import UTC, datetime

from orchestrator.model import split_job
from orchestrator.reporting.store import Store, iso, set_value
from orchestrator.sources.guard import WINDOW, Baseline

HOLD = "hold:"  # state key prefix: a job's retention hold after a suspect snapshot
CORRUPT = "corrupt:"  # damage a restore drill found, until a full drill reads clean
SLICE = "slice:"  # the slice of the packs the job's next drill reads
VERIFIED = "verified:"  # when the job's last restore drill succeeded
PRUNED = "pruned:"  # the result of the job's last prune
LOCKED = "locked:"  # the soonest a live object of the job's cold repository is unlocked
UNLOCKED = "unlocked:"  # a customer whose bucket has no object lock
LOCKED_THROUGH = "locked-through:"  # everything the job wrote before then is locked


class JobState(Store):
    """Per-job state kept in the ledger: read by the runs, the drills and `status`."""

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
            set_value(db, SLICE + job, str(done + 1))
        return done % parts + 1

    def mark_corrupt(self, job: str, why: str, now: datetime) -> None:
        """Remember that a drill found damage in the job's repository."""
        self.set_state(CORRUPT + job, json.dumps({"why": why, "at": iso(now)}))

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
        since = iso(now - WINDOW)
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
        value = json.dumps({"snapshot": snapshot, "why": why, "at": iso(now)})
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

    def packed_ratios(self, job: str, count: int, min_added: int) -> tuple[float, ...]:
        """Return the packed share of what the job's last `count` clean backups added.

        Newest first; only backups that added at least `min_added` bytes of file data. Runs
        recorded before the ledger kept these sizes have none and are left out.
        """
        customer, resource = split_job(job)
        with self._connect() as db:
            rows = db.execute(
                "SELECT data_added_files, data_added_files_packed FROM runs"
                " WHERE customer = ? AND resource = ? AND kind = 'backup' AND result = 'success'"
                " AND data_added_files >= ? AND data_added_files_packed IS NOT NULL"
                " ORDER BY id DESC LIMIT ?",
                (customer, resource, max(min_added, 1), count),
            ).fetchall()
        return tuple(int(packed) / int(added) for added, packed in rows)

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
                (customer, resource, iso(now), who),
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

    def record_lock(self, job: str, earliest: datetime | None, unlocked: bool) -> None:
        """Remember what the job's last lock extension saw of its bucket."""
        customer, _ = split_job(job)
        with self._connect() as db:
            db.execute("DELETE FROM state WHERE key IN (?, ?)", (LOCKED + job, UNLOCKED + customer))
            if earliest is not None:
                set_value(db, LOCKED + job, iso(earliest))
            if unlocked:
                set_value(db, UNLOCKED + customer, "1")

    def locked_through(self, job: str) -> datetime | None:
        """Return the time before which everything the job wrote is known locked."""
        with self._connect() as db:
            row = db.execute("SELECT value FROM state WHERE key = ?", (LOCKED_THROUGH + job,))
            found = row.fetchone()
        return datetime.fromisoformat(found[0]) if found else None

    def lock_reached(self, job: str, when: datetime) -> None:
        """Remember that everything the job wrote before `when` is locked."""
        with self._connect() as db:
            set_value(db, LOCKED_THROUGH + job, iso(when))

    def lock_state(self) -> tuple[dict[str, datetime], set[str]]:
        """Return each job's soonest lock end, and the customers whose bucket has no lock."""
        until: dict[str, datetime] = {}
        unlocked: set[str] = set()
        with self._connect() as db:
            for key, value in db.execute(
                "SELECT key, value FROM state WHERE key LIKE ? OR key LIKE ?",
                (LOCKED + "%", UNLOCKED + "%"),
            ):
                if key.startswith(LOCKED):
                    until[key.removeprefix(LOCKED)] = datetime.fromisoformat(value)
                else:
                    unlocked.add(key.removeprefix(UNLOCKED))
        return until, unlocked
