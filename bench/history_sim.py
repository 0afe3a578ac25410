"""Thirty days of a source, judged by the product's own rules: false flags and catches.

Each scenario is a tree that changes once a "day"; each day the source guard (the
product's floor from the ledger's 14-day baseline) decides whether a backup may be written,
real rustic on the host writes it, and the change-anomaly rule judges rustic's summary.
Ordinary churn (1-10 % of files a day, text and incompressible) and a text tree rewritten
wholesale as text must never be flagged; a wipe, a slow shrink and encryption in place
(raw, or written as base64 or hex of the ciphertext) must be caught every time.

    .venv/bin/python bench/history_sim.py [--days 30] [--files 300] [--seeds 3]
"""

import argparse
import base64
import random
import subprocess
import sys
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from orchestrator.config.source import Source  # noqa: E402
from orchestrator.model import (  # noqa: E402
    JobKey,
    Kind,
    Outcome,
    Reason,
    Result,
    RunRecord,
)
from orchestrator.reporting.ledger import Ledger  # noqa: E402
from orchestrator.rustic import commands, output  # noqa: E402
from orchestrator.sources import anomaly  # noqa: E402
from orchestrator.sources.guard import floor  # noqa: E402

RUSTIC = ROOT / ".tools" / "bin" / "rustic"
START = datetime(2026, 1, 1, 3, 0, tzinfo=UTC)
Day = Callable[[Path, random.Random, int], None]
# One character a day in the printed timeline.
MARK = {"success": ".", "source_shrunk": "S", "source_empty": "E", "suspect": "!"}


