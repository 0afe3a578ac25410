"""The receipts commands: the key to hand to customers, and a check of what was published."""

import argparse
import sys
from datetime import UTC, datetime, timedelta

from orchestrator.commands.context import load
from orchestrator.config.customer import Customers
from orchestrator.config.settings import Settings
from orchestrator.config.settings_file import load_settings
from orchestrator.errors import RunFailed
from orchestrator.receipts.issuer import Issuer
from orchestrator.receipts.keys import public_pem, receipt_key
from orchestrator.receipts.places import FOLDER
from orchestrator.receipts.receipt_checks import report
from orchestrator.receipts.receipted import Receipted
from orchestrator.receipts.terms import terms_of
from orchestrator.receipts.verify_receipts import (
    Bucket,
    from_bucket,
    from_folder,
    held_beside,
    held_in_bucket,
)
from orchestrator.reporting.ledger import Ledger
from orchestrator.reporting.seams import RunLog
from orchestrator.reporting.store import LEDGER_ID
from orchestrator.storage.layout import bucket, job_storage

GRACE = timedelta(hours=1)  # how late a promised time may be before it is called a gap


def cmd_receipts_pubkey(args: argparse.Namespace) -> int:
    print(public_pem(receipt_key(load_settings())), end="")
    return 0


def cmd_receipts_verify(args: argparse.Namespace) -> int:
    """Check every chain of the customer's resources (or those named) where it was published."""
    settings, customers = load()
    customer = customers.get(args.customer)
    names = [customer.resource(n).name for n in args.resources] or [
        r.name for r in customer.resources
    ]
    # Read as the customer's own check reads them (verify_receipts.py): in a bucket, every
    # version of every receipt, so one hidden or written twice is seen.
    # Every snapshot a receipt names must still be in the repository, unless a prune since
    # could have forgotten it: read from the cold store, as a customer with access reads it.
    try:
        if settings.COLD_BACKEND == "s3":
            secret, token = settings.S3_SECRET_ACCESS_KEY, settings.S3_SESSION_TOKEN
            reader = Bucket(
                f"{(settings.S3_ENDPOINT or '').rstrip('/')}/{bucket(settings, customer.name)}",
                settings.S3_ACCESS_KEY_ID or "",
                secret.get_secret_value() if secret else "",
                settings.S3_REGION,
                token.get_secret_value() if token else "",
            )
            chains, tampered = from_bucket(reader)
            held = held_in_bucket(reader, names)
        else:
            folder = job_storage(settings, customer.name, FOLDER).cold
            assert folder is not None
            chains, tampered = (from_folder(folder) if folder.is_dir() else {}), {}
            held = held_beside(folder, names)
    except Exception as exc:
        raise RunFailed(f"{customer.name}: the receipts cannot be read: {exc}") from None
    chains = {name: chains.get(name, []) for name in names}
    public = receipt_key(settings, create=False).public_key()
    grace = timedelta(seconds=args.grace) if args.grace is not None else GRACE
    now = datetime.now(UTC)
    whole = report(chains, public, now, grace, sys.stdout, customer.name, tampered, held)
    return 0 if whole else 1


def receipted(settings: Settings, customers: Customers, ledger: Ledger) -> RunLog:
    """Return the ledger's run log, issuing receipts as the daemon's does (if it can)."""
    try:
        issuer = Issuer(settings, terms_of(lambda: customers))
        issuer.ledger_id = ledger.db.get_state(LEDGER_ID) or ""
        return Receipted(ledger.history, issuer)
    except Exception as exc:
        print(f"warning: receipts are off: {exc}", file=sys.stderr)
        return ledger.history
