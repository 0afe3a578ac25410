"""Remote sources across a slow link: `unstoppable backup` against `rclone copy` and a listing.

    .venv/bin/python bench/remote_wan.py [--files 1200] [--mb 10] [--dirs 60]
        [--rtt 0,10,40,100] [--mbit 100] [--proto sftp,ftps]

Serves a generated tree from real servers — OpenSSH (SFTP) and vsftpd (explicit TLS,
passive) — behind `bench/wan.py`, a loopback proxy that delays each direction by half the
round trip and shares `--mbit` per direction. vsftpd runs in a network namespace of its own,
so its control port and every passive data port cross the slow link. For each protocol and
round trip, in one run and over the same link:

  - the baselines: `rclone copy` with 8 transfers and 8 checkers (what a provider would
    script instead), and a parallel listing (`rclone lsf -R`, 8 checkers);
  - `unstoppable backup` of the same tree into fresh repositories, full, then unchanged.

Every baseline must exit 0 and fetch every file (the copy is compared with the source);
every backup must succeed, and the unchanged one must not download file contents (the
bytes the link carried downstream are printed). Goals (issue 22): full ≤ 1.0 × copy,
unchanged ≤ 1.5 × the listing. Exit status 1 when a goal is missed, 2 on a broken run.
"""

import argparse
import filecmp
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.timing import Broken, timed  # noqa: E402
from bench.wan import Wan  # noqa: E402
from orchestrator.sources.remote import obscure  # noqa: E402
from tests.servers import PASSWORD, USER, free_port, open_dir, sshd, vsftpd  # noqa: E402

CLI = ROOT / ".venv" / "bin" / "unstoppable"
WORDS = [
    "lorem",
    "ipsum",
    "dolor",
    "sit",
    "amet",
    "consectetur",
    "adipiscing",
    "elit",
    "sed",
    "do",
    "eiusmod",
    "tempor",
]


@dataclass
class Endpoint:
    """One server behind one link, as a customer file and an rclone remote see it."""

    proto: str
    port: int  # the proxy's port on 127.0.0.1
    env_lines: str  # SITE_* keys beyond TYPE/HOST/PORT/USER/PASSWORD/PATH
    rclone_conf: str
    rclone_env: dict[str, str]


