"""The commands that look: validate, jobs, snapshots, status."""

import argparse
import json
import sys
from datetime import UTC, datetime

from orchestrator import repository
from orchestrator.commands.context import launcher_on_runtime, load
from orchestrator.config.customer import Customers
from orchestrator.errors import SecretError
from orchestrator.reporting.ledger import Ledger
from orchestrator.secrets.files import Resolver, resolver_for
from orchestrator.status.facts import JobFacts, gather, next_run
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
            "next_run": _iso(next_run(r.schedule, c.timezone, now, c.job(r))) or "never",
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
    now = datetime.now(UTC)
    rows = [_status_row(f) for f in gather(settings, Ledger(state_dir(settings)), customers, now)]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for row in rows:
        drill = f"{row['last_drill'] or 'never'} {row['drill_result'] or ''}".strip()
        print(
            f"{row['job']:<40} {row['health']:<12} {row['result'] or 'never run':<10} "
            f"{row['reason'] or '-':<18} last success {row['last_success'] or 'never':<26} "
            f"drill {drill:<34} next {row['next_run'] or '-'}"
        )
    for problem in customers.problems:
        print(f"disabled: {problem}", file=sys.stderr)
    return 0


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def _status_row(f: JobFacts) -> dict[str, object]:
    """Return one job's status as `status --json` prints it."""
    s, job = f.status, f.job
    return {
        "job": str(job),
        "customer": job.customer,
        "resource": job.resource,
        "health": f.health.value,  # the worst known: corrupt, failing, suspect, held, ...
        "last_run": _iso(s.last_run if s else None),
        "result": s.result if s else None,
        "reason": s.reason if s else None,
        "message": s.message if s else None,
        "last_success": _iso(s.last_success if s else None),
        "skipped": s.skipped if s else 0,
        "missed": s.missed if s else 0,
        "next_run": _iso(f.next_run),
        "configured": f.configured,
        "last_drill": _iso(f.drill.ended if f.drill else None),
        "drill_result": f.drill.result if f.drill else None,
        "drill_reason": f.drill.reason if f.drill else None,
        "last_clean_drill": _iso(f.last_clean_drill),
        "damage": f.damage,
        "hold": f.hold,
        "receipt_seq": f.receipts.seq,
        "receipt_digest": f.receipts.digest,
        "receipts_waiting": f.receipts.waiting,
    }
