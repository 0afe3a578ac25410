"""Checking one provider's receipts: signatures, numbers, links, promised times, coverage.

The half of the customers' check that judges; `verify_receipts.py` beside it reads the
receipts where they were published and is the command. Standard library and `cryptography`
only: customers run the two files with nothing else of ours.
"""

import base64
import contextlib
import datetime as dt
import hashlib
import json
import sys
from collections import Counter
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

UNKNOWN = "?"  # the digest after a receipt that could not be verified (already named)
Chains = dict[str, list[tuple[str, bytes]]]  # resource: its receipts (name, bytes), in order
MAX_RECEIPT = 64 * 1024  # a receipt is a few hundred bytes; anything far larger is planted
RUN_AHEAD = dt.timedelta(days=400)  # the furthest a schedule's next time may lie (a yearly one)


def canonical(value: object) -> bytes:
    """Return `value` as canonical JSON: sorted keys, no whitespace, UTF-8."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def digest(receipt: dict[str, Any]) -> str:
    """Return the SHA-256 (hex) of a receipt's canonical bytes: what the next one links to."""
    return hashlib.sha256(canonical(receipt)).hexdigest()


def opened(data: bytes) -> tuple[dict[str, Any], bytes]:
    """Return (receipt, signature) of a published receipt; ValueError if malformed."""
    if len(data) > MAX_RECEIPT:
        raise ValueError(f"larger than {MAX_RECEIPT} bytes: not a receipt")
    try:
        envelope = json.loads(data)
    except RecursionError:
        raise ValueError("nested too deeply: not a receipt") from None
    if not isinstance(envelope, dict) or not isinstance(envelope.get("receipt"), dict):
        raise ValueError("not a receipt")
    return envelope["receipt"], base64.b64decode(str(envelope.get("signature", "")), validate=True)


@dataclass(frozen=True)
class Finding:
    """What is wrong at one place of a chain."""

    name: str  # where the receipt was published (its file or object name)
    problem: str


def check(
    published: list[tuple[str, bytes]],
    public: Ed25519PublicKey,
    job: tuple[str | None, str | None] = (None, None),
) -> tuple[list[dict[str, Any]], list[Finding]]:
    """Check one job's chain, given as (name, bytes) in the order of their names.

    Return the receipts that verified, and every problem: a signature that is not this
    key's, a receipt that cannot be read, a `seq` out of order (one deleted, or moved), a
    `previous` that is not the digest of the receipt before (one edited or swapped), one of
    another customer or resource than `job` (copied from elsewhere), where given.
    """
    good: list[dict[str, Any]] = []
    problems: list[Finding] = []
    expected, previous = 0, None
    for name, data in published:
        try:
            receipt, signature = opened(data)
        except (ValueError, TypeError):
            problems.append(Finding(name, "cannot be read as a receipt"))
            expected, previous = expected + 1, UNKNOWN  # it takes its place; the next is judged
            continue
        try:
            public.verify(signature, canonical(receipt))
        except InvalidSignature:
            problems.append(Finding(name, "its signature is not this key's (forged or edited)"))
            expected, previous = expected + 1, UNKNOWN
            continue
        seq = receipt.get("seq")
        for field_, want in zip(("customer", "resource"), job, strict=True):
            if want is not None and receipt.get(field_) != want:
                problems.append(Finding(name, f"a receipt of {field_} {receipt.get(field_)!r}"))
        if not isinstance(seq, int) or seq != expected:
            why = (
                "one or more before it missing (deleted?)"
                if isinstance(seq, int) and seq > expected
                else "out of order"
            )
            problems.append(Finding(name, f"seq {seq} where {expected} was due: {why}"))
        elif previous != UNKNOWN and receipt.get("previous") != previous:
            problems.append(
                Finding(name, "does not link to the receipt before it (edited or swapped)")
            )
        good.append(receipt)
        expected = (seq if isinstance(seq, int) else expected) + 1
        previous = digest(receipt)
    return good, problems


