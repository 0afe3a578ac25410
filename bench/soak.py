"""Faults on top of faults: the real daemon under random, overlapping faults, then checked.

    .venv/bin/python bench/soak.py [--minutes 5] [--seed 1] [--customers 12]

A dozen customers (FTPS, SFTP and local sources; schedules 10 to 30 seconds apart; sources
changing under them) are backed up by the real daemon, restarted whenever it exits. For the
run's length, faults are injected at random times and overlap (bench/soak_faults.py). Then
they clear, the harness waits a few schedule intervals, stops the daemon, and checks the
invariants of bench/soak_checks.py against Docker's event stream, its own schedule, the
repositories and the logs. It prints one table and exits 1 on any broken invariant.
"""

import argparse
import filecmp
import json
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from croniter import croniter  # noqa: E402

from bench.soak_checks import (  # noqa: E402
    RepoCheck,
    Verdict,
    accounted,
    agreeing,
    contained,
    never_overlapping,
    recovered,
    repositories,
)
from bench.soak_faults import Injector  # noqa: E402
from bench.soak_world import Customer, EventStream, World, world  # noqa: E402
from orchestrator.model import JobKey  # noqa: E402
from tests.servers import PASSWORD  # noqa: E402


def change_sources(w: World, stop: threading.Event) -> None:
    """Change a random source every few seconds: a file edited, one added."""
    count = 0
    while not stop.wait(3.0):
        customer = w.rng.choice(w.customers)
        count += 1
        try:
            (customer.source / "page-0.html").write_text(f"<p>edit {count}</p>\n")
            added = customer.source / f"added-{count}.txt"
            added.write_text(f"added {count}\n")
            added.chmod(0o644)
        except OSError:
            pass  # taken away just now (a fault): the next change goes elsewhere


def promised(
    w: World, start: datetime, end: datetime, broken: dict
) -> dict[JobKey, list[datetime]]:
    """Return each job's scheduled times in [start, end], by croniter alone. A customer
    file broken while the daemon runs keeps its times (counted missed, `config`); one the
    daemon was restarted into has none the daemon could know: those times are left out."""
    out: dict[JobKey, list[datetime]] = {}
    for c in w.customers:
        away = [  # from the first restart into the broken file to its repair
            (
                min(s for s in w.starts if a <= s <= b) - timedelta(seconds=1),
                b + timedelta(seconds=6),
            )
            for a, b in broken.get(c.name, [])
            if any(a <= s <= b for s in w.starts)
        ]
        times, it = [], croniter(c.schedule, start - timedelta(seconds=1))
        while (when := it.get_next(datetime)) <= end:
            when = when.replace(tzinfo=UTC) if when.tzinfo is None else when
            if not any(a <= when <= b for a, b in away):
                times.append(when)
        out[c.job] = times
    return out


def check_repository(w: World, c: Customer) -> RepoCheck:
    """Check, list and restore the job's repository with the product's own commands."""

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "orchestrator.cli", *args],
            env=w.env, cwd=ROOT, capture_output=True, text=True, timeout=900,
        )  # fmt: skip

    checked = cli("check", c.name, "files", "--read-data")
    listed = cli("snapshots", c.name, "files", "--json")
    count = len(json.loads(listed.stdout)) if listed.returncode == 0 else 0
    with tempfile.TemporaryDirectory(dir=w.root) as target:
        restored = cli("restore", c.name, "files", "--target", f"{target}/r")
        same = restored.returncode == 0 and _same(c.source, Path(target) / "r")
    said = (checked.stderr + restored.stderr)[-300:].replace("\n", " ")
    return RepoCheck(c.job, checked.returncode == 0, count, same, said)


