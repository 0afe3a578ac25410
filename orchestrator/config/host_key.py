"""HOST_KEY of an SFTP source: a known_hosts line, read by its fields.

`[marker] host-patterns key-type base64-key [comment]` (sshd(8), SSH_KNOWN_HOSTS FILE
FORMAT), or just `key-type base64-key [comment]`. The host patterns are replaced by HOST
and PORT when the line is written for rclone, so they are not checked; the comment is
ignored. A marker is refused: `@cert-authority` trusts every key a CA signs rather than
pinning one, and `@revoked` pins nothing. The key must be base64 of an SSH public key
blob of the type the line names, so a truncated or pasted-wrong key fails `validate`, not
every run.
"""

import base64
import binascii
import struct
from dataclasses import dataclass

KEY_TYPES = (
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "ssh-rsa",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
)


@dataclass(frozen=True)
class HostKey:
    """The server key a HOST_KEY pins."""

    type: str
    key: str  # base64, as written


def parse_host_key(line: str) -> HostKey:
    """Return the key a known_hosts line pins; raise ValueError saying what is wrong."""
    fields = line.split()
    if fields and fields[0].startswith("@"):
        if fields[0] in ("@cert-authority", "@revoked"):
            raise ValueError(
                f"a {fields[0]} line pins no host key: give the server's own key "
                "(`ssh-keyscan -t ed25519 HOST`)"
            )
        raise ValueError("unknown marker: a known_hosts line starts with host patterns")
    if len(fields) >= 2 and fields[0] in KEY_TYPES:
        key_type, key = fields[0], fields[1]
    elif len(fields) >= 3 and fields[1] in KEY_TYPES:
        key_type, key = fields[1], fields[2]
    else:
        raise ValueError(
            "must be a known_hosts line (`host key-type base64-key`) or `key-type base64-key`, "
            f"the key type one of {', '.join(KEY_TYPES)}"
        )
    if _blob_type(key) != key_type:
        raise ValueError(f"the key is not base64 of an {key_type} public key")
    return HostKey(key_type, key)


def _blob_type(key: str) -> str | None:
    """Return the key type an SSH public key blob (base64) names, or None if it is not one."""
    try:
        blob = base64.b64decode(key, validate=True)
        (length,) = struct.unpack(">I", blob[:4])
        return blob[4 : 4 + length].decode("ascii") if 0 < length <= 64 else None
    except (binascii.Error, struct.error, UnicodeDecodeError, ValueError):
        return None
