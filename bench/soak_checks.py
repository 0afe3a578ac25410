"""The soak's invariants: what must hold after any mix of faults, judged from outside.

Each check takes what the harness gathered itself (Docker's event stream, the schedule it
computed, the repositories it checked, the logs it kept) beside what the daemon wrote (its
ledger, its receipts, its metrics), and returns what is broken, in words. An empty list is
a pass. Nothing here runs anything: tests feed each check a broken record to prove it fails.
"""

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from orchestrator.model import JobKey

MANAGED_JOB = "unstoppable.job"
SCHEDULED = "unstoppable.scheduled-for"
CHAINED = ("During handling of the above exception", "The above exception was the direct cause")


@dataclass(frozen=True)
class Run:
    """One run as the ledger holds it."""

    job: JobKey
    kind: str
    scheduled_for: datetime
    started: datetime
    result: str
    reason: str
    recorded: datetime | None = None  # when the ledger got it


@dataclass(frozen=True)
class Tick:
    """Scheduled times the ledger says did not run: one skipped, or the `count` scheduled
    times up to `last` missed."""

    job: JobKey
    event: str  # skipped | missed
    last: datetime
    count: int
    first: datetime | None = None  # a missed range's first time, when the ledger has it


@dataclass(frozen=True)
class RepoCheck:
    """What the harness found in one job's repositories after the soak."""

    job: JobKey
    checked: bool  # rustic check --read-data (and restic on a bucket) found no error
    snapshots: int  # snapshots listed
    identical: bool  # the newest snapshot restored is the source, byte for byte
    said: str = ""  # what failed, if anything


@dataclass
class Verdict:
    """Each invariant's broken cases, by invariant."""

    broken: dict[str, list[str]] = field(default_factory=dict)

    def add(self, invariant: str, problems: Iterable[str]) -> None:
        self.broken.setdefault(invariant, []).extend(problems)

    @property
    def passed(self) -> bool:
        return not any(self.broken.values())


def recovered(runs: Sequence[Run], jobs: Iterable[JobKey], after: datetime) -> list[str]:
    """1. Every job has a successful backup that began after the last fault cleared."""
    good = {
        r.job for r in runs if r.kind == "backup" and r.result == "success" and r.started >= after
    }
    return [
        f"{job}: no successful backup after the last fault ({after:%H:%M:%S})"
        for job in jobs
        if job not in good
    ]


def never_overlapping(events: Sequence[dict[str, object]], jobs: Iterable[JobKey]) -> list[str]:
    """2. No two workers of one job were alive at once, by Docker's event stream; and the
    stream holds a worker of every job (an empty or unrelated log proves nothing)."""
    problems: list[str] = []
    alive: dict[str, set[str]] = {}  # each job's containers started and not yet gone
    seen: set[str] = set()
    for event in sorted(events, key=lambda e: int(str(e.get("timeNano", 0)))):
        attributes = _attributes(event)
        job, container = attributes.get(MANAGED_JOB, ""), str(event.get("id", ""))
        mine = alive.setdefault(job, set())
        if event.get("status") == "start":
            seen.add(job)
            mine.add(container)
            if len(mine) > 1:
                problems.append(f"{job}: two workers alive at once ({attributes.get('name')})")
        elif event.get("status") in ("die", "destroy"):
            # An engine killed under a worker emits no `die` for it: the restarted engine
            # only destroys it. Either ends it.
            mine.discard(container)
    problems += [
        f"{job}: Docker's event stream holds no worker of it"
        for job in map(str, jobs)
        if job not in seen
    ]
    return problems


def repositories(checks: Sequence[RepoCheck], jobs: Iterable[JobKey]) -> list[str]:
    """3. Every repository checks clean, lists its snapshots, and gives its source back."""
    found = {c.job: c for c in checks}
    problems = []
    for job in jobs:
        c = found.get(job)
        if c is None:
            problems.append(f"{job}: its repositories were not checked")
        elif not c.checked or c.snapshots < 1 or not c.identical:
            problems.append(
                f"{job}: check {'clean' if c.checked else 'FAILED'}, {c.snapshots} snapshot(s), "
                f"newest {'identical' if c.identical else 'NOT identical'}: {c.said}"
            )
    return problems


