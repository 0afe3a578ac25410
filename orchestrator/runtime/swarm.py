"""The Docker Swarm runtime: one replicated-job service per run, on any node of a cluster.

A run is a service in `replicated-job` mode (one completion, never restarted), named like the
docker runtime's container: the name is unique across the cluster, so the engine itself
refuses a second run of a job, whichever daemon or CLI asks. The service and its task carry
the `unstoppable.*` labels. A run's secret files become swarm secrets, mounted as files in
the task and removed with the service; the result is the task's exit code and the service's
logs. The engine is reached through docker.py's client (the one module importing the SDK),
with the service described as the Engine API's own JSON.
"""

import logging
import time
import uuid
from collections.abc import Callable
from functools import partial
from typing import Any, TypeVar

from orchestrator.errors import JobBusy, RuntimeUnavailable
from orchestrator.model import JobKey, reads_only
from orchestrator.runtime import spec as specs
from orchestrator.runtime.docker import (
    ENGINE_ERRORS,
    STOP_GRACE_SECONDS,
    DockerRuntime,
    EngineNotFound,
    EngineRefused,
)
from orchestrator.runtime.engine_options import task_template
from orchestrator.runtime.paths import SECRETS
from orchestrator.runtime.protocol import Finished, WorkerInfo, jobs_with
from orchestrator.runtime.spec import service_name
from orchestrator.runtime.swarm_output import TaskOutput
from orchestrator.runtime.swarm_secrets import SwarmSecrets
from orchestrator.runtime.text import parse_time, short

# A task in one of these states will not run (again); any other state holds the job.
TERMINAL = frozenset({"complete", "failed", "shutdown", "rejected", "orphaned", "remove"})
POLL_SECONDS = 2.0
# A task not yet on its way to run (no node accepts it, its image is missing there) fails
# its run after this, even when the run has no timeout (restore, check, recover).
PLACEMENT_SECONDS = 120.0
RECONNECT_SECONDS = 300.0
MANAGED = "unstoppable.managed=true"
NO_DEVICES = (
    "a swarm service gets no devices (the service API has no such option), and a remote "
    "source is mounted with /dev/fuse: run remote resources with UNSTOPPABLE_RUNTIME=docker"
)

log = logging.getLogger(__name__)
T = TypeVar("T")


