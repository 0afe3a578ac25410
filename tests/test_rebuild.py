"""The backup server lost: `unstoppable rebuild` from the cold repositories alone."""

import contextlib
import json
import shutil
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from tests.conftest import Site
from tests.test_s3 import minio_server, s3_site

pytestmark = pytest.mark.docker


def fill(source: Path, files: int, tag: str) -> None:
    source.mkdir(parents=True, exist_ok=True)
    for i in range(files):
        (source / f"file-{i:02d}.txt").write_text(f"{tag} {i}\n" * (i + 1))


@contextlib.contextmanager
def cold(kind: str, site: Site, work: Path) -> Iterator[None]:
    if kind == "local":
        yield
        return
    with minio_server(work) as server:
        s3_site(site, server, prefix="ub-")
        yield


@pytest.mark.parametrize("kind", ["local", "minio"])
def test_a_rebuild_after_losing_hot_and_ledger_lists_every_snapshot_and_restores_the_newest(
    site: Site, unique: str, kind: str, tmp_path: Path
) -> None:
    with cold(kind, site, tmp_path / "minio"):
        names = [f"rb{i}-{unique}" for i in range(2)]
        sources = {name: site.root / f"src-{name}" for name in names}
        for name in names:
            fill(sources[name], 10, "first")
            site.customer(
                name,
                f'SCHEDULE="0 3 * * *"\nREPO_PASSWORD=pw-{name}\nRESOURCES=files\n'
                f"FILES_TYPE=local\nFILES_PATH={sources[name]}\n",
            )
            site.cli("backup", name, check=True)
            fill(sources[name], 12, "second")
            site.cli("backup", name, check=True)
        before = {n: json.loads(site.cli("snapshots", n, "files", "--json", check=True).stdout)
                  for n in names}  # fmt: skip

        # The server's disk is lost: hot repositories, caches and the ledger are gone.
        for part in ("hot", "cache", "state"):
            shutil.rmtree(site.data / part)
        lost = site.cli("snapshots", names[0], "files", "--json", check=True)
        assert json.loads(lost.stdout) == [], "without a hot repository nothing is listed"

        done = site.cli("rebuild", check=True)
        for name in names:
            assert f"{name}/files: hot repository rebuilt; 2 snapshot(s)" in done.stdout
            assert "baseline: 12 file(s)" in done.stdout  # the most of the window
            after = json.loads(site.cli("snapshots", name, "files", "--json", check=True).stdout)
            assert [s["id"] for s in after] == [s["id"] for s in before[name]]
            target = site.root / f"restored-{name}"
            site.cli("restore", name, "files", "--target", str(target), check=True)
            restored = {p.name: p.read_bytes() for p in target.iterdir()}
            assert restored == {p.name: p.read_bytes() for p in sources[name].iterdir()}

        # The ledger knows each job again: its last success, and the guard's baseline.
        status = {r["job"]: r for r in json.loads(site.cli("status", "--json", check=True).stdout)}
        newest = datetime.fromisoformat(before[names[0]][-1]["time"])
        last = datetime.fromisoformat(str(status[f"{names[0]}/files"]["last_success"]))
        assert abs((last - newest).total_seconds()) < 1
        for extra in list(sources[names[0]].iterdir())[2:]:
            extra.unlink()  # 2 of 12 files left: the baseline read back refuses it
        shrunk = site.cli("backup", names[0])
        assert shrunk.returncode == 1 and "source_shrunk" in shrunk.stdout, shrunk.stdout

        again = site.cli("rebuild", names[1], check=True)
        assert "hot repository present, kept" in again.stdout
        assert "(the ledger knew the job already)" in again.stdout


def test_a_rebuild_without_a_cold_repository_says_so_and_goes_on(site: Site, unique: str) -> None:
    good, empty = f"rbg-{unique}", f"rbe-{unique}"
    for name in (good, empty):
        fill(site.root / f"src-{name}", 3, "x")
        site.customer(
            name,
            f'SCHEDULE="0 3 * * *"\nREPO_PASSWORD=pw\nRESOURCES=files\n'
            f"FILES_TYPE=local\nFILES_PATH={site.root / f'src-{name}'}\n",
        )
    site.cli("backup", good, check=True)
    shutil.rmtree(site.data / "hot")
    done = site.cli("rebuild")
    assert done.returncode == 1
    assert f"{empty}/files: not rebuilt: " in done.stderr
    assert f"{good}/files: hot repository rebuilt; 1 snapshot(s)" in done.stdout
