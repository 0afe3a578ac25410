"""The S3 client's edges: regions, races, dead or silent endpoints, and no secret in errors."""

import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import boto3
import pytest

from orchestrator.config.settings_file import load_settings
from orchestrator.errors import ConfigError
from orchestrator.storage import s3_values
from orchestrator.storage.layout import cold_profile
from tests.containers import free_port
from tests.test_s3 import KEY_ID, SECRET, Minio, ensure_bucket, minio_server

TOKEN = "session-Token-5be0c1"
REGION = "eu-central-1"


def refused(call: object) -> tuple[s3_values.StorageError, float]:
    """Return the StorageError `call` raises and the seconds it took."""
    began = time.monotonic()
    with pytest.raises(s3_values.StorageError) as caught:
        call()  # type: ignore[operator]
    return caught.value, time.monotonic() - began


def assert_no_secret(error: Exception) -> None:
    for secret in (SECRET, TOKEN, KEY_ID):
        assert secret not in str(error), str(error)


def test_a_dead_endpoint_fails_within_seconds_naming_it_and_no_secret() -> None:
    port = free_port()  # nothing listens on it
    error, took = refused(
        lambda: ensure_bucket(
            f"http://127.0.0.1:{port}", "us-east-1", KEY_ID, SECRET, "ub-dead", session_token=TOKEN
        )
    )
    assert took < 5, took
    assert f"127.0.0.1:{port}" in str(error) and "Connection refused" in str(error), str(error)
    assert_no_secret(error)


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A server that accepts connections and never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        held: list[socket.socket] = []
        stop = threading.Event()

        def accept() -> None:
            listener.settimeout(0.2)
            while not stop.is_set():
                try:
                    held.append(listener.accept()[0])
                except TimeoutError:
                    continue

        thread = threading.Thread(target=accept, daemon=True)
        thread.start()
        yield int(listener.getsockname()[1])
        stop.set()
        thread.join()
        for conn in held:
            conn.close()


def test_a_silent_endpoint_fails_after_one_read_timeout(silent_port: int) -> None:
    error, took = refused(
        lambda: ensure_bucket(
            f"http://127.0.0.1:{silent_port}", "us-east-1", KEY_ID, SECRET, "ub-mute", timeout=1.5
        )
    )
    assert 1.5 <= took < 4, took  # one read timeout, not a retry per method and attempt
    assert f"127.0.0.1:{silent_port}" in str(error), str(error)
    assert_no_secret(error)


@pytest.mark.parametrize(
    "endpoint",
    [
        f"http://{KEY_ID}:{SECRET}@127.0.0.1:9000",
        "ftp://127.0.0.1:9000",
        "http://127.0.0.1:9000/some/path",
        "127.0.0.1:9000",
    ],
)
def test_an_endpoint_that_is_not_a_plain_url_is_refused_without_echoing_it(endpoint: str) -> None:
    error, _ = refused(lambda: ensure_bucket(endpoint, "us-east-1", KEY_ID, SECRET, "ub-x"))
    assert "UNSTOPPABLE_S3_ENDPOINT" in str(error)
    assert_no_secret(error)
    with pytest.raises(ConfigError) as config:
        load_settings({"UNSTOPPABLE_CONFIG": "/nonexistent", "UNSTOPPABLE_S3_ENDPOINT": endpoint})
    assert "UNSTOPPABLE_S3_ENDPOINT" in str(config.value) and SECRET not in str(config.value)


def test_the_session_token_reaches_the_cold_profile_only_when_set() -> None:
    env = {
        "UNSTOPPABLE_CONFIG": "/nonexistent",
        "UNSTOPPABLE_COLD_BACKEND": "s3",
        "UNSTOPPABLE_S3_ENDPOINT": "https://s3.eu-central-1.amazonaws.com",
        "UNSTOPPABLE_S3_REGION": REGION,
        "UNSTOPPABLE_S3_ACCESS_KEY_ID": KEY_ID,
        "UNSTOPPABLE_S3_SECRET_ACCESS_KEY": SECRET,
    }
    without = cold_profile(load_settings(env), "acme", "files")
    assert without is not None and "session_token" not in without.get_secret_value()
    settings = load_settings({**env, "UNSTOPPABLE_S3_SESSION_TOKEN": TOKEN})
    assert TOKEN not in repr(settings)
    profile = cold_profile(settings, "acme", "files")
    assert profile is not None
    assert f'session_token = "{TOKEN}"\n' in profile.get_secret_value()
    assert f'region = "{REGION}"\n' in profile.get_secret_value()


