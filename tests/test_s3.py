"""The cold repository in MinIO: a bucket per customer, a prefix per resource, metadata hot."""

import json
import os
import shutil
import signal
import subprocess
import threading
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Protocol

import boto3
import pytest

from orchestrator.model import JobKey
from orchestrator.reporting.ledger import Ledger
from orchestrator.storage import s3, s3_values
from tests.conftest import Site
from tests.containers import DockerContainer, image, on_host_network
from tests.helpers import DaemonProcess, wait_until
from tests.servers import PASSWORD, USER, free_port, open_dir, vsftpd
from tests.test_remote import contents, fill

pytestmark = pytest.mark.docker
KEY_ID, SECRET = "unstoppable-test", "minio-Secret-9d41e2"


def s3_client(endpoint: str, key_id: str, secret: str) -> Any:
    """Return a boto3 S3 client of the test server at `endpoint` with this key."""
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
        region_name="us-east-1",
    )


class S3Server(Protocol):
    """What the tests need of an S3 server: MinIO here, versitygw in tests/versitygw.py."""

    key_id: str  # the key the backup server holds
    secret: str

    @property
    def endpoint(self) -> str: ...

    def client(self) -> Any: ...


def ensure_bucket(
    endpoint: str, region: str, key_id: str, secret: str, bucket: str, **options: Any
) -> bool:
    """Create `bucket` through the orchestrator's Bucket; return whether this call made it."""
    store = s3.Bucket(endpoint, region, key_id, secret, bucket, **options)
    try:
        return store.ensure() is s3_values.BucketState.CREATED
    finally:
        store.close()


@dataclass
class Minio:
    """MinIO in a container on the host's network, its data directory bind-mounted."""

    port: int
    data: Path
    audit: list[dict[str, object]] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    container: DockerContainer | None = None
    key_id: str = KEY_ID  # what the backup server holds: MinIO's root key
    secret: str = SECRET

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start the server, or start its stopped container again on the same data."""
        if self.container is None:
            self.data.mkdir(parents=True, exist_ok=True)
            command = ["server", str(self.data), "--address", f"127.0.0.1:{self.port}"]
            command += ["--console-address", f"127.0.0.1:{free_port()}", "--quiet"]
            self.container = on_host_network(
                image("minio"), command, [(self.data, "rw")], env=self.env
            ).start()
        else:
            self.container.get_wrapped_container().start()
        wait_until(self.live, 60, "MinIO to answer")

    def client(self, key_id: str = KEY_ID, secret: str = SECRET) -> Any:
        """Return a boto3 S3 client of this server, with the root key unless told."""
        return s3_client(self.endpoint, key_id, secret)

    def live(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.endpoint}/minio/health/live", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def stop(self) -> None:
        """Kill the server at once, as a crash would; start() brings the same one back."""
        if self.container is not None:
            self.container.get_wrapped_container().kill()
            self.container.get_wrapped_container().wait(timeout=10)

    def remove(self) -> None:
        if self.container is not None:
            self.container.stop()  # testcontainers' stop removes the container
            self.container = None

    def entries(
        self,
        name: str,
        bucket: str,
        prefix: str = "",
        after: datetime | None = None,
        before: datetime | None = None,
    ) -> list[str]:
        """Return the objects under `prefix` that MinIO's audit log records for API `name`.

        `after` and `before` bound MinIO's time of the request: the webhook delivers
        asynchronously, and not necessarily in order.
        """
        out = []
        for entry in list(self.audit):
            api = entry.get("api", {})
            when = datetime.fromisoformat(str(entry["time"]))
            if (
                isinstance(api, dict)
                and api.get("name") == name
                and api.get("bucket") == bucket
                and str(api.get("object", "")).startswith(prefix)
                and (after is None or when >= after)
                and (before is None or when <= before)
            ):
                out.append(str(api["object"]))
        return out

    def reads(self, bucket: str, prefix: str) -> list[str]:
        """Return the objects under `prefix` that MinIO's audit log says were read."""
        return self.entries("GetObject", bucket, prefix)


