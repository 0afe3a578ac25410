"""What a swarm run's task left behind: the end of its output, and whether memory killed it."""

import logging
from collections.abc import Callable
from functools import partial
from typing import Any

from orchestrator.errors import RuntimeUnavailable
from orchestrator.runtime.docker import ENGINE_ERRORS, EngineNotFound
from orchestrator.runtime.text import short, tail

log = logging.getLogger(__name__)


class TaskOutput:
    """Reads the result of a service's task that ended, before the service is removed."""

    def __init__(self, api: Any, node_id: str, call: Callable[[Callable[[], Any]], Any]) -> None:
        self.api = api
        self.node_id = node_id
        self.call = call  # the runtime's patient engine call (waits out a restart)

    def logs(self, name: str, stdout: bool, keep: int) -> str:
        """Return the last `keep` bytes of one output stream of the service's task.

        Raises RuntimeUnavailable if the service is gone.
        """

        def read() -> str:  # streamed to its end, inside the call's error handling
            data = self.api.service_logs(
                name, stdout=stdout, stderr=not stdout, follow=False, is_tty=False
            )
            return tail([data] if isinstance(data, bytes) else data, keep)

        try:
            return str(self.call(read))
        except EngineNotFound:
            raise RuntimeUnavailable(
                f"{name}: the service vanished before its logs were read"
            ) from None

    def oom_killed(self, name: str) -> bool:
        """Return whether the kernel killed a process of the task for memory: the task's
        status does not say, its container (on this node until the service goes) does."""
        try:
            tasks = self.call(partial(self.api.tasks, filters={"service": name}))
            here = [
                t["Status"].get("ContainerStatus", {})
                for t in tasks
                if t.get("NodeID") == self.node_id
            ]
            return any(
                self.api.inspect_container(c["ContainerID"])["State"].get("OOMKilled")
                for c in here
                if c.get("ContainerID")
            )
        except (*ENGINE_ERRORS, RuntimeUnavailable) as exc:
            log.warning("%s: cannot tell whether it ran out of memory: %s", name, short(exc))
            return False
