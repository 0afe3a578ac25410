"""minio-py reads S3 times with at most microseconds; some stores send nanoseconds.

versitygw 1.8 lists `LastModified` (and retention dates) as `2026-11-29T23:06:12.238274156Z`.
minio-py 7.2.20 tries `%Y-%m-%dT%H:%M:%S.%fZ`, then `%Y-%m-%dT%H:%M:%SZ`, and raises
ValueError on anything else, so every listing of such a store failed. The modules that
parse response times get a reader that takes any number of fraction digits (Python's
`fromisoformat` keeps microseconds). Imported once, by storage/s3.py.
"""

from datetime import UTC, datetime

import minio.datatypes
import minio.retention


def from_iso8601utc(value: str | None) -> datetime | None:
    """Parse an S3 UTC time with any number of fraction digits (or none)."""
    if value is None:
        return None
    when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


# The parsers were imported by name into the modules that use them.
minio.datatypes.from_iso8601utc = from_iso8601utc  # type: ignore[attr-defined]
minio.retention.from_iso8601utc = from_iso8601utc  # type: ignore[attr-defined]
