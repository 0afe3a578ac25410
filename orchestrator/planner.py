"""The scheduling decision: a pure function of (jobs, running jobs, state, last tick, now).

No clock, no Docker, no files: every input is an argument, so the whole policy — coalescing,
catch-up, overlap, the parallel cap and its fairness — is tested table-driven.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from orchestrator.schedule import next_fire

# A scheduled time this late is no longer "now" but missed (the daemon was down or blocked);
# a restart by systemd takes a few seconds, a tick a few milliseconds.
GRACE = timedelta(seconds=10)
# Never enumerate more missed times than this for one job in one tick.
MAX_ENUMERATED = 10_000


@dataclass(frozen=True)
class JobSpec:
    """What the planner needs of a job."""

    id: str  # "<customer>/<resource>"
    schedule: str
    timezone: str


@dataclass(frozen=True)
class PlanState:
    """What the planner carries from one tick to the next."""

    # The first unhandled time of each job, keyed by the whole spec: a changed schedule
    # starts afresh instead of waiting for a time its old schedule named.
    next_due: Mapping[JobSpec, datetime] = field(default_factory=dict)
    pending: Mapping[str, datetime] = field(default_factory=dict)  # due, waiting for a slot


@dataclass(frozen=True)
class Launch:
    job: str
    scheduled_for: datetime
    catch_up: bool = False


@dataclass(frozen=True)
class Skip:
    job: str
    scheduled_for: datetime
    reason: str  # "overlap" | "max_parallel"


@dataclass(frozen=True)
class Missed:
    job: str
    count: int
    last: datetime


@dataclass(frozen=True)
class Plan:
    launch: tuple[Launch, ...]
    skip: tuple[Skip, ...]
    missed: tuple[Missed, ...]
    state: PlanState
    wake: datetime | None  # the next scheduled time of any job
    unschedulable: tuple[str, ...] = ()  # jobs whose schedule names no next time


def plan(
    jobs: Sequence[JobSpec],
    running: frozenset[str],
    state: PlanState,
    last_tick: datetime,
    now: datetime,
    max_parallel: int,
    catch_up: str = "once",
    per_customer: int | None = None,
) -> Plan:
    """Decide which jobs to launch now, which to skip, and which scheduled times were missed.

    `running` holds the jobs with a running worker (Docker's word) or a run in flight.
    A job never in `state` starts counting from `last_tick`. At most `max_parallel` runs
    at once, and at most `per_customer` (default: all of them) of one customer. A job whose
    schedule names no next time is listed in `unschedulable`; every other job goes on.
    """
    next_due: dict[JobSpec, datetime] = {}
    pending = {job: when for job, when in state.pending.items()}
    known = {job.id for job in jobs}
    for gone in [job_id for job_id in pending if job_id not in known]:
        del pending[gone]
    skips: list[Skip] = []
    missed: list[Missed] = []
    catch_ups: set[str] = set()

    unschedulable: list[str] = []

    for job in jobs:
        try:
            due = state.next_due.get(job) or next_fire(
                job.schedule, job.timezone, last_tick, job.id
            )
            if due > now:
                next_due[job] = due
                continue
            times = _times_until(job, due, now)
            next_due[job] = next_fire(job.schedule, job.timezone, now, job.id)
        except ValueError:
            unschedulable.append(job.id)
            continue
        latest = times[-1]
        if now - latest <= GRACE:
            late = times[:-1]
            candidate: datetime | None = latest
        else:
            late = times
            candidate = latest if catch_up == "once" else None
            if candidate is not None:
                catch_ups.add(job.id)
        if late:
            missed.append(Missed(job.id, len(late), late[-1]))
        if candidate is None:
            continue
        if job.id in running:
            skips.append(Skip(job.id, candidate, "overlap"))
        else:
            if job.id in pending:
                skips.append(Skip(job.id, pending[job.id], "max_parallel"))
            pending[job.id] = candidate

    launches = _allocate(pending, running, max_parallel, per_customer or max_parallel, skips)
    wake = min(next_due.values(), default=None)
    return Plan(
        tuple(Launch(job, when, job in catch_ups) for job, when in launches),
        tuple(skips),
        tuple(missed),
        PlanState(next_due, pending),
        wake,
        tuple(unschedulable),
    )


def _times_until(job: JobSpec, first: datetime, now: datetime) -> list[datetime]:
    """Return the scheduled times of `job` from `first` up to `now` (at least `first`)."""
    times = [first]
    while len(times) < MAX_ENUMERATED:
        following = next_fire(job.schedule, job.timezone, times[-1], job.id)
        if following > now:
            break
        times.append(following)
    return times


def _allocate(
    pending: dict[str, datetime],
    running: frozenset[str],
    max_parallel: int,
    share: int,
    skips: list[Skip],
) -> list[tuple[str, datetime]]:
    """Move pending runs into free slots, oldest first, customers with fewest runs first.

    No customer holds more than `share` slots, so one customer's many slow resources
    cannot keep another customer's due job waiting. A run held back stays pending.
    """
    for job in [j for j in pending if j in running]:
        skips.append(Skip(job, pending.pop(job), "overlap"))
    free = max_parallel - len(running)
    per_customer: dict[str, int] = {}
    for job in running:
        per_customer[customer_of(job)] = per_customer.get(customer_of(job), 0) + 1
    launches: list[tuple[str, datetime]] = []
    while free > 0:
        eligible = [j for j in pending if per_customer.get(customer_of(j), 0) < share]
        if not eligible:
            break
        job = min(eligible, key=lambda j: (per_customer.get(customer_of(j), 0), pending[j], j))
        launches.append((job, pending.pop(job)))
        per_customer[customer_of(job)] = per_customer.get(customer_of(job), 0) + 1
        free -= 1
    return launches


def customer_of(job: str) -> str:
    """Return the customer of the job id `customer/resource`."""
    return job.split("/", 1)[0]
