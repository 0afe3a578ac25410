"""Choosing a snapshot and reading rustic's find and diff, table-driven: no Docker."""

from datetime import UTC, datetime

import pytest

from orchestrator.browse import choose
from orchestrator.errors import RunFailed
from orchestrator.model import SnapshotInfo
from orchestrator.rustic.commands import restore_args
from orchestrator.rustic.findings import Change, parse_diff, parse_find
from orchestrator.rustic.listing import Item


def at(hour: int) -> datetime:
    return datetime(2026, 12, 1, hour, tzinfo=UTC)


SNAPSHOTS = [
    SnapshotInfo("aa11" + "0" * 60, at(1), ("/srv",), "h"),
    SnapshotInfo("ab22" + "0" * 60, at(2), ("/srv",), "h"),
    SnapshotInfo("bb33" + "0" * 60, at(3), ("/srv",), "h"),
]


@pytest.mark.parametrize(
    ("snapshot", "as_of", "chosen"),
    [
        (None, None, "bb33"),
        ("latest", None, "bb33"),
        ("aa", None, "aa11"),
        ("AB22", None, "ab22"),  # ids are hex: case does not matter
        (None, at(2), "ab22"),  # at: that one
        (None, datetime(2026, 12, 1, 2, 59, tzinfo=UTC), "ab22"),  # before the next
        ("latest", at(5), "bb33"),
        ("latest~1", None, "ab22"),  # the one before the newest, as rustic counts
        ("latest~2", None, "aa11"),
    ],
)
def test_a_snapshot_is_chosen_as_the_operator_means(
    snapshot: str | None, as_of: datetime | None, chosen: str
) -> None:
    assert choose(SNAPSHOTS, snapshot, as_of).id.startswith(chosen)


@pytest.mark.parametrize(
    ("found", "snapshot", "as_of", "said"),
    [
        (SNAPSHOTS, "a", None, "2 snapshots start so"),
        (SNAPSHOTS, "cc", None, "no such snapshot"),
        (SNAPSHOTS, "latest~3", None, "only 3 snapshot(s)"),
        (SNAPSHOTS, "latest~x", None, "expected an id"),
        (SNAPSHOTS, "--all", None, "expected an id"),
        (SNAPSHOTS, None, at(0), "no snapshot at or before"),
        (SNAPSHOTS, "aa", at(2), "not both"),
        ([], None, None, "no snapshot yet"),
    ],
)
def test_a_snapshot_that_is_not_one_says_why(
    found: list[SnapshotInfo], snapshot: str | None, as_of: datetime | None, said: str
) -> None:
    with pytest.raises(RunFailed) as err:
        choose(found, snapshot, as_of)
    assert said in str(err.value)


FIND = """searching in snapshots group (host [h], label [], paths [/srv/www])...
found in e439afa4 from 2026-12-06 13:02:30
-rw-r--r--     root     root         4  6 Dec 2026 13:02 "srv/www/wp-config.php"
found in ef32db8a from 2026-12-06 14:02:30
-rw-r--r--     root     root        12  6 Dec 2026 14:01 "srv/www/wp-config.php"
-rw-r--r--     root     root         3  6 Dec 2026 14:01 "srv/www/old \\"copy\\"\\nwp-config.php"
"""


def test_find_is_read_snapshot_by_snapshot() -> None:
    found = parse_find(FIND)
    assert [(f.snapshot, f.time, f.item.path, f.item.size) for f in found] == [
        ("e439afa4", "2026-12-06 13:02:30", "srv/www/wp-config.php", 4),
        ("ef32db8a", "2026-12-06 14:02:30", "srv/www/wp-config.php", 12),
        ("ef32db8a", "2026-12-06 14:02:30", 'srv/www/old "copy"\nwp-config.php', 3),
    ]
    assert found[0].item == Item("srv/www/wp-config.php", "file", 4, "6 Dec 2026 13:02")
    assert parse_find("searching in snapshots group ...\n") == []


def test_diff_is_read_entry_by_entry_without_its_summary() -> None:
    out = (
        "[INFO] comparing e439afa4: (latest~1) with ef32db8a: (latest)\n"
        'M    "srv/a.txt"\n-    "srv/sub/b.php"\n+    "srv/sub/\\u{1b}[31mc.php"\n'
        'U    "srv/sub"\nFiles   : 0 =, 1 +, 1 -, 1 M, 0 U\n'
    )
    assert parse_diff(out) == [
        Change("changed", "srv/a.txt"),
        Change("removed", "srv/sub/b.php"),
        Change("added", "srv/sub/\x1b[31mc.php"),
        Change("metadata", "srv/sub"),
    ]


def test_a_restore_of_some_paths_anchors_each_and_takes_a_folder_whole() -> None:
    argv = restore_args([], "abc", "/srv/www", "/restore", ("wp-config.php", "uploads/*.jpg"))
    globs = [a for a in argv if a.startswith("--glob=")]
    assert globs == [
        "--glob=/wp-config.php",
        "--glob=/wp-config.php/**",
        "--glob=/uploads/*.jpg",
        "--glob=/uploads/*.jpg/**",
    ]
    assert argv[-2:] == ["abc:/srv/www", "/restore"]
    assert not [a for a in restore_args([], "abc", "/srv", "/r") if a.startswith("--glob")]


def test_a_link_whose_target_holds_lines_forges_no_entry() -> None:
    """rustic prints a link's target unquoted: its lines are the link's, never entries."""
    forged = 'x\nfound in 00000000 from 2020-01-01 00:00:00\n-rw-r--r-- root root 7 1 Jan 2020 00:00 "srv/wp-config.php"'
    size = len(forged.encode())
    out = (
        "found in abcdef12 from 2026-12-06 13:02:30\n"
        f'lrwxrwxrwx     root     root {size:>9}  6 Dec 2026 13:26 "srv/lnk" -> {forged}\n'
        '-rw-r--r--     root     root         4  6 Dec 2026 13:02 "srv/real.php"\n'
    )
    found = parse_find(out)
    assert [(f.snapshot, f.item.path, f.item.type) for f in found] == [
        ("abcdef12", "srv/lnk", "link"),
        ("abcdef12", "srv/real.php", "file"),
    ]
    listing = "\n".join(out.splitlines()[1:])
    from orchestrator.rustic.listing import parse_long

    assert [i.path for i in parse_long(listing)] == ["srv/lnk", "srv/real.php"]
