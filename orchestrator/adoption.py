"""Adoption: a worker a previous daemon left running is collected and judged, never duplicated."""

from datetime import UTC, datetime

from orchestrator.config.customer import Customers
from orchestrator.errors import ConfigError, RuntimeUnavailable
from orchestrator.judgement import locked_written, over_memory
from orchestrator.model import JobKey, Kind, Outcome, Reason, Result, RunRecord, Work
from orchestrator.runs import Jobs
from orchestrator.runtime.protocol import WorkerInfo
from orchestrator.rustic import output
from orchestrator.rustic.output import last_words
from orchestrator.secrets.files import remove_secrets
from orchestrator.storage.layout import secrets_dir


def adopt(jobs: Jobs, job: JobKey, worker: WorkerInfo, customers: Customers) -> RunRecord:
    """Collect a worker of `job` a previous daemon left running, and judge it.

    The run keeps its original scheduled time; its secret files are removed afterwards.
    A prune is judged by its exit code; a drill is one step of several, so it is
    recorded as interrupted and runs again on its schedule.
    """
    kind = Kind(worker.label("kind"))
    scheduled_for = datetime.fromisoformat(worker.label("scheduled-for").replace("Z", "+00:00"))
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
    work = Work(job, Kind.BACKUP if kind is Kind.FORGET else kind)
    return RunRecord.of(work, scheduled_for, worker.started_at, outcome)
