"""What the orchestrator costs over bare rustic on the host, measured in one run.

Backs up the same data twice over — by bare rustic on the host, and by `unstoppable backup`
(Python start, config, Docker create/start/wait/logs/remove, secret files, the container's
own rustic) — into fresh hot/cold repositories, alternating the order, and prints ratios.

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


def compare(work: Path, source: Path, rounds: int) -> tuple[float, float]:
    times: dict[str, list[float]] = {"bare": [], "unstoppable": []}
    for i in range(rounds):
        order = [("bare", bare), ("unstoppable", orchestrated)]
        for name, run in order if i % 2 == 0 else reversed(order):
            times[name].append(run(work, source))
    return statistics.median(times["bare"]), statistics.median(times["unstoppable"])


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
        b, u = compare(work, big, args.rounds)
        print(
            f"{args.gb:g} GB first backup: bare rustic {b:.2f}s, unstoppable {u:.2f}s, "
            f"ratio {u / b:.3f} (goal <= 1.05)"
        )
        tb, tu = compare(work, tiny, max(args.rounds, 5))
        print(
            f"tiny directory: bare rustic {tb:.2f}s, unstoppable {tu:.2f}s, "
            f"added per job {tu - tb:.2f}s (goal <= 1.5 s)"
        )
        ok = u / b <= 1.05 and tu - tb <= 1.5
    print("goals met" if ok else "goals NOT met")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
