"""What each source type accepts: one pydantic model per TYPE, each default in one place.

A resource's keys (`<RESOURCE>_<KEY>` in the customer file, prefix removed) are validated by
the model its TYPE chooses; a key the type does not use is refused (`extra="forbid"`). Every
message names the key and what to write, never the value. Values come from the file as text:
numbers are ASCII digits only (`str.isdigit` would take "²" and "٣"), booleans `true`/`false`.
"""

import re
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from orchestrator.config.addresses import host_problem
from orchestrator.config.host_key import parse_host_key
from orchestrator.config.values import (
    SecretRef,
    absolute,
    check_schedule,
    check_url,
    choice,
    number,
)

VERIFY_SLICES_MAX = 1000
VERIFY_SAMPLE_MAX = 200  # each sampled path is an argument of the drill's worker
CONNECTIONS_MAX = 32
_FINGERPRINT = re.compile(r"sha256:([0-9A-Fa-f]{2}:){31}[0-9A-Fa-f]{2}")


class SourceType(StrEnum):
    LOCAL = "local"
    FTPS = "ftps"
    SFTP = "sftp"


class Source(BaseModel):
    """The keys every source type accepts, with their defaults."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    PATH: str
    # The resource's own, else the customer's SCHEDULE (given as the validation's context);
    # None only when neither is set, which the customer file reports.
    SCHEDULE: str | None = None
    EXCLUDE: tuple[str, ...] = ()
    PING_URL: str | None = None
    RECEIPT_URL: str | None = None  # the job's receipts are POSTed here (else RECEIPT_URL)
    SHRINK_THRESHOLD: int = 50  # percent of the baseline a source may lose (source guard)
    ALLOW_EMPTY: bool = False
    ANOMALY: bool = True  # the change-anomaly rule, `on` or `off`
    ANOMALY_CHANGED: int = 50  # percent of files rewritten that makes a snapshot suspect
    # Weekly, at a time `H` spreads by job, so a thousand jobs do not prune at one minute.
    PRUNE_SCHEDULE: str = "H H * * H"
    VERIFY_SCHEDULE: str = "H H * * H"
    VERIFY_SLICES: int = 4  # the whole repository is read once per this many drills
    VERIFY_SAMPLE: int = 20  # files restored and compared per drill

    @field_validator("PATH")
    @classmethod
    def _path(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError("must be an absolute path")
        if len(value) > 4095 or any(len(part) > 255 for part in value.split("/")):
            raise ValueError("too long for a path (4095 bytes, 255 per name)")
        if ".." in value.split("/"):
            raise ValueError("must not contain '..'")
        return value

    @field_validator("SCHEDULE", "PRUNE_SCHEDULE", "VERIFY_SCHEDULE")
    @classmethod
    def _schedule(cls, value: str | None, info: ValidationInfo) -> str | None:
        timezone = (info.context or {}).get("timezone", "UTC")
        return None if value is None else check_schedule(value, timezone)

    @model_validator(mode="after")
    def _inherit_schedule(self, info: ValidationInfo) -> "Source":
        """Take the customer's SCHEDULE (checked where it was read) if the resource sets none."""
        if self.SCHEDULE is None:
            object.__setattr__(self, "SCHEDULE", (info.context or {}).get("schedule"))
        return self

    @field_validator("EXCLUDE", mode="before")
    @classmethod
    def _globs(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(g.strip() for g in value.split(",") if g.strip())
        return value

    @field_validator("PING_URL", "RECEIPT_URL")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return None if value is None else check_url(value)

    @field_validator("SHRINK_THRESHOLD", mode="before")
    @classmethod
    def _shrink(cls, value: Any) -> int:
        return number(value, 0, 100, "a percentage, 0-100")

    @field_validator("ANOMALY_CHANGED", mode="before")
    @classmethod
    def _changed(cls, value: Any) -> int:
        return number(value, 1, 100, "a percentage, 1-100")

    @field_validator("VERIFY_SLICES", mode="before")
    @classmethod
    def _slices(cls, value: Any) -> int:
        return number(value, 1, VERIFY_SLICES_MAX, f"a whole number, 1-{VERIFY_SLICES_MAX}")

    @field_validator("VERIFY_SAMPLE", mode="before")
    @classmethod
    def _sample(cls, value: Any) -> int:
        return number(value, 0, VERIFY_SAMPLE_MAX, f"a whole number, 0-{VERIFY_SAMPLE_MAX}")

    @field_validator("ALLOW_EMPTY", mode="before")
    @classmethod
    def _allow_empty(cls, value: Any) -> bool:
        return choice(value, "true", "false")

    @field_validator("ANOMALY", mode="before")
    @classmethod
    def _anomaly(cls, value: Any) -> bool:
        return choice(value, "on", "off")


class LocalSource(Source):
    """A directory on this host (PATH), bind-mounted read-only into the worker."""

    TYPE: Literal[SourceType.LOCAL]


class RemoteSource(Source):
    """A server the worker mounts with rclone: HOST, PORT, USER and a password or key."""

    HOST: str
    PORT: int
    USER: str
    PASSWORD: SecretRef | None = None
    # Connections to the server at once: files read in parallel and folders listed in
    # parallel. Latency is hidden by this many; a server that allows fewer per client
    # (an FTP host's per-IP limit, a small passive port range) needs it lowered.
    CONNECTIONS: int = 8

    @field_validator("HOST")
    @classmethod
    def _host(cls, value: str) -> str:
        if why := host_problem(value):
            raise ValueError(why)
        return value

    @field_validator("PORT", mode="before")
    @classmethod
    def _port(cls, value: Any) -> int:
        return number(value, 1, 65535, "a TCP port number (1-65535)")

    @field_validator("PASSWORD", mode="before")
    @classmethod
    def _password(cls, value: Any) -> Any:
        return SecretRef.parse(value) if isinstance(value, str) else value

    @field_validator("CONNECTIONS", mode="before")
    @classmethod
    def _connections(cls, value: Any) -> int:
        return number(value, 1, CONNECTIONS_MAX, f"a whole number, 1-{CONNECTIONS_MAX}")


class FtpsSource(RemoteSource):
    """An FTPS server: explicit TLS (AUTH TLS) by default, certificate verified or pinned."""

    TYPE: Literal[SourceType.FTPS]
    PORT: int = 21
    PASSWORD: SecretRef
    TLS: Literal["explicit", "implicit"] = "explicit"
    TLS_CA_FILE: str | None = None
    TLS_FINGERPRINT: str | None = None
    TLS_VERIFY: bool = True

    @field_validator("TLS", mode="before")
    @classmethod
    def _tls(cls, value: Any) -> Any:
        if value not in ("explicit", "implicit"):
            raise ValueError("must be explicit or implicit")
        return value

    @field_validator("TLS_CA_FILE")
    @classmethod
    def _ca_file(cls, value: str | None) -> str | None:
        return absolute(value)

    @field_validator("TLS_FINGERPRINT")
    @classmethod
    def _fingerprint(cls, value: str | None) -> str | None:
        if value and not _FINGERPRINT.fullmatch(value):
            raise ValueError("must read sha256: and 32 hex pairs separated by ':'")
        return value or None

    @field_validator("TLS_VERIFY", mode="before")
    @classmethod
    def _verify(cls, value: Any) -> bool:
        return choice(value, "true", "false")

    @model_validator(mode="after")
    def _no_contradiction(self) -> "FtpsSource":
        if not self.TLS_VERIFY and (self.TLS_CA_FILE or self.TLS_FINGERPRINT):
            raise ValueError("TLS_VERIFY: false contradicts TLS_CA_FILE / TLS_FINGERPRINT")
        return self


class SftpSource(RemoteSource):
    """An SFTP server: its host key pinned (HOST_KEY), a password or a key file to log in."""

    TYPE: Literal[SourceType.SFTP]
    PORT: int = 22
    HOST_KEY: str
    KEY_FILE: str | None = None

    @field_validator("HOST_KEY")
    @classmethod
    def _host_key(cls, value: str) -> str:
        parse_host_key(value)
        return value

    @field_validator("KEY_FILE")
    @classmethod
    def _key_file(cls, value: str | None) -> str | None:
        return absolute(value)

    @model_validator(mode="after")
    def _can_log_in(self) -> "SftpSource":
        if self.PASSWORD is None and self.KEY_FILE is None:
            raise ValueError("PASSWORD: required for TYPE=sftp unless KEY_FILE is set")
        return self


AnySource = Annotated[LocalSource | FtpsSource | SftpSource, Field(discriminator="TYPE")]
_ADAPTER: TypeAdapter[LocalSource | FtpsSource | SftpSource] = TypeAdapter(AnySource)
ALL_SOURCE_KEYS = frozenset(
    key for model in (LocalSource, FtpsSource, SftpSource) for key in model.model_fields
)


def parse_source(
    keys: dict[str, str], timezone: str, schedule: str | None = None
) -> tuple[LocalSource | FtpsSource | SftpSource | None, list[tuple[str, str]]]:
    """Return the source `keys` describe, or None and every (key, message) that is wrong.

    `schedule` is the customer's SCHEDULE: the source's when `keys` set none.
    """
    type_text = keys.get("TYPE")
    if type_text not in {t.value for t in SourceType}:
        why = "required: one of" if type_text is None else "must be one of"
        return None, [("TYPE", f"{why} local, ftps, sftp")]
    try:
        context = {"timezone": timezone, "schedule": schedule}
        return _ADAPTER.validate_python(keys, context=context), []
    except ValidationError as exc:
        return None, [_problem(error, type_text) for error in exc.errors()]


def _problem(error: Any, type_text: str) -> tuple[str, str]:
    """Return (key, message) of one pydantic error, in the words of the customer file."""
    fields = [str(part) for part in error["loc"][1:]]
    key = fields[0] if fields else ""
    kind = error["type"]
    if kind == "missing":
        return key, f"required for TYPE={type_text}"
    if kind == "extra_forbidden":
        return key, f"not used by TYPE={type_text}"
    message = str(error["msg"]).removeprefix("Value error, ")
    if not key:  # a rule across keys names its key first
        key, _, message = message.partition(": ")
    return key, message
