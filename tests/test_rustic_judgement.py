"""The judgement of a backup, fed with what the real rustic prints (no Docker needed)."""

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.model import Reason, Result
from orchestrator.rustic.output import judge_backup
from tests.conftest import RUSTIC

pytestmark = pytest.mark.rustic
NOBODY = 65534


def rustic_backup(work: Path, source: Path, as_nobody: bool = False) -> subprocess.Popen[str]:
    binary = work / "rustic"
    shutil.copy(RUSTIC.resolve(), binary)
    (work / "pw").write_text("pw")
    argv = [
        str(binary),
        "-r",
        str(work / "repo" / "cold"),
        "--repo-hot",
        str(work / "repo" / "hot"),
        "--password-file",
        str(work / "pw"),
        "--no-cache",
        "--no-progress",
        "backup",
        "--init",
        "--json",
        "--host",
        "test",
        "--",
        str(source),
    ]
    if as_nobody:
        # As root every file is readable; an unprivileged rustic meets the permission errors
        # a customer's odd file modes or a flaky remote produce.
        (work / "repo").mkdir()
        os.chown(work / "repo", NOBODY, NOBODY)
        for path in (work, work / "pw", binary):
            path.chmod(0o755)
        argv = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", *argv]
    return subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={"HOME": str(work), "PATH": os.environ["PATH"]},
    )


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """Return a directory an unprivileged user can reach (pytest's tmp_path is root-only)."""
    path = Path(tempfile.mkdtemp(prefix="unstoppable-test-", dir="/var/tmp"))
    path.chmod(0o755)
    yield path
    subprocess.run(["chmod", "-R", "u+rwx", str(path)], check=True)
    shutil.rmtree(path)


def test_unreadable_files_fail_the_run_although_rustic_exits_0(open_dir: Path) -> None:
    tmp_path = open_dir
    source = tmp_path / "src"
    (source / "closed").mkdir(parents=True)
    (source / "readable.txt").write_text("fine")
    (source / "locked.txt").write_text("unreadable")
    (source / "locked.txt").chmod(0)
    (source / "closed" / "inside.txt").write_text("behind a closed door")
    (source / "closed").chmod(0)
    source.chmod(0o755)
    proc = rustic_backup(tmp_path, source, as_nobody=True)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr  # the trap: rustic calls this a success
    assert '"summary"' in stdout
    outcome = judge_backup(proc.returncode, stdout, stderr)
    assert (outcome.result, outcome.reason) == (Result.FAILURE, Reason.SOURCE_UNREADABLE)
    assert "2 file(s) could not be read" in outcome.message


def test_rustic_stopped_by_sigterm_is_interrupted(tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    with open(source / "big.bin", "wb") as handle:
        for _ in range(600):
            handle.write(os.urandom(1024 * 1024))
    proc = rustic_backup(tmp_path, source)
    time.sleep(1.5)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr  # the trap again
    outcome = judge_backup(proc.returncode, stdout, stderr)
    assert (outcome.result, outcome.reason) == (Result.FAILURE, Reason.INTERRUPTED)


def test_a_clean_backup_succeeds_with_its_summary(tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    (source / "a.txt").write_text("hello")
    proc = rustic_backup(tmp_path, source)
    stdout, stderr = proc.communicate(timeout=120)
    outcome = judge_backup(proc.returncode, stdout, stderr)
    assert outcome.result is Result.SUCCESS, outcome.message
    assert outcome.summary is not None
    assert (outcome.summary.files_new, outcome.summary.bytes_processed) == (1, 5)
