"""The planner, table-driven with plain values: no Docker, no clock, no files."""

from datetime import UTC, datetime, timedelta

from orchestrator.model import JobKey, Kind, Work
from orchestrator.planner import JobSpec, Launch, Missed, Plan, PlanState, Skip, plan

HOURLY = "0 * * * *"
# What the planner of 0.2.0 (job ids as text) named for `H H * * *` of acme/www from midnight.
BACKUP_AT = datetime(2026, 11, 26, 15, 30, tzinfo=UTC)
PRUNE_AT = datetime(2026, 11, 26, 14, 40, tzinfo=UTC)


def at(text: str) -> datetime:
    return datetime.fromisoformat(f"2026-11-26T{text}").replace(tzinfo=UTC)


def k(name: str) -> JobKey:
    """Return the job `customer/resource`."""
    return JobKey.parse(name)


def w(name: str, kind: Kind = Kind.BACKUP) -> Work:
    """Return the `kind` work of the job `customer/resource`."""
    return Work(k(name), kind)


def job(name: str, schedule: str = HOURLY, tz: str = "UTC", kind: Kind = Kind.BACKUP) -> JobSpec:
    return JobSpec(w(name, kind), schedule, tz)


def wake(p: Plan) -> datetime | None:
    """The next scheduled time of any job: when the daemon wakes at the latest."""
    return min(p.state.next_due.values(), default=None)


def test_nothing_due_sleeps_until_the_next_time() -> None:
    p = plan([job("a/x")], frozenset(), PlanState(), at("07:59:00"), at("07:59:30"), 4)
    assert (p.launch, p.skip, p.missed) == ((), (), ())
    assert wake(p) == at("08:00:00")


def test_origin_notes_timeline() -> None:
    """customer1's 8:00 run lasts until 9:30: 9:00 is skipped, 10:00 runs; customer2 alongside."""
    jobs = [job("customer1/job"), job("customer2/job")]
    state, tick = PlanState(), at("07:59:59")
    timeline = [
        (
            "08:00:00",
            frozenset(),
            {
                Launch(w("customer1/job"), at("08:00:00")),
                Launch(w("customer2/job"), at("08:00:00")),
            },
            set(),
        ),
        (
            "09:00:00",
            frozenset({k("customer1/job")}),
            {Launch(w("customer2/job"), at("09:00:00"))},
            {Skip(k("customer1/job"), at("09:00:00"), "overlap")},
        ),
        (
            "10:00:00",
            frozenset(),
            {
                Launch(w("customer1/job"), at("10:00:00")),
                Launch(w("customer2/job"), at("10:00:00")),
            },
            set(),
        ),
    ]
    for now, running, launches, skips in timeline:
        p = plan(jobs, running, state, tick, at(now), 4)
        assert set(p.launch) == launches
        assert set(p.skip) == skips
        assert p.missed == ()
        state, tick = p.state, at(now)


def test_downtime_counts_missed_times_and_coalesces_one_catch_up() -> None:
    """Each time is accounted for once: the catch-up runs the latest, the rest are missed."""
    p = plan([job("a/x")], frozenset(), PlanState(), at("05:30:00"), at("08:30:00"), 4, "once")
    assert p.missed == (Missed(w("a/x"), 2, at("07:00:00"), at("06:00:00")),)
    assert p.launch == (Launch(w("a/x"), at("08:00:00")),)
    assert p.state.next_due[job("a/x")] == at("09:00:00")


def test_catch_up_never_counts_but_does_not_run() -> None:
    p = plan([job("a/x")], frozenset(), PlanState(), at("05:30:00"), at("08:30:00"), 4, "never")
    assert p.missed == (Missed(w("a/x"), 3, at("08:00:00"), at("06:00:00")),)
    assert p.launch == ()


def test_short_downtime_runs_the_fresh_time_and_counts_the_rest() -> None:
    every5 = job("a/x", "* * * * * */5")
    p = plan([every5], frozenset(), PlanState(), at("08:00:00"), at("08:01:02"), 4, "never")
    assert p.launch == (Launch(w("a/x"), at("08:01:00")),)
    assert p.missed == (Missed(w("a/x"), 11, at("08:00:55"), at("08:00:05")),)


def test_a_missed_catch_up_of_a_running_job_is_an_overlap() -> None:
    p = plan([job("a/x")], frozenset({k("a/x")}), PlanState(), at("05:30:00"), at("08:30:00"), 4)
    assert p.launch == ()
    assert p.skip == (Skip(k("a/x"), at("08:00:00"), "overlap"),)
    assert p.missed[0].count == 2  # the caught-up time is the skip: never counted twice


