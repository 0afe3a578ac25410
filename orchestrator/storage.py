"""Where each job's repositories, cache and run state live (DESIGN.md, Storage)."""

from dataclasses import dataclass
from pathlib import Path

from orchestrator.settings import Settings


@dataclass(frozen=True)
class JobStorage:
    """The host paths of one customer × resource."""

    hot: Path
    cold: Path | None  # None when the cold repository is in S3
    cache: Path


def job_storage(settings: Settings, customer: str, resource: str) -> JobStorage:
    """Return the storage paths of `customer`/`resource`."""
    data = settings.DATA_DIR
    cold = data / "cold" / customer / resource if settings.COLD_BACKEND == "local" else None
    return JobStorage(
        data / "hot" / customer / resource, cold, data / "cache" / customer / resource
    )


def state_dir(settings: Settings) -> Path:
    """Return the directory of the run ledger and other daemon state."""
    return settings.DATA_DIR / "state"


def secrets_dir(settings: Settings) -> Path:
    """Return the directory under which each run's secret files live while it runs."""
    return state_dir(settings) / "secrets"
