"""Customer files (`customers.d/<customer>.env`): read from the file alone, strictly validated."""

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from pydantic import SecretStr

from orchestrator.config.bounds import SourceBounds
from orchestrator.config.files import parse_dotenv
from orchestrator.config.names import (
    _NAME_RULE,
    NAME,
    bucket_problem,
    env_prefix,
    printable,
    whole_number,
)
from orchestrator.errors import ConfigError
from orchestrator.schedule import check_cron, check_timezone

MAX_KEEP = 100_000


MAX_RESOURCES = 200


# The source guard's and the change-anomaly rule's keys, for every source type.
GUARD_KEYS = ("SHRINK_THRESHOLD", "ALLOW_EMPTY", "ANOMALY", "ANOMALY_CHANGED")


# Scheduled maintenance and restore drills, for every source type, with their defaults:
# weekly, at a time `H` spreads by job so that a thousand jobs do not prune at one minute.
MAINTENANCE_DEFAULTS = {
    "PRUNE_SCHEDULE": "H H * * H",
    "VERIFY_SCHEDULE": "H H * * H",
    "VERIFY_SLICES": "4",  # the whole repository is read once per this many drills
    "VERIFY_SAMPLE": "20",  # files restored and compared per drill
}


VERIFY_SLICES_MAX = 1000


VERIFY_SAMPLE_MAX = 200  # each sampled path is an argument of the drill's worker


KEEP_KEYS = ("KEEP_LAST", "KEEP_HOURLY", "KEEP_DAILY", "KEEP_WEEKLY", "KEEP_MONTHLY", "KEEP_YEARLY")


CUSTOMER_KEYS = ("SCHEDULE", "TIMEZONE", "REPO_PASSWORD", "RESOURCES", "PING_URL", *KEEP_KEYS)


class SourceType(StrEnum):
    LOCAL = "local"
    FTPS = "ftps"
    SFTP = "sftp"


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


_Problem = Callable[[str, str], None]


@dataclass(frozen=True)
class SecretRef:
    """A secret: a literal value, or a reference `infisical:NAME` / `infisical:/path/NAME`."""

    literal: SecretStr | None = None
    infisical: str | None = None

    @classmethod
    def parse(cls, text: str) -> "SecretRef":
        """Return the reference `text` spells; raise ValueError if it is empty."""
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


@dataclass(frozen=True)
class Resource:
    """One thing to back up for a customer; `options` holds the type-specific keys."""

    name: str
    type: SourceType
    path: str
    schedule: str
    excludes: tuple[str, ...] = ()
    options: tuple[tuple[str, str], ...] = ()
    password: SecretRef | None = None

    def option(self, key: str, default: str | None = None) -> str | None:
        """Return the value of the type-specific `key`, or `default`."""
        return dict(self.options).get(key, default)

    def maintenance(self, key: str) -> str:
        """Return the maintenance setting `key` (PRUNE_SCHEDULE, VERIFY_SLICES, ...)."""
        return dict(self.options).get(key) or MAINTENANCE_DEFAULTS[key]


@dataclass(frozen=True)
class Customer:
    """A validated customer file."""

    name: str
    file: Path
    timezone: str
    repo_password: SecretRef
    keep: tuple[tuple[str, int], ...]
    resources: tuple[Resource, ...]
    ping_url: str | None = None

    def resource(self, name: str) -> Resource:
        """Return the resource called `name`; raise ConfigError if there is none."""
        for resource in self.resources:
            if resource.name == name:
                return resource
        known = ", ".join(r.name for r in self.resources)
        raise ConfigError([f"{self.file}: RESOURCES: no resource {name!r} (known: {known})"])


