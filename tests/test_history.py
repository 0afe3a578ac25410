"""No change of a source erases the last good state (issue 12, first part), end to end.

KEEP_LAST=1 throughout, the setting that used to let one hollow run evict the only good
snapshot. Judged by what a restore gives back, not by what the CLI says.
"""

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.model import JobKey
from orchestrator.reporting.ledger import Ledger
from tests.conftest import Site
from tests.servers import open_dir
from tests.test_remote import contents, ftps, ftps_customer  # noqa: F401 (ftps: fixture)

pytestmark = pytest.mark.docker


@pytest.fixture
def tree() -> Iterator[Path]:
    path = open_dir("unstoppable-history-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


def keep_last_one(
    site: Site, name: str, kind: str, tree: Path, request: pytest.FixtureRequest
) -> str:
    """Write a customer with KEEP_LAST=1 backing up `tree` locally or over FTPS."""
    if kind == "local":
        site.customer(
            name,
            f'SCHEDULE="0 3 * * *"\nREPO_PASSWORD=pw\nKEEP_LAST=1\nRESOURCES=files\n'
            f"FILES_TYPE=local\nFILES_PATH={tree}\n",
        )
        return "files"
    ftps_customer(site, name, request.getfixturevalue("ftps"), tree, extra="")
    text = (site.customers / f"{name}.env").read_text()
    (site.customers / f"{name}.env").write_text(text + "KEEP_LAST=1\n")
    return "site"


def fill(root: Path, count: int = 20) -> None:
    for i in range(count):
        (root / f"doc-{i:02d}.txt").write_text(f"document {i}\n" * 200)
        (root / f"doc-{i:02d}.txt").chmod(0o644)


def last_line(site: Site, name: str) -> str:
    """Back up, then apply retention as the weekly maintenance would; return the backup's line."""
    done = site.cli("backup", name)
    line = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else done.stderr
    pruned = site.cli("prune", name)
    assert pruned.returncode == 0, pruned.stdout + pruned.stderr
    return line


def restore(site: Site, name: str, resource: str, snapshot: str = "latest") -> dict[str, str]:
    target = site.root / f"restore-{snapshot}-{os.urandom(3).hex()}"
    site.cli("restore", name, resource, "--target", str(target), "--snapshot", snapshot, check=True)
    return contents(target)


def snapshot_ids(site: Site, name: str, resource: str) -> list[str]:
    import json

    done = site.cli("snapshots", name, resource, "--json", check=True)
    return [s["id"] for s in json.loads(done.stdout)]


@pytest.mark.parametrize("kind", ["local", "ftps"])
def test_a_shrunk_or_wiped_source_never_replaces_the_last_good_state(
    site: Site, unique: str, tree: Path, kind: str, request: pytest.FixtureRequest
) -> None:
    name = f"hist-{kind}-{unique}"
    resource = keep_last_one(site, name, kind, tree, request)
    fill(tree)
    original = contents(tree)
    assert "success" in last_line(site, name)

    # An ordinary day: two edits and an addition.
    (tree / "doc-03.txt").write_text("edited\n" * 150)
    (tree / "doc-07.txt").write_text("edited too\n" * 150)
    (tree / "new.txt").write_text("new\n")
    for path in tree.iterdir():
        path.chmod(0o644)
    line = last_line(site, name)
    assert "success" in line, line
    day_one = contents(tree)

    # A shrink in two steps: to 60 % (allowed by the default 50 %), then to 30 %.
    for i in range(8):
        (tree / f"doc-{i:02d}.txt").unlink()
    line = last_line(site, name)
    assert "success" in line, line
    last_good = contents(tree)
    for i in range(8, 14):
        (tree / f"doc-{i:02d}.txt").unlink()
    line = last_line(site, name)
    assert "failure (source_shrunk)" in line, line

    # Wiped: refused, not backed up as an empty snapshot.
    for path in tree.iterdir():
        path.unlink()
    line = last_line(site, name)
    assert "failure (source_empty)" in line, line

    # Every state that was good is still there and restores byte-identical, KEEP_LAST=1
    # notwithstanding: nothing younger than UNSTOPPABLE_MIN_KEEP_WITHIN is forgotten.
    ids = snapshot_ids(site, name, resource)
    assert len(ids) == 3, ids
    assert restore(site, name, resource) == last_good
    assert restore(site, name, resource, ids[0]) == original
    assert restore(site, name, resource, ids[1]) == day_one

    # The operator says the smaller source is real: it backs up from then on, recorded.
    for i in range(3):
        (tree / f"kept-{i}.txt").write_text("kept\n")
        (tree / f"kept-{i}.txt").chmod(0o644)
    assert "failure (source_shrunk)" in last_line(site, name)
    done = site.cli("accept", name, resource, check=True)
    assert "accepted by" in done.stdout
    line = last_line(site, name)
    assert "success" in line, line
    accepts = Ledger(site.data / "state").memory.accepts(JobKey.parse(f"{name}/{resource}"))
    assert len(accepts) == 1 and accepts[0][1]


def test_an_empty_source_backs_up_only_when_allowed(site: Site, unique: str, tree: Path) -> None:
    name = f"empty-{unique}"
    text = (
        f'SCHEDULE="0 3 * * *"\nREPO_PASSWORD=pw\nRESOURCES=files\n'
        f"FILES_TYPE=local\nFILES_PATH={tree}\n"
    )
    site.customer(name, text)
    assert "failure (source_empty)" in last_line(site, name)
    site.customer(name, text + "FILES_ALLOW_EMPTY=true\n")
    assert "success" in last_line(site, name)


def encrypt_in_place(root: Path) -> None:
    """What ransomware does: every file rewritten, same name and size, as ciphertext."""
    for path in root.rglob("*"):
        if path.is_file():
            path.write_bytes(os.urandom(path.stat().st_size))


@pytest.mark.parametrize("kind", ["local", "ftps"])
def test_a_source_encrypted_in_place_is_flagged_and_holds_retention(
    site: Site, unique: str, tree: Path, kind: str, request: pytest.FixtureRequest
) -> None:
    name = f"enc-{kind}-{unique}"
    resource = keep_last_one(site, name, kind, tree, request)
    fill(tree)
    assert "success" in last_line(site, name)
    (tree / "doc-05.txt").write_text("an ordinary edit\n" * 100)
    assert "success" in last_line(site, name)
    last_good = contents(tree)
    good_ids = snapshot_ids(site, name, resource)

    encrypt_in_place(tree)
    done = site.cli("backup", name)
    assert done.returncode == 1
    assert f"{name}/{resource}: suspect" in done.stdout, done.stdout
    assert "does not compress" in done.stdout
    # Two more runs on the encrypted data: nothing is forgotten while the hold lasts.
    for _ in range(2):
        line = last_line(site, name)
        assert "retention held" in line, line
    snapshots = site.cli("snapshots", name, resource, "--json", check=True).stdout
    import json

    listed = json.loads(snapshots)
    assert len(listed) == 5, listed  # two clean, the suspect one, two held
    assert "unstoppable-suspect" in listed[2]["tags"], listed[2]
    # The last clean one is pinned (tagging gives it a new id): no release can forget it.
    assert "unstoppable-pinned" in listed[1]["tags"], listed[1]
    assert listed[0]["id"] == good_ids[0]
    assert restore(site, name, resource, listed[1]["id"]) == last_good
    status = json.loads(site.cli("status", "--json", check=True).stdout)
    assert any(r["job"] == f"{name}/{resource}" for r in status)
    assert Ledger(site.data / "state").memory.held(JobKey.parse(f"{name}/{resource}"))

    pruned = site.cli("prune", name, check=True)
    assert "nothing forgotten or pruned" in pruned.stdout, pruned.stdout

    done = site.cli("release", name, resource, check=True)
    assert "retention released" in done.stdout
    assert not Ledger(site.data / "state").memory.held(JobKey.parse(f"{name}/{resource}"))
    # Released: retention applies again, but within the floor's age nothing goes.
    pruned = site.cli("prune", name, check=True)
    assert "forget --prune finished" in pruned.stdout, pruned.stdout
    after = json.loads(site.cli("snapshots", name, resource, "--json", check=True).stdout)
    assert [s["id"] for s in after] == [s["id"] for s in listed]
    assert restore(site, name, resource, listed[1]["id"]) == last_good


def test_files_hidden_by_exclude_cannot_fake_the_guard(site: Site, unique: str, tree: Path) -> None:
    """The guard's walk counts excluded padding; rustic's own count is held to the floor."""
    name = f"excl-{unique}"
    site.customer(
        name,
        f'SCHEDULE="0 3 * * *"\nREPO_PASSWORD=pw\nKEEP_LAST=1\nRESOURCES=files\n'
        f'FILES_TYPE=local\nFILES_PATH={tree}\nFILES_EXCLUDE="*.tmp"\n',
    )
    fill(tree)
    last_good = contents(tree)
    assert "success" in last_line(site, name)
    for path in tree.iterdir():
        path.unlink()
    for i in range(30):
        (tree / f"pad-{i}.tmp").write_bytes(b"")
    with open(tree / "big.tmp", "wb") as handle:
        handle.truncate(10 * 1024 * 1024)  # sparse: counts as 10 MiB to the walk
    done = site.cli("backup", name)
    assert f"{name}/files: suspect" in done.stdout, done.stdout
    assert "below the floor" in done.stdout or "no file at all" in done.stdout
    listed = snapshot_ids(site, name, "files")
    assert len(listed) == 2
    assert restore(site, name, "files", listed[0]) == last_good
