"""The planner and the engine's API load at 10 000 customers × 3 resources (issue 15).

    .venv/bin/python bench/scale_sim.py [--customers 10000] [--baseline 1000] [--repeat 25]

Measured: the real pure planner (`orchestrator.planner.plan`) on the JobSpecs the daemon
builds (a backup, a prune and a verify spec per job), one tick at a time: the first after a
start, an idle one, the busiest minute's, and the top of the hour with every backup on
`0 * * * *`, at `--customers` and at `--baseline` customers in the same run, with their ratio.
Modelled: one day of runs. Each spec's first time is the planner's own `next_due`, later
ones step by the schedule's period (checked against `next_fire` on a sample); each worker's
length is drawn from the distribution below. From that day come the runs started, the
workers running and the engine API calls per minute under the call model below. The real
planner is then replayed over the busiest three minutes at the daemon's wake cadence and
must launch exactly the runs the model counts. No Docker, no files.
"""

import argparse
import heapq
import math
import random
import statistics
import sys
import time
from bisect import bisect_right
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import accumulate
from pathlib import Path
from types import SimpleNamespace
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from orchestrator.daemon import ADOPT_EVERY, CONFIG_POLL_SECONDS  # noqa: E402
from orchestrator.dispatch import Dispatcher  # noqa: E402
from orchestrator.model import JobKey, Kind, Work  # noqa: E402
from orchestrator.planner import JobSpec, PlanState, plan  # noqa: E402
from orchestrator.schedule import next_fire  # noqa: E402

DAY = datetime(2026, 12, 1, tzinfo=UTC)  # a Tuesday; neither zone changes its clocks near it
DAY_S = 86_400
RESOURCES = ("web", "sql", "mail")
ZONES = ("UTC", "Europe/Berlin")
# A customer's SCHEDULE (all its resources), by customer number % 20: 60 % daily, 35 %
# hourly, 5 % every 15 minutes; minutes and hours spread with `H`.
MIX = ("H H * * *",) * 12 + ("H * * * *",) * 7 + ("H/15 * * * *",)
MAINTENANCE = "H H * * H"  # the PRUNE_SCHEDULE and VERIFY_SCHEDULE defaults: weekly
PERIOD = {"H H * * *": 86_400, "H * * * *": 3_600, "H/15 * * * *": 900, MAINTENANCE: 604_800}
MAX_PARALLEL = 1_000  # high enough never to bind here; the peak concurrency is printed
# One worker's length: lognormal, median 60 s, sigma 1 (p95 5.2 min, p99 10 min, mean 99 s).
MEDIAN_S, SIGMA, TIMEOUT_S = 60.0, 1.0, 12 * 3600
WORKERS = {"backup": 1, "prune": 1, "verify": 3}  # a drill: check, listing, restore+compare
POLL_S = int(CONFIG_POLL_SECONDS)  # the daemon wakes this often to look at customers.d
ADOPT_S = int(ADOPT_EVERY.total_seconds())  # and lists every worker this often (workers())
SCRAPE_S = 30  # monitoring/prometheus.yml's interval; each scrape asks running_jobs()
Run = tuple[Work, int, int, list[int]]  # key, scheduled second, start second, worker lengths


@dataclass(frozen=True)
class Calls:
    """A runtime's engine API calls: a model, counted from the code and the design."""

    name: str
    start: int  # per worker, as it starts
    end: int  # per worker, once it has ended
    poll_s: float  # one status call per running worker this often (0: none)
    listing: int  # per running_jobs() or workers()
    per_running: int  # ... plus this many per running worker