def test_max_parallel_queues_then_launches_when_a_slot_frees() -> None:
    jobs = [job("a/x"), job("b/y")]
    first = plan(jobs, frozenset(), PlanState(), at("07:59:59"), at("08:00:00"), 1)
    assert first.launch == (Launch(w("a/x"), at("08:00:00")),)
    assert first.state.pending == {w("b/y"): at("08:00:00")}
    # a/x still runs: b/y keeps waiting, nothing is skipped.
    second = plan(jobs, frozenset({k("a/x")}), first.state, at("08:00:00"), at("08:20:00"), 1)
    assert (second.launch, second.skip) == ((), ())
    third = plan(jobs, frozenset(), second.state, at("08:20:00"), at("08:30:00"), 1)
    assert third.launch == (Launch(w("b/y"), at("08:00:00")),)


def test_a_waiting_run_is_skipped_when_its_next_time_comes_first() -> None:
    jobs = [job("a/x"), job("b/y")]
    first = plan(jobs, frozenset(), PlanState(), at("07:59:59"), at("08:00:00"), 1)
    later = plan(jobs, frozenset({k("a/x")}), first.state, at("08:00:00"), at("09:00:00"), 1)
    assert Skip(k("b/y"), at("08:00:00"), "max_parallel") in later.skip
    assert Skip(k("a/x"), at("09:00:00"), "overlap") in later.skip
    assert later.state.pending == {w("b/y"): at("09:00:00")}


def test_slots_are_shared_fairly_across_customers() -> None:
    jobs = [job("a/one"), job("a/two"), job("a/three"), job("b/only")]
    p = plan(jobs, frozenset(), PlanState(), at("07:59:59"), at("08:00:00"), 2)
    # Equally due, the first slot goes by job name (a/one); the second to the customer with
    # fewer runs (b), not to a's next job. a's other two wait for a slot.
    assert p.launch == (Launch(w("a/one"), at("08:00:00")), Launch(w("b/only"), at("08:00:00")))
    assert p.state.pending == {w("a/three"): at("08:00:00"), w("a/two"): at("08:00:00")}


def test_a_customer_already_running_yields_to_the_others() -> None:
    jobs = [job("a/two"), job("b/one")]
    p = plan(jobs, frozenset({k("a/one")}), PlanState(), at("07:59:59"), at("08:00:00"), 2)
    assert p.launch == (Launch(w("b/one"), at("08:00:00")),)


def test_removed_jobs_leave_the_queue_and_new_jobs_start_from_the_last_tick() -> None:
    state = PlanState({job("gone/x"): at("09:00:00")}, {w("gone/x"): at("08:00:00")})
    p = plan([job("new/y")], frozenset(), state, at("08:10:00"), at("08:20:00"), 4)
    assert p.state.pending == {}
    assert job("gone/x") not in p.state.next_due
    assert p.state.next_due[job("new/y")] == at("09:00:00")
    assert p.launch == ()


def test_schedules_run_in_the_customers_time_zone() -> None:
    berlin = job("a/x", "0 3 * * *", "Europe/Berlin")
    p = plan([berlin], frozenset(), PlanState(), at("01:59:00"), at("02:00:00"), 4)
    assert p.launch == (Launch(w("a/x"), at("02:00:00")),)  # 03:00 CET is 02:00 UTC


def test_hash_spread_fields_are_stable_and_spread() -> None:
    starts = set()
    for n in range(20):
        j = job(f"c{n}/x", "H * * * *")
        first = wake(plan([j], frozenset(), PlanState(), at("07:00:00"), at("07:00:00"), 4))
        again = wake(plan([j], frozenset(), PlanState(), at("07:00:00"), at("07:00:00"), 4))
        assert first == again and first is not None
        assert at("07:00:00") < first <= at("08:00:00")
        starts.add(first)
    assert len(starts) > 5


def test_a_tick_exactly_on_time_launches_once_and_never_twice() -> None:
    j = [job("a/x")]
    p1 = plan(j, frozenset(), PlanState(), at("07:59:59"), at("08:00:00"), 4)
    p2 = plan(j, frozenset(), p1.state, at("08:00:00"), at("08:00:00") + timedelta(seconds=1), 4)
    assert len(p1.launch) == 1 and p2.launch == ()


def test_a_changed_schedule_takes_effect_at_once() -> None:
    daily = plan(
        [job("a/x", "0 3 * * *")], frozenset(), PlanState(), at("07:00:00"), at("07:00:01"), 4
    )
    assert wake(daily) == datetime(2026, 11, 27, 3, tzinfo=UTC)
    every5 = job("a/x", "* * * * * */5")
    p = plan([every5], frozenset(), daily.state, at("07:00:01"), at("07:00:02"), 4)
    assert wake(p) == at("07:00:05")


# Maintenance (prune, verify) shares the job's lock with its backups.
EVERY_MINUTE = "* * * * *"


