#!/usr/bin/env python3
"""Check a backup provider's receipts with nothing of theirs but their public key.

Each backup, prune and restore drill on your backups, and each scheduled time that did not
run, leaves a signed receipt in your own storage, chained to the one before it. This checks
every signature and link where they were published, names any gap, and prints what the
receipts cover, resource by resource. One dependency: `pip install cryptography`.

    python3 verify_receipts.py --key receipt-key.pub --folder /path/to/receipts
    python3 verify_receipts.py --key receipt-key.pub --bucket https://s3.example.com/acme
      (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, read-only ones, and AWS_REGION if not
      us-east-1, in the environment)

Exit 0 only when every chain is whole: every receipt signed by this key, none missing,
edited or out of order, every scheduled time a receipt promised accounted for by another.
The provider's own `unstoppable receipts verify` runs this same file.
"""

import argparse
import base64
import contextlib
import datetime as dt
import functools
import hashlib
import hmac
import json
import os
import sys
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key

PREFIX = "receipts/"  # receipts/<resource>/<seq>.json, in the bucket or the folder above
UNKNOWN = "?"  # the digest after a receipt that could not be verified (already named)
Chains = dict[str, list[tuple[str, bytes]]]  # resource: its receipts (name, bytes), in order
RUN_AHEAD = dt.timedelta(days=400)  # the furthest a schedule's next time may lie (a yearly one)


def canonical(value: object) -> bytes:
    """Return `value` as canonical JSON: sorted keys, no whitespace, UTF-8."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def digest(receipt: dict[str, Any]) -> str:
    """Return the SHA-256 (hex) of a receipt's canonical bytes: what the next one links to."""
    return hashlib.sha256(canonical(receipt)).hexdigest()


def opened(data: bytes) -> tuple[dict[str, Any], bytes]:
    """Return (receipt, signature) of a published receipt; ValueError if malformed."""
    envelope = json.loads(data)
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


def coverage(receipts: list[dict[str, Any]]) -> str:
    """Return one line of what `receipts` cover: backups by result, the last drill."""
    backups = Counter(str(r.get("result")) for r in receipts if r.get("kind") == "backup")
    drills = [r for r in receipts if r.get("kind") == "verify"]
    parts = [f"{sum(backups.values())} backup times"]
    parts += [f"{n} {result}" for result, n in sorted(backups.items())]
    last = drills[-1] if drills else {}
    at = last.get("ended") or last.get("scheduled_for")
    parts.append(f"last drill {at}: {last.get('result')}" if drills else "no drill yet")
    return ", ".join(parts)


def from_folder(folder: Path) -> Chains:
    """Return each resource's receipts (name, bytes) in a folder that holds `<resource>/`."""
    chains: Chains = {}
    for resource in sorted(p for p in folder.iterdir() if p.is_dir()):
        files = sorted(p for p in resource.iterdir() if p.name.endswith(".json"))
        chains[resource.name] = [(f"{resource.name}/{p.name}", p.read_bytes()) for p in files]
    return chains


@dataclass
class Bucket:
    """An S3 bucket read with AWS Signature Version 4 (path style), by the standard library."""

    url: str  # https://host[:port]/bucket
    access_key: str
    secret_key: str
    region: str = "us-east-1"
    parts: urllib.parse.SplitResult = field(init=False)

    def __post_init__(self) -> None:
        self.parts = urllib.parse.urlsplit(self.url.rstrip("/"))

    def get(self, key: str = "", query: dict[str, str] | None = None) -> bytes:
        path = self.parts.path + ("/" + urllib.parse.quote(key) if key else "")
        quote = functools.partial(urllib.parse.quote, safe="")
        qs = "&".join(f"{quote(k)}={quote(v)}" for k, v in sorted((query or {}).items()))
        now = dt.datetime.now(dt.UTC)
        stamp, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
        payload = hashlib.sha256(b"").hexdigest()
        headers = {"host": self.parts.netloc, "x-amz-content-sha256": payload, "x-amz-date": stamp}
        signed = ";".join(sorted(headers))
        lines = ["GET", path or "/", qs, *(f"{k}:{v}" for k, v in sorted(headers.items()))]
        request = "\n".join([*lines, "", signed, payload]).encode()
        scope = f"{day}/{self.region}/s3/aws4_request"
        hashed = hashlib.sha256(request).hexdigest()
        to_sign = "\n".join(["AWS4-HMAC-SHA256", stamp, scope, hashed])
        signing = ("AWS4" + self.secret_key).encode()
        for part in (day, self.region, "s3", "aws4_request"):
            signing = hmac.new(signing, part.encode(), hashlib.sha256).digest()
        signature = hmac.new(signing, to_sign.encode(), hashlib.sha256).hexdigest()
        headers["authorization"] = (
            f"AWS4-HMAC-SHA256 Credential={self.access_key}/{scope}, "
            f"SignedHeaders={signed}, Signature={signature}"
        )
        url = f"{self.parts.scheme}://{self.parts.netloc}{path}" + (f"?{qs}" if qs else "")
        asked = urllib.request.Request(url, headers=headers)
        with urllib.request.urlopen(asked, timeout=60) as answer:
            return bytes(answer.read())

    def versions(self, prefix: str) -> list[tuple[str, str, bool, str]]:
        """Return (key, version id, is a delete marker, last modified) of every version."""
        found, marker = [], {"key-marker": "", "version-id-marker": ""}
        while True:
            query = {"versions": "", "prefix": prefix, **{k: v for k, v in marker.items() if v}}
            root = ET.fromstring(self.get("", query))
            ns = root.tag[: root.tag.index("}") + 1] if root.tag.startswith("{") else ""
            for item in root:
                kind = item.tag[len(ns) :]
                if kind in ("Version", "DeleteMarker"):
                    text = {f: item.findtext(f"{ns}{f}") or "" for f in ("Key", "VersionId")}
                    when = item.findtext(f"{ns}LastModified") or ""
                    found.append((text["Key"], text["VersionId"], kind == "DeleteMarker", when))
            if root.findtext(f"{ns}IsTruncated") != "true":
                return found
            marker = {
                "key-marker": root.findtext(f"{ns}NextKeyMarker") or "",
                "version-id-marker": root.findtext(f"{ns}NextVersionIdMarker") or "",
            }


