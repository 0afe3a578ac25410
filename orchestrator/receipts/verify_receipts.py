#!/usr/bin/env python3
"""Check a backup provider's receipts with nothing of theirs but their public key.

Each backup, prune and restore drill on your backups, and each scheduled time that did not
run, leaves a signed receipt in your own storage, chained to the one before it. This reads
them where they were published; `receipt_checks.py`, kept beside it, checks every signature
and link, names any gap, and prints what the receipts cover, resource by resource. Two
files, one dependency: `pip install cryptography`.

    python3 verify_receipts.py --key receipt-key.pub --folder /path/to/receipts
    python3 verify_receipts.py --key receipt-key.pub --bucket https://s3.example.com/acme
      (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, read-only ones, and AWS_REGION if not
      us-east-1, in the environment)

Exit 0 only when every chain is whole: every receipt signed by this key, none missing,
edited or out of order, every scheduled time a receipt promised accounted for by another.
The provider's own `unstoppable receipts verify` runs these same two files.
"""

import argparse
import datetime as dt
import functools
import hashlib
import hmac
import os
import sys
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key

try:  # inside the product's package
    from orchestrator.receipts.receipt_checks import Chains, Finding, report
except ImportError:  # a customer's copy: the two files side by side
    from receipt_checks import Chains, Finding, report  # type: ignore[no-redef,import-not-found]

Held = dict[str, set[str] | None]  # resource: the snapshot ids its repository holds

PREFIX = "receipts/"  # receipts/<resource>/<seq>.json, in the bucket or the folder above


def from_folder(folder: Path) -> Chains:
    """Return each resource's receipts (name, bytes) in a folder that holds `<resource>/`."""
    chains: Chains = {}
    for resource in sorted(p for p in folder.iterdir() if p.is_dir()):
        files = sorted(p for p in resource.iterdir() if p.name.endswith(".json"))
        chains[resource.name] = [(f"{resource.name}/{p.name}", p.read_bytes()) for p in files]
    return chains


def held_beside(folder: Path, resources: list[str]) -> Held:
    """Return the snapshots of each resource's repository kept beside the receipts folder
    (`<folder>/../<resource>/snapshots/`, a local cold store), None where there is none."""
    held: Held = {}
    for resource in resources:
        snapshots = folder.parent / resource / "snapshots"
        held[resource] = {p.name for p in snapshots.iterdir()} if snapshots.is_dir() else None
    return held


def held_in_bucket(bucket: "Bucket", resources: list[str]) -> Held:
    """Return the snapshots each resource's repository holds in the bucket
    (`<resource>/snapshots/<id>`, current versions only)."""
    held: Held = {}
    for resource in resources:
        prefix = f"{resource}/snapshots/"
        # The current version of each key (IsLatest), unless that is a delete marker; not
        # told by times, which two versions written in one second share.
        found = bucket.versions(prefix)
        held[resource] = {
            k[len(prefix) :] for k, _v, gone, _w, latest in found if latest and not gone
        }
    return held


@dataclass
class Bucket:
    """An S3 bucket read with AWS Signature Version 4 (path style), by the standard library."""

    url: str  # https://host[:port]/bucket
    access_key: str
    secret_key: str
    region: str = "us-east-1"
    session_token: str = ""  # with temporary credentials (AWS_SESSION_TOKEN)
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
        if self.session_token:
            headers["x-amz-security-token"] = self.session_token
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

    def versions(self, prefix: str) -> list[tuple[str, str, bool, str, bool]]:
        """Return (key, version id, is a delete marker, last modified, is the current one)
        of every version."""
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
                    latest = item.findtext(f"{ns}IsLatest") == "true"
                    hiding = kind == "DeleteMarker"
                    found.append((text["Key"], text["VersionId"], hiding, when, latest))
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
    for key, version, marker, when, _latest in bucket.versions(PREFIX):
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--key", required=True, type=Path, help="the provider's public key (PEM)")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--folder", type=Path, help="a folder of <resource>/ folders")
    where.add_argument("--bucket", help="https://host/bucket: receipts/ in that bucket")
    parser.add_argument("--customer", help="your name at the provider: every receipt's")
    parser.add_argument("--grace", type=int, default=3600, help="seconds a time may be late")
    parser.add_argument(
        "--snapshots",
        action="store_true",
        help="also check that each snapshot a receipt names is still in the repository "
        "(beside the receipts folder, or in the bucket), or was forgettable by a prune",
    )
    args = parser.parse_args(argv)
    public = load_pem_public_key(args.key.read_bytes())
    if not isinstance(public, Ed25519PublicKey):
        print(f"{args.key}: not an Ed25519 public key", file=sys.stderr)
        return 2
    tampered: dict[str, list[Finding]] = {}
    held: Held | None = None
    if args.folder:
        chains = from_folder(args.folder)
        if args.snapshots:
            held = held_beside(args.folder, sorted(chains))
    else:
        env = os.environ.get
        secret, region = env("AWS_SECRET_ACCESS_KEY", ""), env("AWS_REGION", "us-east-1")
        bucket = Bucket(
            args.bucket, env("AWS_ACCESS_KEY_ID", ""), secret, region, env("AWS_SESSION_TOKEN", "")
        )
        chains, tampered = from_bucket(bucket)
        if args.snapshots:
            held = held_in_bucket(bucket, sorted(chains))
    now = dt.datetime.now(dt.UTC)
    grace = dt.timedelta(seconds=args.grace)
    whole = report(chains, public, now, grace, sys.stdout, args.customer, tampered, held)
    return 0 if whole else 1


if __name__ == "__main__":
    sys.exit(main())
