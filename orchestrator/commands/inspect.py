"""The commands that look: validate, jobs, snapshots, status."""

import argparse
import json
import sys
from datetime import UTC, datetime

from orchestrator import repository
from orchestrator.commands.context import launcher_on_runtime, load
from orchestrator.config.customer import Customers
from orchestrator.errors import SecretError
from orchestrator.model import JobKey, Work
from orchestrator.reporting.history import JobStatus
from orchestrator.reporting.ledger import Ledger
from orchestrator.schedule import next_fire
from orchestrator.secrets.files import Resolver, resolver_for
from orchestrator.storage.layout import state_dir


def cmd_validate(args: argparse.Namespace) -> int:
    settings, customers = load()
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
        for key, ref in customer.secret_refs():
            if ref.infisical is None:
                continue
            try:
                resolver.resolve(ref, customer.name, key)
            except SecretError as exc:
                problems.append(f"{customer.file}: {exc}")
    return problems


def cmd_jobs(args: argparse.Namespace) -> int:
    _settings, customers = load()
    now = datetime.now(UTC)
    rows = [
        {
            "customer": c.name,
            "resource": r.name,
            "type": r.type.value,
            "schedule": r.schedule,
            "timezone": c.timezone,
            "next_run": _next_iso(_next(r.schedule, c.timezone, now, c.job(r))),
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


def cmd_snapshots(args: argparse.Namespace) -> int:
    settings, customers = load()
    customer = customers.get(args.customer)
    snapshots = repository.snapshots(
        launcher_on_runtime(settings), customer, customer.resource(args.resource)
    )
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


def cmd_status(args: argparse.Namespace) -> int:
    settings, customers = load()
    ledger = {s.job: s for s in Ledger(state_dir(settings)).history.status()}
    now = datetime.now(UTC)
    rows = []
    configured = [(c, r) for c in customers.valid for r in c.resources]
    for c, r in configured:
        s = ledger.pop(c.job(r), None)
        rows.append(_status_row(c.job(r), s, _next(r.schedule, c.timezone, now, c.job(r))))
    for job, s in sorted(ledger.items()):
        rows.append(_status_row(job, s, None))  # no longer configured
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


def _next(schedule: str, timezone: str, now: datetime, job: JobKey) -> datetime | None:
    """Return the next backup of a job, or None if its schedule names none."""
    try:
        return next_fire(schedule, timezone, now, str(Work(job)))
    except ValueError:
        return None


def _next_iso(moment: datetime | None) -> str:
    return moment.isoformat() if moment else "never"


def _status_row(job: JobKey, s: JobStatus | None, next_run: datetime | None) -> dict[str, object]:
    return {
        "job": str(job),
        "customer": job.customer,
        "resource": job.resource,
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
