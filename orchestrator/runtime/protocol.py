"""The seam between the orchestrator and whatever runs containers."""

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from orchestrator.model import JobKey
from orchestrator.runtime.spec import ContainerSpec


@dataclass(frozen=True)
class Finished:
    """What a worker left behind: its exit code and output streams."""

    exit_code: int
    stdout: str  # the end of each stream only: ContainerSpec.limits says how much
    stderr: str
    timed_out: bool = False
    oom_killed: bool = False  # the kernel killed a process of it past its memory limit


@dataclass(frozen=True)
class WorkerInfo:
    """A managed container as Docker reports it."""

    name: str
    labels: tuple[tuple[str, str], ...]
    running: bool
    started_at: datetime
    secrets: str = ""  # host directory mounted at the worker's secrets path, if any

    def label(self, key: str) -> str:
        return dict(self.labels).get(f"unstoppable.{key}", "")

    @property
    def job(self) -> JobKey | None:
        """Return the job its `unstoppable.job` label names, or None if that is no job."""
        return job_of(self.label("job"))


def job_of(label: str) -> JobKey | None:
    """Return the job an `unstoppable.job` label names, or None if it names none."""
    try:
        return JobKey.parse(label)
    except ValueError:
        return None


def jobs_of(labels: Iterable[str]) -> frozenset[JobKey]:
    """Return the jobs `unstoppable.job` labels name; a label naming none holds no job."""
    return frozenset(job for label in labels if (job := job_of(label)) is not None)


class Runtime(Protocol):
    """Runs worker containers; Docker is the record of what runs."""

    def running_jobs(self) -> frozenset[JobKey]:
        """Return the jobs (`unstoppable.job` labels) of running managed containers."""
        ...

    def image_label(self, image: str, key: str) -> str | None:
        """Return the label `key` of the local image `image`, or None."""
        ...

    def workers(self) -> list[WorkerInfo]:
        """Return every managed container, running or not."""
        ...

    def collect(self, name: str, timeout: float | None) -> Finished:
        """Wait for the worker `name` (stopping it after `timeout` s), read it, remove it."""
        ...

    def run(self, spec: ContainerSpec, timeout: float | None) -> Finished:
        """Start `spec`, wait for it (stopping it after `timeout` s), read it, remove it.

        Raises JobBusy if a container of that name exists, RuntimeUnavailable otherwise.
        """
        ...
