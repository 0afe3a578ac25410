"""Object lock: what a taken-over server can do to a locked bucket, and what `recover` undoes.

Each test runs against MinIO and versitygw. The attacker holds exactly what the backup server
holds: the orchestrator's own S3 key (MinIO's root; a versitygw `userplus` account) and the hot
repositories on its disk. On versitygw the store's root key is tried as well.
"""

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from orchestrator.storage.s3 import Bucket
from orchestrator.storage.s3_values import Lock
from orchestrator.storage.versions import live as live_objects
from tests.conftest import Site
from tests.test_receipts import VERIFIER
from tests.test_remote import contents
from tests.test_s3 import S3Server, local_customer, minio, restic, s3_site
from tests.versitygw import Versitygw, versitygw_server

__all__ = ["minio"]  # the module-scoped MinIO of test_s3, shared here
pytestmark = pytest.mark.docker


@pytest.fixture(scope="module", params=["minio", "versitygw"])
def store(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[S3Server]:
    if request.param == "minio":
        yield request.getfixturevalue("minio")
    else:
        with versitygw_server(tmp_path_factory.mktemp("versitygw")) as server:
            yield server


def attackers(store: S3Server) -> list[Any]:
    """The keys an attacker on the backup server tries: the server's, and the store's root."""
    clients = [store.client()]
    if isinstance(store, Versitygw):
        clients.append(store.root())
    return clients


def refused(move: Callable[..., object], **arguments: object) -> bool:
    """Return whether the store refused `move(**arguments)`."""
    try:
        move(**arguments)
    except ClientError:
        return True
    return False


def versions(client: object, bucket: str, prefix: str) -> tuple[list[dict], list[dict]]:
    """Return (versions, delete markers) under `prefix`."""
    found: tuple[list[dict], list[dict]] = ([], [])
    for page in client.get_paginator("list_object_versions").paginate(  # type: ignore[attr-defined]
        Bucket=bucket, Prefix=prefix
    ):
        found[0].extend(page.get("Versions", []))
        found[1].extend(page.get("DeleteMarkers", []))
    return found


def snapshot_ids(site: Site, name: str) -> list[str]:
    done = site.cli("snapshots", name, "files", "--json", check=True)
    return [s["id"] for s in json.loads(done.stdout)]


def test_a_taken_over_server_cannot_erase_a_locked_history(
    site: Site, store: S3Server, unique: str, tmp_path: Path
) -> None:
    s3_site(site, store)
    site.env["UNSTOPPABLE_S3_LOCK_DAYS"] = "1"
    name = f"lock-{unique}"
    bucket, prefix = f"ub-{name}", "files/"
    source = tmp_path / "src"
    (source / "docs").mkdir(parents=True)
    (source / "docs" / "contract.txt").write_text("the first version\n" * 500)
    (source / "photo.bin").write_bytes(os.urandom(300_000))
    (source / "note.txt").write_text("gone in the second snapshot")
    local_customer(site, name, source)
    site.cli("backup", name, check=True)
    first = contents(source)
    time.sleep(1.5)
    between = datetime.now(UTC)  # after the first backup, before the second
    time.sleep(1.5)
    (source / "docs" / "contract.txt").write_text("the second version\n" * 400)
    (source / "photo.bin").write_bytes(os.urandom(300_000))
    (source / "note.txt").unlink()
    (source / "new.txt").write_text("added later")
    site.cli("backup", name, check=True)
    before = snapshot_ids(site, name)
    assert len(before) == 2
    # A moment before the first backup would leave no repository: refused, nothing touched.
    early = site.cli("recover", name, "files", "--as-of", "2000-01-01T00:00:00Z")
    assert early.returncode == 1 and "had no config" in early.stderr, early.stderr
    assert snapshot_ids(site, name) == before
    time.sleep(1.5)
    as_of = datetime.now(UTC)
    time.sleep(1.5)

    s3 = store.client()  # the key the server holds
    live = [v for v in versions(s3, bucket, prefix)[0] if v["IsLatest"]]
    assert len(live) > 5
    # 1. Delete every object: allowed, and it only hides an object behind a delete marker.
    # Directory markers (rustic makes one per directory) are no data: MinIO refuses their
    # delete, versitygw's posix directories take it and leave no marker.
    hidden = [
        v["Key"]
        for v in live
        if not refused(lambda v=v: s3.delete_object(Bucket=bucket, Key=v["Key"]))  # type: ignore[attr-defined]
    ]
    kept, markers = versions(s3, bucket, prefix)
    assert any(key.startswith(f"{prefix}snapshots/") for key in hidden), hidden
    live_data = [v for v in live if not v["Key"].endswith("/")]
    data = [v for v in kept if not v["Key"].endswith("/")]
    assert len(markers) == len([k for k in hidden if not k.endswith("/")]) == len(live_data)
    assert len(data) >= len(live_data) > 5
    # 2. Delete every version of every object for good: refused, every one of them.
    for attacker in attackers(store):
        gone = [
            v["Key"]
            for v in data
            if not refused(
                attacker.delete_object, Bucket=bucket, Key=v["Key"], VersionId=v["VersionId"]
            )
        ]
        assert not gone, gone
    # 2b. The job's receipts are locked like the data: no version of one can be deleted.
    receipts = [v for v in versions(s3, bucket, "receipts/")[0] if not v["Key"].endswith("/")]
    assert len(receipts) >= 2, receipts  # one per backup
    for attacker in attackers(store):
        gone = [
            v["Key"]
            for v in receipts
            if not refused(
                attacker.delete_object, Bucket=bucket, Key=v["Key"], VersionId=v["VersionId"]
            )
        ]
        assert not gone, gone
    # The customer's own check, on the real store (its S3 signing is the standard library's).
    (tmp_path / "key.pub").write_text(site.cli("receipts", "pubkey", check=True).stdout)
    standalone = [sys.executable, str(VERIFIER), "--key", str(tmp_path / "key.pub"),
                  "--bucket", f"{store.endpoint}/{bucket}", "--customer", name]  # fmt: skip
    aws = {**os.environ, "AWS_ACCESS_KEY_ID": store.key_id, "AWS_SECRET_ACCESS_KEY": store.secret}
    checked = subprocess.run(standalone, env=aws, capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "files: 2 receipts, chain whole" in checked.stdout
    # Step 1 hid every snapshot behind a delete marker, and no prune ran: both are named.
    snapped = subprocess.run([*standalone, "--snapshots"], env=aws, capture_output=True, text=True)
    assert snapped.returncode == 1, snapped.stdout + snapped.stderr
    assert snapped.stdout.count("is not in the repository, and no prune since") == 2
    # 2c. A receipt hidden behind a delete marker (a lock allows that) is seen, and named.
    s3.delete_object(Bucket=bucket, Key=receipts[-1]["Key"])  # type: ignore[attr-defined]
    checked = subprocess.run(standalone, env=aws, capture_output=True, text=True)
    assert checked.returncode == 1 and "hidden behind a delete marker" in checked.stdout
    assert "hidden behind a delete marker" in site.cli("receipts", "verify", name).stdout
    # 3. Overwrite every object with garbage: allowed, as new versions on top.
    for v in live_data:
        s3.put_object(Bucket=bucket, Key=v["Key"], Body=b"encrypted by the attacker")  # type: ignore[attr-defined]
    # 3b. Plant a snapshot that did not exist: recovery must hide it again.
    s3.put_object(Bucket=bucket, Key=f"{prefix}snapshots/{'0' * 64}", Body=b"planted")  # type: ignore[attr-defined]
    # 4. Shorten a retention, with and without the governance bypass: refused.
    target = {"Bucket": bucket, "Key": live[0]["Key"], "VersionId": live[0]["VersionId"]}
    soon = {"Mode": "COMPLIANCE", "RetainUntilDate": datetime.now(UTC) + timedelta(minutes=1)}
    for attacker in attackers(store):
        assert refused(attacker.put_object_retention, **target, Retention=soon)
        assert refused(
            attacker.put_object_retention,
            **target,
            Retention={**soon, "Mode": "GOVERNANCE"},
            BypassGovernanceRetention=True,
        )
        # 5. Switch versioning off, 6. delete the bucket: refused.
        assert refused(
            attacker.put_bucket_versioning,
            Bucket=bucket,
            VersioningConfiguration={"Status": "Suspended"},
        )
        assert refused(attacker.delete_bucket, Bucket=bucket)
    # 7. Erase the hot repository on the server's own disk.
    shutil.rmtree(site.data / "hot" / name / "files")
    assert site.cli("snapshots", name, "files").returncode != 0 or not snapshot_ids(site, name)

    done = site.cli("recover", name, "files", "--as-of", as_of.isoformat(), check=True)
    assert "hot repository rebuilt" in done.stdout and "2 snapshot(s)" in done.stdout, done.stdout
    assert snapshot_ids(site, name) == before
    restored = tmp_path / "restored"
    site.cli(
        "restore", name, "files", "--target", str(restored), "--snapshot", before[0], check=True
    )
    assert contents(restored) == first
    check = restic(store, name, tmp_path, "check", "--read-data")
    assert check.returncode == 0 and "no errors were found" in check.stdout, (
        check.stdout + check.stderr
    )
    # Back to a moment between the backups: the second snapshot, made after it, is hidden
    # again (on versitygw too, whose listing no longer tells when that snapshot was made).
    site.cli("recover", name, "files", "--as-of", between.isoformat(), check=True)
    assert snapshot_ids(site, name) == before[:1]


def test_prune_extends_the_lock_of_every_live_object(
    site: Site, store: S3Server, unique: str, tmp_path: Path
) -> None:
    """Read each object's retention before and after: live ones move on, none moves back.

    Before: what the backup wrote is locked, by the store's default retention or (versitygw)
    by the backup's own lock pass.
    """
    s3_site(site, store)
    site.env["UNSTOPPABLE_S3_LOCK_DAYS"] = "2"
    name = f"ext-{unique}"
    source = tmp_path / "src"
    source.mkdir()
    (source / "a.txt").write_text("a" * 5000)
    local_customer(site, name, source)
    site.cli("backup", name, check=True)
    bucket = Bucket(store.endpoint, "us-east-1", store.key_id, store.secret, f"ub-{name}")
    try:
        # The repository's live objects, and the job's receipts: both history, both held.
        live = live_objects(bucket.versions("files/"))
        receipts = live_objects(bucket.versions("receipts/files/"))
        assert len(receipts) == 1  # the backup's
        live = [*live, *receipts]
        before = {v.key: bucket.retention(v.key, v.version_id) for v in live}
        assert all(until is not None for until in before.values())
        # Daily prunes keep two-day locks renewed once a day of them has passed: pretend so
        # by asking for a lock of three days now.
        site.env["UNSTOPPABLE_S3_LOCK_DAYS"] = "3"
        done = site.cli("prune", name, check=True)
        assert f"{len(live)} of {len(live)} live object(s) locked further" in done.stdout, (
            done.stdout
        )
        after = {v.key: bucket.retention(v.key, v.version_id) for v in live}
    finally:
        bucket.close()
    for key, until in after.items():
        assert until is not None and before[key] is not None
        assert until - before[key] > timedelta(hours=23), key


def test_recover_learns_how_the_store_dates_old_versions(store: S3Server, unique: str) -> None:
    """S3 dates a version by its creation; versitygw by when it was replaced (measured)."""
    bucket = Bucket(store.endpoint, "us-east-1", store.key_id, store.secret, f"ub-probe-{unique}")
    try:
        bucket.ensure(Lock(1, "compliance"))  # versioned, as every bucket with a lock
        assert bucket.dates_by_replacement() is isinstance(store, Versitygw)
    finally:
        bucket.close()


def test_a_default_lock_rule_removed_by_the_servers_key_is_put_back(
    site: Site, store: S3Server, unique: str, tmp_path: Path
) -> None:
    """Lock enabled but its default rule gone: minio-py could not read that, and every
    backup failed. The next backup puts the rule back, and what it wrote is locked."""
    s3_site(site, store)
    site.env["UNSTOPPABLE_S3_LOCK_DAYS"] = "1"
    name = f"rule-{unique}"
    source = tmp_path / "src"
    source.mkdir()
    (source / "a.txt").write_text("a")
    local_customer(site, name, source)
    site.cli("backup", name, check=True)
    s3 = store.client()
    s3.put_object_lock_configuration(
        Bucket=f"ub-{name}", ObjectLockConfiguration={"ObjectLockEnabled": "Enabled"}
    )
    (source / "b.txt").write_text("b")
    site.cli("backup", name, check=True)
    rule = s3.get_object_lock_configuration(Bucket=f"ub-{name}")["ObjectLockConfiguration"]
    assert rule["Rule"]["DefaultRetention"] == {"Mode": "COMPLIANCE", "Days": 1}
    bucket = Bucket(store.endpoint, "us-east-1", store.key_id, store.secret, f"ub-{name}")
    try:
        objects = live_objects(bucket.versions("files/"))
        assert [v.key for v in objects if bucket.retention(v.key, v.version_id) is None] == []
    finally:
        bucket.close()