class SwarmRuntime:
    """Runs workers as swarm services; the engine must be a swarm manager."""

    def __init__(self, client: Any = None) -> None:
        self.local = DockerRuntime(client)  # the engine, reached and pinged
        self.client = self.local.client
        try:
            swarm = self.client.info().get("Swarm", {})
        except ENGINE_ERRORS as exc:
            raise RuntimeUnavailable(f"cannot reach the Docker engine: {short(exc)}") from None
        if swarm.get("LocalNodeState") != "active" or not swarm.get("ControlAvailable"):
            raise RuntimeUnavailable(
                "UNSTOPPABLE_RUNTIME=swarm: this engine is not a swarm manager "
                "(`docker swarm init`, or run the daemon on a manager)"
            )
        self.node_id = str(swarm.get("NodeID", ""))
        self.secrets = SwarmSecrets(self.client.api, self.node_id, self._api)
        self.output = TaskOutput(self.client.api, self.node_id, self._api)
        self.held: set[str] = set()

    def running_jobs(self) -> frozenset[JobKey]:
        """Return the jobs of services whose task has not ended (or not yet started), in the
        whole cluster: another daemon's run of a job holds it as much as this one's."""
        return jobs_with((dict(w.labels) for w in self._services() if w.running), reading=False)

    def reading_jobs(self) -> frozenset[JobKey]:
        """Return the jobs with a service that only reads and has not ended, cluster-wide."""
        return jobs_with((dict(w.labels) for w in self._services() if w.running), reading=True)

    def image_label(self, image: str, key: str) -> str | None:
        return self.local.image_label(image, key)

    def workers(self) -> list[WorkerInfo]:
        """Return every service this node's daemon or CLI started, running or not.

        Another manager's daemon adopts its own: a restarted daemon here must not collect
        (and remove) the runs a daemon on another node is waiting for.
        """
        mine = [w for w in self._services() if w.label("manager") == self.node_id]
        self.secrets.sweep(self.held)  # what a daemon killed mid-start left (adopt asks here)
        return mine

    def _services(self) -> list[WorkerInfo]:
        """Return every managed service of the cluster: two calls, whatever their number.

        Also notes the secrets the services hold (`held`), for the sweep of leftovers.
        """
        services = self._api(partial(self.client.api.services, filters={"label": MANAGED}), False)
        self.held = {
            ref["SecretID"]
            for s in services
            for ref in s["Spec"]["TaskTemplate"]["ContainerSpec"].get("Secrets") or []
        }
        ids = [s["ID"] for s in services]
        try:
            tasks = (
                self._api(partial(self.client.api.tasks, filters={"service": ids}), False)
                if ids
                else []
            )
        except EngineNotFound:  # one was removed between the two calls
            return self._services()
        states: dict[str, list[str]] = {}
        for task in tasks:
            states.setdefault(task["ServiceID"], []).append(task["Status"]["State"])
        return [
            WorkerInfo(
                str(s["Spec"]["Name"]),
                tuple(sorted(s["Spec"].get("Labels", {}).items())),
                not states.get(s["ID"]) or any(x not in TERMINAL for x in states[s["ID"]]),
                parse_time(s.get("CreatedAt", "")),
            )
            for s in services
        ]

    def run(self, spec: specs.ContainerSpec, timeout: float | None) -> Finished:
        """Start `spec` as a service, wait for its task, read it, remove it and its secrets."""
        if spec.devices:
            raise RuntimeUnavailable(NO_DEVICES)
        try:  # placed on this node: its image must be here
            self._api(partial(self.client.api.inspect_image, spec.image))
        except EngineNotFound:
            raise RuntimeUnavailable(
                f"worker image {spec.image} not found: run `make provision` or install.sh"
            ) from None
        name, run = service_name(spec.name), uuid.uuid4().hex
        self._refuse_if_busy(spec, name)
        try:
            directory = next((m.source for m in spec.mounts if m.target == SECRETS), None)
            secrets = self.secrets.create(directory, run)
            try:
                self._create(spec, name, secrets)
            except JobBusy:
                if not self._reap_leftover(name):
                    raise
                self._create(spec, name, secrets)
        except BaseException:
            self.secrets.remove(name, self.secrets.of_run(run))
            raise
        return self.collect(name, timeout, spec.limits)

    def collect(
        self, name: str, timeout: float | None, limits: specs.Limits | None = None
    ) -> Finished:
        """Wait for the task of service `name` (removing it after `timeout` s), read the end
        of its output (`limits`; adopted: the defaults), remove the service and secrets."""
        limits = limits or specs.Limits()
        exit_code, timed_out = self._wait(name, timeout)
        try:  # an ended task's service goes, its logs read or not: it would be adopted forever
            stdout = self.output.logs(name, True, limits.stdout_bytes)
            stderr = self.output.logs(name, False, limits.stderr_bytes)
            oom_killed = self.output.oom_killed(name)
        finally:
            self._remove(name)
        return Finished(exit_code, stdout, stderr, timed_out, oom_killed)

    def _refuse_if_busy(self, spec: specs.ContainerSpec, name: str) -> None:
        """Raise JobBusy if a service of the same job runs under another name."""
        labels = dict(spec.labels)
        if reads_only(labels.get("unstoppable.kind", "")):
            return
        for worker in self._services():
            if (
                worker.label("job") == labels.get("unstoppable.job")
                and worker.name != name
                and not reads_only(worker.label("kind"))
                and worker.running
            ):
                raise JobBusy(f"{worker.name} is running a run of {worker.label('job')}")

    def _create(self, spec: specs.ContainerSpec, name: str, secrets: list[dict[str, Any]]) -> None:
        labels = {**dict(spec.labels), "unstoppable.manager": self.node_id}
        # Here: where the daemon resolved the local sources and keeps the hot repositories.
        template = task_template(spec, labels, f"node.id=={self.node_id}", secrets)
        job = {"ReplicatedJob": {"MaxConcurrent": 1, "TotalCompletions": 1}}
        try:
            self.client.api.create_service(template, name=name, labels=labels, mode=job)
        except EngineRefused as exc:
            if exc.status_code == 409:
                raise JobBusy(f"{name} exists: the job is busy, try again when it ends") from None
            raise RuntimeUnavailable(f"cannot create service {name}: {short(exc)}") from None
        except ENGINE_ERRORS as exc:
            raise RuntimeUnavailable(f"cannot create service {name}: {short(exc)}") from None

    def _reap_leftover(self, name: str) -> bool:
        """Remove a service of `name` whose task ended; return whether it is gone."""
        for worker in self._services():
            if worker.name == name:
                if worker.running:
                    return False
                log.warning("%s: removing a leftover service (a run nobody collected)", name)
                self._remove(name)
        return True

    def _wait(self, name: str, timeout: float | None, stopping: bool = False) -> tuple[int, bool]:
        """Poll the service's task until it ends; return (exit code, timed out)."""
        deadline = None if timeout is None else time.monotonic() + max(timeout, 0.001)
        placed_by = time.monotonic() + PLACEMENT_SECONDS
        while True:
            try:  # the engine answers 404 for the tasks of a service that is gone
                tasks = self._api(partial(self.client.api.tasks, filters={"service": name}))
            except EngineNotFound:
                raise RuntimeUnavailable(f"{name}: the service vanished before its end") from None
            if not tasks and time.monotonic() > placed_by:
                self._remove(name)
                raise RuntimeUnavailable(f"{name}: the swarm made no task for it")
            for task in tasks:
                status = task["Status"]
                state = status["State"]
                if state in TERMINAL:
                    if "ContainerStatus" not in status or state in ("rejected", "orphaned"):
                        self._remove(name)
                        raise RuntimeUnavailable(f"{name}: task {state}: {status.get('Err', '')}")
                    return int(status["ContainerStatus"].get("ExitCode", -1)), False
                if state in ("new", "allocated", "pending", "assigned", "accepted") and (
                    time.monotonic() > placed_by
                ):
                    self._remove(name)
                    raise RuntimeUnavailable(
                        f"{name}: the swarm placed no task ({status.get('Err') or state})"
                    )
            if deadline is not None and time.monotonic() >= deadline:
                if stopping or not self._stop_here(tasks):
                    return -1, True  # on another node: removing the service stops it
                return self._wait(name, STOP_GRACE_SECONDS + 30, stopping=True)[0], True
            time.sleep(POLL_SECONDS)

    def _stop_here(self, tasks: list[dict[str, Any]]) -> bool:
        """Stop the task's container if it runs on this node (SIGTERM, then 30 s), as the
        docker runtime stops a worker past its timeout; return whether it did."""
        for task in tasks:
            container = task["Status"].get("ContainerStatus", {}).get("ContainerID")
            if task.get("NodeID") == self.node_id and container:
                try:
                    self.client.api.stop(container, timeout=STOP_GRACE_SECONDS)
                    return True
                except ENGINE_ERRORS as exc:
                    log.warning("%s: cannot stop it: %s", container[:12], short(exc))
        return False

    def _remove(self, name: str) -> None:
        """Remove the service (stopping its task), then the secrets it held; never raise."""
        secrets = []
        try:
            spec = self.client.api.inspect_service(name)["Spec"]["TaskTemplate"]["ContainerSpec"]
            secrets = [s["SecretID"] for s in spec.get("Secrets") or []]
            self.client.api.remove_service(name)
        except EngineNotFound:
            pass
        except ENGINE_ERRORS as exc:
            log.warning("%s: cannot remove the service: %s", name, short(exc))
        self.secrets.remove(name, secrets)

    def _api(self, call: Callable[[], T], patient: bool = True) -> T:
        """Make one engine call, waiting out an engine that restarts for RECONNECT_SECONDS
        (a run's own calls), or not at all (listings, and so the busy check before a run
        starts: the daemon's tick must not stall; that run fails, the next one tries)."""
        lost_since = None
        while True:
            try:
                return call()
            except EngineNotFound:
                raise
            except EngineRefused as exc:
                raise RuntimeUnavailable(f"the swarm refused: {short(exc)}") from None
            except ENGINE_ERRORS as exc:
                lost_since = lost_since or time.monotonic()
                if not patient or time.monotonic() - lost_since > RECONNECT_SECONDS:
                    raise RuntimeUnavailable(f"lost the Docker engine: {short(exc)}") from None
                time.sleep(POLL_SECONDS)
