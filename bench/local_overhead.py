"""What the orchestrator costs over bare rustic on the host, measured in one run.

Backs up the same data into fresh hot/cold repositories three ways — bare rustic on the host;
`unstoppable backup` (interpreter start, config, secret files, Docker create/start/wait/logs/
remove, the container's own rustic); and the same run in-process, as the daemon does it —
rotating the order every round, and prints ratios of medians.

    .venv/bin/python bench/local_overhead.py [--gb 1.0] [--rounds 3]
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUSTIC = ROOT / ".tools" / "bin" / "rustic"
PASSWORD = "bench-password"


def make_data(root: Path, total_mb: int) -> None:
    root.mkdir(parents=True)
    for i in range(total_mb // 4):
        (root / f"dir{i % 16}").mkdir(exist_ok=True)
        (root / f"dir{i % 16}" / f"file{i}.bin").write_bytes(os.urandom(4 * 1024 * 1024))


def bare(work: Path, source: Path) -> float:
    repo = work / f"bare-{time.monotonic_ns()}"
    (password := work / "password").write_text(PASSWORD)
    start = time.perf_counter()
    subprocess.run(
        [
            str(RUSTIC),
            "-r",
            str(repo / "cold"),
            "--repo-hot",
            str(repo / "hot"),
            "--password-file",
            str(password),
            "--cache-dir",
            str(repo / "cache"),
            "--no-progress",
            "backup",
            "--init",
            "--json",
            "--host",
            "bench",
            "--",
            str(source),
        ],
        check=True,
        capture_output=True,
    )
    elapsed = time.perf_counter() - start
    shutil.rmtree(repo)
    return elapsed


def orchestrated(work: Path, source: Path) -> float:
    site = work / f"site-{time.monotonic_ns()}"
    (site / "customers.d").mkdir(parents=True)
    (site / "customers.d" / "bench.env").write_text(
        f'SCHEDULE="0 * * * *"\nREPO_PASSWORD={PASSWORD}\nRESOURCES=data\n'
        f"DATA_TYPE=local\nDATA_PATH={source}\n"
    )
    env = {
        **os.environ,
        "UNSTOPPABLE_CONFIG": str(site / "none.env"),
        "UNSTOPPABLE_CUSTOMERS_DIR": str(site / "customers.d"),
        "UNSTOPPABLE_DATA_DIR": str(site / "data"),
        "UNSTOPPABLE_SOURCE_ROOTS": str(site),
        "UNSTOPPABLE_ALLOW_PRIVATE_TARGETS": "127.0.0.0/8",
        "UNSTOPPABLE_MIN_INTERVAL": "0",
    }
    start = time.perf_counter()
    subprocess.run(
        [str(ROOT / ".venv" / "bin" / "unstoppable"), "backup", "bench"],
        check=True,
        capture_output=True,
        env=env,
    )
    elapsed = time.perf_counter() - start
    shutil.rmtree(site)
    return elapsed


def in_process(work: Path, source: Path) -> float:
    """Time one backup the way the daemon runs it: no interpreter start, no config load."""
    from orchestrator.config.customer_file import load_customer
    from orchestrator.config.settings_file import load_settings
    from orchestrator.runs import Jobs
    from orchestrator.runtime.docker import DockerRuntime

    site = work / f"site-{time.monotonic_ns()}"
    (site / "customers.d").mkdir(parents=True)
    path = site / "customers.d" / "bench.env"
    path.write_text(
        f'SCHEDULE="0 * * * *"\nREPO_PASSWORD={PASSWORD}\nRESOURCES=data\n'
        f"DATA_TYPE=local\nDATA_PATH={source}\n"
    )
    settings = load_settings(
        {"UNSTOPPABLE_CONFIG": str(site / "none.env"), "UNSTOPPABLE_DATA_DIR": str(site / "data")}
    )
    customer = load_customer(path)
    jobs = Jobs(settings, DockerRuntime())
    start = time.perf_counter()
    record = jobs.backup(customer, customer.resources[0], datetime.now(UTC))
    elapsed = time.perf_counter() - start
    assert record.outcome.result.value == "success", record.outcome.message
    shutil.rmtree(site)
    return elapsed


RUNNERS = {"bare": bare, "cli": orchestrated, "daemon": in_process}


def compare(work: Path, source: Path, rounds: int) -> dict[str, float]:
    """Return the median time of each runner, their order rotated every round."""
    times: dict[str, list[float]] = {name: [] for name in RUNNERS}
    names = list(RUNNERS)
    for i in range(rounds):
        for name in names[i % 3 :] + names[: i % 3]:
            times[name].append(RUNNERS[name](work, source))
    return {name: statistics.median(values) for name, values in times.items()}


LABELS = {
    "cli": "`unstoppable backup` (interpreter start, config, Docker)",
    "daemon": "in-process, as the daemon runs a job (Docker only)",
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gb", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="unstoppable-bench-", dir="/var/tmp") as tmp:
        work = Path(tmp)
        big, tiny = work / "big", work / "tiny"
        make_data(big, int(args.gb * 1024))
        tiny.mkdir()
        for i in range(5):
            (tiny / f"f{i}.txt").write_text(f"tiny {i}\n")
        subprocess.run(["sync"], check=True)
        results = {}
        for label, source, rounds in (
            (f"{args.gb:g} GB first backup", big, args.rounds),
            ("tiny directory", tiny, max(args.rounds, 5)),
        ):
            times = results[label] = compare(work, source, rounds)
            print(f"{label}, median of {rounds}: bare rustic {times['bare']:.2f}s")
            for name in ("cli", "daemon"):
                added = times[name] - times["bare"]
                print(
                    f"  {LABELS[name]}: {times[name]:.2f}s, "
                    f"ratio {times[name] / times['bare']:.3f}, added {added:.2f}s"
                )
        big_t, tiny_t = results.values()
        print("goals: ratio <= 1.05 on 1 GB, added <= 1.5 s on a tiny directory")
        ok = big_t["cli"] / big_t["bare"] <= 1.05 and tiny_t["cli"] - tiny_t["bare"] <= 1.5
    print("goals met" if ok else "goals NOT met by `unstoppable backup`")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
