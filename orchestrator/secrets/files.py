"""Secrets: resolved just before a run, handed to the worker as files, removed after it."""

import os
import shutil
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from secrets import token_hex
from typing import Protocol

from pydantic import SecretStr

from orchestrator import deadline
from orchestrator.config.confinement import DEFAULT_FOLDER, customer_folder, secret_location
from orchestrator.config.settings import Settings
from orchestrator.config.values import SecretRef
from orchestrator.errors import ConfigError, SecretError

# One secret, login included, however slowly the store answers.
LOOKUP_DEADLINE_SECONDS = 60.0


class Lookup(Protocol):
    """A secret store: Infisical, or a stand-in with the same contract."""

    def resolve(self, reference: str, customer: str, key: str) -> SecretStr:
        """Return the value `reference` names; raise SecretError naming `key`."""
        ...


class Resolver:
    """Turns a customer file's secret references into values, just before a run.

    A reference outside the customer's own Infisical folder is refused here too, not only
    by `validate`: whatever let it through, it never reaches the store.
    """

    def __init__(self, store: Lookup | None = None, folder: str = DEFAULT_FOLDER) -> None:
        self.store = store
        self.folder = folder  # UNSTOPPABLE_INFISICAL_CUSTOMER_FOLDER, holding {customer}

    def resolve(self, ref: SecretRef, customer: str, key: str) -> SecretStr:
        """Return the value `ref` stands for; raise SecretError naming `key` if there is none."""
        if ref.literal is not None:
            return ref.literal
        if ref.infisical is not None:
            try:
                secret_location(ref.infisical, customer_folder(self.folder, customer))
            except ValueError as exc:
                raise SecretError(f"{key}: {exc}") from None
        if self.store is None or ref.infisical is None:
            raise SecretError(
                f"{key}: infisical:{ref.infisical}: Infisical is not configured "
                "(set UNSTOPPABLE_INFISICAL_HOST and its credentials)"
            )
        store, name = self.store, ref.infisical
        try:
            return deadline.call(
                lambda: store.resolve(name, customer, key), LOOKUP_DEADLINE_SECONDS, key
            )
        except deadline.DeadlineExceeded as exc:
            raise SecretError(f"{exc} from the secret store") from None


def resolver_for(settings: Settings) -> Resolver:
    """Return the resolver the settings ask for: literals only, or literals and Infisical.

    Raises ConfigError when Infisical is half configured.
    """
    if not settings.INFISICAL_HOST:
        return Resolver(folder=settings.INFISICAL_CUSTOMER_FOLDER)
    secret = client_secret(settings)
    missing = [
        k
        for k, v in (
            ("INFISICAL_CLIENT_ID", settings.INFISICAL_CLIENT_ID),
            ("INFISICAL_CLIENT_SECRET", secret),
            ("INFISICAL_PROJECT_ID", settings.INFISICAL_PROJECT_ID),
        )
        if not v
    ]
    if missing or secret is None:
        raise ConfigError(
            [f"UNSTOPPABLE_{k}: required with UNSTOPPABLE_INFISICAL_HOST" for k in missing]
        )
    from orchestrator.secrets.infisical import InfisicalSecrets

    folder = settings.INFISICAL_CUSTOMER_FOLDER
    return Resolver(
        InfisicalSecrets(
            settings.INFISICAL_HOST,
            settings.INFISICAL_CLIENT_ID or "",
            secret,
            settings.INFISICAL_PROJECT_ID or "",
            settings.INFISICAL_ENVIRONMENT,
            folder,
        ),
        folder,
    )


def client_secret(settings: Settings) -> SecretStr | None:
    """Return the Infisical client secret: the setting, its _FILE, or a systemd credential."""
    if settings.INFISICAL_CLIENT_SECRET is not None:
        return settings.INFISICAL_CLIENT_SECRET
    candidates = [settings.INFISICAL_CLIENT_SECRET_FILE]
    if credentials := os.environ.get("CREDENTIALS_DIRECTORY"):
        candidates.append(Path(credentials) / "infisical-client-secret")
    for path in candidates:
        if path is not None and path.is_file():
            try:
                return SecretStr(path.read_text().strip())
            except OSError as exc:
                raise ConfigError(
                    [f"{path}: cannot read the Infisical client secret: {exc.strerror}"]
                ) from None
    return None


@contextmanager
def secret_files(base: Path, run: str, files: Mapping[str, SecretStr]) -> Iterator[Path]:
    """Write `files` (name -> secret) into a new private directory; remove it on exit.

    Each call owns its directory (`<run>.<random>`, created exclusively), so a run never
    removes secrets another attempt is using. The directory is readable by its owner only
    and each file is created exclusively with mode 0600, so no other local user ever sees
    a secret, not even briefly.
    """
    base.mkdir(parents=True, exist_ok=True, mode=0o700)
    directory = base / f"{run}.{token_hex(8)}"
    directory.mkdir(mode=0o700)
    try:
        for name, value in files.items():
            fd = os.open(directory / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(value.get_secret_value())
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def remove_secrets(base: Path, directory: str) -> None:
    """Remove a run's secrets `directory` if it lies directly under `base`; else nothing.

    The path comes from a container's mounts, so it is checked before anything is removed.
    """
    path = Path(directory)
    if path.parent == base and path.name and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
