"""The status pages: who may open which page, what a page says and never says, in a browser."""

import base64
import contextlib
import http.client
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import SecretStr

from orchestrator.config.customer import Customers
from orchestrator.config.customer_file import load_customer, load_customers
from orchestrator.config.settings_file import load_settings
from orchestrator.errors import ConfigError, SecretError
from orchestrator.model import JobKey, Kind, Outcome, Reason, Result, RunRecord, Summary
from orchestrator.reporting.ledger import Ledger
from orchestrator.secrets.files import Resolver
from orchestrator.secrets.infisical import InfisicalSecrets
from orchestrator.status.access import Pages
from orchestrator.status.facts import Health, gather
from orchestrator.status.server import bind, serve_status
from orchestrator.storage.layout import state_dir
from tests.fake_infisical import FakeInfisical, State
from tests.servers import free_port

ACME_TOKEN = "acme-status-Token-7f3a91c2"
BETA_TOKEN = "beta-status-Token-0c55e8d4"
ADMIN_TOKEN = "admin-status-Token-9b1e44aa"
SECRET_MESSAGE = "cannot reach ftp.internal.example at /srv/acme/secret-folder"
NOW = datetime.now(UTC).replace(microsecond=0)


def setup(tmp_path: Path, extra: str = "", admin: str | None = ADMIN_TOKEN) -> Pages:
    """Two customers: acme (one healthy resource, one failing) and beta (a corrupt drill)."""
    customers = tmp_path / "customers.d"
    customers.mkdir(parents=True)
    for name in ("www", "shop", "dbs"):
        (tmp_path / name).mkdir()
    (customers / "acme.env").write_text(
        'SCHEDULE="0 * * * *"\nREPO_PASSWORD=acme-Repo-Password-1\nRESOURCES=www,shop\n'
        f"WWW_TYPE=local\nWWW_PATH={tmp_path}/www\nSHOP_TYPE=local\nSHOP_PATH={tmp_path}/shop\n"
        f"{extra or f'STATUS_TOKEN={ACME_TOKEN}'}\n"
    )
    (customers / "beta.env").write_text(
        'SCHEDULE="0 * * * *"\nREPO_PASSWORD=beta-Repo-Password-2\nRESOURCES=dbs\n'
        f"DBS_TYPE=local\nDBS_PATH={tmp_path}/dbs\nSTATUS_TOKEN={BETA_TOKEN}\n"
    )
    env = {
        "UNSTOPPABLE_CONFIG": str(tmp_path / "none.env"),
        "UNSTOPPABLE_DATA_DIR": str(tmp_path / "data"),
        "UNSTOPPABLE_CUSTOMERS_DIR": str(customers),
        "UNSTOPPABLE_SOURCE_ROOTS": str(tmp_path),
    }
    if admin:
        env["UNSTOPPABLE_STATUS_ADMIN_TOKEN"] = admin
    settings = load_settings(env)
    loaded = load_customers(customers, confinement=settings.confinement)
    assert not loaded.problems, loaded.problems
    ledger = Ledger(state_dir(settings))
    record(
        ledger,
        JobKey("acme", "www"),
        Kind.BACKUP,
        Outcome(Result.SUCCESS, Reason.NONE, "", SUMMARY),
    )
    record(ledger, JobKey("acme", "shop"), Kind.BACKUP, Outcome(Result.SUCCESS, Reason.NONE, ""))
    failed = Outcome(Result.FAILURE, Reason.CONNECT, SECRET_MESSAGE)
    record(ledger, JobKey("acme", "shop"), Kind.BACKUP, failed)
    record(ledger, JobKey("beta", "dbs"), Kind.BACKUP, Outcome(Result.SUCCESS, Reason.NONE, ""))
    damaged = Outcome(Result.CORRUPT, Reason.REPOSITORY, "pack 3f2a... of /var/lib/x is damaged")
    record(ledger, JobKey("beta", "dbs"), Kind.VERIFY, damaged)
    ledger.memory.mark_corrupt(JobKey("beta", "dbs"), "pack 3f2a is damaged", NOW)
    return Pages(settings, ledger, lambda: loaded, Resolver())


SUMMARY = Summary("a1b2c3d4e5f6", NOW.isoformat(), 3, 1, 4096, 8192, 40)


def record(ledger: Ledger, job: JobKey, kind: Kind, outcome: Outcome) -> None:
    start = NOW - timedelta(minutes=5)
    ledger.history.record_run(RunRecord(job, kind, start, start, NOW, outcome))


def bearer(token: str) -> str:
    return f"Bearer {token}"


