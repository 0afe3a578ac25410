"""The daemon at 1000 customers × 3 resources: load time, idle footprint, start latency.

    .venv/bin/python bench/daemon_scale.py [--customers 1000] [--idle 60] [--burst 50]

Prints each measurement against its goal, and the start latency against a baseline measured
in the same run: the same number of bare `docker run`s started at once, without the daemon.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from orchestrator import __version__  # noqa: E402
from orchestrator.config.customer_file import load_customers  # noqa: E402

IMAGE = os.environ.get("UNSTOPPABLE_WORKER_IMAGE", f"unstoppable-worker:{__version__}")
TICKS = os.sysconf("SC_CLK_TCK")


def write_customers(directory: Path, source: Path, count: int) -> None:
    for i in range(count):
        lines = [
            'SCHEDULE="H 3 * * *"',
            "TIMEZONE=Europe/Berlin",
            f"REPO_PASSWORD=pw-{i}",
            "KEEP_DAILY=7",
            "RESOURCES=web,sql,mail",
        ]
        for res in ("WEB", "SQL", "MAIL"):
            lines += [f"{res}_TYPE=local", f"{res}_PATH={source}"]
        (directory / f"customer-{i:04d}.env").write_text("\n".join(lines) + "\n")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def docker_events(since: float, until: float, label: str) -> list[dict[str, object]]:
    out = subprocess.run(
        [
            "docker",
            "events",
            "--since",
            f"{since:.3f}",
            "--until",
            f"{until:.3f}",
            "--format",
            "{{json .}}",
            "--filter",
            "type=container",
            "--filter",
            "event=start",
            "--filter",
            f"label={label}",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def baseline_burst(count: int) -> list[float]:
    """Return how long after a common instant each of `count` bare `docker run`s started."""
    names = [f"bench-baseline-{i}" for i in range(count)]
    at = time.time() + 2

    def one(name: str) -> None:
        time.sleep(max(0.0, at - time.time()))
        subprocess.run(
            [
                "docker",
                "run",
                "-d",
                "--name",
                name,
                "--label",
                "bench=baseline",
                "--network",
                "host",
                IMAGE,
                "--version",
            ],
            capture_output=True,
        )

    threads = [threading.Thread(target=one, args=(n,)) for n in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    events = docker_events(at - 1, time.time() + 1, "bench=baseline")
    subprocess.run(["docker", "rm", "-f", *names], capture_output=True)
    return [int(e["timeNano"]) / 1e9 - at for e in events]  # type: ignore[call-overload]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1000)
    parser.add_argument("--idle", type=int, default=60)
    parser.add_argument("--burst", type=int, default=50)
    args = parser.parse_args()
    results: list[tuple[str, float, float, str]] = []
    with tempfile.TemporaryDirectory(prefix="unstoppable-scale-", dir="/var/tmp") as tmp:
        work = Path(tmp)
        customers, source = work / "customers.d", work / "source"
        customers.mkdir()
        source.mkdir()
        (source / "file.txt").write_text("tiny\n")
        write_customers(customers, source, args.customers)

        loads = []
        for _ in range(3):
            start = time.perf_counter()
            loaded = load_customers(customers)
            loads.append(time.perf_counter() - start)
        assert len(loaded.valid) == args.customers, loaded.problems[:3]
        results.append(("config load (s)", statistics.median(loads), 2.0, "<"))

        env = {
            **os.environ,
            "UNSTOPPABLE_CONFIG": str(work / "none.env"),
            "UNSTOPPABLE_CUSTOMERS_DIR": str(customers),
            "UNSTOPPABLE_DATA_DIR": str(work / "data"),
            "UNSTOPPABLE_SOURCE_ROOTS": str(work),
            "UNSTOPPABLE_ALLOW_PRIVATE_TARGETS": "127.0.0.0/8",
            "UNSTOPPABLE_MIN_INTERVAL": "0",
            "UNSTOPPABLE_MAX_PARALLEL": str(args.burst),
        }
        log = open(work / "daemon.log", "wb")  # noqa: SIM115
        daemon = subprocess.Popen(
            [str(ROOT / ".venv" / "bin" / "unstoppable"), "run"], env=env, stdout=log, stderr=log
        )
        try:
            deadline = time.time() + 60
            while b"scheduling" not in (work / "daemon.log").read_bytes():
                assert time.time() < deadline and daemon.poll() is None, "daemon did not start"
                time.sleep(0.2)
            time.sleep(5)
            cpu0, t0 = cpu_seconds(daemon.pid), time.monotonic()
            time.sleep(args.idle)
            cpu = (cpu_seconds(daemon.pid) - cpu0) / (time.monotonic() - t0) * 100
            results.append(("idle RSS (MB)", rss_mb(daemon.pid), 100.0, "<"))
            results.append((f"idle CPU over {args.idle} s (%)", cpu, 1.0, "<"))

            # A burst: `--burst` jobs due at the same second, among all the others.
            due = (datetime.now(UTC) + timedelta(seconds=20)).replace(microsecond=0)
            cron = f"{due.minute} {due.hour} * * * {due.second}"
            for i in range(args.burst):
                (customers / f"burst-{i:03d}.env").write_text(
                    f'SCHEDULE="{cron}"\nREPO_PASSWORD=pw\nRESOURCES=files\n'
                    f"FILES_TYPE=local\nFILES_PATH={source}\n"
                )
            time.sleep(max(0.0, due.timestamp() - time.time()) + 30)
            events = docker_events(due.timestamp() - 5, time.time(), "unstoppable.managed=true")
            delays = [
                int(e["timeNano"]) / 1e9 - due.timestamp()
                for e in events  # type: ignore[call-overload]
                if str(e["Actor"]["Attributes"].get("unstoppable.customer", "")).startswith(
                    "burst-"
                )
            ]  # type: ignore[index]
            assert len(delays) == args.burst, f"{len(delays)} of {args.burst} burst jobs started"
        finally:
            shutil.copy(work / "daemon.log", "/tmp/unstoppable-scale-daemon.log")
            daemon.terminate()
            daemon.wait(10)
            log.close()
            subprocess.run(
                "docker ps -aq --filter label=unstoppable.managed=true | xargs -r docker rm -f",
                shell=True,
                capture_output=True,
            )
            shutil.rmtree(work / "data", ignore_errors=True)
        baseline = baseline_burst(args.burst)
        results.append(
            (f"start delay p50, {args.burst} due at once (s)", percentile(delays, 0.5), 2.0, "<")
        )
        results.append(
            (f"start delay p99, {args.burst} due at once (s)", percentile(delays, 0.99), 2.0, "<")
        )

    ok = True
    print(f"{args.customers} customers x 3 resources = {args.customers * 3} jobs")
    for name, value, goal, _ in results:
        met = value < goal
        ok &= met
        print(f"  {name:<45} {value:8.3f}   goal < {goal:g}   {'met' if met else 'NOT met'}")
    print(
        f"  baseline: {args.burst} bare `docker run` at once, start p50 "
        f"{percentile(baseline, 0.5):.3f} s, p99 {percentile(baseline, 0.99):.3f} s; "
        f"daemon p99 / baseline p99 = {percentile(delays, 0.99) / percentile(baseline, 0.99):.2f}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
