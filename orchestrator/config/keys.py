"""The customer-wide keys of a customer file: one pydantic model, each default in one place.

A resource's own keys (`<RESOURCE>_<KEY>`) are the models of `config/source.py`; RESOURCES,
which says what resources there are and so which keys belong to whom, is read by the loader
(`customer_file.py`). Every message names the key and what to write, never the value.
"""

from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from orchestrator.config import values
from orchestrator.config.values import MIN_TOKEN, SecretRef, number
from orchestrator.schedule import check_timezone

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
    "STATUS_TOKEN",
    "RECEIPT_URL",
    "NODE",
    *KEEP_KEYS,
    *COLD_KEYS,
)
# What a missing key's message says to write, for the keys that must be there.
REQUIRED = {"REPO_PASSWORD": "required (a literal or infisical:NAME)"}
NODE_REFUSED = (
    "pinning a customer to another node is not supported: its hot repositories and "
    "local sources are on the daemon's node, and remote sources cannot run as swarm "
    "services; run a daemon on that node for it instead (docs/scale-out.md)"
)


class CustomerKeys(BaseModel):
    """The keys of a customer file that are the customer's, not one resource's."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    TIMEZONE: str = "UTC"
    SCHEDULE: str | None = None  # each resource's, unless it sets its own
    REPO_PASSWORD: SecretRef
    KEEP_LAST: int | None = None
    KEEP_HOURLY: int | None = None
    KEEP_DAILY: int | None = None
    KEEP_WEEKLY: int | None = None
    KEEP_MONTHLY: int | None = None
    KEEP_YEARLY: int | None = None
    PING_URL: str | None = None
    STATUS_TOKEN: SecretRef | None = None  # opens the customer's status page
    RECEIPT_URL: str | None = None  # receipts are POSTed here too (<R>_RECEIPT_URL per resource)
    # The customer's own key to its bucket: both halves or neither.
    COLD_S3_ACCESS_KEY_ID: str | None = None
    COLD_S3_SECRET_ACCESS_KEY: SecretRef | None = None
    NODE: None = None  # refused: see NODE_REFUSED

    @field_validator("TIMEZONE")
    @classmethod
    def _timezone(cls, value: str) -> str:
        check_timezone(value)
        return value

    @field_validator("SCHEDULE")
    @classmethod
    def _schedule(cls, value: str | None, info: ValidationInfo) -> str | None:
        # A TIMEZONE that failed is reported under its own key; the schedule is read in UTC.
        timezone = info.data.get("TIMEZONE", "UTC")
        return None if value is None else values.check_schedule(value, timezone)

    @field_validator("REPO_PASSWORD", "COLD_S3_SECRET_ACCESS_KEY", "STATUS_TOKEN", mode="before")
    @classmethod
    def _secret(cls, value: Any) -> Any:
        return SecretRef.parse(value) if isinstance(value, str) else value

    @field_validator("STATUS_TOKEN")
    @classmethod
    def _token(cls, value: SecretRef | None) -> SecretRef | None:
        literal = value.literal if value is not None else None
        if literal is not None and len(literal.get_secret_value()) < MIN_TOKEN:
            raise ValueError(
                f"must be at least {MIN_TOKEN} characters (openssl rand -hex 24), or infisical:NAME"
            )
        return value

    @field_validator(*KEEP_KEYS, mode="before")
    @classmethod
    def _keep(cls, value: Any) -> int:
        return number(value, 1, MAX_KEEP, f"a whole number of snapshots, 1 to {MAX_KEEP}")

    @field_validator("PING_URL", "RECEIPT_URL")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return None if value is None else values.check_url(value)

    @field_validator("COLD_S3_ACCESS_KEY_ID")
    @classmethod
    def _key_id(cls, value: str | None) -> str | None:
        if value is not None and (not value or any(c.isspace() for c in value)):
            raise ValueError("must be an access key id: no blanks, not empty")
        return value

    @field_validator("NODE", mode="before")
    @classmethod
    def _node(cls, value: Any) -> None:
        raise ValueError(NODE_REFUSED)

    @model_validator(mode="wrap")
    @classmethod
    def _both_cold_keys(cls, data: Any, handler: Any) -> "CustomerKeys":
        """Report a COLD_S3_* key given without the other beside every other problem."""
        lone = []
        if isinstance(data, dict) and (COLD_KEYS[0] in data) != (COLD_KEYS[1] in data):
            missing = COLD_KEYS[1] if COLD_KEYS[0] in data else COLD_KEYS[0]
            lone = [
                InitErrorDetails(
                    type=PydanticCustomError(
                        "both_or_neither",
                        "required with the other COLD_S3_* key: give both or neither",
                    ),
                    loc=(missing,),
                    input=None,
                )
            ]
        try:
            keys: CustomerKeys = handler(data)
        except ValidationError as exc:
            raise ValidationError.from_exception_data(
                cls.__name__, [*_details(exc), *lone]
            ) from None
        if lone:
            raise ValidationError.from_exception_data(cls.__name__, lone)
        return keys

    @property
    def keep(self) -> tuple[tuple[str, int], ...]:
        """Return (KEEP_*, count) of each retention key set, in KEEP_KEYS order."""
        return tuple((k, n) for k in KEEP_KEYS if (n := getattr(self, k)) is not None)

    @property
    def cold_key(self) -> tuple[str, SecretRef] | None:
        """Return the customer's own S3 key (COLD_S3_*), if it has one."""
        key_id, secret = self.COLD_S3_ACCESS_KEY_ID, self.COLD_S3_SECRET_ACCESS_KEY
        return (key_id, secret) if key_id is not None and secret is not None else None


def _details(exc: ValidationError) -> list[InitErrorDetails]:
    """Return the errors of `exc` as they can be raised again, each with its own words."""
    return [
        InitErrorDetails(
            type=PydanticCustomError("customer_key", str(error["msg"]).replace("{", "{{")),
            loc=error["loc"],
            input=error.get("input"),
        )
        if error["type"] != "missing"
        else InitErrorDetails(type="missing", loc=error["loc"], input=error.get("input"))
        for error in exc.errors()
    ]


def parse_customer_keys(
    found: dict[str, str],
) -> tuple[CustomerKeys | None, list[tuple[str, str]]]:
    """Return the customer-wide keys of `found` (RESOURCES and resource keys left out), or
    None and every (key, message) that is wrong."""
    mine = {k: v for k, v in found.items() if k in CUSTOMER_KEYS and k != "RESOURCES"}
    try:
        return CustomerKeys.model_validate(mine), []
    except ValidationError as exc:
        return None, [_problem(error) for error in exc.errors()]


def _problem(error: Any) -> tuple[str, str]:
    key = str(error["loc"][0]) if error["loc"] else ""
    if error["type"] == "missing":
        return key, REQUIRED.get(key, "required")
    return key, str(error["msg"]).removeprefix("Value error, ")
