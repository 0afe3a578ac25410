"""Receipts: the chain's rules, tampering found and named, the customer's standalone check."""

import io
import json
import os
import shutil
import subprocess
import sys
import venv
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from orchestrator.config.settings_file import load_settings
from orchestrator.model import JobKey, Kind, Outcome, Reason, Result, RunRecord
from orchestrator.receipts.chain import FIRST, seal
from orchestrator.receipts.issuer import Issuer
from orchestrator.receipts.keys import receipt_key
from orchestrator.receipts.places import Folder, name_of
from orchestrator.receipts.receipt_checks import (
    canonical,
    check,
    coverage,
    digest,
    gaps,
    opened,
    report,
    unheld,
)
from orchestrator.receipts.terms import Terms
from tests.conftest import Site
from tests.test_local_backup import customer_text

VERIFIER = (
    Path(__file__).resolve().parent.parent / "orchestrator" / "receipts" / "verify_receipts.py"
)
T0 = datetime(2026, 12, 1, 3, 0, tzinfo=UTC)


def stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def chain(key: Ed25519PrivateKey, fields: list[dict[str, object]]) -> list[tuple[str, bytes]]:
    """Seal `fields` as one job's chain; return (name, bytes) as a place lists them."""
    published, (seq, previous) = [], FIRST
    for item in fields:
        data = seal({"customer": "acme", "resource": "www", **item}, seq, previous, key)
        published.append((name_of("www", seq), data))
        seq, previous = seq + 1, digest(opened(data)[0])
    return published


def hourly(hours: int, result: str = "success") -> list[dict[str, object]]:
    return [
        {"kind": "backup", "result": result, "scheduled_for": stamp(T0 + timedelta(hours=h)),
         "next": stamp(T0 + timedelta(hours=h + 1))}
        for h in range(hours)
    ]  # fmt: skip


def problems_of(published: list[tuple[str, bytes]], key: Ed25519PrivateKey) -> list[str]:
    return [f"{f.name}: {f.problem}" for f in check(published, key.public_key())[1]]


def test_a_whole_chain_verifies_and_every_tampering_is_named() -> None:
    key = Ed25519PrivateKey.generate()
    published = chain(key, hourly(5))
    good, problems = check(published, key.public_key())
    assert len(good) == 5 and problems == []

    deleted = published[:2] + published[3:]
    assert problems_of(deleted, key) == [
        "www/0000000003.json: seq 3 where 2 was due: one or more before it missing (deleted?)"
    ]
    swapped = [published[0], published[2], published[1], *published[3:]]
    assert any("out of order" in p for p in problems_of(swapped, key))

    receipt, signature = opened(published[1][1])
    edited = {"receipt": {**receipt, "result": "failure"}, "signature": json.loads(
        published[1][1])["signature"]}  # fmt: skip
    assert signature  # the same signature, over other bytes
    forged = [published[0], (published[1][0], canonical(edited)), *published[2:]]
    assert problems_of(forged, key) == [
        "www/0000000001.json: its signature is not this key's (forged or edited)"
    ]
    # Another key signs the whole chain anew: every receipt is refused.
    other = chain(Ed25519PrivateKey.generate(), hourly(2))
    assert len(problems_of(other, key)) == 2
    # Re-signing an edited receipt with the right key still breaks the next one's link.
    relinked = chain(key, [*hourly(2), {"kind": "backup", "result": "success"}])
    resealed = seal({**opened(relinked[1][1])[0], "result": "failure"} | {"seq": 1}, 1,
                    opened(relinked[1][1])[0]["previous"], key)  # fmt: skip
    broken = [relinked[0], (relinked[1][0], resealed), relinked[2]]
    assert problems_of(broken, key) == [
        "www/0000000002.json: does not link to the receipt before it (edited or swapped)"
    ]
    unreadable = [published[0], ("www/0000000001.json", b"{not json")]
    assert problems_of(unreadable, key) == ["www/0000000001.json: cannot be read as a receipt"]


