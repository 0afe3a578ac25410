"""How one backup worker starts: its argv, source mounts and extra secret files.

A local directory is bind-mounted read-only at its real path; a remote source is mounted by
the worker itself with rclone, after its certificate was pinned here when asked to be.
"""

import logging
import os
import ssl
import stat
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import SecretStr

from orchestrator import deadline
from orchestrator.config.bounds import RESOLVE_SECONDS, SourceBounds
from orchestrator.config.confinement import Confinement
from orchestrator.config.customer import Customer, Resource
from orchestrator.config.key_files import named_in, read_key_file
from orchestrator.config.names import env_prefix
from orchestrator.config.source import FtpsSource, LocalSource, SourceType
from orchestrator.errors import RunStopped, SecretError
from orchestrator.model import Outcome, Reason, Result
from orchestrator.runtime.spec import Mount
from orchestrator.rustic import commands
from orchestrator.sources import remote as sources
from orchestrator.sources.guard import Floor
from orchestrator.sources.targets import vetted
from orchestrator.sources.tls_pin import DEADLINE_SECONDS, fingerprint, server_certificate

log = logging.getLogger(__name__)

REMOTE_ENTRYPOINT = "/usr/local/bin/unstoppable-remote"

LOCAL_ENTRYPOINT = "/usr/local/bin/unstoppable-local"


@dataclass(frozen=True)
class WorkerSetup:
    """How to start one backup worker: argv, source mounts, extra secret files."""

    argv: list[str]
    mounts: tuple[Mount, ...]
    files: dict[str, SecretStr] = field(default_factory=dict)
    entrypoint: tuple[str, ...] = ()
    remote: bool = False
    repositories: bool = True  # False: a worker that runs no rustic sees no repository


def source_path(resource: Resource) -> str:
    """Return where the worker sees the resource, which is the path its snapshots record.

    A local directory keeps its real host path; a remote one is mounted at /remote/<name>.
    """
    return resource.path if resource.type is SourceType.LOCAL else f"/remote/{resource.name}"


def local_source(bounds: SourceBounds, path: str, customer: str) -> tuple[str, str]:
    """Return the directory PATH names now, and its `device:inode`.

    Raises RunStopped saying why it cannot be backed up.

    PATH is resolved at run time: a symlink swapped in since the file was loaded must not
    point the worker at /etc. The resolved path is what is mounted.
    """
    real, why = bounds.resolved_problem(path, customer)
    if why:
        raise RunStopped(Outcome(Result.FAILURE, Reason.SOURCE_REFUSED, f"PATH {why}"))
    try:  # a hung mount must hold this one run, not its slot, forever
        info = deadline.call(lambda: os.stat(real), RESOLVE_SECONDS, "PATH")
        is_dir = stat.S_ISDIR(info.st_mode)
    except OSError:
        is_dir = False
    if not is_dir:
        raise RunStopped(
            Outcome(
                Result.FAILURE,
                Reason.SOURCE_MISSING,
                f"PATH {path[:200]} is not a directory on this host",
            )
        )
    return real, f"{info.st_dev}:{info.st_ino}"


def local_launch(
    cold: list[str],
    customer: Customer,
    resource: Resource,
    real: str,
    identity: str,
    guard: Floor | None,
    command: list[str] | None = None,
) -> WorkerSetup:
    """Return the launch of a backup (or `command`) on a directory of this host.

    `real` is PATH with its symlinks resolved: it is mounted, at PATH, so the snapshot
    records the path as configured. `identity` (`device:inode` of `real` when it was
    checked) lets the worker refuse a directory swapped for a symlink before the mount.
    Without a `guard` (a restore drill) the worker checks no floor.
    """
    argv = [
        resource.path,
        identity,
        *_guard_argv(guard),
        "--",
        *(
            command
            or [
                "rustic",
                *commands.backup_args(cold, customer.name, resource.path, resource.excludes),
            ]
        ),
    ]
    return WorkerSetup(
        argv, (Mount(Path(real), resource.path, read_only=True),), entrypoint=(LOCAL_ENTRYPOINT,)
    )


def target_launch(target: Path, identity: str, inside: str, command: list[str]) -> WorkerSetup:
    """Return the launch of `command` writing into the host directory `target` at `inside`.

    Docker follows symlinks when it mounts, after the target was checked: the worker runs
    `command` only if what it sees at `inside` still has `identity` (`device:inode`), as a
    local source's worker does (exit 6 otherwise).
    """
    return WorkerSetup(
        [inside, identity, *_guard_argv(None), "--", *command],
        (Mount(target, inside, read_only=False),),
        entrypoint=(LOCAL_ENTRYPOINT,),
    )


