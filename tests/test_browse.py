"""Browse and partial restore, end to end: real Docker, the worker image and rustic."""

import io
import json
import os
import subprocess
import sys
import tarfile
import time
from datetime import datetime, timedelta

import pytest

from orchestrator.commands.context import size
from tests.conftest import ROOT, Site
from tests.helpers import running_workers, wait_until
from tests.test_local_backup import customer_text

pytestmark = pytest.mark.docker


def snapshots(site: Site, name: str) -> list[dict[str, str]]:
    return json.loads(site.cli("snapshots", name, "files", "--json", check=True).stdout)


def test_a_files_history_a_diff_a_listing_as_of_and_a_glob_restored_alone(
    site: Site, unique: str
) -> None:
    name = f"br-{unique}"
    source = site.root / "www"
    (source / "wp-content" / "uploads").mkdir(parents=True)
    (source / "wp-config.php").write_text("<?php define('DB', 'one');\n")
    (source / "index.php").write_text("<?php // index\n")
    (source / "wp-content" / "uploads" / "a.jpg").write_bytes(os.urandom(3000))
    (source / "wp-content" / "uploads" / "notes.txt").write_text("keep\n")
    site.customer(name, customer_text("pw-browse", source))
    versions = []
    for step in range(3):
        if step == 1:  # a file changes, one is added, one removed
            (source / "wp-config.php").write_text("<?php define('DB', 'two, longer');\n")
            (source / "wp-content" / "uploads" / "b.jpg").write_bytes(os.urandom(5000))
            (source / "index.php").unlink()
        if step == 2:
            (source / "wp-config.php").write_text("<?php define('DB', '3');\n")
        site.cli("backup", name, check=True)
        versions.append((source / "wp-config.php").read_bytes())
    found = snapshots(site, name)
    assert len(found) == 3
    ids = [s["id"] for s in found]

    # A file's history: every snapshot holding it, with its size then.
    history = json.loads(
        site.cli("find", name, "files", "wp-config.php", "--json", check=True).stdout
    )
    assert [(h["snapshot"], h["path"], h["size"]) for h in history] == [
        (i[:8], "wp-config.php", len(v)) for i, v in zip(ids, versions, strict=True)
    ]
    text = site.cli("find", name, "files", "*.jpg", check=True)
    assert "wp-content/uploads/b.jpg" in text.stdout and "5000" in text.stdout

    # What changed from the first snapshot to the second, with sizes.
    diff = json.loads(
        site.cli("diff", name, "files", ids[0][:10], ids[1], "--json", check=True).stdout
    )
    changes = {(c["change"], c["path"]): (c["old_size"], c["new_size"]) for c in diff["changes"]}
    assert changes[("changed", "wp-config.php")] == (len(versions[0]), len(versions[1]))
    assert changes[("added", "wp-content/uploads/b.jpg")] == (None, 5000)
    assert changes[("removed", "index.php")] == (len("<?php // index\n"), None)
    assert ("changed", "wp-content/uploads/notes.txt") not in changes

    # A listing as of a moment between the first and second snapshots: the first's.
    first = datetime.fromisoformat(found[0]["time"])
    moment = (first + (datetime.fromisoformat(found[1]["time"]) - first) / 2).isoformat()
    listing = json.loads(
        site.cli("ls", name, "files", "wp-content", "--as-of", moment, "--json", check=True).stdout
    )
    assert listing["snapshot"] == ids[0]
    assert {e["path"] for e in listing["entries"] if e["type"] == "file"} == {
        "wp-content/uploads/a.jpg",
        "wp-content/uploads/notes.txt",
    }
    early = (first - timedelta(days=1)).isoformat()
    refused = site.cli("ls", name, "files", "--as-of", early)
    assert refused.returncode == 1 and "no snapshot at or before" in refused.stderr

    # A glob restored alone, byte for byte; nothing else comes with it.
    target = site.root / "only-jpg"
    done = site.cli(
        "restore", name, "files", "--target", str(target), "--path", "wp-content/uploads/*.jpg",
        "--json", check=True,
    )  # fmt: skip
    result = json.loads(done.stdout)
    assert (result["files"], result["bytes"]) == (2, 8000), result
    assert result["target"] == str(target) and result["paths"] == ["wp-content/uploads/*.jpg"]
    restored = sorted(str(p.relative_to(target)) for p in target.rglob("*") if p.is_file())
    assert restored == ["wp-content/uploads/a.jpg", "wp-content/uploads/b.jpg"]
    for rel in restored:
        assert (target / rel).read_bytes() == (source / rel).read_bytes()
    # An older version of one file, by its snapshot.
    old = site.root / "old-config"
    site.cli(
        "restore", name, "files", "--target", str(old), "--snapshot", ids[0],
        "--path", "wp-config.php", check=True,
    )  # fmt: skip
    assert [p.name for p in old.iterdir()] == ["wp-config.php"]
    assert (old / "wp-config.php").read_bytes() == versions[0]

    # A path that names nothing: said, and no directory left behind.
    nothing = site.root / "nothing"
    missed = site.cli("restore", name, "files", "--target", str(nothing), "--path", "no/such")
    assert missed.returncode == 1 and "--path 'no/such'" in missed.stderr, missed.stderr
    assert not nothing.exists()
    escape = site.cli("restore", name, "files", "--target", str(nothing), "--path", "../etc")
    assert escape.returncode == 1 and "no '..'" in escape.stderr and not nothing.exists()


