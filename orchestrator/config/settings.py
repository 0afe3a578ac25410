"""Global settings: `UNSTOPPABLE_*` variables over the file named by `UNSTOPPABLE_CONFIG`."""

import ipaddress
import re
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import (
    Field,
    PrivateAttr,
    SecretStr,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from orchestrator import __version__
from orchestrator.config.durations import parse_duration
from orchestrator.config.values import MIN_TOKEN, check_url, s3_endpoint

if TYPE_CHECKING:
    from orchestrator.config.bounds import SourceBounds
    from orchestrator.config.confinement import Confinement


DEFAULT_CONFIG = Path("/etc/unstoppable/unstoppable.env")


class Settings(BaseSettings):
    """The daemon's and CLI's settings; frozen once loaded."""

    model_config = SettingsConfigDict(
        env_prefix="UNSTOPPABLE_", extra="forbid", frozen=True, case_sensitive=True
    )

    CUSTOMERS_DIR: Path = Path("/etc/unstoppable/customers.d")
    DATA_DIR: Path = Path("/var/lib/unstoppable")
    COLD_BACKEND: Literal["local", "s3"] = "local"
    S3_ENDPOINT: str | None = None
    S3_REGION: str = "us-east-1"
    S3_ACCESS_KEY_ID: str | None = None
    S3_SECRET_ACCESS_KEY: SecretStr | None = None
    S3_SESSION_TOKEN: SecretStr | None = None  # with temporary (STS) credentials
    S3_BUCKET_PREFIX: str = ""
    # New buckets lock each object version this many days (0: no object lock), in this mode.
    S3_LOCK_DAYS: int = Field(default=30, ge=0, le=36500)
    S3_LOCK_MODE: Literal["compliance", "governance"] = "compliance"
    S3_LOCK_MARGIN: str = "7d"  # BackupLockExpiring fires when a live object's lock ends sooner
    WORKER_IMAGE: str = f"unstoppable-worker:{__version__}"
    RUNTIME: Literal["docker", "swarm"] = "docker"  # swarm: workers as services of a cluster
    METRICS_LISTEN: str = "127.0.0.1:9819"
    # Customers' status pages (/status/<customer>) and the operator's overview (/status/).
    STATUS_LISTEN: str | None = None  # host:port; off when unset
    STATUS_ADMIN_TOKEN: SecretStr | None = None  # opens /status/ and every customer's page
    MAX_PARALLEL: int = Field(default=4, ge=1, le=1000)
    MAX_PARALLEL_PER_CUSTOMER: int | None = Field(default=None, ge=1, le=1000)
    # Comma-separated roots a local PATH must lie in, each may hold `{customer}`: always in force.
    SOURCE_ROOTS: str = "/srv/{customer}"
    # KEY_FILE and TLS_CA_FILE are read from KEYS_DIR/<customer>/ only.
    KEYS_DIR: Path = Path("/etc/unstoppable/keys")
    # The only Infisical folder a customer file may reference; `{customer}` is its name.
    INFISICAL_CUSTOMER_FOLDER: str = "/customers/{customer}/"
    # CIDRs in loopback, link-local or private ranges a customer's HOST or ping URL may reach.
    ALLOW_PRIVATE_TARGETS: str = ""
    MIN_INTERVAL: str = "5m"  # the shortest gap of any customer schedule; `0`: no limit
    WORKER_MEMORY: str = "2g"  # each worker's memory limit (docker's syntax: 512m, 2g)
    WORKER_PIDS: int = Field(default=512, ge=16, le=65536)
    WORKER_LOG_SIZE: str = "10m"  # the engine keeps at most this much of a worker's output
    WORKER_TMPFS: str = "64m"  # a worker's root is read-only; /tmp is a tmpfs of this size
    JOB_TIMEOUT: str = "12h"
    MIN_KEEP_WITHIN: str = "7d"  # every forget keeps all snapshots this young
    CATCH_UP: Literal["once", "never"] = "once"
    INFISICAL_HOST: str | None = None
    INFISICAL_CLIENT_ID: str | None = None
    INFISICAL_CLIENT_SECRET: SecretStr | None = None
    INFISICAL_CLIENT_SECRET_FILE: Path | None = None
    INFISICAL_PROJECT_ID: str | None = None
    INFISICAL_ENVIRONMENT: str = "prod"
    PING_URL: str | None = (
        None  # healthchecks-style base; each job pings <base>/<customer>_<resource>
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Take only the values given: `load_settings` merges the environment and the file."""
        return (init_settings,)

    @field_validator("JOB_TIMEOUT", "MIN_KEEP_WITHIN", "S3_LOCK_MARGIN")
    @classmethod
    def _duration(cls, value: str) -> str:
        parse_duration(value)
        return value

    @field_validator("MIN_INTERVAL")
    @classmethod
    def _interval(cls, value: str) -> str:
        if value.strip() != "0":
            parse_duration(value)
        return value

    @field_validator("WORKER_MEMORY", "WORKER_LOG_SIZE", "WORKER_TMPFS")
    @classmethod
    def _size(cls, value: str) -> str:
        if not re.fullmatch(r"[1-9][0-9]{0,8}[kmg]", value):
            raise ValueError("must be a size such as 512m or 2g (k, m or g)")
        return value

    @field_validator("ALLOW_PRIVATE_TARGETS")
    @classmethod
    def _cidrs(cls, value: str) -> str:
        for cidr in filter(None, (c.strip() for c in value.split(","))):
            try:
                ipaddress.ip_network(cidr, strict=False)
            except ValueError:
                raise ValueError(f"{cidr[:50]!r} is not a CIDR such as 127.0.0.0/8") from None
        return value

    @field_validator("INFISICAL_CUSTOMER_FOLDER")
    @classmethod
    def _folder(cls, value: str) -> str:
        if not value.startswith("/") or "{customer}" not in value:
            raise ValueError("must be an absolute Infisical folder holding {customer}")
        return value

    # Each duration setting, parsed once when the settings are loaded (its text stays the
    # field: messages quote what the operator wrote).
    _durations: dict[str, timedelta] = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _parse_durations(self) -> "Settings":
        keys = ("JOB_TIMEOUT", "MIN_KEEP_WITHIN", "S3_LOCK_MARGIN", "MIN_INTERVAL")
        self._durations = {
            key: timedelta(0)
            if key == "MIN_INTERVAL" and self.MIN_INTERVAL.strip() == "0"
            else timedelta(seconds=parse_duration(getattr(self, key)))
            for key in keys
        }
        return self

    @model_validator(mode="after")
    def _s3_complete(self) -> "Settings":
        if self.COLD_BACKEND == "s3":
            missing = [
                k
                for k in ("S3_ENDPOINT", "S3_ACCESS_KEY_ID", "S3_SECRET_ACCESS_KEY")
                if getattr(self, k) is None
            ]
            if missing:
                raise ValueError(
                    f"COLD_BACKEND=s3 needs UNSTOPPABLE_{', UNSTOPPABLE_'.join(missing)}"
                )
        return self

    @property
    def bucket_prefix(self) -> str | None:
        """Return the S3 bucket prefix when the cold backend is S3, else None."""
        return self.S3_BUCKET_PREFIX if self.COLD_BACKEND == "s3" else None

    @field_validator("S3_ENDPOINT")
    @classmethod
    def _endpoint(cls, value: str | None) -> str | None:
        if value is not None:
            s3_endpoint(value)
        return value

    @field_validator("PING_URL")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return None if value is None else check_url(value)

    @field_validator("STATUS_LISTEN")
    @classmethod
    def _listen(cls, value: str | None) -> str | None:
        if not value:
            return None  # set empty: off, as unset
        host, _, port = value.rpartition(":")
        if not (host and port.isascii() and port.isdigit()):
            raise ValueError("must be host:port, such as 127.0.0.1:9820")
        return value

    @field_validator("STATUS_ADMIN_TOKEN")
    @classmethod
    def _token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < MIN_TOKEN:
            raise ValueError(f"must be at least {MIN_TOKEN} characters (openssl rand -hex 24)")
        return value

    @field_validator("SOURCE_ROOTS")
    @classmethod
    def _roots(cls, value: str) -> str:
        roots = [r.strip() for r in value.split(",") if r.strip()]
        if not roots or not all(r.startswith("/") and r != "/" for r in roots):
            raise ValueError("must be a comma-separated list of absolute paths other than /")
        return value

    @field_validator("CUSTOMERS_DIR", "DATA_DIR", "KEYS_DIR")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        if not value.is_absolute():
            raise ValueError("must be an absolute path")
        return value

    @property
    def bounds(self) -> "SourceBounds":
        """Return where local sources may lie on this installation."""
        from orchestrator.config.bounds import SourceBounds

        return SourceBounds.of(self.DATA_DIR, self.CUSTOMERS_DIR, self.source_roots)

    @property
    def per_customer_share(self) -> int:
        """Return how many runs one customer may have at once: the setting, else half."""
        return self.MAX_PARALLEL_PER_CUSTOMER or max(1, self.MAX_PARALLEL // 2)

    @property
    def source_roots(self) -> tuple[str, ...]:
        """Return the roots local sources must lie in, each may still hold `{customer}`."""
        return tuple(r.strip() for r in self.SOURCE_ROOTS.split(",") if r.strip())

    @property
    def private_targets(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        """Return the private networks a customer's HOST or ping URL may still reach."""
        cidrs = (c.strip() for c in self.ALLOW_PRIVATE_TARGETS.split(","))
        return tuple(ipaddress.ip_network(c, strict=False) for c in cidrs if c)

    @property
    def min_interval_seconds(self) -> int:
        """Return MIN_INTERVAL in seconds (0: any schedule is allowed)."""
        return int(self._durations["MIN_INTERVAL"].total_seconds())

    @property
    def confinement(self) -> "Confinement":
        """Return the limits every customer file of this installation is held to."""
        from orchestrator.config.confinement import Confinement

        return Confinement(
            self.bounds,
            self.KEYS_DIR,
            self.INFISICAL_CUSTOMER_FOLDER,
            self.private_targets,
            self.min_interval_seconds,
            self.MIN_INTERVAL.strip(),
        )

    def keys_dir(self, customer: str) -> Path:
        """Return the only directory the customer's KEY_FILE and TLS_CA_FILE may come from."""
        from orchestrator.config.confinement import Confinement

        return Confinement(keys_dir=self.KEYS_DIR).keys_of(customer)

    def infisical_folder(self, customer: str) -> str:
        """Return the only Infisical folder the customer's file may reference, ending in /."""
        from orchestrator.config.confinement import Confinement

        return Confinement(infisical_folder=self.INFISICAL_CUSTOMER_FOLDER).folder_of(customer)

    @property
    def min_keep_within_seconds(self) -> int:
        """Return MIN_KEEP_WITHIN in seconds."""
        return int(self._durations["MIN_KEEP_WITHIN"].total_seconds())

    @property
    def job_timeout_seconds(self) -> int:
        """Return JOB_TIMEOUT in seconds."""
        return int(self._durations["JOB_TIMEOUT"].total_seconds())

    @property
    def lock_margin(self) -> timedelta:
        """Return S3_LOCK_MARGIN: how soon a lock's end is worth an alert."""
        return self._durations["S3_LOCK_MARGIN"]
