"""Reading customer files (`customers.d/<customer>.env`): from the file alone, strictly."""

import logging
import os
from collections.abc import Callable
from pathlib import Path

from orchestrator.config.bounds import SourceBounds
from orchestrator.config.confinement import Confinement, problems_of
from orchestrator.config.customer import Customer, Customers, Resource
from orchestrator.config.files import parse_dotenv
from orchestrator.config.keys import CUSTOMER_KEYS, MAX_RESOURCES, parse_customer_keys
from orchestrator.config.names import (
    _NAME_RULE,
    NAME,
    bucket_problem,
    env_prefix,
    printable,
)
from orchestrator.config.source import ALL_SOURCE_KEYS, LocalSource, parse_source
from orchestrator.errors import ConfigError
from orchestrator.schedule import check_timezone

log = logging.getLogger(__name__)
Problem = Callable[[str, str], None]  # report (KEY, message) of the file being read


DEFAULT = Confinement()


def load_customer(path: Path, confinement: Confinement = DEFAULT) -> Customer:
    """Read and validate one customer file; raise ConfigError with every problem in it.

    Whatever it reaches beyond `confinement` is a problem too (a local PATH outside its
    bounds, when they are given).
    """
    problems: list[str] = []
    name = path.name.removesuffix(".env")
    if not NAME.fullmatch(name):
        problems.append(f"{path}: file name: {_NAME_RULE}")
    values = {key: value for key, (value, _line) in parse_dotenv(path).items()}

    def problem(key: str, message: str) -> None:
        problems.append(f"{path}: {key}: {message}")

    keys, wrong = parse_customer_keys(values)
    for key, message in wrong:
        problem(key, message)
    # Resources are read even when a customer-wide key is wrong: every problem at once.
    timezone = keys.TIMEZONE if keys else _usable_timezone(values.get("TIMEZONE"))
    default_schedule = keys.SCHEDULE if keys else None
    unset = keys is None and "SCHEDULE" in values  # wrong, and reported: not "required"
    names = _resource_names(values.get("RESOURCES"), problem)
    owned = _assign_keys(values, names, problem)
    resources = []
    for resource_name in names:
        resource = _resource(
            resource_name,
            owned[resource_name],
            default_schedule,
            timezone,
            problem,
            confinement.bounds,
            name,
            unset,
        )
        if resource is not None:
            resources.append(resource)
    if problems or keys is None:
        raise ConfigError(problems)
    customer = Customer(
        name,
        path,
        keys.TIMEZONE,
        keys.REPO_PASSWORD,
        keys.keep,
        tuple(resources),
        keys.PING_URL,
        keys.cold_key,
        keys.SCHEDULE,
        keys.STATUS_TOKEN,
        keys.RECEIPT_URL,
    )
    for key_name, message in problems_of(customer, confinement):
        problem(key_name, message)
    if problems:
        raise ConfigError(problems)
    return customer


def _usable_timezone(value: str | None) -> str:
    """Return TIMEZONE if it names a zone, else UTC (a wrong one is reported already)."""
    try:
        check_timezone(value or "UTC")
    except ValueError:
        return "UTC"
    return value or "UTC"


# Names a resource cannot take: the customer's storage holds a folder of that name beside
# the resources' repositories.
RESERVED = {"receipts": "the customer's receipts are kept under receipts/; choose another"}


def _resource_names(value: str | None, problem: Problem) -> list[str]:
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
        elif name in RESERVED:
            problem("RESOURCES", f"resource name {name!r} is reserved: {RESERVED[name]}")
        elif name in names:
            problem("RESOURCES", f"resource {name!r} is listed twice")
        else:
            names.append(name)
    return names


def _assign_keys(
    values: dict[str, str], names: list[str], problem: Problem
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
            for suffix in ALL_SOURCE_KEYS
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
    problem: Problem,
    bounds: SourceBounds | None = None,
    customer: str = "",
    wrong_default: bool = False,
) -> Resource | None:
    prefix = env_prefix(name)
    unscheduled = "SCHEDULE" not in keys and default_schedule is None
    if unscheduled and not wrong_default:
        problem(prefix + "SCHEDULE", "required: set SCHEDULE for the customer or for this resource")
    source, problems = parse_source(keys, timezone, default_schedule)
    for key, message in problems:
        problem(prefix + key, message)
    if source is None or unscheduled:
        return None
    local = isinstance(source, LocalSource)
    if local and bounds is not None and (why := bounds.resolved_problem(source.PATH, customer)[1]):
        problem(prefix + "PATH", why)
        return None
    return Resource(name, source)


def load_customers(
    directory: Path, bucket_prefix: str | None = None, confinement: Confinement = DEFAULT
) -> Customers:
    """Load every `*.env` in `directory`; one broken file never hides the others.

    With `bucket_prefix` (the S3 cold backend), a customer whose bucket name would be
    invalid is refused too; so is one reaching beyond `confinement`.
    Raises ConfigError only when the directory cannot be read.
    """
    valid, problems, invalid = [], [], []
    unexpected = 0
    for file in customer_files(directory):
        shown = printable(file.name)
        if shown != file.name:
            # Never parse a file whose name cannot even be printed: it is not a customer name.
            problems.append(f"{directory}/{shown}: file name: {_NAME_RULE}")
            invalid.append(shown.removesuffix(".env"))
            continue
        try:
            customer = load_customer(file, confinement)
            if bucket_prefix is not None and (why := bucket_problem(bucket_prefix + customer.name)):
                raise ConfigError([f"{file}: file name: with UNSTOPPABLE_S3_BUCKET_PREFIX, {why}"])
            valid.append(customer)
        except ConfigError as exc:
            problems.extend(exc.problems)
            invalid.append(file.name.removesuffix(".env"))
        except Exception as exc:  # a bug of ours or a library's: this file's problem alone
            log.exception("%s: loading failed unexpectedly", file)
            problems.append(f"{file}: file: cannot be loaded ({type(exc).__name__}); see the log")
            invalid.append(file.name.removesuffix(".env"))
            unexpected += 1
    return Customers(tuple(valid), tuple(problems), tuple(invalid), unexpected)


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
