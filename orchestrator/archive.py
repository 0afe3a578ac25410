"""A snapshot as one tar archive: into a file beside which nothing is staged, or down a pipe.

rustic `dump` writes the archive. For a file, the worker writes into a new private folder
beside it, and the archive takes its name by a hard link. For `-`, the worker writes into
a FIFO in a private folder of the data directory, read here and copied to stdout as it
comes: nothing of the archive is ever on the backup server's disk.
"""

import os
import secrets
import select
import shutil
import stat
import tarfile
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from orchestrator.config.bounds import SYSTEM_TREES
from orchestrator.config.customer import Customer, Resource
from orchestrator.errors import RunFailed
from orchestrator.launcher import Launcher
from orchestrator.model import Kind
from orchestrator.repository import NO_SNAPSHOTS, QUIET, Watch, only_path, snapshot_selector
from orchestrator.runtime.exit_codes import ExitCode
from orchestrator.runtime.paths import RESTORE_TARGET
from orchestrator.runtime.protocol import Finished
from orchestrator.rustic import commands
from orchestrator.rustic.output import last_words
from orchestrator.sources.setup import source_path, target_launch
from orchestrator.storage.layout import job_storage, scratch
from orchestrator.storage.target import check_target, open_target

CHUNK = 1 << 20
POLL_MS = 1000

ARCHIVE = "archive"  # the file's name in the run's own directory, before it takes its own


def archive(
    launcher: Launcher,
    customer: Customer,
    resource: Resource,
    file: Path,
    snapshot: str,
    only: tuple[str, ...] = (),
    watch: Watch = QUIET,
) -> int:
    """Write `snapshot` of `resource` (or just `only`) as one tar archive at `file` (`.tar`,
    or `.tar.gz`/`.tgz` gzipped); return its size.

    The worker writes into a new private directory beside `file` (the same checks as a
    restore target), and the archive then takes its name by a hard link, which never
    replaces a file: `file` must not exist. Raises RunFailed saying what to fix.
    """
    only = tuple(only_path(path) for path in only)
    snapshot = snapshot_selector(snapshot)
    file = file.absolute()
    if not file.name.endswith((".tar", ".tar.gz", ".tgz")):
        raise RunFailed(f"--archive {file}: name it FILE.tar, or FILE.tar.gz to gzip it")
    if os.path.lexists(file):
        raise RunFailed(f"--archive {file}: exists already; an archive never replaces a file")
    if not (job_storage(launcher.settings, customer.name, resource.name).hot / "config").exists():
        raise RunFailed(f"{customer.job(resource)}: no snapshot to restore yet")
    launcher.wait_out_deleting(customer, resource)
    own = file.with_name(f".{file.name[:200]}.unstoppable-{secrets.token_hex(4)}")
    try:
        new = check_target(own, launcher.settings.bounds.protected + SYSTEM_TREES)
        identity = open_target(own, new)
    except RunFailed as exc:  # said of the private folder: told of the archive asked for
        raise RunFailed(f"--archive {file}: {str(exc).split(': ', 1)[-1]}") from None
    try:
        inside = f"{RESTORE_TARGET}/{ARCHIVE}"
        gzip = not file.name.endswith(".tar")
        argv = commands.dump_args(
            launcher.cold, snapshot, source_path(resource), inside, gzip, only
        )
        launch = target_launch(own, identity, RESTORE_TARGET, ["rustic", *argv])
        with watch.watch(lambda: (None, _size(own / ARCHIVE))):
            done = launcher.run_worker(
                customer, resource, Kind.RESTORE, datetime.now(UTC), launch, None
            )
        if done.exit_code == ExitCode.SWAPPED:
            raise RunFailed(f"--archive {file}: its folder was replaced while it was written")
        if done.exit_code != 0:
            if NO_SNAPSHOTS in done.stderr:
                raise RunFailed(f"{customer.job(resource)}: no snapshot to restore yet")
            raise RunFailed(f"{customer.job(resource)}: archive failed: {last_words(done)}")
        return _name_archive(own, identity, file, bool(only))
    finally:
        shutil.rmtree(own, ignore_errors=True)


def _size(path: Path) -> int:
    try:
        return os.lstat(path).st_size
    except OSError:
        return 0