@contextmanager
def audit_receiver() -> Iterator[tuple[str, list[dict[str, object]]]]:
    """Collect MinIO's audit webhook posts; yield (URL, entries so far)."""
    audit: list[dict[str, object]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            for line in body.splitlines():
                if line.strip():
                    audit.append(json.loads(line))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    receiver = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{receiver.server_address[1]}/", audit
    finally:
        receiver.shutdown()
        receiver.server_close()


@contextmanager
def minio_server(work: Path, **env: str) -> Iterator[Minio]:
    """Run MinIO with the test's root credentials and an audit webhook; remove it after."""
    with audit_receiver() as (url, audit):
        server = Minio(free_port(), work / "data", audit)
        server.env = {
            "MINIO_ROOT_USER": KEY_ID,
            "MINIO_ROOT_PASSWORD": SECRET,
            # MinIO's own account of every request: the witness of what was read and written.
            "MINIO_AUDIT_WEBHOOK_ENABLE_test": "on",
            "MINIO_AUDIT_WEBHOOK_ENDPOINT_test": url,
            "MINIO_AUDIT_WEBHOOK_BATCH_SIZE_test": "1",
            **env,
        }
        try:
            server.start()
            yield server
        finally:
            server.remove()


@pytest.fixture(scope="module")
def minio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Minio]:
    with minio_server(tmp_path_factory.mktemp("minio")) as server:
        yield server


def s3_site(site: Site, minio: S3Server, prefix: str = "ub-") -> None:
    site.env.update(
        {
            "UNSTOPPABLE_COLD_BACKEND": "s3",
            "UNSTOPPABLE_S3_ENDPOINT": minio.endpoint,
            "UNSTOPPABLE_S3_ACCESS_KEY_ID": minio.key_id,
            "UNSTOPPABLE_S3_SECRET_ACCESS_KEY": minio.secret,
            "UNSTOPPABLE_S3_BUCKET_PREFIX": prefix,
        }
    )


def local_customer(site: Site, name: str, source: Path, schedule: str = "0 3 * * *") -> None:
    site.customer(
        name,
        f'SCHEDULE="{schedule}"\nREPO_PASSWORD=repo-{name}\nRESOURCES=files\n'
        f"FILES_TYPE=local\nFILES_PATH={source}\n",
    )


def test_ftps_to_minio_by_the_daemon_restores_byte_identical(
    site: Site, minio: Minio, unique: str, daemon: DaemonProcess
) -> None:
    """origin-notes' test strategy: load an FTPS server, let the schedule back it up, restore."""
    s3_site(site, minio)
    name = f"s3ftp-{unique}"
    source = open_dir("unstoppable-s3-src-")
    try:
        fill(source)
        with vsftpd() as ftps:
            site.customer(
                name,
                f'SCHEDULE="* * * * * */5"\nREPO_PASSWORD=repo-{name}\n'
                f"RESOURCES=website\nWEBSITE_TYPE=ftps\nWEBSITE_HOST=127.0.0.1\n"
                f"WEBSITE_PORT={ftps.port}\nWEBSITE_USER={USER}\n"
                f"WEBSITE_PASSWORD={PASSWORD}\nWEBSITE_PATH={source}\n"
                f"WEBSITE_TLS_CA_FILE={site.key_file(name, ftps.ca)}\n",
            )
            ledger = Ledger(site.data / "state")
            daemon.start()
            wait_until(
                lambda: any(
                    r.result == "success"
                    for r in ledger.history.runs(JobKey.parse(f"{name}/website"))
                ),
                90,
                "a scheduled backup into MinIO",
            )
            # Its receipt is published by the daemon's own thread, soon after.
            s3 = minio.client()
            wait_until(
                lambda: s3.list_objects_v2(Bucket=f"ub-{name}", Prefix="receipts/website/").get(
                    "KeyCount", 0
                ),
                30,
                "the backup's receipt in the customer's bucket",
            )
            daemon.signal(signal.SIGTERM)
            assert daemon.wait(10) == 0
        target = site.root / "restored"
        site.cli("restore", name, "website", "--target", str(target), check=True)
        assert contents(target) == contents(source)
        assert not (site.data / "cold").exists(), "nothing cold may land on local disk"
        puts = [
            e["api"]["object"]
            for e in minio.audit  # type: ignore[index]
            if e["api"].get("name") == "PutObject" and e["api"].get("bucket") == f"ub-{name}"
        ]  # type: ignore[union-attr,attr-defined]
        # The repository's objects, and the job's receipts beside it (receipts/<resource>/).
        assert puts and all(p.startswith(("website/", "receipts/website/")) for p in puts), puts
        assert any(p.startswith("receipts/website/") for p in puts), "no receipt published"
    finally:
        shutil.rmtree(source, ignore_errors=True)


