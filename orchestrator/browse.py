"""Looking into a job's snapshots without restoring them: which one, what it holds, a file's
history across all of them, and what changed between two.

Snapshots are chosen the way an operator asks: an id prefix, `latest`, or `--as-of` (the
newest at or before a moment). Paths are shown relative to the resource's root, as the
customer knows their files.
"""

from dataclasses import dataclass
from datetime import UTC, datetime

from orchestrator.config.customer import Customer, Resource
from orchestrator.errors import RunFailed
from orchestrator.launcher import Launcher
from orchestrator.model import Kind, SnapshotInfo
from orchestrator.repository import snapshots
from orchestrator.runtime.text import CUT
from orchestrator.rustic import commands
from orchestrator.rustic.findings import Found, parse_diff, parse_find
from orchestrator.rustic.listing import Item, parse_long
from orchestrator.rustic.output import last_words
from orchestrator.sources.setup import WorkerSetup, source_path

LISTING_TIMEOUT = 3600.0  # a listing of millions of names is minutes, not hours


@dataclass(frozen=True)
class Difference:
    """One path that differs between two snapshots, with its size in each (None: absent)."""

    change: str
    path: str
    old_size: int | None
    new_size: int | None


def choose(found: list[SnapshotInfo], snapshot: str | None, as_of: datetime | None) -> SnapshotInfo:
    """Return the snapshot `snapshot` (an id prefix, `latest` or `latest~N`: the Nth before
    it) or `as_of` names, of `found`
    (oldest first); raise RunFailed saying why none or more than one is meant."""
    if not found:
        raise RunFailed("no snapshot yet")
    if as_of is not None:
        if snapshot not in (None, "latest"):
            raise RunFailed("give --snapshot or --as-of, not both")
        before = [s for s in found if s.time <= as_of]
        if not before:
            first = found[0].time.astimezone(UTC).isoformat()
            raise RunFailed(f"no snapshot at or before {as_of.isoformat()}: the first is {first}")
        return max(before, key=lambda s: s.time)
    if snapshot in (None, "latest"):
        return max(found, key=lambda s: s.time)
    if snapshot.startswith("latest~") and snapshot[7:].isdigit():
        newest, back = sorted(found, key=lambda s: s.time, reverse=True), int(snapshot[7:])
        if back >= len(newest):
            raise RunFailed(f"--snapshot {snapshot}: there are only {len(newest)} snapshot(s)")
        return newest[back]
    prefix = snapshot.lower()
    if not prefix or any(c not in "0123456789abcdef" for c in prefix):
        raise RunFailed(f"--snapshot {snapshot[:70]!r}: expected an id (or a prefix) or latest")
    matching = [s for s in found if s.id.startswith(prefix)]
    if len(matching) > 1:
        raise RunFailed(f"--snapshot {prefix}: {len(matching)} snapshots start so; give more of it")
    if not matching:
        raise RunFailed(f"--snapshot {prefix}: no such snapshot")
    return matching[0]


def select(
    launcher: Launcher,
    customer: Customer,
    resource: Resource,
    *chosen: tuple[str | None, datetime | None],
) -> list[SnapshotInfo]:
    """Return the snapshot each (snapshot, as_of) of `chosen` means (see `choose`), from one
    listing of the repository."""
    found = snapshots(launcher, customer, resource)
    try:
        return [choose(found, snapshot, as_of) for snapshot, as_of in chosen]
    except RunFailed as exc:
        raise RunFailed(f"{customer.job(resource)}: {exc}") from None


def listing(
    launcher: Launcher, customer: Customer, resource: Resource, snapshot: str, path: str
) -> list[Item]:
    """Return every entry under `path` (relative to the resource's root) of `snapshot`."""
    under = _parts(path)
    root = "/".join([source_path(resource).rstrip("/"), *under]) or "/"
    argv = commands.ls_args(launcher.cold, snapshot, root)
    stdout = _run(launcher, customer, resource, argv, "ls")
    # rustic names each entry relative to the folder listed: shown from the resource's root.
    return [
        Item("/".join([*under, item.path]), item.type, item.size, item.mtime)
        for item in parse_long(stdout)
    ]


def history(
    launcher: Launcher, customer: Customer, resource: Resource, pattern: str
) -> list[Found]:
    """Return, snapshot by snapshot, the entries whose path matches the glob `pattern`."""
    if not pattern or "\0" in pattern:
        raise RunFailed("PATTERN: give a glob, such as wp-config.php or uploads/**/*.jpg")
    stdout = _run(launcher, customer, resource, commands.find_args(launcher.cold, pattern), "find")
    base = source_path(resource).strip("/")
    inside = [f for f in parse_find(stdout) if _under(f.item.path, base)]  # not its parents
    return [Found(f.snapshot, f.time, _relative(f.item, base)) for f in inside]


def difference(
    launcher: Launcher, customer: Customer, resource: Resource, old: str, new: str
) -> list[Difference]:
    """Return what was added, removed or changed from snapshot `old` to `new`, with sizes."""
    root = source_path(resource)
    argv = commands.diff_args(launcher.cold, old, new, root)
    changes = parse_diff(_run(launcher, customer, resource, argv, "diff"))
    sizes = [
        {i.path: i.size for i in listing(launcher, customer, resource, s, "") if i.type == "file"}
        for s in (old, new)
    ]
    # rustic names each path relative to the folder compared, the resource's root.
    return [
        Difference(c.change, c.path, sizes[0].get(c.path), sizes[1].get(c.path)) for c in changes
    ]


def _run(
    launcher: Launcher, customer: Customer, resource: Resource, argv: list[str], what: str
) -> str:
    launcher.wait_out_deleting(customer, resource)
    done = launcher.run_worker(
        customer,
        resource,
        Kind.SNAPSHOTS,
        datetime.now(UTC),
        WorkerSetup(argv, ()),
        LISTING_TIMEOUT,
    )
    if done.timed_out or done.exit_code != 0:
        raise RunFailed(f"{customer.job(resource)}: rustic {what} failed: {last_words(done)}")
    if done.stdout.startswith(CUT):  # never a partial answer passed off as the whole
        raise RunFailed(
            f"{customer.job(resource)}: rustic {what} printed more than a worker's log keeps: "
            "narrow it (a PATH, a PATTERN), or raise UNSTOPPABLE_WORKER_LOG_SIZE"
        )
    return done.stdout


def _parts(path: str) -> list[str]:
    """Return the names of `path` (relative to the resource's root); RunFailed on `..`."""
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if ".." in parts or "\0" in path:
        raise RunFailed(f"PATH {path[:70]!r}: must name a folder inside the resource (no '..')")
    return parts


def _under(path: str, base: str) -> bool:
    path = path.lstrip("/")
    return not base or path == base or path.startswith(f"{base}/")


def _strip(path: str, base: str) -> str:
    path = path.lstrip("/")
    if path == base:
        return "."
    return path.removeprefix(f"{base}/") if base else path


def _relative(item: Item, base: str) -> Item:
    return Item(_strip(item.path, base), item.type, item.size, item.mtime)
