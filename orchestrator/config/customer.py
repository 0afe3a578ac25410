"""A customer and its resources, as validated from its file: plain frozen data."""

import re
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from pydantic import SecretStr

from orchestrator.errors import ConfigError

# Scheduled maintenance and restore drills, for every source type, with their defaults:
# weekly, at a time `H` spreads by job so that a thousand jobs do not prune at one minute.
MAINTENANCE_DEFAULTS = {
    "PRUNE_SCHEDULE": "H H * * H",
    "VERIFY_SCHEDULE": "H H * * H",
    "VERIFY_SLICES": "4",  # the whole repository is read once per this many drills
    "VERIFY_SAMPLE": "20",  # files restored and compared per drill
}


class SourceType(StrEnum):
    LOCAL = "local"
    FTPS = "ftps"
    SFTP = "sftp"


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


def _stem(problem: str) -> str:
    return Path(problem.split(": ", 1)[0]).name.removesuffix(".env")
