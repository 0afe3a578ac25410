"""A restore back where the source lives: into a new folder beside the live files, or over them.

For a remote resource the snapshot is restored into a private folder of the data directory
first, then a second worker copies it to the customer's FTPS or SFTP server with rclone, the
way a backup reads from it: the same pinned certificate or host key, the same secret files,
the same deadline. That second worker mounts no repository. For a local resource, a new
folder is restored straight into the source directory; writing over live files goes through
the private folder too.

Over live files (`--overwrite`), a first look lists the live files the restore would
replace; the operator is told, and the writing worker checks just before it writes that the
live files it replaces are still exactly those (else it writes nothing).
"""

import contextlib
import os
import re
import shutil
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from pydantic import SecretStr

from orchestrator.browse import select
from orchestrator.config.customer import Customer, Resource
from orchestrator.config.source import SourceType
from orchestrator.errors import RunFailed, RunStopped
from orchestrator.launcher import Launcher
from orchestrator.model import Kind, SnapshotInfo
from orchestrator.repository import QUIET, Watch, only_path, restore, snapshot_selector
from orchestrator.runtime.exit_codes import ExitCode
from orchestrator.runtime.protocol import Finished
from orchestrator.runtime.spec import Mount
from orchestrator.rustic.output import last_words
from orchestrator.sources.rclone_log import failures, sent
from orchestrator.sources.remote import unreachable
from orchestrator.sources.setup import WorkerSetup, local_source
from orchestrator.storage.layout import scratch

PUT = "/usr/local/bin/unstoppable-put"
PUT_LOG = "put.log"  # rclone's log in the report folder: statistics, and errors by file
RESERVE = 2**30  # what a restore's private copy leaves free at least (or 5 % of the disk)
STAGED = "/staged"
REPORT = "/report"

Mounts = tuple[Mount, ...]
Secret = dict[str, SecretStr]


@dataclass(frozen=True)
class Put:
    """What a restore to the source did."""

    snapshot: str  # the snapshot's whole id
    destination: str  # where it went: HOST:PATH/FOLDER, or the local folder
    files: int
    bytes: int
    replaced: tuple[str, ...] = ()  # live files written over, relative to the destination
    not_written: tuple[str, ...] = ()  # symlinks, FIFOs, devices: rclone puts none on a server


Announce = Callable[[str, tuple[str, ...]], None]  # (destination, live files it replaces)


def to_source(
    launcher: Launcher,
    customer: Customer,
    resource: Resource,
    snapshot: str,
    only: tuple[str, ...] = (),
    into: str | None = None,
    overwrite: bool = False,
    announce: Announce = lambda _where, _files: None,
    watch: Watch = QUIET,
) -> Put:
    """Restore `snapshot` of `resource` (or just `only`) back to its source.

    Into a new folder `restored-<id>-<UTC time>` under the resource's PATH, or `into`; with
    `overwrite`, into `into` or PATH itself even where files exist: `announce(destination,
    files)` is told which live files will be replaced before anything is written. Raises
    RunFailed saying what to fix; nothing live is changed then.
    """
    only = tuple(only_path(p) for p in only)
    folder = _folder(into) if into is not None else None
    (chosen,) = select(launcher, customer, resource, (snapshot_selector(snapshot), None))
    if chosen.summary is not None and not only:
        watch.expect(chosen.summary.files_total or None, chosen.summary.bytes_processed)
    if folder is None:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        folder = "." if overwrite else f"restored-{chosen.id[:8]}-{stamp}"
    return _Back(
        launcher, customer, resource, chosen, only, folder, overwrite, announce, watch
    ).run()


