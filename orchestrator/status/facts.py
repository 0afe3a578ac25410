"""What `unstoppable status` and the status pages show of each job, gathered in one place.

A job's health is the worst thing known of it, so a drill that found damage, or a hold after
a suspect snapshot, is never hidden behind the last backup's `success`.
"""

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from orchestrator.config.customer import Customers
from orchestrator.config.settings import Settings
from orchestrator.model import JobKey, Result, Work
from orchestrator.receipts.spool import spooled
from orchestrator.reporting.history import JobStatus
from orchestrator.reporting.ledger import Ledger
from orchestrator.schedule import next_fire


class Health(StrEnum):
    """A job at a glance, worst first."""

    CORRUPT = "corrupt"  # a restore drill found damage no full drill has cleared
    FAILING = "failing"  # its last backup failed or timed out
    SUSPECT = "suspect"  # its last snapshot looked like encryption in place
    HELD = "held"  # retention is held after a suspect snapshot, until released
    DRILL_FAILED = "drill failed"  # its last restore drill could not run
    NEVER = "never run"
    OK = "ok"


@dataclass(frozen=True)
class Drill:
    """The job's last restore drill."""

    ended: datetime
    result: str
    reason: str


@dataclass(frozen=True)
class ReceiptHead:
    """The newest receipt this server wrote for the job, and how many wait to be published."""

    seq: int | None
    digest: str | None
    waiting: int


@dataclass(frozen=True)
class JobFacts:
    """Everything a status line or page says of one job."""

    job: JobKey
    health: Health
    status: JobStatus | None
    next_run: datetime | None  # None: no longer configured, or the schedule names no time
    configured: bool
    drill: Drill | None
    last_clean_drill: datetime | None
    hold: dict[str, str] | None  # snapshot, why, at
    damage: dict[str, str] | None  # why, at
    receipts: ReceiptHead


def gather(
    settings: Settings, ledger: Ledger, customers: Customers, now: datetime, only: str | None = None
) -> list[JobFacts]:
    """Return the facts of every configured job, then of the ones the ledger still knows
    (of customer `only`, if given)."""
    known = {s.job: s for s in ledger.history.status() if only in (None, s.customer)}
    _corrupt, verified = ledger.memory.maintenance_state()
    out = []
    for customer in customers.valid:
        if only not in (None, customer.name):
            continue
        for resource in customer.resources:
            job = customer.job(resource)
            due = next_run(resource.schedule, customer.timezone, now, job)
            out.append(_facts(settings, ledger, job, known.pop(job, None), due, True, verified))
    for job, status in sorted(known.items()):
        out.append(_facts(settings, ledger, job, status, None, False, verified))
    return out


def of_customer(facts: list[JobFacts], customer: str) -> list[JobFacts]:
    """Return the facts of `customer`'s jobs that are still configured."""
    return [f for f in facts if f.job.customer == customer and f.configured]


def next_run(schedule: str, timezone: str, now: datetime, job: JobKey) -> datetime | None:
    """Return the next backup of a job, or None if its schedule names none."""
    try:
        return next_fire(schedule, timezone, now, str(Work(job)))
    except ValueError:
        return None


def _facts(
    settings: Settings,
    ledger: Ledger,
    job: JobKey,
    status: JobStatus | None,
    due: datetime | None,
    configured: bool,
    verified: dict[JobKey, datetime],
) -> JobFacts:
    hold, damage = ledger.memory.marks(job)
    last = ledger.memory.last_drill(job)
    drill = Drill(*last) if last else None
    return JobFacts(
        job,
        health(status, drill, hold, damage),
        status,
        due,
        configured,
        drill,
        verified.get(job),
        hold,
        damage,
        ReceiptHead(*spooled(settings, job)),
    )


def health(
    status: JobStatus | None,
    drill: Drill | None,
    hold: dict[str, str] | None,
    damage: dict[str, str] | None,
) -> Health:
    """Return the worst thing known of a job."""
    result = status.result if status else None
    if damage is not None or (drill is not None and drill.result == Result.CORRUPT):
        return Health.CORRUPT
    if result in (Result.FAILURE, Result.TIMEOUT):
        return Health.FAILING
    if result == Result.SUSPECT:
        return Health.SUSPECT
    if hold is not None:
        return Health.HELD
    if drill is not None and drill.result in (Result.FAILURE, Result.TIMEOUT):
        return Health.DRILL_FAILED
    if status is None or status.last_success is None:
        return Health.NEVER if result is None else Health.FAILING
    return Health.OK
