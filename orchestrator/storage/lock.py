"""Retention that follows live data: every object the repository still reads stays locked.

New objects get the bucket's default retention where the store applies it (MinIO does,
versitygw 1.8 does not): after each backup, the objects it wrote are locked here too, and
their lock read back. What a repository keeps for months (its config, keys, old packs) would
fall out of that lock after `days`; each maintenance run extends the lock of every live
object, so live data is always locked at least `days` minus one maintenance interval ahead,
while what prune removed is left to expire (the Kopia way).
"""

import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from orchestrator.storage.s3 import Bucket
from orchestrator.storage.s3_values import BucketState, Lock, StorageError
from orchestrator.storage.versions import live, needs_extension


@dataclass(frozen=True)
class LockReport:
    live: int  # objects the repository reads
    extended: int  # of them, locked further by this run
    earliest: datetime | None  # the soonest a live object's lock ends
    unlocked: bool  # the bucket has no object lock at all: nothing is protected
    complete: bool = True  # False: stopped at its deadline, `extended` is partial


def extend_live(
    bucket: Bucket,
    prefix: str,
    lock: Lock,
    now: datetime,
    slack: timedelta,
    stop_at: float,
    since: datetime | None = None,
) -> LockReport:
    """Lock every live object under `prefix` until `now + lock.days`, where it ends sooner.

    With `since`, only the live objects written from then on (by the store's clock): what
    one backup wrote.

    Stops at `stop_at` (time.monotonic) with a partial report: a bucket of millions of
    objects must not hold the job's slot for a day. Raises StorageError when the store
    refuses (a governance bypass is never asked for).
    """
    if bucket.ensure(lock) is BucketState.UNLOCKED:
        return LockReport(0, 0, None, True)
    objects = [v for v in live(bucket.versions(prefix)) if since is None or v.modified >= since]
    # Newest first: a pass cut short by its deadline has locked the latest snapshot already.
    objects.sort(key=lambda v: v.modified, reverse=True)
    earliest: datetime | None = None
    extended = 0
    for version in objects:
        if time.monotonic() > stop_at:
            return LockReport(len(objects), extended, earliest, False, complete=False)
        until = bucket.retention(version.key, version.version_id)
        if (new := needs_extension(until, now, lock.days, slack)) is not None:
            bucket.retain(version.key, version.version_id, new, lock.mode)
            until, extended = bucket.retention(version.key, version.version_id), extended + 1
            if until is None or until < new - timedelta(seconds=1):  # read back, not trusted
                raise StorageError(f"{version.key}: the store did not keep the lock it accepted")
        if until is not None and (earliest is None or until < earliest):
            earliest = until
    return LockReport(len(objects), extended, earliest, False)
