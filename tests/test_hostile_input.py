"""Adversarial input, pure tier: broken customer files, colliding names, fair shares.

No Docker here; the same directory of broken files runs under the real daemon in
test_unstoppable.py.
"""

import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from orchestrator import deadline
from orchestrator.config.bounds import SourceBounds
from orchestrator.config.confinement import Confinement
from orchestrator.config.customer import Customer, Resource
from orchestrator.config.customer_file import load_customer, load_customers
from orchestrator.config.names import NAME, env_prefix
from orchestrator.config.settings import Settings
from orchestrator.config.source import LocalSource, SourceType
from orchestrator.config.values import SecretRef
from orchestrator.errors import ConfigError
from orchestrator.model import JobKey, Kind, Work
from orchestrator.planner import JobSpec, PlanState, plan
from orchestrator.reporting import pings
from orchestrator.reporting.ledger import Ledger
from orchestrator.runtime.spec import apparmor_options, container_name
from orchestrator.sources import tls_pin
from orchestrator.storage.layout import job_storage
from tests.conftest import ROOT
from tests.hostile import DripServer, valid_text, write_broken

KEYS = [
    "SCHEDULE", "TIMEZONE", "REPO_PASSWORD", "RESOURCES", "PING_URL", "KEEP_LAST",
    "KEEP_DAILY", "WEB_TYPE", "WEB_PATH", "WEB_HOST", "WEB_PORT", "WEB_USER",
    "WEB_PASSWORD", "WEB_TLS", "WEB_TLS_VERIFY", "WEB_TLS_FINGERPRINT", "WEB_SHRINK_THRESHOLD",
    "WEB_SCHEDULE", "WEB_EXCLUDE", "WEB_HOST_KEY", "WEB_KEY_FILE", "WEB_TLS_CA_FILE",
]  # fmt: skip
HOSTILE_VALUES = [
    "²", "٣", "１０", "-1", "0", "99999999999999999999", "", " ", "0 0 30 2 *",
    "* * * * * * *", "H H 31 2 *", "@reboot", "web", "web,web", "local", "ftps", "sftp",
    "/etc", "/", "relative", "../x", "Europe/Berlin", "../../etc/passwd", "infisical:",
    "infisical:/a//b", "sha256:zz", "true", "FALSE", "\ufeff", "a\u2028b", "x" * 5000,
]  # fmt: skip
values = st.one_of(st.sampled_from(HOSTILE_VALUES), st.text(max_size=40))
lines = st.one_of(
    st.tuples(st.sampled_from(KEYS), values).map(lambda kv: f"{kv[0]}={kv[1]}"),
    st.tuples(st.sampled_from(KEYS), values).map(lambda kv: f'{kv[0]}="{kv[1]}'),
    st.text(max_size=60),
)


@seed(20261129)
@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=st.lists(lines, max_size=25), raw=st.binary(max_size=200), crlf=st.booleans())
def test_any_file_gives_a_customer_or_a_config_error(
    body: list[str], raw: bytes, crlf: bool
) -> None:
    """Whatever the bytes, only ConfigError comes out, and every problem names the file."""
    text = ("\r\n" if crlf else "\n").join(body).encode("utf-8", "surrogatepass") + raw
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "acme.env"
        path.write_bytes(text)
        try:
            load_customer(
                path, Confinement(bounds=SourceBounds.of(Path("/var/lib/u"), Path("/etc/u")))
            )
        except ConfigError as exc:
            assert exc.problems
            for problem in exc.problems:
                assert problem.startswith(f"{path}: "), problem
                assert "\n" not in problem


def test_every_broken_file_is_named_and_the_good_ones_load(tmp_path: Path) -> None:
    customers = tmp_path / "customers.d"
    customers.mkdir()
    source = tmp_path / "src"
    source.mkdir()
    expected = write_broken(customers, source, "t")
    assert len(expected) >= 12
    (customers / "good.env").write_text(valid_text("good", "files", source, "0 * * * *"))
    # A byte-order mark and CRLF line endings are accepted, not refused.
    bom = "\ufeff" + valid_text("bom-crlf", "files", source, "0 * * * *").replace("\n", "\r\n")
    (customers / "bom-crlf.env").write_bytes(bom.encode())
    bounds = SourceBounds.of(tmp_path / "data", customers, (str(tmp_path),))

    loaded = load_customers(customers, confinement=Confinement(bounds=bounds))

    assert sorted(c.name for c in loaded.valid) == ["bom-crlf", "good"]
    for name, message in expected.items():
        lines = [p for p in loaded.problems if p.startswith(f"{customers}/{name}: ")]
        assert any(message in line for line in lines), (name, message, lines)
    assert len(loaded.invalid) == len(expected)


