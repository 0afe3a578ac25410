"""Restores timed against bare rustic on the same snapshot, Debian's restic, and rclone.

    .venv/bin/python bench/restore.py [--shape small|large|both|none] [--rounds 3]
                                      [--to-source-files 10000]

`small` is a web host's tree (50 000 files of 1-17 KB, 466 MB), `large` 1 GB of random data
in 256 files (bench/local_files.py makes both). The product backs the tree up once
(`unstoppable backup`), restic once into its own repository; then each round, in rotating
order, restores the newest snapshot into an empty folder:

- `unstoppable restore` (the CLI: interpreter, config, a worker container);
- the same restore in-process (no interpreter start: what the constant is made of);
- bare rustic on the host, on the product's own repositories and cache (the same snapshot);
- restic 0.14 from Debian, from its repository of the same tree.

Then `--to-source` over SFTP (OpenSSH on loopback, a tree of `--to-source-files` small files):
`unstoppable restore --to-source` (rustic restores into a private folder, a second worker
puts it on the server with rclone) against `rclone copy` of the same tree from the host, with
as many transfers as the product's default CONNECTIONS.

Every run must exit 0 and give back every file, every byte (and a sample of contents,
byte for byte); otherwise the bench stops with status 2 and no ratio. A missed goal is
status 1: `unstoppable restore` <= 1.05 x bare rustic.
"""

import argparse
import hashlib
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.local_files import CLI, PASSWORD, RUSTIC, Product, Restic, make_tree  # noqa: E402
from bench.timing import Broken, timed  # noqa: E402
from tests.servers import UID, USER, open_dir, sshd  # noqa: E402

CONNECTIONS = 8  # the product's default <R>_CONNECTIONS, given to rclone copy too


def fingerprint(root: Path, sample: int = 40) -> tuple[int, int, dict[str, str]]:
    """Return (files, bytes, sha256 of a fixed sample of files) under `root`."""
    files, size, names = 0, 0, []
    for folder, _dirs, found in os.walk(root):
        for name in found:
            path = os.path.join(folder, name)
            files, size = files + 1, size + os.lstat(path).st_size
            names.append(os.path.relpath(path, root))
    chosen = random.Random(24).sample(sorted(names), min(sample, len(names)))
    hashes = {n: hashlib.sha256((root / n).read_bytes()).hexdigest() for n in chosen}
    return files, size, hashes


def same(restored: Path, source: Path, want: tuple[int, int, dict[str, str]], who: str) -> None:
    files, size, _ = fingerprint(restored, 0)
    if (files, size) != want[:2]:
        raise Broken(f"{who} gave back {files} files, {size} bytes of {want[0]}, {want[1]}")
    for name, digest in want[2].items():
        if hashlib.sha256((restored / name).read_bytes()).hexdigest() != digest:
            raise Broken(f"{who}: {name} differs from the source")


def where_restored(target: Path, source: Path) -> Path:
    """restic restores the full path under its target; rustic and the product the tree."""
    nested = target / source.relative_to("/")
    return nested if nested.exists() else target


def restorers(work: Path, source: Path) -> dict[str, Callable[[Path], float]]:
    product = Product(work / "product", source)
    out = timed([str(CLI), "backup", "bench"], product.env)[1]
    if "success" not in out:
        raise Broken(f"unstoppable backup: {out.strip()}")
    restic = Restic(work / "restic-home", source)
    timed([restic.binary, "-r", str(restic.repo), "backup", "--host", "b", str(source)], restic.env)
    data = work / "product" / "data"
    bare = [str(RUSTIC), "-r", str(data / "cold" / "bench" / "data"), "--repo-hot"]
    bare += [str(data / "hot" / "bench" / "data"), "--password-file", str(work / "product" / "pw")]
    bare += ["--cache-dir", str(data / "cache" / "bench" / "data"), "--no-progress"]

    def cli(target: Path) -> float:
        argv = [str(CLI), "restore", "bench", "data", "--target", str(target)]
        return timed(argv, product.env)[0]

    def in_process(target: Path) -> float:
        from orchestrator.commands.context import launcher_on_runtime, load
        from orchestrator.repository import restore

        saved = dict(os.environ)
        os.environ.update(product.env)
        try:
            settings, customers = load()
            customer = customers.get("bench")
            launcher = launcher_on_runtime(settings)
            start = time.perf_counter()
            restore(launcher, customer, customer.resource("data"), target, "latest")
            return time.perf_counter() - start
        finally:
            os.environ.clear()
            os.environ.update(saved)

    def rustic(target: Path) -> float:
        return timed([*bare, "restore", f"latest:{source}", str(target)])[0]

    def restic_(target: Path) -> float:
        argv = [restic.binary, "-r", str(restic.repo), "restore", "latest", "--target", str(target)]
        return timed(argv, restic.env)[0]

    return {
        "unstoppable restore": cli,
        "in-process restore": in_process,
        "rustic (bare)": rustic,
        "restic 0.14": restic_,
    }