def basic(password: str, user: str = "anyone") -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_a_customer_token_opens_its_own_page_and_no_other(tmp_path: Path) -> None:
    pages = setup(tmp_path)
    refusal = pages.answer("/status/nobody", bearer(ACME_TOKEN))[2]
    assert b"does not open this page" in refusal
    for header in (bearer(ACME_TOKEN), basic(ACME_TOKEN), basic(ACME_TOKEN, user="")):
        status, headers, body = pages.answer("/status/acme", header)
        assert status == 200, header
        assert headers["Cache-Control"] == "no-store"
        assert "script" not in body.decode().lower()  # no JavaScript, and none allowed
        assert "default-src 'none'" in headers["Content-Security-Policy"]
    # Another customer's token, a wrong one, a near miss: refused, whoever asks.
    for header in (
        bearer(BETA_TOKEN),
        basic(BETA_TOKEN),
        bearer("wrong-token-0000000000"),
        bearer(ACME_TOKEN + "x"),
        bearer(ACME_TOKEN[:-1]),
        basic(ACME_TOKEN.upper()),
    ):
        status, _, body = pages.answer("/status/acme", header)
        assert (status, body) == (403, refusal), header
    assert pages.answer("/status/beta", bearer(ACME_TOKEN))[0] == 403
    assert pages.answer("/status/beta", bearer(BETA_TOKEN))[0] == 200


@pytest.mark.parametrize(
    "header", [None, "", "Bearer", "Bearer ", "Basic", "Basic !!!", "Digest abc", basic("")]
)
def test_no_usable_credentials_is_a_401_with_a_challenge(
    tmp_path: Path, header: str | None
) -> None:
    status, headers, _ = setup(tmp_path).answer("/status/acme", header)
    assert status == 401
    assert headers["WWW-Authenticate"].startswith("Basic realm=")


def test_whether_a_customer_exists_is_told_to_the_operator_alone(tmp_path: Path) -> None:
    pages = setup(tmp_path)
    # A customer's token learns nothing: an unknown name reads as a wrong token.
    assert pages.answer("/status/nobody", bearer(ACME_TOKEN))[0] == 403
    assert pages.answer("/status/nobody", None)[0] == 401
    assert pages.answer("/status/nobody", bearer(ADMIN_TOKEN))[0] == 404
    for path in ("/status/../metrics", "/status/acme/../beta", "/status/ACME", "/metrics", "/"):
        assert pages.answer(path, bearer(ADMIN_TOKEN))[0] == 404, path


def test_the_overview_opens_with_the_admin_token_alone(tmp_path: Path) -> None:
    pages = setup(tmp_path)
    assert pages.answer("/status/", None)[0] == 401
    assert pages.answer("/status/", bearer(ACME_TOKEN))[0] == 403
    status, _, body = pages.answer("/status/", basic(ADMIN_TOKEN))
    assert status == 200
    text = body.decode()
    assert "acme" in text and "beta" in text and "failing" in text and "corrupt" in text
    assert pages.answer("/status", bearer(ADMIN_TOKEN))[0] == 200
    assert pages.answer("/status/beta", bearer(ADMIN_TOKEN))[0] == 200  # every page
    without = setup(tmp_path / "no-admin", admin=None)
    assert without.answer("/status/", bearer(ADMIN_TOKEN))[0] == 403


def test_a_page_says_what_is_wrong_in_plain_words_and_nothing_of_the_server(
    tmp_path: Path,
) -> None:
    pages = setup(tmp_path)
    text = pages.answer("/status/acme", bearer(ACME_TOKEN))[2].decode()
    assert "Backups of acme" in text
    assert "The last backup failed: your server could not be reached." in text
    assert ">ok<" in text and ">failing<" in text
    for never in (
        SECRET_MESSAGE,
        "ftp.internal.example",
        "secret-folder",
        str(tmp_path),
        ACME_TOKEN,
        BETA_TOKEN,
        ADMIN_TOKEN,
        "acme-Repo-Password-1",
        "beta",
        "/var/lib",
    ):
        assert never not in text, never
    beta = pages.answer("/status/beta", bearer(BETA_TOKEN))[2].decode()
    assert ">corrupt<" in beta and "damaged backup data" in beta
    assert "/var/lib/x" not in beta and "3f2a" not in beta


