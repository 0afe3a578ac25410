"""The soak's checker: each invariant passes a sound record and fails a broken one."""

from datetime import UTC, datetime, timedelta

from bench.soak_checks import (
    RepoCheck,
    Run,
    Tick,
    accounted,
    agreeing,
    contained,
    never_overlapping,
    recovered,
    repositories,
)
from orchestrator.model import JobKey

T0 = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
WWW, DB = JobKey("acme", "www"), JobKey("beta", "dbs")


def at(seconds: int) -> datetime:
    return T0 + timedelta(seconds=seconds)


def event(
    status: str, job: JobKey, nano: int, when: datetime, kind: str = "backup", container: str = ""
) -> dict:
    attributes = {
        "unstoppable.job": str(job),
        "unstoppable.kind": kind,
        "unstoppable.scheduled-for": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "name": f"w-{nano}",
    }
    return {
        "status": status,
        "id": container or f"c-{nano}",
        "timeNano": nano,
        "Actor": {"Attributes": attributes},
    }


def backup(job: JobKey, when: datetime, result: str = "success") -> Run:
    return Run(job, "backup", when, when + timedelta(seconds=1), result, "")


def test_recovery_needs_a_success_after_the_last_fault() -> None:
    runs = [backup(WWW, at(0)), backup(DB, at(0)), backup(WWW, at(60))]
    assert recovered(runs, [WWW], at(30)) == []
    assert recovered(runs, [WWW, DB], at(30)) == [
        "beta/dbs: no successful backup after the last fault (12:00:30)"
    ]
    failing = [backup(DB, at(60), "failure")]
    assert recovered(failing, [DB], at(30))


def test_two_workers_of_one_job_alive_at_once_are_named() -> None:
    sound = [
        event("start", WWW, 1, at(0), container="w1"),
        event("die", WWW, 2, at(0), container="w1"),
        event("start", WWW, 3, at(5), container="w2"),
        # The engine killed under w2: the restarted engine destroys it, with no `die`.
        event("destroy", WWW, 4, at(5), container="w2"),
        event("start", WWW, 5, at(10), container="w3"),
    ]
    sound += [event("start", DB, 2, at(0))]  # another job alongside: fine
    assert never_overlapping(sound, [WWW, DB]) == []
    # Another worker's end does not end this one.
    crossed = [
        event("start", WWW, 1, at(0), container="w1"),
        event("die", WWW, 2, at(0), container="w0"),
        event("start", WWW, 3, at(5), container="w2"),
    ]
    assert never_overlapping(crossed, [WWW]) == ["acme/www: two workers alive at once (w-3)"]
    overlap = [event("start", WWW, 1, at(0)), event("start", WWW, 2, at(5), kind="prune")]
    assert never_overlapping(overlap, [WWW]) == ["acme/www: two workers alive at once (w-2)"]
    assert never_overlapping(sound, [WWW, JobKey("gone", "www")])[-1].endswith(
        "holds no worker of it"
    )


def test_a_repository_that_fails_its_check_or_gives_back_something_else_is_named() -> None:
    good = RepoCheck(WWW, True, 3, True)
    assert repositories([good], [WWW]) == []
    for broken in (RepoCheck(WWW, False, 3, True, "pack missing"), RepoCheck(WWW, True, 0, True),
                   RepoCheck(WWW, True, 3, False, "index.html differs")):  # fmt: skip
        assert repositories([broken], [WWW]), broken
    assert repositories([], [WWW]) == ["acme/www: its repositories were not checked"]