def test_an_incremental_backup_reads_no_data_pack(
    site: Site, minio: Minio, unique: str, tmp_path: Path
) -> None:
    s3_site(site, minio)
    name = f"s3inc-{unique}"
    bucket = f"ub-{name}"
    source = tmp_path / "src"
    source.mkdir()
    (source / "big.bin").write_bytes(os.urandom(20 * 1024 * 1024))
    (source / "small.txt").write_text("v1")
    local_customer(site, name, source)
    site.cli("backup", name, check=True)
    (source / "small.txt").write_text("v2, changed")
    (source / "new.bin").write_bytes(os.urandom(1024 * 1024))
    start = datetime.now(UTC)
    done = site.cli("backup", name, check=True)
    end = datetime.now(UTC)
    assert "1 new, 1 changed" in done.stdout
    # The witness must be seen to work before its silence means anything: the run's own
    # upload of the new data reaches the audit log, and so do the reads of a full check
    # made after it, of the very packs the incremental run must not have read.
    wait_until(
        lambda: minio.entries("PutObject", bucket, "files/data/", start, end),
        30,
        "the audit log to record the incremental run's new data pack",
    )
    site.cli("check", name, "files", "--read-data", check=True)
    wait_until(
        lambda: minio.entries("GetObject", bucket, "files/data/", after=end),
        30,
        "the audit log to record the check reading the data packs",
    )
    assert minio.entries("GetObject", bucket, "files/data/", start, end) == []


def restic(
    minio: S3Server, customer: str, work: Path, *args: str
) -> subprocess.CompletedProcess[str]:
    """Run Debian's restic on the `files` repository of `customer`'s bucket, alone."""
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(work),
        "RESTIC_PASSWORD": f"repo-{customer}",
        "AWS_ACCESS_KEY_ID": minio.key_id,
        "AWS_SECRET_ACCESS_KEY": minio.secret,
        "RESTIC_CACHE_DIR": str(work / "restic-cache"),
    }
    repo = f"s3:{minio.endpoint}/ub-{customer}/files"
    return subprocess.run(["restic", "-r", repo, *args], env=env, capture_output=True, text=True)


def test_the_cold_bucket_alone_is_a_complete_repository_for_restic(
    site: Site, minio: Minio, unique: str, tmp_path: Path
) -> None:
    s3_site(site, minio)
    name = f"s3rst-{unique}"
    source = tmp_path / "src"
    source.mkdir()
    fill(source)
    local_customer(site, name, source)
    site.cli("backup", name, check=True)
    (source / "later.txt").write_text("second snapshot")
    site.cli("backup", name, check=True)
    check = restic(minio, name, tmp_path, "check", "--read-data")
    assert check.returncode == 0, check.stdout + check.stderr
    assert "no errors were found" in check.stdout
    target = tmp_path / "restic-restore"
    restore = restic(minio, name, tmp_path, "restore", "latest", "--target", str(target))
    assert restore.returncode == 0, restore.stdout + restore.stderr
    assert contents(target / source.relative_to("/")) == contents(source)


def test_minio_stopped_mid_backup_fails_then_recovers(
    site: Site, minio: Minio, unique: str, tmp_path: Path
) -> None:
    s3_site(site, minio)
    name = f"s3down-{unique}"
    source = tmp_path / "src"
    source.mkdir()
    (source / "first.txt").write_text("in the first snapshot")
    local_customer(site, name, source)
    site.cli("backup", name, check=True)
    for i in range(4):
        (source / f"big-{i}.bin").write_bytes(os.urandom(40 * 1024 * 1024))
    container = f"unstoppable-{name}-files"
    seen = len(minio.audit)

    def kill_minio_mid_upload() -> None:
        wait_until(
            lambda: any(
                e["api"].get("name") == "PutObject"  # type: ignore[union-attr]
                and str(e["api"].get("object", "")).startswith("files/data/")  # type: ignore[union-attr]
                for e in minio.audit[seen:]
            ),
            120,
            "uploads to start",
        )
        minio.stop()

    killer = threading.Thread(target=kill_minio_mid_upload)
    killer.start()
    done = site.cli("backup", name)
    killer.join()
    assert done.returncode == 1
    assert f"{name}/files: failure (storage)" in done.stdout, done.stdout + done.stderr
    assert subprocess.run(["docker", "inspect", container], capture_output=True).returncode != 0
    minio.start()
    again = site.cli("backup", name)
    assert again.returncode == 0, again.stdout + again.stderr
    site.cli("check", name, "files", "--read-data", check=True)
    snaps = json.loads(site.cli("snapshots", name, "files", "--json", check=True).stdout)
    assert len(snaps) == 2, "the earlier snapshot must survive"
    target = tmp_path / "restored"
    site.cli(
        "restore", name, "files", "--target", str(target), "--snapshot", snaps[0]["id"], check=True
    )
    assert (target / "first.txt").read_text() == "in the first snapshot"