def restores(shape: str, rounds: int, base: Path) -> dict[str, float]:
    source = base / f"source-{shape}"
    make_tree(source, shape)
    want = fingerprint(source)
    runners = restorers(base / f"work-{shape}", source)
    names = list(runners)
    times: dict[str, list[float]] = {n: [] for n in names}
    for round_ in range(rounds):
        for name in names[round_ % len(names) :] + names[: round_ % len(names)]:
            target = base / f"restored-{shape}-{round_}-{name.split()[0]}"
            subprocess.run(["sync"], check=True)  # each starts with nothing dirty to write back
            times[name].append(runners[name](target))
            same(where_restored(target, source), source, want, name)
            shutil.rmtree(target)
    med = {n: statistics.median(v) for n, v in times.items()}
    bare = med["rustic (bare)"]
    print(f"{shape}: {want[0]} files, {want[1] / 2**20:.0f} MiB, median of {rounds}")
    for name, took in med.items():
        rate = want[1] / 2**20 / took
        print(f"  {name:20} {took:6.2f} s  {rate:7.1f} MiB/s  {took / bare:.2f} x rustic"
              f"  {took / med['restic 0.14']:.2f} x restic  {took - bare:+.2f} s")  # fmt: skip
    return med


def to_source(files: int, rounds: int, base: Path) -> dict[str, float]:
    """`restore --to-source` over SFTP against `rclone copy` of the same tree."""
    with sshd(writable=True) as server:
        root = open_dir("unstoppable-bench-put-")
        os.chown(root, UID, UID)
        tree = root / "site"
        small = base / "put-tree"
        make_tree(small, "small")
        kept = sorted(p for p in small.rglob("*") if p.is_file())[:files]
        for path in kept:
            dest = tree / path.relative_to(small)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, dest)
        shutil.rmtree(small)
        for path in [tree, *tree.rglob("*")]:
            os.chown(path, UID, UID)
        want = fingerprint(tree)
        work = base / "put"
        (work / "customers.d").mkdir(parents=True)
        keys = work / "keys" / "bench"
        keys.mkdir(parents=True)
        shutil.copyfile(server.client_key, keys / "client")
        (keys / "client").chmod(0o600)
        (work / "customers.d" / "bench.env").write_text(
            f'SCHEDULE="0 * * * *"\nREPO_PASSWORD={PASSWORD}\nRESOURCES=site\n'
            f"SITE_TYPE=sftp\nSITE_HOST=127.0.0.1\nSITE_PORT={server.port}\nSITE_USER={USER}\n"
            f'SITE_PATH={tree}\nSITE_HOST_KEY="{server.host_key}"\n'
            f"SITE_KEY_FILE={keys / 'client'}\n"
            f"SITE_CONNECTIONS={CONNECTIONS}\nSITE_ANOMALY=off\n"
        )
        env = {**os.environ, "UNSTOPPABLE_CONFIG": str(work / "none.env"),
               "UNSTOPPABLE_CUSTOMERS_DIR": str(work / "customers.d"),
               "UNSTOPPABLE_DATA_DIR": str(work / "data"),
               "UNSTOPPABLE_KEYS_DIR": str(work / "keys"),
               "UNSTOPPABLE_ALLOW_PRIVATE_TARGETS": "127.0.0.0/8",
               "UNSTOPPABLE_MIN_INTERVAL": "0"}  # fmt: skip
        out = timed([str(CLI), "backup", "bench"], env)[1]
        if "success" not in out:
            raise Broken(f"unstoppable backup over SFTP: {out.strip()}")
        conf = work / "rclone.conf"
        (work / "known_hosts").write_text(f"[127.0.0.1]:{server.port} {server.host_key}\n")
        conf.write_text(
            f"[s]\ntype = sftp\nhost = 127.0.0.1\nport = {server.port}\nuser = {USER}\n"
            f"key_file = {keys / 'client'}\nknown_hosts_file = {work / 'known_hosts'}\n"
            "shell_type = none\ndisable_hashcheck = true\n"
        )
        times: dict[str, list[float]] = {"unstoppable --to-source": [], "rclone copy": []}
        for round_ in range(rounds):
            runs = [
                ("unstoppable --to-source", f"us-{round_}", [str(CLI), "restore", "bench",
                 "site", "--to-source", "--into", f"us-{round_}"]),
                ("rclone copy", f"rc-{round_}", ["rclone", "--config", str(conf), "copy",
                 str(tree), f"s:{tree}/rc-{round_}", "--transfers", str(CONNECTIONS),
                 "--checkers", str(CONNECTIONS), "--exclude", "/us-*/**", "--exclude", "/rc-*/**"]),
            ]  # fmt: skip
            for name, folder, argv in runs[round_ % 2 :] + runs[: round_ % 2]:
                times[name].append(timed(argv, env)[0])
                same(tree / folder, tree, want, name)
                shutil.rmtree(tree / folder)
        shutil.rmtree(root, ignore_errors=True)
    med = {n: statistics.median(v) for n, v in times.items()}
    product, rclone = med["unstoppable --to-source"], med["rclone copy"]
    print(f"to-source over SFTP: {want[0]} files, {want[1] / 2**20:.0f} MiB, median of {rounds}")
    print(f"  rclone copy              {rclone:6.2f} s")
    print(f"  unstoppable --to-source  {product:6.2f} s  {product / rclone:.2f} x rclone copy")
    return med


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", choices=("small", "large", "both", "none"), default="both")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--to-source-files", type=int, default=10_000)
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="unstoppable-bench-restore-", dir="/var/tmp"))
    met = True
    print(f"bench/restore.py, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    try:
        shapes = {"both": ("small", "large"), "none": ()}.get(args.shape, (args.shape,))
        for shape in shapes:
            med = restores(shape, args.rounds, base)
            ok = med["unstoppable restore"] <= 1.05 * med["rustic (bare)"]
            print(f"  goal unstoppable restore <= 1.05 x rustic: {'met' if ok else 'NOT met'}")
            met = met and ok
        if args.to_source_files:
            to_source(args.to_source_files, args.rounds, base)
    except Broken as broken:
        print(f"BROKEN: {broken}", file=sys.stderr)
        return 2
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