def test_every_promised_time_is_one_run_skip_or_miss_and_a_success_had_its_worker() -> None:
    promised = {WWW: [at(0), at(10), at(20), at(30), at(40)]}
    runs = [backup(WWW, at(0)), backup(WWW, at(30))]
    ticks = [Tick(WWW, "skipped", at(10), 1), Tick(WWW, "missed", at(20), 1),
             Tick(WWW, "missed", at(40), 1)]  # fmt: skip
    events = [event("start", WWW, 1, at(0)), event("start", WWW, 2, at(30))]
    assert accounted(promised, runs, ticks, events) == []
    # A time lost: neither run, nor skipped, nor missed.
    assert accounted(promised, runs, ticks[:2], events) == ["acme/www: 12:00:40 not accounted for"]
    # A time both run and counted missed.
    double = [*ticks, Tick(WWW, "missed", at(0), 1)]
    assert accounted(promised, runs, double, events) == ["acme/www: 12:00:00 accounted for 2 times"]
    # A missed range whose count is not what it covers.
    wrong = [*ticks[:2], Tick(WWW, "missed", at(40), 6)]  # more than the schedule held
    assert (
        "6 missed up to 12:00:40, which the schedule does not hold"
        in accounted(promised, runs, wrong, events)[0]
    )
    # A range that began before the window (its first times were never promised here).
    early = [Tick(WWW, "missed", at(0), 3, first=at(-20)), ticks[0], ticks[1], ticks[2]]
    assert accounted(promised, runs[1:], early, events) == []
    assert accounted(promised, runs[1:], [Tick(WWW, "missed", at(-20), 2), *ticks], events) == [
        "acme/www: 12:00:00 not accounted for"
    ]
    off = [*ticks[:2], Tick(WWW, "missed", at(45), 1)]  # a time the schedule never named
    assert "which the schedule does not hold" in accounted(promised, runs, off, events)[0]
    # The daemon's word alone: a success no worker of Docker's ran for.
    said = accounted(promised, runs, ticks, events[:1])
    assert said == ["acme/www: a success for 12:00:30 without a worker Docker started"]


def test_only_a_clock_set_back_lets_a_time_come_round_twice_and_never_three_times() -> None:
    promised = {WWW: [at(0), at(10), at(20)]}
    events = [event("start", WWW, n, at(s)) for n, s in enumerate((0, 10, 10, 20))]
    twice = [backup(WWW, at(0)), backup(WWW, at(10)), backup(WWW, at(10)), backup(WWW, at(20))]
    back = {WWW: [(at(5), at(12))]}  # its daemon's clock went back over 12:00:05-12:00:12
    assert accounted(promised, twice, [], events, back) == []
    assert accounted(promised, twice, [], events) == ["acme/www: 12:00:10 accounted for 2 times"]
    elsewhere = {WWW: [(at(30), at(40))]}
    assert accounted(promised, twice, [], events, elsewhere) != []
    three = [*twice, backup(WWW, at(10))]
    assert accounted(promised, three, [], events, back) == [
        "acme/www: 12:00:10 accounted for 3 times"
    ]
    set_back_twice = {WWW: [(at(5), at(12)), (at(8), at(15))]}  # two spans over 12:00:10
    assert accounted(promised, three, [], events, set_back_twice) == []
    lost = [backup(WWW, at(0)), backup(WWW, at(20))]
    assert accounted(promised, lost, [], events, back) == ["acme/www: 12:00:10 not accounted for"]


def test_ledger_receipts_and_metrics_must_agree() -> None:
    runs = [backup(WWW, at(0)), backup(WWW, at(10), "failure")]
    ticks = [Tick(WWW, "missed", at(40), 3)]

    def receipt(when: datetime, result: str) -> dict[str, object]:
        stamp = when.strftime("%Y-%m-%dT%H:%M:%SZ")
        return {"kind": "backup", "started": stamp, "scheduled_for": stamp, "result": result}

    receipts = {WWW: [receipt(at(0), "success"), receipt(at(10), "failure"),
                      {"kind": "backup", "result": "missed", "count": 3}]}  # fmt: skip
    metrics = {(WWW, "success"): 1.0, (WWW, "failure"): 1.0}
    assert agreeing(runs, ticks, receipts, metrics) == []
    lost = {WWW: receipts[WWW][1:]}
    assert agreeing(runs, ticks, lost, metrics) == [
        "acme/www: 1 run(s) ('backup', '2026-12-06T12:00:00Z', 'success') in the ledger "
        "without a receipt"
    ]
    # One lost and one doubled: the counts match, the sets do not.
    swapped = {WWW: [receipt(at(10), "failure"), *receipts[WWW][1:]]}
    assert len(agreeing(runs, ticks, swapped, metrics)) == 2
    fewer = {WWW: [*receipts[WWW][:2], {"kind": "backup", "result": "missed", "count": 2}]}
    assert agreeing(runs, ticks, fewer, metrics) == [
        "acme/www: 3 missed time(s) in the ledger, 2 in receipts"
    ]
    assert agreeing(runs, ticks, receipts, {**metrics, (WWW, "success"): 2.0}) == [
        "acme/www: /metrics counts 2 success, the ledger 1"
    ]
    assert agreeing(runs, ticks, receipts, {}) == [
        "acme/www: /metrics shows no unstoppable_backup_runs_total"
    ]
    # A run recorded after /metrics was scraped is not on it yet; one before must be.
    late = Run(WWW, "backup", at(20), at(20), "success", "", recorded=at(30))
    later = {WWW: [*receipts[WWW], receipt(at(20), "success")]}
    assert agreeing([*runs, late], ticks, later, metrics, scraped=at(25)) == []
    assert agreeing([*runs, late], ticks, later, metrics, scraped=at(35)) == [
        "acme/www: /metrics counts 1 success, the ledger 2"
    ]


