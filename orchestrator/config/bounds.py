"""Where a local source may lie: never the host's system trees, Docker's or our own data.

A local PATH is bind-mounted into a worker and its files land in a snapshot the customer
can restore. So a PATH of `/etc`, of Docker's data root, or of anything holding the
repositories, the run secrets or the other customers' files would leak them; a PATH that is
an ancestor of those (`/var`) leaks them too. The rule is checked on the path as written
when the file is loaded, and again on the path its symlinks resolve to when a run starts.
"""

import json
import os
from dataclasses import dataclass
from pathlib import Path

# The host's own trees: secrets, devices, kernel interfaces, boot files.
SYSTEM_TREES = (
    Path("/etc"),
    Path("/proc"),
    Path("/sys"),
    Path("/dev"),
    Path("/run"),
    Path("/boot"),
)


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


@dataclass(frozen=True)
class SourceBounds:
    """The trees a local source must stay out of, and the roots it must lie in (if any)."""

    protected: tuple[Path, ...]  # neither inside nor containing these
    roots: tuple[Path, ...] = ()  # when set, the source must lie inside one of them

    @classmethod
    def of(
        cls, data_dir: Path, customers_dir: Path, roots: tuple[Path, ...] = ()
    ) -> "SourceBounds":
        """Return the bounds of an installation with these directories.

        Each protected tree counts as written and as its symlinks resolve, and so do the
        parts of DATA_DIR that may live on another disk behind a symlink.
        """
        trees = [data_dir, customers_dir, *CONTAINER_TREES, docker_data_root()]
        trees += [data_dir / part for part in DATA_PARTS]
        protected = {Path(os.path.normpath(t)) for t in trees}
        protected |= {Path(os.path.realpath(t)) for t in trees}
        resolved_roots = {Path(os.path.realpath(r)) for r in roots}
        return cls(tuple(sorted(protected)), tuple(sorted(resolved_roots)))

    def problem(self, path: str) -> str | None:
        """Return why the absolute `path` may not be a local source, or None if it may."""
        where = Path(os.path.normpath(path))
        if where == Path("/"):
            return "must not be / (the whole host)"
        for tree in SYSTEM_TREES + self.protected:
            if where.is_relative_to(tree):
                return f"must not be or lie inside {tree}"
        for tree in self.protected:
            if tree.is_relative_to(where):
                return f"must not contain {tree}"
        if self.roots and not any(where.is_relative_to(root) for root in self.roots):
            return (
                "must lie inside UNSTOPPABLE_SOURCE_ROOTS (" + ", ".join(map(str, self.roots)) + ")"
            )
        return None

    def resolved_problem(self, path: str) -> tuple[str, str | None]:
        """Return (the path with symlinks resolved, why it may not be a source or None)."""
        real = os.path.realpath(path)
        why = self.problem(real)
        if why and real != os.path.normpath(path):
            why = f"resolves to {real}, which {why}"
        return real, why