def text(rng: random.Random, size: int) -> bytes:
    words = ["invoice", "customer", "order", "total", "date", "line", "item", "price"]
    return " ".join(rng.choice(words) for _ in range(size // 6)).encode()[:size]


def invoices(rng: random.Random, size: int) -> bytes:
    """Lines of dates, numbers and amounts: packs to about 0.3, like real business text."""
    out = bytearray()
    while len(out) < size:
        day = f"2026-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
        amount = rng.randint(1, 99_999) / 100
        line = f"{day};INV-{rng.randrange(10**6):06d};customer {rng.randint(1, 9999)};{amount:.2f}"
        out += f"{line} EUR\n".encode()
    return bytes(out[:size])


def blob(rng: random.Random, size: int) -> bytes:
    return rng.randbytes(size)


def seed_tree(root: Path, rng: random.Random, files: int, make: Callable[..., bytes]) -> None:
    for i in range(files):
        (root / f"f{i:04d}.dat").write_bytes(make(rng, rng.randint(2_000, 20_000)))


def churn(make: Callable[..., bytes]) -> Day:
    """An ordinary day: 1-10 % of the files edited, a few added and a few removed."""

    def day(root: Path, rng: random.Random, n: int) -> None:
        files = sorted(root.iterdir())
        share = rng.uniform(0.01, 0.10)
        for path in rng.sample(files, max(1, int(len(files) * share))):
            path.write_bytes(make(rng, rng.randint(2_000, 20_000)))
        for i in range(rng.randint(0, 3)):
            (root / f"new-{n}-{i}.dat").write_bytes(make(rng, rng.randint(2_000, 20_000)))
        for path in rng.sample(sorted(root.iterdir()), rng.randint(0, 2)):
            path.unlink()

    return day


def attack(at: int, ordinary: Day, act: Callable[[Path, random.Random, int], None]) -> Day:
    def day(root: Path, rng: random.Random, n: int) -> None:
        (act if n >= at else ordinary)(root, rng, n)

    return day


def poisoned(at: int, ordinary: Day, act: Day) -> Day:
    """Ten ordinary days before `at`, each with one 64 KiB random file dropped in (a few
    files: never judged, but their data packs to ~1.0 and would raise the job's usual),
    then `act`: the attacker who prepares the history before encrypting."""

    def day(root: Path, rng: random.Random, n: int) -> None:
        if n >= at:
            act(root, rng, n)
            return
        ordinary(root, rng, n)
        if n >= at - 10:
            (root / f"poison-{n}.bin").write_bytes(rng.randbytes(64 * 1024))

    return day


def wipe(root: Path, rng: random.Random, n: int) -> None:
    for path in root.iterdir():
        path.unlink()


def shrink_slowly(root: Path, rng: random.Random, n: int) -> None:
    files = sorted(root.iterdir())
    for path in files[: max(1, len(files) // 6)]:  # a sixth a day: never half at once
        path.unlink()


def encrypt(root: Path, rng: random.Random, n: int) -> None:
    for path in root.iterdir():
        path.write_bytes(rng.randbytes(path.stat().st_size))


def encrypt_as(encode: Callable[[bytes], bytes]) -> Day:
    """Every file rewritten in place, same name and size, as `encode` of a ciphertext."""

    def act(root: Path, rng: random.Random, n: int) -> None:
        for path in root.iterdir():
            size = path.stat().st_size
            path.write_bytes(encode(rng.randbytes(size))[:size])

    return act


def rewrite_as_text(root: Path, rng: random.Random, n: int) -> None:
    """A re-export: every file rewritten with new text, a mass rewrite that is no attack."""
    for path in root.iterdir():
        path.write_bytes(text(rng, path.stat().st_size))


def zero(root: Path, rng: random.Random, n: int) -> None:
    for path in root.iterdir():
        path.write_bytes(bytes(path.stat().st_size))


def count(root: Path) -> tuple[int, int]:
    """What unstoppable-guard counts: regular files and their sizes."""
    sizes = [p.stat().st_size for p in root.rglob("*") if p.is_file() and not p.is_symlink()]
    return len(sizes), sum(sizes)


def simulate(days: int, files: int, seed: int, make: Callable[..., bytes], today: Day) -> list[str]:
    """Return each day's verdict: success, source_shrunk, source_empty or suspect."""
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory(prefix="history-sim-") as scratch:
        work = Path(scratch)
        source, repo, password = work / "src", work / "repo", work / "pw"
        source.mkdir()
        password.write_text("sim")
        ledger = Ledger(work / "state")
        seed_tree(source, rng, files, make)
        verdicts = []
        for n in range(days):
            now = START + timedelta(days=n)
            if n:
                today(source, rng, n)
            held_files, held_bytes = count(source)
            guard = floor(ledger.memory.baseline(JobKey.parse("sim/src"), now), 50, False)
            if held_files == 0:
                verdicts.append(Reason.SOURCE_EMPTY.value)
                continue
            if held_files < guard.min_files or held_bytes < guard.min_bytes:
                verdicts.append(Reason.SOURCE_SHRUNK.value)
                continue
            done = subprocess.run(
                [str(RUSTIC), "-r", str(repo), "--password-file", str(password), "--no-progress",
                 "backup", "--init", "--json", "--host", "sim", "--tag", commands.TAG_CLEAN,
                 str(source)],
                capture_output=True, text=True, check=True,
            )  # fmt: skip
            summary = output.parse_snapshot(done.stdout)
            assert summary is not None
            previous = ledger.history.last_files(JobKey.parse("sim/src"))
            ratios = ledger.history.packed_ratios(
                JobKey.parse("sim/src"), anomaly.HISTORY, anomaly.MIN_ADDED_BYTES
            )
            changed = Source.model_fields["ANOMALY_CHANGED"].default
            verdict = anomaly.judge(summary, previous, changed, ratios)
            result = Result.SUSPECT if verdict.suspect else Result.SUCCESS
            outcome = Outcome(result, Reason.NONE, verdict.why, summary)
            ledger.history.record_run(
                RunRecord(JobKey("sim", "src"), Kind.BACKUP, now, now, now, outcome)
            )
            verdicts.append(result.value)
        return verdicts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--files", type=int, default=300)
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    if not RUSTIC.exists():
        sys.exit(f"{RUSTIC} missing: run `make provision`")
    attack_day = args.days * 2 // 3
    b64, hexed = encrypt_as(base64.b64encode), encrypt_as(base64.b16encode)
    scenarios: list[tuple[str, Callable[..., bytes], Day, int | None]] = [
        ("text churn", text, churn(text), None),
        ("incompressible churn", blob, churn(blob), None),
        ("text, wiped", text, attack(attack_day, churn(text), wipe), attack_day),
        ("text, slow shrink", text, attack(attack_day, churn(text), shrink_slowly), attack_day),
        ("text, rewritten as text", text, attack(attack_day, churn(text), rewrite_as_text), None),
        ("text, encrypted", text, attack(attack_day, churn(text), encrypt), attack_day),
        ("text, base64-encrypted", text, attack(attack_day, churn(text), b64), attack_day),
        ("text, hex-encrypted", text, attack(attack_day, churn(text), hexed), attack_day),
        (
            "text, poisoned, then base64",
            text,
            poisoned(attack_day, churn(text), b64),
            attack_day,
        ),
        (
            "invoices, hex-encrypted",
            invoices,
            attack(attack_day, churn(invoices), hexed),
            attack_day,
        ),
        ("incompressible, encrypted", blob, attack(attack_day, churn(blob), encrypt), attack_day),
        ("text, zero-filled", text, attack(attack_day, churn(text), zero), attack_day),
    ]
    failures = 0
    print(f"{args.days} days, {args.files} files, {args.seeds} seeds; attack on day {attack_day}")
    for name, make, today, at in scenarios:
        false_flags = caught = 0
        for seed in range(args.seeds):
            verdicts = simulate(args.days, args.files, seed, make, today)
            before = verdicts if at is None else verdicts[:at]
            false_flags += sum(1 for v in before if v != "success")
            if at is not None and any(v != "success" for v in verdicts[at:]):
                caught += 1
            if seed == 0:
                print(f"  {name:<28} seed 0: {''.join(MARK[v] for v in verdicts)}")
        line = f"{name:<28} false flags {false_flags}/{(at or args.days) * args.seeds}"
        if at is not None:
            line += f", caught {caught}/{args.seeds}"
            failures += args.seeds - caught
        failures += false_flags
        print(line)
    print("OK" if failures == 0 else f"FAILED: {failures} miss(es) or false flag(s)")
    return 0 if failures == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