RUNTIMES = (
    # As designed: k secret creates, service create | 2 log reads, service remove, k secret
    # removes; a task inspect every 2 s; running_jobs() = list services + list their tasks.
    Calls("swarm, designed, k=1", 2, 4, 2.0, 2, 0),
    Calls("swarm, designed, k=2", 3, 5, 2.0, 2, 0),
    # runtime/swarm.py as coded: image inspect, the busy check (services + tasks), k
    # secrets, create | 2 logs, service inspect, remove, k secret removes; every 2 s one
    # task list (the service is asked only through its tasks).
    Calls("swarm, as coded, k=1", 5, 5, 2.0, 2, 0),
    # As designed: create, start, wait (one long call) | 2 log reads, remove; one list.
    Calls("docker, designed", 3, 3, 0.0, 1, 0),
    # runtime/docker.py on docker-py 7.2: list the job's containers, create (+ the inspect
    # docker-py adds), start, get, wait | 2 logs, remove; running_jobs() is one low-level
    # list (containers.list() would inspect every container it lists: 1 + R calls).
    Calls("docker, as coded", 6, 3, 0.0, 1, 0),
)


def at(second: float) -> datetime:
    return DAY + timedelta(seconds=second)


def sec(when: datetime) -> int:
    return round((when - DAY).total_seconds())


