"""The `unstoppable` command: errors become `Error: …` lines and a non-zero exit."""

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from orchestrator import __version__
from orchestrator.commands.act import (
    cmd_accept,
    cmd_backup,
    cmd_check,
    cmd_prune,
    cmd_rebuild,
    cmd_recover,
    cmd_release,
    cmd_run,
    cmd_s3_provision,
    cmd_verify,
)
from orchestrator.commands.browse import cmd_diff, cmd_find, cmd_ls
from orchestrator.commands.inspect import cmd_jobs, cmd_snapshots, cmd_status, cmd_validate
from orchestrator.commands.receipts import cmd_receipts_pubkey, cmd_receipts_verify
from orchestrator.commands.restore import cmd_restore
from orchestrator.errors import ConfigError, UnstoppableError


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    try:
        code: int = args.func(args)
        return code
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"Error: {problem}", file=sys.stderr)
        return 1
    except UnstoppableError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="unstoppable", description=__doc__)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(required=True, metavar="COMMAND")

    def command(
        name: str, func: Callable[[argparse.Namespace], int], text: str
    ) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=text, description=text)
        p.set_defaults(func=func)
        return p

    p = command("validate", cmd_validate, "check every customer file; one line per problem")
    p.add_argument(
        "--check-secrets", action="store_true", help="also resolve every infisical: reference"
    )
    p = command("jobs", cmd_jobs, "list every customer × resource with its next run")
    p.add_argument("--json", action="store_true")
    p = command("backup", cmd_backup, "back up a customer's resources now and wait")
    p.add_argument("customer")
    p.add_argument("resources", nargs="*", metavar="RESOURCE")
    p = command("snapshots", cmd_snapshots, "list a resource's snapshots")
    p.add_argument("customer")
    p.add_argument("resource")
    p.add_argument("--json", action="store_true")
    p = command("restore", cmd_restore, "restore a snapshot into an empty or new directory")
    p.add_argument("customer")
    p.add_argument("resource")
    p.add_argument("--target", type=Path, help="an empty or new directory to restore into")
    p.add_argument(
        "--archive", type=Path, help="instead, one tar archive: FILE.tar, or FILE.tar.gz"
    )
    p.add_argument(
        "--to-source",
        action="store_true",
        help="instead, back to the source: a new folder restored-<id>-<time> under its PATH",
    )
    p.add_argument("--into", metavar="SUBDIR", help="with --to-source: this folder under PATH")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="with --to-source: write over live files (it says first which ones)",
    )
    p.add_argument("--snapshot", default="latest")
    p.add_argument(
        "--path",
        action="append",
        metavar="PATH",
        help="only this file, folder or glob (relative to the resource's root); repeatable",
    )
    p.add_argument("--json", action="store_true", help="the result as one JSON object")
    p = command("receipts", None, "signed receipts of every piece of work")  # type: ignore[arg-type]
    under = p.add_subparsers(required=True, metavar="ACTION")
    q = under.add_parser("pubkey", help="print the public key customers verify receipts with")
    q.set_defaults(func=cmd_receipts_pubkey)
    q = under.add_parser(
        "verify", help="check the published receipt chains: signatures, links, gaps"
    )
    q.add_argument("customer")
    q.add_argument("resources", nargs="*", metavar="RESOURCE")
    q.add_argument(
        "--grace", type=int, default=None, help="seconds a promised time may be late (3600)"
    )
    q.set_defaults(func=cmd_receipts_verify)
    p = command(
        "rebuild",
        cmd_rebuild,
        "the server lost: every hot repository and the ledger's view "
        "of each job, from the cold repositories",
    )
    p.add_argument("customers", nargs="*", metavar="CUSTOMER")
    p = command("ls", cmd_ls, "list what a snapshot holds, under PATH")
    p.add_argument("customer")
    p.add_argument("resource")
    p.add_argument("path", nargs="?", default="", metavar="PATH")
    p.add_argument("--snapshot", default=None, help="an id (or its prefix); default latest")
    p.add_argument("--as-of", default=None, help="the newest snapshot at or before this time")
    p.add_argument("--json", action="store_true")
    p = command(
        "find", cmd_find, "a file's history: every snapshot holding a path matching PATTERN"
    )
    p.add_argument("customer")
    p.add_argument("resource")
    p.add_argument("pattern", metavar="PATTERN")
    p.add_argument("--json", action="store_true")
    p = command("diff", cmd_diff, "what was added, removed or changed from snapshot A to B")
    p.add_argument("customer")
    p.add_argument("resource")
    p.add_argument("old", metavar="A")
    p.add_argument("new", metavar="B")
    p.add_argument("--json", action="store_true")
    command("run", cmd_run, "the daemon: back up every job on its schedule")
    p = command("status", cmd_status, "per job: last run, result, reason, last success, next run")
    p.add_argument("--json", action="store_true")
    p = command(
        "accept",
        cmd_accept,
        "confirm that a resource's source shrank on purpose: its next backup starts a new baseline",
    )
    p.add_argument("customer")
    p.add_argument("resource")
    p = command("release", cmd_release, "lift a resource's retention hold after a suspect snapshot")
    p.add_argument("customer")
    p.add_argument("resource")
    p = command(
        "recover",
        cmd_recover,
        "make a resource's bucket read as it was at a moment, and rebuild its hot repository",
    )
    p.add_argument("customer")
    p.add_argument("resource")
    p.add_argument("--as-of", required=True, metavar="TIME", help="ISO 8601, with its zone")
    p = command(
        "s3-provision",
        cmd_s3_provision,
        "MinIO: the customer's locked bucket, and a key that reaches it alone, in its file",
    )
    p.add_argument("customer")
    p = command("check", cmd_check, "verify a resource's repository with rustic check")
    p.add_argument("customer")
    p.add_argument("resource")
    p.add_argument("--read-data", action="store_true", help="also read and verify every data pack")
    p = command("verify", cmd_verify, "run a restore drill now: read packs, restore and compare")
    p.add_argument("customer")
    p.add_argument("resources", nargs="*", metavar="RESOURCE")
    p.add_argument("--full", action="store_true", help="read every pack, not the next slice")
    p = command("prune", cmd_prune, "apply retention now: forget by KEEP_*, then prune")
    p.add_argument("customer")
    p.add_argument("resources", nargs="*", metavar="RESOURCE")
    return parser


if __name__ == "__main__":
    sys.exit(main())
