"""The restore's progress line and rclone's log, read as a terminal and the host see them."""

import io
import json
import time
from pathlib import Path

from orchestrator.commands.progress import Progress
from orchestrator.sources.rclone_log import failures, sent


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_line_says_files_bytes_rate_and_time_left() -> None:
    progress = Progress("acme/www")
    progress.expect(100, 10 * 2**20)
    line = progress.line(25, 2 * 2**20, 2.0)
    assert line == "acme/www, 25/100 files, 2.0 MiB/10.0 MiB, 1.0 MiB/s, ETA 0:00:08"
    unknown = Progress("acme/www").line(None, 3000, 1.0)  # an archive: bytes, no end known
    assert unknown == "acme/www, 2.9 KiB, 2.9 KiB/s"


def test_on_a_terminal_the_line_follows_the_measure_and_is_cleared() -> None:
    out = Terminal()
    progress = Progress("acme/www", out)
    progress.expect(4, 4000)
    seen = iter([(1, 1000), (2, 2000), (3, 3000), (4, 4000)])
    with progress.watch(lambda: next(seen, (4, 4000))):
        time.sleep(2.5)
    text = out.getvalue()
    assert "\r\x1b[K" in text and "files" in text and "ETA" in text
    assert text.endswith("\r\x1b[K")  # the summary line that follows starts clean
    assert "1/4 files" in text and "2/4 files" in text


def test_a_pipe_or_a_log_gets_no_progress_line() -> None:
    out = io.StringIO()
    with Progress("acme/www", out).watch(lambda: (1, 1)):
        time.sleep(1.3)
    assert out.getvalue() == ""


def test_rclones_log_gives_how_far_and_which_files_failed(tmp_path: Path) -> None:
    log = tmp_path / "put.log"
    assert sent(log) == (None, 0)  # not written yet
    lines = [
        {"level": "notice", "msg": "...", "stats": {"bytes": 5000, "transfers": 2}},
        {"level": "error", "msg": "Failed to copy: permission denied", "object": "a/b.txt"},
        {"level": "notice", "msg": "...", "stats": {"bytes": 9000, "transfers": 3}},
    ]
    log.write_text("\n".join(json.dumps(x) for x in lines) + "\n{half a li")
    assert sent(log) == (3, 9000)
    assert failures(log) == "a/b.txt (Failed to copy: permission denied)"
    many = [{"level": "error", "msg": "no", "object": f"f{i}"} for i in range(25)]
    log.write_text("\n".join(json.dumps(x) for x in many))
    assert failures(log).endswith("; and 5 more") and "f19 (no)" in failures(log)
