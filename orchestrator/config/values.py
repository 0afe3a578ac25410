"""How one value of a customer file is read: numbers, switches, URLs, schedules, secrets.

Values arrive as text. A number is ASCII digits within its range (`str.isdigit` would take
"²" and "٣"), a switch is one of two words, and every refusal says what to write instead.
"""

import re
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, SecretStr

from orchestrator.config.names import whole_number
from orchestrator.schedule import check_cron, check_timezone

MIN_TOKEN = 16  # characters of a status page token: guessing one must not be an option
_URL = re.compile(r"https?://[^\s/]+(/\S*)?")


class SecretRef(BaseModel):
    """A secret: a literal value, or a reference `infisical:NAME` / `infisical:/path/NAME`."""

    model_config = ConfigDict(frozen=True)

    literal: SecretStr | None = None
    infisical: str | None = None

    @classmethod
    def parse(cls, text: str) -> "SecretRef":
        """Return the reference `text` spells; raise ValueError if it is empty or malformed."""
        if text.startswith("infisical:"):
            name = text.removeprefix("infisical:")
            if not re.fullmatch(r"(/[A-Za-z0-9_.-]+)*/?[A-Za-z0-9_.-]+", name):
                raise ValueError(
                    "infisical reference must read infisical:NAME or infisical:/path/NAME"
                )
            return cls(infisical=name)
        if not text:
            raise ValueError("must not be empty")
        return cls(literal=SecretStr(text))


def check_schedule(value: str, timezone: str) -> str:
    """Return the cron `value` if it fires in `timezone`; raise ValueError saying why not."""
    try:
        check_timezone(timezone)
    except ValueError:
        timezone = "UTC"  # reported under TIMEZONE already
    check_cron(value, timezone)
    return value


def check_url(value: str) -> str:
    if not _URL.fullmatch(value):
        raise ValueError("must be an http:// or https:// URL")
    return value


def number(value: Any, low: int, high: int, what: str) -> int:
    if isinstance(value, int):
        number: int | None = value if low <= value <= high else None
    else:
        number = whole_number(str(value), low, high)
    if number is None:
        raise ValueError(f"must be {what}")
    return number


def choice(value: Any, truth: str, falsity: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).lower()
    if text not in (truth, falsity):
        raise ValueError(f"must be {truth} or {falsity}")
    return text == truth


def absolute(value: str | None) -> str | None:
    if value is not None and not value.startswith("/"):
        raise ValueError("must be an absolute path")
    return value


def s3_endpoint(value: str) -> tuple[str, bool]:
    """Return (host[:port], TLS?) of an S3 endpoint; ValueError unless `http(s)://host[:port]`."""
    parts = urlsplit(value.strip())
    if (
        parts.scheme not in ("http", "https")
        or not parts.hostname
        or "@" in parts.netloc
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
        or any(c.isspace() for c in value.strip())
    ):
        raise ValueError("must be http://host[:port] or https://host[:port], without a path")
    return parts.netloc, parts.scheme == "https"
