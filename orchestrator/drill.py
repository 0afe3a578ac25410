"""A restore drill's pure parts: what the worker scripts are called, how a sample is
chosen, and how a failed step is told apart as damage or outage.
"""

import random
import re
from dataclasses import dataclass

from orchestrator.model import Outcome, Reason, Result
from orchestrator.runtime.protocol import Finished
from orchestrator.rustic import output
from orchestrator.rustic.listing import Entry
from orchestrator.rustic.output import last_words

DRILL = "/usr/local/bin/unstoppable-drill"
SAMPLE = "/usr/local/bin/unstoppable-sample"
# A drill restores at most this much, so a sample that hits a 50 GB dump stays a drill.
SAMPLE_BYTES = 512 * 1024 * 1024
# What rustic says when it read data that is not what was written: damage, not an outage.
_DAMAGE = re.compile(
    r"mac check failed|decryption failed|hash mismatch|error checking pack"
    r"|related to `cryptographic operations`|pack \w+ (does not exist|is missing|not found)",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Drill:
    """How much of the repository one drill covers."""

    part: int
    parts: int

    @property
    def full(self) -> bool:
        return self.parts == 1


def choose(entries: list[Entry], count: int, budget: int, rng: random.Random) -> list[str]:
    """Return up to `count` random paths of `entries` whose sizes add up to at most `budget`."""
    shuffled = list(entries)
    rng.shuffle(shuffled)
    chosen: list[str] = []
    total = 0
    for entry in shuffled:
        if len(chosen) >= count:
            break
        if total + entry.size <= budget:
            chosen.append(entry.path)
            total += entry.size
    return chosen


def drill_words(done: Finished) -> str:
    """Return what the drill script itself said last (its `[DRILL]` lines)."""
    said = [line for line in done.stderr.splitlines() if line.startswith("[DRILL] ")]
    return said[-1].removeprefix("[DRILL] ")[:300] if said else last_words(done)


def damage_or_failure(step: str, done: Finished) -> Outcome:
    """Tell damage (the repository gave back something else) from an outage (it did not answer)."""
    cause = last_words(done)
    # The drill's own lines name the customer's files; only rustic's words can say damage.
    text = "\n".join(line for line in done.stderr.splitlines() if not line.startswith("[DRILL]"))
    if any(line.startswith("[DRILL] ") for line in done.stderr.splitlines()):
        step = f"{step}: {drill_words(done)}"
        cause = output.error_summary(text) if text.strip() else f"exit {done.exit_code}"
    if done.exit_code < 128 and _DAMAGE.search(text):
        return Outcome(Result.CORRUPT, Reason.NONE, f"{step}: {cause}")
    if done.exit_code >= 128:
        return Outcome(Result.FAILURE, Reason.INTERRUPTED, f"{step}: {cause}")
    reason = output.judge_backup(done.exit_code, "", text).reason
    return Outcome(Result.FAILURE, reason, f"{step}: {cause}")
