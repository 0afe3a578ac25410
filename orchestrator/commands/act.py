"""The commands that act: backup, restore, run, check, accept, release, verify, prune."""

import argparse
import getpass
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

from orchestrator import rebuild, recovery, repository
from orchestrator.commands.context import (
    append_lines,
    as_of_time,
    jobs_on_runtime,
    launcher_on_runtime,
    load,
    open_runtime,
    size,
    summary_line,
)
from orchestrator.commands.receipts import receipted
from orchestrator.config.customer import Customer, Resource
from orchestrator.config.settings import Settings
from orchestrator.config.settings_file import load_settings
from orchestrator.errors import RunFailed, RuntimeUnavailable, UnstoppableError
from orchestrator.maintenance import Maintenance
from orchestrator.model import Result, RunRecord
from orchestrator.recorder import record
from orchestrator.reporting.ledger import Ledger
from orchestrator.runtime.protocol import Runtime
from orchestrator.storage.layout import bucket_lock, open_bucket, state_dir


def cmd_recover(args: argparse.Namespace) -> int:
    settings, customers = load()
    customer = customers.get(args.customer)
    resource = customer.resource(args.resource)
    moment = as_of_time(args.as_of)
    assert moment is not None  # --as-of is required
    ledger = Ledger(state_dir(settings))
    jobs = jobs_on_runtime(settings, ledger)
    done = recovery.recover(jobs.launcher, ledger.db, customer, resource, moment)
    snapshots = repository.snapshots(jobs.launcher, customer, resource)
    kept = f"; the previous one is kept at {done.previous_hot}" if done.previous_hot else ""
    print(
        f"{customer.job(resource)}: as of {moment.isoformat()}: {done.restored} object(s)"
        f" restored, {done.hidden} hidden; hot repository rebuilt{kept}; "
        f"{len(snapshots)} snapshot(s)"
    )
    return 0


def cmd_s3_provision(args: argparse.Namespace) -> int:
    settings, customers = load()
    customer = customers.get(args.customer)
    if settings.COLD_BACKEND != "s3":
        raise RunFailed("s3-provision needs UNSTOPPABLE_COLD_BACKEND=s3")
    if customer.cold_key is not None:
        raise RunFailed(
            f"{customer.file}: has COLD_S3_* keys already; remove both lines to make new ones"
        )
    store = open_bucket(settings, customer.name)
    try:
        state = store.ensure(bucket_lock(settings))
    finally:
        store.close()
    user = f"unstoppable-{customer.name}"
    from orchestrator.storage import s3_admin  # minio-py's admin client: loaded for this only

    secret = s3_admin.provision_user(
        settings.S3_ENDPOINT or "",
        settings.S3_REGION,
        settings.S3_ACCESS_KEY_ID or "",
        settings.S3_SECRET_ACCESS_KEY.get_secret_value() if settings.S3_SECRET_ACCESS_KEY else "",
        store.name,
        user,
    )
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    append_lines(
        customer.file,
        f"# unstoppable s3-provision {stamp}: the key to bucket {store.name}, and no other\n"
        f"COLD_S3_ACCESS_KEY_ID={user}\nCOLD_S3_SECRET_ACCESS_KEY={secret}\n",
    )
    print(
        f"{customer.name}: bucket {store.name} ({state.value}); user {user} reaches only it; "
        f"its key is in {customer.file}"
    )
    return 0


def cmd_backup(args: argparse.Namespace) -> int:
    settings, customers = load()
    customer = customers.get(args.customer)
    resources = [customer.resource(n) for n in args.resources] or list(customer.resources)
    ledger = Ledger(state_dir(settings))
    jobs = jobs_on_runtime(settings, ledger)
    now = datetime.now(UTC).replace(microsecond=0)
    with ThreadPoolExecutor(max_workers=settings.MAX_PARALLEL) as pool:
        records = list(pool.map(lambda r: jobs.backup(customer, r, now), resources))
    log = receipted(settings, customers, ledger)
    for run in records:
        record(log, run)
        print(summary_line(run))
        jobs.pinger.result(customers, run)
    jobs.pinger.drain(60)
    return 0 if all(r.outcome.result is Result.SUCCESS for r in records) else 1


def cmd_run(args: argparse.Namespace) -> int:
    from orchestrator.daemon import Daemon

    logging.getLogger().setLevel(logging.INFO)
    settings = load_settings()
    runtime = patient_runtime(settings)
    if runtime is None:
        return 0  # stopped while it waited
    daemon = Daemon(settings, runtime, Ledger(state_dir(settings)))
    daemon.install_signal_handlers()
    return daemon.run()


