"""What a run's worker needs on this host before it starts, prepared by the one step that
owns it: the job's directories, its secret files (the repository password, the source's
credentials, the S3 profile), the customer's bucket, and the host's AppArmor state.

Secrets are resolved here, written to a directory of the run's own, and removed when the
worker has ended; nothing secret reaches the spec (runtime/spec.py's `spec_for`).
"""

import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

from pydantic import SecretStr

from orchestrator import deadline
from orchestrator.config.customer import Customer, Resource
from orchestrator.config.settings import Settings
from orchestrator.model import Kind, Work
from orchestrator.runtime import apparmor
from orchestrator.runtime.paths import COLD_PROFILE
from orchestrator.runtime.spec import Limits, Placement, container_name
from orchestrator.rustic import commands
from orchestrator.secrets.files import Resolver, secret_files
from orchestrator.storage import s3_values
from orchestrator.storage.layout import (
    bucket,
    bucket_lock,
    cold_profile,
    instance_of,
    job_storage,
    open_bucket,
    secrets_dir,
)
from orchestrator.storage.repo_dirs import JobStorage

log = logging.getLogger(__name__)
BUCKET_DEADLINE_SECONDS = 60.0


class Preparation:
    """Prepares each run's place on this host; remembers which buckets exist already."""

    def __init__(self, settings: Settings, resolver: Resolver, origin: str) -> None:
        self.settings = settings
        self.resolver = resolver
        self.origin = origin
        self.buckets_ready: set[str] = set()

    @contextmanager
    def placed(
        self,
        customer: Customer,
        resource: Resource,
        work: Work,
        scheduled_for: datetime,
        files: Mapping[str, SecretStr],
        remote: bool,
        repositories: bool = True,
    ) -> Iterator[Placement]:
        """Yield where the worker of `work` runs, its secret `files` written beside the
        repository password (and S3 profile); remove the secrets when the block ends.

        Raises SecretError (a secret does not resolve) or StorageError (the bucket).
        """
        settings = self.settings
        storage = job_storage(settings, customer.name, resource.name)
        for directory in (storage.hot, storage.cache, storage.cold):
            if directory is not None:
                directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        secrets = {**files}
        if not repositories:  # a worker that runs no rustic gets no key to the repositories
            name = container_name(work.job, work.kind, scheduled_for)
            with secret_files(secrets_dir(settings), name, secrets) as directory:
                yield self._placement(storage, directory, work, remote)
            return
        password = self.resolver.resolve(customer.repo_password, customer.name, "REPO_PASSWORD")
        secrets[commands.PASSWORD_FILE] = password
        key = None
        if customer.cold_key is not None:
            key_id, ref = customer.cold_key
            key = (key_id, self.resolver.resolve(ref, customer.name, "COLD_S3_SECRET_ACCESS_KEY"))
        if (profile := cold_profile(settings, customer.name, resource.name, key)) is not None:
            secrets[COLD_PROFILE] = profile
            if work.kind is Kind.BACKUP:
                self._ensure_bucket(customer.name)
        name = container_name(work.job, work.kind, scheduled_for)
        with secret_files(secrets_dir(settings), name, secrets) as directory:
            yield self._placement(storage, directory, work, remote)

    def _placement(self, storage: JobStorage, secrets: Path, work: Work, remote: bool) -> Placement:
        return Placement(
            image=self.settings.WORKER_IMAGE,
            origin=self.origin,
            storage=storage,
            secrets=secrets,
            limits=Limits.of(self.settings, work.kind),
            apparmor=remote and apparmor.enabled(),
            profiles=apparmor.loaded_profiles() if remote else frozenset(),
            instance=instance_of(self.settings),
        )

    def _ensure_bucket(self, customer: str) -> None:
        """Create the customer's bucket once per process; StorageError if that fails.

        One without object lock is used, and reported (here, and by each prune).
        """
        name = bucket(self.settings, customer)
        if name in self.buckets_ready:
            return
        lock = bucket_lock(self.settings)
        store = open_bucket(self.settings, customer)
        try:
            state = deadline.call(
                lambda: store.ensure(lock), BUCKET_DEADLINE_SECONDS, f"bucket {name}"
            )
        except deadline.DeadlineExceeded as exc:
            raise s3_values.StorageError(str(exc)) from None
        finally:
            store.close()
        if lock is not None and state is s3_values.BucketState.UNLOCKED:
            log.error(
                "%s: bucket %s has no object lock: its history is not protected", customer, name
            )
        self.buckets_ready.add(name)
