"""Generated source trees and exact manifests, to judge a backup by what a restore gives back."""

import hashlib
import os
import stat
from pathlib import Path

MB = 1024 * 1024


def make_tree(root: Path, big_mb: int = 60) -> None:
    """Write a tree with the shapes that break backup tools."""
    (root / "nested" / "deeper" / "deepest").mkdir(parents=True)
    (root / "empty dir").mkdir()
    (root / "nested" / "empty").mkdir()
    (root / "plain.txt").write_text("hello\n")
    (root / "name with spaces.txt").write_text("spaces\n")
    (root / "ünïcødé-名前.txt").write_text("unicode\n")
    (root / "-leading-dash").write_text("dash\n")
    (root / "--double-dash").write_text("double dash\n")
    (root / "nested" / "deeper" / "deepest" / "leaf.bin").write_bytes(os.urandom(4096))
    private = root / "private.key"
    private.write_text("only the owner\n")
    private.chmod(0o600)
    script = root / "nested" / "run.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    script.chmod(0o755)
    with open(root / "big.bin", "wb") as handle:
        for _ in range(big_mb):
            handle.write(os.urandom(MB))
    (root / "link-relative").symlink_to("plain.txt")
    (root / "nested" / "link-up").symlink_to("../name with spaces.txt")
    (root / "link-dangling").symlink_to("does/not/exist")
    (root / "link-dir").symlink_to("nested")
    os.utime(root / "plain.txt", ns=(1_500_000_000_123_456_789, 1_500_000_000_123_456_789))
    os.utime(root / "empty dir", ns=(1_600_000_000_000_000_000, 1_600_000_000_000_000_000))


def change_tree(root: Path) -> None:
    """Change the tree the way a day of work does: edit, add, delete, chmod, re-link."""
    (root / "plain.txt").write_text("hello, changed\n")
    (root / "new file.txt").write_text("new\n")
    (root / "-leading-dash").unlink()
    (root / "nested" / "run.sh").chmod(0o700)
    (root / "link-relative").unlink()
    (root / "link-relative").symlink_to("new file.txt")
    (root / "another empty").mkdir()
    with open(root / "big.bin", "r+b") as handle:
        handle.seek(10 * MB)
        handle.write(os.urandom(MB))


def manifest(root: Path) -> dict[str, tuple[object, ...]]:
    """Return {relative path: (kind, mode, mtime_ns, content or link target)} of a tree."""
    entries: dict[str, tuple[object, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            rel = str(path.relative_to(root))
            info = path.lstat()
            mode = stat.S_IMODE(info.st_mode)
            if stat.S_ISLNK(info.st_mode):
                entries[rel] = ("link", os.readlink(path))
            elif stat.S_ISDIR(info.st_mode):
                entries[rel] = ("dir", oct(mode), info.st_mtime_ns)
            else:
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
                entries[rel] = ("file", oct(mode), info.st_mtime_ns, info.st_size, digest)
    return entries


def diff(
    expected: dict[str, tuple[object, ...]], actual: dict[str, tuple[object, ...]]
) -> list[str]:
    """Return a readable list of what differs between two manifests."""
    out = [f"missing: {p}" for p in sorted(expected.keys() - actual.keys())]
    out += [f"extra: {p}" for p in sorted(actual.keys() - expected.keys())]
    out += [
        f"differs: {p}: {expected[p]} != {actual[p]}"
        for p in sorted(expected.keys() & actual.keys())
        if expected[p] != actual[p]
    ]
    return out
