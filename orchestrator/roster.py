"""The daemon's reader of customers.d: off the loop's thread, so a stalled read stalls nobody.

A customer's local PATH on a hung NFS mount can keep a read of its file waiting for minutes.
The files are read on a thread of their own; the loop waits a moment for it and otherwise
goes on planning with the last good view, which the new one replaces once it is ready.
"""

import logging
import threading
from collections.abc import Callable

from orchestrator.config.customer import Customer, Customers
from orchestrator.config.customer_file import files_signature, load_customers
from orchestrator.config.settings import Settings
from orchestrator.errors import UnstoppableError
from orchestrator.model import Kind, Work
from orchestrator.planner import JobSpec

log = logging.getLogger(__name__)
# How long a tick waits for customers.d to be read before it goes on with the last view.
LOAD_WAIT_SECONDS = 2.0
Signature = tuple[tuple[str, int, int], ...]


class Roster:
    """Reads customers.d when it changed; `poll` hands over a new view once one is read."""

    def __init__(self, settings: Settings, count: Callable[[str], None]) -> None:
        self.settings = settings
        self.count = count  # a problem survived, by where it came from
        self.signature: Signature | None = None
        self.loader: threading.Thread | None = None
        self.loaded: tuple[Signature, Customers] | None = None
        self.stalled = False

    def poll(self, keeping: int) -> Customers | None:
        """Return the customers read anew, or None: nothing changed, or not read yet.

        `keeping` is how many customers the last view holds, for the log line.
        """
        loader = self.loader
        if loader is None:
            loader = threading.Thread(target=self._read, args=(keeping,), daemon=True)
            loader.start()  # kept only once started: a failed start is retried next poll
            self.loader = loader
        loader.join(LOAD_WAIT_SECONDS)
        if loader.is_alive():
            if not self.stalled:
                self.stalled = True
                self.count("config")
                log.error(
                    "reading customers.d takes longer than %.0f s (a source path on a hung "
                    "mount?); the %d customer(s) loaded before go on meanwhile",
                    LOAD_WAIT_SECONDS,
                    keeping,
                )
            return None
        self.loader, self.stalled = None, False
        loaded, self.loaded = self.loaded, None
        if loaded is None:
            return None
        self.signature, customers = loaded
        for _ in range(customers.unexpected):
            self.count("config")
        return customers

    def _read(self, keeping: int) -> None:
        """Read customers.d into `self.loaded` if it changed; on any failure keep the last."""
        try:
            signature = files_signature(self.settings.CUSTOMERS_DIR)
            if signature == self.signature:
                return
            customers = load_customers(
                self.settings.CUSTOMERS_DIR, self.settings.bucket_prefix, self.settings.confinement
            )
        except UnstoppableError as exc:  # the directory itself is unreadable
            log.error("%s; keeping the %d customer(s) loaded before", exc, keeping)
            return
        except Exception:
            self.count("config")
            log.exception(
                "cannot reload customers.d; keeping the %d customer(s) loaded before", keeping
            )
            return
        self.loaded = (signature, customers)


def specs_of(
    customers: Customers, last_good: dict[str, Customer]
) -> tuple[list[JobSpec], dict[str, Customer]]:
    """Return what the planner schedules for `customers`, and each customer as last read
    whole. A customer whose file broke keeps its last good backup schedule, dormant: the
    times it names are counted missed (`config`), not silently lost. Not across a restart:
    a daemon that never read the file whole does not know them."""
    specs = [
        spec
        for c in customers.valid
        for r in c.resources
        for spec in (
            JobSpec(Work(c.job(r), Kind.BACKUP), r.schedule, c.timezone),
            JobSpec(Work(c.job(r), Kind.PRUNE), r.source.PRUNE_SCHEDULE, c.timezone),
            JobSpec(Work(c.job(r), Kind.VERIFY), r.source.VERIFY_SCHEDULE, c.timezone),
        )
    ]
    kept = {n: c for n, c in last_good.items() if n in customers.invalid}
    kept.update(customers.by_name)
    specs += [
        JobSpec(Work(c.job(r), Kind.BACKUP), r.schedule, c.timezone, dormant=True)
        for name, c in kept.items()
        if name in customers.invalid
        for r in c.resources
    ]
    return specs, kept
