"""A job's repository as the operator sees it: its snapshots, a restore, a check."""

from datetime import UTC, datetime
from pathlib import Path

from orchestrator.config.customer import Customer, Resource
from orchestrator.errors import RunFailed
from orchestrator.judgement import last_words
from orchestrator.model import Kind, SnapshotInfo
from orchestrator.runs import Jobs
from orchestrator.runtime.paths import RESTORE_TARGET
from orchestrator.runtime.spec import Mount
from orchestrator.rustic import commands, output
from orchestrator.sources.setup import source_path
from orchestrator.storage.layout import job_storage


def snapshots(jobs: Jobs, customer: Customer, resource: Resource) -> list[SnapshotInfo]:
    """Return the snapshots of `resource`, oldest first; raise RunFailed if rustic fails."""
    if not (job_storage(jobs.settings, customer.name, resource.name).hot / "config").exists():
        return []
    done = jobs.run_worker(
        customer,
        resource,
        Kind.SNAPSHOTS,
        datetime.now(UTC),
        commands.snapshots_args(jobs.cold),
        (),
        timeout=600,
    )
    if done.exit_code != 0:
        raise RunFailed(
            f"{customer.name}/{resource.name}: rustic snapshots failed: {last_words(done)}"
        )
    return output.parse_snapshots(done.stdout)


def restore(
    jobs: Jobs, customer: Customer, resource: Resource, target: Path, snapshot: str
) -> None:
    """Restore `snapshot` of `resource` so its files land directly in `target`.

    Raises RunFailed if `target` is not empty or rustic fails.
    """
    target = target.absolute()
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise RunFailed(f"--target {target}: must be an empty directory or not exist yet")
    if not snapshots(jobs, customer, resource):
        raise RunFailed(f"{customer.name}/{resource.name}: no snapshot to restore yet")
    target.mkdir(parents=True, exist_ok=True)
    argv = commands.restore_args(jobs.cold, snapshot, source_path(resource), RESTORE_TARGET)
    done = jobs.run_worker(
        customer,
        resource,
        Kind.RESTORE,
        datetime.now(UTC),
        argv,
        (Mount(target, RESTORE_TARGET, read_only=False),),
        timeout=None,
    )
    if done.exit_code != 0:
        raise RunFailed(f"{customer.name}/{resource.name}: restore failed: {last_words(done)}")


def check(jobs: Jobs, customer: Customer, resource: Resource, read_data: bool) -> int:
    """Run `rustic check`; return how many harmless leftover packs it found.

    Packs that no index references are what an interrupted backup uploaded before it
    stopped: garbage that `forget --prune` removes, not damage. Anything else rustic
    warns about, and every error, raises RunFailed.
    """
    done = jobs.run_worker(
        customer,
        resource,
        Kind.CHECK,
        datetime.now(UTC),
        commands.check_args(jobs.cold, read_data),
        (),
        timeout=None,
    )
    problems, leftovers = output.judge_check(done.exit_code, done.stderr)
    if problems:
        raise RunFailed(
            f"{customer.name}/{resource.name}: check failed: {problems[0]}"
            + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else "")
        )
    return leftovers
