"""The keys a customer file may hold, per source type, and the checks of their values."""

import re
from collections.abc import Callable

from orchestrator.config.customer import MAINTENANCE_DEFAULTS, SecretRef, SourceType
from orchestrator.config.names import (
    whole_number,
)
from orchestrator.schedule import check_cron, check_timezone

MAX_KEEP = 100_000


MAX_RESOURCES = 200


# The source guard's and the change-anomaly rule's keys, for every source type.
GUARD_KEYS = ("SHRINK_THRESHOLD", "ALLOW_EMPTY", "ANOMALY", "ANOMALY_CHANGED")


VERIFY_SLICES_MAX = 1000


VERIFY_SAMPLE_MAX = 200  # each sampled path is an argument of the drill's worker


KEEP_KEYS = ("KEEP_LAST", "KEEP_HOURLY", "KEEP_DAILY", "KEEP_WEEKLY", "KEEP_MONTHLY", "KEEP_YEARLY")


CUSTOMER_KEYS = ("SCHEDULE", "TIMEZONE", "REPO_PASSWORD", "RESOURCES", "PING_URL", *KEEP_KEYS)


# Which keys each source type accepts, and which of them it requires.
RESOURCE_KEYS: dict[SourceType, tuple[frozenset[str], frozenset[str]]] = {
    SourceType.LOCAL: (
        frozenset(
            {"TYPE", "PATH", "SCHEDULE", "EXCLUDE", "PING_URL", *GUARD_KEYS, *MAINTENANCE_DEFAULTS}
        ),
        frozenset({"PATH"}),
    ),
    SourceType.FTPS: (
        frozenset(
            {
                "TYPE",
                "HOST",
                "PORT",
                "USER",
                "PASSWORD",
                "PATH",
                "TLS",
                "TLS_CA_FILE",
                "TLS_FINGERPRINT",
                "TLS_VERIFY",
                "SCHEDULE",
                "EXCLUDE",
                "PING_URL",
                *GUARD_KEYS,
                *MAINTENANCE_DEFAULTS,
            }
        ),
        frozenset({"HOST", "USER", "PASSWORD", "PATH"}),
    ),
    SourceType.SFTP: (
        frozenset(
            {
                "TYPE",
                "HOST",
                "PORT",
                "USER",
                "PASSWORD",
                "KEY_FILE",
                "PATH",
                "HOST_KEY",
                "SCHEDULE",
                "EXCLUDE",
                "PING_URL",
                *GUARD_KEYS,
                *MAINTENANCE_DEFAULTS,
            }
        ),
        frozenset({"HOST", "USER", "PATH", "HOST_KEY"}),
    ),
}


ALL_RESOURCE_KEYS = frozenset().union(*(keys for keys, _ in RESOURCE_KEYS.values()))


Problem = Callable[[str, str], None]


def check_url(key: str, value: str, problem: Problem) -> None:
    if not re.fullmatch(r"https?://[^\s/]+(/\S*)?", value):
        problem(key, "must be an http:// or https:// URL")


def check_schedule(key: str, value: str, timezone: str, problem: Problem) -> None:
    try:
        check_timezone(timezone)
    except ValueError:
        timezone = "UTC"  # reported under TIMEZONE already
    try:
        check_cron(value, timezone)
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


def check_maintenance(keys: dict[str, str], prefix: str, timezone: str, problem: Problem) -> None:
    for key in ("PRUNE_SCHEDULE", "VERIFY_SCHEDULE"):
        if key in keys:
            check_schedule(prefix + key, keys[key], timezone, problem)
    if whole_number(keys.get("VERIFY_SLICES", "4"), 1, VERIFY_SLICES_MAX) is None:
        problem(prefix + "VERIFY_SLICES", f"must be a whole number, 1-{VERIFY_SLICES_MAX}")
    if whole_number(keys.get("VERIFY_SAMPLE", "20"), 0, VERIFY_SAMPLE_MAX) is None:
        problem(prefix + "VERIFY_SAMPLE", f"must be a whole number, 0-{VERIFY_SAMPLE_MAX}")


def check_guard(keys: dict[str, str], prefix: str, problem: Problem) -> None:
    if whole_number(keys.get("SHRINK_THRESHOLD", "50"), 0, 100) is None:
        problem(prefix + "SHRINK_THRESHOLD", "must be a percentage, 0-100")
    if keys.get("ALLOW_EMPTY", "false").lower() not in ("true", "false"):
        problem(prefix + "ALLOW_EMPTY", "must be true or false")
    if keys.get("ANOMALY", "on").lower() not in ("on", "off"):
        problem(prefix + "ANOMALY", "must be on or off")
    if whole_number(keys.get("ANOMALY_CHANGED", "50"), 1, 100) is None:
        problem(prefix + "ANOMALY_CHANGED", "must be a percentage, 1-100")


def check_remote(kind: SourceType, keys: dict[str, str], prefix: str, problem: Problem) -> None:
    if kind is SourceType.LOCAL:
        return
    port = keys.get("PORT", "21" if kind is SourceType.FTPS else "22")
    if whole_number(port, 1, 65535) is None:
        problem(prefix + "PORT", "must be a TCP port number (1-65535)")
    if kind is SourceType.FTPS:
        if keys.get("TLS", "explicit") not in ("explicit", "implicit"):
            problem(prefix + "TLS", "must be explicit or implicit")
        verify = keys.get("TLS_VERIFY", "true").lower()
        if verify not in ("true", "false"):
            problem(prefix + "TLS_VERIFY", "must be true or false")
        fingerprint = keys.get("TLS_FINGERPRINT")
        if fingerprint and not re.fullmatch(
            r"sha256:([0-9A-Fa-f]{2}:){31}[0-9A-Fa-f]{2}", fingerprint
        ):
            problem(
                prefix + "TLS_FINGERPRINT", "must read sha256: and 32 hex pairs separated by ':'"
            )
        if verify == "false" and ("TLS_CA_FILE" in keys or fingerprint):
            problem(prefix + "TLS_VERIFY", "false contradicts TLS_CA_FILE / TLS_FINGERPRINT")
    if kind is SourceType.SFTP and len(keys.get("HOST_KEY", "x y").split()) < 2:
        problem(prefix + "HOST_KEY", "must be a known_hosts line or '<key type> <base64 key>'")
    if kind is SourceType.SFTP and "PASSWORD" not in keys and "KEY_FILE" not in keys:
        problem(prefix + "PASSWORD", "required for TYPE=sftp unless KEY_FILE is set")
    for key in ("TLS_CA_FILE", "KEY_FILE"):
        if key in keys and not keys[key].startswith("/"):
            problem(prefix + key, "must be an absolute path")


class ProblemCounter:
    """Forward problems to `problem` and count them, so a resource knows it failed."""

    def __init__(self, problem: Problem) -> None:
        self.problem = problem
        self.count = 0

    def __call__(self, key: str, message: str) -> None:
        self.count += 1
        self.problem(key, message)
