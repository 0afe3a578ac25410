"""The Docker engine lost between a worker's start and its first answer.

A soak (bench/soak.py) saw dockerd's restart cut a launch short while the engine had
started the worker: the run was recorded as a `runtime` failure, and a later adoption of
the same worker recorded the same scheduled time again. The moment falls between one HTTP
request and its answer, which a real engine cannot be made to hit on purpose, so these
tests put a stand-in behind docker-py's client interface: the engine starts the worker,
then stops answering for a while.
"""

from collections.abc import Iterator
from typing import Any

import pytest
import requests

from orchestrator.errors import RuntimeUnavailable
from orchestrator.runtime import docker as docker_runtime
from orchestrator.runtime.docker import DockerRuntime
from orchestrator.runtime.spec import ContainerSpec

SPEC = ContainerSpec(
    "unstoppable_acme_files",
    "unstoppable-worker:test",
    ("backup",),
    (("unstoppable.managed", "true"), ("unstoppable.job", "acme/files")),
    (),
)


class Engine:
    """Holds one container; `away` calls fail as an engine restarting does."""

    def __init__(self, start_happens: bool, away_for: int) -> None:
        self.start_happens = start_happens
        self.away_for = away_for  # calls answered with a refused connection
        self.status = "none"
        self.removed = False
        self.id = "ours"  # the container the name stands for
        self.containers = self
        self.api = self

    def _answer(self) -> None:
        if self.away_for > 0:
            self.away_for -= 1
            raise requests.exceptions.ConnectionError("Connection refused")

    # docker-py's client.containers
    def list(self, **_: Any) -> list[Any]:
        return []

    def create(self, **_: Any) -> "Container":
        self.status = "created"
        return Container(self)

    def get(self, name: str) -> "Container":
        self._answer()
        if self.removed:
            from docker.errors import NotFound

            raise NotFound(name)
        return Container(self)

    # docker-py's client.api
    def inspect_container(self, _: str) -> dict[str, Any]:
        return {"State": {"OOMKilled": False}}


class Container:
    name = SPEC.name

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.status = engine.status
        self.id = engine.id

    def start(self) -> None:
        if self.engine.start_happens:
            self.engine.status = "running"
        raise requests.exceptions.ConnectionError("Connection aborted: the engine went away")

    def wait(self, timeout: float | None = None) -> dict[str, int]:
        self.engine.status = "exited"
        return {"StatusCode": 0}

    def logs(self, stdout: bool, **_: Any) -> Iterator[bytes]:
        return iter([b'{"id": "abc"}\n' if stdout else b"[INFO] backup finished\n"])

    def remove(self, force: bool = False) -> None:
        self.engine.removed = True


@pytest.fixture(autouse=True)
def quick_reconnect(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(docker_runtime, "RECONNECT_PAUSE", 0.01)


def test_a_worker_the_engine_started_before_it_went_away_is_collected_as_this_run() -> None:
    engine = Engine(start_happens=True, away_for=3)

    finished = DockerRuntime(client=_client(engine)).run(SPEC, timeout=60)

    assert finished.exit_code == 0
    assert "backup finished" in finished.stderr and '"id"' in finished.stdout
    assert engine.removed, "collected once and removed: nothing is left to adopt"


def test_a_worker_the_engine_never_started_is_removed_and_the_run_fails() -> None:
    engine = Engine(start_happens=False, away_for=3)

    with pytest.raises(RuntimeUnavailable, match="cannot start unstoppable_acme_files"):
        DockerRuntime(client=_client(engine)).run(SPEC, timeout=60)
    assert engine.removed, "a created worker that never ran does not hold the job's name"


def test_another_runs_worker_under_the_name_meanwhile_is_never_taken_for_this_one() -> None:
    """While the engine was away, a CLI run of the job reaped the never-started worker as a
    leftover and started its own under the job's name: it is that run's, not this one's."""
    engine = Engine(start_happens=False, away_for=3)
    runtime = DockerRuntime(client=_client(engine))
    real_get = engine.get

    def swapped(name: str) -> Container:
        found = real_get(name)
        engine.id, engine.status = "theirs", "running"
        found.id, found.status = engine.id, engine.status
        return found

    engine.get = swapped  # type: ignore[method-assign]
    with pytest.raises(RuntimeUnavailable, match="cannot start unstoppable_acme_files"):
        runtime.run(SPEC, timeout=60)
    assert not engine.removed and engine.status == "running", "the other run's worker stays"


def test_an_engine_that_stays_away_leaves_the_worker_as_it_is(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(docker_runtime, "RECONNECT_SECONDS", 0.05)
    engine = Engine(start_happens=True, away_for=10**9)

    with pytest.raises(RuntimeUnavailable, match="lost the Docker engine"):
        DockerRuntime(client=_client(engine)).run(SPEC, timeout=60)
    assert not engine.removed, "left to the adoption that finds it once the engine is back"
    assert engine.status == "running"


def _client(engine: Engine) -> Any:
    engine.ping = lambda: True  # type: ignore[attr-defined]
    return engine


def test_a_start_the_engine_refuses_is_no_start_and_leaves_nothing() -> None:
    from docker.errors import APIError

    engine = Engine(start_happens=False, away_for=0)
    refused = Container(engine)

    def refuse() -> None:
        raise APIError("500 Server Error: error mounting the source")

    refused.start = refuse  # type: ignore[method-assign]
    engine.create = lambda **_: refused  # type: ignore[method-assign]
    with pytest.raises(RuntimeUnavailable, match="error mounting the source"):
        DockerRuntime(client=_client(engine)).run(SPEC, timeout=60)
    assert engine.removed
