"""What every command starts from: the settings, the customers, and runs on Docker."""

import os
import stat
from datetime import datetime
from pathlib import Path

from orchestrator.config.customer import Customers
from orchestrator.config.customer_file import load_customers
from orchestrator.config.settings import Settings
from orchestrator.config.settings_file import load_settings
from orchestrator.errors import RunFailed
from orchestrator.launcher import Launcher
from orchestrator.model import Kind, Result, RunRecord
from orchestrator.reporting.ledger import Ledger
from orchestrator.runs import Jobs
from orchestrator.runtime.protocol import Runtime
from orchestrator.secrets.files import resolver_for
from orchestrator.storage.layout import state_dir


def load() -> tuple[Settings, Customers]:
    settings = load_settings()
    return settings, load_customers(
        settings.CUSTOMERS_DIR, settings.bucket_prefix, settings.confinement
    )


def open_runtime(settings: Settings) -> Runtime:
    """Return the runtime UNSTOPPABLE_RUNTIME names: this engine, or its swarm."""
    if settings.RUNTIME == "swarm":
        from orchestrator.runtime.swarm import SwarmRuntime

        return SwarmRuntime()
    from orchestrator.runtime.docker import DockerRuntime

    return DockerRuntime()


def launcher_on_runtime(settings: Settings) -> Launcher:
    """Return what starts workers on the configured runtime: restores, checks, listings."""
    return Launcher(settings, open_runtime(settings), resolver_for(settings))


def jobs_on_runtime(settings: Settings, ledger: Ledger | None = None) -> Jobs:
    """Return runs on the configured runtime that remember through `ledger` (or the host's)."""
    ledger = ledger or Ledger(state_dir(settings))
    return Jobs(settings, open_runtime(settings), ledger, resolver=resolver_for(settings))


def as_of_time(text: str | None) -> datetime | None:
    """Return the moment `--as-of` names, with its zone; RunFailed if it names none."""
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise RunFailed(f"--as-of {text[:40]!r}: expected an ISO 8601 time") from None
    if moment.tzinfo is None:
        raise RunFailed("--as-of: give the time zone too (2026-11-29T12:00:00Z or +01:00)")
    return moment


def summary_line(record: RunRecord) -> str:
    outcome = record.outcome
    seconds = (record.ended - record.started).total_seconds()
    kind = "" if record.kind is Kind.BACKUP else f" {record.kind.value}"
    head = f"{record.job}{kind}: {outcome.result.value}"
    if outcome.reason:
        head += f" ({outcome.reason.value})"
    detail = outcome.message
    if outcome.summary and outcome.result is Result.SUCCESS:
        s = outcome.summary
        detail = (
            f"snapshot {s.snapshot_id[:8]}: {s.files_new} new, {s.files_changed} changed, "
            f"{size(s.data_added)} added of {size(s.bytes_processed)}"
        )
        if "; " in outcome.message:  # what followed the backup: a held retention, say
            detail += "; " + outcome.message.split("; ", 1)[1]
    return f"{head}: {detail} in {seconds:.1f}s"


def size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def append_lines(path: Path, text: str) -> None:
    """Append `text` to the file at `path` at once: a reader sees it before or after, whole.

    The new file replaces the old by rename, with the old one's mode; a file without a
    final line break gets one first.
    """
    old = path.read_text()
    separator = "" if not old or old.endswith("\n") else "\n"
    fresh = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fresh.write_text(old + separator + text)
    os.chmod(fresh, stat.S_IMODE(path.stat().st_mode))
    os.replace(fresh, path)