def temporary_credentials(minio: Minio) -> dict[str, str]:
    """Return STS credentials (key, secret, session token) MinIO issues to its root user."""
    sts = boto3.client(
        "sts",
        endpoint_url=minio.endpoint,
        region_name="us-east-1",
        aws_access_key_id=KEY_ID,
        aws_secret_access_key=SECRET,
    )
    issued = sts.assume_role(
        RoleArn="arn:minio:iam:::role/unstoppable-test",
        RoleSessionName="unstoppable-test",
        DurationSeconds=3600,
    )["Credentials"]
    return {k: str(issued[k]) for k in ("AccessKeyId", "SecretAccessKey", "SessionToken")}


def test_temporary_credentials_reach_the_bucket_and_rustic_through_the_session_token(
    site: Site, minio: Minio, unique: str, tmp_path: Path
) -> None:
    issued = temporary_credentials(minio)
    s3_site(site, minio)
    site.env.update(
        {
            "UNSTOPPABLE_S3_ACCESS_KEY_ID": issued["AccessKeyId"],
            "UNSTOPPABLE_S3_SECRET_ACCESS_KEY": issued["SecretAccessKey"],
            "UNSTOPPABLE_S3_SESSION_TOKEN": issued["SessionToken"],
        }
    )
    name = f"s3sts-{unique}"
    source = tmp_path / "src"
    source.mkdir()
    fill(source)
    local_customer(site, name, source)
    done = site.cli("backup", name, check=True)
    assert f"{name}/files: success" in done.stdout

    def keys(api: str) -> set[object]:
        return {
            e.get("accessKey")
            for e in list(minio.audit)
            if e["api"].get("name") == api and e["api"].get("bucket") == f"ub-{name}"  # type: ignore[union-attr]
        }

    # The orchestrator made the bucket and rustic wrote the packs, both as the issued key.
    wait_until(lambda: keys("PutBucket") and keys("PutObject"), 30, "the audit log")
    assert keys("PutBucket") == keys("PutObject") == {issued["AccessKeyId"]}
    target = tmp_path / "restored"
    site.cli("restore", name, "files", "--target", str(target), check=True)
    assert contents(target) == contents(source)
    # The same key without its token is refused: the token, not the key, let the runs in.
    del site.env["UNSTOPPABLE_S3_SESSION_TOKEN"]
    refused = site.cli("backup", name)
    assert refused.returncode == 1
    assert f"{name}/files: failure (storage)" in refused.stdout, refused.stdout + refused.stderr
    for secret in (issued["SecretAccessKey"], issued["SessionToken"]):
        assert secret not in done.stdout + done.stderr + refused.stdout + refused.stderr


def test_a_time_missed_before_the_bucket_exists_is_receipted_and_published_later(
    minio: Minio, unique: str, tmp_path: Path
) -> None:
    """The first backup makes the bucket; a time missed before it (the store was down)
    still gets its receipt, which waits in the spool and is published once the bucket is
    there. Reading the chain's head from a missing bucket used to raise: no receipt."""
    from orchestrator.config.settings_file import load_settings
    from orchestrator.receipts.issuer import Issuer
    from orchestrator.receipts.terms import Terms
    from orchestrator.storage.layout import bucket_lock, open_bucket

    settings = load_settings(
        {
            "UNSTOPPABLE_CONFIG": str(tmp_path / "none.env"),
            "UNSTOPPABLE_DATA_DIR": str(tmp_path / "data"),
            "UNSTOPPABLE_COLD_BACKEND": "s3",
            "UNSTOPPABLE_S3_ENDPOINT": minio.endpoint,
            "UNSTOPPABLE_S3_ACCESS_KEY_ID": minio.key_id,
            "UNSTOPPABLE_S3_SECRET_ACCESS_KEY": minio.secret,
            "UNSTOPPABLE_S3_BUCKET_PREFIX": "ub-",
            "UNSTOPPABLE_ALLOW_PRIVATE_TARGETS": "127.0.0.0/8",
        }
    )
    name = f"nobkt-{unique}"
    job = JobKey(name, "www")
    issuer = Issuer(settings, lambda _job: Terms("0 * * * *", "UTC"))
    issuer.ticks(job, "missed", "", datetime(2026, 12, 6, 3, 0, tzinfo=UTC), 1)
    spool = tmp_path / "data" / "state" / "receipts" / f"{name}_www"
    assert sorted(p.name for p in spool.glob("[0-9]*.json")) == ["0000000000.json"]
    store = open_bucket(settings, name)  # as the first backup makes it: locked
    try:
        store.ensure(bucket_lock(settings))
    finally:
        store.close()
    assert issuer.deliver(job) == 0
    listed = minio.client().list_objects_v2(Bucket=f"ub-{name}", Prefix="receipts/www/")
    assert [o["Key"] for o in listed.get("Contents", [])] == ["receipts/www/0000000000.json"]
