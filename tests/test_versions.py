"""Reading a versioned bucket as of a moment, and when a live object's lock is renewed: pure."""

from datetime import UTC, datetime, timedelta

import minio.datatypes
import pytest

from orchestrator.storage import s3_compat  # noqa: F401  (what a Bucket installs when opened)
from orchestrator.storage.s3_values import Version
from orchestrator.storage.versions import (
    Step,
    as_of,
    by_creation,
    existed,
    live,
    needs_extension,
    ulid_time,
)

T0 = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def v(key: str, vid: str, minutes: int, deleted: bool = False, latest: bool = False) -> Version:
    return Version(key, vid, T0 + timedelta(minutes=minutes), deleted, latest)


@pytest.mark.parametrize(
    ("versions", "moment", "steps"),
    [
        # unchanged since the moment: nothing to do
        ([v("k", "1", 0, latest=True)], 5, []),
        # overwritten after the moment: the old version becomes current again
        ([v("k", "1", 0), v("k", "2", 10, latest=True)], 5, [Step("k", "1")]),
        # deleted after the moment: the version before the marker comes back
        ([v("k", "1", 0), v("k", "m", 10, deleted=True, latest=True)], 5, [Step("k", "1")]),
        # deleted, then overwritten with garbage: still the version of the moment
        (
            [v("k", "1", 0), v("k", "m", 10, deleted=True), v("k", "2", 11, latest=True)],
            5,
            [Step("k", "1")],
        ),
        # created after the moment: hidden
        ([v("k", "1", 10, latest=True)], 5, [Step("k", None)]),
        # created after the moment and deleted already: nothing to hide
        ([v("k", "1", 10), v("k", "m", 11, deleted=True, latest=True)], 5, []),
        # deleted before the moment and recreated after: hidden again
        (
            [v("k", "1", 0), v("k", "m", 2, deleted=True), v("k", "2", 10, latest=True)],
            5,
            [Step("k", None)],
        ),
        # a version exactly at the moment counts as the moment's
        ([v("k", "1", 0), v("k", "2", 5), v("k", "3", 6, latest=True)], 5, [Step("k", "2")]),
        # directory markers carry no data and are left alone
        ([v("d/", "null", 10, latest=True)], 5, []),
        # keys are independent and come out sorted
        (
            [v("b", "1", 10, latest=True), v("a", "1", 0), v("a", "2", 7, latest=True)],
            5,
            [Step("a", "1"), Step("b", None)],
        ),
    ],
)
def test_as_of(versions: list[Version], moment: int, steps: list[Step]) -> None:
    assert as_of(versions, T0 + timedelta(minutes=moment)) == steps


def test_live_is_what_the_repository_reads() -> None:
    versions = [
        v("a", "1", 0, latest=True),
        v("b", "1", 0),
        v("b", "m", 1, deleted=True, latest=True),
        v("c", "1", 0),
        v("c", "2", 1, latest=True),
        v("d/", "null", 0, latest=True),
    ]
    assert [(x.key, x.version_id) for x in live(versions)] == [("a", "1"), ("c", "2")]


@pytest.mark.parametrize(
    ("remaining", "renewed"),
    [
        (None, True),  # not locked at all
        (timedelta(days=3), True),  # a week of locks gone by
        (timedelta(days=30) - timedelta(hours=2), True),
        (timedelta(days=30) - timedelta(minutes=30), False),  # just written
        (timedelta(days=40), False),  # never shortened
    ],
)
def test_needs_extension(remaining: timedelta | None, renewed: bool) -> None:
    until = None if remaining is None else T0 + remaining
    new = needs_extension(until, T0, 30, timedelta(hours=1))
    assert (new is not None) is renewed
    if new is not None:
        assert new == T0 + timedelta(days=30)


@pytest.mark.parametrize(
    ("moment", "held"),
    [(-1, False), (0, True), (5, True), (10, False), (12, True)],
)
def test_existed_says_whether_a_key_held_data_at_a_moment(moment: int, held: bool) -> None:
    versions = [
        v("c", "1", 0),
        v("c", "m", 10, deleted=True),
        v("c", "2", 11, latest=True),
        v("other", "1", -5, latest=True),
    ]
    assert existed(versions, "c", T0 + timedelta(minutes=moment)) is held


