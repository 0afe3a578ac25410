"""Issuing receipts: one for each finished run and each scheduled time that did not run.

A receipt is sealed and written to the job's spool (`DATA_DIR/state/receipts/<c>_<r>/`)
under the job's lock file, so the daemon and a command line never give two receipts one
`seq`; then it is published (places.py) and leaves the spool. One that cannot be published
stays there, retried every minute and counted (`unstoppable_receipts_undelivered`, alert
`BackupReceiptUndelivered`): never dropped. The chain's head (the next `seq`, the digest to
link to) is kept beside the spool; when it is gone or unreadable (a lost or corrupt data
directory) it is read back from the newest receipt published (when that cannot be read,
the rows are owed: spool.py `owe_from`).
"""

import json
import logging
import os
import threading
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from orchestrator import __version__
from orchestrator.config.settings import Settings
from orchestrator.errors import UnstoppableError
from orchestrator.model import JobKey, Kind, RunRecord
from orchestrator.receipts.chain import FIRST, key_id, seal, when
from orchestrator.receipts.keys import KEY_FILE, receipt_key
from orchestrator.receipts.places import name_of, place_of
from orchestrator.receipts.posting import POSTING, Posts
from orchestrator.receipts.receipt_checks import digest, opened
from orchestrator.receipts.spool import (
    HEAD,
    Entry,
    Marks,
    locked,
    marks_of,
    owe_from,
    put_down,
    spool_of,
    waiting,
)
from orchestrator.receipts.terms import JobTerms
from orchestrator.schedule import next_fire
from orchestrator.storage.layout import state_dir
from orchestrator.storage.s3_values import StorageError

log = logging.getLogger(__name__)

RETRY_SECONDS = 60.0
POST_WAIT_SECONDS = 15.0  # what a stopping daemon gives the POSTs under way to RECEIPT_URLs
READ_BACK_SECONDS = 10.0  # the most a chain's head read back from the bucket may take


class KeyMismatch(UnstoppableError):
    """The job's published chain is signed by another key than this server's."""


