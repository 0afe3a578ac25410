"""The seam between the orchestrator and whatever runs containers."""

from dataclasses import dataclass
from typing import Protocol

from orchestrator.worker import ContainerSpec


@dataclass(frozen=True)
class Finished:
    """What a worker left behind: its exit code and output streams."""

    exit_code: int
    stdout: str
    stderr: str
    timed_out: bool = False


class Runtime(Protocol):
    """Runs worker containers; Docker is the record of what runs."""

    def running_jobs(self) -> frozenset[str]:
        """Return the `unstoppable.job` labels of running managed containers."""
        ...

    def run(self, spec: ContainerSpec, timeout: float | None) -> Finished:
        """Start `spec`, wait for it (stopping it after `timeout` s), read it, remove it.

        Raises JobBusy if a container of that name exists, RuntimeUnavailable otherwise.
        """
        ...
