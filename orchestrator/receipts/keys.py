"""The server's receipt key (Ed25519): made once, kept where only the daemon (root) reads it.

`DATA_DIR/state/receipt.key` (PKCS#8 PEM, 0600), made when the first receipt is issued;
its public half is what customers verify with (`unstoppable receipts pubkey`). Back it up:
a server rebuilt without it signs with a new key, which customers must be told of. Two processes
making it at once agree on one: each writes its own file and links it into place, which
fails for the second, which then reads the first's.
"""

import contextlib
import os
import secrets
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
    load_pem_private_key,
)

from orchestrator.config.settings import Settings
from orchestrator.errors import UnstoppableError
from orchestrator.storage.layout import state_dir

KEY_FILE = "receipt.key"


class KeyError_(UnstoppableError):
    """The receipt key cannot be read or made."""


def key_path(settings: Settings) -> Path:
    return state_dir(settings) / KEY_FILE


def receipt_key(settings: Settings, create: bool = True) -> Ed25519PrivateKey:
    """Return the server's receipt key, making it if there is none yet (and `create`)."""
    path = key_path(settings)
    if not os.path.lexists(path):
        if not create:
            raise KeyError_(f"{path}: no receipt key on this server yet (the daemon makes it)")
        _make(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        with os.fdopen(fd, "rb") as handle:
            key = load_pem_private_key(handle.read(), None)
    except (OSError, ValueError, TypeError) as exc:
        raise KeyError_(f"{path}: not a receipt key this server can read ({exc})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyError_(f"{path}: not an Ed25519 key")
    return key


def public_pem(key: Ed25519PrivateKey) -> str:
    """Return the public half of `key` as PEM: what a customer verifies with."""
    return key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode()


def _make(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    pem = Ed25519PrivateKey.generate().private_bytes(
        Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()
    )
    own = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    fd = os.open(own, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(pem)
            handle.flush()
            os.fsync(handle.fileno())
        with contextlib.suppress(FileExistsError):  # another made it first: theirs is the key
            os.link(own, path)
    finally:
        os.unlink(own)
