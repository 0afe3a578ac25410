"""The judgement of what rustic printed: snapshots, summaries, errors, as pure functions."""

import json
import re
from datetime import datetime
from typing import Any

from orchestrator.model import Outcome, Reason, Result, SnapshotInfo, Summary, plain
from orchestrator.runtime.protocol import Finished

# rustic reports a file it could not read as a warning ("ignoring error: ...") and still
# exits 0; such a snapshot silently lacks data, so any of these makes the run a failure.
_UNREADABLE = re.compile(
    r"(ignoring error|permission denied|error reading|failed to read|failed to open|os error \d+)",
    re.IGNORECASE,
)

_REPOSITORY = re.compile(r"(wrong password|no suitable key|repository|password)", re.IGNORECASE)

_RECORD = re.compile(r"^\[(TRACE|DEBUG|INFO|WARN|ERROR)\] ?")

# The object store behind the cold repository could not be reached or refused.
_STORAGE = re.compile(
    r"service: s3|opendal|error sending request|dns error|"
    r"connection refused|connection reset|timed out",
    re.IGNORECASE,
)


def error_summary(stderr: str) -> str:
    """Return the line of rustic's stderr that says what went wrong, `plain`.

    rustic reports fatal errors as a block ("error: …", "Message:", "Caused by:", a
    backtrace); the cause is the useful line. Falls back to the last [ERROR] record, then
    to the last line. The lines may quote file names and servers: outside text.
    """
    lines = [plain(line).strip() for line in stderr.splitlines()]
    for marker in ("Caused by:", "Message:"):
        if marker in lines:
            following = [line for line in lines[lines.index(marker) + 1 :] if line]
            if following:
                return following[0][:300]
    errors = [text for level, text in log_records(stderr) if level == "ERROR"]
    if errors:
        return errors[-1][:300]
    meaningful = [line for line in lines if line and not re.match(r"^\d+: ", line)]
    return meaningful[-1][:300] if meaningful else "(no output)"


def log_records(stderr: str) -> list[tuple[str, str]]:
    """Split rustic's log into `plain` (level, message) records; continuations stay attached."""
    records: list[tuple[str, str]] = []
    for line in map(plain, stderr.splitlines()):
        match = _RECORD.match(line)
        if match:
            records.append((match.group(1), line[match.end() :].strip()))
        elif records and line.strip():
            level, text = records[-1]
            records[-1] = (level, f"{text} {line.strip()}")
    return records


def judge_backup(exit_code: int, stdout: str, stderr: str) -> Outcome:
    """Judge a finished backup: success needs exit 0, a snapshot on stdout and no unread file."""
    records = log_records(stderr)
    if exit_code != 0:
        cause = error_summary(stderr)
        if exit_code >= 128:
            reason = Reason.INTERRUPTED
        elif _STORAGE.search(cause):
            reason = Reason.STORAGE
        elif _REPOSITORY.search(cause):
            reason = Reason.REPOSITORY
        else:
            reason = Reason.RUSTIC
        return Outcome(Result.FAILURE, reason, f"rustic exited {exit_code}: {cause}")
    summary = parse_snapshot(stdout)
    if summary is None:
        # rustic exits 0 after SIGTERM without writing a snapshot.
        return Outcome(
            Result.FAILURE, Reason.INTERRUPTED, "rustic wrote no snapshot: " + error_summary(stderr)
        )
    unread = [
        text for level, text in records if level in ("WARN", "ERROR") and _UNREADABLE.search(text)
    ]
    if unread:
        return Outcome(
            Result.FAILURE,
            Reason.SOURCE_UNREADABLE,
            f"{len(unread)} file(s) could not be read, snapshot {summary.snapshot_id[:8]} is "
            f"incomplete; first: {unread[0][:300]}",
            summary,
        )
    return Outcome(Result.SUCCESS, Reason.NONE, f"snapshot {summary.snapshot_id}", summary)


_LEFTOVER = re.compile(r"pack \w+ not referenced in index", re.IGNORECASE)


def judge_check(exit_code: int, stderr: str) -> tuple[list[str], int]:
    """Return (problems, leftover packs) of a `rustic check`; no problems means clean."""
    records = log_records(stderr)
    leftovers = sum(1 for level, text in records if level == "WARN" and _LEFTOVER.search(text))
    problems = [
        text
        for level, text in records
        if level == "ERROR" or (level == "WARN" and not _LEFTOVER.search(text))
    ]
    if exit_code != 0 and not problems:
        problems.append(f"rustic exited {exit_code}: {error_summary(stderr)}")
    return problems, leftovers


def parse_snapshot(stdout: str) -> Summary | None:
    """Return the summary of the snapshot JSON `backup --json` printed, or None."""
    data = _json(stdout)
    if not isinstance(data, dict) or "id" not in data:
        return None
    return _summary(data)


def _summary(data: dict[str, Any]) -> Summary:
    """Return the summary a snapshot's JSON holds (zeros where it holds none)."""
    summary = data.get("summary")
    summary = summary if isinstance(summary, dict) else {}
    return Summary(
        snapshot_id=str(data["id"]),
        time=str(data.get("time", "")),
        files_new=_whole(summary.get("files_new")),
        files_changed=_whole(summary.get("files_changed")),
        data_added=_whole(summary.get("data_added")),
        bytes_processed=_whole(summary.get("total_bytes_processed")),
        files_total=_whole(summary.get("total_files_processed")),
        data_added_files=_whole(summary.get("data_added_files")),
        data_added_files_packed=_whole(summary.get("data_added_files_packed")),
        tree=str(data.get("tree") or ""),
    )


def _whole(value: Any) -> int:
    """Return a count rustic wrote, or 0 for anything that is not one (never raises)."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def parse_snapshots(stdout: str) -> list[SnapshotInfo]:
    """Return the snapshots `snapshots --json` printed, oldest first.

    rustic groups its output ([[group, [snapshot, ...]], ...]); a flat list is accepted too.
    Raises ValueError when there is output but no whole JSON document in it (cut short):
    read as "no snapshots", it would tell a restore there is nothing to restore.
    """
    data = _json(stdout)
    if data is None and stdout.strip():
        raise ValueError("the snapshot listing is not one whole JSON document (cut short?)")
    found: list[dict[str, Any]] = []

    def collect(node: Any) -> None:
        if isinstance(node, dict) and "id" in node and "time" in node:
            found.append(node)
        elif isinstance(node, dict):
            for value in node.values():
                collect(value)
        elif isinstance(node, list):
            for value in node:
                collect(value)

    collect(data)
    snapshots = [
        SnapshotInfo(
            str(s["id"]),
            datetime.fromisoformat(str(s["time"])),
            tuple(s.get("paths", ())),
            str(s.get("hostname", "")),
            tuple(str(t) for t in s.get("tags") or ()),
            _summary(s),
        )
        for s in found
    ]
    return sorted(snapshots, key=lambda s: s.time)


def _json(text: str) -> Any:
    text = text.strip()
    if not text:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        # Tolerate a stray line before the JSON document.
        start = min((i for i in (text.find("{"), text.find("[")) if i >= 0), default=-1)
        try:
            return json.loads(text[start:]) if start >= 0 else None
        except json.JSONDecodeError:
            return None


MEMORY_WORDS = "killed: the worker went over its memory limit (UNSTOPPABLE_WORKER_MEMORY)"


def last_words(done: Finished) -> str:
    """Return what the worker said last, or its exit code; first that memory killed it."""
    said = error_summary(done.stderr) if done.stderr.strip() else f"exit {done.exit_code}"
    return f"{MEMORY_WORDS}: {said}" if done.oom_killed else said
