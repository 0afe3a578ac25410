"""Adoption: a worker a previous daemon left running is collected and judged, never duplicated."""

import time
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

from orchestrator.config.customer import Customers
from orchestrator.errors import ConfigError, RuntimeUnavailable
from orchestrator.judgement import locked_written, over_memory
from orchestrator.model import JobKey, Kind, Outcome, Reason, Result, RunRecord, Work
from orchestrator.reporting.ledger import Ledger
from orchestrator.runs import Jobs
from orchestrator.runtime.protocol import WorkerInfo
from orchestrator.rustic import output
from orchestrator.rustic.output import last_words
from orchestrator.secrets.files import remove_secrets
from orchestrator.storage.layout import secrets_dir

# A secrets directory no container mounts is a leftover once it is this old; younger ones
# may belong to a run being created right now (by the CLI, beside the daemon).
LEFTOVER_SECRETS_AGE = 600.0
ADOPTED_KINDS = tuple(k.value for k in (Kind.BACKUP, Kind.FORGET, Kind.PRUNE, Kind.VERIFY))


def own_workers(workers: Iterable[WorkerInfo], instance: str) -> list[WorkerInfo]:
    """Return the workers a daemon of this installation launched, of a kind it adopts; a
    worker of another installation on the same engine is never ours to collect."""
    return [
        w
        for w in workers
        if w.label("origin") == "daemon"
        and w.label("kind") in ADOPTED_KINDS
        and w.label("instance") in ("", instance)
    ]


def remove_leftover_secrets(base: Path, workers: Iterable[WorkerInfo]) -> None:
    """Remove the secrets directories under `base` no worker mounts, once old enough."""
    in_use = {w.secrets for w in workers}
    if not base.is_dir():
        return
    for leftover in base.iterdir():
        try:
            age = time.time() - leftover.lstat().st_mtime
        except OSError:
            continue
        if str(leftover) not in in_use and age > LEFTOVER_SECRETS_AGE:
            remove_secrets(base, str(leftover))


def scheduled_for_of(worker: WorkerInfo) -> datetime | None:
    """Return the time a worker's `scheduled-for` label names, or None if it names none."""
    try:
        when = datetime.fromisoformat(worker.label("scheduled-for").replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo is not None else None


def time_of(worker: WorkerInfo) -> tuple[Work, datetime] | None:
    """Return the scheduled time a worker of a job stands for (None: its labels name none)."""
    when = scheduled_for_of(worker)
    if worker.job is None or when is None or worker.label("kind") not in ADOPTED_KINDS:
        return None
    return adopted_work(worker.job, worker), when


def claimed_times(workers: Iterable[WorkerInfo]) -> set[tuple[Work, datetime]]:
    """Return the times `workers` stand for: their adoption records them, so the planner
    neither runs them again nor counts them missed (a daemon killed after the launch,
    before its tick was written, left no other trace of them)."""
    return {key for worker in workers if (key := time_of(worker)) is not None}


def ran(ledger: Ledger, work: Work, when: datetime) -> bool:
    """Return whether the ledger holds a run of `work` scheduled for `when`."""
    return any(
        r.kind == work.kind.value and datetime.fromisoformat(r.scheduled_for) == when
        for r in ledger.history.runs(work.job)
    )


def in_ledger(ledger: Ledger, key: tuple[Work, datetime]) -> bool:
    """Return whether the ledger holds a run of the time `key` (a worker whose removal
    failed, or one a daemon recorded before it was restarted); unreadable: no."""
    try:
        return ran(ledger, *key)
    except Exception:
        return False


def adopted_work(job: JobKey, worker: WorkerInfo) -> Work:
    """Return the work a worker's record stands for: a forget ends its backup's run."""
    kind = Kind(worker.label("kind"))
    return Work(job, Kind.BACKUP if kind is Kind.FORGET else kind)


def adopt(jobs: Jobs, job: JobKey, worker: WorkerInfo, customers: Customers) -> RunRecord:
    """Collect a worker of `job` a previous daemon left running, and judge it.

    The run keeps its original scheduled time; its secret files are removed afterwards.
    A prune is judged by its exit code; a drill is one step of several, so it is
    recorded as interrupted and runs again on its schedule.
    """
    kind = Kind(worker.label("kind"))
    scheduled_for = scheduled_for_of(worker)
    if scheduled_for is None:
        raise ValueError(f"{worker.name}: its scheduled-for label names no time")
    elapsed = (datetime.now(UTC) - worker.started_at).total_seconds()
    try:
        done = jobs.launcher.runtime.collect(
            worker.name, jobs.settings.job_timeout_seconds - elapsed
        )
    except RuntimeUnavailable as exc:
        done = None
        outcome = Outcome(Result.FAILURE, Reason.RUNTIME, str(exc))
    else:
        # Only once the worker is gone: a worker left running keeps its secrets.
        remove_secrets(secrets_dir(jobs.settings), worker.secrets)
    if done is not None:
        try:
            customer = customers.get(job.customer)
            resource = customer.resource(job.resource)
        except ConfigError:
            customer = None
        if (killed := over_memory(done)) is not None:
            outcome = killed
        elif kind in (Kind.FORGET, Kind.PRUNE):
            ok = done.exit_code == 0 and not done.timed_out
            outcome = Outcome(
                Result.SUCCESS if ok else Result.FAILURE,
                Reason.NONE if ok else Reason.PRUNE,
                f"{kind.value} finished" if ok else f"{kind.value} failed: {last_words(done)}",
            )
            if customer is not None:  # what it left half way is set aside, as after its own run
                outcome = jobs.halfway(customer, resource, worker.started_at, outcome)
        elif kind is Kind.VERIFY:
            outcome = Outcome(
                Result.FAILURE,
                Reason.INTERRUPTED,
                "a restore drill step was left by a previous daemon; the drill runs again",
            )
        elif customer is None:
            outcome = output.judge_backup(done.exit_code, done.stdout, done.stderr)
        else:
            outcome = jobs.judge(customer, resource, scheduled_for, done)
            if kind is Kind.BACKUP:  # the worker is gone: what it left half way is set aside
                outcome = jobs.halfway(customer, resource, worker.started_at, outcome)
        if kind is Kind.BACKUP:
            outcome = locked_written(jobs.settings, jobs.locks, job, outcome)
    return RunRecord.of(adopted_work(job, worker), scheduled_for, worker.started_at, outcome)
