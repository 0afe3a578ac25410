"""What a backup costs with retention configured, against bare rustic and Debian's restic.

Issue 12, item 4: retention (forget --prune) no longer follows each backup but runs as
scheduled maintenance, so a backup of a job with KEEP_* set should cost what a backup
costs. Three runners back up the same data, each into a fresh repository and then again,
unchanged, into that repository, their order rotated every round:

- bare rustic on the host (hot/cold repositories, as the product lays them out);
- `unstoppable backup` of a customer with `KEEP_DAILY=7` (interpreter start, config, the
  source guard, Docker, rustic in the worker, the judgement);
- Debian's restic 0.14 on the host, the tool an operator would otherwise script.

    .venv/bin/python bench/retention_overhead.py [--gb 1.0] [--rounds 3]
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from local_overhead import PASSWORD, ROOT, RUSTIC, make_data  # the same data, the same rustic


def timed(argv: list[str], env: dict[str, str] | None = None) -> float:
    start = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, env=env, text=True)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{argv[0]} failed: {done.stdout[-500:]}{done.stderr[-500:]}")
    return elapsed


def bare_rustic(work: Path, source: Path) -> tuple[float, float]:
    repo = work / f"rustic-{time.monotonic_ns()}"
    (password := work / "password").write_text(PASSWORD)
    argv = [
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
    ]
    fresh, unchanged = timed(argv), timed(argv)
    shutil.rmtree(repo)
    return fresh, unchanged


def unstoppable(work: Path, source: Path) -> tuple[float, float]:
    site = work / f"site-{time.monotonic_ns()}"
    (site / "customers.d").mkdir(parents=True)
    (site / "customers.d" / "bench.env").write_text(
        f'SCHEDULE="0 * * * *"\nREPO_PASSWORD={PASSWORD}\nKEEP_DAILY=7\nKEEP_LAST=3\n'
        f"RESOURCES=data\nDATA_TYPE=local\nDATA_PATH={source}\n"
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
    argv = [str(ROOT / ".venv" / "bin" / "unstoppable"), "backup", "bench"]
    fresh, unchanged = timed(argv, env), timed(argv, env)
    shutil.rmtree(site)
    return fresh, unchanged


def restic(work: Path, source: Path) -> tuple[float, float]:
    repo = work / f"restic-{time.monotonic_ns()}"
    (password := work / "password").write_text(PASSWORD)
    env = {
        **os.environ,
        "RESTIC_REPOSITORY": str(repo / "repo"),
        "RESTIC_PASSWORD_FILE": str(password),
        "RESTIC_CACHE_DIR": str(repo / "cache"),
    }
    argv = ["restic", "backup", "--json", "--quiet", "--host", "bench", str(source)]
    init = timed(["restic", "init"], env)
    fresh, unchanged = init + timed(argv, env), timed(argv, env)
    shutil.rmtree(repo)
    return fresh, unchanged


RUNNERS: dict[str, Callable[[Path, Path], tuple[float, float]]] = {
    "rustic": bare_rustic,
    "unstoppable": unstoppable,
    "restic": restic,
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gb", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    fresh: dict[str, list[float]] = {name: [] for name in RUNNERS}
    unchanged: dict[str, list[float]] = {name: [] for name in RUNNERS}
    with tempfile.TemporaryDirectory(prefix="unstoppable-bench-", dir="/var/tmp") as tmp:
        work = Path(tmp)
        source = work / "data"
        make_data(source, int(args.gb * 1024))
        subprocess.run(["sync"], check=True)
        names = list(RUNNERS)
        for i in range(args.rounds):
            for name in names[i % 3 :] + names[: i % 3]:
                first, again = RUNNERS[name](work, source)
                fresh[name].append(first)
                unchanged[name].append(again)
    f = {name: statistics.median(values) for name, values in fresh.items()}
    u = {name: statistics.median(values) for name, values in unchanged.items()}
    print(f"{args.gb:g} GB of random data, median of {args.rounds} rounds")
    print(f"  fresh:     rustic {f['rustic']:.2f}s  unstoppable {f['unstoppable']:.2f}s  "
          f"restic {f['restic']:.2f}s")  # fmt: skip
    print(f"  unchanged: rustic {u['rustic']:.2f}s  unstoppable {u['unstoppable']:.2f}s  "
          f"restic {u['restic']:.2f}s")  # fmt: skip
    fresh_ratio = f["unstoppable"] / f["rustic"]
    added = u["unstoppable"] - u["rustic"]
    print(f"  unstoppable / rustic: fresh ratio {fresh_ratio:.3f}, unchanged +{added:.2f}s")
    print(
        f"  unstoppable / restic: fresh ratio {f['unstoppable'] / f['restic']:.3f}, "
        f"unchanged ratio {u['unstoppable'] / u['restic']:.3f}"
    )
    ok = fresh_ratio <= 1.05 and added <= 0.5
    print("goals (fresh <= 1.05x rustic, unchanged <= +0.5 s):", "met" if ok else "NOT met")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
