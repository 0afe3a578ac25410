"""Secrets: resolved just before a run, handed to the worker as files, removed after it."""

import os
import shutil
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from pydantic import SecretStr

from orchestrator.customer import SecretRef
from orchestrator.errors import SecretError


def resolve(ref: SecretRef, key: str) -> SecretStr:
    """Return the value `ref` stands for; raise SecretError naming `key` if there is none."""
    if ref.literal is not None:
        return ref.literal
    raise SecretError(
        f"{key}: infisical:{ref.infisical}: Infisical is not supported yet; use a literal"
    )


@contextmanager
def secret_files(base: Path, run: str, files: Mapping[str, SecretStr]) -> Iterator[Path]:
    """Write `files` (name -> secret) into a private directory; remove it on exit.

    The directory is readable by its owner only and each file is created exclusively with
    mode 0600, so no other local user ever sees a secret, not even briefly.
    """
    base.mkdir(parents=True, exist_ok=True, mode=0o700)
    directory = base / run
    if directory.exists():
        shutil.rmtree(directory)  # left behind by a crash; its run is over
    directory.mkdir(mode=0o700)
    try:
        for name, value in files.items():
            fd = os.open(directory / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(value.get_secret_value())
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)