@pytest.fixture(scope="module")
def minio_eu(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Minio]:
    """MinIO that is a site in eu-central-1: it refuses requests signed for another region."""
    with minio_server(tmp_path_factory.mktemp("minio-eu"), MINIO_SITE_REGION=REGION) as server:
        yield server


def location(minio: Minio, bucket: str) -> str:
    """Return the bucket's LocationConstraint, read by another S3 client (botocore)."""
    client = boto3.client(
        "s3",
        endpoint_url=minio.endpoint,
        region_name=REGION,
        aws_access_key_id=KEY_ID,
        aws_secret_access_key=SECRET,
    )
    return str(client.get_bucket_location(Bucket=bucket)["LocationConstraint"])


@pytest.mark.docker
def test_a_bucket_is_made_in_the_configured_region_and_found_again(
    minio_eu: Minio, unique: str
) -> None:
    bucket = f"ub-region-{unique}"
    assert ensure_bucket(minio_eu.endpoint, REGION, KEY_ID, SECRET, bucket) is True
    assert location(minio_eu, bucket) == REGION
    assert ensure_bucket(minio_eu.endpoint, REGION, KEY_ID, SECRET, bucket) is False


@pytest.mark.docker
def test_a_wrong_region_is_an_error_that_names_both(minio_eu: Minio, unique: str) -> None:
    bucket = f"ub-wrong-{unique}"
    error, _ = refused(
        lambda: ensure_bucket(minio_eu.endpoint, "us-east-1", KEY_ID, SECRET, bucket)
    )
    assert bucket in str(error) and "region us-east-1" in str(error), str(error)
    assert REGION in str(error), "the store's answer names the region it wants"
    assert_no_secret(error)


@pytest.mark.docker
def test_parallel_runs_make_the_bucket_once_and_all_succeed(minio_eu: Minio, unique: str) -> None:
    bucket = f"ub-race-{unique}"
    results: list[object] = []
    barrier = threading.Barrier(8)

    def make() -> None:
        barrier.wait()
        try:
            results.append(ensure_bucket(minio_eu.endpoint, REGION, KEY_ID, SECRET, bucket))
        except s3_values.StorageError as exc:
            results.append(exc)

    threads = [threading.Thread(target=make) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results, key=str) == [False] * 7 + [True], results


@pytest.mark.docker
def test_wrong_credentials_are_refused_without_echoing_them(minio_eu: Minio) -> None:
    error, _ = refused(
        lambda: ensure_bucket(
            minio_eu.endpoint, REGION, "not-a-key", SECRET, "ub-creds", session_token=TOKEN
        )
    )
    assert "ub-creds" in str(error) and minio_eu.endpoint.removeprefix("http://") in str(error)
    for secret in ("not-a-key", SECRET, TOKEN):
        assert secret not in str(error), str(error)


class _CutShort(BaseHTTPRequestHandler):
    """An S3 look-alike: no bucket (404), then a refusal whose XML body is cut short."""

    def do_HEAD(self) -> None:
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_PUT(self) -> None:
        body = b"<Error><Code>Bad"
        self.send_response(403)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_a_refusal_the_client_cannot_read_is_a_storage_error() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _CutShort)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        endpoint = f"http://127.0.0.1:{server.server_address[1]}"
        error, _ = refused(lambda: ensure_bucket(endpoint, "us-east-1", KEY_ID, SECRET, "ub-x"))
        assert "ub-x" in str(error)
        assert_no_secret(error)
    finally:
        server.shutdown()
        server.server_close()