def _same(a: Path, b: Path) -> bool:
    names = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    if names != sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file()):
        return False
    return all(filecmp.cmp(a / n, b / n, shallow=False) for n in names)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--customers", type=int, default=12)
    parser.add_argument("--keep", action="store_true", help="keep a copy of its directory")
    args = parser.parse_args(argv)
    with world(args.seed, args.customers, args.keep) as w:
        events = EventStream()
        supervisor = w.supervise()
        stop_changes = threading.Event()
        changer = threading.Thread(target=change_sources, args=(w, stop_changes), daemon=True)
        changer.start()
        injector = Injector(w)
        injector.run(args.minutes * 60)
        cleared = injector.clear()
        stop_changes.set()
        changer.join()
        longest = max(c.interval for c in w.customers)
        time.sleep(3 * longest + 30)  # every job runs again, over the final sources
        quiet = time.monotonic() + 120
        while _workers(w) and time.monotonic() < quiet:
            time.sleep(1)
        metrics = w.metrics()
        end = datetime.now(UTC)
        w.stop(supervisor)
        seen = events.stop()
        runs, ticks = w.ledger()
        jobs = [c.job for c in w.customers]
        assert w.started_at is not None
        window = promised(
            w,
            w.started_at + timedelta(seconds=10),
            end - timedelta(seconds=2 * longest),
            injector.broken,
        )
        checks = [check_repository(w, c) for c in w.customers]
        secrets = [c.password for c in w.customers] + [PASSWORD]
        logs = {"daemon.log": w.log.read_text(errors="replace")}
        verdict = Verdict()
        verdict.add("1 recovered", recovered(runs, jobs, cleared))
        verdict.add("2 never overlapping", never_overlapping(seen, jobs))
        verdict.add("3 repositories", repositories(checks, jobs))
        verdict.add("4 accounted", accounted(window, runs, ticks, seen))
        verdict.add("5 agreeing", agreeing(runs, ticks, w.receipts(), metrics))
        verdict.add(
            "6 contained",
            contained(logs, secrets, w.exits, injector.counts["daemon_kill"]),
        )
        table(injector, runs, window, checks, verdict)
        if args.keep:  # what the checks saw, beside the daemon's log
            record = {
                "events": seen,
                "window": {str(j): [t.isoformat() for t in ts] for j, ts in window.items()},
                "broken": {
                    k: [(a.isoformat(), b.isoformat()) for a, b in v]
                    for k, v in injector.broken.items()
                },
                "cleared": cleared.isoformat(),
                "exits": w.exits,
            }
            (w.root / "soak-record.json").write_text(json.dumps(record, indent=1))
        return 0 if verdict.passed else 1


def _workers(w: World) -> bool:
    for c in w.customers:
        out = subprocess.run(
            ["docker", "ps", "-q", "--filter", f"label=unstoppable.customer={c.name}"],
            capture_output=True, text=True,
        ).stdout  # fmt: skip
        if out.strip():
            return True
    return False


def table(injector: Injector, runs: list, window: dict, checks: list, verdict: Verdict) -> None:
    print("| what | count |\n|---|---|")
    for kind in injector.kinds:
        print(f"| fault `{kind}` | {injector.counts[kind]} |")
    by = Counter((r.kind, r.result, r.reason or "-") for r in runs)
    for (kind, result, reason), n in sorted(by.items()):
        print(f"| {kind} runs `{result}` ({reason}) | {n} |")
    print(
        f"| scheduled times promised (harness's own schedule) | {sum(map(len, window.values()))} |"
    )
    lost = len(verdict.broken.get("4 accounted", []))
    print(f"| times not accounted for exactly once | {lost} |")
    snapshots = sum(c.snapshots for c in checks)
    print(f"| snapshots checked (check --read-data, newest restored, compared) | {snapshots} |")
    print(f"| overlaps (Docker's events) | {len(verdict.broken.get('2 never overlapping', []))} |")
    for invariant, problems in sorted(verdict.broken.items()):
        state = "holds" if not problems else f"BROKEN ({len(problems)})"
        print(f"| invariant {invariant} | {state} |")
    for invariant, problems in sorted(verdict.broken.items()):
        for problem in problems[:20]:
            print(f"{invariant}: {problem}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
