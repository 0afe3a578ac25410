"""The customer-wide keys of a customer file, and how their problems are reported.

A resource's own keys (`<RESOURCE>_<KEY>`) are the models of `config/source.py`.
"""

from collections.abc import Callable

from orchestrator.config import values
from orchestrator.config.values import SecretRef

MAX_KEEP = 100_000
MAX_RESOURCES = 200
KEEP_KEYS = ("KEEP_LAST", "KEEP_HOURLY", "KEEP_DAILY", "KEEP_WEEKLY", "KEEP_MONTHLY", "KEEP_YEARLY")
CUSTOMER_KEYS = ("SCHEDULE", "TIMEZONE", "REPO_PASSWORD", "RESOURCES", "PING_URL", *KEEP_KEYS)
Problem = Callable[[str, str], None]


def check_url(key: str, value: str, problem: Problem) -> None:
    try:
        values.check_url(value)
    except ValueError as exc:
        problem(key, str(exc))


def check_schedule(key: str, value: str, timezone: str, problem: Problem) -> None:
    try:
        values.check_schedule(value, timezone)
    except ValueError as exc:
        problem(key, str(exc))


def secret_ref(key: str, value: str | None, problem: Problem) -> SecretRef | None:
    if value is None:
        problem(key, "required (a literal or infisical:NAME)")
        return None
    try:
        return SecretRef.parse(value)
    except ValueError as exc:
        problem(key, str(exc))
        return None
