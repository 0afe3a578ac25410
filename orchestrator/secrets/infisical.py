"""Secrets from Infisical: the only module that imports the official SDK (`infisicalsdk`).

A reference `infisical:NAME` reads NAME from the customer's folder (by default
`/customers/<customer>/`); `infisical:/path/NAME` reads it from `/path`, which must be that
folder or lie below it (`config.confinement.secret_location`, checked again here). Values
are resolved just before each run and cached briefly by the SDK; an expired or revoked token
is replaced by logging in again; a refused login is not retried for a while, so a wrong
client secret cannot lock the machine identity out by repetition. Every HTTP call has a deadline.
"""

import logging
import threading
import time
from typing import Any

import requests
from infisical_sdk import InfisicalSDKClient
from infisical_sdk.infisical_requests import APIError, InfisicalError
from pydantic import SecretStr
from requests import PreparedRequest, Response
from requests.adapters import HTTPAdapter

from orchestrator.config.confinement import DEFAULT_FOLDER, customer_folder, secret_location
from orchestrator.errors import SecretError

log = logging.getLogger(__name__)

CACHE_SECONDS = 30


CONNECT_TIMEOUT, READ_TIMEOUT = 5.0, 15.0


LOGIN_BACKOFF_SECONDS = (30, 60, 120, 300, 900)

EXPIRY_MARGIN_SECONDS = 30

LOGIN_WAIT_SECONDS = 20


class _DeadlineAdapter(HTTPAdapter):
    """Give every request the SDK sends a timeout: the SDK itself sets none."""

    def send(  # type: ignore[override]
        self, request: PreparedRequest, timeout: Any = None, **kwargs: Any
    ) -> Response:
        return super().send(request, timeout=timeout or (CONNECT_TIMEOUT, READ_TIMEOUT), **kwargs)


def split_reference(reference: str, folder: str) -> tuple[str, str]:
    """Return (folder, name) of `infisical:` reference text (without the scheme).

    `folder` is the customer's own; a reference outside it raises SecretError.
    """
    try:
        return secret_location(reference, folder)
    except ValueError as exc:
        raise SecretError(str(exc)) from None


class InfisicalSecrets:
    """Resolves `infisical:` references with a machine identity (universal auth)."""

    def __init__(
        self,
        host: str,
        client_id: str,
        client_secret: SecretStr,
        project_id: str,
        environment: str,
        folder: str = DEFAULT_FOLDER,
    ) -> None:
        self.host = host
        self.folder = folder  # UNSTOPPABLE_INFISICAL_CUSTOMER_FOLDER, holding {customer}
        self.client_id = client_id
        self.client_secret = client_secret
        self.project_id = project_id
        self.environment = environment
        self.client = InfisicalSDKClient(host=host, cache_ttl=CACHE_SECONDS)
        adapter = _DeadlineAdapter()
        self.client.api.session.mount("http://", adapter)
        self.client.api.session.mount("https://", adapter)
        self.lock = threading.Lock()
        self.token_expires = 0.0
        self.failed_logins = 0
        self.next_login = 0.0

    def resolve(self, reference: str, customer: str, key: str) -> SecretStr:
        """Return the value `reference` names; raise SecretError naming `key`, never a value."""
        try:
            folder, name = split_reference(reference, customer_folder(self.folder, customer))
        except SecretError as exc:
            raise SecretError(f"{key}: {exc}") from None
        where = f"{key}: infisical:{reference}"
        for attempt in (1, 2):
            self._login(where)
            try:
                secret = self.client.secrets.get_secret_by_name(
                    secret_name=name,
                    project_id=self.project_id,
                    environment_slug=self.environment,
                    secret_path=folder,
                    # The server would fill in `${env.other.folder.NAME}` and imported
                    # folders with the identity's rights: another customer's secrets.
                    expand_secret_references=False,
                    include_imports=False,
                )
                return SecretStr(secret.secretValue)
            except APIError as exc:
                if exc.status_code == 401 and attempt == 1:
                    self.token_expires = 0.0  # revoked or expired early: log in again
                    continue
                if exc.status_code == 404:
                    raise SecretError(
                        f"{where}: no secret {name} in {folder} ({self.environment})"
                    ) from None
                raise SecretError(f"{where}: Infisical refused: HTTP {exc.status_code}") from None
            except (InfisicalError, requests.RequestException, OSError) as exc:
                raise SecretError(f"{where}: Infisical unreachable: {type(exc).__name__}") from None
        raise SecretError(f"{where}: Infisical rejected a fresh token")

    def _login(self, where: str) -> None:
        # Never wait forever behind another thread's login: a login the server drips out
        # holds the lock, and every customer's run would queue behind it.
        if not self.lock.acquire(timeout=LOGIN_WAIT_SECONDS):
            raise SecretError(f"{where}: Infisical: another login is still waiting for an answer")
        try:
            self._login_locked(where)
        finally:
            self.lock.release()

    def _login_locked(self, where: str) -> None:
        now = time.monotonic()
        if now < self.token_expires - EXPIRY_MARGIN_SECONDS:
            return
        if now < self.next_login:
            raise SecretError(
                f"{where}: Infisical login refused earlier; next try in "
                f"{int(self.next_login - now)} s"
            )
        try:
            result = self.client.auth.universal_auth.login(
                client_id=self.client_id,
                client_secret=self.client_secret.get_secret_value(),
            )
        except APIError as exc:
            self.failed_logins += 1
            pause = LOGIN_BACKOFF_SECONDS[min(self.failed_logins, len(LOGIN_BACKOFF_SECONDS)) - 1]
            self.next_login = now + pause
            log.error(
                "Infisical login refused (HTTP %s); not trying again for %d s",
                exc.status_code,
                pause,
            )
            raise SecretError(f"{where}: Infisical login refused: HTTP {exc.status_code}") from None
        except (InfisicalError, requests.RequestException, OSError) as exc:
            raise SecretError(f"{where}: Infisical unreachable: {type(exc).__name__}") from None
        self.failed_logins = 0
        self.token_expires = now + float(result.expiresIn)