def test_a_promised_time_without_a_receipt_is_a_gap_and_a_missed_range_covers_it() -> None:
    key = Ed25519PrivateKey.generate()
    times = hourly(3)
    receipts = [opened(data)[0] for _, data in chain(key, [times[0], times[2]])]
    now = T0 + timedelta(hours=10)
    assert gaps(receipts, now, timedelta(hours=1)) == [stamp(T0 + timedelta(hours=1)),
                                                        stamp(T0 + timedelta(hours=3))]  # fmt: skip
    missed = {"kind": "backup", "result": "missed", "first": stamp(T0 + timedelta(hours=1)),
              "scheduled_for": stamp(T0 + timedelta(hours=1)), "count": 1,
              "next": stamp(T0 + timedelta(hours=2))}  # fmt: skip
    covered = [opened(d)[0] for _, d in chain(key, [times[0], missed, times[2]])]
    assert gaps(covered, now, timedelta(hours=1)) == [stamp(T0 + timedelta(hours=3))]
    # The newest promise is not due before its grace has passed.
    assert gaps(covered, T0 + timedelta(hours=3, minutes=30), timedelta(hours=1)) == []


def test_the_report_counts_what_the_receipts_cover(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    fields = [*hourly(2), {"kind": "backup", "result": "skipped", "scheduled_for": stamp(T0)},
              {"kind": "verify", "result": "success", "ended": stamp(T0 + timedelta(hours=2))}]  # fmt: skip
    chains = {"www": chain(key, fields)}
    out = tmp_path / "out.txt"
    with out.open("w") as handle:
        whole = report(
            chains, key.public_key(), T0 + timedelta(hours=2), timedelta(hours=1), handle
        )
    text = out.read_text()
    assert whole, text
    said = "www: 4 receipts, chain whole; 3 backup times, 2 succeeded, 0 refused, 0 suspect, "
    assert said + "1 skipped, 0 missed" in text
    assert "last drill 2026-12-01T05:00:00Z: success" in text


@pytest.fixture(scope="module")
def clean_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A virtual environment holding nothing but `cryptography`, from PyPI."""
    where = tmp_path_factory.mktemp("verifier-venv")
    venv.EnvBuilder(with_pip=True).create(where)
    python = where / "bin" / "python"
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    subprocess.run([str(python), "-m", "pip", "install", "-q", "cryptography"], check=True, env=env)
    listed = subprocess.run([str(python), "-m", "pip", "list", "--format=json"],
                            check=True, capture_output=True, text=True).stdout  # fmt: skip
    names = {p["name"].lower() for p in json.loads(listed)}
    assert names <= {"pip", "setuptools", "cryptography", "cffi", "pycparser"}, names
    return python


def test_the_standalone_verifier_runs_with_only_its_one_dependency(
    clean_venv: Path, tmp_path: Path
) -> None:
    key = Ed25519PrivateKey.generate()
    (tmp_path / "key.pub").write_bytes(
        key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    )
    place = Folder(tmp_path / "receipts")
    for name, data in chain(key, hourly(3)):
        place.put(name, data)
    tool = tmp_path / "tool"  # the two files a customer downloads, and nothing else of ours
    tool.mkdir()
    for name in ("verify_receipts.py", "receipt_checks.py"):
        shutil.copy(VERIFIER.with_name(name), tool / name)
    argv = [str(clean_venv), str(tool / VERIFIER.name), "--key", str(tmp_path / "key.pub"),
            "--folder", str(tmp_path / "receipts"), "--grace", str(10**9)]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "www: 3 receipts, chain whole" in done.stdout
    (tmp_path / "receipts" / "www" / "0000000001.json").unlink()
    done = subprocess.run(argv, capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 1 and "missing (deleted?)" in done.stdout, done.stdout
    assert sys.executable not in done.stdout  # it never ran our interpreter


def test_a_place_never_replaces_a_receipt(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    place = Folder(tmp_path)
    (name, data), (_, other) = chain(key, hourly(2))
    place.put(name, data)
    place.put(name, data)  # the same bytes again: published before, fine
    with pytest.raises(Exception, match="another one holds its name"):
        place.put(name, other)
    assert place.get(name) == data


@pytest.mark.docker
def test_real_backups_a_prune_and_a_drill_leave_a_chain_the_customer_can_check(
    site: Site, unique: str
) -> None:
    name = f"rc-{unique}"
    source = site.root / "www"
    source.mkdir()
    (source / "index.html").write_text("<h1>hi</h1>\n")
    site.customer(name, customer_text("pw-receipts", source, "KEEP_LAST=5\n"))
    for step in ("backup", "backup", "prune", "verify"):
        site.cli(step, name, check=True)
    folder = site.data / "cold" / name / "receipts"
    published = sorted(p.name for p in (folder / "files").iterdir())
    assert published == [f"{i:010d}.json" for i in range(4)], published
    kinds = [json.loads((folder / "files" / n).read_text())["receipt"] for n in published]
    assert [(k["kind"], k["result"]) for k in kinds] == [
        ("backup", "success"),
        ("backup", "success"),
        ("prune", "success"),
        ("verify", "success"),
    ]
    assert kinds[0]["snapshot"] and kinds[0]["files"] == 1 and kinds[0]["next"]
    assert len(kinds[0]["tree"]) == 64 and kinds[3]["slice"] == "1/4"
    assert kinds[2]["keep_within"] == 7 * 86400
    done = site.cli("receipts", "verify", name, check=True)
    assert "files: 4 receipts, chain whole; 2 backup times, 2 succeeded, " in done.stdout
    assert "0 missed, last drill" in done.stdout and "(slice 1/" in done.stdout

    # The customer's own check: the public key handed out, the standalone script.
    (site.root / "key.pub").write_text(site.cli("receipts", "pubkey", check=True).stdout)
    argv = [sys.executable, str(VERIFIER), "--key", str(site.root / "key.pub"),
            "--folder", str(folder)]  # fmt: skip
    assert subprocess.run(argv, capture_output=True).returncode == 0

    # The data directory's state lost: the chain goes on from what was published.
    shutil.rmtree(site.data / "state" / "receipts")
    site.cli("backup", name, check=True)
    assert site.cli("receipts", "verify", name).returncode == 0
    assert json.loads((folder / "files" / "0000000004.json").read_text())["receipt"]["seq"] == 4

    # One receipt deleted: found, and named.
    (folder / "files" / "0000000001.json").unlink()
    broken = site.cli("receipts", "verify", name)
    assert broken.returncode == 1
    assert "files/0000000002.json: seq 2 where 1 was due" in broken.stdout, broken.stdout

    # A snapshot a receipt names, taken out of the repository behind the prunes' back.
    snapshot = json.loads((folder / "files" / "0000000004.json").read_text())["receipt"]
    (site.data / "cold" / name / "files" / "snapshots" / snapshot["snapshot"]).unlink()
    broken = site.cli("receipts", "verify", name)
    assert broken.returncode == 1
    said = f"snapshot {snapshot['snapshot'][:16]} (backup ended {snapshot['ended']}) is not in"
    assert said in broken.stdout, broken.stdout


def test_a_receipt_that_cannot_be_published_waits_and_is_never_dropped(tmp_path: Path) -> None:
    settings = load_settings(
        {"UNSTOPPABLE_CONFIG": str(tmp_path / "none.env"), "UNSTOPPABLE_DATA_DIR": str(tmp_path)}
    )
    job = JobKey("acme", "www")
    issuer = Issuer(settings, lambda _job: Terms("0 * * * *", "UTC"))
    blocked = tmp_path / "cold" / "acme" / "receipts"
    blocked.parent.mkdir(parents=True)
    blocked.write_text("not a folder: the customer's storage refuses every write")
    outcome = Outcome(Result.SUCCESS, Reason.NONE, "")
    for hour in range(2):
        run = RunRecord(job, Kind.BACKUP, T0 + timedelta(hours=hour), T0, T0, outcome)
        issuer.run(run)  # never raises: the receipt waits in the spool
    assert issuer.undelivered() == {job: 2}
    blocked.unlink()
    assert issuer.deliver(job) == 0 and issuer.undelivered() == {}
    published = Folder(blocked).names("www")
    assert published == ["www/0000000000.json", "www/0000000001.json"]
    chained = [(n, Folder(blocked).get(n)) for n in published]
    receipts, problems = check(chained, receipt_key(settings).public_key())
    assert problems == [] and receipts[0]["next"] == "2026-12-01T04:00:00Z"


def test_times_still_to_come_and_receipts_of_others_are_named() -> None:
    key = Ed25519PrivateKey.generate()
    now = T0 + timedelta(hours=5)
    # A missed range reaching past now would settle every time before it without a run.
    lying = {"kind": "backup", "result": "missed", "first": stamp(T0),
             "scheduled_for": "2999-01-01T00:00:00Z", "count": 1}  # fmt: skip
    chains = {"www": chain(key, [*hourly(2), lying])}
    out = io.StringIO()
    assert not report(chains, key.public_key(), now, timedelta(hours=1), out)
    assert "scheduled_for '2999-01-01T00:00:00Z' is not a past time" in out.getvalue()
    # Another customer's chain for a resource of the same name, copied in: refused.
    theirs = chain(key, hourly(2))  # customer acme
    out = io.StringIO()
    assert not report({"www": theirs}, key.public_key(), now, timedelta(hours=1), out, "beta")
    assert "a receipt of customer 'acme'" in out.getvalue()
    # One resource's receipts filed under another's name: refused.
    out = io.StringIO()
    assert not report({"db": theirs}, key.public_key(), now, timedelta(hours=1), out)
    assert "a receipt of resource 'www'" in out.getvalue()
    # A prune at the promised time does not stand in for the backup.
    prune = {"kind": "prune", "result": "success", "scheduled_for": stamp(T0 + timedelta(hours=1))}
    receipts = [opened(d)[0] for _, d in chain(key, [hourly(1)[0], prune])]
    assert gaps(receipts, now, timedelta(hours=1)) == [stamp(T0 + timedelta(hours=1))]


def test_coverage_counts_every_time_a_missed_range_covers_and_names_refusals() -> None:
    receipts = [
        {"kind": "backup", "result": "success"},
        {"kind": "backup", "result": "missed", "count": 3},
        {"kind": "backup", "result": "failure", "reason": "source_shrunk"},
        {"kind": "backup", "result": "failure", "reason": "connect"},
        {"kind": "backup", "result": "suspect"},
        {"kind": "prune", "result": "success"},
        {"kind": "verify", "result": "corrupt", "ended": "2026-12-01T05:00:00Z", "slice": "2/4"},
    ]
    assert coverage(receipts) == (
        "7 backup times, 1 succeeded, 1 failed, 1 refused, 1 suspect, 0 skipped, 3 missed, "
        "last drill 2026-12-01T05:00:00Z: corrupt (slice 2/4)"
    )


def test_a_snapshot_gone_without_a_prune_that_could_forget_it_is_named() -> None:
    def backup(
        snapshot: str, hours: float, took: float = 0.1, ok: bool = True
    ) -> dict[str, object]:
        return {"kind": "backup", "result": "success" if ok else "failure", "snapshot": snapshot,
                "started": stamp(T0 + timedelta(hours=hours)),
                "ended": stamp(T0 + timedelta(hours=hours + took))}  # fmt: skip

    def prune(hours: float, forgot: bool = True, within: int = 7 * 86400) -> dict[str, object]:
        return {"kind": "prune", "started": stamp(T0 + timedelta(hours=hours)),
                "forgot": forgot, "keep_within": within}  # fmt: skip

    def gone(receipts: list[dict[str, object]], held: set[str]) -> list[str]:
        return [said.split()[1] for said in unheld(receipts, held)]

    week = 7 * 24
    # A six-hour first backup, hourly ones after it, a forget a week later at 04:00: the
    # first began a week before a clean one that the forget saw, so it may be gone.
    hourly = [backup(f"{h:064d}", h) for h in range(6, week + 4)]
    first = backup("a" * 64, 0, took=6)
    receipts = [first, *hourly, prune(week + 4)]
    everything_kept = {r["snapshot"] for r in hourly}  # type: ignore[misc]
    assert gone(receipts, everything_kept) == []  # the first one: forgettable
    # A prune that forgot nothing (a hold, no KEEP_*) could not have taken it.
    assert gone([first, *hourly, prune(week + 4, forgot=False)], everything_kept) == ["a" * 16]
    # Backups failing for three weeks while forgets run daily: the last clean snapshot stays.
    last = backup("b" * 64, 0)
    failing = [backup("", 24 * d, ok=False) for d in range(1, 22)]
    daily = [prune(24 * d + 12) for d in range(1, 22)]
    mixed = [last, *[x for pair in zip(failing, daily, strict=True) for x in pair]]
    assert gone(mixed, set()) == ["b" * 16]
    # One taken a day after it was made, with a week's keep_within: not by any forget.
    young = [backup("c" * 64, 0), backup("d" * 64, 24), prune(30)]
    assert gone(young, {"d" * 64}) == ["c" * 16]


def test_a_planted_receipt_nested_deep_is_named_and_a_missing_repository_is_no_answer(
    tmp_path: Path,
) -> None:
    key = Ed25519PrivateKey.generate()
    planted = ("www/0000000002.json", b"[" * 200_000)
    chains = {"www": [*chain(key, hourly(2)), planted]}
    out = io.StringIO()
    assert not report(chains, key.public_key(), T0 + timedelta(hours=2), timedelta(hours=1), out)
    assert "www/0000000002.json: " in out.getvalue()
    named = [{**f, "snapshot": "e" * 64} for f in hourly(2)]
    out = io.StringIO()
    assert not report(
        {"www": chain(key, named)}, key.public_key(), T0 + timedelta(hours=2),
        timedelta(hours=1), out, held={"www": None},
    )  # fmt: skip
    assert "snapshots/ cannot be read" in out.getvalue()


def test_rows_a_killed_process_wrote_without_receipts_are_receipted_late_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from orchestrator.receipts import reconcile as late
    from orchestrator.receipts.receipted import Receipted
    from orchestrator.receipts.spool import EVENTS, Entry
    from orchestrator.reporting.history import Event
    from orchestrator.reporting.ledger import Ledger

    settings, ledger, issuer = receipting(tmp_path)
    job = JobKey("acme", "www")
    receipted = Receipted(ledger.history, issuer)
    outcome = Outcome(Result.SUCCESS, Reason.NONE, "")
    receipted.record_run(RunRecord(job, Kind.BACKUP, T0, T0, T0, outcome))
    receipted.record_event(job, Event.SKIPPED, "overlap", T0 + timedelta(hours=1))
    # Killed between the ledger and the receipt, twice: the rows are there, no receipts.
    now = datetime.now(UTC)
    ledger.history.record_run(
        RunRecord(job, Kind.BACKUP, T0 + timedelta(hours=2), now, now, outcome)
    )
    ledger.history.record_event(
        job, Event.MISSED, "", T0 + timedelta(hours=4), 2, T0 + timedelta(hours=3)
    )
    assert late.reconcile(issuer, ledger.db) == 0  # too young: their own process may issue them
    monkeypatch.setattr(late, "SETTLE", timedelta(0))
    assert late.reconcile(issuer, ledger.db) == 2
    assert late.reconcile(issuer, ledger.db) == 0  # once
    # The killed process comes back and issues its own: it is done already, not twice.
    skipped_row = ledger.history.record_event(
        job, Event.SKIPPED, "overlap", T0 + timedelta(hours=5)
    )
    issuer.ticks(
        job, "skipped", "overlap", T0 + timedelta(hours=5), entry=Entry(EVENTS, skipped_row)
    )
    assert late.reconcile(issuer, ledger.db) == 0
    issuer.ticks(
        job, "skipped", "overlap", T0 + timedelta(hours=5), entry=Entry(EVENTS, skipped_row)
    )
    folder = tmp_path / "cold" / "acme" / "receipts"
    published = [(n, Folder(folder).get(n)) for n in Folder(folder).names("www")]
    receipts, problems = check(published, receipt_key(settings).public_key(), ("acme", "www"))
    assert problems == []
    assert [(r["result"], r["scheduled_for"]) for r in receipts] == [
        ("success", stamp(T0)),
        ("skipped", stamp(T0 + timedelta(hours=1))),
        ("success", stamp(T0 + timedelta(hours=2))),
        ("missed", stamp(T0 + timedelta(hours=4))),
        ("skipped", stamp(T0 + timedelta(hours=5))),
    ]
    assert receipts[3]["first"] == stamp(T0 + timedelta(hours=3)) and receipts[3]["count"] == 2
    # A ledger moved aside starts its rows from 1 again: the old marks are not its own.
    (tmp_path / "state" / "ledger.sqlite3").unlink()
    fresh = Ledger(tmp_path / "state")
    fresh.history.record_run(
        RunRecord(job, Kind.BACKUP, T0 + timedelta(hours=6), now, now, outcome)
    )
    assert late.reconcile(issuer, fresh.db) == 0  # no marks of this ledger: nothing guessed


def test_a_ledger_taking_no_writes_owes_its_rows_and_their_receipts_once_and_in_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full disk under the daemon's ledger: the runs and skipped times it could not write
    are owed, not lost, and written when it takes writes again, each with one receipt."""
    import sqlite3

    from orchestrator.recorder import Recorder
    from orchestrator.reporting.history import Event

    settings, ledger, issuer = receipting(tmp_path)
    job = JobKey("acme", "www")
    counted: list[str] = []
    recorder = Recorder(ledger, counted.append, issuer)
    full = [True]
    history = ledger.history
    for name in ("record_run", "record_event"):
        real = getattr(history, name)

        def refusing(*args: object, _real: Any = real) -> Any:
            if full[0]:
                raise sqlite3.OperationalError("database or disk is full")
            return _real(*args)

        monkeypatch.setattr(history, name, refusing)
    outcome = Outcome(Result.SUCCESS, Reason.NONE, "")
    recorder.record(RunRecord(job, Kind.BACKUP, T0, T0, T0, outcome))
    recorder.event(job, Event.SKIPPED, "overlap", T0 + timedelta(hours=1))
    assert counted == ["ledger", "ledger"]
    assert ledger.history.runs(job) == []
    folder = tmp_path / "cold" / "acme" / "receipts"
    assert not folder.exists() or Folder(folder).names("www") == [], "no receipt before its row"
    assert not recorder.flush(), "still full: still owed"
    full[0] = False
    later = T0 + timedelta(hours=2)
    recorder.record(RunRecord(job, Kind.BACKUP, later, later, later, outcome))
    assert recorder.flush()
    runs = ledger.history.runs(job)
    assert [r.scheduled_for for r in runs] == [T0.isoformat(), later.isoformat()]
    assert ledger.history.event_count(job, Event.SKIPPED) == 1
    published = [(n, Folder(folder).get(n)) for n in Folder(folder).names("www")]
    receipts, problems = check(published, receipt_key(settings).public_key(), ("acme", "www"))
    assert problems == []
    assert [(r["result"], r["scheduled_for"]) for r in receipts] == [
        ("success", "2026-12-01T03:00:00Z"),
        ("skipped", "2026-12-01T04:00:00Z"),
        ("success", "2026-12-01T05:00:00Z"),
    ]


def test_a_record_the_ledger_can_never_take_is_dropped_receipted_and_blocks_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A value sqlite refuses for good (a count past 64 bits from a worker's output) is not
    owed: owed first in line, it would hold back every later record of every customer."""
    from orchestrator.recorder import Recorder

    settings, ledger, issuer = receipting(tmp_path)
    job = JobKey("acme", "www")
    counted: list[str] = []
    recorder = Recorder(ledger, counted.append, issuer)
    real = ledger.history.record_run

    def refusing(run: RunRecord) -> Any:
        if run.scheduled_for == T0:
            raise OverflowError("Python int too large to convert to SQLite INTEGER")
        return real(run)

    monkeypatch.setattr(ledger.history, "record_run", refusing)
    outcome = Outcome(Result.SUCCESS, Reason.NONE, "")
    later = T0 + timedelta(hours=1)
    recorder.record(RunRecord(job, Kind.BACKUP, T0, T0, T0, outcome))
    recorder.record(RunRecord(job, Kind.BACKUP, later, later, later, outcome))
    assert list(recorder.owed) == []
    assert counted == ["ledger"]
    assert [r.scheduled_for for r in ledger.history.runs(job)] == [later.isoformat()]
    folder = tmp_path / "cold" / "acme" / "receipts"
    published = [(n, Folder(folder).get(n)) for n in Folder(folder).names("www")]
    receipts, problems = check(published, receipt_key(settings).public_key(), ("acme", "www"))
    assert problems == []
    assert [r["scheduled_for"] for r in receipts] == [
        "2026-12-01T03:00:00Z",
        "2026-12-01T04:00:00Z",
    ]


def test_a_first_receipt_the_store_cannot_start_is_owed_and_issued_late(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A job's first receipt reads its chain's head from the store; the store down then
    (the soak's MinIO stopped at start) left that time without a receipt for good."""
    from orchestrator.receipts import reconcile as late
    from orchestrator.receipts.receipted import Receipted
    from orchestrator.reporting.history import Event
    from orchestrator.storage.s3_values import StorageError

    settings, ledger, issuer = receipting(tmp_path)
    job = JobKey("acme", "www")
    counted: list[str] = []
    receipted = Receipted(ledger.history, issuer, counted.append)
    real = Folder.names

    def down(self: Folder, resource: str) -> list[str]:
        raise StorageError("cannot reach the object store at 127.0.0.1:9")

    monkeypatch.setattr(Folder, "names", down)
    receipted.record_event(job, Event.MISSED, "", T0, 1, T0)
    assert counted == ["receipts"], "not issued now"
    monkeypatch.setattr(Folder, "names", real)
    monkeypatch.setattr(late, "SETTLE", timedelta(0))
    assert late.reconcile(issuer, ledger.db) == 1
    assert late.reconcile(issuer, ledger.db) == 0
    folder = tmp_path / "cold" / "acme" / "receipts"
    published = [(n, Folder(folder).get(n)) for n in Folder(folder).names("www")]
    receipts, problems = check(published, receipt_key(settings).public_key(), ("acme", "www"))
    assert problems == []
    assert [(r["result"], r["scheduled_for"]) for r in receipts] == [
        ("missed", "2026-12-01T03:00:00Z")
    ]


def test_a_ledger_unreadable_at_start_leaves_receipts_on(tmp_path: Path) -> None:
    """A daemon started while its data disk was full (the ledger's id unreadable) turned
    receipts off for its whole life: every run after had none (the soak's seed 9)."""
    import sqlite3

    from orchestrator.receipts.reconcile import issuer_for

    class Unreadable:
        def get_state(self, key: str) -> str | None:
            raise sqlite3.OperationalError("disk I/O error")

    settings = load_settings(
        {"UNSTOPPABLE_CONFIG": str(tmp_path / "none.env"), "UNSTOPPABLE_DATA_DIR": str(tmp_path)}
    )
    issuer = issuer_for(settings, lambda _job: Terms("0 * * * *", "UTC"), Unreadable())  # type: ignore[arg-type]
    assert issuer is not None
    issuer.ticks(JobKey("acme", "www"), "missed", "", T0, 1)
    assert issuer.deliver(JobKey("acme", "www")) == 0
    assert Folder(tmp_path / "cold" / "acme" / "receipts").names("www") == ["www/0000000000.json"]


def test_one_jobs_slow_receipt_holds_back_no_other_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Records are written outside the Recorder's lock when nothing is owed: a receipt
    waiting on one customer's store must not stall another's record, or the tick."""
    import threading
    import time

    from orchestrator.recorder import Recorder
    from orchestrator.reporting.ledger import Ledger

    settings = load_settings(
        {"UNSTOPPABLE_CONFIG": str(tmp_path / "none.env"), "UNSTOPPABLE_DATA_DIR": str(tmp_path)}
    )
    ledger = Ledger(tmp_path / "state")
    issuer = Issuer(settings, lambda _job: Terms("0 * * * *", "UTC"))
    recorder = Recorder(ledger, lambda _w: None, issuer)
    slow, release = JobKey("slow", "www"), threading.Event()
    real = issuer.run

    def stalled(run: RunRecord, *args: Any) -> None:
        if run.job == slow:
            release.wait(20)
        real(run, *args)

    monkeypatch.setattr(issuer, "run", stalled)
    outcome = Outcome(Result.SUCCESS, Reason.NONE, "")
    waiting = threading.Thread(
        target=recorder.record, args=(RunRecord(slow, Kind.BACKUP, T0, T0, T0, outcome),)
    )
    waiting.start()
    time.sleep(0.3)
    started = time.monotonic()
    fast = JobKey("fast", "www")
    recorder.record(RunRecord(fast, Kind.BACKUP, T0, T0, T0, outcome))
    assert recorder.write(ledger.db.set_state, "last_tick", "x")
    assert time.monotonic() - started < 5
    assert len(ledger.history.runs(fast)) == 1
    release.set()
    waiting.join(20)
    assert len(ledger.history.runs(slow)) == 1


def receipting(tmp_path: Path) -> tuple[Any, Any, Issuer]:
    """Return settings of a data directory in `tmp_path`, its ledger, and an issuer of
    receipts for it, as the daemon has them."""
    from orchestrator.reporting.ledger import Ledger
    from orchestrator.reporting.store import LEDGER_ID

    settings = load_settings(
        {"UNSTOPPABLE_CONFIG": str(tmp_path / "none.env"), "UNSTOPPABLE_DATA_DIR": str(tmp_path)}
    )
    ledger = Ledger(tmp_path / "state")
    issuer = Issuer(settings, lambda _job: Terms("0 * * * *", "UTC"))
    issuer.ledger_id = ledger.db.get_state(LEDGER_ID) or ""
    return settings, ledger, issuer
