"""The scheduling decision: a pure function of (jobs, running jobs, state, last tick, now).

No clock, no Docker, no files: every input is an argument, so the whole policy — coalescing,
catch-up, overlap, the parallel cap and its fairness — is tested table-driven.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from orchestrator.model import split_job
from orchestrator.schedule import next_fire

# A scheduled time this late is no longer "now" but missed (the daemon was down or blocked);
# a restart by systemd takes a few seconds, a tick a few milliseconds.
GRACE = timedelta(seconds=10)
# Never enumerate more missed times than this for one job in one tick.
MAX_ENUMERATED = 10_000

BACKUP = "backup"
# Maintenance kinds: a run of one waits for the job's lock instead of being skipped.
MAINTENANCE = ("prune", "verify")


@dataclass(frozen=True)
class JobSpec:
    """What the planner needs of one kind of scheduled work of a job."""

    id: str  # "<customer>/<resource>": the job, and the lock all its kinds of run share
    schedule: str
    timezone: str
    kind: str = BACKUP  # or one of MAINTENANCE

    @property
    def key(self) -> str:
        """Return what tells this work apart from the job's other kinds: `c/r` or `c/r#kind`."""
        return self.id if self.kind == BACKUP else f"{self.id}#{self.kind}"


@dataclass(frozen=True)
class PlanState:
    """What the planner carries from one tick to the next."""

    # The first unhandled time of each job, keyed by the whole spec: a changed schedule
    # starts afresh instead of waiting for a time its old schedule named.
    next_due: Mapping[JobSpec, datetime] = field(default_factory=dict)
    # Due, waiting for a slot (or, for maintenance, for the job's lock); keyed by JobSpec.key.
    pending: Mapping[str, datetime] = field(default_factory=dict)


@dataclass(frozen=True)
class Launch:
    job: str
    scheduled_for: datetime
    kind: str = BACKUP


@dataclass(frozen=True)
class Skip:
    job: str
    scheduled_for: datetime
    reason: str  # "overlap" | "max_parallel"
    kind: str = BACKUP


@dataclass(frozen=True)
class Missed:
    job: str
    count: int
    last: datetime
    kind: str = BACKUP


@dataclass(frozen=True)
class Plan:
    launch: tuple[Launch, ...]
    skip: tuple[Skip, ...]
    missed: tuple[Missed, ...]
    state: PlanState
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

    All kinds of work of one job share its lock: never two at once. A backup due while the
    job runs is skipped (`overlap`); due maintenance waits for the lock, and is launched
    before a backup that became due after it.
    """
    next_due: dict[JobSpec, datetime] = {}
    pending = {key: when for key, when in state.pending.items()}
    known = {job.key for job in jobs}
    for gone in [key for key in pending if key not in known]:
        del pending[gone]
    skips: list[Skip] = []
    missed: list[Missed] = []
    unschedulable: list[str] = []

    for job in jobs:
        try:
            due = state.next_due.get(job) or next_fire(
                job.schedule, job.timezone, last_tick, job.key
            )
            if due > now:
                next_due[job] = due
                continue
            times = _times_until(job, due, now)
            next_due[job] = next_fire(job.schedule, job.timezone, now, job.key)
        except Exception:  # one job's schedule, whatever croniter raises, is its problem alone
            unschedulable.append(job.key)
            continue
        latest = times[-1]
        if now - latest <= GRACE:
            late = times[:-1]
            candidate: datetime | None = latest
        else:
            late = times
            candidate = latest if catch_up == "once" else None
        if late:
            missed.append(Missed(job.id, len(late), late[-1], job.kind))
        if candidate is None:
            continue
        if job.kind != BACKUP:
            pending.setdefault(job.key, candidate)  # one drill or prune is enough
        elif job.id in running:
            skips.append(Skip(job.id, candidate, "overlap"))
        else:
            if job.key in pending:
                skips.append(Skip(job.id, pending[job.key], "max_parallel"))
            pending[job.key] = candidate

    launches = _allocate(pending, running, max_parallel, per_customer or max_parallel, skips)
    return Plan(
        tuple(Launch(lock_of(key), when, kind_of(key)) for key, when in launches),
        tuple(skips),
        tuple(missed),
        PlanState(next_due, pending),
        tuple(unschedulable),
    )


def _times_until(job: JobSpec, first: datetime, now: datetime) -> list[datetime]:
    """Return the scheduled times of `job` from `first` up to `now` (at least `first`)."""
    times = [first]
    while len(times) < MAX_ENUMERATED:
        following = next_fire(job.schedule, job.timezone, times[-1], job.key)
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
    cannot keep another customer's due job waiting. A run held back stays pending, and so
    does maintenance whose job is busy; a pending backup whose job is busy is skipped.
    """
    for key in [k for k in pending if lock_of(k) in running and kind_of(k) == BACKUP]:
        skips.append(Skip(key, pending.pop(key), "overlap"))
    free = max_parallel - len(running)
    per_customer: dict[str, int] = {}
    for job in running:
        per_customer[customer_of(job)] = per_customer.get(customer_of(job), 0) + 1
    busy = set(running)
    launches: list[tuple[str, datetime]] = []
    while free > 0:
        eligible = [
            k
            for k in pending
            if lock_of(k) not in busy and per_customer.get(customer_of(k), 0) < share
        ]
        if not eligible:
            break
        key = min(eligible, key=lambda k: (per_customer.get(customer_of(k), 0), pending[k], k))
        launches.append((key, pending.pop(key)))
        per_customer[customer_of(key)] = per_customer.get(customer_of(key), 0) + 1
        busy.add(lock_of(key))
        free -= 1
    return launches


def customer_of(job: str) -> str:
    """Return the customer of the job id `customer/resource` (or of a key `c/r#kind`)."""
    return split_job(job)[0]


def lock_of(key: str) -> str:
    """Return the job (and lock) of a pending key: `c/r` of `c/r#prune`."""
    return key.partition("#")[0]


def kind_of(key: str) -> str:
    """Return the kind of work a pending key names."""
    return key.partition("#")[2] or BACKUP
