"""Per-customer keys: `s3-provision` makes one per customer, and a worker holds only its own."""

from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from orchestrator.config.customer_file import load_customer
from tests.conftest import Site
from tests.test_remote import contents, fill
from tests.test_s3 import Minio, local_customer, minio, s3_site

__all__ = ["minio"]  # the module-scoped MinIO of test_s3, shared here
pytestmark = pytest.mark.docker


def denied(move: object) -> bool:
    try:
        move()  # type: ignore[operator]
    except ClientError as exc:
        return exc.response["Error"]["Code"] == "AccessDenied"
    return False


def test_a_workers_key_reaches_its_own_customers_bucket_only(
    site: Site, minio: Minio, unique: str, tmp_path: Path
) -> None:
    s3_site(site, minio)
    site.env["UNSTOPPABLE_S3_LOCK_DAYS"] = "1"
    names = [f"ka-{unique}", f"kb-{unique}"]
    keys = {}
    for name in names:
        source = tmp_path / name
        source.mkdir()
        fill(source)
        local_customer(site, name, source)
        done = site.cli("s3-provision", name, check=True)
        assert f"user unstoppable-{name} reaches only it" in done.stdout, done.stdout
        customer = load_customer(site.customers / f"{name}.env")
        assert customer.cold_key is not None and customer.cold_key[1].literal is not None
        key_id, secret = customer.cold_key[0], customer.cold_key[1].literal.get_secret_value()
        assert secret not in done.stdout + done.stderr
        keys[name] = (key_id, secret)
        again = site.cli("s3-provision", name)
        assert again.returncode == 1 and "COLD_S3_* keys already" in again.stderr
    seen = len(minio.audit)
    for name in names:
        site.cli("backup", name, check=True)
    # MinIO's own log: every object the backups' workers wrote was written with the
    # customer's key; the receipts (receipts/), by the orchestrator itself, with its own.
    puts = [
        (entry["api"]["bucket"], entry["api"].get("object", ""), entry.get("accessKey"))  # type: ignore[index]
        for entry in minio.audit[seen:]
        if entry.get("api", {}).get("name") == "PutObject"  # type: ignore[union-attr]
    ]
    writers = {(b, who) for b, key, who in puts if not key.startswith("receipts/")}
    assert writers == {(f"ub-{n}", f"unstoppable-{n}") for n in names}, writers
    receipts = {(b, who) for b, key, who in puts if key.startswith("receipts/")}
    assert receipts == {(f"ub-{n}", minio.key_id) for n in names}, receipts

    own, other = (f"ub-{n}" for n in names)
    a = minio.client(*keys[names[0]])
    listed = a.list_objects_v2(Bucket=own, Prefix="files/")  # type: ignore[attr-defined]
    some_key = listed["Contents"][0]["Key"]
    assert denied(lambda: a.list_objects_v2(Bucket=other))  # type: ignore[attr-defined]
    assert denied(lambda: a.get_object(Bucket=other, Key=some_key))  # type: ignore[attr-defined]
    assert denied(lambda: a.put_object(Bucket=other, Key="files/x", Body=b"x"))  # type: ignore[attr-defined]
    # Within its own bucket: no version named in a delete, no lock or bucket change.
    root = minio.client()
    version = root.list_object_versions(Bucket=own, Prefix="files/snapshots/")["Versions"][0]  # type: ignore[attr-defined]
    assert denied(
        lambda: a.delete_object(  # type: ignore[attr-defined]
            Bucket=own, Key=version["Key"], VersionId=version["VersionId"]
        )
    )
    assert denied(lambda: a.delete_bucket(Bucket=own))  # type: ignore[attr-defined]
    assert denied(
        lambda: a.put_bucket_versioning(  # type: ignore[attr-defined]
            Bucket=own, VersioningConfiguration={"Status": "Suspended"}
        )
    )
    # The customer's key alone restores its backup.
    target = tmp_path / "restored"
    site.cli("restore", names[0], "files", "--target", str(target), check=True)
    assert contents(target) == contents(tmp_path / names[0])
