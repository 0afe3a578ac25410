"""Remote sources end to end: real vsftpd (explicit TLS, passive) and OpenSSH on loopback."""

import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.model import JobKey
from orchestrator.reporting.history import Event
from orchestrator.reporting.ledger import Ledger
from tests.conftest import Site
from tests.hostile import HOST_KEY
from tests.servers import PASSWORD, USER, Ftps, Sftp, open_dir, sshd, vsftpd

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def ftps() -> Iterator[Ftps]:
    with vsftpd() as server:
        yield server


@pytest.fixture(scope="module")
def sftp() -> Iterator[Sftp]:
    with sshd() as server:
        yield server


@pytest.fixture
def source() -> Iterator[Path]:
    path = open_dir("unstoppable-remote-src-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


def fill(root: Path) -> None:
    (root / "nested" / "deeper").mkdir(parents=True)
    (root / "empty").mkdir()
    (root / "index.html").write_text("<h1>home</h1>\n")
    (root / "with space.txt").write_text("spaces\n")
    (root / "ünïcødé.txt").write_text("unicode\n")
    (root / "nested" / "deeper" / "data.bin").write_bytes(os.urandom(3 * 1024 * 1024))
    for i in range(20):
        (root / "nested" / f"page-{i}.html").write_text(f"page {i}\n" * 100)
    for path in root.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)


def change(root: Path) -> None:
    (root / "index.html").write_text("<h1>home, edited</h1>\n")
    (root / "nested" / "page-3.html").unlink()
    (root / "new.txt").write_text("new\n")
    (root / "new.txt").chmod(0o644)
    os.utime(root / "index.html", (1_800_000_000, 1_800_000_000))