def test_a_backup_due_while_its_job_prunes_is_skipped_and_counted() -> None:
    jobs = [job("a/x", EVERY_MINUTE), job("a/x", "0 8 * * *", kind=Kind.PRUNE)]
    p = plan(jobs, frozenset(), PlanState(), at("07:59:59"), at("08:00:00"), 4)
    # Both are due at 08:00: one runs, the other waits; never both at once.
    assert len(p.launch) == 1
    running = frozenset({k("a/x")})
    p2 = plan(jobs, running, p.state, at("08:00:00"), at("08:01:00"), 4)
    assert p2.launch == ()
    assert Skip(k("a/x"), at("08:01:00"), "overlap") in p2.skip


def test_maintenance_waits_for_a_running_backup_then_goes_first() -> None:
    jobs = [job("a/x", EVERY_MINUTE), job("a/x", "30 8 * * *", kind=Kind.VERIFY)]
    running = frozenset({k("a/x")})  # the 08:30 backup is still running
    p = plan(jobs, running, PlanState(), at("08:29:59"), at("08:30:00"), 4)
    assert p.launch == ()
    assert [s.job for s in p.skip] == [k("a/x")]  # the backup overlaps; the drill waits
    assert p.state.pending == {w("a/x", Kind.VERIFY): at("08:30:00")}
    # The backup ends at 08:30:40: the drill, due first, takes the lock.
    p2 = plan(jobs, frozenset(), p.state, at("08:30:00"), at("08:30:40"), 4)
    assert p2.launch == (Launch(w("a/x", Kind.VERIFY), at("08:30:00")),)
    # At 08:31 the backup finds its job busy with the drill: skipped, counted.
    p3 = plan(jobs, frozenset({k("a/x")}), p2.state, at("08:30:40"), at("08:31:00"), 4)
    assert p3.launch == () and p3.skip == (Skip(k("a/x"), at("08:31:00"), "overlap"),)


def test_a_job_due_for_every_kind_at_once_launches_one_and_keeps_the_rest() -> None:
    jobs = [job("a/x", "0 8 * * *", kind=kind) for kind in (Kind.BACKUP, Kind.PRUNE, Kind.VERIFY)]
    p = plan(jobs, frozenset(), PlanState(), at("07:59:59"), at("08:00:00"), 4)
    assert len(p.launch) == 1 and p.skip == ()
    assert len(p.state.pending) == 2
    p2 = plan(jobs, frozenset(), p.state, at("08:00:00"), at("08:00:30"), 4)
    p3 = plan(jobs, frozenset(), p2.state, at("08:00:30"), at("08:01:00"), 4)
    kinds = {launch.kind for launch in (*p.launch, *p2.launch, *p3.launch)}
    assert kinds == {"backup", "prune", "verify"} and p3.state.pending == {}


def test_maintenance_of_one_job_never_blocks_another() -> None:
    jobs = [job("a/x", "0 8 * * *", kind=Kind.PRUNE), job("b/y", "0 8 * * *")]
    p = plan(jobs, frozenset({k("a/x")}), PlanState(), at("07:59:59"), at("08:00:00"), 4)
    assert p.launch == (Launch(w("b/y"), at("08:00:00")),)


def test_maintenance_spread_differs_from_the_backup_spread() -> None:
    kinds = (Kind.BACKUP, Kind.PRUNE, Kind.VERIFY)
    specs = [job("a/x", "H H * * *", kind=kind) for kind in kinds]
    times = {s.kind: plan([s], frozenset(), PlanState(), at("00:00:00"), at("00:00:00"), 4)
             for s in specs}  # fmt: skip
    firsts = {kind: wake(p) for kind, p in times.items()}
    assert len(set(firsts.values())) == 3


def test_the_hash_seeds_of_h_fields_never_change() -> None:
    """`H` spreads by the work's text: a changed spelling would move every customer's times."""
    assert [str(w("acme/www", kind)) for kind in (Kind.BACKUP, Kind.PRUNE, Kind.VERIFY)] == [
        "acme/www",
        "acme/www#prune",
        "acme/www#verify",
    ]
    spread = [job("acme/www", "H H * * *", kind=kind) for kind in (Kind.BACKUP, Kind.PRUNE)]
    first = plan(spread, frozenset(), PlanState(), at("00:00:00"), at("00:00:00"), 4)
    # The times the spelling `acme/www` and `acme/www#prune` give, computed before JobKey.
    assert {s.kind: t for s, t in first.state.next_due.items()} == {
        Kind.BACKUP: BACKUP_AT,
        Kind.PRUNE: PRUNE_AT,
    }


