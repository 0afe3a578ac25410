"""The Docker runtime: the only module that imports the Docker SDK."""

import logging
import time
from typing import Any

import docker
import requests
from docker.errors import APIError, DockerException, ImageNotFound, NotFound

from orchestrator import deadline
from orchestrator.errors import JobBusy, RuntimeUnavailable
from orchestrator.model import JobKey, reads_only
from orchestrator.runtime.engine_options import create_options
from orchestrator.runtime.protocol import Finished, WorkerInfo, jobs_with, secrets_source
from orchestrator.runtime.spec import ContainerSpec, Limits
from orchestrator.runtime.text import parse_time, short, tail

STOP_GRACE_SECONDS = 30
# How long a run waits for a Docker engine that stopped answering (dockerd restarting).
LOGS_SECONDS = 300.0  # reading one stream of an exited worker, at most
RECONNECT_SECONDS = 300
RECONNECT_PAUSE = 2.0

log = logging.getLogger(__name__)
# What the swarm runtime (swarm.py) catches, so that the SDK is imported here only.
ENGINE_ERRORS = (DockerException, requests.RequestException)
EngineRefused, EngineNotFound = APIError, NotFound


class DockerRuntime:
    """Runs workers on the local Docker engine."""

    def __init__(self, client: Any = None) -> None:
        try:
            self.client = client or docker.from_env(timeout=120)
            self.client.ping()
        except (DockerException, requests.RequestException) as exc:
            raise RuntimeUnavailable(f"cannot reach the Docker engine: {short(exc)}") from None

    def running_jobs(self) -> frozenset[JobKey]:
        """Return the jobs of running managed containers that hold their job."""
        return jobs_with(self._running(), reading=False)

    def reading_jobs(self) -> frozenset[JobKey]:
        """Return the jobs with a running managed container that only reads."""
        return jobs_with(self._running(), reading=True)

    def _running(self) -> list[dict[str, str]]:
        try:  # the low-level list: docker-py's containers.list() inspects each one it lists
            found = self.client.api.containers(filters={"label": "unstoppable.managed=true"})
        except (DockerException, requests.RequestException) as exc:
            raise RuntimeUnavailable(f"cannot list containers: {short(exc)}") from None
        return [c.get("Labels") or {} for c in found]

    def image_label(self, image: str, key: str) -> str | None:
        """Return the label `key` of the local image `image`, or None."""
        try:
            value = self.client.images.get(image).labels.get(key)
            return str(value) if value is not None else None
        except (DockerException, requests.RequestException):
            return None

    def workers(self) -> list[WorkerInfo]:
        """Return every managed container, running or not."""
        try:
            containers = self.client.containers.list(
                all=True, filters={"label": "unstoppable.managed=true"}
            )
            return [
                WorkerInfo(
                    str(c.name),
                    tuple(sorted(c.labels.items())),
                    c.status in ("running", "restarting", "paused"),
                    parse_time(c.attrs.get("State", {}).get("StartedAt", "")),
                    secrets_source(c.attrs.get("Mounts")),
                )
                for c in containers
            ]
        except NotFound:
            return self.workers()  # one vanished between list and inspect
        except (DockerException, requests.RequestException) as exc:
            raise RuntimeUnavailable(f"cannot list containers: {short(exc)}") from None

    def run(self, spec: ContainerSpec, timeout: float | None) -> Finished:
        """Start `spec`, wait for it, read its exit code and logs, then remove it."""
        self._refuse_if_busy(spec)
        try:
            container = self._create(spec)
        except JobBusy:
            if not self._reap_leftover(spec.name):
                raise
            container = self._create(spec)
        try:
            container.start()
        except (DockerException, requests.RequestException) as exc:
            # An engine gone mid-start may have started the worker all the same: one that did
            # is collected as ours (not adopted later and recorded twice), one that did not removed.
            found = None if isinstance(exc, APIError) else self._get(spec.name)
            if found is None or found.id != container.id or found.status == "created":
                if found is None or found.id == container.id:  # never another run's worker
                    self._remove(container)
                raise RuntimeUnavailable(f"cannot start {spec.name}: {short(exc)}") from None
        return self.collect(spec.name, timeout, spec.limits)

    def collect(self, name: str, timeout: float | None, limits: Limits | None = None) -> Finished:
        """Wait for the worker `name` (stopping it after `timeout` s), read the end of its
        output as `limits` says (an adopted one: the defaults), remove it."""
        limits = limits or Limits()
        container = self._get(name)
        # Lost the engine for good: the worker may still be running and healthy, so it is
        # left alone (never stopped, never removed) for the next run or start to collect.
        exit_code, timed_out, container = self._wait(container, timeout)
        stdout = self._logs(container, True, limits.stdout_bytes)
        stderr = self._logs(container, False, limits.stderr_bytes)
        oom_killed = self._oom_killed(container)
        self._remove(container)
        return Finished(exit_code, stdout, stderr, timed_out, oom_killed)

    def _refuse_if_busy(self, spec: ContainerSpec) -> None:
        """Raise JobBusy if a worker of the same job runs under another name.

        The shared container name is the lock between runs of this version; a worker
        started by an earlier version under its older name still holds the job.
        """
        job = dict(spec.labels).get("unstoppable.job")
        if not job or reads_only(dict(spec.labels).get("unstoppable.kind", "")):
            return
        try:
            others = self.client.containers.list(filters={"label": f"unstoppable.job={job}"})
        except (DockerException, requests.RequestException) as exc:
            raise RuntimeUnavailable(f"cannot list containers: {short(exc)}") from None
        for container in others:
            kind = container.labels.get("unstoppable.kind", "")
            if container.name != spec.name and not reads_only(kind):
                raise JobBusy(f"{container.name} is running a run of {job}")

    def _create(self, spec: ContainerSpec) -> Any:
        try:
            return self.client.containers.create(**create_options(spec))
        except ImageNotFound:
            raise RuntimeUnavailable(
                f"worker image {spec.image} not found: run `make provision` or install.sh"
            ) from None
        except APIError as exc:
            if exc.status_code == 409:
                raise JobBusy(
                    f"{spec.name} is running: the job is busy, try again when it ends"
                ) from None
            raise RuntimeUnavailable(f"cannot create {spec.name}: {short(exc)}") from None
        except (DockerException, requests.RequestException) as exc:
            raise RuntimeUnavailable(f"cannot create {spec.name}: {short(exc)}") from None

    def _reap_leftover(self, name: str) -> bool:
        """Remove a container of `name` that is not running; return whether it was removed.

        A worker that exited while nobody waited for it (the CLI or daemon was killed) still
        holds the job's name; left alone it would block the job forever.
        """
        try:
            container = self.client.containers.get(name)
            if container.status in ("running", "restarting", "paused"):
                return False
            log.warning(
                "%s: removing a leftover %s worker (exit status of a run nobody collected)",
                name,
                container.status,
            )
            container.remove(force=True)
            return True
        except NotFound:
            return True
        except (DockerException, requests.RequestException) as exc:
            raise RuntimeUnavailable(f"cannot inspect {name}: {short(exc)}") from None

    def _wait(self, container: Any, timeout: float | None) -> tuple[int, bool, Any]:
        """Wait for `container` to exit; return (exit code, timed out, fresh handle).

        Only our own deadline stops a worker. A lost connection to the engine (dockerd
        restarted) is waited out for up to RECONNECT_SECONDS; past that RuntimeUnavailable
        is raised and the worker is left as it is.
        """
        deadline = None if timeout is None else time.monotonic() + max(timeout, 0.001)
        lost_since: float | None = None
        while True:
            remaining = None if deadline is None else max(0.001, deadline - time.monotonic())
            try:
                status = container.wait(timeout=remaining)
                return int(status.get("StatusCode", -1)), False, container
            except (requests.exceptions.ReadTimeout, requests.exceptions.ConnectionError) as exc:
                # docker-py reports its read timeout on the unix socket as a ConnectionError:
                # whichever it is, past our deadline it is ours.
                if deadline is not None and time.monotonic() >= deadline - 0.5:
                    return self._stop(container), True, container
                lost_since = self._engine_lost(container.name, exc, lost_since)
                if (fresh := self._get(container.name, wait=False)) is not None:
                    container, lost_since = fresh, None
            except NotFound:
                raise RuntimeUnavailable(
                    f"{container.name}: the worker vanished before its result was read"
                ) from None
            except (DockerException, requests.RequestException) as exc:
                lost_since = self._engine_lost(container.name, exc, lost_since)
                if (fresh := self._get(container.name, wait=False)) is not None:
                    container, lost_since = fresh, None

    def _engine_lost(self, name: str, exc: Exception, since: float | None) -> float:
        """Note that the engine stopped answering; raise once it has been gone too long."""
        since = since or time.monotonic()
        if time.monotonic() - since > RECONNECT_SECONDS:
            raise RuntimeUnavailable(
                f"{name}: lost the Docker engine for over "
                f"{RECONNECT_SECONDS} s ({short(exc)}); the worker was left as it is"
            )
        log.warning("%s: lost the Docker engine (%s); waiting", name, short(exc))
        time.sleep(RECONNECT_PAUSE)
        return since

    def _get(self, name: str, wait: bool = True) -> Any:
        """Return a handle on the worker `name`, waiting out an engine that is away (not
        `wait`: None while it is away)."""
        since: float | None = None
        while True:
            try:
                return self.client.containers.get(name)
            except NotFound:
                raise RuntimeUnavailable(
                    f"{name}: the worker vanished before its result was read"
                ) from None
            except (DockerException, requests.RequestException) as exc:
                if not wait:
                    return None
                since = self._engine_lost(name, exc, since)

    def _logs(self, container: Any, stdout: bool, keep: int) -> str:
        """Return the last `keep` bytes of one output stream of an exited worker, waiting out
        a restarting engine. Streamed: a worker that printed gigabytes costs `keep` here. A
        stream has no socket timeout (LOGS_SECONDS bounds it); one the engine drops is reread.
        """
        lost_since = time.monotonic()
        while True:
            try:
                return deadline.call(
                    lambda: tail(
                        container.logs(stdout=stdout, stderr=not stdout, stream=True, follow=False),
                        keep,
                    ),
                    LOGS_SECONDS,
                    f"{container.name}: its logs",
                )
            except (APIError, NotFound) as exc:
                raise RuntimeUnavailable(
                    f"{container.name}: cannot read its logs: {short(exc)}"
                ) from None
            except deadline.DeadlineExceeded as exc:
                raise RuntimeUnavailable(str(exc)) from None
            except Exception as exc:  # the engine went away mid-stream: wait it out
                if time.monotonic() - lost_since > RECONNECT_SECONDS:
                    raise RuntimeUnavailable(
                        f"{container.name}: cannot read its logs: {short(exc)}"
                    ) from None
                time.sleep(RECONNECT_PAUSE)

    def _oom_killed(self, container: Any) -> bool:
        """Return whether the kernel killed a process of the exited worker for memory."""
        try:
            state = self.client.api.inspect_container(container.name).get("State") or {}
            return bool(state.get("OOMKilled"))
        except (DockerException, requests.RequestException) as exc:
            log.warning(
                "%s: cannot tell whether it ran out of memory: %s", container.name, short(exc)
            )
            return False

    def _stop(self, container: Any) -> int:
        """Stop a worker past its deadline; return its exit code."""
        try:
            container.stop(timeout=STOP_GRACE_SECONDS)
            status = container.wait(timeout=STOP_GRACE_SECONDS + 30)
            return int(status.get("StatusCode", -1))
        except (DockerException, requests.RequestException) as exc:
            raise RuntimeUnavailable(
                f"{container.name}: cannot stop it after its timeout: {short(exc)}"
            ) from None

    def _remove(self, container: Any) -> None:
        """Remove a worker whose result was read; a failure here never changes that result.

        A worker left behind is reaped when its job next starts (`_reap_leftover`).
        """
        try:
            container.remove(force=True)
        except NotFound:
            pass
        except APIError as exc:
            if exc.status_code != 409:  # 409: a removal already in progress
                log.warning("%s: cannot remove it: %s", container.name, short(exc))
        except (DockerException, requests.RequestException) as exc:
            log.warning("%s: cannot remove it: %s", container.name, short(exc))
