"""rustic command lines and the judgement of what rustic printed, as pure functions."""

import json
import re
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from orchestrator.storage import COLD_PROFILE
from orchestrator.worker import CACHE, COLD, HOT, SECRETS

PASSWORD_FILE = "repo-password"


class Result(StrEnum):
    SUCCESS = "success"
    FAILURE = "failure"
    TIMEOUT = "timeout"
    SKIPPED = "skipped"  # not a run: another run of the job was in progress
    SUSPECT = "suspect"  # a snapshot was written, but it looks like encryption in place
    CORRUPT = "corrupt"  # a restore drill found damage: the repository does not give back


class Reason(StrEnum):
    """Why a run failed: a small closed set, used as a metric label."""

    NONE = ""
    OVERLAP = "overlap"
    SOURCE_MISSING = "source_missing"
    SOURCE_REFUSED = "source_refused"
    SOURCE_EMPTY = "source_empty"
    MOUNT = "mount"
    SOURCE_UNREADABLE = "source_unreadable"
    REPOSITORY = "repository"
    INTERRUPTED = "interrupted"
    TIMEOUT = "timeout"
    FORGET = "forget"
    PRUNE = "prune"
    SECRETS = "secrets"
    RUNTIME = "runtime"
    CONNECT = "connect"
    TLS = "tls"
    AUTH = "auth"
    HOST_KEY = "host_key"
    PATH_NOT_FOUND = "path_not_found"
    SOURCE_SHRUNK = "source_shrunk"
    STORAGE = "storage"
    RUSTIC = "rustic"


@dataclass(frozen=True)
class Summary:
    """What a backup wrote, from the snapshot rustic printed."""

    snapshot_id: str
    time: str
    files_new: int
    files_changed: int
    data_added: int
    bytes_processed: int
    files_total: int = 0
    data_added_files: int = 0
    data_added_files_packed: int = 0


@dataclass(frozen=True)
class Outcome:
    result: Result
    reason: Reason
    message: str
    summary: Summary | None = None


TAG_CLEAN = "unstoppable-clean"
TAG_SUSPECT = "unstoppable-suspect"
TAG_PINNED = "unstoppable-pinned"  # the last clean snapshot before a suspect one


def cold_args(s3: bool) -> list[str]:
    """Return how rustic finds the cold repository: a mounted directory, or S3 via opendal.

    The S3 endpoint and credentials are in a profile among the run's secret files.
    """
    if s3:
        return ["--repository", "opendal:s3", "--use-profile", f"{SECRETS}/{COLD_PROFILE}"]
    return ["--repository", COLD]


def global_args(cold: list[str]) -> list[str]:
    """Return the options every rustic command of a job starts with."""
    return [
        *cold,
        "--repo-hot",
        HOT,
        "--password-file",
        f"{SECRETS}/{PASSWORD_FILE}",
        "--cache-dir",
        CACHE,
        "--no-progress",
    ]


def backup_args(
    cold: list[str], host: str, path: str, excludes: tuple[str, ...], remote: bool = False
) -> list[str]:
    """Return the argv of a backup of `path`, recorded under that path and `host`.

    A remote source is an rclone FUSE mount: inode numbers and ctimes change with every
    mount and it has no extended attributes, so files are compared by size and mtime only —
    which is what lets an unchanged file be skipped without downloading it.
    """
    globs = [arg for pattern in excludes for arg in ("--glob", f"!{pattern}")]
    mount = ["--set-xattrs", "no", "--ignore-ctime", "--ignore-inode"] if remote else []
    return [
        *global_args(cold),
        "backup",
        "--init",
        "--json",
        # The size scan only feeds a progress bar nobody sees, and walks the source twice.
        "--no-scan",
        "--host",
        host,
        # Every snapshot starts clean; a suspect one has its tags set to TAG_SUSPECT after.
        "--tag",
        TAG_CLEAN,
        *mount,
        *globs,
        "--",
        path,
    ]


