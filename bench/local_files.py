"""A local directory backed up by Debian's restic, bare rustic and `unstoppable backup`.

    .venv/bin/python bench/local_files.py [--shape small|large] [--rounds 2]

`small`: 50 000 text files of ~9 KB (466 MB) in 500 folders, a web host's tree. `large`:
1 GB of random data in 256 files. Each round, in rotating order, times for each tool: a
first backup into empty repositories made beforehand (the making not timed: restic's
`init` calibrates its key derivation for seconds, which would flatter the product), an
unchanged second one, and a restore of the
snapshot into an empty directory; medians are printed with ratios. rustic is the same
build the worker runs (`.tools/bin/rustic`, with its carried patches), on the host.

A current restic joins when built once (see CURRENT_RESTIC below).
Every run must exit 0 and account for every file (restic's and rustic's JSON summaries,
the product's summary line, the restored tree's file count); otherwise the bench stops
with status 2 and no ratio; a missed goal is status 1. Goals (issue 22): `small`
unstoppable ≤ 1.0 × restic;
`large` ≤ 1.05 × bare rustic fresh, unchanged ≤ +0.3 s, restore ≤ 1.05 ×.
"""

import argparse
import json
import os
import random
import re
import shutil
import statistics
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.timing import Broken, timed  # noqa: E402

RUSTIC = ROOT / ".tools" / "bin" / "rustic"
CLI = ROOT / ".venv" / "bin" / "unstoppable"
PASSWORD = "bench-password"
WORDS = ("the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog", "invoice", "order")