def test_a_corrupt_drill_is_the_jobs_health_not_its_last_backups_success(tmp_path: Path) -> None:
    pages = setup(tmp_path)
    customers = pages.customers()
    facts = {f.job: f for f in gather(pages.settings, pages.ledger, customers, NOW)}
    beta = facts[JobKey("beta", "dbs")]
    assert beta.status is not None and beta.status.result == "success"
    assert beta.health is Health.CORRUPT and beta.drill is not None
    assert facts[JobKey("acme", "shop")].health is Health.FAILING
    assert facts[JobKey("acme", "www")].health is Health.OK
    skipped = Outcome(Result.SKIPPED, Reason.NONE, "no repository yet: nothing to verify")
    record(pages.ledger, JobKey("acme", "www"), Kind.VERIFY, skipped)  # no drill: not a failed one
    assert gather(pages.settings, pages.ledger, customers, NOW)[0].health is Health.OK
    pages.ledger.memory.hold(JobKey("acme", "www"), "a1b2c3d4", "suspect", NOW)
    held = {f.job: f for f in gather(pages.settings, pages.ledger, customers, NOW)}
    assert held[JobKey("acme", "www")].health is Health.HELD


def test_a_short_or_empty_status_token_is_refused_by_name_never_by_value(tmp_path: Path) -> None:
    for index, (line, said) in enumerate(
        (
            ("STATUS_TOKEN=short-tok", "at least 16 characters"),
            ("STATUS_TOKEN=", "must not be empty"),
            ("STATUS_TOKEN=infisical:../x", "infisical reference"),
        )
    ):
        file = tmp_path / f"acme{index}.env"
        file.write_text(
            f"SCHEDULE=0 3 * * *\nREPO_PASSWORD=p\nRESOURCES=www\nWWW_TYPE=local\nWWW_PATH=/srv/acme/www\n{line}\n"
        )
        with pytest.raises(ConfigError) as err:
            load_customer(file)
        message = "\n".join(err.value.problems)
        assert f"acme{index}.env: STATUS_TOKEN: " in message and said in message, message
        assert "short-tok" not in message and len(err.value.problems) == 1, message
    with pytest.raises(ConfigError, match=r"STATUS_ADMIN_TOKEN: .*at least 16"):
        setup(tmp_path / "admin", admin="too-short")


def test_a_token_kept_in_infisical_opens_the_page_and_is_fetched_once_for_many(
    tmp_path: Path,
) -> None:
    server = FakeInfisical(State("client-1", "ua-secret-1", "proj-1"))
    server.start()
    try:
        server.state.values[("/customers/acme", "STATUS")] = ACME_TOKEN
        pages = setup(tmp_path, extra="STATUS_TOKEN=infisical:STATUS")
        store = InfisicalSecrets(server.url, "client-1", SecretStr("ua-secret-1"), "proj-1", "prod")
        asked: list[str] = []
        counting = Resolver(store)
        original = counting.resolve
        counting.resolve = lambda *a: asked.append(a[1]) or original(*a)  # type: ignore[method-assign]
        pages.resolver = counting
        assert pages.answer("/status/acme", bearer(ACME_TOKEN))[0] == 200
        for _ in range(20):  # a flood of wrong tokens reaches the store never
            assert pages.answer("/status/acme", bearer(BETA_TOKEN))[0] == 403
        assert asked == ["acme"]
    finally:
        server.stop()


def test_a_token_that_cannot_be_fetched_reads_as_a_wrong_one_to_all_but_the_admin(
    tmp_path: Path,
) -> None:
    class Down:
        asked = 0

        def resolve(self, reference: str, customer: str, key: str) -> SecretStr:
            Down.asked += 1
            raise SecretError(f"{key}: infisical:{reference}: Infisical unreachable")

    class Short:
        def resolve(self, reference: str, customer: str, key: str) -> SecretStr:
            return SecretStr("short")

    pages = setup(tmp_path, extra="STATUS_TOKEN=infisical:STATUS")
    pages.resolver = Resolver(Down())
    for path in ("/status/acme", "/status/nobody"):  # the same answer: nobody learns who exists
        assert pages.answer(path, bearer(ACME_TOKEN))[0] == 403
    assert pages.answer("/status/acme", bearer(ACME_TOKEN))[0] == 403
    assert Down.asked == 1  # a failure is remembered too
    assert pages.answer("/status/acme", bearer(ADMIN_TOKEN))[0] == 200
    assert pages.answer("/status/beta", bearer(BETA_TOKEN))[0] == 200  # a literal: served
    short = setup(tmp_path / "short", extra="STATUS_TOKEN=infisical:STATUS")
    short.resolver = Resolver(Short())
    assert short.answer("/status/acme", bearer("short"))[0] == 403  # too short to be a token


def serving(pages: Pages) -> tuple[str, threading.Thread]:
    port = free_port()
    server = bind(f"127.0.0.1:{port}", pages)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return f"http://127.0.0.1:{port}", thread