def load_customer(path: Path, bounds: SourceBounds | None = None) -> Customer:
    """Read and validate one customer file; raise ConfigError with every problem in it.

    With `bounds`, a local PATH outside them is a problem too.
    """
    problems: list[str] = []
    name = path.name.removesuffix(".env")
    if not NAME.fullmatch(name):
        problems.append(f"{path}: file name: {_NAME_RULE}")
    values = {key: value for key, (value, _line) in parse_dotenv(path).items()}

    def problem(key: str, message: str) -> None:
        problems.append(f"{path}: {key}: {message}")

    timezone = values.get("TIMEZONE", "UTC")
    try:
        check_timezone(timezone)
    except ValueError as exc:
        problem("TIMEZONE", str(exc))
    default_schedule = values.get("SCHEDULE")
    if default_schedule is not None:
        _check_schedule("SCHEDULE", default_schedule, timezone, problem)

    repo_password = _secret("REPO_PASSWORD", values.get("REPO_PASSWORD"), problem)
    keep = _retention(values, problem)
    names = _resource_names(values.get("RESOURCES"), problem)
    owned = _assign_keys(values, names, problem)
    resources = []
    for resource_name in names:
        resource = _resource(
            resource_name, owned[resource_name], default_schedule, timezone, problem, bounds
        )
        if resource is not None:
            resources.append(resource)
    ping_url = values.get("PING_URL")
    if ping_url is not None:
        _check_url("PING_URL", ping_url, problem)
    if problems or repo_password is None:
        raise ConfigError(problems)
    return Customer(name, path, timezone, repo_password, keep, tuple(resources), ping_url)


def _check_url(key: str, value: str, problem: _Problem) -> None:
    if not re.fullmatch(r"https?://[^\s/]+(/\S*)?", value):
        problem(key, "must be an http:// or https:// URL")


def _check_schedule(key: str, value: str, timezone: str, problem: _Problem) -> None:
    try:
        check_timezone(timezone)
    except ValueError:
        timezone = "UTC"  # reported under TIMEZONE already
    try:
        check_cron(value, timezone)
    except ValueError as exc:
        problem(key, str(exc))


def _secret(key: str, value: str | None, problem: _Problem) -> SecretRef | None:
    if value is None:
        problem(key, "required (a literal or infisical:NAME)")
        return None
    try:
        return SecretRef.parse(value)
    except ValueError as exc:
        problem(key, str(exc))
        return None


def _retention(values: dict[str, str], problem: _Problem) -> tuple[tuple[str, int], ...]:
    keep = []
    for key in KEEP_KEYS:
        if key in values:
            count = whole_number(values[key], 1, MAX_KEEP)
            if count is None:
                problem(key, f"must be a whole number of snapshots, 1 to {MAX_KEEP}")
            else:
                keep.append((key, count))
    return tuple(keep)


def _resource_names(value: str | None, problem: _Problem) -> list[str]:
    if value is None or not value.strip():
        problem("RESOURCES", "required: a comma-separated list of resource names")
        return []
    names: list[str] = []
    listed = value.split(",")
    if len(listed) > MAX_RESOURCES:
        problem("RESOURCES", f"lists {len(listed)} resources; at most {MAX_RESOURCES} per customer")
        return []
    for raw in listed:
        name = raw.strip()
        if not NAME.fullmatch(name):
            problem(
                "RESOURCES",
                f"resource name {name[:70]!r} must be 3-63 characters of a-z, 0-9 and '-'",
            )
        elif name in names:
            problem("RESOURCES", f"resource {name!r} is listed twice")
        else:
            names.append(name)
    return names


def _assign_keys(
    values: dict[str, str], names: list[str], problem: _Problem
) -> dict[str, dict[str, str]]:
    """Give each `<RESOURCE>_<KEY>` to its resource; report keys that belong to none."""
    owned: dict[str, dict[str, str]] = {name: {} for name in names}
    # Looked up by the key's own suffixes, so the cost is keys × key kinds, not keys × names.
    by_prefix = {env_prefix(name): name for name in names}
    for key, value in values.items():
        if key in CUSTOMER_KEYS:
            continue
        owners = [
            by_prefix[key[: -len(suffix)]]
            for suffix in ALL_RESOURCE_KEYS
            if key.endswith("_" + suffix) and key[: -len(suffix)] in by_prefix
        ]
        if len(owners) == 1:
            owned[owners[0]][key[len(env_prefix(owners[0])) :]] = value
        elif owners:
            problem(key, f"ambiguous: could belong to resources {', '.join(sorted(owners))}")
        else:
            problem(
                key, "unknown key (not a customer key, nor <RESOURCE>_<KEY> of a listed resource)"
            )
    return owned


