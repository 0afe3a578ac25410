"""A local stand-in for Infisical, speaking the HTTP endpoints the official SDK calls.

Universal auth login (POST /api/v1/auth/universal-auth/login), get a secret by name
(GET /api/v3/secrets/raw/{name}) and list secrets (GET /api/v3/secrets/raw), with their
documented behaviour: secret references expanded unless asked not to, short-lived bearer tokens that expire, 404 for an unknown secret,
401 for a bad or expired token, and a lock-out after repeated failed logins.
"""

import json
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


@dataclass
class State:
    client_id: str
    client_secret: str
    project_id: str
    environment: str = "prod"
    token_ttl: int = 600
    lockout_after: int = 3
    lockout_seconds: int = 300
    values: dict[tuple[str, str], str] = field(default_factory=dict)  # (folder, name) -> value
    tokens: dict[str, float] = field(default_factory=dict)  # token -> expiry
    logins: int = 0
    failed_logins: int = 0
    locked_until: float = 0.0
    requests: list[str] = field(default_factory=list)


class FakeInfisical:
    def __init__(self, state: State) -> None:
        self.state = state
        self.server: ThreadingHTTPServer | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), _handler(self.state))
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self.server:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


# Infisical's secret references: ${env.folder.sub.NAME} names a secret in another folder.
_REFERENCE = re.compile(r"\$\{([A-Za-z0-9_.-]+)\}")


def _handler(state: State) -> type[BaseHTTPRequestHandler]:
    def expand(reference: str) -> str:
        """Return what the server fills in for `${reference}`, with the identity's rights."""
        *path, name = reference.split(".")
        folder = "/" + "/".join(path[1:]) if len(path) > 1 else "/"
        return state.values.get((folder, name), "")

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def reply(self, status: int, body: dict[str, object]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def error(self, status: int, name: str, message: str) -> None:
            self.reply(status, {"statusCode": status, "error": name, "message": message})

        def do_POST(self) -> None:
            state.requests.append(f"POST {self.path}")
            if self.path != "/api/v1/auth/universal-auth/login":
                return self.error(404, "NotFound", "no such route")
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
            now = time.time()
            if now < state.locked_until:
                return self.error(
                    429, "TooManyRequests", "Client secret locked out after too many failed logins"
                )
            if (
                body.get("clientId") != state.client_id
                or body.get("clientSecret") != state.client_secret
            ):
                state.failed_logins += 1
                if state.failed_logins >= state.lockout_after:
                    state.locked_until = now + state.lockout_seconds
                return self.error(401, "UnauthorizedError", "Invalid credentials")
            state.logins += 1
            state.failed_logins = 0
            token = secrets.token_hex(16)
            state.tokens[token] = now + state.token_ttl
            return self.reply(
                200,
                {
                    "accessToken": token,
                    "expiresIn": state.token_ttl,
                    "accessTokenMaxTTL": state.token_ttl * 10,
                    "tokenType": "Bearer",
                },
            )

        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            state.requests.append(f"GET {parts.path}")
            token = self.headers.get("Authorization", "").removeprefix("Bearer ")
            expiry = state.tokens.get(token)
            if expiry is None or expiry < time.time():
                return self.error(401, "UnauthorizedError", "Token expired or invalid")
            query = {k: v[0] for k, v in parse_qs(parts.query).items()}
            if (
                query.get("workspaceId") != state.project_id
                or query.get("environment") != state.environment
            ):
                return self.error(404, "NotFound", "Project or environment not found")
            folder = query.get("secretPath", "/")
            if parts.path == "/api/v3/secrets/raw":
                found = [self.secret(f, n, v) for (f, n), v in state.values.items() if f == folder]
                return self.reply(200, {"secrets": found, "imports": []})
            name = parts.path.removeprefix("/api/v3/secrets/raw/")
            if (folder, name) not in state.values:
                return self.error(404, "NotFound", f"Secret with name '{name}' not found")
            value = state.values[(folder, name)]
            if query.get("expandSecretReferences", "true") == "true":
                value = _REFERENCE.sub(lambda m: expand(m.group(1)), value)
            return self.reply(200, {"secret": self.secret(folder, name, value)})

        def secret(self, folder: str, name: str, value: str) -> dict[str, object]:
            return {
                "id": f"id-{name}",
                "_id": f"id-{name}",
                "workspace": state.project_id,
                "environment": state.environment,
                "version": 1,
                "type": "shared",
                "secretKey": name,
                "secretValue": value,
                "secretComment": "",
                "createdAt": "2026-01-01T00:00:00Z",
                "updatedAt": "2026-01-01T00:00:00Z",
                "secretPath": folder,
                "tags": [],
            }

    return Handler