def fetch(url: str, header: str | None = None, method: str = "GET") -> tuple[int, bytes, dict]:
    request = urllib.request.Request(url, method=method)
    if header:
        request.add_header("Authorization", header)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read(), dict(response.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), dict(exc.headers)
    except (ConnectionError, http.client.HTTPException):  # closed at once: no slot free
        return 0, b"", {}


def test_over_http_the_server_names_no_software_and_answers_only_get_and_head(
    tmp_path: Path,
) -> None:
    base, _ = serving(setup(tmp_path))
    status, body, headers = fetch(base + "/status/acme", bearer(ACME_TOKEN))
    assert status == 200 and b"Backups of acme" in body
    assert "Python" not in headers.get("Server", "") and "BaseHTTP" not in headers.get("Server", "")
    assert fetch(base + "/status/acme", bearer(BETA_TOKEN))[0] == 403
    assert fetch(base + "/status/acme")[0] == 401
    head = fetch(base + "/status/acme", bearer(ACME_TOKEN), method="HEAD")
    assert head[0] == 200 and head[1] == b""
    posted = fetch(base + "/status/acme", bearer(ACME_TOKEN), method="POST")
    assert posted[0] == 501 and b"acme" not in posted[1] and b"Python" not in posted[1]


def test_a_client_that_drips_or_floods_its_request_is_cut_off(tmp_path: Path) -> None:
    """Thirty-two connections that never finish their request take no slot for long."""
    base, _ = serving(setup(tmp_path))
    host, port = base.removeprefix("http://").split(":")
    drips = []
    for _ in range(32):
        sock = socket.create_connection((host, int(port)))
        sock.sendall(b"GET /status/acme HTTP/1.1\r\n")
        drips.append(sock)
    flood = socket.create_connection((host, int(port)))
    flood.sendall(b"GET /status/acme HTTP/1.1\r\n" + b"X-Pad: " + b"a" * 60000 + b"\r\n")
    flood.settimeout(5)
    assert flood.recv(100) == b""  # cut off at once: more header bytes than a request needs
    flood.close()
    started = time.monotonic()
    while fetch(base + "/status/acme", bearer(ACME_TOKEN))[0] != 200:
        assert time.monotonic() - started < 20, "the page stayed out of reach"
        for sock in drips:
            with contextlib.suppress(OSError):
                sock.sendall(b"X")  # a byte now and then: never the end of the request
        time.sleep(1)
    assert time.monotonic() - started >= 5  # they did hold every slot until their deadline
    for sock in drips:
        sock.close()


def test_a_port_that_cannot_be_bound_is_counted_and_never_stops_anything(tmp_path: Path) -> None:
    pages = setup(tmp_path)
    taken, _ = serving(pages)
    settings = pages.settings.model_copy(update={"STATUS_LISTEN": taken.removeprefix("http://")})
    counted: list[str] = []
    stopping = threading.Event()
    serve_status(settings, pages, counted.append, stopping)  # returns at once
    deadline = datetime.now(UTC) + timedelta(seconds=10)
    while not counted and datetime.now(UTC) < deadline:
        threading.Event().wait(0.05)
    stopping.set()
    assert counted == ["status"]


def chromium(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_real_browser_opens_the_page_with_its_token_and_is_refused_with_another(
    tmp_path: Path,
) -> None:
    """Headless Chromium from Debian: basic authentication as a customer's browser does it."""
    base, _ = serving(setup(tmp_path))
    host = base.removeprefix("http://")
    shown = chromium("--dump-dom", f"http://acme:{ACME_TOKEN}@{host}/status/acme")
    assert shown.returncode == 0, shown.stderr[-2000:]
    assert "Backups of acme" in shown.stdout and "your server could not be reached" in shown.stdout
    refused = chromium("--dump-dom", f"http://acme:{BETA_TOKEN}@{host}/status/acme")
    assert "this token does not open this page" in refused.stdout, refused.stdout
    assert "Backups of acme" not in refused.stdout
    picture = tmp_path / "page.png"
    taken = chromium(
        f"--screenshot={picture}",
        "--window-size=420,900",
        f"http://acme:{ACME_TOKEN}@{host}/status/acme",
    )
    assert taken.returncode == 0 and picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_customers_is_a_callable_so_a_reload_changes_who_may_see(tmp_path: Path) -> None:
    pages = setup(tmp_path)
    assert pages.answer("/status/acme", bearer(ACME_TOKEN))[0] == 200
    pages.customers = lambda: Customers((), (), ("acme",))  # acme's file broke
    assert pages.answer("/status/acme", bearer(ACME_TOKEN))[0] == 403
    assert pages.answer("/status/acme", bearer(ADMIN_TOKEN))[0] == 404
