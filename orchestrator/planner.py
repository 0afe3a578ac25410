"""The scheduling decision: a pure function of (jobs, running jobs, state, last tick, now).

No clock, no Docker, no files: every input is an argument, so the whole policy — coalescing,
catch-up, overlap, the parallel cap and its fairness — is tested table-driven.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from orchestrator.model import JobKey, Kind, Work
from orchestrator.schedule import fires, next_fire

# A scheduled time this late is no longer "now" but missed (the daemon was down or blocked);
# a restart by systemd takes a few seconds, a tick a few milliseconds.
GRACE = timedelta(seconds=10)
# Never enumerate more missed times than this for one job in one tick.
MAX_ENUMERATED = 10_000

# Maintenance kinds: a run of one waits for the job's lock instead of being skipped.
MAINTENANCE = (Kind.PRUNE, Kind.VERIFY)


@dataclass(frozen=True)
class JobSpec:
    """What the planner needs of one kind of scheduled work of a job."""

    work: Work  # its job is the lock all the job's kinds of run share
    schedule: str
    timezone: str
    # Its customer's file is broken now: its last good schedule still names the times,
    # which are counted missed (reason `config`), never run.
    dormant: bool = False

    @property
    def job(self) -> JobKey:
        return self.work.job

    @property
    def kind(self) -> Kind:
        return self.work.kind


@dataclass(frozen=True)
class PlanState:
    """What the planner carries from one tick to the next."""

    # The first unhandled time of each job, keyed by the whole spec: a changed schedule
    # starts afresh instead of waiting for a time its old schedule named.
    next_due: Mapping[JobSpec, datetime] = field(default_factory=dict)
    # Due, waiting for a slot (or, for maintenance, for the job's lock).
    pending: Mapping[Work, datetime] = field(default_factory=dict)


@dataclass(frozen=True)
class Launch:
    work: Work
    scheduled_for: datetime

    @property
    def job(self) -> JobKey:
        return self.work.job

    @property
    def kind(self) -> Kind:
        return self.work.kind


@dataclass(frozen=True)
class Skip:
    """A backup not run: its job was busy (`overlap`) or it waited past its next time."""

    job: JobKey
    scheduled_for: datetime
    reason: str  # "overlap" | "max_parallel"


@dataclass(frozen=True)
class Missed:
    work: Work
    count: int
    last: datetime
    first: datetime | None = None  # the earliest of them (receipts name the whole range)
    reason: str = ""  # `config`: its customer's file was broken then


@dataclass(frozen=True)
class Plan:
    launch: tuple[Launch, ...]
    skip: tuple[Skip, ...]
    missed: tuple[Missed, ...]
    state: PlanState
    unschedulable: tuple[Work, ...] = ()  # work whose schedule names no next time


def plan(
    jobs: Sequence[JobSpec],
    running: frozenset[JobKey],
    state: PlanState,
    last_tick: datetime,
    now: datetime,
    max_parallel: int,
    catch_up: str = "once",
    per_customer: int | None = None,
    reading: frozenset[JobKey] = frozenset(),
    claimed: frozenset[tuple[Work, datetime]] = frozenset(),
) -> Plan:
    """Decide which jobs to launch now, which to skip, and which scheduled times were missed.

    `running` holds the jobs with a running worker (Docker's word) or a run in flight.
    A job never in `state` starts counting from `last_tick`. At most `max_parallel` runs
    at once, and at most `per_customer` (default: all of them) of one customer. A job whose
    schedule names no next time is listed in `unschedulable`; every other job goes on.

    All kinds of work of one job share its lock: never two at once. A backup due while the
    job runs is skipped (`overlap`); due maintenance waits for the lock, and is launched
    before a backup that became due after it. A prune also waits while a worker that only
    reads the repository (`reading`: a restore, a listing) runs: it would delete what that
    worker reads. Backups and drills run beside readers.
    """
    next_due: dict[JobSpec, datetime] = {}
    # A run waiting again after a restart may have reached Docker after all: it is claimed.
    pending = {work: when for work, when in state.pending.items() if (work, when) not in claimed}
    known = {job.work for job in jobs if not job.dormant}
    dormant = {job.work for job in jobs if job.dormant}
    skips: list[Skip] = []
    missed: list[Missed] = []
    unschedulable: list[Work] = []
    for gone in [work for work in pending if work not in known]:
        when = pending.pop(gone)
        if gone in dormant:  # it waited for a slot when its file broke: missed, not lost
            missed.append(Missed(gone, 1, when, when, "config"))

    for job in jobs:
        seed = str(job.work)
        try:
            due = state.next_due.get(job) or next_fire(job.schedule, job.timezone, last_tick, seed)
            if due > now:
                next_due[job] = due
                continue
            times = _times_until(job, due, now)
            next_due[job] = next_fire(job.schedule, job.timezone, now, seed)
        except Exception:  # one job's schedule, whatever croniter raises, is its problem alone
            unschedulable.append(job.work)
            continue
        latest = times[-1]
        if job.dormant:  # nothing of a broken file runs; its times are accounted for
            for run in _unclaimed_runs(job.work, times, claimed):
                missed.append(Missed(job.work, len(run), run[-1], run[0], "config"))
            continue
        # Each time is one thing: run (or skipped), or missed. The latest is run if it is
        # fresh, or as the one catch-up after downtime; only the times before it are missed.
        if now - latest <= GRACE or catch_up == "once":
            late = times[:-1]
            candidate: datetime | None = latest
        else:
            late = times
            candidate = None
        for run in _unclaimed_runs(job.work, late, claimed):
            missed.append(Missed(job.work, len(run), run[-1], run[0]))
        if candidate is None or (job.work, candidate) in claimed:
            continue
        if job.kind is not Kind.BACKUP:
            pending.setdefault(job.work, candidate)  # one drill or prune is enough
        elif job.job in running:
            skips.append(Skip(job.job, candidate, "overlap"))
        else:
            if job.work in pending:
                skips.append(Skip(job.job, pending[job.work], "max_parallel"))
            pending[job.work] = candidate

    share = per_customer or max_parallel
    launches = _allocate(pending, running, reading, max_parallel, share, skips)
    return Plan(
        tuple(Launch(work, when) for work, when in launches),
        tuple(skips),
        tuple(missed),
        PlanState(next_due, pending),
        tuple(unschedulable),
    )


def _times_until(job: JobSpec, first: datetime, now: datetime) -> list[datetime]:
    """Return the scheduled times of `job` from `first` up to `now` (at least `first`)."""
    times = [first]
    following = fires(job.schedule, job.timezone, first, str(job.work))  # one parse for all
    while len(times) < MAX_ENUMERATED:
        after = next(following)
        if after > now:
            break
        times.append(after)
    return times


def _unclaimed_runs(
    work: Work, times: list[datetime], claimed: frozenset[tuple[Work, datetime]]
) -> list[list[datetime]]:
    """Split `times` into runs of consecutive times no worker claims: a missed range names
    its first and last time, and must never span a time an adoption accounts for."""
    runs: list[list[datetime]] = [[]]
    for when in times:
        if (work, when) in claimed:
            runs.append([])
        else:
            runs[-1].append(when)
    return [run for run in runs if run]


def _allocate(
    pending: dict[Work, datetime],
    running: frozenset[JobKey],
    reading: frozenset[JobKey],
    max_parallel: int,
    share: int,
    skips: list[Skip],
) -> list[tuple[Work, datetime]]:
    """Move pending runs into free slots, oldest first, customers with fewest runs first.

    No customer holds more than `share` slots, so one customer's many slow resources
    cannot keep another customer's due job waiting. A run held back stays pending, and so
    does maintenance whose job is busy; a pending backup whose job is busy is skipped.
    """
    for work in [w for w in pending if w.job in running and w.kind is Kind.BACKUP]:
        skips.append(Skip(work.job, pending.pop(work), "overlap"))
    free = max_parallel - len(running)
    per_customer: dict[str, int] = {}
    for job in running:
        per_customer[job.customer] = per_customer.get(job.customer, 0) + 1
    busy = set(running)
    launches: list[tuple[Work, datetime]] = []
    while free > 0:
        eligible = [
            w
            for w in pending
            if w.job not in busy
            and per_customer.get(w.job.customer, 0) < share
            and not (w.kind is Kind.PRUNE and w.job in reading)
        ]
        if not eligible:
            break
        work = min(
            eligible, key=lambda w: (per_customer.get(w.job.customer, 0), pending[w], str(w))
        )
        launches.append((work, pending.pop(work)))
        per_customer[work.job.customer] = per_customer.get(work.job.customer, 0) + 1
        busy.add(work.job)
        free -= 1
    return launches
