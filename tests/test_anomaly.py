"""The change-anomaly rule, table-driven with plain values."""

import pytest

from orchestrator.model import Summary
from orchestrator.sources.anomaly import judge


def _summary(new: int, changed: int, total: int, added: int, packed: int) -> Summary:
    return Summary("id", "t", new, changed, added, 0, total, added, packed)


@pytest.mark.parametrize(
    ("summary", "previous", "suspect"),
    [
        # An ordinary day: a few text files edited, compresses.
        (_summary(1, 4, 100, 40_000, 9_000), 99, False),
        # An ordinary day on photos: few files, incompressible, but few.
        (_summary(2, 3, 100, 4_000_000, 3_990_000), 98, False),
        # Every file rewritten with data that does not compress: encryption in place.
        (_summary(0, 100, 100, 800_000, 801_000), 100, True),
        # Every file renamed (new names, same contents: nothing added): ransomware's suffix.
        (_summary(100, 0, 100, 0, 0), 100, True),
        # Encrypted and renamed: new names, incompressible data, the old names gone.
        (_summary(100, 0, 100, 800_000, 801_000), 100, True),
        # Every file rewritten, but the new data compresses: a re-export, not encryption.
        (_summary(0, 90, 100, 800_000, 200_000), 100, False),
        # chmod -R: every file "changed", no data added.
        (_summary(0, 100, 100, 0, 0), 100, False),
        # A bulk upload of new photos: most files new and incompressible, nothing gone.
        (_summary(80, 0, 100, 8_000_000, 8_000_000), 20, False),
        # Every file overwritten with zeros, same sizes: compresses to nothing.
        (_summary(0, 300, 300, 3_272_723, 14_850), 300, True),
        # Every file encrypted and as many empty files added to dilute the share.
        (_summary(1001, 1000, 2001, 800_000, 801_000), 1000, True),
        # The first snapshot is all new by nature.
        (_summary(100, 0, 100, 800_000, 801_000), None, False),
        # Too few files to judge.
        (_summary(0, 3, 3, 800_000, 801_000), 3, False),
    ],
)
def test_the_change_anomaly_rule(summary: Summary, previous: int | None, suspect: bool) -> None:
    verdict = judge(summary, previous, 50)
    assert verdict.suspect is suspect, verdict.why