def gaps(receipts: list[dict[str, Any]], now: dt.datetime, grace: dt.timedelta) -> list[str]:
    """Return the scheduled times a receipt promised (`next`) that no receipt accounts for.

    A time is accounted for by a receipt scheduled for it, or by a receipt of missed times
    whose range (`first` to `scheduled_for`) holds it. A time not yet `grace` old is not due.
    """
    backups = [r for r in receipts if r.get("kind") == "backup"]  # only they settle a time
    seen = {r.get("scheduled_for") for r in backups}
    missed = [r for r in backups if r.get("result") == "missed"]
    ranges = [(r.get("first"), r.get("scheduled_for")) for r in missed]
    missing = []
    for receipt in backups:
        due = receipt.get("next")
        if not isinstance(due, str) or due in seen:
            continue
        if any(isinstance(a, str) and isinstance(b, str) and a <= due <= b for a, b in ranges):
            continue
        moment = _moment(due)
        if moment is None or moment + grace > now:
            continue  # not due yet (or not a time: named by `future`)
        missing.append(due)
    return sorted(set(missing))


def future(receipts: list[dict[str, Any]], now: dt.datetime, grace: dt.timedelta) -> list[str]:
    """Return what in `receipts` names a time that is not a time, or one still to come:
    a promise pushed years ahead, or a missed range reaching past now, would settle every
    time before it without a run."""
    found = []
    for r in receipts:
        for key in ("scheduled_for", "first", "next", "started", "ended"):
            value = r.get(key)
            if value is None:
                continue
            moment = _moment(value) if isinstance(value, str) else None
            limit = now + grace + (RUN_AHEAD if key == "next" else dt.timedelta(0))
            if moment is None or moment > limit:
                found.append(f"seq {r.get('seq')}: {key} {str(value)[:40]!r} is not a past time")
    return found


def _moment(text: str) -> dt.datetime | None:
    try:
        return dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)
    except ValueError:
        return None


# A backup time the source guard refused: the source was emptied, shrank, or was out of
# bounds, and nothing it held replaced the last good state.
REFUSED = ("source_empty", "source_shrunk", "source_refused")


def unheld(receipts: list[dict[str, Any]], held: set[str]) -> list[str]:
    """Return, for each snapshot a backup receipt names that `held` (the repository's
    snapshots) lacks, why that is wrong.

    Only a prune that ran `forget` (`forgot`) can take a snapshot, and every forget keeps
    the snapshots within its `keep_within` of the newest one and the newest clean one. So a
    snapshot may be gone only after such a prune, when a clean backup between the two began
    at least `keep_within` after it did; anything else took it behind the prunes' back.
    """
    found: list[str] = []
    named: list[tuple[int, dt.datetime | None, str, str]] = []  # index, began, id, ended
    clean: list[tuple[int, dt.datetime]] = []  # each clean backup: index, when it began
    forgettable: set[int] = set()
    for index, r in enumerate(receipts):
        began = _moment(str(r.get("started")))
        if r.get("kind") == "backup":
            if isinstance(r.get("snapshot"), str) and r["snapshot"]:
                named.append((index, began, r["snapshot"], str(r.get("ended"))))
            if r.get("result") == "success" and began is not None:
                clean.append((index, began))
        elif r.get("kind") == "prune" and r.get("forgot") is True:
            within = dt.timedelta(seconds=_seconds(r.get("keep_within")))
            for at, when, _id, _end in named:
                if when is not None and any(i > at and b >= when + within for i, b in clean):
                    forgettable.add(at)
    for at, _when, snapshot, ended in named:
        if snapshot not in held and at not in forgettable:
            found.append(
                f"snapshot {snapshot[:16]} (backup ended {ended}) is not in the repository, "
                "and no prune since could have forgotten it"
            )
    return found


