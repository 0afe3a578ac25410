"""The seam between the orchestrator and whatever runs containers."""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from orchestrator.model import JobKey, reads_only
from orchestrator.runtime.paths import SECRETS
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


def secrets_source(mounts: Any) -> str:
    """Return the host directory an engine's list of `Mounts` binds at the worker's secrets
    path, or "" (none, or not a list of mounts)."""
    for mount in mounts if isinstance(mounts, list) else []:
        if isinstance(mount, dict) and mount.get("Destination") == SECRETS:
            return str(mount.get("Source", ""))
    return ""


def jobs_with(running: Iterable[Mapping[str, str]], reading: bool) -> frozenset[JobKey]:
    """Return the jobs of the running workers whose labels are `running`: those that hold
    their job, or (`reading`) those that only read (runtime `running_jobs`/`reading_jobs`)."""
    return jobs_of(
        labels.get("unstoppable.job", "")
        for labels in running
        if reads_only(labels.get("unstoppable.kind", "")) == reading
    )


class Runtime(Protocol):
    """Runs worker containers; Docker is the record of what runs."""

    def running_jobs(self) -> frozenset[JobKey]:
        """Return the jobs (`unstoppable.job` labels) of running managed containers that
        hold their job (every kind but those that only read)."""
        ...

    def reading_jobs(self) -> frozenset[JobKey]:
        """Return the jobs with a running worker that only reads (a listing, a restore):
        not in `running_jobs`, but a prune of them waits."""
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