def contents(root: Path) -> dict[str, str]:
    """Return {relative path: sha256} of every file: FTP carries bytes, not modes."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def ftps_customer(
    site: Site,
    name: str,
    server: Ftps,
    path: Path,
    extra: str = "",
    password: str = PASSWORD,
    port: int | None = None,
) -> None:
    site.customer(
        name,
        f'SCHEDULE="0 3 * * *"\nREPO_PASSWORD=repo-{name}\nRESOURCES=site\n'
        f"SITE_TYPE=ftps\nSITE_HOST=127.0.0.1\nSITE_PORT={port or server.port}\n"
        f"SITE_USER={USER}\nSITE_PASSWORD={password}\nSITE_PATH={path}\n"
        f"{extra or f'SITE_TLS_CA_FILE={site.key_file(name, server.ca)}'}\n",
    )


def sftp_customer(
    site: Site, name: str, server: Sftp, path: Path, auth: str = "", host_key: str | None = None
) -> None:
    site.customer(
        name,
        f'SCHEDULE="0 3 * * *"\nREPO_PASSWORD=repo-{name}\nRESOURCES=mail\n'
        f"MAIL_TYPE=sftp\nMAIL_HOST=127.0.0.1\nMAIL_PORT={server.port}\n"
        f"MAIL_USER={USER}\nMAIL_PATH={path}\n"
        f'MAIL_HOST_KEY="{host_key or server.host_key}"\n'
        f"{auth or f'MAIL_KEY_FILE={site.key_file(name, server.client_key)}'}\n",
    )


def snapshots(site: Site, name: str, resource: str) -> list[str]:
    done = site.cli("snapshots", name, resource, "--json", check=True)
    return [s["id"] for s in json.loads(done.stdout)]


def round_trip(site: Site, name: str, resource: str, source: Path) -> None:
    fill(source)
    site.cli("backup", name, check=True)
    first = contents(source)
    change(source)
    second_run = site.cli("backup", name, check=True)
    assert f"{name}/{resource}: success" in second_run.stdout
    second = contents(source)
    ids = snapshots(site, name, resource)
    assert len(ids) == 2
    for snapshot, expected in zip(ids, (first, second), strict=True):
        target = site.root / f"restore-{snapshot[:8]}"
        site.cli(
            "restore", name, resource, "--target", str(target), "--snapshot", snapshot, check=True
        )
        assert contents(target) == expected
    site.cli("check", name, resource, "--read-data", check=True)


def test_ftps_full_incremental_restore(site: Site, ftps: Ftps, unique: str, source: Path) -> None:
    name = f"ftps-{unique}"
    ftps_customer(site, name, ftps, source)
    round_trip(site, name, "site", source)


def test_ftps_one_connection_reads_a_file_larger_than_a_read_chunk(
    site: Site, unique: str, source: Path
) -> None:
    """SITE_CONNECTIONS=1, and a 130 MiB file: rclone reads it in chunks of 128 MiB and
    opens the next before it closes the first, so a reader briefly holds two logins (a cap
    of one per reader hung here until the job timeout). The host allows the four the worker
    may hold (2 x 1 + 1, and the path check at start); the backups restore whole."""
    name = f"ftps-one-{unique}"
    with open(source / "dump.sql", "wb") as big:
        for _ in range(130):
            big.write(os.urandom(1024 * 1024))
    (source / "dump.sql").chmod(0o644)
    with vsftpd(max_per_ip=4) as limited:
        ca = site.key_file(name, limited.ca)
        ftps_customer(site, name, limited, source, f"SITE_TLS_CA_FILE={ca}\nSITE_CONNECTIONS=1")
        round_trip(site, name, "site", source)


def test_sftp_full_incremental_restore_with_a_key(
    site: Site, sftp: Sftp, unique: str, source: Path
) -> None:
    name = f"sftp-{unique}"
    sftp_customer(site, name, sftp, source)
    round_trip(site, name, "mail", source)


def test_sftp_with_a_password(site: Site, sftp: Sftp, unique: str, source: Path) -> None:
    name = f"sftpw-{unique}"
    fill(source)
    sftp_customer(site, name, sftp, source, auth=f"MAIL_PASSWORD={PASSWORD}")
    done = site.cli("backup", name, check=True)
    assert f"{name}/mail: success" in done.stdout


def test_sftp_by_name_dials_the_address_judged(
    site: Site, sftp: Sftp, unique: str, source: Path
) -> None:
    """HOST=localhost is judged, then rclone dials that address with the key pinned for it:
    a second DNS answer (rebinding) is never asked for."""
    name = f"sftpn-{unique}"
    fill(source)
    sftp_customer(site, name, sftp, source, auth=f"MAIL_PASSWORD={PASSWORD}")
    path = site.customers / f"{name}.env"
    path.write_text(path.read_text().replace("MAIL_HOST=127.0.0.1", "MAIL_HOST=localhost"))
    site.env["UNSTOPPABLE_ALLOW_PRIVATE_TARGETS"] = "127.0.0.0/8,::1/128"
    done = site.cli("backup", name, check=True)
    assert f"{name}/mail: success" in done.stdout


def test_an_unchanged_incremental_downloads_no_file(
    site: Site, ftps: Ftps, unique: str, source: Path
) -> None:
    name = f"incr-{unique}"
    fill(source)
    ftps_customer(site, name, ftps, source, extra=f"SITE_TLS_FINGERPRINT={ftps.fingerprint}")
    site.cli("backup", name, check=True)
    downloaded_first = [p for p in ftps.downloads() if p.startswith(str(source))]
    assert len(downloaded_first) >= len(contents(source))  # every file, some in ranges
    second = site.cli("backup", name, check=True)
    assert ": 0 new, 0 changed, 0 B added" in second.stdout, second.stdout
    downloaded_after = [p for p in ftps.downloads() if p.startswith(str(source))]
    assert downloaded_after == downloaded_first, "the unchanged run downloaded file content"


FAILURES = [
    ("auth", lambda s, f, src: ftps_customer(s, "fail", f, src, password="wrong-password")),
    ("connect", lambda s, f, src: ftps_customer(s, "fail", f, src, port=1)),
    (
        "tls",
        lambda s, f, src: ftps_customer(
            s, "fail", f, src, extra="SITE_TLS_FINGERPRINT=sha256:" + ":".join(["AB"] * 32)
        ),
    ),
    # no CA file: the system roots, which do not know the test CA
    ("tls", lambda s, f, src: ftps_customer(s, "fail", f, src, extra="SITE_TLS_VERIFY=true")),
    ("path_not_found", lambda s, f, src: ftps_customer(s, "fail", f, src / "no-such-dir")),
]


@pytest.mark.parametrize(
    ("reason", "configure"),
    FAILURES,
    ids=["wrong-password", "server-down", "wrong-fingerprint", "unknown-ca", "missing-path"],
)
def test_ftps_failures_carry_their_reason(
    site: Site, ftps: Ftps, source: Path, reason: str, configure: object
) -> None:
    fill(source)
    configure(site, ftps, source)  # type: ignore[operator]
    done = site.cli("backup", "fail")
    assert done.returncode == 1
    assert f"fail/site: failure ({reason})" in done.stdout, done.stdout + done.stderr
    rows = {r["job"]: r for r in json.loads(site.cli("status", "--json", check=True).stdout)}
    assert rows["fail/site"]["reason"] == reason
    assert (
        Ledger(site.data / "state").history.event_count(JobKey.parse("fail/site"), Event.SKIPPED)
        == 0
    )
    assert PASSWORD not in done.stdout + done.stderr


def test_sftp_with_a_different_host_key_is_refused(
    site: Site, sftp: Sftp, unique: str, source: Path
) -> None:
    name = f"mitm-{unique}"
    fill(source)
    other = f"ssh-ed25519 {HOST_KEY}"  # well formed, but not the server's key
    sftp_customer(site, name, sftp, source, host_key=other)
    done = site.cli("backup", name)
    assert f"{name}/mail: failure (host_key)" in done.stdout, done.stdout


def test_an_emptied_source_fails_and_writes_no_snapshot(
    site: Site, ftps: Ftps, unique: str, source: Path
) -> None:
    name = f"empty-{unique}"
    fill(source)
    ftps_customer(site, name, ftps, source)
    site.cli("backup", name, check=True)
    for child in source.iterdir():
        shutil.rmtree(child) if child.is_dir() else child.unlink()
    done = site.cli("backup", name)
    assert done.returncode == 1
    assert f"{name}/site: failure (source_empty)" in done.stdout, done.stdout
    assert len(snapshots(site, name, "site")) == 1


def test_a_source_that_lost_most_files_fails(
    site: Site, ftps: Ftps, unique: str, source: Path
) -> None:
    name = f"shrunk-{unique}"
    fill(source)
    ftps_customer(
        site,
        name,
        ftps,
        source,
        extra=f"SITE_TLS_CA_FILE={site.key_file(name, ftps.ca)}\nSITE_SHRINK_THRESHOLD=80",
    )
    site.cli("backup", name, check=True)
    shutil.rmtree(source / "nested")  # 21 of 25 files gone
    done = site.cli("backup", name)
    assert f"{name}/site: failure (source_shrunk)" in done.stdout, done.stdout
