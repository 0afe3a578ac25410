"""The change-anomaly rule (scenario B): a snapshot that looks like encryption in place.

An attacker on the customer's machine who encrypts every file, or a backup tool whose key
was changed, hands us a source of the same size and file count: the source guard passes
it. What gives it away is in rustic's own summary: most files changed or new at once, and
the new data no longer compresses. Such a snapshot is suspect: tagged, flagged, and the
job's retention is held until an operator releases it.

The rule (per resource; thresholds in the README):
- never on the first snapshot, nor on a source of fewer than MIN_FILES files;
- most files changed: `files_new + files_changed` is at least CHANGED percent (default 50)
  of the files in the snapshot — ordinary days change a few percent;
- and the new data does not compress: rustic packed the added file data to at least
  INCOMPRESSIBLE of its size — or almost no data was added at all, which with most files
  new is a mass of renames.
Data that is always incompressible (media, archives) trips the second half on any mass
change; `<RESOURCE>_ANOMALY=off` turns the rule off for such a resource.
"""

from dataclasses import dataclass

from orchestrator.rustic import Summary

DEFAULT_CHANGED = 50
MIN_FILES = 5
INCOMPRESSIBLE = 0.9
# Below this much added data the compression ratio says nothing; with most files new, it
# means the data was already there under other names.
MIN_ADDED_BYTES = 4096


@dataclass(frozen=True)
class Verdict:
    suspect: bool
    why: str


def judge(summary: Summary, has_history: bool, changed_percent: int) -> Verdict:
    """Return whether the snapshot `summary` describes is suspect, and why in one line."""
    total = summary.files_total
    if not has_history or total < MIN_FILES:
        return Verdict(False, "no history to compare with" if not has_history else "too small")
    changed = summary.files_new + summary.files_changed
    share = changed / total
    if share * 100 < changed_percent:
        return Verdict(False, f"{share:.0%} of files changed")
    added = summary.data_added_files
    if added < MIN_ADDED_BYTES:
        return Verdict(
            True, f"{share:.0%} of files new or changed with almost no new data: mass renames"
        )
    ratio = summary.data_added_files_packed / added
    if ratio >= INCOMPRESSIBLE:
        return Verdict(
            True,
            f"{share:.0%} of files new or changed and the new data does not compress "
            f"({ratio:.0%} of its size packed): looks like encryption in place",
        )
    return Verdict(False, f"{share:.0%} of files changed, new data compresses ({ratio:.0%})")
