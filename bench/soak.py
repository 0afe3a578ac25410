"""Faults on top of faults: the real daemons under random, overlapping faults, then checked.

    .venv/bin/python bench/soak.py [--minutes 5] [--seed 1] [--customers 12] [--keep]

A dozen customers (FTPS, SFTP and local sources; schedules 10 to 30 seconds apart; sources
changing under them) are backed up by two real daemons, one keeping cold repositories in a
local folder and one in MinIO buckets with object lock, each restarted whenever it exits.
For the run's length, faults of every kind are injected at random times and overlap
(bench/soak_faults.py). Then they clear, the harness waits a few schedule intervals, stops
the daemons, and checks the invariants of bench/soak_checks.py against Docker's event
stream, its own schedule, the repositories (with Debian's restic too, on the buckets) and
the logs. It prints one table and exits 1 on any broken invariant.
"""

import argparse
import filecmp
import json
import os
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
from bench.soak_faults import Injector, repeated_for  # noqa: E402
from bench.soak_world import BUCKETS, Customer, EventStream, World, world  # noqa: E402
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
) -> tuple[dict[JobKey, list[datetime]], dict[JobKey, list[datetime]]]:
    """Return each job's scheduled times in [start, end], by croniter alone, and apart the
    times it may or may not account for. A customer file broken while the daemon runs keeps
    its times (counted missed, `config`); one the daemon was restarted into has none the
    daemon could know until it reads the repaired file, a few seconds after the repair:
    those times may be accounted for once, or not at all."""
    out: dict[JobKey, list[datetime]] = {}
    optional: dict[JobKey, list[datetime]] = {}
    for c in w.customers:
        starts = w.daemon_of(c).starts
        away = [  # from the first restart into the broken file to its repair
            (
                min(s for s in starts if a <= s <= b) - timedelta(seconds=1),
                b + timedelta(seconds=6),
            )
            for a, b in broken.get(c.name, [])
            if any(a <= s <= b for s in starts)
        ]
        times, it = [], croniter(c.schedule, start - timedelta(seconds=1))
        while (when := it.get_next(datetime)) <= end:
            when = when.replace(tzinfo=UTC) if when.tzinfo is None else when
            times.append(when)
        out[c.job] = [t for t in times if not any(a <= t <= b for a, b in away)]
        optional[c.job] = [t for t in times if any(a <= t <= b for a, b in away)]
    return out, optional


def check_repository(w: World, c: Customer) -> RepoCheck:
    """Check, list and restore the job's repository with the product's own commands, and a
    bucket's with Debian's restic too, knowing nothing of ours but its password."""
    daemon = w.daemon_of(c)
    checked = daemon.cli("check", c.name, "files", "--read-data")
    listed = daemon.cli("snapshots", c.name, "files", "--json")
    count = len(json.loads(listed.stdout)) if listed.returncode == 0 else 0
    with tempfile.TemporaryDirectory(dir=w.root) as target:
        restored = daemon.cli("restore", c.name, "files", "--target", f"{target}/r")
        same = restored.returncode == 0 and _same(c.source, Path(target) / "r")
    said = (checked.stderr + restored.stderr)[-300:].replace("\n", " ")
    clean = checked.returncode == 0
    if c.store == "s3":
        with tempfile.TemporaryDirectory(dir=w.root) as home:
            env = {
                "PATH": os.environ["PATH"],
                "HOME": home,
                "RESTIC_PASSWORD": c.password,
                "AWS_ACCESS_KEY_ID": w.minio.key_id,
                "AWS_SECRET_ACCESS_KEY": w.minio.secret,
            }
            repo = f"s3:{w.minio.endpoint}/{BUCKETS}{c.name}/files"
            restic = subprocess.run(
                ["restic", "-r", repo, "check", "--read-data"],
                env=env, capture_output=True, text=True, timeout=900,
            )  # fmt: skip
        if restic.returncode != 0 or "no errors were found" not in restic.stdout:
            clean = False
            said += " restic: " + (restic.stdout + restic.stderr)[-300:].replace("\n", " ")
    return RepoCheck(c.job, clean, count, same, said)


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
        supervisors = {name: d.supervise() for name, d in w.daemons.items()}
        stop_changes = threading.Event()
        changer = threading.Thread(target=change_sources, args=(w, stop_changes), daemon=True)
        changer.start()
        injector = Injector(w)
        injector.run(args.minutes * 60)
        cleared = injector.clear()
        w.heal()
        stop_changes.set()
        changer.join()
        longest = max(c.interval for c in w.customers)
        time.sleep(3 * longest + 30)  # every job runs again, over the final sources
        quiet = time.monotonic() + 120
        while _workers(w) and time.monotonic() < quiet:
            time.sleep(1)
        scraped = datetime.now(UTC)
        metrics = {k: v for d in w.daemons.values() for k, v in d.metrics().items()}
        end = datetime.now(UTC)
        for name, daemon in w.daemons.items():
            daemon.stop(supervisors[name])
        seen = events.stop()
        runs, ticks = [], []
        for daemon in w.daemons.values():
            ran, counted = daemon.ledger()
            runs += ran
            ticks += counted
        jobs = [c.job for c in w.customers]
        first = max(d.starts[0] for d in w.daemons.values())
        window, optional = promised(
            w, first + timedelta(seconds=10), end - timedelta(seconds=2 * longest), injector.broken
        )
        checks = [check_repository(w, c) for c in w.customers]
        secrets = [c.password for c in w.customers] + [PASSWORD, w.minio.secret]
        verdict = Verdict()
        verdict.add("1 recovered", recovered(runs, jobs, cleared))
        verdict.add("2 never overlapping", never_overlapping(seen, jobs))
        verdict.add("3 repositories", repositories(checks, jobs))
        repeated = repeated_for(injector, w)
        verdict.add("4 accounted", accounted(window, runs, ticks, seen, repeated, optional))
        verdict.add("5 agreeing", agreeing(runs, ticks, w.receipts(), metrics, scraped))
        for daemon in w.daemons.values():
            logs = {daemon.log.name: daemon.log.read_text(errors="replace")}
            verdict.add("6 contained", contained(logs, secrets, daemon.exits, daemon.kills))
        table(injector, runs, window, checks, verdict)
        if args.keep:  # what the checks saw, beside the daemons' logs
            record = {
                "events": seen,
                "window": {str(j): [t.isoformat() for t in ts] for j, ts in window.items()},
                "optional": {str(j): [t.isoformat() for t in ts] for j, ts in optional.items()},
                "broken": {
                    k: [(a.isoformat(), b.isoformat()) for a, b in v]
                    for k, v in injector.broken.items()
                },
                "repeated": {
                    k: [(a.isoformat(), b.isoformat()) for a, b in v]
                    for k, v in injector.repeated.items()
                },
                "faults": [(k, a.isoformat(), b.isoformat()) for k, a, b in injector.timeline],
                "cleared": cleared.isoformat(),
                "exits": {name: d.exits for name, d in w.daemons.items()},
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
