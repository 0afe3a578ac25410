"""The S3 cold backend: bucket names, and creating a customer's bucket when it is missing.

minio-py signs and sends the requests; this is the only module that imports it.
"""

import re
from xml.etree import ElementTree

import urllib3
from minio import Minio
from minio.error import InvalidResponseError, S3Error, ServerError

from orchestrator.config.values import s3_endpoint
from orchestrator.errors import UnstoppableError

# A dead endpoint must fail a run in seconds: minio-py's own pool waits five minutes per
# connection and retries five times. One retry covers a dropped connection.
CONNECT_SECONDS = 5
_RETRIES = urllib3.Retry(
    total=1,
    read=0,
    backoff_factor=0.2,
    status_forcelist=(500, 502, 503, 504),
    raise_on_status=False,  # the last answer is parsed as S3's error, not urllib3's
)


class StorageError(UnstoppableError):
    """The object store refused or could not be reached."""


def ensure_bucket(
    endpoint: str,
    region: str,
    key_id: str,
    secret: str,
    bucket: str,
    timeout: float = 30,
    session_token: str | None = None,
) -> bool:
    """Create `bucket` in `region` unless it exists; return whether this call created it.

    Raises StorageError naming the bucket and endpoint (never a credential) when the store
    cannot be reached or refuses.
    """
    host, secure = _endpoint(endpoint)
    pool = urllib3.PoolManager(
        timeout=urllib3.Timeout(connect=min(CONNECT_SECONDS, timeout), read=timeout),
        retries=_RETRIES,
        cert_reqs="CERT_REQUIRED",  # against the system's trust store, as before minio-py
    )
    client = Minio(
        host,
        access_key=key_id,
        secret_key=secret,
        session_token=session_token or None,
        secure=secure,
        region=region,
        http_client=pool,
    )
    try:
        if client.bucket_exists(bucket):
            return False
        client.make_bucket(bucket, location=region)
        return True
    except S3Error as exc:
        if exc.code == "BucketAlreadyOwnedByYou":  # created meanwhile by a parallel run
            return False
        if exc.code == "BucketAlreadyExists":
            raise StorageError(
                f"bucket {bucket} at {host} belongs to another account; choose another "
                "UNSTOPPABLE_S3_BUCKET_PREFIX"
            ) from None
        said = _without(f"{exc.code}: {exc.message}", key_id, secret, session_token)
        raise StorageError(
            f"bucket {bucket} at {host} (region {region}): the object store said {said}"
        ) from None
    except ServerError as exc:
        raise StorageError(
            f"bucket {bucket} at {host}: the object store answered HTTP {exc.status_code}"
        ) from None
    except InvalidResponseError as exc:
        code = re.search(r"Response code: (\d+)", str(exc))
        raise StorageError(
            f"bucket {bucket} at {host}: an answer that is not S3's"
            f" (HTTP {code[1] if code else '?'}): is UNSTOPPABLE_S3_ENDPOINT an S3 endpoint?"
        ) from None
    except urllib3.exceptions.HTTPError as exc:
        raise StorageError(f"cannot reach the object store at {host}: {_reason(exc)}") from None
    except ElementTree.ParseError:  # a 4xx whose XML body was cut short
        raise StorageError(
            f"bucket {bucket} at {host}: the object store's answer could not be read"
        ) from None
    except ValueError as exc:  # minio-py's own checks of names and arguments
        said = _without(str(exc), key_id, secret, session_token)
        raise StorageError(f"bucket {bucket} at {host}: {said}") from None
    finally:
        pool.clear()


def _endpoint(endpoint: str) -> tuple[str, bool]:
    """Return (host[:port], TLS?) of `endpoint`; StorageError if it is not a plain URL."""
    try:
        return s3_endpoint(endpoint)
    except ValueError as exc:
        raise StorageError(f"UNSTOPPABLE_S3_ENDPOINT {exc}") from None


def _reason(exc: urllib3.exceptions.HTTPError) -> str:
    """Return what went wrong on the wire, without urllib3's repeat of the connection."""
    reason = getattr(exc, "reason", None) or exc
    return str(reason).split("): ", 1)[-1] or type(reason).__name__


def _without(text: str, *secrets: str | None) -> str:
    """Return `text` with every non-empty secret masked: servers may echo what they got."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text
