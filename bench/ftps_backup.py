"""FTPS backups against `rclone copy` of the same tree, and mount against mirror.

    .venv/bin/python bench/ftps_backup.py [--files 2000] [--mb 200]

Serves a generated tree from a real vsftpd (explicit TLS, passive mode) on loopback, then
times, in one run:
  - `rclone copy` of the tree to a local directory, then again with nothing changed
    (the baseline: the cheapest way to fetch the data at all);
  - `unstoppable backup` (worker container, rclone FUSE mount, rustic), full then
    incremental with nothing changed;
  - the alternative design: `rclone sync` into a staging copy, then rustic on the host.
and prints the ratios. Goal: an unchanged incremental backup takes < 20 % of the full one.
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from orchestrator.sources.remote import obscure  # noqa: E402
from tests.servers import PASSWORD, USER, open_dir, vsftpd  # noqa: E402

RUSTIC = ROOT / ".tools" / "bin" / "rustic"


def timed(argv: list[str], env: dict[str, str] | None = None) -> float:
    start = time.perf_counter()
    subprocess.run(argv, check=True, capture_output=True, env=env)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--mb", type=int, default=200)
    args = parser.parse_args()
    size = args.mb * 1024 * 1024 // args.files
    source = open_dir("unstoppable-bench-ftps-")
    work = Path(tempfile.mkdtemp(prefix="unstoppable-bench-", dir="/var/tmp"))
    try:
        for i in range(args.files):
            directory = source / f"dir{i % 40:02d}"
            directory.mkdir(exist_ok=True)
            (directory / f"file{i:05d}.bin").write_bytes(os.urandom(size))
        subprocess.run(["chmod", "-R", "a+rX", str(source)], check=True)
        with vsftpd() as server:
            conf = work / "rclone.conf"
            conf.write_text(
                f"[src]\ntype = ftp\nhost = 127.0.0.1\nport = {server.port}\nuser = {USER}\n"
                f"pass = {obscure(PASSWORD)}\nexplicit_tls = true\ndisable_tls13 = true\n"
            )
            env = {**os.environ, "SSL_CERT_FILE": str(server.ca)}
            remote = f"src:{source}"
            rclone = ["rclone", "--config", str(conf), "--transfers", "4", "--checkers", "8"]
            copy_full = timed([*rclone, "copy", remote, str(work / "copy")], env)
            copy_incr = timed([*rclone, "copy", remote, str(work / "copy")], env)

            customers = work / "customers.d"
            customers.mkdir()
            (work / "keys" / "bench").mkdir(parents=True)
            ca = work / "keys" / "bench" / "ca.pem"  # key files: KEYS_DIR/<customer>/ only
            ca.write_bytes(server.ca.read_bytes())
            (customers / "bench.env").write_text(
                f'SCHEDULE="0 3 * * *"\nREPO_PASSWORD=pw\nRESOURCES=site\nSITE_TYPE=ftps\n'
                f"SITE_HOST=127.0.0.1\nSITE_PORT={server.port}\nSITE_USER={USER}\n"
                f"SITE_PASSWORD={PASSWORD}\nSITE_PATH={source}\nSITE_TLS_CA_FILE={ca}\n"
            )
            uenv = {
                **os.environ,
                "UNSTOPPABLE_CONFIG": str(work / "none.env"),
                "UNSTOPPABLE_CUSTOMERS_DIR": str(customers),
                "UNSTOPPABLE_DATA_DIR": str(work / "data"),
                "UNSTOPPABLE_SOURCE_ROOTS": str(work),
                "UNSTOPPABLE_KEYS_DIR": str(work / "keys"),
                "UNSTOPPABLE_ALLOW_PRIVATE_TARGETS": "127.0.0.0/8",
                "UNSTOPPABLE_MIN_INTERVAL": "0",
            }
            cli = [str(ROOT / ".venv" / "bin" / "unstoppable"), "backup", "bench"]
            full = timed(cli, uenv)
            before = len(server.downloads())
            incr = timed(cli, uenv)
            downloaded = len(server.downloads()) - before

            (work / "pw").write_text("pw")
            restic_like = [
                str(RUSTIC),
                "-r",
                str(work / "mirror-repo"),
                "--password-file",
                str(work / "pw"),
                "--no-progress",
                "backup",
                "--init",
                "--host",
                "bench",
                str(work / "staging"),
            ]
            mirror_full = timed([*rclone, "sync", remote, str(work / "staging")], env)
            mirror_full += timed(restic_like)
            mirror_incr = timed([*rclone, "sync", remote, str(work / "staging")], env)
            mirror_incr += timed(restic_like)
    finally:
        shutil.rmtree(source, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)

    print(f"{args.files} files, {args.mb} MB over FTPS (vsftpd, explicit TLS, passive)")
    print(f"  rclone copy:            full {copy_full:6.2f}s   unchanged {copy_incr:6.2f}s")
    print(
        f"  unstoppable backup:     full {full:6.2f}s   unchanged {incr:6.2f}s"
        f"   (files downloaded by the unchanged run: {downloaded})"
    )
    print(
        f"  mirror + rustic:        full {mirror_full:6.2f}s   unchanged {mirror_incr:6.2f}s"
        f"   (needs a full local copy of the source)"
    )
    print(f"  full: unstoppable / rclone copy = {full / copy_full:.2f}")
    print(f"  unchanged: unstoppable / rclone copy = {incr / copy_incr:.2f}")
    ok = incr / full < 0.2
    print(f"  unchanged / full = {incr / full:.3f} (goal < 0.2: {'met' if ok else 'NOT met'})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
