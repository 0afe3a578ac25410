"""The S3 cold backend: bucket names, and creating a customer's bucket when it is missing.

Requests are signed with AWS Signature Version 4 by hand (stdlib only): the orchestrator
needs exactly two calls, HEAD and PUT of a bucket, not an SDK.
"""

import hashlib
import hmac
import urllib.error
import urllib.request
from datetime import UTC, datetime
from urllib.parse import urlsplit

from orchestrator.errors import UnstoppableError

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


class StorageError(UnstoppableError):
    """The object store refused or could not be reached."""


def ensure_bucket(
    endpoint: str, region: str, key_id: str, secret: str, bucket: str, timeout: float = 30
) -> bool:
    """Create `bucket` unless it exists; return whether it was created.

    Raises StorageError naming the bucket (never a credential) when the store refuses.
    """
    status = _request("HEAD", endpoint, region, key_id, secret, bucket, timeout)
    if status == 200:
        return False
    if status != 404:
        raise StorageError(f"bucket {bucket}: the object store answered HTTP {status}")
    status = _request("PUT", endpoint, region, key_id, secret, bucket, timeout)
    if status in (200, 409):  # 409: created meanwhile by a parallel run, and ours
        return status == 200
    raise StorageError(f"cannot create bucket {bucket}: HTTP {status}")


def _request(
    method: str, endpoint: str, region: str, key_id: str, secret: str, bucket: str, timeout: float
) -> int:
    url = f"{endpoint.rstrip('/')}/{bucket}"
    parts = urlsplit(url)
    now = datetime.now(UTC)
    amz_date, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
    headers = {"host": parts.netloc, "x-amz-content-sha256": EMPTY_SHA256, "x-amz-date": amz_date}
    signed = ";".join(sorted(headers))
    canonical = "\n".join(
        [
            method,
            parts.path or "/",
            "",
            "".join(f"{k}:{headers[k]}\n" for k in sorted(headers)),
            signed,
            EMPTY_SHA256,
        ]
    )
    scope = f"{day}/{region}/s3/aws4_request"
    to_sign = "\n".join(
        ["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()]
    )
    key = f"AWS4{secret}".encode()
    for part in (day, region, "s3", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    headers["authorization"] = (
        f"AWS4-HMAC-SHA256 Credential={key_id}/{scope}, "
        f"SignedHeaders={signed}, Signature={signature}"
    )
    request = urllib.request.Request(
        url, method=method, headers={k: v for k, v in headers.items() if k != "host"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise StorageError(f"cannot reach the object store at {parts.netloc}: {reason}") from None
