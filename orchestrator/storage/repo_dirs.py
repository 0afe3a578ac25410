"""The host directories of one job's repositories: plain paths, no settings, no I/O."""

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class JobStorage:
    """The host paths of one customer × resource."""

    hot: Path
    cold: Path | None  # None when the cold repository is in S3
    cache: Path

    @property
    def snapshot_files(self) -> Path:
        """Return the hot repository's folder of snapshot files (one per snapshot)."""
        return self.hot / "snapshots"
