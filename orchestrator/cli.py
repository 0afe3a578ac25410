"""The `unstoppable` command: errors become `Error: …` lines and a non-zero exit."""

import argparse
import getpass
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

from orchestrator import __version__
from orchestrator.config.customer import Customer, Customers, Resource, load_customers
from orchestrator.config.names import env_prefix
from orchestrator.config.settings import Settings, load_settings
from orchestrator.errors import ConfigError, SecretError, UnstoppableError
from orchestrator.maintenance import Maintenance
from orchestrator.model import Kind, Result, RunRecord, job_id
from orchestrator.reporting.ledger import JobStatus, Ledger
from orchestrator.runs import Jobs
from orchestrator.schedule import next_fire
from orchestrator.secrets.files import Resolver, resolver_for
from orchestrator.storage.layout import state_dir


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
    p.add_argument("--target", required=True, type=Path)
    p.add_argument("--snapshot", default="latest")
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


def _load() -> tuple[Settings, Customers]:
    settings = load_settings()
    return settings, load_customers(settings.CUSTOMERS_DIR, settings.bucket_prefix, settings.bounds)


def _jobs(settings: Settings, ledger: Ledger | None = None) -> Jobs:
    from orchestrator.runtime.docker import DockerRuntime

    ledger = ledger or Ledger(state_dir(settings))
    return Jobs(
        settings,
        DockerRuntime(),
        baseline=ledger.baseline_now,
        resolver=resolver_for(settings),
        holds=ledger,
    )


def cmd_validate(args: argparse.Namespace) -> int:
    settings, customers = _load()
    problems = list(customers.problems)
    if args.check_secrets:
        problems += _unresolved(resolver_for(settings), customers)
    for problem in problems:
        print(problem)
    total = len(customers.valid) + len(customers.invalid)
    print(
        f"{len(customers.valid)} of {total} customer file(s) in {settings.CUSTOMERS_DIR} valid",
        file=sys.stderr,
    )
    return 1 if problems else 0


def _unresolved(resolver: Resolver, customers: Customers) -> list[str]:
    """Return `path: KEY: why` for every secret reference that does not resolve."""
    problems = []
    for customer in customers.valid:
        refs = [("REPO_PASSWORD", customer.repo_password)]
        refs += [
            (env_prefix(r.name) + "PASSWORD", r.password)
            for r in customer.resources
            if r.password is not None
        ]
        for key, ref in refs:
            if ref.infisical is None:
                continue
            try:
                resolver.resolve(ref, customer.name, key)
            except SecretError as exc:
                problems.append(f"{customer.file}: {exc}")
    return problems


def cmd_jobs(args: argparse.Namespace) -> int:
    _settings, customers = _load()
    now = datetime.now(UTC)
    rows = [
        {
            "customer": c.name,
            "resource": r.name,
            "type": r.type.value,
            "schedule": r.schedule,
            "timezone": c.timezone,
            "next_run": _next_iso(_next(r.schedule, c.timezone, now, job_id(c.name, r.name))),
        }
        for c in customers.valid
        for r in c.resources
    ]
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        for row in rows:
            print(
                f"{row['customer']:<24} {row['resource']:<20} {row['type']:<6} "
                f"{row['schedule']!r:<22} {row['next_run']}"
            )
    for problem in customers.problems:
        print(f"skipped: {problem}", file=sys.stderr)
    return 0


def cmd_backup(args: argparse.Namespace) -> int:
    settings, customers = _load()
    customer = customers.get(args.customer)
    resources = [customer.resource(n) for n in args.resources] or list(customer.resources)
    ledger = Ledger(state_dir(settings))
    jobs = _jobs(settings, ledger)
    now = datetime.now(UTC).replace(microsecond=0)
    with ThreadPoolExecutor(max_workers=settings.MAX_PARALLEL) as pool:
        records = list(pool.map(lambda r: jobs.backup(customer, r, now), resources))
    for record in records:
        if record.outcome.result is Result.SKIPPED:
            ledger.record_event(record.job, "skipped", record.outcome.reason.value, now)
        else:
            ledger.record_run(record)
        print(_summary_line(record))
        jobs.ping_result(customers, record)
    jobs.pinger.drain(60)
    return 0 if all(r.outcome.result is Result.SUCCESS for r in records) else 1


def _summary_line(record: RunRecord) -> str:
    outcome = record.outcome
    seconds = (record.ended - record.started).total_seconds()
    kind = "" if record.kind is Kind.BACKUP else f" {record.kind.value}"
    head = f"{record.job}{kind}: {outcome.result.value}"
    if outcome.reason:
        head += f" ({outcome.reason.value})"
    detail = outcome.message
    if outcome.summary and outcome.result is Result.SUCCESS:
        s = outcome.summary
        detail = (
            f"snapshot {s.snapshot_id[:8]}: {s.files_new} new, {s.files_changed} changed, "
            f"{_size(s.data_added)} added of {_size(s.bytes_processed)}"
        )
        if "; " in outcome.message:  # what followed the backup: a held retention, say
            detail += "; " + outcome.message.split("; ", 1)[1]
    return f"{head}: {detail} in {seconds:.1f}s"


