"""Where a customer's receipts are published, and read back from: the customer's own bucket
(`receipts/<resource>/`, object-locked like the data) or, for a local cold store, the folder
beside their repositories (`DATA_DIR/cold/<customer>/receipts/<resource>/`).

A receipt is written once, under its `seq`: a name that exists already is never replaced
(the same bytes there mean it was published before; other bytes are a conflict, raised).
"""

import io
import os
import secrets
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol

from orchestrator.config.settings import Settings
from orchestrator.storage.layout import bucket_lock, job_storage, open_bucket
from orchestrator.storage.s3 import Bucket
from orchestrator.storage.s3_values import BucketMissing, Lock, StorageError

FOLDER = "receipts"  # beside the repositories, or the bucket's prefix; no resource is named so


class Conflict(StorageError):
    """Another receipt holds the name already: the chain forked."""


def name_of(resource: str, seq: int) -> str:
    """Return a receipt's name in its place: names sort in `seq` order."""
    return f"{resource}/{seq:010d}.json"


class Place(Protocol):
    def put(self, name: str, data: bytes) -> None: ...

    def names(self, resource: str) -> list[str]: ...

    def get(self, name: str) -> bytes: ...

    def close(self) -> None: ...


class Folder:
    """Receipts in a folder of this host."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def put(self, name: str, data: bytes) -> None:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
        # Written whole under a name of its own, then linked into place: a reader never sees
        # half a receipt, and a name once taken is never written again.
        own = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
        fd = os.open(own, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            try:
                os.link(own, path)
            except FileExistsError:
                if path.read_bytes() != data:
                    raise Conflict(f"receipt {name}: another one holds its name") from None
        finally:
            os.unlink(own)

    def names(self, resource: str) -> list[str]:
        folder = self.root / resource
        if not folder.is_dir():
            return []
        return sorted(f"{resource}/{p.name}" for p in folder.iterdir() if p.name.endswith(".json"))

    def get(self, name: str) -> bytes:
        return (self.root / name).read_bytes()

    def close(self) -> None:
        return None


class Objects:
    """Receipts in the customer's bucket, under `receipts/`, each locked as it is written
    (not left to the bucket's default retention, which not every store applies)."""

    def __init__(self, bucket: Bucket, lock: Lock | None = None) -> None:
        self.bucket = bucket
        self.lock = lock

    def put(self, name: str, data: bytes) -> None:
        key = f"{FOLDER}/{name}"
        try:
            there: bytes | None = self.get(name)
        except StorageError as exc:
            if "NoSuchKey" not in str(exc):  # not knowing is never taken for absent
                raise
            there = None
        if there == data:
            return
        if there is not None:
            raise Conflict(f"receipt {key}: another one holds its name")
        retention = None
        if self.lock is not None:
            from minio.commonconfig import COMPLIANCE, GOVERNANCE  # noqa: TID251 (a receipt locked as s3.py locks)
            from minio.retention import Retention  # noqa: TID251

            mode = COMPLIANCE if self.lock.mode == "compliance" else GOVERNANCE
            retention = Retention(mode, datetime.now(UTC) + timedelta(days=self.lock.days))
        with self.bucket.translated():
            self.bucket.client.put_object(
                self.bucket.name, key, io.BytesIO(data), len(data),
                content_type="application/json", retention=retention,
            )  # fmt: skip

    def names(self, resource: str) -> list[str]:
        """Return the receipts published; none while the bucket does not exist yet (the
        first backup makes it: a time missed before that is still receipted, and its
        receipt waits in the spool for the bucket)."""
        prefix = f"{FOLDER}/{resource}/"
        try:
            with self.bucket.translated():
                found = self.bucket.client.list_objects(self.bucket.name, prefix=prefix)
                return sorted(str(o.object_name)[len(FOLDER) + 1 :] for o in found)
        except BucketMissing:
            return []

    def get(self, name: str) -> bytes:
        with self.bucket.translated():
            answer = self.bucket.client.get_object(self.bucket.name, f"{FOLDER}/{name}")
            try:
                return bytes(answer.read())
            finally:
                answer.close()
                answer.release_conn()

    def close(self) -> None:
        self.bucket.close()


def place_of(settings: Settings, customer: str, timeout: float = 30) -> Place:
    """Return where `customer`'s receipts are published."""
    if settings.COLD_BACKEND == "s3":
        return Objects(open_bucket(settings, customer, timeout), bucket_lock(settings))
    cold = job_storage(settings, customer, FOLDER).cold
    assert cold is not None  # a local cold store
    return Folder(cold)