@dataclass
class _Back:
    """One restore on its way back to the source."""

    launcher: Launcher
    customer: Customer
    resource: Resource
    chosen: SnapshotInfo
    only: tuple[str, ...]
    folder: str  # under PATH; "." is PATH itself
    overwrite: bool
    announce: Announce
    watch: Watch

    @property
    def job(self) -> str:
        return str(self.customer.job(self.resource))

    def run(self) -> Put:
        """Restore into a private folder, then put it back (see the module's words)."""
        local = self.resource.type is SourceType.LOCAL
        where, argv, mounts, secret = self._local() if local else self._remote()
        self._room()
        with _staging(self.launcher, self.customer, self.resource) as (tree, report):
            files, size = self._restore(tree)
            replaced: tuple[str, ...] = ()
            if self.overwrite:
                replaced = self._replaced(argv, mounts, secret, tree, report)
                self.announce(where, replaced)
            mode = "overwrite" if self.overwrite else "new"
            self._put([*argv, mode], mounts, secret, tree, report, where)
            odd = () if local else unputtable(tree)
            return Put(self.chosen.id, where, files, size, replaced, odd)

    def _local(self) -> tuple[str, list[str], Mounts, Secret]:
        """Return where a local put goes, its worker's arguments, mounts and files.

        PATH is mounted read-write for the put alone, checked again there by device and
        inode; no repository is mounted beside it (a symlink in it leads nowhere else).
        """
        resource = self.resource
        try:
            real, identity = local_source(
                self.launcher.settings.bounds, resource.path, self.customer.name
            )
        except RunStopped as exc:
            raise RunFailed(f"{self.job}: {exc.outcome.message}") from None
        dest = Path(real) if self.folder == "." else Path(real) / self.folder
        if not self.overwrite and os.path.lexists(dest):
            raise RunFailed(_exists(str(dest)))  # said before the restore; the put checks again
        live = (Mount(Path(real), resource.path, read_only=False),)
        return str(dest), ["local", resource.path, identity, self.folder], live, {}

    def _remote(self) -> tuple[str, list[str], Mounts, Secret]:
        resource = self.resource
        path = resource.path.rstrip("/") or "/"
        dest = path if self.folder == "." else f"{path.rstrip('/')}/{self.folder}"
        where = f"{resource.source.HOST}:{dest}"  # type: ignore[union-attr]
        try:  # the backup's own rules: addresses judged, certificate pinned, secrets resolved
            secret = self.launcher.setup(self.customer, resource, None, ["true"]).files
        except RunStopped as exc:
            raise RunFailed(f"{self.job}: {exc.outcome.message}") from None
        return where, ["remote", resource.path, self.folder], (), secret

    def _room(self) -> None:
        """Refuse a restore whose private copy would fill the data directory's disk, where
        every customer's hot repository and the ledger live (a --path selection's size is
        not known before: rustic stops when the disk is full)."""
        summary = self.chosen.summary
        if summary is None or self.only:
            return
        data = self.launcher.settings.DATA_DIR
        disk = shutil.disk_usage(data)
        reserve = max(RESERVE, disk.total // 20)
        if summary.bytes_processed + reserve > disk.free:
            raise RunFailed(
                f"{self.job}: the restore is first made in {data}/restores "
                f"({summary.bytes_processed // 2**20} MiB), which would leave less than "
                f"{reserve // 2**20} MiB free there ({disk.free // 2**20} MiB now): free "
                "space, or restore a part with --path"
            )

    def _restore(self, target: Path) -> tuple[int, int]:
        return restore(
            self.launcher, self.customer, self.resource, target, self.chosen.id, self.only,
            staging=True, watch=self.watch,
        )  # fmt: skip

    def _replaced(
        self, argv: list[str], mounts: Mounts, secret: Secret, tree: Path, report: Path
    ) -> tuple[str, ...]:
        """Return the live files the put would replace, as its worker lists them now."""
        done = self._worker([*argv, "list"], mounts, secret, tree, report)
        self._judge(done, argv[1], report)
        try:
            text = (report / "replaced").read_text(errors="surrogateescape")
        except OSError:
            raise RunFailed(f"{self.job}: the live files could not be listed") from None
        return tuple(name for name in text.split("\0") if name)

    def _put(
        self, argv: list[str], mounts: Mounts, secret: Secret, tree: Path, report: Path, where: str
    ) -> None:
        if argv[-1] == "overwrite":  # what the operator was told, checked again before writing
            shutil.copyfile(report / "replaced", report / "announced")
        log = report / PUT_LOG
        with self.watch.watch(lambda: sent(log)):
            done = self._worker(argv, mounts, secret, tree, report)
        self._judge(done, where, report)

    def _worker(
        self, argv: list[str], mounts: Mounts, secret: Secret, tree: Path, report: Path
    ) -> Finished:
        own = (Mount(tree, STAGED, read_only=True), Mount(report, REPORT, read_only=False))
        launch = WorkerSetup(argv, own + mounts, secret, entrypoint=(PUT,), repositories=False)
        timeout = self.launcher.settings.job_timeout_seconds
        when = datetime.now(UTC)
        return self.launcher.run_worker(
            self.customer, self.resource, Kind.RESTORE, when, launch, timeout
        )

    def _judge(self, done: Finished, where: str, report: Path) -> None:
        """Raise RunFailed saying what went wrong if the put's worker did not succeed."""
        job, code = self.job, done.exit_code
        if done.timed_out:
            raise RunFailed(
                f"{job}: {where}: stopped after UNSTOPPABLE_JOB_TIMEOUT "
                f"({self.launcher.settings.JOB_TIMEOUT}): what it wrote by then is there"
            )
        if code == 0:
            return
        if code == ExitCode.EXISTS:
            raise RunFailed(_exists(where))
        if code == ExitCode.CHANGED:
            raise RunFailed(
                f"{job}: {where}: its live files changed after they were announced; "
                "nothing was written: run the restore again"
            )
        if code == ExitCode.SWAPPED:
            raise RunFailed(f"{job}: PATH was replaced (by a symlink?) during the restore")
        if code == ExitCode.UNREADABLE:
            raise RunFailed(f"{job}: {where}: {unreachable(done.stderr)[1]}")
        if code == ExitCode.PUT:
            failed = failures(report / PUT_LOG) or last_words(done)
            raise RunFailed(f"{job}: {where}: some files could not be written: {failed}")
        raise RunFailed(f"{job}: restore to the source failed: {last_words(done)}")


def _exists(where: str) -> str:
    return (
        f"{where}: exists already; --into names a new folder, "
        "or add --overwrite to write into it (it says first what it replaces)"
    )


def _folder(into: str) -> str:
    """Return `--into` as a folder under PATH; RunFailed if it is not one."""
    parts = into.split("/")
    if (
        not into
        or into.startswith("/")
        or any(p in ("", ".", "..") for p in parts)
        or len(into) > 255
        or re.search(r"[\x00-\x1f\x7f]", into)
    ):
        raise RunFailed(
            f"--into {into[:70]!r}: give a folder under the resource's PATH, such as "
            "restored or old/site (no '..', no leading '/')"
        )
    return into


def unputtable(tree: Path) -> tuple[str, ...]:
    """Return what under `tree` is neither a file nor a folder (symlinks, FIFOs, sockets,
    devices), relative to it: rclone puts only files and folders on a server."""
    found = []
    for folder, dirs, names in os.walk(tree):
        for name in (*dirs, *names):
            full = os.path.join(folder, name)
            mode = os.lstat(full).st_mode
            if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
                found.append(os.path.relpath(full, tree))
    return tuple(sorted(found))


@contextlib.contextmanager
def _staging(
    launcher: Launcher, customer: Customer, resource: Resource
) -> Iterator[tuple[Path, Path]]:
    """Yield (tree, report): where the tree is restored, and the put's lists."""
    with scratch(launcher.settings, customer.name, resource.name) as own:
        (own / "report").mkdir(mode=0o700)
        yield own / "tree", own / "report"