def forget_args(
    cold: list[str], keep: tuple[tuple[str, int], ...], keep_within_seconds: int
) -> list[str]:
    """Return the argv of `forget --prune` with the customer's KEEP_* values, and the floor.

    Whatever KEEP_* say, every snapshot younger than `keep_within_seconds` and the newest
    one stay: planted or hollow snapshots cannot push the real ones out (restic's advice,
    keep-within), and no setting can forget the last snapshot there is.
    """
    keep = (*[(k, n) for k, n in keep if k != "KEEP_LAST"], ("KEEP_LAST", _keep_last(keep)))
    policy = [arg for key, n in keep for arg in ("--" + key.lower().replace("_", "-"), str(n))]
    floor = ["--keep-within", f"{keep_within_seconds}s"]
    # Only clean snapshots are weighed and forgotten: a suspect one neither takes a KEEP_*
    # place from a clean one nor is forgotten (snapshots of 0.1, untagged, are not either).
    clean = ["--filter-tags", TAG_CLEAN]
    pinned = ["--keep-tags", TAG_PINNED]
    return [*global_args(cold), "forget", "--prune", *clean, *policy, *floor, *pinned]


def prune_args(cold: list[str]) -> list[str]:
    """Return the argv of a prune alone: unreferenced data goes, no snapshot is forgotten."""
    return [*global_args(cold), "prune"]


def check_subset_args(cold: list[str], part: int, parts: int) -> list[str]:
    """Return the argv of a check that reads the `part`-th of `parts` slices of the packs."""
    if parts <= 1:
        return check_args(cold, read_data=True)
    return [*global_args(cold), "check", "--read-data", "--read-data-subset", f"{part}/{parts}"]


def ls_args(cold: list[str], snapshot: str, path: str) -> list[str]:
    """Return the argv that lists every entry under `path` of `snapshot`, long form."""
    return [*global_args(cold), "ls", "--long", "--recursive", f"{snapshot}:{path}"]


@dataclass(frozen=True)
class Entry:
    """A regular file of a snapshot, as `ls --long` shows it: path relative to the root."""

    path: str
    size: int


_ESCAPE = re.compile(r"\\(u\{([0-9a-fA-F]{1,6})\}|x([0-9a-fA-F]{2})|.)")
_SIMPLE = {"n": "\n", "r": "\r", "t": "\t", "0": "\0", "\\": "\\", '"': '"', "'": "'"}


def parse_ls(stdout: str) -> list[Entry]:
    """Return the regular files `ls --long` printed; names it cannot read back are left out.

    Each line reads `<mode> <user> <group> <size> <date> <time> "<path>"`, the path quoted
    the way Rust quotes strings (so a newline in a name is `\\n`, never a line break).
    """
    entries = []
    for line in stdout.splitlines():
        if not line.startswith("-"):
            continue  # directories, links, devices, fifos: nothing to compare byte for byte
        fields = line.split(None, 4)
        start, end = line.find('"'), line.rstrip().rfind('"')
        if len(fields) < 5 or start < 0 or end <= start or not fields[3].isdigit():
            continue
        path = _unquote(line[start + 1 : end])
        if path is not None:
            entries.append(Entry(path, int(fields[3])))
    return entries


def _unquote(text: str) -> str | None:
    """Undo Rust's string escaping; None for bytes that are not UTF-8 (`\\x..`)."""
    bad = False

    def one(match: re.Match[str]) -> str:
        nonlocal bad
        if match.group(2):
            return chr(int(match.group(2), 16))
        if match.group(3):
            bad = True
            return ""
        return _SIMPLE.get(match.group(1), match.group(1))

    result = _ESCAPE.sub(one, text)
    return None if bad else result


def tag_suspect_args(cold: list[str], snapshot: str) -> list[str]:
    """Return the argv that marks `snapshot` suspect (and no longer clean)."""
    return [*global_args(cold), "tag", "--set", TAG_SUSPECT, snapshot]