def test_a_secret_an_uncontained_traceback_or_an_exit_of_its_own_is_named() -> None:
    contained_log = (
        "INFO scheduling\nERROR acme/www: the run raised\nTraceback (most recent call last):\n  x\n"
    )
    assert contained({"daemon": contained_log}, ["s3cret-pw"], [-9, 0], kills=1) == []
    chained = (
        "ERROR acme/www: the run raised OSError\nOSError: [Errno 28] No space left\n\n"
        "During handling of the above exception, another exception occurred:\n\n"
        "Traceback (most recent call last):\n  x\nOSError: [Errno 28]\n"
    )
    assert contained({"daemon": chained}, [], []) == []
    assert contained({"daemon": "INFO pw s3cret-pw\n"}, ["s3cret-pw"], []) == [
        "daemon: holds a secret (s3c…)"
    ]
    loose = "INFO tick\nTraceback (most recent call last):\n  File x\nKeyError: 1\n"
    assert contained({"daemon": loose}, [], []) == [
        "daemon: line 2: a traceback nobody logged as contained"
    ]
    assert contained({}, [], [1, 0]) == ["the daemon exited by itself with code 1"]
    assert contained({}, [], [0, 0]) == [
        "the daemon exited by itself with code 0"
    ]  # before the end
    assert contained({}, [], [-9, -9, 0], kills=2) == []
    assert contained({}, [], [-9, -9, 0], kills=1) == ["the daemon died of SIGKILL 2 times, 1 sent"]


def test_a_time_the_daemon_could_not_know_may_be_accounted_once_or_not_at_all() -> None:
    """The 20-minute soak (seed 3): a daemon restarted into a broken customer file read the
    repaired file in time to count 12:00:20 missed, in a range its `first` names; the
    harness had left that time out of its promise, and its range was matched against the
    times around the gap instead (12:00:10 then looked accounted for 3 times)."""
    promised = {WWW: [at(0), at(10), at(30)]}
    maybe = {WWW: [at(20)]}
    events = [event("start", WWW, 1, at(0)), event("start", WWW, 2, at(10))]
    runs = [backup(WWW, at(0)), backup(WWW, at(10))]
    knew = [Tick(WWW, "missed", at(30), 2, first=at(20))]
    assert accounted(promised, runs, knew, events, None, maybe) == []
    did_not = [Tick(WWW, "missed", at(30), 1, first=at(30))]
    assert accounted(promised, runs, did_not, events, None, maybe) == []
    twice = [*knew, Tick(WWW, "skipped", at(20), 1)]
    assert accounted(promised, runs, twice, events, None, maybe) == [
        "acme/www: 12:00:20 accounted for 2 times"
    ]
    # Without the range's own ends, the last `count` times of the whole schedule.
    assert accounted(promised, runs, [Tick(WWW, "missed", at(30), 2)], events, None, maybe) == []
    # A promised time stays promised: left out, it is named.
    assert accounted(promised, runs[:1], knew, events, None, maybe) == [
        "acme/www: 12:00:10 not accounted for"
    ]