def _name_archive(own: Path, identity: str, file: Path, selected: bool) -> int:
    """Give the archive the worker wrote in `own` the name `file`; return its size.

    Everything is done through a descriptor of `own`, checked to be the very directory
    made for it (someone able to rename it in FILE's folder cannot swap in their own).
    """
    try:
        fd = os.open(own, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        raise RunFailed(f"--archive {file}: its private folder is gone") from None
    try:
        info = os.fstat(fd)
        if f"{info.st_dev}:{info.st_ino}" != identity:
            raise RunFailed(f"--archive {file}: its private folder was replaced")
        try:
            written = os.stat(ARCHIVE, dir_fd=fd, follow_symlinks=False)
        except FileNotFoundError:
            raise RunFailed(f"--archive {file}: the worker wrote no archive") from None
        if not stat.S_ISREG(written.st_mode):
            raise RunFailed(f"--archive {file}: the worker wrote no archive")
        if selected and _empty_tar(fd):
            raise RunFailed(f"--archive {file}: --path names nothing in the snapshot")
        archive_fd = os.open(ARCHIVE, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
        try:
            os.fchmod(archive_fd, 0o600)
        finally:
            os.close(archive_fd)
        try:
            os.link(ARCHIVE, file, src_dir_fd=fd, follow_symlinks=False)
        except FileExistsError:
            raise RunFailed(f"--archive {file}: appeared meanwhile; it was not replaced") from None
        return written.st_size
    finally:
        os.close(fd)


def _empty_tar(folder: int) -> bool:
    """Return whether the archive in `folder` (a descriptor) holds no entry at all."""
    fd = os.open(ARCHIVE, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=folder)
    try:
        with os.fdopen(fd, "rb") as handle, tarfile.open(fileobj=handle, mode="r:*") as tar:
            return tar.next() is None
    except tarfile.TarError as exc:
        raise RunFailed(f"the archive rustic wrote cannot be read back: {exc}") from None


def stream(
    launcher: Launcher,
    customer: Customer,
    resource: Resource,
    out: BinaryIO,
    snapshot: str,
    only: tuple[str, ...] = (),
    watch: Watch = QUIET,
) -> int:
    """Write `snapshot` of `resource` (or just `only`) to `out` as a tar archive, as rustic
    makes it; return how many bytes were written.

    rustic writes into a FIFO that is read here: nothing is staged on disk. If rustic fails
    midway, what `out` got is a truncated archive, and RunFailed says so.
    """
    only = tuple(only_path(path) for path in only)
    snapshot = snapshot_selector(snapshot)
    job = customer.job(resource)
    if not (job_storage(launcher.settings, customer.name, resource.name).hot / "config").exists():
        raise RunFailed(f"{job}: no snapshot to restore yet")
    launcher.wait_out_deleting(customer, resource)
    with scratch(launcher.settings, customer.name, resource.name) as own:
        pipe = own / "pipe"
        pipe.mkdir(mode=0o700)
        info = os.stat(pipe)
        os.mkfifo(pipe / ARCHIVE, 0o600)
        inside = f"{RESTORE_TARGET}/{ARCHIVE}"
        argv = commands.dump_args(
            launcher.cold, snapshot, source_path(resource), inside, False, only
        )
        launch = target_launch(
            pipe, f"{info.st_dev}:{info.st_ino}", RESTORE_TARGET, ["rustic", *argv]
        )
        ended: list[Finished | BaseException] = []

        def run() -> None:
            try:
                ended.append(
                    launcher.run_worker(
                        customer, resource, Kind.RESTORE, datetime.now(UTC), launch, None
                    )
                )
            except BaseException as exc:  # handed to the reading thread, which raises it
                ended.append(exc)

        worker = threading.Thread(target=run, name=f"archive {job}", daemon=True)
        worker.start()
        copied = [0]
        try:
            with watch.watch(lambda: (None, copied[0])):
                written = _copy(pipe / ARCHIVE, out, worker, copied)
        except BrokenPipeError:
            raise RunFailed(
                f"{job}: stdout was closed after {copied[0]} bytes: the archive is cut short"
            ) from None
        finally:  # the pipe is closed now: rustic stops on its next write, and its worker ends
            worker.join()
    if isinstance(ended[0], BaseException):
        raise ended[0]
    done = ended[0]
    if done.exit_code != 0:
        if NO_SNAPSHOTS in done.stderr:
            raise RunFailed(f"{job}: no snapshot to restore yet")
        cut = f" (after {written} bytes: what was written is cut short)" if written else ""
        raise RunFailed(f"{job}: archive failed{cut}: {last_words(done)}")
    if written == 0:
        raise RunFailed(f"{job}: the worker wrote no archive")
    return written


def _copy(fifo: Path, out: BinaryIO, worker: threading.Thread, copied: list[int]) -> int:
    """Copy what is written into `fifo` to `out` until its writer closes it, or `worker`
    ended without ever opening it; return the bytes copied.

    The FIFO is opened without waiting for a writer (a worker that fails first never comes),
    and polled: no data and no writer yet is a timeout, never an end.
    """
    fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    written = 0
    try:
        poller = select.poll()
        poller.register(fd, select.POLLIN | select.POLLHUP)
        while True:
            if not poller.poll(POLL_MS):
                if not worker.is_alive():
                    return written  # it ended without opening the pipe: no archive
                continue
            try:
                chunk = os.read(fd, CHUNK)
            except BlockingIOError:
                continue
            if not chunk:
                return written  # the writer closed it: the archive is whole
            out.write(chunk)
            written += len(chunk)
            copied[0] = written
    finally:
        os.close(fd)  # rustic, if still writing, gets EPIPE and stops
