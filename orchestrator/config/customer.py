"""A customer and its resources, as validated from its file: plain frozen data."""

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator.config.names import env_prefix
from orchestrator.config.source import FtpsSource, LocalSource, SftpSource, SourceType
from orchestrator.config.values import SecretRef
from orchestrator.errors import ConfigError
from orchestrator.model import JobKey


@dataclass(frozen=True)
class Resource:
    """One thing to back up for a customer: its name and its validated source."""

    name: str
    source: LocalSource | FtpsSource | SftpSource

    @property
    def schedule(self) -> str:
        """Return when it is backed up: its SCHEDULE, else the customer's (never unset)."""
        assert self.source.SCHEDULE is not None, "a resource is made only with a schedule"
        return self.source.SCHEDULE

    @property
    def type(self) -> SourceType:
        return SourceType(self.source.TYPE)

    @property
    def path(self) -> str:
        return self.source.PATH

    @property
    def excludes(self) -> tuple[str, ...]:
        return self.source.EXCLUDE

    @property
    def password(self) -> SecretRef | None:
        return None if isinstance(self.source, LocalSource) else self.source.PASSWORD


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
    # The customer's own key to its bucket (COLD_S3_*): a worker never gets the global one.
    cold_key: tuple[str, SecretRef] | None = None
    schedule: str | None = None  # SCHEDULE: each resource's unless it sets its own
    status_token: SecretRef | None = None  # STATUS_TOKEN: opens the customer's status page
    receipt_url: str | None = None  # RECEIPT_URL: where receipts are POSTed too

    def secret_refs(self) -> tuple[tuple[str, SecretRef], ...]:
        """Return (KEY, reference) of every secret the file names, literal or Infisical."""
        refs = [("REPO_PASSWORD", self.repo_password)]
        refs += [
            (env_prefix(r.name) + "PASSWORD", r.password) for r in self.resources if r.password
        ]
        if self.cold_key is not None:
            refs.append(("COLD_S3_SECRET_ACCESS_KEY", self.cold_key[1]))
        if self.status_token is not None:
            refs.append(("STATUS_TOKEN", self.status_token))
        return tuple(refs)

    def job(self, resource: Resource) -> JobKey:
        """Return the job of one of this customer's resources."""
        return JobKey(self.name, resource.name)

    def resource(self, name: str) -> Resource:
        """Return the resource called `name`; raise ConfigError if there is none."""
        for resource in self.resources:
            if resource.name == name:
                return resource
        known = ", ".join(r.name for r in self.resources)
        raise ConfigError([f"{self.file}: RESOURCES: no resource {name!r} (known: {known})"])


@dataclass(frozen=True)
class Customers:
    """Every customer file of a directory: the valid ones, and the problems of the rest."""

    valid: tuple[Customer, ...]
    problems: tuple[str, ...]
    invalid: tuple[str, ...]
    unexpected: int = 0  # files whose loading raised something not ours (logged with a trace)
    by_name: Mapping[str, Customer] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "by_name", {c.name: c for c in self.valid})

    def get(self, name: str) -> Customer:
        """Return the valid customer `name`; raise ConfigError saying why it is not there."""
        if (customer := self.by_name.get(name)) is not None:
            return customer
        if name in self.invalid:
            raise ConfigError([p for p in self.problems if _stem(p) == name])
        raise ConfigError([f"no customer {name!r}: no valid {name}.env in the customers directory"])


def _stem(problem: str) -> str:
    return Path(problem.split(": ", 1)[0]).name.removesuffix(".env")