class Issuer:
    """Seals, spools and publishes the receipts of every job on this server."""

    def __init__(
        self,
        settings: Settings,
        terms: JobTerms = lambda _job: None,
        background: bool = False,
    ) -> None:
        """`background`: publishing is left to `retry_forever`'s thread (the daemon's: a
        slow or unreachable bucket must never hold up its scheduling); otherwise each
        receipt is published as soon as it is issued (the command line's)."""
        self.settings = settings
        self.key = receipt_key(settings)
        self.terms = terms
        self.background = background
        self.spool = state_dir(settings) / "receipts"
        self.stop = threading.Event()
        self.wake = threading.Event()  # a receipt was issued: publish it now
        self.posts = Posts(settings.private_targets, background)
        # Receipts owed for ledger rows a killed process wrote (receipts/reconcile.py), and
        # the ledger file whose rows the marks count (set with it).
        self.owed: Callable[[], object] = lambda: None
        self.ledger_id = ""

    def run(self, run: RunRecord, entry: Entry | None = None) -> None:
        """Issue the receipt of a finished run (the ledger row `entry`, if written)."""
        summary = run.outcome.summary
        fields: dict[str, Any] = {
            "kind": run.kind.value,
            "scheduled_for": when(run.scheduled_for),
            "started": when(run.started),
            "ended": when(run.ended),
            "result": run.outcome.result.value,
            "reason": run.outcome.reason.value,
            "snapshot": summary.snapshot_id if summary else None,
            "tree": summary.tree or None if summary else None,
            "files": summary.files_total if summary else None,
            "bytes": summary.bytes_processed if summary else None,
            "added": summary.data_added if summary else None,
        }
        if run.kind is Kind.PRUNE:  # whether forget ran, and what it kept: receipt_checks.unheld
            fields["forgot"] = run.outcome.forgot
            fields["keep_within"] = self.settings.min_keep_within_seconds
        if run.outcome.drill is not None:  # which part of the packs a drill read
            fields["slice"] = "{}/{}".format(*run.outcome.drill)
        self._issue(run.job, fields, self._next(run.job, run.kind, run.scheduled_for), entry)

    def ticks(
        self,
        job: JobKey,
        result: str,
        reason: str,
        last: datetime,
        count: int = 1,
        first: datetime | None = None,
        entry: Entry | None = None,
    ) -> None:
        """Issue the receipt of scheduled backup times that did not run: skipped or missed
        (`count` of them, from `first` to `last`; the ledger row `entry`, if written)."""
        fields: dict[str, Any] = {
            "kind": Kind.BACKUP.value,
            "scheduled_for": when(last),
            "first": when(first or last),
            "count": count,
            "result": result,
            "reason": reason,
        }
        self._issue(job, fields, self._next(job, Kind.BACKUP, last), entry)

    def _next(self, job: JobKey, kind: Kind, after: datetime) -> str | None:
        """Return the next time the job's backup schedule promises after `after`."""
        terms = self.terms(job) if kind is Kind.BACKUP else None
        if terms is None:
            return None
        try:
            return when(next_fire(terms.schedule, terms.timezone, after, str(job)))
        except ValueError:
            return None

    def _issue(
        self, job: JobKey, fields: dict[str, Any], due: str | None, entry: Entry | None
    ) -> None:
        fields = {
            **fields,
            "customer": job.customer,
            "resource": job.resource,
            "next": due,
            "software": f"unstoppable {__version__}",
        }
        folder = self._folder(job)
        with locked(folder):
            marks = self.marks_of(job)
            if entry is not None and marks.done(entry):
                return  # its receipt was issued already (late, or by its own process)
            try:
                seq, previous = self._head(job, folder)
            except StorageError:
                owe_from(folder, marks, entry)
                raise
            data = seal(fields, seq, previous, self.key)
            put_down(folder / f"{seq:010d}.json", data, over=False)
            receipt, _ = opened(data)
            marks = marks.adding(entry) if entry is not None else marks
            head = json.dumps({"seq": seq, "digest": digest(receipt), **marks.fields()}).encode()
            put_down(folder / HEAD, head, over=True)
        if self.background:
            self.wake.set()
        else:
            self.deliver(job)

    def jobs(self) -> list[JobKey]:
        """Return every job with a spool on this server."""
        if not self.spool.is_dir():
            return []
        found = (folder.name.partition("_") for folder in self.spool.iterdir())
        return [JobKey(c, r) for c, _, r in found if c and r]

    def marks_of(self, job: JobKey) -> Marks:
        """Return the ledger rows the job's receipts stand for (of this server's ledger)."""
        try:
            head = json.loads((self._folder(job) / HEAD).read_text())
        except (OSError, ValueError):
            head = {}
        return marks_of(head if isinstance(head, dict) else {}, self.ledger_id)

    def _head(self, job: JobKey, folder: Path) -> tuple[int, str | None]:
        """Return the next `seq` and `previous` of `job`: the newest of its head file and
        its spool (a crash between writing a receipt and its head leaves the spool ahead);
        with neither, the newest receipt published. A chain signed by another key is not
        continued: KeyMismatch (the server's key was lost or replaced; customers must be
        handed the new one first)."""
        known: list[tuple[int, str]] = []
        try:
            head = json.loads((folder / HEAD).read_text())
            known.append((int(head["seq"]), str(head["digest"])))
        except (OSError, ValueError, KeyError, TypeError):
            pass
        spooled = sorted([*folder.glob("[0-9]*.json"), *folder.glob("[0-9]*" + POSTING)])
        if spooled:
            receipt, _ = opened(spooled[-1].read_bytes())
            known.append((int(receipt["seq"]), digest(receipt)))
        if known:
            seq, newest = max(known)
            return seq + 1, newest
        place = place_of(self.settings, job.customer, timeout=READ_BACK_SECONDS)
        try:
            names = place.names(job.resource)
            published = place.get(names[-1]) if names else None
        finally:
            place.close()
        if published is None:
            return FIRST
        signer = json.loads(published).get("key")
        if signer != key_id(self.key.public_key()):
            raise KeyMismatch(
                f"{job}: its published receipts are signed by key {signer}, not this "
                f"server's ({key_id(self.key.public_key())}): restore the old receipt key "
                f"(DATA_DIR/state/{KEY_FILE}), or hand customers the new one and start a "
                "new chain (move their receipts/ aside)"
            )
        receipt, _ = opened(published)
        return int(receipt["seq"]) + 1, digest(receipt)

    def deliver(self, job: JobKey) -> int:
        """Publish `job`'s spooled receipts, oldest first, then POST them to its
        RECEIPT_URL if it has one; return how many are left. One delivery of a job at a
        time, whoever asks (the daemon, a command): two would write a receipt twice."""
        folder = self._folder(job)
        with locked(folder, ".deliver", wait=False) as mine:
            if mine:
                self._deliver(job, folder)
        return waiting(folder)

    def _deliver(self, job: JobKey, folder: Path) -> None:
        pending = sorted(folder.glob("[0-9]*.json"))
        terms = self.terms(job)  # None: the customer is not loaded (a broken file): kept
        url = terms.receipt_url if terms else None
        if pending:
            try:
                place = place_of(self.settings, job.customer)
            except Exception as exc:
                log.warning("%s: receipts not published yet: %s", job, exc)
                return
            try:
                for path in pending:
                    try:
                        data = path.read_bytes()
                    except FileNotFoundError:
                        continue
                    place.put(name_of(job.resource, int(path.stem)), data)
                    if terms is not None and url is None:
                        path.unlink(missing_ok=True)
                    else:
                        os.replace(path, path.with_suffix(POSTING))
            except Exception as exc:  # kept, and tried again: never dropped
                log.warning("%s: receipts not published yet: %s", job, exc)
                return
            finally:
                place.close()
        if terms is not None:
            self.posts.post(folder, job, url)

    def undelivered(self) -> dict[JobKey, int]:
        """Return each job with receipts still in the spool, and how many."""
        found: dict[JobKey, int] = {}
        if not self.spool.is_dir():
            return found
        for folder in self.spool.iterdir():
            customer, _, resource = folder.name.partition("_")
            count = waiting(folder)
            if count and resource:
                found[JobKey(customer, resource)] = count
        return found

    def retry_forever(self) -> None:
        """Publish what the spool holds when a receipt is issued, and every minute, until
        `stop` is set (a thread of its own)."""
        while True:
            self.wake.wait(RETRY_SECONDS)
            self.wake.clear()
            try:
                self.owed()
            except Exception:
                log.exception("the receipts owed to the ledger's rows could not be issued")
            try:
                pending = self.undelivered()
            except OSError as exc:  # the spool unreadable: said, and tried again
                log.error("the receipts spool cannot be read: %s", exc)
                pending = {}
            for job in pending:
                try:
                    self.deliver(job)
                except Exception:
                    log.exception("%s: receipts could not be published", job)
            if self.stop.is_set():  # after one last pass: a stopping daemon publishes too
                self.posts.join(POST_WAIT_SECONDS)
                return

    def _folder(self, job: JobKey) -> Path:
        folder = spool_of(self.settings, job)
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        return folder
