"""Receipts: one signed statement for each piece of work of a job, chained by hashes.

A receipt is canonical JSON (keys sorted, no spaces, UTF-8): who, what, when, how it ended,
which snapshot, and `previous`, the SHA-256 of the job's receipt before it (none for the
first), with `seq` counting from 0. It is published inside an envelope that adds the
Ed25519 signature of those exact bytes and the signing key's id. Deleting, reordering,
editing or forging one breaks a link, the count or a signature: `check` names which.

Checking is `receipt_checks.py`'s: customers run it (with `verify_receipts.py`) with
nothing of ours but the public key, and the product's own `receipts verify` runs it too.
"""

import base64
import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from orchestrator.receipts.receipt_checks import canonical

FORMAT = 1


def key_id(public: Ed25519PublicKey) -> str:
    """Return a short name of `public`: the first 16 hex digits of its raw bytes' SHA-256."""
    raw = public.public_bytes(Encoding.Raw, PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def when(moment: datetime | None) -> str | None:
    """Return `moment` as receipts write it: UTC, to the second, with a Z."""
    if moment is None:
        return None
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Head:
    """The newest receipt of a job: the next one's `seq` and `previous`."""

    seq: int
    digest: str

    def following(self) -> tuple[int, str | None]:
        return self.seq + 1, self.digest


FIRST = (0, None)  # the `seq` and `previous` of a job's first receipt


def seal(fields: dict[str, Any], seq: int, previous: str | None, key: Ed25519PrivateKey) -> bytes:
    """Return the published form of a receipt of `fields`, linked after `previous`."""
    receipt = {**fields, "v": FORMAT, "seq": seq, "previous": previous}
    signature = key.sign(canonical(receipt))
    envelope = {
        "receipt": receipt,
        "signature": base64.b64encode(signature).decode(),
        "key": key_id(key.public_key()),
    }
    return canonical(envelope) + b"\n"