def make_tree(root: Path, files: int, mb: int, dirs: int, seed: int = 22) -> None:
    """Write `files` files, mostly small text with a few larger, in `dirs` nested folders."""
    rng = random.Random(seed)
    average = mb * 1024 * 1024 // files
    for i in range(files):
        folder = root / f"site{i % dirs:03d}" / f"part{(i // dirs) % 4}"
        folder.mkdir(parents=True, exist_ok=True)
        size = max(16, int(rng.expovariate(1 / average)))
        text = " ".join(rng.choice(WORDS) for _ in range(size // 6 + 1))
        (folder / f"page{i:06d}.html").write_text(text[:size])
    subprocess.run(["chmod", "-R", "a+rX", str(root)], check=True)


@contextmanager
def endpoint(proto: str, wan: Wan, work: Path) -> Iterator[Endpoint]:
    if proto == "sftp":
        with sshd() as server:
            port = free_port()
            wan.forward(port, server.port)
            known = work / "known_hosts"
            known.write_text(f"[127.0.0.1]:{port} {server.host_key}\n")
            conf = (
                f"[src]\ntype = sftp\nhost = 127.0.0.1\nport = {port}\nuser = {USER}\n"
                f"pass = {obscure(PASSWORD)}\nshell_type = none\ndisable_hashcheck = true\n"
                f"known_hosts_file = {known}\n"
            )
            yield Endpoint(proto, port, f'SITE_HOST_KEY="{server.host_key}"\n', conf, {})
        return
    with vsftpd(isolated=True) as server:
        assert server.netns is not None
        wan.reachable(server.port, server.netns)
        for port in (server.port, *server.passive):
            wan.forward(port, port, server.netns)
        keys = work / "keys" / "bench"
        keys.mkdir(parents=True, exist_ok=True)
        shutil.copy(server.ca, keys / "ca.pem")
        conf = (
            f"[src]\ntype = ftp\nhost = 127.0.0.1\nport = {server.port}\nuser = {USER}\n"
            f"pass = {obscure(PASSWORD)}\nexplicit_tls = true\ndisable_tls13 = true\n"
        )
        lines = f"SITE_TLS_CA_FILE={keys / 'ca.pem'}\n"
        yield Endpoint(proto, server.port, lines, conf, {"SSL_CERT_FILE": str(server.ca)})


def product_env(
    work: Path, point: Endpoint, source: Path, rtt: int, connections: int | None
) -> dict[str, str]:
    customers = work / f"customers-{point.proto}-{rtt}"
    customers.mkdir()
    (customers / "bench.env").write_text(
        f'SCHEDULE="0 3 * * *"\nREPO_PASSWORD=pw\nRESOURCES=site\nSITE_TYPE={point.proto}\n'
        f"SITE_HOST=127.0.0.1\nSITE_PORT={point.port}\nSITE_USER={USER}\n"
        f"SITE_PASSWORD={PASSWORD}\nSITE_PATH={source}\n{point.env_lines}"
        + (f"SITE_CONNECTIONS={connections}\n" if connections else "")
    )
    return {
        **os.environ,
        "UNSTOPPABLE_CONFIG": str(work / "none.env"),
        "UNSTOPPABLE_CUSTOMERS_DIR": str(customers),
        "UNSTOPPABLE_DATA_DIR": str(work / f"data-{point.proto}-{rtt}"),
        "UNSTOPPABLE_SOURCE_ROOTS": str(source.parent),
        "UNSTOPPABLE_KEYS_DIR": str(work / "keys"),
        "UNSTOPPABLE_ALLOW_PRIVATE_TARGETS": "127.0.0.0/8",
        "UNSTOPPABLE_MIN_INTERVAL": "0",
    }


def measure(
    point: Endpoint, wan: Wan, work: Path, source: Path, files: int, connections: int | None
) -> dict[str, float]:
    conf = work / f"rclone-{point.proto}.conf"
    conf.write_text(point.rclone_conf)
    env = {**os.environ, **point.rclone_env}
    rclone = ["rclone", "--config", str(conf), "--transfers", "8", "--checkers", "8"]
    copy = work / f"copy-{point.proto}-{wan.rtt_ms:g}"
    row: dict[str, float] = {}
    row["copy"], _ = timed([*rclone, "copy", f"src:{source}", str(copy)], env)
    same = [
        filecmp.cmp(path, copy / path.relative_to(source), shallow=False)
        for path in source.rglob("*")
        if path.is_file() and (copy / path.relative_to(source)).is_file()
    ]
    if count(copy) != files or len(same) != files or not all(same):
        raise Broken(f"rclone copy fetched {sum(same)} of {files} files intact")
    row["listing"], listed = timed([*rclone, "lsf", "-R", "--files-only", f"src:{source}"], env)
    if len(listed.splitlines()) != files:
        raise Broken(f"the listing named {len(listed.splitlines())} of {files} files")
    uenv = product_env(work, point, source, int(wan.rtt_ms), connections)
    cli = [str(CLI), "backup", "bench"]
    row["full"], out = timed(cli, uenv)
    judged(out, files)
    before = wan.moved_down
    row["unchanged"], out = timed(cli, uenv)
    judged(out, 0)
    down = wan.moved_down - before
    row["unchanged_mb"] = down / 1e6
    # Listings and handshakes come down too, but no file's contents: a quarter of the tree
    # would mean the unchanged run read files it should have skipped.
    if down > tree_bytes(source) / 4:
        raise Broken(f"the unchanged backup downloaded {down} bytes: it read file contents")
    return row


def judged(out: str, new: int) -> None:
    """Refuse a backup that did not do its work: its time would be meaningless.

    `summary_line` prints `snapshot ID: N new, M changed, ...`; the full run must have read
    every file as new, the unchanged one none at all.
    """
    found = re.search(r"snapshot \w+: (\d+) new, (\d+) changed", out)
    if not found or (int(found[1]), int(found[2])) != (new, 0):
        raise Broken(f"unstoppable backup: expected {new} new and 0 changed files: {out.strip()}")


def tree_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def count(root: Path) -> int:
    return sum(len(names) for _, _, names in os.walk(root))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=1200)
    parser.add_argument("--mb", type=int, default=10)
    parser.add_argument("--dirs", type=int, default=60)
    parser.add_argument("--rtt", default="0,10,40,100")
    parser.add_argument("--mbit", type=float, default=100)
    parser.add_argument("--proto", default="sftp,ftps")
    parser.add_argument("--connections", type=int, help="SITE_CONNECTIONS (default: the product's)")
    args = parser.parse_args()
    rtts = sorted({int(x) for x in args.rtt.split(",")})
    source = open_dir("unstoppable-bench-wan-")
    work = Path(tempfile.mkdtemp(prefix="unstoppable-bench-wan-", dir="/var/tmp"))
    rows: list[tuple[str, int, dict[str, float]]] = []
    try:
        make_tree(source, args.files, args.mb, args.dirs)
        for proto in args.proto.split(","):
            for rtt in rtts:
                with Wan(rtt, args.mbit) as wan, endpoint(proto, wan, work) as point:
                    rows.append(
                        (
                            proto,
                            rtt,
                            measure(point, wan, work, source, args.files, args.connections),
                        )
                    )
                    print_row(*rows[-1], flush=True)
    except Broken as broken:
        print(f"BROKEN: {broken}", file=sys.stderr)
        return 2
    finally:
        shutil.rmtree(source, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
    print(f"\n{args.files} files, {args.mb} MB in {args.dirs * 4} folders, {args.mbit:g} Mbit/s")
    met = True
    for proto, rtt, row in rows:
        full, unchanged = row["full"] / row["copy"], row["unchanged"] / row["listing"]
        met &= full <= 1.0 and unchanged <= 1.5
        print(
            f"{proto} {rtt:>3} ms: full/copy {full:.2f} (≤ 1.0)"
            f"  unchanged/listing {unchanged:.2f} (≤ 1.5)"
        )
    return 0 if met else 1


def print_row(proto: str, rtt: int, row: dict[str, float], flush: bool = False) -> None:
    print(
        f"{proto} rtt {rtt:>3} ms | copy {row['copy']:7.2f}s  listing {row['listing']:6.2f}s"
        f" | unstoppable full {row['full']:7.2f}s  unchanged {row['unchanged']:6.2f}s"
        f" ({row['unchanged_mb']:.2f} MB came down)",
        flush=flush,
    )


if __name__ == "__main__":
    sys.exit(main())