def _size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def cmd_snapshots(args: argparse.Namespace) -> int:
    settings, customers = _load()
    customer = customers.get(args.customer)
    snapshots = _jobs(settings).snapshots(customer, customer.resource(args.resource))
    if args.json:
        print(
            json.dumps(
                [
                    {
                        "id": s.id,
                        "time": s.time.isoformat(),
                        "host": s.host,
                        "paths": list(s.paths),
                        "tags": list(s.tags),
                    }
                    for s in snapshots
                ],
                indent=2,
            )
        )
    else:
        for s in snapshots:
            when = f"{s.time.astimezone(UTC):%Y-%m-%d %H:%M:%S}Z"
            tags = f"  [{','.join(s.tags)}]" if s.tags else ""
            print(f"{s.id[:8]}  {when}  {' '.join(s.paths)}{tags}")
        print(f"{len(snapshots)} snapshot(s)", file=sys.stderr)
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    settings, customers = _load()
    customer = customers.get(args.customer)
    _jobs(settings).restore(customer, customer.resource(args.resource), args.target, args.snapshot)
    print(
        f"{customer.name}/{args.resource}: restored {args.snapshot} into {args.target.absolute()}"
    )
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from orchestrator.daemon import Daemon
    from orchestrator.runtime.docker import DockerRuntime

    logging.getLogger().setLevel(logging.INFO)
    settings = load_settings()
    daemon = Daemon(settings, DockerRuntime(), Ledger(state_dir(settings)))
    daemon.install_signal_handlers()
    return daemon.run()


def cmd_status(args: argparse.Namespace) -> int:
    settings, customers = _load()
    ledger = {(s.customer, s.resource): s for s in Ledger(state_dir(settings)).status()}
    now = datetime.now(UTC)
    rows = []
    configured = [(c, r) for c in customers.valid for r in c.resources]
    for c, r in configured:
        s = ledger.pop((c.name, r.name), None)
        rows.append(
            _status_row(
                c.name, r.name, s, _next(r.schedule, c.timezone, now, job_id(c.name, r.name))
            )
        )
    for (customer, resource), s in sorted(ledger.items()):
        rows.append(_status_row(customer, resource, s, None))  # no longer configured
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for row in rows:
        print(
            f"{row['job']:<40} {row['result'] or 'never run':<10} {row['reason'] or '-':<18} "
            f"last success {row['last_success'] or 'never':<26} next {row['next_run'] or '-'}"
        )
    for problem in customers.problems:
        print(f"disabled: {problem}", file=sys.stderr)
    return 0


def _next(schedule: str, timezone: str, now: datetime, job: str) -> datetime | None:
    """Return the next run of a job, or None if its schedule names none."""
    try:
        return next_fire(schedule, timezone, now, job)
    except ValueError:
        return None


def _next_iso(moment: datetime | None) -> str:
    return moment.isoformat() if moment else "never"


def _status_row(
    customer: str, resource: str, s: JobStatus | None, next_run: datetime | None
) -> dict[str, object]:
    return {
        "job": job_id(customer, resource),
        "customer": customer,
        "resource": resource,
        "last_run": s.last_run.isoformat() if s and s.last_run else None,
        "result": s.result if s else None,
        "reason": s.reason if s else None,
        "message": s.message if s else None,
        "last_success": s.last_success.isoformat() if s and s.last_success else None,
        "skipped": s.skipped if s else 0,
        "missed": s.missed if s else 0,
        "next_run": next_run.isoformat() if next_run else None,
        "configured": next_run is not None,
    }


def cmd_accept(args: argparse.Namespace) -> int:
    settings, customers = _load()
    customer = customers.get(args.customer)
    resource = customer.resource(args.resource)
    who = os.environ.get("SUDO_USER") or getpass.getuser()
    job = job_id(customer.name, resource.name)
    Ledger(state_dir(settings)).accept(job, who, datetime.now(UTC))
    print(
        f"{job}: accepted by {who}: the source's recent size no longer binds it; the next "
        "backup starts a new baseline (an empty source is still refused)"
    )
    return 0


def cmd_release(args: argparse.Namespace) -> int:
    settings, customers = _load()
    customer = customers.get(args.customer)
    job = job_id(customer.name, customer.resource(args.resource).name)
    held = Ledger(state_dir(settings)).release(job)
    if held is None:
        print(f"{job}: retention was not held")
        return 0
    what = json.loads(held)
    print(
        f"{job}: retention released (held since {what['at']} after snapshot "
        f"{what['snapshot'][:8]}: {what['why']}); suspect snapshots stay, tagged and never "
        "forgotten by retention"
    )
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    return _maintain(args, lambda m, c, r, now: m.verify(c, r, now, full=args.full))


def cmd_prune(args: argparse.Namespace) -> int:
    return _maintain(args, lambda m, c, r, now: m.prune(c, r, now))


def _maintain(
    args: argparse.Namespace,
    run: Callable[[Maintenance, Customer, Resource, datetime], RunRecord],
) -> int:
    """Run one maintenance step for each resource, one after the other; exit 0 if all passed.

    Records go to the ledger like the daemon's, so status and /metrics show them.
    """
    settings, customers = _load()
    customer = customers.get(args.customer)
    resources = [customer.resource(n) for n in args.resources] or list(customer.resources)
    ledger = Ledger(state_dir(settings))
    maintenance = Maintenance(_jobs(settings, ledger), ledger)
    now = datetime.now(UTC).replace(microsecond=0)
    passed = True
    for resource in resources:
        record = run(maintenance, customer, resource, now)
        if record.outcome.result is not Result.SKIPPED:
            ledger.record_run(record)
        passed = passed and record.outcome.result is Result.SUCCESS
        print(_summary_line(record))
    return 0 if passed else 1


def cmd_check(args: argparse.Namespace) -> int:
    settings, customers = _load()
    customer = customers.get(args.customer)
    leftovers = _jobs(settings).check(customer, customer.resource(args.resource), args.read_data)
    note = (
        f" ({leftovers} unreferenced pack(s) left by interrupted runs; prune removes them)"
        if leftovers
        else ""
    )
    print(f"{customer.name}/{args.resource}: repository check clean{note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
