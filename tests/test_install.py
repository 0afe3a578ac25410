"""install.sh on a fresh Debian 12 with systemd as PID 1, reaching the host's Docker engine.

Also, without Docker: the shell functions of install.sh and scripts/provision.sh against fake
dpkg, apt-get and apparmor_parser, and the worker's AppArmor profile compiled (never loaded).
"""

import hashlib
import json
import shutil
import ssl
import subprocess
import tarfile
import threading
import time
import tomllib
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.containers import build, on_host_network
from tests.helpers import wait_until
from tests.servers import make_ca, open_dir

IMAGE = "unstoppable-systemd-host:test"
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
README_HOST = "https://<your host>"
PROFILE = ROOT / "worker-image" / "apparmor" / "unstoppable-worker"


def source_tarball(target: Path) -> None:
    """Pack the checkout's tracked files as a release tarball would be."""
    files = (
        subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True)
        .stdout.decode()
        .split("\0")
    )
    with tarfile.open(target, "w:gz") as tar:
        for name in filter(None, files):
            path = ROOT / name
            if path.exists():
                tar.add(path, arcname=f"unstoppable-backups/{name}", recursive=False)


@pytest.fixture(scope="module")
def host(docker_ready: None) -> Iterator[tuple[str, Path, str]]:
    """Start the systemd container; yield (name, shared dir, URL of the web server)."""
    base = subprocess.run(
        ["docker", "image", "inspect", "unstoppable-base:bookworm"], capture_output=True
    )
    assert base.returncode == 0, "base image missing: run `make provision`"
    image = build(ROOT / "tests" / "systemd-host", IMAGE)
    shared = open_dir("unstoppable-install-")
    web = shared / "web"
    web.mkdir()
    shutil.copy(ROOT / "install.sh", web / "install.sh")
    source_tarball(web / "unstoppable.tar.gz")
    # HTTPS, as the README's one-liner says: the server trusts the test CA beside its own.
    tls = shared / "tls"
    tls.mkdir()
    ca, cert, key = make_ca(tls)
    bundle = tls / "ca-certificates.crt"
    bundle.write_text(Path(CA_BUNDLE).read_text() + ca.read_text())
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_QuietHandler, directory=str(web)))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    # Workers start on the host's engine, so every path they mount (data, sources) is
    # bind-mounted into the server at the same path.
    container = (
        on_host_network(
            image,
            None,  # the image's own /sbin/init
            [(Path("/sys/fs/cgroup"), "rw"), (Path("/var/run/docker.sock"), "rw"), (shared, "rw")],
            cap_add=["SYS_ADMIN"],
            security_opt=["seccomp=unconfined"],
            cgroupns="host",
        )
        .with_volume_mapping(bundle, CA_BUNDLE, "ro")
        .with_tmpfs_mount("/run")
        .with_tmpfs_mount("/run/lock")
    )
    try:
        with container:
            name = container.get_wrapped_container().name
            wait_until(
                lambda: (
                    run(name, "systemctl is-system-running --wait || true").stdout.strip()
                    in ("running", "degraded")
                ),
                120,
                "systemd to boot",
            )
            yield name, shared, f"https://127.0.0.1:{server.server_address[1]}"
    finally:
        subprocess.run(
            "docker ps -aq --filter label=unstoppable.customer=onsite | xargs -r docker rm -f",
            shell=True,
            capture_output=True,
        )
        server.shutdown()
        server.server_close()
        shutil.rmtree(shared, ignore_errors=True)


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