def tag_pinned_args(cold: list[str], snapshot: str) -> list[str]:
    """Return the argv that pins `snapshot`: retention keeps it until an operator unpins it."""
    return [*global_args(cold), "tag", "--add", TAG_PINNED, snapshot]


def _keep_last(keep: tuple[tuple[str, int], ...]) -> int:
    return max([1, *(n for key, n in keep if key == "KEEP_LAST")])


def snapshots_args(cold: list[str]) -> list[str]:
    return [*global_args(cold), "snapshots", "--json"]


def restore_args(cold: list[str], snapshot: str, path: str, target: str) -> list[str]:
    """Return the argv that restores `path` of `snapshot` so its contents land in `target`."""
    return [*global_args(cold), "restore", f"{snapshot}:{path}", target]


def check_args(cold: list[str], read_data: bool) -> list[str]:
    return [*global_args(cold), "check", *(["--read-data"] if read_data else [])]


# rustic reports a file it could not read as a warning ("ignoring error: ...") and still
# exits 0; such a snapshot silently lacks data, so any of these makes the run a failure.
_UNREADABLE = re.compile(
    r"(ignoring error|permission denied|error reading|failed to read|failed to open|os error \d+)",
    re.IGNORECASE,
)
_REPOSITORY = re.compile(r"(wrong password|no suitable key|repository|password)", re.IGNORECASE)
_RECORD = re.compile(r"^\[(TRACE|DEBUG|INFO|WARN|ERROR)\] ?")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
# The object store behind the cold repository could not be reached or refused.
_STORAGE = re.compile(
    r"service: s3|opendal|error sending request|dns error|"
    r"connection refused|connection reset|timed out",
    re.IGNORECASE,
)


def error_summary(stderr: str) -> str:
    """Return the line of rustic's stderr that says what went wrong, without colours.

    rustic reports fatal errors as a block ("error: …", "Message:", "Caused by:", a
    backtrace); the cause is the useful line. Falls back to the last [ERROR] record, then
    to the last line.
    """
    lines = [line.strip() for line in _ANSI.sub("", stderr).splitlines()]
    for marker in ("Caused by:", "Message:"):
        if marker in lines:
            following = [line for line in lines[lines.index(marker) + 1 :] if line]
            if following:
                return following[0][:300]
    errors = [text for level, text in log_records(_ANSI.sub("", stderr)) if level == "ERROR"]
    if errors:
        return errors[-1][:300]
    meaningful = [line for line in lines if line and not re.match(r"^\d+: ", line)]
    return meaningful[-1][:300] if meaningful else "(no output)"


def log_records(stderr: str) -> list[tuple[str, str]]:
    """Split rustic's log into (level, message) records; continuation lines stay attached."""
    records: list[tuple[str, str]] = []
    for line in stderr.splitlines():
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
    records = log_records(_ANSI.sub("", stderr))
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
    summary = data.get("summary") or {}
    return Summary(
        snapshot_id=str(data["id"]),
        time=str(data.get("time", "")),
        files_new=int(summary.get("files_new", 0)),
        files_changed=int(summary.get("files_changed", 0)),
        data_added=int(summary.get("data_added", 0)),
        bytes_processed=int(summary.get("total_bytes_processed", 0)),
        files_total=int(summary.get("total_files_processed", 0)),
        data_added_files=int(summary.get("data_added_files", 0)),
        data_added_files_packed=int(summary.get("data_added_files_packed", 0)),
    )


@dataclass(frozen=True)
class SnapshotInfo:
    id: str
    time: datetime
    paths: tuple[str, ...]
    host: str
    tags: tuple[str, ...] = ()


def parse_snapshots(stdout: str) -> list[SnapshotInfo]:
    """Return the snapshots `snapshots --json` printed, oldest first.

    rustic groups its output ([[group, [snapshot, ...]], ...]); a flat list is accepted too.
    """
    data = _json(stdout)
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