def make_tree(root: Path, shape: str) -> int:
    rng = random.Random(22)
    if shape == "large":
        for i in range(256):
            (root / f"dir{i % 16}").mkdir(parents=True, exist_ok=True)
            (root / f"dir{i % 16}" / f"file{i}.bin").write_bytes(os.urandom(4 * 1024 * 1024))
        return 256
    for i in range(50_000):
        folder = root / f"site{i % 50:02d}" / f"dir{(i // 50) % 10}"
        folder.mkdir(parents=True, exist_ok=True)
        size = int(rng.uniform(1_000, 17_600))
        text = " ".join(rng.choice(WORDS) for _ in range(size // 5))
        (folder / f"page{i:05d}.html").write_text(text[:size])
    return 50_000


def count(root: Path) -> int:
    return sum(len(files) for _, _, files in os.walk(root))


# A current restic, if built once with (GOBIN=<this directory>)
#   go install github.com/restic/restic/cmd/restic@v0.18.1
CURRENT_RESTIC = Path.home() / ".cache" / "unstoppable-tools" / "restic-0.18.1" / "bin" / "restic"


class Restic:
    name = "restic (Debian)"
    binary = "restic"

    def __init__(self, work: Path, source: Path) -> None:
        self.repo, self.source = work / "restic", source
        self.env = {**os.environ, "RESTIC_PASSWORD": PASSWORD, "RESTIC_CACHE_DIR": str(work / "rc")}
        timed([self.binary, "-r", str(self.repo), "init"], self.env)

    def backup(self, files: int, unchanged: bool) -> float:
        took, out = timed(
            [
                self.binary,
                "-r",
                str(self.repo),
                "backup",
                "--json",
                "--host",
                "b",
                str(self.source),
            ],
            self.env,
        )
        summary = [json.loads(line) for line in out.splitlines() if '"summary"' in line][-1]
        seen = summary["files_unmodified"] if unchanged else summary["files_new"]
        if summary["total_files_processed"] != files or seen != files:
            raise Broken(f"restic: {seen} of {files} files {'unmodified' if unchanged else 'new'}")
        return took

    def restore(self, target: Path) -> float:
        took, _ = timed(
            [self.binary, "-r", str(self.repo), "restore", "latest", "--target", str(target)],
            self.env,
        )
        return took


class CurrentRestic(Restic):
    name = "restic 0.18.1"
    binary = str(CURRENT_RESTIC)


class Rustic:
    name = "rustic (bare)"

    def __init__(self, work: Path, source: Path) -> None:
        self.source = source
        work.mkdir(parents=True)
        (work / "pw").write_text(PASSWORD)
        self.base = [str(RUSTIC), "-r", str(work / "cold"), "--repo-hot", str(work / "hot")]
        self.base += ["--password-file", str(work / "pw"), "--cache-dir", str(work / "cache")]
        self.base += ["--no-progress"]
        timed([*self.base, "init"])

    def backup(self, files: int, unchanged: bool) -> float:
        took, out = timed(
            [*self.base, "backup", "--json", "--no-scan", "--host", "b", str(self.source)]
        )
        summary = json.loads(out)["summary"]
        seen = summary["files_unmodified"] if unchanged else summary["files_new"]
        if seen != files:
            raise Broken(f"rustic saw {seen} of {files} files")
        return took

    def restore(self, target: Path) -> float:
        took, _ = timed([*self.base, "restore", "latest", str(target)])
        return took


class Product:
    name = "unstoppable backup"

    def __init__(self, work: Path, source: Path) -> None:
        (work / "customers.d").mkdir(parents=True)
        (work / "customers.d" / "bench.env").write_text(
            f'SCHEDULE="0 * * * *"\nREPO_PASSWORD={PASSWORD}\nRESOURCES=data\n'
            f"DATA_TYPE=local\nDATA_PATH={source}\nDATA_ANOMALY=off\n"
        )
        self.env = {
            **os.environ,
            "UNSTOPPABLE_CONFIG": str(work / "none.env"),
            "UNSTOPPABLE_CUSTOMERS_DIR": str(work / "customers.d"),
            "UNSTOPPABLE_DATA_DIR": str(work / "data"),
            "UNSTOPPABLE_SOURCE_ROOTS": str(source.parent),
            "UNSTOPPABLE_MIN_INTERVAL": "0",
        }
        # The job's repositories made beforehand, where the product keeps them (DESIGN.md).
        data = work / "data"
        (work / "pw").write_text(PASSWORD)
        repos = ["-r", str(data / "cold" / "bench" / "data"), "--repo-hot"]
        repos += [str(data / "hot" / "bench" / "data"), "--password-file", str(work / "pw")]
        timed([str(RUSTIC), *repos, "init"])

    def backup(self, files: int, unchanged: bool) -> float:
        took, out = timed([str(CLI), "backup", "bench"], self.env)
        found = re.search(r"snapshot \w+: (\d+) new, (\d+) changed", out)
        want = (0, 0) if unchanged else (files, 0)
        if not found or (int(found[1]), int(found[2])) != want:
            raise Broken(f"unstoppable backup: expected {want} new/changed: {out.strip()}")
        return took

    def restore(self, target: Path) -> float:
        took, _ = timed([str(CLI), "restore", "bench", "data", "--target", str(target)], self.env)
        return took


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", choices=("small", "large"), default="small")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="unstoppable-bench-local-", dir="/var/tmp"))
    source = base / "source"
    tools: list[Callable[[Path, Path], Restic | Rustic | Product]] = [Restic, Rustic, Product]
    if CURRENT_RESTIC.exists():
        tools.insert(1, CurrentRestic)
    times: dict[tuple[str, str], list[float]] = {}
    try:
        files = make_tree(source, args.shape)
        for round_ in range(args.rounds):
            order = tools[round_ % len(tools) :] + tools[: round_ % len(tools)]
            for make in order:
                work = base / f"run-{round_}-{make.__name__}"
                tool = make(work, source)
                for step, took in (
                    ("fresh", tool.backup(files, unchanged=False)),
                    ("unchanged", tool.backup(files, unchanged=True)),
                    ("restore", tool.restore(work / "restored")),
                ):
                    times.setdefault((tool.name, step), []).append(took)
                restored = count(work / "restored")
                if restored != files:
                    raise Broken(f"{tool.name} restored {restored} of {files} files")
                shutil.rmtree(work, ignore_errors=True)
    except Broken as broken:
        print(f"BROKEN: {broken}", file=sys.stderr)
        return 2
    finally:
        shutil.rmtree(base, ignore_errors=True)
    med = {key: statistics.median(values) for key, values in times.items()}
    print(f"{args.shape}: {files} files, median of {args.rounds}")
    for step in ("fresh", "unchanged", "restore"):
        r, b, u = (
            med[(n, step)] for n in ("restic (Debian)", "rustic (bare)", "unstoppable backup")
        )
        print(
            f"  {step:9} restic {r:6.2f}s  rustic {b:6.2f}s ({b / r:.2f}x restic)"
            f"  unstoppable {u:6.2f}s ({u / r:.2f}x restic, {u / b:.2f}x rustic, {u - b:+.2f}s)"
        )
        if (CurrentRestic.name, step) in med:
            c = med[(CurrentRestic.name, step)]
            print(f"  {'':9} restic 0.18.1 {c:6.2f}s: unstoppable {u / c:.2f}x")
    return 0 if goals_met(args.shape, med) else 1


def goals_met(shape: str, med: dict[tuple[str, str], float]) -> bool:
    """Print and judge issue 22's goals for `shape`."""
    product = {
        step: med[("unstoppable backup", step)] for step in ("fresh", "unchanged", "restore")
    }
    if shape == "small":
        restics = [
            name for name in ("restic (Debian)", CurrentRestic.name) if (name, "fresh") in med
        ]
        verdicts = [(f"fresh <= 1.0x {n}", product["fresh"] <= med[(n, "fresh")]) for n in restics]
    else:
        bare = {step: med[("rustic (bare)", step)] for step in product}
        verdicts = [
            ("fresh <= 1.05x rustic", product["fresh"] <= 1.05 * bare["fresh"]),
            ("unchanged <= rustic + 0.3 s", product["unchanged"] <= bare["unchanged"] + 0.3),
            ("restore <= 1.05x rustic", product["restore"] <= 1.05 * bare["restore"]),
        ]
    for goal, met in verdicts:
        print(f"  goal {goal}: {'met' if met else 'NOT met'}")
    return all(met for _, met in verdicts)


if __name__ == "__main__":
    sys.exit(main())
