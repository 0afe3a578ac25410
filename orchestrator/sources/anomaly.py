"""The change-anomaly rule (scenario B): a snapshot that looks like encryption in place.

An attacker on the customer's machine who encrypts every file, or a backup tool whose key
was changed, hands us a source of the same size and file count: the source guard passes
it. What gives it away is in rustic's own summary: most files changed or new at once, and
the new data no longer compresses. Such a snapshot is suspect: tagged, flagged, and the
job's retention is held until an operator releases it.

The rule (per resource; thresholds in the README), against the job's last clean snapshot:
- never on the first snapshot, nor on a source of fewer than MIN_FILES files;
- encryption in place: at least CHANGED percent (default 50) of the last snapshot's files
  were rewritten (`files_changed`) and the data they added does not compress (packed to at
  least INCOMPRESSIBLE of its size) — or compresses to almost nothing (HOLLOW: overwritten
  with zeros);
- a mass of renames (ransomware's new suffix, with or without new contents): at least
  CHANGED percent of the files are new *and* at least CHANGED percent of the files of the
  last snapshot are gone.
Ordinary days change a few percent. A bulk upload of new files (nothing gone), a metadata-
only sweep (chmod, touch: changed files but no new data) and a re-export that compresses
are not suspect. Data that is always incompressible trips the first rule on any mass
rewrite; `<RESOURCE>_ANOMALY=off` turns the rule off for such a resource.
"""

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


@dataclass(frozen=True)
class Verdict:
    suspect: bool
    why: str


def judge(summary: Summary, previous_files: int | None, changed_percent: int) -> Verdict:
    """Return whether the snapshot `summary` describes is suspect, and why in one line.

    `previous_files` is how many files the job's last clean snapshot held (None: no history).
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
    if rewritten >= threshold and ratio is not None and ratio >= INCOMPRESSIBLE:
        return Verdict(
            True,
            f"{rewritten:.0%} of files rewritten and the new data does not compress "
            f"({ratio:.0%} of its size packed): looks like encryption in place",
        )
    if rewritten >= threshold and ratio is not None and ratio <= HOLLOW:
        return Verdict(
            True,
            f"{rewritten:.0%} of files rewritten with data that is almost all the same byte "
            f"({ratio:.1%} of its size packed): looks like files overwritten with zeros",
        )
    new = summary.files_new / total
    gone = max(0, previous_files - (total - summary.files_new)) / before
    if new >= threshold and gone >= threshold:
        return Verdict(
            True,
            f"{new:.0%} of files are new and {gone:.0%} of the last snapshot's are gone: "
            "a mass of renames",
        )
    return Verdict(False, f"{rewritten:.0%} rewritten, {new:.0%} new, {gone:.0%} gone")


def judge_resource(resource: Resource, summary: Summary, previous_files: int | None) -> Verdict:
    """Judge a fresh snapshot of `resource` by its ANOMALY settings (the rule above)."""
    if not resource.source.ANOMALY:
        return Verdict(False, "ANOMALY=off")
    return judge(summary, previous_files, resource.source.ANOMALY_CHANGED)


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