def test_an_archive_holds_the_snapshot_and_never_replaces_a_file(site: Site, unique: str) -> None:
    name = f"ar-{unique}"
    source = site.root / "site"
    (source / "sub dir").mkdir(parents=True)
    (source / "index.html").write_text("<h1>hi</h1>\n")
    (source / "sub dir" / "data.bin").write_bytes(os.urandom(70_000))
    site.customer(name, customer_text("pw-archive", source))
    site.cli("backup", name, check=True)
    for archive, mode in ((site.root / "all.tar", "r:"), (site.root / "all.tar.gz", "r:gz")):
        done = site.cli("restore", name, "files", "--archive", str(archive), check=True)
        assert str(archive) in done.stdout
        with tarfile.open(archive, mode) as tar:
            files = {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}  # type: ignore[union-attr]
        assert files == {
            "index.html": (source / "index.html").read_bytes(),
            "sub dir/data.bin": (source / "sub dir" / "data.bin").read_bytes(),
        }
        assert oct(archive.stat().st_mode & 0o777) == "0o600"
    only = site.root / "only.tar"
    site.cli("restore", name, "files", "--archive", str(only), "--path", "sub dir", check=True)
    with tarfile.open(only) as tar:
        assert sorted(m.name for m in tar.getmembers() if m.isfile()) == ["sub dir/data.bin"]
    # An existing file is never replaced, and nothing is left beside it.
    kept = site.root / "kept.tar"
    kept.write_text("precious")
    refused = site.cli("restore", name, "files", "--archive", str(kept))
    assert refused.returncode == 1 and "exists already" in refused.stderr
    assert kept.read_text() == "precious"
    assert not [p for p in site.root.iterdir() if ".unstoppable-" in p.name]
    # `-`: down a pipe, as rustic writes it; nothing staged, nothing left in the data folder.
    piped = subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", "restore", name, "files", "--archive", "-"],
        env=site.env, cwd=ROOT, capture_output=True, timeout=300,
    )  # fmt: skip
    assert piped.returncode == 0, piped.stderr
    with tarfile.open(fileobj=io.BytesIO(piped.stdout), mode="r:") as tar:
        streamed = {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}  # type: ignore[union-attr]
    assert streamed == files
    assert f"written to stdout: {size(len(piped.stdout))}".encode() in piped.stderr
    assert not list((site.data / "restores").iterdir())
    # A worker that fails before it writes a byte ends the stream at once, and says why.
    wrong = subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", "restore", name, "files", "--archive", "-",
         "--snapshot", "deadbeef"],
        env=site.env, cwd=ROOT, capture_output=True, timeout=120,
    )  # fmt: skip
    assert wrong.returncode == 1 and wrong.stdout == b"", wrong.stderr
    assert b"archive failed" in wrong.stderr and b"deadbeef" in wrong.stderr
    json_too = site.cli("restore", name, "files", "--archive", "-", "--json")
    assert json_too.returncode == 1 and "--json cannot" in json_too.stderr
    none = site.root / "none.tar"
    empty = site.cli("restore", name, "files", "--archive", str(none), "--path", "no/such")
    assert empty.returncode == 1 and "names nothing" in empty.stderr and not none.exists()
    option = site.cli("restore", name, "files", "--archive", str(none), "--snapshot=-x")
    assert option.returncode == 1 and "expected an id" in option.stderr and not none.exists()
    assert not [p for p in site.root.iterdir() if ".unstoppable-" in p.name]


def test_a_restore_asked_during_a_prune_waits_for_it_to_end(
    site: Site, unique: str, slow_image: str
) -> None:
    """A prune deletes what a restore may read: the restore waits, says so, then restores."""
    name = f"rp-{unique}"
    source = site.root / "src"
    source.mkdir()
    (source / "f.txt").write_text("keep me\n")
    site.env["UNSTOPPABLE_WORKER_IMAGE"] = slow_image
    site.customer(name, customer_text("pw-rp", source))
    site.cli("backup", name, check=True)
    (site.data / "cold" / name / "files" / ".test-prune-delay").write_text("8")
    prune = subprocess.Popen(
        [sys.executable, "-m", "orchestrator.cli", "prune", name],
        env=site.env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        wait_until(lambda: running_workers(f"{name}_files"), 30, "the prune")
        started = time.monotonic()
        target = site.root / "during-prune"
        done = site.cli("restore", name, "files", "--target", str(target), check=True)
        waited = time.monotonic() - started
        assert f"{name}/files: waiting for its prune to end" in done.stderr, done.stderr
        said = prune.communicate(timeout=60)
        assert prune.returncode == 0, said
        assert waited > 4, f"the restore started {waited:.1f}s in, during the prune"
        assert (target / "f.txt").read_text() == "keep me\n"
    finally:
        if prune.returncode is None:
            prune.kill()
            prune.communicate()
