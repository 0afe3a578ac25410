"""What a versioned bucket held at a moment, and which live objects need their lock extended.

Pure functions over the versions `Bucket.versions` lists; the bucket carries out the steps.
"""

from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from orchestrator.storage.s3_values import Version


@dataclass(frozen=True)
class Step:
    """Make `version_id` of `key` current again, or hide `key` when `version_id` is None."""

    key: str
    version_id: str | None


def as_of(versions: list[Version], moment: datetime) -> list[Step]:
    """Return the steps that make every key read as it did at `moment`.

    For each key (directory markers aside), the newest version not newer than `moment`
    becomes current again; a key that did not exist then, or was deleted then, is hidden.
    Nothing is ever deleted: every step adds a version or a delete marker, so a recovery
    can itself be undone.
    """
    by_key: dict[str, list[Version]] = {}
    for version in versions:
        if not _directory(version.key):
            by_key.setdefault(version.key, []).append(version)
    steps = []
    for key in sorted(by_key):
        ordered = sorted(by_key[key], key=lambda v: (v.modified, v.latest), reverse=True)
        current = next((v for v in ordered if v.latest), ordered[0])
        then = _then(ordered, moment)
        if then is None or then.deleted:
            if not current.deleted:
                steps.append(Step(key, None))
        elif then.version_id != current.version_id:
            steps.append(Step(key, then.version_id))
    return steps


def by_creation(versions: list[Version]) -> list[Version]:
    """Date each version by its creation, from a store that dates old ones by their replacement.

    versitygw 1.8 lists a noncurrent version with the moment it stopped being current, to the
    second (`Bucket.dates_by_replacement`). Its version ids are ULIDs, which carry their
    creation to the millisecond: where an id is one, that is the date. Otherwise a version
    was created when the one before it was replaced, so each key's dates shift by one,
    newest first; the oldest version's creation is then not told, and it is dated at the
    beginning of time (a moment before it reads as its first state, not as nothing).
    """
    by_key: dict[str, list[Version]] = {}
    for version in versions:
        by_key.setdefault(version.key, []).append(version)
    dated = []
    for chain in by_key.values():
        chain.sort(key=lambda v: (v.latest, ulid_time(v.version_id) or v.modified, v.version_id))
        chain.reverse()  # newest first
        for newer, older in zip(chain, [*chain[1:], None], strict=True):
            when = ulid_time(newer.version_id) or (
                newer.modified if newer.latest else (older.modified if older else _DAWN)
            )
            dated.append(replace(newer, modified=when))
    return dated


_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def ulid_time(version_id: str) -> datetime | None:
    """Return the creation time a ULID version id carries, or None if it is not a ULID."""
    if len(version_id) != 26 or any(c not in _CROCKFORD for c in version_id.upper()):
        return None
    millis = 0
    for char in version_id[:10].upper():
        millis = millis * 32 + _CROCKFORD.index(char)
    if not _ULID_SANE[0] <= millis <= _ULID_SANE[1]:
        return None
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=millis)


_ULID_SANE = (946_684_800_000, 7_258_118_400_000)  # 2000 to 2200, in ms since 1970
_DAWN = datetime.min.replace(tzinfo=UTC)


def existed(versions: list[Version], key: str, moment: datetime) -> bool:
    """Return whether `key` held data (was not deleted, nor yet to come) at `moment`."""
    ordered = sorted(
        (v for v in versions if v.key == key), key=lambda v: (v.modified, v.latest), reverse=True
    )
    then = _then(ordered, moment)
    return then is not None and not then.deleted


def _then(newest_first: list[Version], moment: datetime) -> Version | None:
    return next((v for v in newest_first if v.modified <= moment), None)


def live(versions: list[Version]) -> list[Version]:
    """Return the current version of every key that is not deleted: what the repository reads."""
    return [v for v in versions if v.latest and not v.deleted and not _directory(v.key)]


def _directory(key: str) -> bool:
    """Return whether `key` is a directory marker (`data/00/`): empty, and never data.

    rustic's object store layer writes one per directory. MinIO keeps them outside
    versioning (version `null`), so they can be neither restored nor usefully locked.
    """
    return key.endswith("/")


def needs_extension(
    locked_until: datetime | None, now: datetime, days: int, slack: timedelta
) -> datetime | None:
    """Return the new retention end for a live object, or None if its lock reaches far enough.

    Each run renews every lock to `now + days` unless it is within `slack` of that already
    (what the last backup wrote), so live data stays locked at least `days` minus one
    maintenance interval ahead.
    """
    target = now + timedelta(days=days)
    if locked_until is not None and locked_until >= target - slack:
        return None
    return target