def _resource(
    name: str,
    keys: dict[str, str],
    default_schedule: str | None,
    timezone: str,
    problem: _Problem,
    bounds: SourceBounds | None = None,
) -> Resource | None:
    prefix = env_prefix(name)
    report = _Counter(problem)
    type_text = keys.get("TYPE")
    try:
        kind = SourceType(type_text or "")
    except ValueError:
        problem(
            prefix + "TYPE",
            "required: one of local, ftps, sftp"
            if type_text is None
            else "must be one of local, ftps, sftp",
        )
        return None
    accepted, required = RESOURCE_KEYS[kind]
    for key in sorted(set(keys) - accepted):
        report(prefix + key, f"not used by TYPE={kind.value}")
    for key in sorted(required - set(keys)):
        report(prefix + key, f"required for TYPE={kind.value}")
    schedule = keys.get("SCHEDULE", default_schedule)
    if schedule is None:
        report(prefix + "SCHEDULE", "required: set SCHEDULE for the customer or for this resource")
    elif "SCHEDULE" in keys:
        _check_schedule(prefix + "SCHEDULE", keys["SCHEDULE"], timezone, report)
    path = keys.get("PATH", "")
    if path and not path.startswith("/"):
        report(prefix + "PATH", "must be an absolute path")
    elif len(path) > 4095 or any(len(part) > 255 for part in path.split("/")):
        report(prefix + "PATH", "too long for a path (4095 bytes, 255 per name)")
    elif path and ".." in Path(path).parts:
        report(prefix + "PATH", "must not contain '..'")
    elif (
        path
        and kind is SourceType.LOCAL
        and bounds is not None
        and (why := bounds.resolved_problem(path)[1])
    ):
        report(prefix + "PATH", why)
    password = None
    if "PASSWORD" in keys:
        password = _secret(prefix + "PASSWORD", keys["PASSWORD"], report)
    _check_guard(keys, prefix, report)
    _check_maintenance(keys, prefix, timezone, report)
    _check_remote(kind, keys, prefix, report)
    if "PING_URL" in keys:
        _check_url(prefix + "PING_URL", keys["PING_URL"], report)
    excludes = tuple(g.strip() for g in keys.get("EXCLUDE", "").split(",") if g.strip())
    if report.count or schedule is None:
        return None
    options = tuple(
        sorted(
            (k, v)
            for k, v in keys.items()
            if k not in {"TYPE", "PATH", "SCHEDULE", "EXCLUDE", "PASSWORD"}
        )
    )
    return Resource(name, kind, path, schedule, excludes, options, password)


def _check_maintenance(keys: dict[str, str], prefix: str, timezone: str, problem: _Problem) -> None:
    for key in ("PRUNE_SCHEDULE", "VERIFY_SCHEDULE"):
        if key in keys:
            _check_schedule(prefix + key, keys[key], timezone, problem)
    if whole_number(keys.get("VERIFY_SLICES", "4"), 1, VERIFY_SLICES_MAX) is None:
        problem(prefix + "VERIFY_SLICES", f"must be a whole number, 1-{VERIFY_SLICES_MAX}")
    if whole_number(keys.get("VERIFY_SAMPLE", "20"), 0, VERIFY_SAMPLE_MAX) is None:
        problem(prefix + "VERIFY_SAMPLE", f"must be a whole number, 0-{VERIFY_SAMPLE_MAX}")