ENGINE_WAIT = 5.0  # seconds between two attempts to reach a Docker engine that is away


def patient_runtime(settings: Settings) -> Runtime | None:
    """Return the runtime once its engine answers: a daemon started before Docker (a boot,
    an engine restarting) waits for it, asking every ENGINE_WAIT s, instead of exiting;
    None if SIGTERM came first."""
    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        waited = False
        while not stop.is_set():
            try:
                return open_runtime(settings)
            except RuntimeUnavailable as exc:
                if not waited:
                    logging.getLogger(__name__).error("%s; waiting for it", exc)
                waited = True
                stop.wait(ENGINE_WAIT)
        return None
    finally:
        signal.signal(signal.SIGTERM, previous)


def cmd_accept(args: argparse.Namespace) -> int:
    settings, customers = load()
    customer = customers.get(args.customer)
    resource = customer.resource(args.resource)
    who = os.environ.get("SUDO_USER") or getpass.getuser()
    job = customer.job(resource)
    Ledger(state_dir(settings)).memory.accept(job, who, datetime.now(UTC))
    print(
        f"{job}: accepted by {who}: the source's recent size no longer binds it; the next "
        "backup starts a new baseline (an empty source is still refused)"
    )
    return 0


def cmd_release(args: argparse.Namespace) -> int:
    settings, customers = load()
    customer = customers.get(args.customer)
    job = customer.job(customer.resource(args.resource))
    held = Ledger(state_dir(settings)).memory.release(job)
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
    settings, customers = load()
    customer = customers.get(args.customer)
    resources = [customer.resource(n) for n in args.resources] or list(customer.resources)
    ledger = Ledger(state_dir(settings))
    maintenance = Maintenance(jobs_on_runtime(settings, ledger).launcher, ledger)
    now = datetime.now(UTC).replace(microsecond=0)
    passed = True
    log = receipted(settings, customers, ledger)
    for resource in resources:
        finished = run(maintenance, customer, resource, now)
        record(log, finished)
        passed = passed and finished.outcome.result is Result.SUCCESS
        print(summary_line(finished))
    return 0 if passed else 1


def cmd_check(args: argparse.Namespace) -> int:
    settings, customers = load()
    customer = customers.get(args.customer)
    resource = customer.resource(args.resource)
    launcher = launcher_on_runtime(settings)
    leftovers = repository.check(launcher, customer, resource, args.read_data)
    note = (
        f" ({leftovers} unreferenced pack(s) left by interrupted runs: no snapshot needs "
        "them, and prune removes those the cold repository holds)"
        if leftovers
        else ""
    )
    print(f"{customer.job(resource)}: repository check clean{note}")
    return 0


def cmd_rebuild(args: argparse.Namespace) -> int:
    """Rebuild every job of the named customers (all valid ones by default); one failing job
    never stops the others, and the exit is 0 only if every one was rebuilt."""
    settings, customers = load()
    chosen = [customers.get(name) for name in args.customers] or list(customers.valid)
    ledger = Ledger(state_dir(settings))
    launcher = launcher_on_runtime(settings)
    failed = 0
    for customer in chosen:
        for resource in customer.resources:
            job = customer.job(resource)
            try:
                done = rebuild.rebuild(launcher, ledger, customer, resource)
            except (UnstoppableError, OSError) as exc:  # this job's problem; the rest go on
                failed += 1
                print(f"{job}: not rebuilt: {exc}", file=sys.stderr)
                continue
            hot = "hot repository rebuilt" if done.built else "hot repository present, kept"
            newest = done.newest
            if newest is None:
                print(f"{job}: {hot}; {done.snapshots} snapshot(s), none clean yet")
                continue
            floor = ledger.memory.baseline_now(job)
            base = f"{floor.files} file(s), {size(floor.bytes)}" if floor else "none"
            told = "" if done.remembered else " (the ledger knew the job already)"
            print(
                f"{job}: {hot}; {done.snapshots} snapshot(s), the newest clean "
                f"{newest.id[:8]} of {newest.time.astimezone(UTC):%Y-%m-%d %H:%M:%S}Z; the "
                f"source guard's baseline: {base}{told}"
            )
    print(f"{len(chosen)} customer(s); {failed} job(s) not rebuilt", file=sys.stderr)
    return 1 if failed else 0
