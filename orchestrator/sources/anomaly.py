"""The change-anomaly rule (scenario B): a snapshot that looks like encryption in place.

An attacker on the customer's machine who encrypts every file, or a backup tool whose key
was changed, hands us a source of the same size and file count: the source guard passes
it. What gives it away is in rustic's own summary: most files changed or new at once, and
the new data compresses far worse than before. Such a snapshot is suspect: tagged, flagged,
and the job's retention is held until an operator releases it.

The rule (per resource; thresholds in the README), against the job's last clean snapshot:
- never on the first snapshot, nor on a source of fewer than MIN_FILES files;
- encryption in place: at least CHANGED percent (default 50) of the last snapshot's files
  were rewritten (`files_changed`) and the data they added
  - does not compress at all (packed to at least INCOMPRESSIBLE of its size: raw
    ciphertext), whatever the job's history; or
  - compresses far worse than this job's own changes usually do: packed to at least
    `usual + MARGIN` and at least ENCODED. `usual` is the lower quartile of the packed
    shares of the data the job's last HISTORY clean snapshots added (those that added
    MIN_ADDED_BYTES or more), at most CEILING; with fewer than MIN_HISTORY of them there is
    no usual and only the line above holds. This is what catches ciphertext written as
    text: any printable encoding of random bytes packs to at least log2(alphabet)/8 of its
    size — hex 0.5, base32 0.63, base64 0.75 — where a text tree's edits pack to 0.15-0.4.
    A mass rewrite of the kind of data the job always holds lands near its usual and is
    not suspect;
  - or compresses to almost nothing (HOLLOW: overwritten with zeros);
- a mass of renames (ransomware's new suffix, with or without new contents): at least
  CHANGED percent of the files are new *and* at least CHANGED percent of the files of the
  last snapshot are gone.
Ordinary days change a few percent, so they are never judged by compression at all: an
incompressible tree's churn is not suspect. A bulk upload of new files (nothing gone), a
metadata-only sweep (chmod, touch: changed files but no new data) and a re-export that
compresses as the job's data usually does are not suspect.

The INCOMPRESSIBLE line stays absolute on purpose: a mass rewrite of an always-
incompressible tree (media, archives) with new incompressible data looks exactly like its
encryption in place, and nothing else in the summary tells them apart (the rename line
only sees a new suffix). Such a tree that is rewritten wholesale by design (encrypted
dumps under fixed names) takes `<RESOURCE>_ANOMALY=off`.

The history is data handed in (`ratios`): the ledger keeps it with each run.
"""

from collections.abc import Sequence
from dataclasses import dataclass

from orchestrator.config.customer import Resource
from orchestrator.model import Summary
from orchestrator.sources.guard import Floor

MIN_FILES = 5

INCOMPRESSIBLE = 0.9


# Real files do not pack to under 1 % of their size; zero-filled ones pack to about 0.5 %.
HOLLOW = 0.01


# Below this much added data the compression ratio says nothing.
MIN_ADDED_BYTES = 4096


# The job's usual: the lower quartile over its last HISTORY clean snapshots that added data,
# once there are MIN_HISTORY of them, and never above CEILING. A low quantile lets odd days
# (a PDF upload) pass unnoticed, and an attacker who drips incompressible files into the
# tree beforehand must taint eight days in ten to raise it; the ceiling keeps base64 of
# ciphertext (0.75) over the line even then.
HISTORY = 10
MIN_HISTORY = 3
CEILING = 0.64


# How much worse than usual a mass rewrite must pack. Day to day, one tree's edits vary by a
# few hundredths; a tree of prose packs to ~0.39 and hex of ciphertext to ~0.51.
MARGIN = 0.1


# Never below this: decimal digits, the sparsest text encoding of random bytes, pack to 0.42;
# a job whose edits pack to 0.1 may well rewrite everything at 0.3.
ENCODED = 0.4


@dataclass(frozen=True)
class Verdict:
    suspect: bool
    why: str


def usual(ratios: Sequence[float]) -> float | None:
    """Return how well the job's changes usually pack (a share of their size), if known.

    `ratios` are the packed shares of the job's recent clean snapshots, newest first.
    """
    recent = sorted(ratios[:HISTORY])
    if len(recent) < MIN_HISTORY:
        return None
    return min(recent[len(recent) // 4], CEILING)


def judge(
    summary: Summary,
    previous_files: int | None,
    changed_percent: int,
    ratios: Sequence[float] = (),
) -> Verdict:
    """Return whether the snapshot `summary` describes is suspect, and why in one line.

    `previous_files` is how many files the job's last clean snapshot held (None: no history);
    `ratios` are the packed shares of the data its recent clean snapshots added, newest first.
    """
    total = summary.files_total
    if previous_files is None or total < MIN_FILES:
        return Verdict(False, "no history to compare with" if previous_files is None else "small")
    threshold = changed_percent / 100
    # Shares of what the source held before: files added meanwhile cannot dilute them.
    before = max(previous_files, 1)
    rewritten = summary.files_changed / before
    added = summary.data_added_files
    ratio = summary.data_added_files_packed / added if added >= MIN_ADDED_BYTES else None
    if rewritten >= threshold and ratio is not None:
        why = _packs_badly(ratio, usual(ratios))
        if why is not None:
            return Verdict(True, f"{rewritten:.0%} of files rewritten and {why}")
    new = summary.files_new / total
    gone = max(0, previous_files - (total - summary.files_new)) / before
    if new >= threshold and gone >= threshold:
        return Verdict(
            True,
            f"{new:.0%} of files are new and {gone:.0%} of the last snapshot's are gone: "
            "a mass of renames",
        )
    return Verdict(False, f"{rewritten:.0%} rewritten, {new:.0%} new, {gone:.0%} gone")


def _packs_badly(ratio: float, usual: float | None) -> str | None:
    """Return what is wrong with new data that packs to `ratio` of its size, if anything."""
    if ratio >= INCOMPRESSIBLE:
        return (
            f"the new data does not compress ({ratio:.0%} of its size packed): "
            "looks like encryption in place"
        )
    if ratio <= HOLLOW:
        return (
            f"the new data is almost all the same byte ({ratio:.1%} of its size packed): "
            "looks like files overwritten with zeros"
        )
    if usual is not None and ratio >= max(ENCODED, usual + MARGIN):
        return (
            f"the new data packs to {ratio:.0%} of its size where this job's changes usually "
            f"pack to {usual:.0%}: looks like ciphertext written as text (base64, hex)"
        )
    return None


def judge_resource(
    resource: Resource,
    summary: Summary,
    previous_files: int | None,
    ratios: Sequence[float] = (),
) -> Verdict:
    """Judge a fresh snapshot of `resource` by its ANOMALY settings (the rule above)."""
    if not resource.source.ANOMALY:
        return Verdict(False, "ANOMALY=off")
    return judge(summary, previous_files, resource.source.ANOMALY_CHANGED, ratios)


def below_floor(summary: Summary, guard: Floor) -> Verdict:
    """Hold rustic's own count to the floor too: EXCLUDE can hide what the guard counted."""
    if summary.files_total == 0 and not guard.allow_empty:
        return Verdict(True, "rustic backed up no file at all (EXCLUDE?)")
    if summary.files_total < guard.min_files or summary.bytes_processed < guard.min_bytes:
        return Verdict(
            True,
            f"rustic backed up {summary.files_total} file(s) and {summary.bytes_processed} "
            f"byte(s), below the floor of {guard.min_files} and {guard.min_bytes}",
        )
    return Verdict(False, "above the floor")
