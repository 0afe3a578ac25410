"""The ledger under DATA_DIR/state: one SQLite database and the small stores over it.

Each store owns one noun — the run history, what is remembered of each job, the lock marks —
and its users hold it behind the seam they need (reporting/seams.py).
"""

from pathlib import Path

from orchestrator.reporting.history import History
from orchestrator.reporting.job_memory import JobMemory
from orchestrator.reporting.lock_marks import LockMarks
from orchestrator.reporting.store import Database


class Ledger:
    """Opens the database under `state_dir` and the stores that share it."""

    def __init__(self, state_dir: Path) -> None:
        self.db = Database(state_dir)
        self.history = History(self.db)
        self.memory = JobMemory(self.db)
        self.locks = LockMarks(self.db)