def from_bucket(bucket: Bucket) -> tuple[Chains, dict[str, list[Finding]]]:
    """Return each resource's receipts under receipts/ in `bucket`, and what its versions
    show: a receipt hidden behind a delete marker, or written more than once (the first
    version written is the one checked)."""
    chains: Chains = {}
    tampered: dict[str, list[Finding]] = {}
    by_key: dict[str, list[tuple[str, bool, str]]] = {}
    for key, version, marker, when in bucket.versions(PREFIX):
        by_key.setdefault(key, []).append((when, marker, version))
    for key, versions in sorted(by_key.items()):
        parts = key[len(PREFIX) :].split("/")
        if len(parts) != 2 or not parts[1].endswith(".json"):
            continue
        written = sorted(v for v in versions if not v[1])
        said = tampered.setdefault(parts[0], [])
        if any(v[1] for v in versions):
            said.append(Finding(key, "hidden behind a delete marker (someone deleted it)"))
        if len(written) > 1:
            said.append(Finding(key, f"written {len(written)} times: the first is checked"))
        if written:
            data = bucket.get(key, {"versionId": written[0][2]})
            chains.setdefault(parts[0], []).append((key, data))
    return chains, tampered


def report(
    chains: Chains,
    public: Ed25519PublicKey,
    now: dt.datetime,
    grace: dt.timedelta,
    out: Any = sys.stdout,
    customer: str | None = None,
    tampered: dict[str, list[Finding]] | None = None,
) -> bool:
    """Print each resource's findings and coverage; return whether every chain is whole.

    Each receipt must be of `customer` (if given; else of one customer throughout) and of
    the resource its folder names. `tampered`: what the bucket's versions show, by resource.
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--key", required=True, type=Path, help="the provider's public key (PEM)")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--folder", type=Path, help="a folder of <resource>/ folders")
    where.add_argument("--bucket", help="https://host/bucket: receipts/ in that bucket")
    parser.add_argument("--customer", help="your name at the provider: every receipt's")
    parser.add_argument("--grace", type=int, default=3600, help="seconds a time may be late")
    args = parser.parse_args(argv)
    public = load_pem_public_key(args.key.read_bytes())
    if not isinstance(public, Ed25519PublicKey):
        print(f"{args.key}: not an Ed25519 public key", file=sys.stderr)
        return 2
    tampered: dict[str, list[Finding]] = {}
    if args.folder:
        chains = from_folder(args.folder)
    else:
        env = os.environ.get
        secret, region = env("AWS_SECRET_ACCESS_KEY", ""), env("AWS_REGION", "us-east-1")
        bucket = Bucket(args.bucket, env("AWS_ACCESS_KEY_ID", ""), secret, region)
        chains, tampered = from_bucket(bucket)
    now = dt.datetime.now(dt.UTC)
    grace = dt.timedelta(seconds=args.grace)
    whole = report(chains, public, now, grace, sys.stdout, args.customer, tampered)
    return 0 if whole else 1


if __name__ == "__main__":
    sys.exit(main())
