"""The customer-wide keys of a customer file, and how their problems are reported.

A resource's own keys (`<RESOURCE>_<KEY>`) are the models of `config/source.py`.
"""

from collections.abc import Callable

from orchestrator.config import values
from orchestrator.config.values import SecretRef

MAX_KEEP = 100_000
MAX_RESOURCES = 200
KEEP_KEYS = ("KEEP_LAST", "KEEP_HOURLY", "KEEP_DAILY", "KEEP_WEEKLY", "KEEP_MONTHLY", "KEEP_YEARLY")
COLD_KEYS = ("COLD_S3_ACCESS_KEY_ID", "COLD_S3_SECRET_ACCESS_KEY")
CUSTOMER_KEYS = (
    "SCHEDULE",
    "TIMEZONE",
    "REPO_PASSWORD",
    "RESOURCES",
    "PING_URL",
    "NODE",
    *KEEP_KEYS,
    *COLD_KEYS,
)
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


def cold_key(values: dict[str, str], problem: Problem) -> tuple[str, SecretRef] | None:
    """Return the customer's own S3 key (COLD_S3_*), both halves or neither."""
    key_id, secret = (values.get(key) for key in COLD_KEYS)
    if key_id is None and secret is None:
        return None
    if key_id is None or secret is None:
        missing = COLD_KEYS[0] if key_id is None else COLD_KEYS[1]
        problem(missing, "required with the other COLD_S3_* key: give both or neither")
        return None
    if not key_id or any(c.isspace() for c in key_id):
        problem(COLD_KEYS[0], "must be an access key id: no blanks, not empty")
        return None
    ref = secret_ref(COLD_KEYS[1], secret, problem)
    return (key_id, ref) if ref is not None else None


def node(value: str | None, problem: Problem) -> None:
    """Refuse NODE=: pinning a customer to another swarm node is not supported (yet)."""
    if value is not None:
        problem(
            "NODE",
            "pinning a customer to another node is not supported: its hot repositories and "
            "local sources are on the daemon's node, and remote sources cannot run as swarm "
            "services; run a daemon on that node for it instead (docs/scale-out.md)",
        )