def test_a_prune_waits_while_a_restore_reads_and_a_backup_does_not() -> None:
    jobs = [job("a/x", "0 8 * * *"), job("a/x", "0 8 * * *", kind=Kind.PRUNE)]
    reading = frozenset({k("a/x")})
    p = plan(jobs, frozenset(), PlanState(), at("07:59:59"), at("08:00:00"), 4, reading=reading)
    assert p.launch == (Launch(w("a/x"), at("08:00:00")),), "the backup runs beside the reader"
    p2 = plan(jobs, frozenset(), p.state, at("08:00:00"), at("08:10:00"), 4, reading=reading)
    assert p2.launch == () and p2.skip == ()
    assert p2.state.pending == {w("a/x", Kind.PRUNE): at("08:00:00")}, "it waits, not lost"
    p3 = plan(jobs, frozenset(), p2.state, at("08:10:00"), at("08:20:00"), 4)
    assert p3.launch == (Launch(w("a/x", Kind.PRUNE), at("08:00:00")),), "then it runs"


def test_a_broken_files_times_are_missed_for_config_never_run_nor_lost() -> None:
    dormant = JobSpec(w("a/x"), HOURLY, "UTC", dormant=True)
    p = plan([dormant], frozenset(), PlanState(), at("05:30:00"), at("08:00:05"), 4, "once")
    assert p.launch == ()
    assert p.missed == (Missed(w("a/x"), 3, at("08:00:00"), at("06:00:00"), "config"),)
    # A run waiting for a slot when its customer's file broke: missed too, not dropped.
    waiting = PlanState({}, {w("a/x"): at("08:00:00")})
    p = plan([dormant], frozenset(), waiting, at("08:00:01"), at("08:00:05"), 4)
    assert p.missed == (Missed(w("a/x"), 1, at("08:00:00"), at("08:00:00"), "config"),)
    assert p.state.pending == {}


def test_a_time_docker_holds_a_worker_for_is_left_to_its_adoption() -> None:
    """A daemon killed after launching 07:00, before its tick was written: the restarted
    one finds the worker. 07:00 is neither missed nor run again, and no missed range spans
    it; the catch-up still runs the latest time."""
    left = frozenset({(w("a/x"), at("07:00:00"))})
    args = (frozenset(), PlanState(), at("04:30:00"), at("08:30:00"), 4, "once")
    p = plan([job("a/x")], *args, claimed=left)
    assert p.launch == (Launch(w("a/x"), at("08:00:00")),)
    assert p.missed == (Missed(w("a/x"), 2, at("06:00:00"), at("05:00:00")),)
    # The claimed time is the latest: it is the one run; nothing else runs.
    p = plan([job("a/x")], *args[:2], at("04:30:00"), at("07:00:05"), 4, "once", claimed=left)
    assert p.launch == ()
    assert p.missed == (Missed(w("a/x"), 2, at("06:00:00"), at("05:00:00")),)
    # Another kind of the job, or another job, at the same time is not claimed.
    p = plan([job("a/x", kind=Kind.VERIFY), job("b/x")], *args, claimed=left)
    assert {launch.work for launch in p.launch} == {w("a/x", Kind.VERIFY), w("b/x")}
    # A broken file's times: the claimed one splits its missed range in two.
    dormant = JobSpec(w("a/x"), HOURLY, "UTC", dormant=True)
    p = plan([dormant], *args, claimed=left)
    assert p.missed == (
        Missed(w("a/x"), 2, at("06:00:00"), at("05:00:00"), "config"),
        Missed(w("a/x"), 1, at("08:00:00"), at("08:00:00"), "config"),
    )
    # With catch-up `never`, the times either side of it are missed apart.
    p = plan([job("a/x")], *args[:4], 4, "never", claimed=left)
    assert p.launch == ()
    assert p.missed == (
        Missed(w("a/x"), 2, at("06:00:00"), at("05:00:00")),
        Missed(w("a/x"), 1, at("08:00:00"), at("08:00:00")),
    )


def test_a_waiting_run_a_worker_claims_is_neither_run_again_nor_missed() -> None:
    """Waiting for a slot at the last tick written, launched at the next one (unwritten: a
    full disk), its daemon killed: the restarted daemon lets it wait again, and Docker has
    its worker. It is the adopted run's, also when its customer's file broke since."""
    left = frozenset({(w("a/x"), at("08:00:00"))})
    waiting = PlanState({}, {w("a/x"): at("08:00:00")})
    p = plan([job("a/x")], frozenset(), waiting, at("08:00:01"), at("08:00:05"), 4, claimed=left)
    assert (p.launch, p.missed, p.skip, dict(p.state.pending)) == ((), (), (), {})
    dormant = JobSpec(w("a/x"), HOURLY, "UTC", dormant=True)
    p = plan([dormant], frozenset(), waiting, at("08:00:01"), at("08:00:05"), 4, claimed=left)
    assert (p.launch, p.missed, dict(p.state.pending)) == ((), (), {})