def _seconds(value: object) -> int:
    """Return a prune receipt's `keep_within`, in seconds (0 if it is not a count)."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def coverage(receipts: list[dict[str, Any]]) -> str:
    """Return one line of what `receipts` cover: backup times promised and what became of
    them (a missed range counts each time it covers), and the last drill."""
    tally: Counter[str] = Counter()
    for r in receipts:
        if r.get("kind") != "backup":
            continue
        count = r.get("count", 1)
        count = count if isinstance(count, int) and count > 0 else 1
        result = str(r.get("result"))
        if result == "failure" and r.get("reason") in REFUSED:
            result = "refused"
        tally[result] += count
    named = ("success", "failure", "timeout", "refused", "suspect", "skipped", "missed")
    words = {"success": "succeeded", "failure": "failed", "timeout": "timed out"}
    parts = [f"{sum(tally.values())} backup times"]
    always = ("success", "refused", "suspect", "skipped", "missed")
    parts += [f"{tally[k]} {words.get(k, k)}" for k in named if tally[k] or k in always]
    parts += [f"{n} {k}" for k, n in sorted(tally.items()) if k not in named]
    drills = [r for r in receipts if r.get("kind") == "verify"]
    last = drills[-1] if drills else {}
    at = last.get("ended") or last.get("scheduled_for")
    part = f" (slice {last['slice']})" if last.get("slice") else ""
    parts.append(f"last drill {at}: {last.get('result')}{part}" if drills else "no drill yet")
    return ", ".join(parts)


def report(
    chains: Chains,
    public: Ed25519PublicKey,
    now: dt.datetime,
    grace: dt.timedelta,
    out: Any = sys.stdout,
    customer: str | None = None,
    tampered: dict[str, list[Finding]] | None = None,
    held: dict[str, set[str] | None] | None = None,
) -> bool:
    """Print each resource's findings and coverage; return whether every chain is whole.

    Each receipt must be of `customer` (if given; else of one customer throughout) and of
    the resource its folder names. `tampered`: what the bucket's versions show, by resource.
    `held`: the snapshots each resource's repository holds (None: not known), when asked
    to check that every snapshot a receipt names is still there or could have been forgotten.
    """
    whole = True
    if not chains:
        print("no receipts found", file=out)
        return False
    if customer is None:  # the first receipt's customer: every other must be theirs too
        first = next((d for c in chains.values() for _n, d in c), b"")
        with contextlib.suppress(ValueError, TypeError):
            customer = opened(first)[0].get("customer")
    for resource, published in sorted(chains.items()):
        receipts, problems = check(published, public, (customer, resource))
        problems += (tampered or {}).get(resource, [])
        problems += [Finding(resource, said) for said in future(receipts, now, grace)]
        if held is not None:  # asked for: a repository that cannot be read is no answer
            snapshots = held.get(resource)
            if snapshots is not None:
                problems += [Finding(resource, said) for said in unheld(receipts, snapshots)]
            elif any(r.get("snapshot") for r in receipts):
                why = "the repository's snapshots/ cannot be read: its snapshots are unchecked"
                problems.append(Finding(resource, why))
        missing = gaps(receipts, now, grace)
        whole = whole and not problems and not missing
        verdict = "whole" if not problems and not missing else "BROKEN"
        said = f"{len(published)} receipts, chain {verdict}; {coverage(receipts)}"
        print(f"{resource}: {said}", file=out)
        for finding in problems:
            print(f"  {finding.name}: {finding.problem}", file=out)
        for due in missing:
            print(f"  {due}: a scheduled time a receipt promised, with no receipt", file=out)
        for r in receipts:  # accounted for, but not run: the customer should know when
            if r.get("result") == "missed":
                span = f"{r.get('first')} to {r.get('scheduled_for')}"
                print(f"  {span}: {r.get('count')} scheduled time(s) missed, not run", file=out)
    return whole
