"""What a customer file may reach: its own key files and secrets, public servers, sane rates.

One frozen value, built from the settings (`Settings.confinement`) and handed to the loader,
so the parsers stay pure and never read the settings themselves. Its defaults are the
product's: a loader called without one confines as an installation with default settings.
"""

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from orchestrator.config.addresses import Network, literal_problem
from orchestrator.config.bounds import SourceBounds
from orchestrator.config.customer import Customer
from orchestrator.config.key_files import named_in, read_key_file
from orchestrator.config.names import env_prefix
from orchestrator.config.source import RemoteSource
from orchestrator.errors import SecretError
from orchestrator.schedule import GapCheck

DEFAULT_KEYS_DIR = Path("/etc/unstoppable/keys")
DEFAULT_FOLDER = "/customers/{customer}/"


@dataclass(frozen=True)
class Confinement:
    """The limits every customer file is held to (issue 21)."""

    bounds: SourceBounds | None = None  # where local sources may lie (None: not checked)
    keys_dir: Path = DEFAULT_KEYS_DIR  # KEY_FILE and TLS_CA_FILE come from keys_dir/<customer>
    infisical_folder: str = DEFAULT_FOLDER  # the only folder references may name
    private_targets: tuple[Network, ...] = ()  # private networks HOST and PING_URL may reach
    min_interval: int = 300  # seconds; the shortest gap a schedule may have (0: any)
    min_interval_text: str = "5m"  # as the operator wrote it, for messages

    def keys_of(self, customer: str) -> Path:
        """Return the only directory `customer`'s key files may come from."""
        return self.keys_dir / customer

    def folder_of(self, customer: str) -> str:
        """Return the only Infisical folder `customer`'s references may name, ending in /."""
        return customer_folder(self.infisical_folder, customer)


def customer_folder(template: str, customer: str) -> str:
    """Return the Infisical folder `template` (holding `{customer}`) gives `customer`, with /."""
    return template.replace("{customer}", customer).rstrip("/") + "/"


def secret_location(reference: str, folder: str) -> tuple[str, str]:
    """Return (folder, name) an `infisical:` reference (without the scheme) reads.

    A bare `NAME` is NAME in `folder`; `/path/NAME` must lie in `folder` or below it.
    Path parts are compared whole (`/customers/acme-x` is not inside `/customers/acme/`),
    and an empty, `.` or `..` part is refused rather than normalised away.
    Raises ValueError saying why, never repeating the reference.
    """
    base = [part for part in folder.strip("/").split("/") if part]
    relative = not reference.startswith("/")
    parts = reference.split("/") if relative else reference[1:].split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise ValueError("an infisical reference must not hold an empty, '.' or '..' path part")
    if relative:
        parts = base + parts
    if parts[: len(base)] != base or len(parts) <= len(base):
        raise ValueError(
            f"an infisical reference must lie in this customer's folder {folder} "
            "(UNSTOPPABLE_INFISICAL_CUSTOMER_FOLDER): write infisical:NAME"
        )
    return "/" + "/".join(parts[:-1]), parts[-1]


def problems_of(customer: Customer, confinement: Confinement) -> list[tuple[str, str]]:
    """Return (KEY, message) for everything `customer`'s file reaches beyond its confinement.

    Its Infisical references, its key files (read, as each run will), the private
    addresses it writes out, and schedules firing more often than the minimum interval.
    """
    found: list[tuple[str, str]] = []
    folder = confinement.folder_of(customer.name)
    for key, ref in customer.secret_refs():
        if ref.infisical is not None:
            try:
                secret_location(ref.infisical, folder)
            except ValueError as exc:
                found.append((key, str(exc)))
    allowed = confinement.private_targets
    urls = [("PING_URL", customer.ping_url), ("RECEIPT_URL", customer.receipt_url)]
    for resource in customer.resources:
        prefix, source = env_prefix(resource.name), resource.source
        urls += [
            (prefix + "PING_URL", source.PING_URL),
            (prefix + "RECEIPT_URL", source.RECEIPT_URL),
        ]
        if isinstance(source, RemoteSource) and (why := literal_problem(source.HOST, allowed)):
            found.append((prefix + "HOST", why))
        for key, path in named_in(source):
            try:
                read_key_file(path, confinement.keys_of(customer.name))
            except SecretError as exc:
                found.append((prefix + key, str(exc)))
    for key, url in urls:
        try:
            host = urlsplit(url).hostname if url else None
        except ValueError:
            found.append((key, "must be an http:// or https:// URL with a valid host"))
            continue
        if host and (why := literal_problem(host, allowed)):
            found.append((key, f"its host {why}"))
    return found + _too_often(customer, confinement)


def _too_often(customer: Customer, confinement: Confinement) -> list[tuple[str, str]]:
    """Return (KEY, message) for each schedule firing more often than MIN_INTERVAL."""
    schedules = [("SCHEDULE", customer.schedule)]
    for resource in customer.resources:
        prefix, source = env_prefix(resource.name), resource.source
        # A SCHEDULE taken from the customer's is judged once, under SCHEDULE.
        own = source.SCHEDULE if "SCHEDULE" in source.model_fields_set else None
        schedules += [
            (prefix + "SCHEDULE", own),
            (prefix + "PRUNE_SCHEDULE", source.PRUNE_SCHEDULE),
            (prefix + "VERIFY_SCHEDULE", source.VERIFY_SCHEDULE),
        ]
    check, found = GapCheck(confinement.min_interval), []
    for key, expression in schedules:
        if expression is None:
            continue
        try:
            gap = check.gap(expression)
        except ValueError as exc:
            found.append((key, str(exc)))
            continue
        if gap is not None:
            found.append(
                (
                    key,
                    f"fires every {gap}s, more often than "
                    f"UNSTOPPABLE_MIN_INTERVAL={confinement.min_interval_text}",
                )
            )
    return found