def _check_guard(keys: dict[str, str], prefix: str, problem: _Problem) -> None:
    if whole_number(keys.get("SHRINK_THRESHOLD", "50"), 0, 100) is None:
        problem(prefix + "SHRINK_THRESHOLD", "must be a percentage, 0-100")
    if keys.get("ALLOW_EMPTY", "false").lower() not in ("true", "false"):
        problem(prefix + "ALLOW_EMPTY", "must be true or false")
    if keys.get("ANOMALY", "on").lower() not in ("on", "off"):
        problem(prefix + "ANOMALY", "must be on or off")
    if whole_number(keys.get("ANOMALY_CHANGED", "50"), 1, 100) is None:
        problem(prefix + "ANOMALY_CHANGED", "must be a percentage, 1-100")


def _check_remote(kind: SourceType, keys: dict[str, str], prefix: str, problem: _Problem) -> None:
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


class _Counter:
    """Forward problems to `problem` and count them, so a resource knows it failed."""

    def __init__(self, problem: _Problem) -> None:
        self.problem = problem
        self.count = 0

    def __call__(self, key: str, message: str) -> None:
        self.count += 1
        self.problem(key, message)


@dataclass(frozen=True)
class Customers:
    """Every customer file of a directory: the valid ones, and the problems of the rest."""

    valid: tuple[Customer, ...]
    problems: tuple[str, ...]
    invalid: tuple[str, ...]

    def get(self, name: str) -> Customer:
        """Return the valid customer `name`; raise ConfigError saying why it is not there."""
        for customer in self.valid:
            if customer.name == name:
                return customer
        if name in self.invalid:
            raise ConfigError([p for p in self.problems if _stem(p) == name])
        raise ConfigError([f"no customer {name!r}: no valid {name}.env in the customers directory"])


def load_customers(
    directory: Path, bucket_prefix: str | None = None, bounds: SourceBounds | None = None
) -> Customers:
    """Load every `*.env` in `directory`; one broken file never hides the others.

    With `bucket_prefix` (the S3 cold backend), a customer whose bucket name would be
    invalid is refused too; with `bounds`, one whose local PATH lies outside them.
    Raises ConfigError only when the directory cannot be read.
    """
    valid, problems, invalid = [], [], []
    for file in customer_files(directory):
        shown = printable(file.name)
        if shown != file.name:
            # Never parse a file whose name cannot even be printed: it is not a customer name.
            problems.append(f"{directory}/{shown}: file name: {_NAME_RULE}")
            invalid.append(shown.removesuffix(".env"))
            continue
        try:
            customer = load_customer(file, bounds)
            if bucket_prefix is not None and (why := bucket_problem(bucket_prefix + customer.name)):
                raise ConfigError([f"{file}: file name: with UNSTOPPABLE_S3_BUCKET_PREFIX, {why}"])
            valid.append(customer)
        except ConfigError as exc:
            problems.extend(exc.problems)
            invalid.append(file.name.removesuffix(".env"))
    return Customers(tuple(valid), tuple(problems), tuple(invalid))


def customer_files(directory: Path) -> list[Path]:
    """Return the `*.env` entries of `directory`, sorted, whatever kind of file they are.

    Raises ConfigError when the directory itself cannot be read.
    """
    try:
        return sorted(p for p in directory.iterdir() if p.name.endswith(".env"))
    except OSError as exc:
        raise ConfigError(
            [f"{directory}: cannot read the customers directory: {exc.strerror}"]
        ) from None


def files_signature(directory: Path) -> tuple[tuple[str, int, int], ...]:
    """Return (name, mtime, size) of each `*.env` entry, to notice a change cheaply.

    An entry that cannot be stat'ed (a dangling symlink) counts by its link; only an
    unreadable directory raises ConfigError.
    """
    signature = []
    for file in customer_files(directory):
        try:
            info = os.stat(file) if os.path.exists(file) else os.lstat(file)
        except OSError:
            signature.append((printable(file.name), -1, -1))
            continue
        signature.append((printable(file.name), info.st_mtime_ns, info.st_size))
    return tuple(signature)


def _stem(problem: str) -> str:
    return Path(problem.split(": ", 1)[0]).name.removesuffix(".env")