@pytest.mark.parametrize(
    ("sent", "read"),
    [
        ("2026-11-29T23:06:12.238274156Z", datetime(2026, 11, 29, 23, 6, 12, 238274, tzinfo=UTC)),
        ("2026-11-29T23:06:12.238Z", datetime(2026, 11, 29, 23, 6, 12, 238000, tzinfo=UTC)),
        ("2026-11-29T23:06:12Z", datetime(2026, 11, 29, 23, 6, 12, tzinfo=UTC)),
    ],
)
def test_minio_py_reads_the_times_every_store_sends(sent: str, read: datetime) -> None:
    """versitygw sends nanoseconds, which minio-py alone cannot read: a listing failed.

    Importing orchestrator.storage.s3_compat (above; opening a Bucket does) installs the
    reader into minio-py.
    """
    assert minio.datatypes.from_iso8601utc(sent) == read


def test_by_creation_reads_a_store_that_dates_old_versions_by_their_replacement() -> None:
    """versitygw, measured: v1 made at 0, v2 at 2, deleted at 4, garbage at 6, copy at 8.

    It lists v1 at 2, v2 at 4, the marker at 6, garbage at 8 and the current copy at 8.
    """
    listed = [
        v("k", "01A", 2),
        v("k", "01B", 4),
        v("k", "01C", 6, deleted=True),
        v("k", "01D", 8),
        v("k", "01E", 8, latest=True),
        v("z", "01F", 3, latest=True),
    ]
    dated = {x.version_id: x.modified for x in by_creation(listed)}
    minute = {
        vid: (when - T0) / timedelta(minutes=1) for vid, when in dated.items() if vid != "01A"
    }
    assert minute == {"01B": 2, "01C": 4, "01D": 6, "01E": 8, "01F": 3}
    assert dated["01A"] < T0  # its creation is no longer told: the beginning of time
    versions = by_creation(listed)
    assert as_of(versions, T0 + timedelta(minutes=3)) == [Step("k", "01B")]
    assert as_of(versions, T0 + timedelta(minutes=1)) == [Step("k", "01A"), Step("z", None)]
    assert as_of(versions, T0 + timedelta(minutes=5)) == [Step("k", None)]  # deleted then
    assert existed(versions, "k", T0 + timedelta(minutes=7))  # the garbage held data


def test_by_creation_orders_one_second_by_version_id() -> None:
    """Two versions replaced within one second: the ULIDs say which came first."""
    same = T0.replace(second=5)
    listed = [
        Version("k", "01B", same.replace(microsecond=900), False, False),
        Version("k", "01A", same.replace(microsecond=100), False, False),
        Version("k", "01C", same.replace(second=7), False, True),
    ]
    dated = {x.version_id: x.modified for x in by_creation(listed)}
    assert dated["01B"] == same.replace(microsecond=100) and dated["01C"] == same.replace(second=7)


def ulid(minutes: float, tail: str = "0" * 16) -> str:
    """A ULID created `minutes` after T0 (versitygw's version ids)."""
    millis = int((T0 + timedelta(minutes=minutes)).timestamp() * 1000)
    head = ""
    for _ in range(10):
        head = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"[millis % 32] + head
        millis //= 32
    return head + tail


def test_ulid_ids_date_each_version_exactly_even_the_oldest() -> None:
    """A snapshot made at 10 and forgotten at 20 did not exist at 5: it is not revived,
    though the store lists it at 20 and no older version of its key says when it came."""
    made, marker = ulid(10), ulid(20)
    listed = [
        v("r/snapshots/S", made, 20),
        v("r/snapshots/S", marker, 20, deleted=True, latest=True),
        v("r/config", ulid(1), 1, latest=True),
    ]
    dated = {x.version_id: x.modified for x in by_creation(listed)}
    assert dated[made] == T0 + timedelta(minutes=10) and dated[marker] == T0 + timedelta(minutes=20)
    assert as_of(by_creation(listed), T0 + timedelta(minutes=5)) == []  # hidden already
    assert as_of(by_creation(listed), T0 + timedelta(minutes=15)) == [Step("r/snapshots/S", made)]
    assert ulid_time("7c0e4b5e-3f1a-4c2b-9d8e-112233445566") is None  # MinIO's are UUIDs
    assert ulid_time("null") is None and ulid_time("ZZZZZZZZZZ" + "0" * 16) is None
