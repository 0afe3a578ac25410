"""A swarm run's secrets: each of its secret files becomes a swarm secret for that run only.

A secret is created just before its run's service, mounted as a file (mode 0400) at the path
the worker reads, and removed with the service. Its name is random and says nothing; labels
say whose it is (`unstoppable.run`, `unstoppable.manager`). A daemon killed between creating
a run's secrets and its service leaves them unused: `sweep` removes those of this manager
once they are old enough that no run of it can still be starting.
"""

import logging
import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

from orchestrator.runtime.docker import ENGINE_ERRORS, EngineNotFound
from orchestrator.runtime.paths import SECRETS
from orchestrator.runtime.text import parse_time, short

# Older than this, a managed secret no service holds is a leftover, never one being set up.
ORPHAN_AGE = timedelta(minutes=10)

log = logging.getLogger(__name__)


class SwarmSecrets:
    """Creates and removes the swarm secrets of runs started from this manager node."""

    def __init__(self, api: Any, manager: str, call: Callable[[Callable[[], Any]], Any]) -> None:
        self.api, self.manager, self.call = api, manager, call

    def create(self, directory: Path | None, run: str) -> list[dict[str, Any]]:
        """Turn each file of `directory` into a secret of `run`; return the references."""
        if directory is None:
            return []
        references = []
        labels = {"unstoppable.managed": "true", "unstoppable.run": run}
        labels["unstoppable.manager"] = self.manager
        for path in sorted(directory.iterdir()):
            secret = f"unstoppable-{uuid.uuid4().hex}"
            created = self.call(
                partial(self.api.create_secret, secret, path.read_bytes(), labels=labels)
            )
            path.unlink()  # the swarm keeps it now, encrypted; no copy stays on this disk
            target = {"Name": f"{SECRETS}/{path.name}", "UID": "0", "GID": "0", "Mode": 0o400}
            references.append({"SecretID": created["ID"], "SecretName": secret, "File": target})
        return references

    def of_run(self, run: str) -> list[str]:
        """Return the ids of `run`'s secrets (none when the engine cannot say)."""
        try:
            return [s["ID"] for s in self.api.secrets(filters={"label": f"unstoppable.run={run}"})]
        except ENGINE_ERRORS as exc:
            log.warning("cannot list the secrets of run %s: %s", run, short(exc))
            return []

    def remove(self, name: str, secrets: Iterable[str]) -> None:
        """Remove `secrets` (ids) of service `name`'s run; never raise."""
        for secret in secrets:
            try:
                self.api.remove_secret(secret)
            except EngineNotFound:
                pass
            except ENGINE_ERRORS as exc:
                log.warning("%s: cannot remove a secret of its run: %s", name, short(exc))

    def sweep(self, held: set[str]) -> None:
        """Remove this manager's secrets that no service holds and that are old enough."""
        try:
            found = self.api.secrets(filters={"label": f"unstoppable.manager={self.manager}"})
        except ENGINE_ERRORS as exc:
            log.warning("cannot list the swarm secrets: %s", short(exc))
            return
        now = datetime.now(UTC)
        stale = [
            s["ID"]
            for s in found
            if s["ID"] not in held and now - parse_time(s.get("CreatedAt", "")) > ORPHAN_AGE
        ]
        if stale:
            log.warning("removing %d swarm secret(s) of runs that never started", len(stale))
            self.remove("(leftover)", stale)
