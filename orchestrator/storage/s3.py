"""The S3 cold backend: a customer's bucket, its object lock, and the versions it keeps.

minio-py signs and sends the requests; this is the only module that imports it. Every error
becomes a StorageError that names the bucket and endpoint, never a credential.
"""

import io
import logging
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from xml.etree import ElementTree

import urllib3

from orchestrator.storage.s3_values import (
    BucketMissing,
    BucketState,
    Lock,
    StorageError,
    Version,
    host_of,
    masked,
)

# A dead endpoint must fail a run in seconds: minio-py's own pool waits five minutes per
# connection and retries five times. One retry covers a dropped connection.
CONNECT_SECONDS = 5
_RETRIES = urllib3.Retry(
    total=1,
    read=0,
    backoff_factor=0.2,
    status_forcelist=(500, 502, 503, 504),
    raise_on_status=False,  # the last answer is parsed as S3's error, not urllib3's
)
LIFECYCLE_RULE = "unstoppable-noncurrent"
# Written twice by `recover` to learn how the store dates old versions; tiny, outside any
# resource prefix, and locked like the rest.
PROBE_KEY = ".unstoppable-probe"
log = logging.getLogger(__name__)


class Bucket:
    """One customer's bucket on an S3 store: the few calls the orchestrator makes."""

    def __init__(
        self,
        endpoint: str,
        region: str,
        key_id: str,
        secret: str,
        name: str,
        timeout: float = 30,
        session_token: str | None = None,
    ) -> None:
        # minio-py loads here, not with this module: StorageError, Lock and the other plain
        # types are imported by every run; only a run that reaches a bucket needs the client.
        from minio import Minio

        from orchestrator.storage import s3_compat  # noqa: F401  (minio-py reads nanoseconds)

        self.host, secure = host_of(endpoint)
        self.name, self.region = name, region
        self.secrets = (key_id, secret, session_token)
        self.pool = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=min(CONNECT_SECONDS, timeout), read=timeout),
            retries=_RETRIES,
            cert_reqs="CERT_REQUIRED",  # against the system's trust store
        )
        self.client = Minio(
            self.host,
            access_key=key_id,
            secret_key=secret,
            session_token=session_token or None,
            secure=secure,
            region=region,
            http_client=self.pool,
        )

    def ensure(self, lock: Lock | None = None) -> BucketState:
        """Create the bucket unless it exists, with `lock`; say whether it is protected.

        A bucket created with a lock is versioned, locks each new object for `lock.days`,
        and lets a lifecycle rule expire a version `lock.days` after it stopped being current,
        so what prune removes is kept as long as the lock and then no longer stored.
        """
        from minio.error import S3Error

        with self.translated():
            if self.client.bucket_exists(self.name):
                return self._state(lock)
            try:
                self.client.make_bucket(
                    self.name, location=self.region, object_lock=lock is not None
                )
            except S3Error as exc:
                if exc.code != "BucketAlreadyOwnedByYou":  # not created meanwhile by a run
                    raise
                return self._state(lock)
            if lock is not None:
                self._configure(lock)
            return BucketState.CREATED

    def _configure(self, lock: Lock) -> None:
        """Set the default retention and the lifecycle rule of a bucket with object lock."""
        from minio.commonconfig import COMPLIANCE, ENABLED, GOVERNANCE, Filter
        from minio.error import S3Error
        from minio.lifecycleconfig import (
            Expiration,
            LifecycleConfig,
            NoncurrentVersionExpiration,
            Rule,
        )
        from minio.objectlockconfig import DAYS, ObjectLockConfig

        mode = COMPLIANCE if lock.mode == "compliance" else GOVERNANCE
        self.client.set_object_lock_config(self.name, ObjectLockConfig(mode, lock.days, DAYS))
        rule = Rule(
            ENABLED,
            rule_filter=Filter(prefix=""),
            rule_id=LIFECYCLE_RULE,
            noncurrent_version_expiration=NoncurrentVersionExpiration(lock.days),
            expiration=Expiration(expired_object_delete_marker=True),
        )
        try:
            self.client.set_bucket_lifecycle(self.name, LifecycleConfig([rule]))
        except S3Error as exc:
            if exc.code != "NotImplemented":
                raise
            # versitygw 1.8 has no lifecycle: versions are kept, and storage grows.
            log.warning("bucket %s: the store has no lifecycle rules: old versions stay", self.name)

    def _state(self, lock: Lock | None) -> BucketState:
        """Say whether an existing bucket is locked; put a weakened default lock back.

        A creation cut off before its default retention was set, or a default an attacker
        removed or shortened, is set again here (each prune asks): new objects are locked.
        """
        from minio.commonconfig import COMPLIANCE, GOVERNANCE
        from minio.error import S3Error
        from minio.objectlockconfig import DAYS

        if lock is None:
            return BucketState.LOCKED
        try:
            found = self.client.get_object_lock_config(self.name)
        except S3Error as exc:
            if "ObjectLockConfiguration" in (exc.code or ""):
                return BucketState.UNLOCKED
            raise
        except ValueError:  # locked, its default rule removed: minio-py cannot read that
            self._configure(lock)
            return BucketState.LOCKED
        mode = COMPLIANCE if lock.mode == "compliance" else GOVERNANCE
        days = found.duration if found.duration_unit == DAYS else 365 * (found.duration or 0)
        if found.mode != mode or not days or days < lock.days:
            self._configure(lock)
        return BucketState.LOCKED

    def dates_by_replacement(self) -> bool:
        """Return whether the store dates an old version by when it stopped being current.

        S3 dates a version by its creation. versitygw 1.8 lists a noncurrent version with
        the moment it was replaced (to the second): a probe key written twice tells which.
        """
        with self.translated():
            first = self.client.put_object(self.name, PROBE_KEY, io.BytesIO(b"1"), 1)
            made = self.client.stat_object(self.name, PROBE_KEY, version_id=first.version_id)
            time.sleep(1.1)  # the stores date to the second
            self.client.put_object(self.name, PROBE_KEY, io.BytesIO(b"2"), 1)
            listed = self.client.list_objects(self.name, prefix=PROBE_KEY, include_version=True)
            old = next((v for v in listed if v.version_id == first.version_id), None)
        replaced, created = old and old.last_modified, made.last_modified
        return bool(replaced and created and replaced.replace(microsecond=0) > created)

    def versioned(self) -> bool:
        """Return whether the bucket keeps versions (a delete then only hides)."""
        with self.translated():
            return self.client.get_bucket_versioning(self.name).status == "Enabled"

    def versions(self, prefix: str) -> list[Version]:
        """Return every version and delete marker under `prefix`."""
        with self.translated():
            return [
                Version(
                    str(o.object_name),
                    str(o.version_id),
                    o.last_modified,
                    bool(o.is_delete_marker),
                    str(o.is_latest).lower() == "true",
                )
                for o in self.client.list_objects(
                    self.name, prefix=prefix, recursive=True, include_version=True
                )
                if o.last_modified is not None
            ]

    def restore(self, key: str, version_id: str) -> None:
        """Make version `version_id` of `key` current again (as a new version)."""
        from minio.commonconfig import CopySource

        with self.translated():
            self.client.copy_object(
                self.name, key, CopySource(self.name, key, version_id=version_id)
            )

    def hide(self, key: str) -> None:
        """Hide `key` behind a delete marker; its versions stay."""
        with self.translated():
            self.client.remove_object(self.name, key)

    def retention(self, key: str, version_id: str) -> datetime | None:
        """Return until when version `version_id` of `key` is locked, None if it is not."""
        with self.translated():
            found = self.client.get_object_retention(self.name, key, version_id=version_id)
        return found.retain_until_date if found else None

    def retain(self, key: str, version_id: str, until: datetime, mode: str) -> None:
        """Lock version `version_id` of `key` until `until` (a lock is only ever extended)."""
        from minio.commonconfig import COMPLIANCE, GOVERNANCE
        from minio.retention import Retention

        with self.translated():
            self.client.set_object_retention(
                self.name,
                key,
                Retention(COMPLIANCE if mode == "compliance" else GOVERNANCE, until),
                version_id=version_id,
            )

    @contextmanager
    def translated(self) -> Iterator[None]:
        """Turn what minio-py and urllib3 raise into StorageError, credentials masked."""
        from minio.error import InvalidResponseError, S3Error, ServerError

        where = f"bucket {self.name} at {self.host}"
        try:
            yield
        except S3Error as exc:
            if exc.code == "BucketAlreadyExists":
                raise StorageError(
                    f"{where} belongs to another account; choose another "
                    "UNSTOPPABLE_S3_BUCKET_PREFIX"
                ) from None
            said = masked(f"{exc.code}: {exc.message}", *self.secrets)
            error = BucketMissing if exc.code == "NoSuchBucket" else StorageError
            raise error(f"{where} (region {self.region}): the object store said {said}") from None
        except ServerError as exc:
            raise StorageError(
                f"{where}: the object store answered HTTP {exc.status_code}"
            ) from None
        except InvalidResponseError as exc:
            code = re.search(r"Response code: (\d+)", str(exc))
            raise StorageError(
                f"{where}: an answer that is not S3's (HTTP {code[1] if code else '?'}): "
                "is UNSTOPPABLE_S3_ENDPOINT an S3 endpoint?"
            ) from None
        except urllib3.exceptions.HTTPError as exc:
            raise StorageError(
                f"cannot reach the object store at {self.host}: {_reason(exc)}"
            ) from None
        except ElementTree.ParseError:  # a 4xx whose XML body was cut short
            raise StorageError(f"{where}: the object store's answer could not be read") from None
        except ValueError as exc:  # minio-py's own checks of names and arguments
            raise StorageError(f"{where}: {masked(str(exc), *self.secrets)}") from None

    def close(self) -> None:
        self.pool.clear()


def _reason(exc: urllib3.exceptions.HTTPError) -> str:
    """Return what went wrong on the wire, without urllib3's repeat of the connection."""
    reason = getattr(exc, "reason", None) or exc
    return str(reason).split("): ", 1)[-1] or type(reason).__name__