def hhmm(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def timed(repeat: int, call: Any) -> list[float]:
    took = []
    for _ in range(repeat):
        start = time.perf_counter()
        call()
        took.append(time.perf_counter() - start)
    return took


def build_specs(customers: int) -> list[JobSpec]:
    """Return the specs the daemon's load_config builds for `customers` customers."""
    specs = []
    for i in range(customers):
        schedule, zone = MIX[i % len(MIX)], ZONES[i // len(MIX) % len(ZONES)]
        for resource in RESOURCES:
            job = JobKey(f"customer-{i:05d}", resource)
            specs += [
                JobSpec(Work(job, Kind.BACKUP), schedule, zone),
                JobSpec(Work(job, Kind.PRUNE), MAINTENANCE, zone),
                JobSpec(Work(job, Kind.VERIFY), MAINTENANCE, zone),
            ]
    return specs


def lengths(key: Work, fire: int) -> list[int]:
    """Return the lengths of the workers of one run, the same whoever asks."""
    rng = random.Random(f"{key}@{fire}")
    draws = [rng.lognormvariate(math.log(MEDIAN_S), SIGMA) for _ in range(WORKERS[key.kind])]
    return [min(TIMEOUT_S, max(1, math.ceil(d))) for d in draws]


def first_tick(specs: list[JobSpec]) -> tuple[float, dict[JobSpec, list[int]]]:
    """Time the planner's first tick before the day; return it and each spec's times.

    A spec's times end with its first one after the day.
    """
    start = time.perf_counter()
    decision = plan(specs, frozenset(), PlanState(), at(-1), at(-1), MAX_PARALLEL)
    took = time.perf_counter() - start
    fires = {}
    for spec, due in decision.state.next_due.items():
        times = [sec(due)]
        while times[-1] < DAY_S:
            times.append(times[-1] + PERIOD[spec.schedule])
        fires[spec] = times
    return took, fires


def check_fires(fires: dict[JobSpec, list[int]], per_schedule: int = 20) -> int:
    """Assert that sampled specs' times are next_fire's; return how many were checked."""
    groups = defaultdict(list)
    for spec in fires:
        groups[spec.schedule].append(spec)
    sample = [s for g in groups.values() for s in random.Random(1).sample(g, per_schedule)]
    for spec in sample:
        when = at(-1)
        for expected in fires[spec]:
            when = next_fire(spec.schedule, spec.timezone, when, str(spec.work))
            assert sec(when) == expected, (spec, when, expected)
    return len(sample)


def day_runs(fires: dict[JobSpec, list[int]]) -> tuple[list[Run], int]:
    """Return the day's runs and how many backups were skipped.

    The planner's rules on one job's lock: a backup due while the job runs is skipped
    (overlap); due maintenance waits for the lock. The cap never binds (MAX_PARALLEL).
    """
    events = defaultdict(list)
    for spec, times in fires.items():
        events[spec.job] += [
            (t, spec.kind is not Kind.BACKUP, spec.work) for t in times if t < DAY_S
        ]
    runs, skipped = [], 0
    for job_events in events.values():
        busy = -1
        for fire, maintenance, key in sorted(job_events):
            if not maintenance and fire < busy:
                skipped += 1
                continue
            start, workers = max(fire, busy), lengths(key, fire)
            runs.append((key, fire, start, workers))
            busy = start + sum(workers)
    return runs, skipped


def add(diff: list[int], a: int, b: int) -> None:
    """Add 1 over the seconds [a, b) of a day that repeats (a run past midnight wraps)."""
    a, b = a % DAY_S, a % DAY_S + (b - a)
    diff[a] += 1
    if b <= DAY_S:
        diff[b] -= 1
    else:
        diff[DAY_S] -= 1
        diff[0] += 1
        diff[b - DAY_S] -= 1


def timeline(runs: list[Run], fires: dict[JobSpec, list[int]]) -> dict[str, list[int]]:
    """Return per-second counts over the day: what starts, runs, ends, falls due, asks."""
    starts, w_starts, w_ends, r_ends, due, running, waiting = ([0] * (DAY_S + 1) for _ in "1234567")
    for times in fires.values():
        for t in times[:-1]:
            due[t] = 1
    for _, fire, start, workers in runs:
        starts[start % DAY_S] += 1
        if start > fire:
            add(waiting, fire + 1, start + 1)  # pending until the tick that launches it
        t = start
        for length in workers:
            w_starts[t % DAY_S] += 1
            add(running, t, t + length)
            t += length
            w_ends[t % DAY_S] += 1
        r_ends[t % DAY_S] += 1
    running, waiting = list(accumulate(running)), list(accumulate(waiting))
    # One tick per second at most, as in the replay; running_jobs() is asked only when
    # something is due or pending (Dispatcher._anything_due).
    asks = [
        1 if (s % POLL_S == 0 or due[s] or r_ends[s]) and (due[s] or waiting[s]) else 0
        for s in range(DAY_S)
    ]
    lists = [asks[s] + (s % SCRAPE_S == 0) + (s % ADOPT_S == 0) for s in range(DAY_S)]
    return dict(
        starts=starts,
        w_starts=w_starts,
        w_ends=w_ends,
        r_ends=r_ends,
        due=due,
        running=running[:DAY_S],
        asks=asks,
        lists=lists,
    )


def per_minute(per_second: list[int] | list[float]) -> list[float]:
    return [sum(per_second[m * 60 : m * 60 + 60]) for m in range(DAY_S // 60)]


def api_calls(line: dict[str, list[int]], calls: Calls) -> list[float]:
    """Return the engine API calls of each minute of the day under `calls`."""
    run = line["running"]
    return per_minute(
        [
            line["w_starts"][s] * calls.start
            + line["w_ends"][s] * calls.end
            + (run[s] / calls.poll_s if calls.poll_s else 0)
            + line["lists"][s] * (calls.listing + calls.per_running * run[s])
            for s in range(DAY_S)
        ]
    )


def state_at(specs: list[JobSpec], fires: dict, runs: list[Run], second: int) -> PlanState:
    """Return the planner's state after a tick at `second`, from the day's times and runs."""
    next_due = {s: at(fires[s][bisect_right(fires[s], second)]) for s in specs}
    pending = {key: at(fire) for key, fire, start, _ in runs if fire <= second < start}
    return PlanState(next_due, pending)


def running_at(runs: list[Run], second: int) -> dict[JobKey, int]:
    """Return the jobs running at `second` and when each ends."""
    ends = {}
    for key, _, start, workers in runs:
        for shift in (0, DAY_S):  # a run of the day before, past midnight
            if start <= second + shift < start + sum(workers):
                ends[key.job] = start + sum(workers) - shift
    return ends


def measure(customers: int, repeat: int) -> dict[str, Any]:
    """Build `customers` customers' specs and day; time the planner's ticks on them."""
    specs = build_specs(customers)
    first, fires = first_tick(specs)
    runs, skipped = day_runs(fires)
    line = timeline(runs, fires)
    starts = per_minute(line["starts"])
    peak = max(range(60, 1380), key=lambda m: starts[m])  # clear of the day's edges
    busy, idle = peak * 60, peak * 60 + 30
    b_state, b_running = state_at(specs, fires, runs, busy - 1), running_at(runs, busy - 1)
    i_state, i_running = state_at(specs, fires, runs, idle - 5), running_at(runs, idle)
    busy_args = (specs, frozenset(b_running), b_state, at(busy - 1), at(busy), MAX_PARALLEL)
    idle_args = (specs, frozenset(i_running), i_state, at(idle - 5), at(idle), MAX_PARALLEL)
    nothing_due = SimpleNamespace(state=PlanState(i_state.next_due, {}), specs=specs)
    # The same jobs with every backup on the sample file's "0 * * * *", at 01:00.
    unspread = [JobSpec(s.work, "0 * * * *", "UTC") if s.kind is Kind.BACKUP else s for s in specs]
    u_due = {u: at(3600) if u.kind is Kind.BACKUP else i_state.next_due[u] for u in unspread}
    u_args = (unspread, frozenset(), PlanState(u_due, {}), at(3599), at(3600), MAX_PARALLEL)

    def scans() -> tuple[bool, datetime]:  # the loop's own: _anything_due, its wake time
        return Dispatcher._anything_due(nothing_due, at(idle)), min(i_state.next_due.values())  # type: ignore[arg-type]

    return dict(
        specs=specs, fires=fires, runs=runs, skipped=skipped, line=line, peak=peak, first=first,
        busy_launched=len(plan(*busy_args).launch), busy_running=len(b_running),
        idle=timed(repeat, lambda: plan(*idle_args)),
        busy=timed(repeat, lambda: plan(*busy_args)),
        scans=timed(repeat, scans),
        unspread=timed(1, lambda: plan(*u_args))[0],
    )  # fmt: skip


def replay(m: dict[str, Any], minutes: int = 3) -> tuple[Counter[int], int, list[float]]:
    """Run the real planner over `minutes` from the minute before the peak.

    The daemon wakes on each config poll, each due time and, while something is pending,
    each run end (with nothing pending, a run end's tick launches nothing and asks the
    engine nothing). Return launches per minute, running_jobs() calls and tick times.
    """
    specs, w0 = m["specs"], (m["peak"] - 1) * 60
    state = state_at(specs, m["fires"], m["runs"], w0 - 1)
    ends = running_at(m["runs"], w0 - 1)
    heap = [(end, job) for job, end in ends.items()]
    heapq.heapify(heap)
    launched: Counter[int] = Counter()
    asks, ticks, last = 0, [], w0 - 1
    while True:
        wake = [(last // POLL_S + 1) * POLL_S, sec(min(state.next_due.values()))]
        while heap and heap[0][0] <= last:
            heapq.heappop(heap)
        if state.pending and heap:
            wake.append(heap[0][0])
        now = min(wake)
        if now >= w0 + minutes * 60:
            return launched, asks, ticks
        for job in [job for job, end in ends.items() if end <= now]:
            del ends[job]
        stand_in = SimpleNamespace(state=state, specs=specs)
        asks += Dispatcher._anything_due(stand_in, at(now))  # type: ignore[arg-type]
        start = time.perf_counter()
        decision = plan(specs, frozenset(ends), state, at(last), at(now), MAX_PARALLEL)
        ticks.append(time.perf_counter() - start)
        state, last = decision.state, now
        for launch in decision.launch:
            ends[launch.job] = now + sum(lengths(launch.work, sec(launch.scheduled_for)))
            heapq.heappush(heap, (ends[launch.job], launch.job))
            launched[now // 60] += 1


def report(args: argparse.Namespace, big: dict[str, Any], base: dict[str, Any]) -> bool:
    """Print every measurement and the model's numbers; return whether the replay agreed."""
    jobs, base_jobs = args.customers * len(RESOURCES), args.baseline * len(RESOURCES)
    print(f"{jobs} jobs ({len(big['specs'])} specs: backup, prune, verify); baseline {base_jobs}")
    print(f"  every time of {check_fires(big['fires'])} sampled specs equals next_fire's")
    print(f"\nplanner, one tick (s)             {jobs:>6} jobs  {base_jobs:>6} jobs   ratio")
    rows = [("first tick after a start", big["first"], base["first"])]
    for what, name in (("idle", "idle tick"), ("busy", "busiest minute's tick")):
        rows.append((f"{name}, median", *(statistics.median(m[what]) for m in (big, base))))
        rows.append((f"{name}, p95", *(percentile(m[what], 0.95) for m in (big, base))))
    rows.append(("loop's own scans, median", *(statistics.median(m["scans"]) for m in (big, base))))
    rows.append(('hour tick, all "0 * * * *"', big["unspread"], base["unspread"]))
    for name, value, baseline in rows:
        print(f"  {name:<32} {value:11.4f} {baseline:11.4f} {value / baseline:7.1f}")
    print(
        f"  busiest minute {hhmm(big['peak'])}: {big['busy_launched']} launched, "
        f"{big['busy_running']} running before it"
    )

    line = big["line"]
    starts, workers = per_minute(line["starts"]), per_minute(line["w_starts"])
    due, ends = per_minute(line["due"]), per_minute(line["r_ends"])
    wakes = [60 / POLL_S + d + e for d, e in zip(due, ends, strict=True)]
    tick_s = statistics.median(big["idle"]) + statistics.median(big["scans"])
    print(f"\none day at {jobs} jobs (model: run lengths lognormal, median 60 s, sigma 1)")
    for name, values in (("runs started per minute", starts), ("workers started", workers)):
        top = max(range(len(values)), key=values.__getitem__)
        print(
            f"  {name:<24} mean {statistics.mean(values):6.1f}, peak {values[top]:4.0f} "
            f"at {hhmm(top)}"
        )
    print(
        f"  workers running at once  mean {statistics.mean(line['running']):6.1f}, peak "
        f"{max(line['running']):4d} (MAX_PARALLEL {MAX_PARALLEL})"
    )
    print(f"  {len(big['runs'])} runs a day; {big['skipped']} backups skipped (overlap)")
    asked = per_minute(line["asks"])
    print(
        f"  ticks that ask running_jobs() per minute: mean {statistics.mean(asked):.1f}, peak "
        f"{max(asked):.0f} (and {60 // SCRAPE_S} scrapes, {60 // ADOPT_S} workers() a minute)"
    )
    print(
        f"  daemon wakes per minute (polls + due seconds + run ends: an upper bound) mean "
        f"{statistics.mean(wakes):.0f}, peak {max(wakes):.0f}; at {tick_s * 1000:.0f} ms "
        f"each, planning takes {statistics.mean(wakes) * tick_s / 60:.1%} of a core"
    )

    launched, asks, ticks = replay(big)
    w0 = min(launched)
    model, replayed = [starts[m] for m in range(w0, w0 + 3)], [launched[w0 + i] for i in range(3)]
    model_asks = sum(line["asks"][w0 * 60 : w0 * 60 + 180])
    agreed = model == replayed and model_asks == asks
    print(
        f"  replay {hhmm(w0)}-{hhmm(w0 + 3)} on the real planner ({len(ticks)} ticks, median "
        f"{statistics.median(ticks) * 1000:.0f} ms): launched {replayed}, model "
        f"{[round(x) for x in model]}; running_jobs() {asks}, model {model_asks}: "
        f"{'equal' if agreed else 'DIFFERENT'}"
    )

    print(f"\nengine API calls per minute at {jobs} jobs (model)")
    print(f"  {'runtime':<26} {'mean':>7} {'peak':>7} {'polls, mean':>12} {'vs docker':>10}")
    designed = statistics.mean(api_calls(line, RUNTIMES[3]))
    polls = statistics.mean(line["running"]) * 60
    for calls in RUNTIMES:
        per_min = api_calls(line, calls)
        mean = statistics.mean(per_min)
        status = polls / calls.poll_s if calls.poll_s else 0
        ratio = mean / designed
        print(f"  {calls.name:<26} {mean:7.0f} {max(per_min):7.0f} {status:12.0f} {ratio:9.1f}x")
    return agreed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument("--baseline", type=int, default=1_000)
    parser.add_argument("--repeat", type=int, default=25)
    args = parser.parse_args()
    began = time.perf_counter()
    base, big = measure(args.baseline, args.repeat), measure(args.customers, args.repeat)
    agreed = report(args, big, base)
    print(f"\n{time.perf_counter() - began:.0f} s in all")
    return 0 if agreed else 1


if __name__ == "__main__":
    sys.exit(main())