def test_validate_names_every_broken_file_and_exits_1_within_seconds(tmp_path: Path) -> None:
    customers = tmp_path / "customers.d"
    customers.mkdir()
    source = tmp_path / "src"
    source.mkdir()
    expected = write_broken(customers, source, "v")
    (customers / "good.env").write_text(valid_text("good", "files", source, "0 * * * *"))
    env = {
        "PATH": os.environ["PATH"],
        "UNSTOPPABLE_CONFIG": str(tmp_path / "none.env"),
        "UNSTOPPABLE_CUSTOMERS_DIR": str(customers),
        "UNSTOPPABLE_DATA_DIR": str(tmp_path / "data"),
        "UNSTOPPABLE_SOURCE_ROOTS": str(tmp_path),
    }
    for command in (["validate"], ["jobs"], ["status"]):
        started = time.monotonic()
        done = subprocess.run(
            [sys.executable, "-m", "orchestrator.cli", *command],
            env=env, cwd=ROOT, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert time.monotonic() - started < 20
        assert "Traceback" not in done.stderr + done.stdout, done.stderr
        if command == ["validate"]:
            assert done.returncode == 1
            for name in expected:
                assert f"{customers}/{name}: " in done.stdout, name
            assert f"1 of {len(expected) + 1} customer file(s)" in done.stderr
        else:
            assert done.returncode == 0, done.stderr
            assert "good" in done.stdout


names = st.from_regex(NAME, fullmatch=True)


@seed(20261129)
@settings(max_examples=2000, deadline=None)
@given(a=st.tuples(names, names), b=st.tuples(names, names))
def test_two_different_jobs_never_share_a_derived_name(
    a: tuple[str, str], b: tuple[str, str]
) -> None:
    """Container name (and so its secrets directories), storage paths and ping slug differ."""
    if a == b:
        return
    when = datetime(2026, 1, 1, tzinfo=UTC)
    for kind in (Kind.BACKUP, Kind.SNAPSHOTS):
        name_a, name_b = (
            container_name(JobKey(*a), kind, when),
            container_name(JobKey(*b), kind, when),
        )
        assert name_a != name_b
        # secret_files makes "<container>.<random>": no container name holds a '.'.
        assert "." not in name_a
    settings = Settings(DATA_DIR=Path("/d"))
    for part in ("hot", "cold", "cache"):
        assert getattr(job_storage(settings, *a), part) != getattr(job_storage(settings, *b), part)
    assert pings.ping_url("http://hc/ping", *_job(*a)) != pings.ping_url(
        "http://hc/ping", *_job(*b)
    )


def _job(customer: str, resource: str) -> tuple[Customer, Resource]:
    r = Resource(resource, LocalSource(TYPE=SourceType.LOCAL, PATH="/srv/x", SCHEDULE="0 * * * *"))
    return Customer(customer, Path(f"/c/{customer}.env"), "UTC", SecretRef(), (), (r,)), r


def test_the_collision_from_the_issue_is_gone() -> None:
    when = datetime(2026, 1, 1, tzinfo=UTC)
    assert container_name(JobKey("coll-a", "site"), Kind.BACKUP, when) != container_name(
        JobKey("coll", "a-site"), Kind.BACKUP, when
    )
    assert env_prefix("a-site") == "A_SITE_"


NOW = datetime(2026, 11, 29, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("jobs", "running", "max_parallel", "share", "launched"),
    [
        # One customer with five resources due, another with one: the other starts at once.
        (["a/r1", "a/r2", "a/r3", "a/r4", "a/r5", "b/x"], [], 4, 2, {"a": 2, "b": 1}),
        # The heavy customer already holds its share: only the other one gets a slot.
        (["a/r3", "a/r4", "b/x"], ["a/r1", "a/r2"], 4, 2, {"b": 1}),
        # A share of 1 with one slot: first come by time, then name.
        (["a/r1", "b/x"], [], 1, 1, {"a": 1}),
        # No share given: the global cap alone (half is the daemon's default, not the planner's).
        (["a/r1", "a/r2", "a/r3"], [], 3, None, {"a": 3}),
    ],
)
def test_one_customer_never_takes_every_slot(
    jobs: list[str],
    running: list[str],
    max_parallel: int,
    share: int | None,
    launched: dict[str, int],
) -> None:
    specs = [JobSpec(Work(JobKey.parse(j)), "0 * * * *", "UTC") for j in jobs]
    decision = plan(
        specs, frozenset(JobKey.parse(j) for j in running), PlanState(), NOW - timedelta(minutes=1), NOW,
        max_parallel, "once", share,
    )  # fmt: skip
    got: dict[str, int] = {}
    for launch in decision.launch:
        got[launch.job.customer] = got.get(launch.job.customer, 0) + 1
    assert got == launched
    held = set(jobs) - {str(launch.job) for launch in decision.launch}
    assert held == {str(w) for w in decision.state.pending}, "held back runs wait for a slot"


def test_a_schedule_that_names_no_time_stops_only_its_own_job() -> None:
    a, b = Work(JobKey("a", "r")), Work(JobKey("b", "r"))
    specs = [JobSpec(a, "0 0 30 2 *", "UTC"), JobSpec(b, "0 * * * *", "UTC")]
    decision = plan(specs, frozenset(), PlanState(), NOW - timedelta(minutes=1), NOW, 4)
    assert decision.unschedulable == (a,)
    assert [launch.work for launch in decision.launch] == [b]


@pytest.mark.parametrize(
    ("path", "problem"),
    [
        ("/", "must not be /"),
        ("/etc", "inside /etc"),
        ("/etc/ssl", "inside /etc"),
        ("/proc/1/root", "inside /proc"),
        ("/sys", "inside /sys"),
        ("/dev/shm", "inside /dev"),
        ("/run/secrets", "inside /run"),
        ("/boot", "inside /boot"),
        ("/var/run/docker.sock", "inside /var/run"),
        ("/var/lib/docker/volumes", "inside /var/lib/docker"),
        ("/var/lib/unstoppable/cold/other", "inside /var/lib/unstoppable"),
        ("/var/lib", "must not contain /var/lib/"),
        ("/var", "must not contain"),
        ("/srv/customers.d-sibling", None),
        ("/srv/acme/www", None),
        ("/home/acme", None),
        # The audit's cases: the server's own trees, and what this customer was not given.
        ("/root", "inside /root"),
        ("/root/.ssh", "inside /root"),
        ("/usr/local", "inside /usr"),
        ("/var/log/auth.log", "inside /var/log"),
        ("/var/backups", "inside /var/backups"),
        ("/home/other", "inside /home (no UNSTOPPABLE_SOURCE_ROOTS opens it)"),
        ("/opt/app", "inside /opt"),
    ],
)
def test_local_sources_stay_out_of_the_host(path: str, problem: str | None) -> None:
    bounds = SourceBounds.of(
        Path("/var/lib/unstoppable"), Path("/etc/unstoppable/customers.d"), ("/srv", "/home/acme")
    )  # `/srv` opens every customer's tree here; per customer, see the test below
    why = bounds.problem(path, "acme")
    assert (why is None) if problem is None else (why is not None and problem in why), why


def test_the_default_root_is_the_customers_own() -> None:
    bounds = SourceBounds.of(Path("/var/lib/unstoppable"), Path("/etc/unstoppable/customers.d"))
    assert bounds.problem("/srv/acme/www", "acme") is None
    for elsewhere in ("/srv/acme-old/www", "/srv/other", "/srv", "/data/acme"):
        why = bounds.problem(elsewhere, "acme")
        assert why and "UNSTOPPABLE_SOURCE_ROOTS (/srv/acme)" in why, (elsewhere, why)


def test_source_roots_restrict_and_symlinks_are_resolved(tmp_path: Path) -> None:
    inside, outside = tmp_path / "srv" / "acme", tmp_path / "elsewhere"
    inside.mkdir(parents=True)
    outside.mkdir()
    sneaky = inside / "link"
    sneaky.symlink_to(outside)
    bounds = SourceBounds.of(Path("/var/lib/u"), Path("/etc/u"), (tmp_path / "srv",))
    assert bounds.resolved_problem(str(inside), "acme") == (str(inside), None)
    real, why = bounds.resolved_problem(str(sneaky), "acme")
    assert real == str(outside)
    assert why and "resolves to" in why and "UNSTOPPABLE_SOURCE_ROOTS" in why


@pytest.mark.parametrize(
    ("remote", "enabled", "loaded", "options"),
    [
        (False, True, {"unstoppable-worker"}, ()),  # a local worker never mounts
        (True, False, set(), ()),  # no AppArmor: Docker applies none
        (True, True, {"docker-default", "unstoppable-worker"}, ("apparmor=unstoppable-worker",)),
        (True, True, {"docker-default"}, ()),  # not loaded: refused mount, reason `mount`
    ],
)
def test_apparmor_profile_only_for_remote_workers_where_loaded(
    remote: bool, enabled: bool, loaded: set[str], options: tuple[str, ...]
) -> None:
    assert apparmor_options(remote, enabled, frozenset(loaded)) == options


def test_a_dripping_ftps_greeting_ends_at_the_pinning_deadline() -> None:
    server = DripServer(b"220-" + b"x" * 5000)
    try:
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            tls_pin.server_certificate("127.0.0.1", server.port, implicit=False, deadline=3)
        assert time.monotonic() - started < 6
    finally:
        server.close()


def test_a_dripping_ping_receiver_holds_a_ping_no_longer_than_its_deadline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server = DripServer(b"HTTP/1.1 200 OK\r\nX: " + b"y" * 5000)
    monkeypatch.setattr(pings, "TIMEOUT_SECONDS", 2)
    monkeypatch.setattr(pings, "ATTEMPTS", 2)
    try:
        started = time.monotonic()
        assert not pings.send(f"http://127.0.0.1:{server.port}/ping", "success", "ok", "a/b")
        assert time.monotonic() - started < 2 * 2 + 1 + 2
    finally:
        server.close()


def test_a_step_past_its_deadline_raises_and_frees_the_caller() -> None:
    started = time.monotonic()
    with pytest.raises(deadline.DeadlineExceeded, match="slow step"):
        deadline.call(lambda: time.sleep(30), 0.5, "slow step")
    assert time.monotonic() - started < 2
    assert deadline.call(lambda: 7, 1, "quick") == 7


def test_a_corrupt_ledger_is_moved_aside_and_a_new_one_starts(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "ledger.sqlite3").write_bytes(b"this is not a database" * 100)
    ledger = Ledger(state)
    ledger.db.set_state("last_tick", NOW.isoformat())
    assert ledger.db.get_state("last_tick") == NOW.isoformat()
    kept = list(state.glob("ledger.sqlite3.corrupt-*"))
    assert len(kept) == 1 and kept[0].read_bytes().startswith(b"this is not a database")


def test_each_run_attempt_owns_its_secrets_directory(tmp_path: Path) -> None:
    """Two attempts of one job never share a directory; each removes only its own."""
    from pydantic import SecretStr

    from orchestrator.secrets.files import remove_secrets, secret_files

    base = tmp_path / "secrets"
    with secret_files(base, "unstoppable_a_b", {"pw": SecretStr("one")}) as first:
        with secret_files(base, "unstoppable_a_b", {"pw": SecretStr("two")}) as second:
            assert first != second
            assert (first / "pw").read_text() == "one"
        assert not second.exists()
        assert (first / "pw").read_text() == "one", "the other attempt's secrets must stay"
        remove_secrets(base, str(tmp_path))  # not directly under base: refused
        remove_secrets(base, "/")
        assert first.exists() and tmp_path.exists()
    assert not first.exists()


MIB = 1024 * 1024 - 100
HEAVY = {
    "blanks": "REPO_PASSWORD=x" + " " * (MIB - 20) + "x\n",
    "resources": "RESOURCES=" + ",".join(f"r{i:05d}" for i in range(80_000)) + "\n",
    "keys": "RESOURCES=r00001\n" + "".join(f"R{i:05d}_PATH=/x\n" for i in range(65_000)),
    "cron": 'SCHEDULE="' + ",".join(["1"] * 400_000) + ' * * * *"\nRESOURCES=aaa\n',
    "comments": "KEEP_LAST=1" + " #" * (MIB // 2 - 10) + "\n",
    "lines": "#\n" * (MIB // 2),
    # python-dotenv's `\s` is wider than blanks and tabs: every such run must be bounded.
    "nbsp": "REPO_PASSWORD=x" + "\u00a0" * (MIB // 2 - 20) + "x\n",
    "form-feeds": "REPO_PASSWORD=x" + "\x0c" * (MIB - 20) + "x\n",
    "bare-words": "x\n" * (MIB // 2),
    "bare-equals": "=\n" * (MIB // 2),
    "lone-cr": "A=1\r" * (MIB // 4),
    "empty-quotes": '""\n' * (MIB // 3),
    "many-keys": "".join(f"K{i}=v\n" for i in range(MIB // 10)),
    "open-quotes": 'A="x\n' * (MIB // 5),
}


@pytest.mark.parametrize("kind", sorted(HEAVY))
def test_a_file_at_the_size_cap_is_judged_in_moments(tmp_path: Path, kind: str) -> None:
    """Nothing in the reader grows faster than the file: the daemon loads on its own loop."""
    path = tmp_path / "heavy.env"
    path.write_text(HEAVY[kind][:MIB])
    started = time.monotonic()
    with pytest.raises(ConfigError):
        load_customer(path)
    assert time.monotonic() - started < 3


def test_protected_trees_count_as_their_symlinks_resolve(tmp_path: Path) -> None:
    """DATA_DIR/cold on another disk behind a symlink is protected where it really is."""
    data, disk = tmp_path / "data", tmp_path / "mnt" / "disk"
    data.mkdir()
    disk.mkdir(parents=True)
    (data / "cold").symlink_to(disk)
    bounds = SourceBounds.of(data, tmp_path / "customers.d", (str(tmp_path),))
    assert bounds.resolved_problem(str(data / "cold"), "acme")[1]
    assert bounds.problem(str(disk / "acme"), "acme")
    assert bounds.problem(str(tmp_path / "mnt"), "acme")  # contains it
    plain = tmp_path / "srv"
    plain.mkdir()
    assert bounds.resolved_problem(str(plain), "acme") == (str(plain), None)


def test_a_ledger_of_0_1_gains_the_new_columns_and_keeps_its_runs(tmp_path: Path) -> None:
    import sqlite3

    from orchestrator.reporting.store import SCHEMA

    state = tmp_path / "state"
    state.mkdir()
    old = SCHEMA.split("CREATE TABLE IF NOT EXISTS accepts")[0]
    with sqlite3.connect(state / "ledger.sqlite3") as db:
        db.executescript(old)
        db.execute(
            "INSERT INTO runs (customer, resource, kind, scheduled_for, started, ended, result,"
            " reason, message, bytes_processed) VALUES ('a','r','backup','t','t',?,'success',"
            "'','',1000)",
            ((NOW - timedelta(days=1)).isoformat(),),
        )
    ledger = Ledger(state)
    assert ledger.memory.baseline(JobKey.parse("a/r"), NOW) is not None
    assert ledger.memory.baseline(JobKey.parse("a/r"), NOW).bytes == 1000  # type: ignore[union-attr]
    ledger.memory.accept(JobKey.parse("a/r"), "operator", NOW)
    assert ledger.memory.baseline(JobKey.parse("a/r"), NOW + timedelta(seconds=1)) is None


class _ScriptedFtp:
    """A one-connection TCP server on loopback that says `script` (bytes, or pauses)."""

    def __init__(self, script: list[bytes | float]) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, args=(script,), daemon=True).start()

    def _serve(self, script: list[bytes | float]) -> None:
        conn, _ = self.sock.accept()
        with conn:
            for step in script:
                if isinstance(step, float):
                    time.sleep(step)
                else:
                    conn.sendall(step)
            time.sleep(0.5)
        self.sock.close()


@pytest.mark.parametrize(
    ("script", "message"),
    [
        # RFC 959: the lines between `220-` and `220 ` may carry no code at all.
        (
            [b"220-Welcome\r\n  no code here\r\n-\r\n220 ready\r\n", 0.2, b"530 no TLS\r\n"],
            "the FTP server refused AUTH TLS (reply 530)",
        ),
        ([b"HELLO\r\n"], "the FTP server answered out of protocol"),
        ([], "the FTP server closed the connection"),
        (
            [b"220 ok\r\n", 0.2, b"500 AUTH not understood\r\n"],
            "the FTP server refused AUTH TLS (reply 500)",
        ),
        # A Latin-1 banner: ftplib's default UTF-8 would raise outside the OSError family.
        (
            [b"220 Willkommen \xe0 bord\r\n", 0.2, b"530 no TLS\r\n"],
            "the FTP server refused AUTH TLS (reply 530)",
        ),
        # A reply that tries to write into the operator's terminal and the customer's page.
        (
            [b"220 ok\r\n", 0.2, b"421 \x1b]0;pwned\x07\x1b[2J<script>\r\n"],
            "the FTP server answered out of protocol (reply 421)",
        ),
    ],
)
def test_an_ftps_server_out_of_protocol_is_a_connection_error_in_our_words(
    script: list[bytes | float], message: str
) -> None:
    """What the server said never reaches the message: only our classification and its code."""
    server = _ScriptedFtp(script)
    with pytest.raises(ConnectionError) as err:
        tls_pin.server_certificate("127.0.0.1", server.port, implicit=False, deadline=5)
    assert str(err.value) == message
