"""Where a local source may lie: never the host's system trees, Docker's or our own data.

A local PATH is bind-mounted into a worker and its files land in a snapshot the customer
can restore. So a PATH of `/etc`, of Docker's data root, or of anything holding the
repositories, the run secrets or the other customers' files would leak them; a PATH that is
an ancestor of those (`/var`) leaks them too. The rule is checked on the path as written
when the file is loaded, and again on the path its symlinks resolve to when a run starts.
"""

import contextlib
import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path

# The host's own trees: secrets, devices, kernel interfaces, boot files, logs, programs.
SYSTEM_TREES = (
    Path("/etc"),
    Path("/proc"),
    Path("/sys"),
    Path("/dev"),
    Path("/run"),
    Path("/boot"),
    Path("/root"),
    Path("/usr"),
    Path("/var/log"),
    Path("/var/backups"),
)


# Trees of people and add-on software: protected unless a source root lies inside them
# (`UNSTOPPABLE_SOURCE_ROOTS=/home/{customer}` opens that customer's home, not /home).
SHARED_TREES = (Path("/home"), Path("/opt"))


# Docker's data root and socket (/var/run is a link to /run); containerd keeps images there.
CONTAINER_TREES = (Path("/var/lib/docker"), Path("/var/lib/containerd"), Path("/var/run"))


# What DATA_DIR holds: repositories, caches, the ledger and each run's secrets.
DATA_PARTS = ("hot", "cold", "cache", "state", "state/secrets")

DOCKER_CONFIG = Path("/etc/docker/daemon.json")


def docker_data_root(config: Path = DOCKER_CONFIG) -> Path:
    """Return Docker's data root as its daemon.json sets it (`data-root`), else the default."""
    try:
        configured = json.loads(config.read_text()).get("data-root")
    except (OSError, ValueError, AttributeError):
        configured = None
    return (
        Path(configured)
        if isinstance(configured, str) and configured.startswith("/")
        else (Path("/var/lib/docker"))
    )


def realpath(path: str | Path) -> str:
    """Return `path` with its symlinks resolved; OSError when a link cannot be followed."""
    return os.path.realpath(path)


# A path on a hung mount (NFS, FUSE) can keep realpath waiting for minutes: each look is
# bounded, and a path whose last look has not come back is refused at once, not asked again,
# so a hung mount costs one stuck thread, not one per reload or run.
RESOLVE_SECONDS = 5.0
_STUCK: dict[str, threading.Thread] = {}
_STUCK_LOCK = threading.Lock()


def resolve(path: str | Path) -> str:
    """Return `path` with its symlinks resolved, within RESOLVE_SECONDS.

    Raises OSError when a link cannot be followed, TimeoutError when no answer comes.
    """
    key = os.path.normpath(path)
    with _STUCK_LOCK:
        stuck = _STUCK.get(key)
        if stuck is not None and stuck.is_alive():
            raise TimeoutError("no answer since an earlier look (a hung mount?)")
        _STUCK.pop(key, None)
    box: dict[str, str | BaseException] = {}

    def look() -> None:
        try:
            box["real"] = realpath(key)
        except BaseException as exc:  # handed to the caller below
            box["error"] = exc

    thread = threading.Thread(target=look, daemon=True, name="resolve a source path")
    thread.start()
    thread.join(RESOLVE_SECONDS)
    if thread.is_alive():
        with _STUCK_LOCK:
            _STUCK[key] = thread
        raise TimeoutError(f"no answer within {RESOLVE_SECONDS:.0f} s (a hung mount?)")
    if isinstance(error := box.get("error"), BaseException):
        raise error
    return str(box["real"])


@dataclass(frozen=True)
class SourceBounds:
    """The trees a local source must stay out of, and the roots each customer's must lie in."""

    protected: tuple[Path, ...]  # neither inside nor containing these
    roots: tuple[str, ...] = ("/srv/{customer}",)  # each may hold {customer}

    @classmethod
    def of(
        cls, data_dir: Path, customers_dir: Path, roots: tuple[str | Path, ...] = ()
    ) -> "SourceBounds":
        """Return the bounds of an installation with these directories.

        Each protected tree counts as written and as its symlinks resolve, and so do the
        parts of DATA_DIR that may live on another disk behind a symlink. No `roots`: the
        default `/srv/{customer}`.
        """
        trees = [data_dir, customers_dir, *CONTAINER_TREES, docker_data_root()]
        trees += [data_dir / part for part in DATA_PARTS]
        protected = {Path(os.path.normpath(t)) for t in trees}
        for tree in trees:
            with contextlib.suppress(OSError):  # an unreadable link is protected as written
                protected.add(Path(resolve(tree)))
        templates = tuple(os.path.normpath(str(r)) for r in roots) or cls.roots
        return cls(tuple(sorted(protected)), templates)

    def roots_of(self, customer: str) -> tuple[Path, ...]:
        """Return the roots `customer`'s local sources must lie in, as written and resolved."""
        found: set[Path] = set()
        for template in self.roots:
            root = Path(os.path.normpath(template.replace("{customer}", customer)))
            found.add(root)
            with contextlib.suppress(OSError):
                found.add(Path(resolve(root)))
        return tuple(sorted(found))

    def problem(self, path: str, customer: str) -> str | None:
        """Return why the absolute `path` may not be a local source of `customer`, or None."""
        where = Path(os.path.normpath(path))
        if where == Path("/"):
            return "must not be / (the whole host)"
        roots = self.roots_of(customer)
        for tree in SYSTEM_TREES + self.protected:
            if where.is_relative_to(tree):
                return f"must not be or lie inside {tree}"
        for tree in SHARED_TREES:
            opened = any(r.is_relative_to(tree) and where.is_relative_to(r) for r in roots)
            if where.is_relative_to(tree) and not opened:
                return f"must not be or lie inside {tree} (no UNSTOPPABLE_SOURCE_ROOTS opens it)"
        for tree in self.protected:
            if tree.is_relative_to(where):
                return f"must not contain {tree}"
        if not any(where.is_relative_to(root) for root in roots):
            shown = ", ".join(t.replace("{customer}", customer) for t in self.roots)
            return f"must lie inside this customer's UNSTOPPABLE_SOURCE_ROOTS ({shown})"
        return None

    def resolved_problem(self, path: str, customer: str) -> tuple[str, str | None]:
        """Return (the path with symlinks resolved, why it may not be a source or None).

        A link that cannot be followed (no permission, a stale NFS handle) is a refusal.
        """
        try:
            real = resolve(path)
        except OSError as exc:
            return path, f"cannot be resolved: {exc.strerror or exc}"
        why = self.problem(real, customer)
        if why and real != os.path.normpath(path):
            why = f"resolves to {real}, which {why}"
        return real, why
