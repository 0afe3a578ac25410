"""The restore command: into a folder, as an archive, or back to the source."""

import argparse
import json
import signal
import sys
import time

from orchestrator import archive, repository, to_source
from orchestrator.browse import select
from orchestrator.commands.context import launcher_on_runtime, load, size
from orchestrator.commands.progress import Progress
from orchestrator.config.customer import Customer, Resource
from orchestrator.errors import RunFailed
from orchestrator.launcher import Launcher

ANNOUNCED_SHOWN = 50  # live files an --overwrite names on the terminal (--json: all)


def cmd_restore(args: argparse.Namespace) -> int:
    # A closed terminal or a kill ends a restore the way Ctrl-C does: its cleanup runs (its
    # private copy removed, its worker stopped).
    for signum in (signal.SIGHUP, signal.SIGTERM):
        signal.signal(signum, _interrupted)
    settings, customers = load()
    customer = customers.get(args.customer)
    resource = customer.resource(args.resource)
    if not args.to_source and (args.into is not None or args.overwrite):
        raise RunFailed("restore: --into and --overwrite go with --to-source")
    if [args.target is not None, args.archive is not None, args.to_source].count(True) != 1:
        raise RunFailed("restore: give one of --target DIR, --archive FILE.tar[.gz] or --to-source")
    piped = args.archive is not None and str(args.archive) == "-"
    if piped and sys.stdout.isatty():
        raise RunFailed("--archive -: stdout is a terminal; send it to a file or a pipe")
    if piped and args.json:
        raise RunFailed("--archive -: the archive is stdout; --json cannot be there too")
    launcher = launcher_on_runtime(settings)
    only = tuple(args.path or ())
    job = str(customer.job(resource))
    progress = Progress(job)
    started = time.monotonic()
    if args.to_source:
        return _to_source(args, launcher, customer, resource, only, progress)
    snapshot = args.snapshot
    if sys.stderr.isatty() and not only:  # what the whole snapshot holds: a line with an end
        (chosen,) = select(
            launcher, customer, resource, (repository.snapshot_selector(snapshot), None)
        )
        snapshot = chosen.id
        if chosen.summary is not None:
            progress.expect(chosen.summary.files_total or None, chosen.summary.bytes_processed)
    if piped:
        out = sys.stdout.buffer
        written = archive.stream(launcher, customer, resource, out, snapshot, only, progress)
        out.flush()
        print(f"{job}: {args.snapshot}{_what(only)} written to stdout: {size(written)}"
              f"{_took(started, written)}", file=sys.stderr)  # fmt: skip
        return 0
    if args.archive is not None:
        written = archive.archive(
            launcher, customer, resource, args.archive, snapshot, only, progress
        )
        where = str(args.archive.absolute())
        if args.json:
            print(json.dumps({"job": job, "snapshot": args.snapshot, "paths": list(only),
                              "archive": where, "bytes": written}))  # fmt: skip
            return 0
        print(f"{job}: {args.snapshot}{_what(only)} written to {where}: {size(written)}"
              f"{_took(started, written)}")  # fmt: skip
        return 0
    files, total = repository.restore(
        launcher, customer, resource, args.target, snapshot, only, watch=progress
    )
    where = str(args.target.absolute())
    if args.json:
        print(json.dumps({"job": job, "snapshot": args.snapshot, "paths": list(only),
                          "target": where, "files": files, "bytes": total}))  # fmt: skip
        return 0
    print(f"{job}: restored {args.snapshot}{_what(only)} into {where}: {files} file(s), "
          f"{size(total)}{_took(started, total)}")  # fmt: skip
    return 0


def _shown(name: str) -> str:
    """Return a customer's file name fit for a terminal: as it is, or quoted if it holds
    a control character (a line break, an escape sequence)."""
    return name if name.isprintable() else repr(name)


def _interrupted(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def _took(started: float, done: int) -> str:
    seconds = max(time.monotonic() - started, 0.001)
    return f" in {seconds:.1f} s ({size(int(done / seconds))}/s)"


def _to_source(
    args: argparse.Namespace,
    launcher: Launcher,
    customer: Customer,
    resource: Resource,
    only: tuple[str, ...],
    progress: Progress,
) -> int:
    """Restore back to the source; exit 1 if a file could not be put there, naming it."""
    job = customer.job(resource)

    def announce(where: str, files: tuple[str, ...]) -> None:
        print(f"{job}: --overwrite: {len(files)} live file(s) in {where} will be replaced"
              + (":" if files else ""), file=sys.stderr)  # fmt: skip
        for name in files[:ANNOUNCED_SHOWN]:
            print(f"  {_shown(name)}", file=sys.stderr)
        if len(files) > ANNOUNCED_SHOWN:
            print(f"  … and {len(files) - ANNOUNCED_SHOWN} more (--json lists all)",
                  file=sys.stderr)  # fmt: skip

    done = to_source.to_source(
        launcher, customer, resource, args.snapshot, only, args.into, args.overwrite, announce,
        progress,
    )  # fmt: skip
    if args.json:
        print(json.dumps({"job": str(job), "snapshot": done.snapshot, "paths": list(only),
                          "destination": done.destination, "files": done.files,
                          "bytes": done.bytes, "replaced": list(done.replaced),
                          "not_written": list(done.not_written)}))  # fmt: skip
    else:
        replaced = f", {len(done.replaced)} live file(s) replaced" if args.overwrite else ""
        print(
            f"{job}: restored {done.snapshot[:8]}{_what(only)} to {done.destination}: "
            f"{done.files} file(s), {size(done.bytes)}{replaced}"
        )
    if done.not_written:
        names = [_shown(name) for name in done.not_written[:20]]
        shown = ", ".join(names) + (" …" if len(done.not_written) > 20 else "")
        print(
            f"{job}: not written: {len(done.not_written)} symlink(s) or special file(s), "
            f"which rclone cannot make on the server: {shown}",
            file=sys.stderr,
        )
        return 1
    return 0


def _what(only: tuple[str, ...]) -> str:
    return f" ({', '.join(only)})" if only else ""
