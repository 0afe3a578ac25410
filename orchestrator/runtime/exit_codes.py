"""The exit codes of the worker scripts (worker-image/unstoppable-*), named once.

The scripts read the same names from worker-image/exit-codes, which `shell()` renders and
tests/test_pure.py holds equal to this enum: a code can change in one place only.
"""

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    UNREADABLE = 3  # local: the source cannot be listed; remote: the server cannot be reached
    SHRUNK = 4  # the source holds less than the floor of its recent backups
    MOUNT = 5  # remote: the FUSE mount was refused
    SWAPPED = 6  # local: the directory was replaced (by a symlink?) after it was checked
    EMPTY = 7  # the source holds no file at all
    DRILL_FAILED = 8  # a restore drill could not restore or compare (damage, or a failure)
    DRILL_DIFFERS = 9  # a restored file differs from its unchanged source
    DRILL_SOURCE = 10  # a restore drill could not read the source to compare with
    EXISTS = 11  # a restore to the source: the new folder it was to make exists already
    CHANGED = 12  # a restore to the source: the live files it would replace are not those announced
    PUT = 13  # a restore to the source: some files could not be written there


def shell() -> str:
    """Return worker-image/exit-codes: one `EXIT_<NAME>=<code>` line per code."""
    lines = [
        "# The worker scripts' exit codes: rendered from orchestrator/runtime/exit_codes.py",
        "# (tests/test_pure.py keeps the two equal). Sourced by each unstoppable-* script.",
    ]
    lines += [f"EXIT_{code.name}={code.value}" for code in ExitCode]
    return "\n".join(lines) + "\n"
