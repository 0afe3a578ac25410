"""Naming rules: customer, resource and bucket names, key prefixes, printable text."""

import ipaddress
import re

NAME = re.compile(r"[a-z0-9][a-z0-9-]{1,61}[a-z0-9]")

_NAME_RULE = (
    "the customer name (the file stem) must be 3-63 characters of "
    "a-z, 0-9 and '-', starting and ending with a letter or digit"
)


def env_prefix(resource: str) -> str:
    """Return the key prefix of `resource`: upper-cased, `-` turned into `_`, then `_`."""
    return resource.upper().replace("-", "_") + "_"


def whole_number(text: str, low: int, high: int) -> int | None:
    """Return `text` as an integer if it is ASCII digits within [low, high], else None.

    `str.isdigit` accepts "²" and "٣", which `int` then refuses or misreads.
    """
    if not re.fullmatch(r"[0-9]{1,10}", text):
        return None
    number = int(text)
    return number if low <= number <= high else None


def printable(text: str) -> str:
    """Return `text` with undecodable bytes and control characters escaped, for one line."""
    raw = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in raw)


_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


def bucket_problem(name: str) -> str | None:
    """Return why `name` is not a valid S3 bucket name, or None if it is."""
    if not _BUCKET.match(name):
        return f"bucket {name!r} must be 3-63 characters of a-z, 0-9, '.' and '-'"
    if ".." in name or ".-" in name or "-." in name:
        return f"bucket {name!r} must not contain '..', '.-' or '-.'"
    if name.startswith(("xn--", "sthree-")) or name.endswith(("-s3alias", "--ol-s3")):
        return f"bucket {name!r} uses a prefix or suffix S3 reserves"
    try:
        ipaddress.IPv4Address(name)
        return f"bucket {name!r} must not look like an IP address"
    except ValueError:
        return None
