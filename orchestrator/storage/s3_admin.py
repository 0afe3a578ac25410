"""Per-customer keys on MinIO: a user whose policy reaches that customer's bucket only.

MinIO's admin API is MinIO's own (minio-py's MinioAdmin); on another S3 server, create the
user and policy with its tools and put the key in the customer file (COLD_S3_*).
"""

import secrets
from typing import Any

from minio.credentials.providers import StaticProvider
from minio.error import MinioAdminException
from minio.minioadmin import MinioAdmin

from orchestrator.storage import s3_compat  # noqa: F401  (minio-py reads nanoseconds)
from orchestrator.storage.s3_values import StorageError, host_of, masked


def bucket_policy(bucket: str) -> dict[str, Any]:
    """Return the policy of a worker's key: read and write objects of `bucket`, nothing else.

    No retention, lock, versioning, lifecycle or bucket call is allowed, and no version can
    be named in a delete: with this key a worker can only hide what it wrote. The explicit
    Deny matters: MinIO lets s3:DeleteObject delete a named version too (measured here).
    """
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": ["s3:ListBucket", "s3:GetBucketLocation"],
                "Resource": [f"arn:aws:s3:::{bucket}"],
            },
            {
                "Effect": "Allow",
                "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
                "Resource": [f"arn:aws:s3:::{bucket}/*"],
            },
            {
                "Effect": "Deny",
                "Action": [
                    "s3:DeleteObjectVersion",
                    "s3:PutObjectRetention",
                    "s3:BypassGovernanceRetention",
                    "s3:PutObjectLegalHold",
                ],
                "Resource": [f"arn:aws:s3:::{bucket}/*"],
            },
        ],
    }


def provision_user(
    endpoint: str, region: str, admin_key: str, admin_secret: str, bucket: str, user: str
) -> str:
    """Create (or reset) MinIO user `user` limited to `bucket`; return its new secret key.

    Raises StorageError, without any credential in it, when MinIO refuses.
    """
    host, secure = host_of(endpoint)
    admin = MinioAdmin(
        endpoint=host,
        credentials=StaticProvider(admin_key, admin_secret),
        region=region,
        secure=secure,
    )
    secret = secrets.token_urlsafe(30)
    try:
        admin.policy_add(user, policy=bucket_policy(bucket))
        admin.user_add(user, secret)
        try:
            admin.attach_policy([user], user=user)
        except MinioAdminException as exc:
            if "already" not in str(exc).lower():
                raise
    except (MinioAdminException, ValueError, OSError) as exc:
        said = masked(str(exc), admin_key, admin_secret, secret)
        raise StorageError(f"MinIO at {host}: cannot provision {user}: {said[:300]}") from None
    return secret
