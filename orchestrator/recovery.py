"""`unstoppable recover`: a cold repository read as it was at a moment, its hot part rebuilt.

With object lock, nothing a compromised server does to a bucket destroys a version before its
retention ends: deleting hides, overwriting adds. Recovery makes the version that was current
at the chosen moment current again, key by key, hides what came later, and rebuilds the hot
repository from the cold one (rustic aborts on a hot repository whose keys do not match, see
rustic-rs/rustic#1085). The hot repository it replaces is moved aside, never deleted.
"""

import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from orchestrator.config.customer import Customer, Resource
from orchestrator.errors import RunFailed
from orchestrator.launcher import Launcher
from orchestrator.model import Kind
from orchestrator.reporting.seams import Marks
from orchestrator.rustic import commands
from orchestrator.rustic.output import last_words
from orchestrator.sources.setup import WorkerSetup
from orchestrator.storage.layout import job_storage, lock_live, open_bucket
from orchestrator.storage.s3_values import StorageError
from orchestrator.storage.versions import as_of, by_creation, existed


@dataclass(frozen=True)
class Recovered:
    restored: int  # keys whose earlier version is current again
    hidden: int  # keys that did not exist at the moment, hidden again
    previous_hot: Path | None  # where the replaced hot repository was moved


RECOVERING = "recovering:"  # the daemon starts no run of a job while it is marked so


def recover(
    launcher: Launcher, pause: Marks, customer: Customer, resource: Resource, moment: datetime
) -> Recovered:
    """Make the cold repository of `resource` read as at `moment`; rebuild its hot part.

    The job's runs are paused first (the daemon starts none while the mark stands), and
    nothing starts while one of them still runs. Raises RunFailed when the cold repository
    is not a versioned bucket, `moment` lies ahead, a run is in progress, or the rebuild
    fails; StorageError when the object store refuses.
    """
    settings, job = launcher.settings, customer.job(resource)
    if settings.COLD_BACKEND != "s3":
        raise RunFailed(f"{job}: recover reads a bucket's versions: needs COLD_BACKEND=s3")
    now = datetime.now(UTC)
    if moment > now:
        raise RunFailed(f"{job}: --as-of {moment.isoformat()} has not happened yet")
    pause.set_state(f"{RECOVERING}{job}", now.isoformat())
    try:
        runtime = launcher.runtime
        if job in runtime.running_jobs() or job in runtime.reading_jobs():
            raise RunFailed(f"{job}: a run of this job is in progress; recover when it ended")
        return _recover(launcher, customer, resource, moment, now)
    finally:
        pause.clear_state(f"{RECOVERING}{job}")


def _recover(
    launcher: Launcher, customer: Customer, resource: Resource, moment: datetime, now: datetime
) -> Recovered:
    settings, job = launcher.settings, customer.job(resource)
    bucket = open_bucket(settings, customer.name, timeout=120)
    try:
        if not bucket.versioned():
            # Without versions, hiding what came later would delete it for good.
            raise RunFailed(f"{job}: bucket {bucket.name} keeps no versions: nothing to recover")
        versions = bucket.versions(f"{resource.name}/")
        if bucket.dates_by_replacement():  # versitygw: date each version by its creation
            versions = by_creation(versions)
        if not existed(versions, f"{resource.name}/config", moment):
            # Hiding everything would leave no repository, and the next backup would make
            # a new one over it: refuse, and touch nothing.
            raise RunFailed(
                f"{job}: the cold repository had no config at {moment.isoformat()}: "
                "choose a time after its first backup"
            )
        steps = as_of(versions, moment)
        for step in steps:
            if step.version_id is None:
                bucket.hide(step.key)
            else:
                bucket.restore(step.key, step.version_id)
    finally:
        bucket.close()
    try:  # what recovery made current is new: locked now, as a backup's writes are
        report = lock_live(settings, customer.name, resource.name, since=now)
    except StorageError as exc:
        why = str(exc)
    else:
        why = "" if report is None or report.complete else "stopped at UNSTOPPABLE_JOB_TIMEOUT"
    if why:
        raise RunFailed(f"{job}: recovered, but its objects could not all be locked: {why}")
    storage = job_storage(settings, customer.name, resource.name)
    previous = None
    if storage.hot.exists() and any(storage.hot.iterdir()):
        previous = storage.hot.with_name(
            f"{storage.hot.name}.before-recover-{now.strftime('%Y%m%dT%H%M%SZ')}"
        )
        try:
            storage.hot.rename(previous)
        except OSError as exc:
            raise RunFailed(
                f"{job}: cannot move the hot repository aside: {exc.strerror}"
            ) from None
    shutil.rmtree(storage.cache, ignore_errors=True)  # a cache of what is no longer there
    init = WorkerSetup(commands.init_hot_args(launcher.cold), ())
    done = launcher.run_worker(customer, resource, Kind.RECOVER, now, init, None)
    if done.exit_code != 0:
        raise RunFailed(f"{job}: rebuilding the hot repository failed: {last_words(done)}")
    restored = sum(1 for step in steps if step.version_id is not None)
    return Recovered(restored, len(steps) - restored, previous)