def accounted(
    promised: dict[JobKey, list[datetime]],
    runs: Sequence[Run],
    ticks: Sequence[Tick],
    events: Sequence[dict[str, object]],
    repeated: dict[JobKey, list[tuple[datetime, datetime]]] | None = None,
    optional: dict[JobKey, list[datetime]] | None = None,
) -> list[str]:
    """4. Each time the harness's own schedule promised became exactly one of: a backup run,
    a counted skip, or a time inside a counted missed range; and each backup run that
    succeeded had a worker Docker started for that very time (not the daemon's word).

    A time inside a span of `repeated` (the job's daemon had its clock set back over it,
    counted `clock`, and recomputed its schedules from the earlier time) comes round once
    more for each such span: accounted for at least once, at most once more per span. A
    time of `optional` (one the daemon could not know) may be accounted for, or not.
    """
    problems = []
    slack = timedelta(seconds=3)  # the clock file is read twice a second; threads wake late
    started = {
        (_attributes(e).get(MANAGED_JOB), _attributes(e).get(SCHEDULED))
        for e in events
        if e.get("status") == "start" and _attributes(e).get("unstoppable.kind") == "backup"
    }
    for job, times in promised.items():
        maybe = set((optional or {}).get(job, []))
        schedule = sorted({*times, *maybe})
        ran = Counter(r.scheduled_for for r in runs if r.job == job and r.kind == "backup")
        skipped = Counter(t.last for t in ticks if t.job == job and t.event == "skipped")
        missed: Counter[datetime] = Counter()
        for t in (t for t in ticks if t.job == job and t.event == "missed"):
            if not schedule or t.last < schedule[0]:
                continue  # wholly before the window: nothing promised to check it against
            if t.first is not None:  # the range names its ends: exactly the times between
                covered = [when for when in schedule if t.first <= when <= t.last]
            else:
                covered = [when for when in schedule if when <= t.last][-t.count :]
            # A range that began before the window: its first times were not promised here.
            before = t.first is not None and t.first < schedule[0]
            if (len(covered) != t.count and not before) or (covered and covered[-1] != t.last):
                problems.append(
                    f"{job}: {t.count} missed up to {t.last:%H:%M:%S}, which the schedule "
                    "does not hold"
                )
            missed.update(covered)
        spans = (repeated or {}).get(job, [])
        for when in schedule:
            count = ran[when] + skipped[when] + missed[when]
            again = sum(1 for a, b in spans if a - slack <= when <= b + slack)
            if not (0 if when in maybe else 1) <= count <= 1 + again:
                said = "not accounted for" if count == 0 else f"accounted for {count} times"
                problems.append(f"{job}: {when:%H:%M:%S} {said}")
    for r in runs:
        if r.kind == "backup" and r.result == "success":
            key = (str(r.job), r.scheduled_for.strftime("%Y-%m-%dT%H:%M:%SZ"))
            if key not in started:
                at = f"{r.scheduled_for:%H:%M:%S}"
                problems.append(f"{r.job}: a success for {at} without a worker Docker started")
    return problems


def agreeing(
    runs: Sequence[Run],
    ticks: Sequence[Tick],
    receipts: dict[JobKey, list[dict[str, object]]],
    metrics: dict[tuple[JobKey, str], float],
    scraped: datetime | None = None,
) -> list[str]:
    """5. The ledger, the receipts and /metrics tell the same story: a receipt for every
    run and every skipped or missed time, and the counters the ledger's totals (of the
    runs recorded before /metrics was `scraped`, when known)."""
    problems = []
    jobs = {r.job for r in runs} | set(receipts) | {t.job for t in ticks}
    for job in sorted(jobs):
        mine = receipts.get(job, [])
        # As sets of what happened, not counts: a duplicate cannot hide a loss.
        ledger_runs = Counter(
            (r.kind, r.scheduled_for.strftime("%Y-%m-%dT%H:%M:%SZ"), r.result)
            for r in runs
            if r.job == job
        )
        receipted_runs = Counter(
            (str(r.get("kind")), str(r.get("scheduled_for")), str(r.get("result")))
            for r in mine
            if "started" in r
        )
        for what, n in sorted((ledger_runs - receipted_runs).items()):
            problems.append(f"{job}: {n} run(s) {what} in the ledger without a receipt")
        for what, n in sorted((receipted_runs - ledger_runs).items()):
            problems.append(f"{job}: {n} receipt(s) {what} the ledger does not hold")
        for event in ("skipped", "missed"):
            ledger = sum(t.count for t in ticks if t.job == job and t.event == event)
            receipted = sum(_count(r) for r in mine if r.get("result") == event)
            if ledger != receipted:
                problems.append(
                    f"{job}: {ledger} {event} time(s) in the ledger, {receipted} in receipts"
                )
        for result in ("success", "failure", "timeout", "suspect"):
            ledger = sum(
                1
                for r in runs
                if r.job == job and r.kind == "backup" and r.result == result
                and (scraped is None or r.recorded is None or r.recorded <= scraped)
            )  # fmt: skip
            shown = metrics.get((job, result), 0.0 if metrics else None)
            if shown is None:
                problems.append(f"{job}: /metrics shows no unstoppable_backup_runs_total")
                break
            if int(shown) != ledger:
                problems.append(
                    f"{job}: /metrics counts {int(shown)} {result}, the ledger {ledger}"
                )
    return problems


def contained(
    logs: dict[str, str], secrets: Sequence[str], exits: Sequence[int], kills: int | None = None
) -> list[str]:
    """6. No secret in any log; the daemon never ended by itself (every exit was one the
    harness caused: its `kills` SIGKILLs, and a clean stop at the end); no traceback not
    logged as contained."""
    problems = []
    for name, text in logs.items():
        for secret in secrets:
            if secret and secret in text:
                problems.append(f"{name}: holds a secret ({secret[:3]}…)")
        lines = text.splitlines()
        for index, line in enumerate(lines):
            if line.startswith("Traceback (most recent call last)"):
                before = lines[index - 1] if index else ""
                # A chained exception's second traceback follows Python's own words on it.
                chained = index > 1 and lines[index - 2].startswith(CHAINED)
                if chained:
                    continue
                if not before.startswith(("ERROR ", "CRITICAL ")) and " ERROR " not in before:
                    problems.append(
                        f"{name}: line {index + 1}: a traceback nobody logged as contained"
                    )
    ended = list(exits)
    if ended and ended[-1] == 0:
        ended.pop()  # the stop at the end
    problems += [f"the daemon exited by itself with code {code}" for code in ended if code != -9]
    if kills is not None and ended.count(-9) != kills:
        problems.append(f"the daemon died of SIGKILL {ended.count(-9)} times, {kills} sent")
    return problems


def _attributes(event: dict[str, object]) -> dict[str, str]:
    actor = event.get("Actor")
    attributes = actor.get("Attributes") if isinstance(actor, dict) else None
    return {str(k): str(v) for k, v in attributes.items()} if isinstance(attributes, dict) else {}


def _count(receipt: dict[str, object]) -> int:
    count = receipt.get("count", 1)
    return count if isinstance(count, int) and count > 0 else 1
