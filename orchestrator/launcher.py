"""Starting one worker of a job: what it is told to do beside its source, and the run of it.

The small context every kind of run shares (backups, maintenance, the operator's restores and
checks, recovery): the settings, the runtime, rustic's arguments for the cold repository, and
the `Preparation` that gives each worker its place on this host.
"""

import contextlib
import sys
import time
from datetime import datetime

from orchestrator.config.customer import Customer, Resource
from orchestrator.config.names import env_prefix
from orchestrator.config.settings import Settings
from orchestrator.config.source import SourceType
from orchestrator.errors import RunFailed
from orchestrator.judgement import stopping
from orchestrator.model import JobKey, Kind, Work
from orchestrator.preparation import Preparation
from orchestrator.runtime.protocol import Finished, Runtime, WorkerInfo
from orchestrator.runtime.spec import spec_for
from orchestrator.rustic import commands
from orchestrator.secrets.files import Resolver
from orchestrator.sources.guard import Floor
from orchestrator.sources.setup import WorkerSetup, local_launch, local_source, remote_launch

WAIT_PAUSE = 3.0  # between looks at a prune a reader waits for


class Launcher:
    """Sets up and runs the workers of every kind of run, through one runtime."""

    def __init__(
        self, settings: Settings, runtime: Runtime, resolver: Resolver, origin: str = "cli"
    ) -> None:
        self.settings = settings
        self.runtime = runtime
        self.resolver = resolver
        self.cold = commands.cold_args(settings.COLD_BACKEND == "s3")  # rustic's cold repo
        self.preparation = Preparation(settings, resolver, origin)

    def setup(
        self,
        customer: Customer,
        resource: Resource,
        guard: Floor | None,
        command: list[str] | None = None,
    ) -> WorkerSetup:
        """Return the worker of a backup (or `command`) beside the source.

        A local PATH is resolved now, at run time: a symlink swapped in since the file was
        loaded must not point the worker at /etc. The resolved path is what is mounted.
        Raises RunStopped saying why there is none.
        """
        if resource.type is SourceType.LOCAL:
            real, identity = local_source(self.settings.bounds, resource.path, customer.name)
            return local_launch(self.cold, customer, resource, real, identity, guard, command)
        password = None
        if resource.password:
            key = env_prefix(resource.name) + "PASSWORD"
            with stopping():
                password = self.resolver.resolve(resource.password, customer.name, key)
        confinement = self.settings.confinement
        return remote_launch(self.cold, customer, resource, password, guard, confinement, command)

    def run_worker(
        self,
        customer: Customer,
        resource: Resource,
        kind: Kind,
        scheduled_for: datetime,
        launch: WorkerSetup,
        timeout: float | None,
    ) -> Finished:
        """Run one worker of the job doing `launch`, and return what it left behind.

        Raises RunStopped when it could not run: a secret, the bucket, the runtime, or
        another run of the job in the way (the job's lock).
        """
        work = Work(customer.job(resource), kind)
        files, remote, repositories = launch.files, launch.remote, launch.repositories
        with (
            stopping(),
            self.preparation.placed(
                customer, resource, work, scheduled_for, files, remote, repositories
            ) as placement,
        ):
            spec = spec_for(work, scheduled_for, launch, placement)
            try:
                return self.runtime.run(spec, timeout)
            except (KeyboardInterrupt, SystemExit):
                # The operator stopped the command: its worker stops with it (a restore must
                # not go on writing into what is cleaned up now). The daemon's own workers run
                # in its pool's threads, which see no such signal: a restarted daemon adopts
                # them instead.
                with contextlib.suppress(Exception):
                    self.runtime.collect(spec.name, 0)
                raise

    def wait_out_deleting(self, customer: Customer, resource: Resource) -> None:
        """Wait while a worker that deletes from the job's repository runs (a prune, or a
        recovery rebuilding it): a reader beside it could find what it reads gone.

        Says so on stderr once; raises RunFailed if it is still running after
        UNSTOPPABLE_JOB_TIMEOUT (what bounds it). A prune launched after this check waits
        for the reader in turn (planner.py).
        """
        job = customer.job(resource)
        end = time.monotonic() + self.settings.job_timeout_seconds
        said = False
        while deleting := [w for w in self.runtime.workers() if _deletes(w, job)]:
            if time.monotonic() > end:
                raise RunFailed(f"{job}: {deleting[0].name} still runs; try again when it ended")
            if not said:
                kind = deleting[0].label("kind")
                print(f"{job}: waiting for its {kind} to end ({deleting[0].name})", file=sys.stderr)
                said = True
            time.sleep(WAIT_PAUSE)


def _deletes(worker: WorkerInfo, job: JobKey) -> bool:
    kinds = (Kind.PRUNE.value, Kind.FORGET.value, Kind.RECOVER.value)
    return worker.running and worker.job == job and worker.label("kind") in kinds