def run(name: str, command: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["docker", "exec", name, "bash", "-c", command],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def digest(name: str, path: str) -> str:
    return hashlib.sha256(run(name, f"cat {path}").stdout.encode()).hexdigest()


@pytest.mark.docker
def test_one_line_install_then_a_scheduled_backup_then_upgrade_then_uninstall(
    host: tuple[str, Path, str],
) -> None:
    name, shared, web = host
    data = shared / "data"
    line = (
        f"curl -fsSL {web}/install.sh | UNSTOPPABLE_SOURCE={web}/unstoppable.tar.gz "
        f"UNSTOPPABLE_DATA_DIR={data} bash"
    )
    first = run(name, line)
    assert first.returncode == 0, first.stdout + first.stderr
    assert first.stdout.strip().splitlines()[-1].startswith("Done. Next:")
    # The receipt key is made at install, readable by root alone; its public half handed out.
    key = run(
        name,
        f"stat -c %a {data}/state/receipt.key; cat /etc/unstoppable/receipt-key.pub",
    )
    assert key.stdout.startswith("600\n-----BEGIN PUBLIC KEY-----"), (
        first.stdout + first.stderr + key.stderr
    )
    assert run(name, "systemctl is-active unstoppable").stdout.strip() == "active"

    # The test's schedule is seconds apart and its source lies outside /srv/<customer>:
    # the operator opens both in the settings file, as the README says.
    opened = run(
        name,
        f"printf 'UNSTOPPABLE_MIN_INTERVAL=0\\nUNSTOPPABLE_SOURCE_ROOTS={shared}\\n' "
        ">> /etc/unstoppable/unstoppable.env && systemctl restart unstoppable",
    )
    assert opened.returncode == 0, opened.stdout + opened.stderr
    assert (
        run(
            name, "test -d /etc/unstoppable/keys && stat -c %a /etc/unstoppable/keys"
        ).stdout.strip()
        == "700"
    )

    # A customer file dropped in is backed up on its schedule, without a restart.
    source = shared / "site"
    source.mkdir()
    (source / "index.html").write_text("hello from the server")
    source.joinpath("index.html").chmod(0o644)
    customer = (
        f'SCHEDULE="* * * * * */10"\nREPO_PASSWORD=on-site-pw\nRESOURCES=www\n'
        f"WWW_TYPE=local\nWWW_PATH={source}\n"
    )
    run(name, f"cat > /etc/unstoppable/customers.d/onsite.env <<'X'\n{customer}X")
    started = time.monotonic()

    def snapshots() -> int:
        done = run(name, "unstoppable snapshots onsite www --json")
        return len(json.loads(done.stdout)) if done.returncode == 0 else 0

    wait_until(lambda: snapshots() >= 1, 60, "a scheduled backup within a minute")
    assert time.monotonic() - started < 60
    listed = run(name, "unstoppable snapshots onsite www")
    assert str(source) in listed.stdout

    # A second install changes nothing that works.
    config, customer_file = (
        "/etc/unstoppable/unstoppable.env",
        "/etc/unstoppable/customers.d/onsite.env",
    )
    before = (digest(name, config), digest(name, customer_file))
    second = run(name, line)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "keeping /etc/unstoppable/unstoppable.env" in second.stdout
    assert (digest(name, config), digest(name, customer_file)) == before
    assert run(name, "systemctl is-active unstoppable").stdout.strip() == "active"
    count = snapshots()
    wait_until(lambda: snapshots() > count, 60, "backups to go on after the upgrade")

    # Uninstall removes the software and keeps configuration and repositories.
    gone = run(name, f"curl -fsSL {web}/install.sh | bash -s -- --uninstall")
    assert gone.returncode == 0, gone.stdout + gone.stderr
    assert run(name, "systemctl is-active unstoppable").stdout.strip() != "active"
    assert run(name, "test -e /opt/unstoppable").returncode != 0
    assert run(name, f"test -f {customer_file}").returncode == 0
    assert (data / "hot" / "onsite" / "www" / "config").exists()
    assert any((data / "cold" / "onsite" / "www" / "data").rglob("*"))
    password = shared / "pw"
    password.write_text("on-site-pw")
    check = subprocess.run(
        [
            str(ROOT / ".tools" / "bin" / "rustic"),
            "-r",
            str(data / "cold" / "onsite" / "www"),
            "--password-file",
            str(password),
            "--no-cache",
            "--no-progress",
            "snapshots",
        ],
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stderr


@pytest.mark.docker
def test_install_refuses_without_root_and_says_so(host: tuple[str, Path, str]) -> None:
    name, _shared, web = host
    run(name, "id nobody >/dev/null")
    done = run(
        name,
        f"curl -fsSL {web}/install.sh -o /tmp/i.sh && chmod 755 /tmp/i.sh && "
        "setpriv --reuid=65534 --regid=65534 --clear-groups bash /tmp/i.sh",
    )
    assert done.returncode != 0
    assert "run me as root" in done.stderr


@pytest.mark.docker
def test_install_refuses_an_unsupported_os(tmp_path: Path, docker_ready: None) -> None:
    os_release = tmp_path / "os-release"
    os_release.write_text('ID=alpine\nVERSION_ID=3.20\nPRETTY_NAME="Alpine Linux v3.20"\n')
    done = subprocess.run(
        [
            "docker",
            "run",
            "--rm",
            "-v",
            f"{ROOT / 'install.sh'}:/install.sh:ro",
            "-v",
            f"{os_release}:/etc/os-release:ro",
            "unstoppable-base:bookworm",
            "bash",
            "/install.sh",
        ],
        capture_output=True,
        text=True,
    )
    assert done.returncode != 0
    assert (
        "unsupported OS Alpine Linux v3.20: Debian 12 and Ubuntu 24.04 are supported" in done.stderr
    )


def readme_one_liners() -> tuple[str, str]:
    """Return the README's one-line install and its verified form, exactly as written there."""
    lines = [
        line
        for line in (ROOT / "README.md").read_text().splitlines()
        if line.startswith(f"curl -fsSL {README_HOST}/install.sh | sudo ")
    ]
    plain = [line for line in lines if "SHA256" not in line]
    verified = [
        line for line in lines if "UNSTOPPABLE_SOURCE_SHA256=<sha256 of the tarball>" in line
    ]
    assert len(plain) == 1 and len(verified) == 1, lines
    return plain[0], verified[0]


def installed_version(name: str) -> str:
    shown = run(name, "/opt/unstoppable/venv/bin/pip show unstoppable-backups")
    assert shown.returncode == 0, shown.stderr
    return next(
        line.split()[1] for line in shown.stdout.splitlines() if line.startswith("Version:")
    )


@pytest.mark.docker
def test_readme_one_liner_installs_the_tarball_never_the_directory_it_runs_in(
    host: tuple[str, Path, str],
) -> None:
    name, shared, web = host
    plain, verified = (line.replace(README_HOST, web) for line in readme_one_liners())
    assert plain.endswith(f"| sudo UNSTOPPABLE_SOURCE={web}/unstoppable.tar.gz bash")
    tarball = hashlib.sha256((shared / "web" / "unstoppable.tar.gz").read_bytes()).hexdigest()
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    nothing = "test ! -e /opt/unstoppable && test ! -e /etc/unstoppable && test ! -e /usr/local/bin/unstoppable"
    fresh = (
        f"curl -fsSL {web}/install.sh | bash -s -- --uninstall >/dev/null; "
        "rm -rf /etc/unstoppable /var/lib/unstoppable"
    )
    run(name, fresh)
    # A directory that looks like a checkout: the old script installed it instead of the tarball.
    decoy = "/root/decoy"
    run(
        name,
        f"mkdir -p {decoy}/orchestrator && touch {decoy}/orchestrator/__init__.py "
        f'{decoy}/orchestrator/decoy.py && printf \'[project]\\nname = "unstoppable-backups"\\n'
        f'version = "6.6.6"\\n\' > {decoy}/pyproject.toml',
    )
    try:
        # A tarball whose sha256 differs is refused before anything is installed.
        wrong = "0" * 64
        refused = run(
            name, f"cd $(mktemp -d) && {verified.replace('<sha256 of the tarball>', wrong)}"
        )
        assert refused.returncode != 0
        assert (
            f"install.sh: {web}/unstoppable.tar.gz has sha256 {tarball}, not "
            f"UNSTOPPABLE_SOURCE_SHA256={wrong}: refused, nothing was installed"
        ) in refused.stderr
        assert run(name, nothing).returncode == 0

        empty = run(name, f"cd $(mktemp -d) && {plain}")
        assert empty.returncode == 0, empty.stdout + empty.stderr
        assert f"==> fetching {web}/unstoppable.tar.gz" in empty.stdout
        assert f"==> installing unstoppable-backups {version} into" in empty.stdout
        # This machine has no AppArmor: the branch that loads the profile is not taken.
        assert "==> AppArmor: not enabled on this host, no profile to load" in empty.stdout
        assert run(name, "test ! -e /etc/apparmor.d/unstoppable-worker").returncode == 0
        assert installed_version(name) == version
        assert run(name, "systemctl is-active unstoppable").stdout.strip() == "active"

        from_decoy = run(name, f"cd {decoy} && {plain}")
        assert from_decoy.returncode == 0, from_decoy.stdout + from_decoy.stderr
        assert f"==> fetching {web}/unstoppable.tar.gz" in from_decoy.stdout
        assert "6.6.6" not in from_decoy.stdout
        assert installed_version(name) == version
        site = "/opt/unstoppable/venv/lib/python3*/site-packages/orchestrator"
        assert run(name, f"ls {site}/decoy.py").returncode != 0
        assert run(name, f"ls {site}/cli.py").returncode == 0

        checked = run(
            name, f"cd {decoy} && {verified.replace('<sha256 of the tarball>', tarball.upper())}"
        )
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert f"==> source sha256 {tarball} (verified)" in checked.stdout
        assert installed_version(name) == version
    finally:
        run(name, f"{fresh}; rm -rf {decoy}")


# --- the shell functions, against fake dpkg, apt-get and apparmor_parser (no Docker) ----------

FAKE_DPKG_QUERY = r"""#!/bin/bash
# dpkg-query -W -f=FORMAT PACKAGE, answered from $FAKE/status ("package want eflag status").
fmt= pkg=
while [ $# -gt 0 ]; do
    case $1 in
        -W | --show) ;;
        -f | --showformat) fmt=$2; shift ;;
        -f=* | --showformat=*) fmt=${1#*=} ;;
        *) pkg=$1 ;;
    esac
    shift
done
read -r _ want eflag status < <(grep "^$pkg " "$FAKE/status") \
    || { echo "dpkg-query: no packages found matching $pkg" >&2; exit 1; }
case $want in install) w=i ;; hold) w=h ;; deinstall) w=r ;; purge) w=p ;; *) w=u ;; esac
case $status in installed) s=i ;; config-files) s=c ;; *) s=n ;; esac
fmt=${fmt//'${Status}'/"$want $eflag $status"}
fmt=${fmt//'${db:Status-Abbrev}'/"$w$s "}
fmt=${fmt//'${db:Status-Status}'/$status}
printf '%s' "$fmt"
"""

# Like the real one, `dpkg -s` succeeds for any package dpkg knows, config-files only included.
FAKE_DPKG = r"""#!/bin/bash
[ "$1" = -s ] && grep -q "^$2 " "$FAKE/status"
"""

FAKE_APT_GET = r"""#!/bin/bash
echo "$*" >> "$FAKE/apt.log"
[ "$1" = install ] || exit 0
for pkg; do
    case $pkg in -* | install) continue ;; esac
    sed -i "/^$pkg /d" "$FAKE/status"
    echo "$pkg install ok installed" >> "$FAKE/status"
    [ "$pkg" != apparmor ] || install -m 0755 "$FAKE/parser" "$FAKE/bin/apparmor_parser"
done
"""

FAKE_PARSER = r"""#!/bin/bash
echo "$*" >> "$FAKE/parser.log"
echo "unstoppable-worker (enforce)" >> "$FAKE/profiles"
"""


def shell_functions(script: Path, *names: str) -> str:
    """Return the text of the named top-level functions of a bash script."""
    lines = script.read_text().splitlines()
    out = []
    for name in names:
        start = next(i for i, line in enumerate(lines) if line.startswith(f"{name}() {{"))
        end = start if lines[start].rstrip().endswith("}") else lines.index("}", start)
        out += lines[start : end + 1]
    return "\n".join(out)


class Fakes:
    """A PATH with fake dpkg, dpkg-query, apt-get, id and (optionally) apparmor_parser."""

    def __init__(self, root: Path, status: str = "", parser: bool = True) -> None:
        self.root = root
        (root / "bin").mkdir(parents=True)
        (root / "status").write_text(status)
        for tool, text in [
            ("dpkg-query", FAKE_DPKG_QUERY),
            ("dpkg", FAKE_DPKG),
            ("apt-get", FAKE_APT_GET),
            ("id", "#!/bin/sh\necho 0\n"),
        ]:
            (root / "bin" / tool).write_text(text)
            (root / "bin" / tool).chmod(0o755)
        (root / "parser").write_text(FAKE_PARSER)
        if parser:
            shutil.copy(root / "parser", root / "bin" / "apparmor_parser")
            (root / "bin" / "apparmor_parser").chmod(0o755)

    def run(self, script: str, functions: list[str], body: str) -> subprocess.CompletedProcess[str]:
        text = "\n".join(
            [
                "set -euo pipefail",
                shell_functions(ROOT / script, "say", "die", *functions),
                "APPARMOR_ENABLED=$FAKE/enabled APPARMOR_DIR=$FAKE/apparmor.d APPARMOR_PROFILES=$FAKE/profiles",
                body,
            ]
        )
        # /usr/sbin (the real apparmor_parser) is left out on purpose.
        env = {"PATH": f"{self.root / 'bin'}:/usr/bin:/bin", "FAKE": str(self.root)}
        return subprocess.run(["bash", "-c", text], env=env, capture_output=True, text=True)

    def log(self, name: str) -> list[str]:
        path = self.root / name
        return path.read_text().splitlines() if path.exists() else []


@pytest.mark.parametrize("script", ["install.sh", "scripts/provision.sh"])
def test_apt_install_reinstalls_a_package_removed_with_its_configuration_kept(
    tmp_path: Path, script: str
) -> None:
    fakes = Fakes(
        tmp_path,
        status="here install ok installed\n"
        "held hold ok installed\n"
        "gone deinstall ok config-files\n",
    )
    done = fakes.run(script, ["installed", "apt_install"], "apt_install here held gone never")
    assert done.returncode == 0, done.stderr
    assert fakes.log("apt.log") == [
        "update -qq",
        "install -y -qq --no-install-recommends gone never",
    ]
    again = fakes.run(script, ["installed", "apt_install"], "apt_install here held gone never")
    assert again.returncode == 0, again.stderr
    assert len(fakes.log("apt.log")) == 2, "nothing left to install the second time"


DEB822_SECURITY = """Types: deb
URIs: http://security.example.invalid/debian-security
Suites: bookworm-security
Components: main
"""

MIRRORS = {
    "one-line, with options, comments, sources and other suites skipped": (
        {
            "sources.list": "# deb http://commented.example.invalid/debian bookworm main\n"
            "deb [arch=amd64 signed-by=/usr/share/keyrings/k.gpg] http://security.example.invalid/debian-security bookworm-security main\n"
            "deb-src http://src.example.invalid/debian bookworm main\n"
            "deb http://contrib.example.invalid/debian bookworm contrib\n"
            "deb [ trusted=yes ] http://mirror.example.invalid/debian bookworm main contrib\n"
            "deb http://later.example.invalid/debian bookworm main\n"
        },
        "http://mirror.example.invalid/debian",
    ),
    "deb822, after a disabled stanza, with comments and several suites": (
        {
            "sources.list.d/debian.sources": DEB822_SECURITY + "\n"
            "Types: deb\nURIs: http://disabled.example.invalid/debian\nSuites: bookworm\n"
            "Components: main\nEnabled: no\n\n"
            "Types: deb deb-src\n# a comment inside the stanza\n"
            "URIs: https://mirror.example.invalid/debian\n"
            "Suites: bookworm bookworm-updates\nComponents: main non-free-firmware\n"
            "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
        },
        "https://mirror.example.invalid/debian",
    ),
    "sources.list first, then sources.list.d in name order": (
        {
            "sources.list": "deb http://other.example.invalid/ubuntu noble main\n",
            "sources.list.d/b.list": "deb http://b.example.invalid/debian bookworm main\n",
            "sources.list.d/a.sources": "Types: deb\nURIs: http://a.example.invalid/debian\n"
            "Suites: bookworm\nComponents: main",
            "sources.list.d/c.list.disabled": "deb http://c.example.invalid/debian bookworm main\n",
        },
        "http://a.example.invalid/debian",
    ),
    "nothing serves bookworm main": (
        {
            "sources.list.d/debian.sources": DEB822_SECURITY,
            "sources.list.d/x.list": "deb http://x.example.invalid/debian trixie main\n",
        },
        None,
    ),
    "no sources at all": ({}, None),
}


@pytest.mark.parametrize("case", MIRRORS)
def test_provision_takes_the_debian_mirror_from_the_hosts_apt_sources(
    tmp_path: Path, case: str
) -> None:
    files, expected = MIRRORS[case]
    apt = tmp_path / "apt"
    (apt / "sources.list.d").mkdir(parents=True)
    for path, text in files.items():
        (apt / path).write_text(text)
    done = subprocess.run(
        [
            "bash",
            "-c",
            shell_functions(ROOT / "scripts" / "provision.sh", "debian_mirror")
            + f"\ndebian_mirror {apt}",
        ],
        capture_output=True,
        text=True,
    )
    if expected is None:
        assert (done.returncode, done.stdout) == (1, "")
    else:
        assert (done.returncode, done.stdout) == (0, expected + "\n"), done.stderr


def test_no_script_names_a_package_mirror() -> None:
    found = subprocess.run(
        [
            "grep",
            "-rnIE",
            "(debootstrap|deb )[^#]*https?://",
            "scripts",
            "install.sh",
            "worker-image",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert found.returncode == 1, found.stdout


APPARMOR = ["installed", "apt_install", "apparmor_profile"]


def test_install_loads_the_apparmor_profile_once_where_apparmor_is_enabled(tmp_path: Path) -> None:
    fakes = Fakes(tmp_path / "fakes")
    (fakes.root / "enabled").write_text("Y\n")
    profile = tmp_path / "unstoppable-worker"
    profile.write_text(PROFILE.read_text())
    target = fakes.root / "apparmor.d" / "unstoppable-worker"

    first = fakes.run("install.sh", APPARMOR, f"apparmor_profile {profile}")
    assert first.returncode == 0, first.stderr
    assert target.read_text() == profile.read_text()
    assert fakes.log("parser.log") == [f"-r -W {target}"]
    assert f"==> AppArmor: loaded profile unstoppable-worker ({target})" in first.stdout

    second = fakes.run("install.sh", APPARMOR, f"apparmor_profile {profile}")
    assert second.returncode == 0, second.stderr
    assert "==> AppArmor: profile unstoppable-worker already loaded" in second.stdout
    assert len(fakes.log("parser.log")) == 1

    profile.write_text(PROFILE.read_text() + "# changed\n")
    third = fakes.run("install.sh", APPARMOR, f"apparmor_profile {profile}")
    assert third.returncode == 0, third.stderr
    assert target.read_text() == profile.read_text()
    assert len(fakes.log("parser.log")) == 2
    assert fakes.log("apt.log") == []


def test_install_installs_apparmor_parser_when_apparmor_is_enabled_without_it(
    tmp_path: Path,
) -> None:
    fakes = Fakes(tmp_path, parser=False)
    (fakes.root / "enabled").write_text("Y\n")
    done = fakes.run("install.sh", APPARMOR, f"apparmor_profile {PROFILE}")
    assert done.returncode == 0, done.stderr
    assert "install -y -qq --no-install-recommends apparmor" in fakes.log("apt.log")
    assert fakes.log("parser.log") == [f"-r -W {fakes.root / 'apparmor.d' / 'unstoppable-worker'}"]


@pytest.mark.parametrize("enabled", [None, "N\n"])
def test_install_leaves_apparmor_alone_where_it_is_not_enabled(
    tmp_path: Path, enabled: str | None
) -> None:
    fakes = Fakes(tmp_path)
    if enabled is not None:
        (fakes.root / "enabled").write_text(enabled)
    done = fakes.run("install.sh", APPARMOR, f"apparmor_profile {PROFILE}")
    assert done.returncode == 0, done.stderr
    assert "==> AppArmor: not enabled on this host, no profile to load" in done.stdout
    assert not (fakes.root / "apparmor.d").exists()
    assert fakes.log("parser.log") == fakes.log("apt.log") == []


def test_worker_apparmor_profile_compiles_and_allows_only_fuse_mounts() -> None:
    parser = shutil.which("apparmor_parser") or shutil.which(
        "apparmor_parser", path="/usr/sbin:/sbin"
    )
    if parser is None:
        pytest.skip(
            "apparmor_parser missing: Debian's apparmor package (make provision) provides it"
        )
    # Compiled against Debian's pinned kernel feature set, which mediates mount rules: this
    # machine has no AppArmor in its kernel, so the profile is parsed here but never loaded.
    features = Path("/usr/share/apparmor-features/features")
    assert features.exists(), "Debian's apparmor package ships its policy feature set there"
    done = subprocess.run(
        [
            parser,
            "--skip-kernel-load",
            "--skip-cache",
            "--warn=all",
            "-M",
            str(features),
            str(PROFILE),
        ],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert "mount rules not enforce" not in done.stderr
    text = PROFILE.read_text()
    rules = [line.split("#")[0].strip() for line in text.splitlines()]
    assert "profile unstoppable-worker flags=(attach_disconnected,mediate_deleted) {" in rules
    assert "deny mount," not in rules
    assert {
        "mount fstype=fuse -> /**,",
        "mount fstype=fuse.* -> /**,",
        "umount,",
        "/dev/fuse rw,",
    } <= set(rules)
    # docker-default's denials stay.
    assert {
        "deny @{PROC}/* w,",
        "deny @{PROC}/sys/[^k]** w,",
        "deny @{PROC}/sysrq-trigger rwklx,",
        "deny /sys/kernel/security/** rwklx,",
    } <= set(rules)
