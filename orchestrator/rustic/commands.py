"""rustic command lines, built as data: the argv of every command a worker runs."""

from orchestrator.runtime.paths import CACHE, COLD, COLD_PROFILE, HOT, SECRETS

PASSWORD_FILE = "repo-password"

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


def init_hot_args(cold: list[str]) -> list[str]:
    """Return the argv that builds an empty hot repository from the cold one."""
    return [*global_args(cold), "init", "--hot-only"]


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


def find_args(cold: list[str], pattern: str) -> list[str]:
    """Return the argv that lists, in every snapshot, the entries whose path matches `pattern`."""
    return [*global_args(cold), "find", "--all", f"--glob={pattern}"]


def diff_args(cold: list[str], old: str, new: str, path: str) -> list[str]:
    """Return the argv that compares `path` of the snapshots `old` and `new`, content too."""
    return [*global_args(cold), "diff", f"{old}:{path}", f"{new}:{path}"]


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


def restore_args(
    cold: list[str], snapshot: str, path: str, target: str, only: tuple[str, ...] = ()
) -> list[str]:
    """Return the argv that restores `path` of `snapshot` so its contents land in `target`.

    With `only`, just what those paths (relative to `path`, glob characters allowed) name:
    each is anchored at `path`, and a folder comes with everything in it.
    """
    globs = _only_globs(only)
    return [*global_args(cold), "restore", *globs, f"{snapshot}:{path}", target]


def dump_args(
    cold: list[str], snapshot: str, path: str, file: str, gzip: bool, only: tuple[str, ...] = ()
) -> list[str]:
    """Return the argv that writes `path` of `snapshot` (or just `only`, as restore_args
    takes them) as a tar archive, gzipped or not, into the worker's `file`."""
    globs = _only_globs(only)
    fmt = "targz" if gzip else "tar"
    return [*global_args(cold), "dump", "--archive", fmt, f"--file={file}", *globs,
            f"{snapshot}:{path}"]  # fmt: skip


def check_args(cold: list[str], read_data: bool) -> list[str]:
    return [*global_args(cold), "check", *(["--read-data"] if read_data else [])]


def _only_globs(only: tuple[str, ...]) -> list[str]:
    """Return the include globs of `only`: each anchored at the root, a folder with its contents."""
    return [f"--glob=/{p}{tail}" for p in only for tail in ("", "/**")]