def remote_launch(
    cold: list[str],
    customer: Customer,
    resource: Resource,
    password: SecretStr | None,
    guard: Floor | None,
    confinement: Confinement,
    command: list[str] | None = None,
) -> WorkerSetup:
    """Return the launch of a remote backup (or `command`); RunStopped says what prevents it.

    Before anything connects, HOST is resolved and each address judged (a refusal is
    `source_refused`), and the key files are read from the customer's key directory (a
    refusal is `secrets`). The worker refuses to back up a source that holds less than
    `guard` asks for; without a guard (a restore drill) it checks no floor.
    """
    source = resource.source
    if isinstance(source, LocalSource):
        raise TypeError(f"{resource.name} is a local source")
    prefix = env_prefix(resource.name)
    addresses, refused = vetted(source.HOST, source.PORT, confinement.private_targets)
    if refused is not None:
        raise RunStopped(Outcome(Result.FAILURE, refused[0], f"{prefix}HOST: {refused[1]}"))
    # What we connect to ourselves, or pin for rclone, is the address judged just now: a
    # second answer of the customer's DNS could point inside (rebinding). SFTP's identity
    # is its pinned host key, so rclone can dial the address; FTPS checks the certificate
    # against the name, so rclone resolves that itself (README: the egress rule).
    address = addresses[0]
    texts = {}
    for key, path in named_in(source):
        try:
            texts[key] = read_key_file(path, confinement.keys_of(customer.name))
        except SecretError as exc:
            raise RunStopped(
                Outcome(Result.FAILURE, Reason.SECRETS, f"{prefix}{key}: {exc}")
            ) from None
    pinned = pin_certificate(source, address) if isinstance(source, FtpsSource) else None
    plan = sources.remote_plan(source, password, pinned, texts, address)
    if plan.insecure:
        log.warning(
            "%s/%s: TLS_VERIFY=false: the certificate of %s is not verified",
            customer.name,
            resource.name,
            source.HOST,
        )
    mount_point = source_path(resource)
    argv = [
        resource.path,
        mount_point,
        *_guard_argv(guard),
        "--",
        *(
            command
            or [
                "rustic",
                *commands.backup_args(
                    cold, customer.name, mount_point, resource.excludes, remote=True
                ),
            ]
        ),
    ]
    # CONNECTIONS rides in the run's file directory, not in argv: a worker image older than
    # this code ignores the file (and reads one file at a time) instead of failing on an
    # argument it does not know. Not a secret; it simply travels with the run's files.
    files = {**plan.files, sources.CONNECTIONS_FILE: SecretStr(str(source.CONNECTIONS))}
    return WorkerSetup(argv, (), files, entrypoint=(REMOTE_ENTRYPOINT,), remote=True)


def _guard_argv(guard: Floor | None) -> list[str]:
    return guard.argv() if guard else ["-", "0", "1"]


def pin_certificate(source: FtpsSource, address: str | None = None) -> str | None:
    """Return the server certificate (PEM) matching TLS_FINGERPRINT, None if none is pinned.

    Raises RunStopped when the server cannot be reached or presents another certificate.
    """
    want, host = source.TLS_FINGERPRINT, source.HOST
    if not want:
        return None
    implicit = source.TLS == "implicit"
    try:
        # The watchdog inside bounds the conversation; this bounds name lookup and connect.
        der = deadline.call(
            lambda: server_certificate(host, source.PORT, implicit, address=address),
            DEADLINE_SECONDS + 5,
            f"certificate of {host}",
        )
    except ssl.SSLError as exc:
        # OpenSSL's own name for what failed, never the text around it.
        why = exc.reason or str(exc) or type(exc).__name__
        raise RunStopped(
            Outcome(Result.FAILURE, Reason.TLS, f"TLS with {host} failed: {why}")
        ) from None
    except OSError as exc:
        # The system's words (strerror) or ours (tls_pin), never the server's.
        why = exc.strerror or str(exc) or type(exc).__name__
        raise RunStopped(
            Outcome(Result.FAILURE, Reason.CONNECT, f"cannot reach {host}: {why}")
        ) from None
    if fingerprint(der).upper() != want.upper():
        raise RunStopped(
            Outcome(
                Result.FAILURE,
                Reason.TLS,
                f"{host} presented certificate "
                f"{fingerprint(der)}, which does not match TLS_FINGERPRINT",
            )
        )
    return ssl.DER_cert_to_PEM_cert(der)
