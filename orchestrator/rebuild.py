"""`unstoppable rebuild`: the backup server lost, its jobs rebuilt from the cold repositories.

The cold repository (a local folder or the customer's bucket) holds all data; the hot one is
rustic's metadata, and the ledger the daemon's memory. On a fresh install both are gone:
each job's hot repository is built again from its cold one (`rustic init --hot-only`), and
the ledger learns the newest clean snapshot back from the repository, so that the source
guard has its baseline again before the first backup and `status` its last success.
"""

import shutil
from dataclasses import dataclass
from datetime import UTC, datetime

from orchestrator.config.customer import Customer, Resource
from orchestrator.errors import RunFailed
from orchestrator.launcher import Launcher
from orchestrator.model import Kind, Outcome, Reason, Result, RunRecord, SnapshotInfo, Work
from orchestrator.reporting.ledger import Ledger
from orchestrator.repository import snapshots
from orchestrator.rustic import commands
from orchestrator.rustic.output import last_words
from orchestrator.sources.guard import WINDOW
from orchestrator.sources.setup import WorkerSetup
from orchestrator.storage.layout import job_storage


@dataclass(frozen=True)
class Rebuilt:
    """What a rebuild of one job found and did."""

    built: bool  # False: its hot repository was there already, and was kept
    snapshots: int
    newest: SnapshotInfo | None  # the newest clean snapshot, now the job's baseline
    remembered: bool  # the ledger was told of it (it knew no run of the job before)


def rebuild(launcher: Launcher, ledger: Ledger, customer: Customer, resource: Resource) -> Rebuilt:
    """Rebuild the hot repository of `resource` from its cold one if it has none, and tell
    an empty ledger of its newest clean snapshot.

    A hot repository present is kept; one half-made is moved aside, never deleted. Raises
    RunFailed when there is no cold repository to build from, or rustic fails; RunStopped
    when a run of the job is in progress (stop the daemon first: the runbook says so).
    """
    job = customer.job(resource)
    storage = job_storage(launcher.settings, customer.name, resource.name)
    built = not (storage.hot / "config").exists()
    if built:
        if storage.hot.exists() and any(storage.hot.iterdir()):
            stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
            storage.hot.rename(storage.hot.with_name(f"{storage.hot.name}.before-rebuild-{stamp}"))
        shutil.rmtree(storage.cache, ignore_errors=True)  # a cache of what may be gone
        init = WorkerSetup(commands.init_hot_args(launcher.cold), ())
        done = launcher.run_worker(customer, resource, Kind.RECOVER, datetime.now(UTC), init, None)
        if done.exit_code != 0:
            with_words = last_words(done)
            raise RunFailed(
                f"{job}: no hot repository could be built from the cold one: {with_words}"
            )
    found = snapshots(launcher, customer, resource)
    clean = [s for s in found if commands.TAG_SUSPECT not in s.tags]
    newest = max(clean, key=lambda s: s.time) if clean else None
    remembered = newest is not None and not ledger.history.runs(job)
    if remembered and newest is not None:
        # Every clean backup of the guard's window, as the lost ledger held them: its
        # baseline is the most they held, not the newest (a source shrunk step by step).
        for snapshot in [s for s in clean if s.time >= newest.time - WINDOW]:
            said = (
                f"snapshot {snapshot.id[:8]}, read back from the cold repository by "
                "`unstoppable rebuild`"
            )
            outcome = Outcome(Result.SUCCESS, Reason.NONE, said, snapshot.summary)
            when = snapshot.time  # the backup's own time: status and /metrics tell it
            ledger.history.record_run(RunRecord.of(Work(job), when, when, outcome, ended=when))
    suspect = [s for s in found if commands.TAG_SUSPECT in s.tags]
    if newest is not None:
        suspect = [s for s in suspect if s.time > newest.time]
    if suspect and not ledger.memory.held(job):  # retention stays held, as it was
        why = "a suspect snapshot newer than the last clean one, found by rebuild"
        ledger.memory.hold(job, max(suspect, key=lambda s: s.time).id, why, datetime.now(UTC))
    return Rebuilt(built, len(found), newest, remembered)
