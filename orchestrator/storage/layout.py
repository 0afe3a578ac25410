"""Where each job's repositories, cache and run state live (DESIGN.md, Storage).

The S3 modules (minio-py, a tenth of a second to import) load only when a bucket is used:
every worker's spec and every CLI command reads paths from here, most never touch S3.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import secrets
import shutil
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import SecretStr

from orchestrator.config.settings import Settings
from orchestrator.storage.repo_dirs import JobStorage

if TYPE_CHECKING:
    from orchestrator.storage.lock import LockReport
    from orchestrator.storage.s3 import Bucket
    from orchestrator.storage.s3_values import Lock


def job_storage(settings: Settings, customer: str, resource: str) -> JobStorage:
    """Return the storage paths of `customer`/`resource`."""
    data = settings.DATA_DIR
    cold = data / "cold" / customer / resource if settings.COLD_BACKEND == "local" else None
    return JobStorage(
        data / "hot" / customer / resource, cold, data / "cache" / customer / resource
    )


def instance_of(settings: Settings) -> str:
    """Return this installation's name on the Docker engine: its data directory's, hashed.
    Each worker carries it, so a daemon adopts only its own installation's workers."""
    path = str(settings.DATA_DIR.resolve())  # however it is spelled: one installation
    return hashlib.sha256(path.encode()).hexdigest()[:16]


def state_dir(settings: Settings) -> Path:
    """Return the directory of the run ledger and other daemon state."""
    return settings.DATA_DIR / "state"


@contextlib.contextmanager
def scratch(settings: Settings, customer: str, resource: str) -> Iterator[Path]:
    """Yield a new private folder (0700) of the data directory for one restore on its way
    elsewhere (to the source, or a pipe); removed afterwards, whatever happened."""
    base = settings.DATA_DIR / "restores"
    base.mkdir(mode=0o700, parents=True, exist_ok=True)
    own = base / f"{customer}_{resource}-{secrets.token_hex(6)}"
    own.mkdir(mode=0o700)
    try:
        yield own
    finally:
        shutil.rmtree(own, ignore_errors=True)


def secrets_dir(settings: Settings) -> Path:
    """Return the directory under which each run's secret files live while it runs."""
    return state_dir(settings) / "secrets"


def cold_profile(
    settings: Settings, customer: str, resource: str, key: tuple[str, SecretStr] | None = None
) -> SecretStr | None:
    """Return the rustic profile that points the cold repository at S3, or None for local.

    It holds the S3 credentials, so it is a secret file of the run, never an argument.
    With the customer's own `key` (COLD_S3_*), the global key is not in it at all.
    """
    if settings.COLD_BACKEND != "s3" or settings.S3_SECRET_ACCESS_KEY is None:
        return None
    if key is not None:
        key_id, secret, token = key[0], key[1].get_secret_value(), None
    else:
        key_id, secret = (
            settings.S3_ACCESS_KEY_ID or "",
            settings.S3_SECRET_ACCESS_KEY.get_secret_value(),
        )
        token = settings.S3_SESSION_TOKEN.get_secret_value() if settings.S3_SESSION_TOKEN else None
    options = {
        "bucket": bucket(settings, customer),
        "root": f"/{resource}",
        "endpoint": settings.S3_ENDPOINT or "",
        "region": settings.S3_REGION,
        "access_key_id": key_id,
        "secret_access_key": secret,
        # A dead object store should fail the run in minutes, not retry for hours.
        "retry": "3",
    }
    if token is not None:
        options["session_token"] = token  # opendal's name
    body = "".join(f"{key} = {json.dumps(value)}\n" for key, value in options.items())
    return SecretStr("[repository.options-cold]\n" + body)


def bucket(settings: Settings, customer: str) -> str:
    """Return the customer's bucket: the S3 prefix followed by the customer name."""
    return settings.S3_BUCKET_PREFIX + customer


def bucket_lock(settings: Settings) -> Lock | None:
    """Return the object lock new buckets get, or None when UNSTOPPABLE_S3_LOCK_DAYS=0."""
    from orchestrator.storage.s3_values import Lock

    return Lock(settings.S3_LOCK_DAYS, settings.S3_LOCK_MODE) if settings.S3_LOCK_DAYS else None


# A live object locked to within this of the full lock is left as it is: what the last
# backup wrote carries the bucket's default retention already.
LOCK_SLACK = timedelta(hours=1)


# S3 refuses a request signed more than 15 minutes off its clock: the store's times of the
# objects a run wrote are no earlier than this before the run started by ours.
CLOCK_SKEW = timedelta(minutes=15)


def lock_live(
    settings: Settings, customer: str, resource: str, since: datetime | None = None
) -> LockReport | None:
    """Extend the lock of the live objects of `customer`/`resource`; None without a lock.

    With `since` (when a backup started), only what was written from then on.
    """
    lock = bucket_lock(settings)
    if settings.COLD_BACKEND != "s3" or lock is None:
        return None
    from orchestrator.storage.lock import extend_live

    store = open_bucket(settings, customer, timeout=120)
    try:
        stop_at = time.monotonic() + settings.job_timeout_seconds
        after = None if since is None else since - CLOCK_SKEW
        now = datetime.now(UTC)
        report = extend_live(store, f"{resource}/", lock, now, LOCK_SLACK, stop_at, after)
        if since is not None:  # after a backup: its receipt was written locked already
            return report
        # The job's receipts are history too: held as long as its data (receipts/<resource>/),
        # renewed by the full pass of a prune, not listed again after every backup.
        receipts = extend_live(store, f"receipts/{resource}/", lock, now, LOCK_SLACK, stop_at)
        soonest = [t for t in (report.earliest, receipts.earliest) if t is not None]
        return replace(
            report,
            live=report.live + receipts.live,
            extended=report.extended + receipts.extended,
            earliest=min(soonest, default=None),
            complete=report.complete and receipts.complete,
        )
    finally:
        store.close()


def open_bucket(settings: Settings, customer: str, timeout: float = 30) -> Bucket:
    """Return the customer's bucket, reached with the orchestrator's own credentials."""
    from orchestrator.storage.s3 import Bucket

    secret, token = settings.S3_SECRET_ACCESS_KEY, settings.S3_SESSION_TOKEN
    return Bucket(
        settings.S3_ENDPOINT or "",
        settings.S3_REGION,
        settings.S3_ACCESS_KEY_ID or "",
        secret.get_secret_value() if secret else "",
        bucket(settings, customer),
        timeout,
        token.get_secret_value() if token else None,
    )
