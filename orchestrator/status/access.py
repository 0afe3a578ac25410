"""Who may open which status page, and what each request is answered.

A customer's page opens with its own STATUS_TOKEN (or the operator's admin token), sent as a
bearer token or as the password of HTTP basic authentication; `/status/` with the admin token
alone. No credentials: 401 with a challenge. Credentials that do not open the page: 403,
whether the customer exists or not, and whether its token could be fetched or not, so a token
never learns whose pages there are. Tokens are compared as SHA-256 digests in constant time;
one kept in Infisical is fetched at most every few minutes, however many ask (a failure too),
so nobody can make the server hammer the store its backups need.
"""

import base64
import binascii
import hashlib
import hmac
import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

from orchestrator.config.customer import Customers
from orchestrator.config.names import NAME
from orchestrator.config.settings import Settings
from orchestrator.config.values import MIN_TOKEN, SecretRef
from orchestrator.errors import SecretError
from orchestrator.reporting.ledger import Ledger
from orchestrator.secrets.files import Resolver
from orchestrator.status.facts import gather, of_customer
from orchestrator.status.page import customer_page, overview_page

log = logging.getLogger(__name__)

TOKEN_SECONDS = 300.0  # a token fetched from Infisical is trusted this long before it is again
FAILED_SECONDS = 60.0  # a token that could not be fetched is not asked for again sooner
HEADERS = {
    "Content-Type": "text/html; charset=utf-8",
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
    "frame-ancestors 'none'; form-action 'none'; base-uri 'none'",
}
CHALLENGE = 'Basic realm="backup status", charset="UTF-8"'

Answer = tuple[int, dict[str, str], bytes]


class Pages:
    """Answers one request for a status page: who may see what, and the page itself."""

    def __init__(
        self,
        settings: Settings,
        ledger: Ledger,
        customers: Callable[[], Customers],
        resolver: Resolver,
    ) -> None:
        self.settings = settings
        self.ledger = ledger
        self.customers = customers  # the daemon's current view of customers.d
        self.resolver = resolver
        admin = settings.STATUS_ADMIN_TOKEN
        self.admin = _digest(admin.get_secret_value()) if admin else None
        self.lock = threading.Lock()
        # (customer, reference): until when, and the token's digest (None: not to be had)
        self.tokens: dict[tuple[str, str], tuple[float, bytes | None]] = {}

    def answer(self, path: str, authorization: str | None) -> Answer:
        """Return the status, headers and body of a GET of `path`."""
        route = path.split("?", 1)[0].split("#", 1)[0]
        if route in ("/status", "/status/"):
            return self._overview(authorization)
        name = route.removeprefix("/status/").removesuffix("/")
        if not route.startswith("/status/") or not NAME.fullmatch(name):
            return plain(404, "no such page")
        return self._customer(name, authorization)

    def _overview(self, authorization: str | None) -> Answer:
        offered = credential(authorization)
        if offered is None:
            return _challenge()
        if not self._is_admin(offered):
            return plain(403, "this token does not open this page")
        customers = self.customers()
        facts = gather(self.settings, self.ledger, customers, datetime.now(UTC))
        return _page(overview_page(facts, customers.invalid, datetime.now(UTC)))

    def _customer(self, name: str, authorization: str | None) -> Answer:
        offered = credential(authorization)
        if offered is None:
            return _challenge()
        customers = self.customers()
        customer = customers.by_name.get(name)
        allowed = self._is_admin(offered)
        if not allowed and customer is not None and customer.status_token is not None:
            token = self._token(name, customer.status_token)
            allowed = token is not None and hmac.compare_digest(_digest(offered), token)
        if not allowed:
            return plain(403, "this token does not open this page")
        if customer is None:  # only the operator learns that there is no such customer
            return plain(404, "no such customer (or its file is disabled: see the log)")
        now = datetime.now(UTC)
        facts = of_customer(gather(self.settings, self.ledger, customers, now, name), name)
        return _page(customer_page(name, facts, now))

    def _token(self, name: str, ref: SecretRef) -> bytes | None:
        """Return the digest of the customer's token, or None while it cannot be had."""
        if ref.literal is not None:
            return _digest(ref.literal.get_secret_value())
        key, now = (name, str(ref.infisical)), time.monotonic()
        with self.lock:
            cached = self.tokens.get(key)
        if cached is not None and cached[0] > now:
            return cached[1]
        try:
            token = self.resolver.resolve(ref, name, "STATUS_TOKEN").get_secret_value()
            if len(token) < MIN_TOKEN:
                raise SecretError(
                    f"STATUS_TOKEN: infisical:{ref.infisical}: the value is shorter than "
                    f"{MIN_TOKEN} characters"
                )
            found, until = _digest(token), now + TOKEN_SECONDS
        except SecretError as exc:  # logged once a FAILED_SECONDS: asking again is what is held
            log.warning(
                "%s: its status page opens with the admin token only for now: %s", name, exc
            )
            found, until = None, now + FAILED_SECONDS
        with self.lock:
            self.tokens[key] = (until, found)
        return found

    def _is_admin(self, offered: str) -> bool:
        return self.admin is not None and hmac.compare_digest(_digest(offered), self.admin)


def credential(authorization: str | None) -> str | None:
    """Return the token an Authorization header offers (bearer, or basic's password)."""
    scheme, _, value = (authorization or "").strip().partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer" and value:
        return value
    if scheme.lower() == "basic" and value:
        try:
            decoded = base64.b64decode(value, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        _user, colon, password = decoded.partition(":")
        return password if colon and password else None
    return None


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


def _challenge() -> Answer:
    status, headers, body = plain(401, "this page needs its token")
    return status, {**headers, "WWW-Authenticate": CHALLENGE}, body


def plain(status: int, text: str) -> Answer:
    body = f"<!doctype html><title>{status}</title><p>{text}</p>".encode()
    return status, dict(HEADERS), body


def _page(html: str) -> Answer:
    return 200, dict(HEADERS), html.encode("utf-8")
