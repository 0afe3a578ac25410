"""The plain values of S3 storage: its error, a bucket's lock and state, an object version.

Kept apart from the client (`s3.py`, which loads minio-py when a bucket is first opened) so
that every run can name a StorageError or a Lock without loading an S3 library.
"""

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from orchestrator.config.values import s3_endpoint
from orchestrator.errors import UnstoppableError


class StorageError(UnstoppableError):
    """The object store refused or could not be reached."""


class BucketMissing(StorageError):
    """The bucket does not exist (yet)."""


@dataclass(frozen=True)
class Lock:
    """Object lock for new buckets: default retention of `days` in `mode`."""

    days: int
    mode: str  # "compliance" or "governance"


class BucketState(StrEnum):
    CREATED = "created"
    LOCKED = "locked"  # it existed, with object lock
    UNLOCKED = "unlocked"  # it existed without object lock: history is not protected


@dataclass(frozen=True)
class Version:
    """One version of an object, or a delete marker, as the bucket lists it."""

    key: str
    version_id: str
    modified: datetime
    deleted: bool  # a delete marker: the key is hidden from this version on
    latest: bool


def host_of(endpoint: str) -> tuple[str, bool]:
    """Return (host[:port], TLS?) of `endpoint`; StorageError if it is not a plain URL."""
    try:
        return s3_endpoint(endpoint)
    except ValueError as exc:
        raise StorageError(f"UNSTOPPABLE_S3_ENDPOINT {exc}") from None


def masked(text: str, *secrets: str | None) -> str:
    """Return `text` with every non-empty secret masked: servers may echo what they got."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text
