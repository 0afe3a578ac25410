"""Secrets from Infisical, through the official SDK, against a local stand-in server."""

import json
import signal
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from orchestrator.config.values import SecretRef
from orchestrator.errors import SecretError
from orchestrator.model import JobKey
from orchestrator.reporting.ledger import Ledger
from orchestrator.secrets.files import Resolver
from orchestrator.secrets.infisical import InfisicalSecrets, split_reference
from tests.conftest import Site
from tests.fake_infisical import FakeInfisical, State
from tests.helpers import DaemonProcess, wait_until
from tests.servers import PASSWORD, USER, free_port, open_dir, vsftpd

CLIENT_SECRET = "ua-client-Secret-0b9e"
REPO_PASSWORD = "Repo-Password-From-Infisical-71c2"
SHARED = "Shared-Value-From-Infisical-5d0a"


@pytest.fixture
def infisical() -> Iterator[FakeInfisical]:
    server = FakeInfisical(State("client-1", CLIENT_SECRET, "proj-1"))
    server.start()
    yield server
    server.stop()


def client(server: FakeInfisical, secret: str = CLIENT_SECRET) -> InfisicalSecrets:
    return InfisicalSecrets(server.url, "client-1", SecretStr(secret), "proj-1", "prod")


FOLDER = "/customers/acme/"  # UNSTOPPABLE_INFISICAL_CUSTOMER_FOLDER's default, for acme


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("ACME_PW", ("/customers/acme", "ACME_PW")),
        ("/customers/acme/ACME_PW", ("/customers/acme", "ACME_PW")),
        ("/customers/acme/ftp/ACME_PW", ("/customers/acme/ftp", "ACME_PW")),
    ],
)
def test_references_name_a_folder_and_a_secret(ref: str, expected: tuple[str, str]) -> None:
    assert split_reference(ref, FOLDER) == expected


@pytest.mark.parametrize(
    "ref",
    [
        "/shared/ACME_PW",
        "/ACME_PW",
        "/customers/other/REPO_PASSWORD",
        "/customers/acme-evil/PW",  # a longer name, not a folder below
        "/customers/acme/../other/PW",
        "/customers/acme/./PW",
        "/customers//acme/PW",
        "/customers/acme",  # the folder's own name, read in /customers
        "/customers/acme/",
        "..",
        "../other/PW",
    ],
)
def test_references_outside_the_customer_folder_are_refused(ref: str) -> None:
    with pytest.raises(SecretError, match=r"^an infisical reference must"):
        split_reference(ref, FOLDER)


def test_a_reference_outside_the_folder_never_reaches_the_server(infisical: FakeInfisical) -> None:
    """Enforced where values are fetched, not only by validate: no login, no lookup."""
    infisical.state.values[("/customers/other", "REPO_PASSWORD")] = SHARED
    with pytest.raises(SecretError) as err:
        client(infisical).resolve("/customers/other/REPO_PASSWORD", "acme", "REPO_PASSWORD")
    assert str(err.value).startswith("REPO_PASSWORD: an infisical reference must lie in")
    assert SHARED not in str(err.value)
    assert infisical.state.logins == 0


def test_the_resolver_refuses_before_any_store_is_asked() -> None:
    """Whatever store is plugged in, a reference outside the folder never reaches it."""
    asked: list[str] = []

    class Store:
        def resolve(self, reference: str, customer: str, key: str) -> SecretStr:
            asked.append(reference)
            return SecretStr(SHARED)

    resolver = Resolver(Store(), "/tenants/{customer}/")
    ok = resolver.resolve(SecretRef(infisical="/tenants/acme/PW"), "acme", "K")
    assert ok.get_secret_value() == SHARED
    for ref in ("/customers/acme/PW", "/tenants/other/PW", "/tenants/acme/../other/PW"):
        with pytest.raises(SecretError, match=r"^K: an infisical reference must"):
            resolver.resolve(SecretRef(infisical=ref), "acme", "K")
    assert asked == ["/tenants/acme/PW"]


def test_resolves_from_the_customer_folder_and_from_a_path_below(infisical: FakeInfisical) -> None:
    infisical.state.values[("/customers/acme", "PW")] = REPO_PASSWORD
    infisical.state.values[("/customers/acme/shared", "PW")] = SHARED
    secrets = client(infisical)
    assert secrets.resolve("PW", "acme", "REPO_PASSWORD").get_secret_value() == REPO_PASSWORD
    assert secrets.resolve("/customers/acme/shared/PW", "acme", "X").get_secret_value() == SHARED
    assert infisical.state.logins == 1


def test_a_reference_inside_a_secret_is_never_expanded_into_another_customers(
    infisical: FakeInfisical,
) -> None:
    """Infisical fills in `${prod.customers.other.PW}` with the identity's rights if asked."""
    infisical.state.values[("/customers/other", "PW")] = "the other customer's password"
    infisical.state.values[("/customers/acme", "PW")] = "${prod.customers.other.PW}"
    value = client(infisical).resolve("PW", "acme", "REPO_PASSWORD").get_secret_value()
    assert value == "${prod.customers.other.PW}"


def test_an_unknown_secret_names_the_key_not_a_value(infisical: FakeInfisical) -> None:
    with pytest.raises(SecretError) as err:
        client(infisical).resolve("MISSING", "acme", "WEB_PASSWORD")
    assert str(err.value) == (
        "WEB_PASSWORD: infisical:MISSING: no secret MISSING in /customers/acme (prod)"
    )


def test_an_expired_token_means_a_new_login(infisical: FakeInfisical) -> None:
    infisical.state.token_ttl = 1
    infisical.state.values[("/customers/acme", "PW")] = REPO_PASSWORD
    secrets = client(infisical)
    secrets.client.cache.enabled = False  # look the value up each time, as after the TTL
    secrets.resolve("PW", "acme", "K")
    time.sleep(1.5)
    assert secrets.resolve("PW", "acme", "K").get_secret_value() == REPO_PASSWORD
    assert infisical.state.logins == 2


def test_a_revoked_token_is_replaced_once(infisical: FakeInfisical) -> None:
    infisical.state.values[("/customers/acme", "PW")] = REPO_PASSWORD
    secrets = client(infisical)
    secrets.client.cache.enabled = False
    secrets.resolve("PW", "acme", "K")
    infisical.state.tokens.clear()  # revoked server-side before its expiry
    assert secrets.resolve("PW", "acme", "K").get_secret_value() == REPO_PASSWORD
    assert infisical.state.logins == 2


def test_a_wrong_client_secret_backs_off_instead_of_locking_out(infisical: FakeInfisical) -> None:
    secrets = client(infisical, secret="wrong")
    for _ in range(5):
        with pytest.raises(SecretError) as err:
            secrets.resolve("PW", "acme", "REPO_PASSWORD")
        assert "wrong" not in str(err.value)
    assert infisical.state.failed_logins == 1, "five runs must cost one failed login, not five"
    assert infisical.state.locked_until == 0


def test_a_locked_out_identity_is_reported(infisical: FakeInfisical) -> None:
    infisical.state.locked_until = time.time() + 60
    with pytest.raises(SecretError) as err:
        client(infisical).resolve("PW", "acme", "REPO_PASSWORD")
    assert "login refused: HTTP 429" in str(err.value)


def test_infisical_down_is_a_secret_error_with_a_deadline(infisical: FakeInfisical) -> None:
    infisical.stop()
    started = time.monotonic()
    with pytest.raises(SecretError) as err:
        client(infisical).resolve("PW", "acme", "REPO_PASSWORD")
    assert "Infisical unreachable" in str(err.value)
    assert time.monotonic() - started < 60


def infisical_site(site: Site, server: FakeInfisical, tmp_path: Path) -> None:
    secret_file = tmp_path / "client-secret"
    secret_file.write_text(CLIENT_SECRET + "\n")
    site.env.update(
        {
            "UNSTOPPABLE_INFISICAL_HOST": server.url,
            "UNSTOPPABLE_INFISICAL_CLIENT_ID": "client-1",
            "UNSTOPPABLE_INFISICAL_CLIENT_SECRET_FILE": str(secret_file),
            "UNSTOPPABLE_INFISICAL_PROJECT_ID": "proj-1",
            "UNSTOPPABLE_INFISICAL_ENVIRONMENT": "prod",
        }
    )


@pytest.mark.docker
def test_validate_check_secrets_reports_what_does_not_resolve(
    site: Site, infisical: FakeInfisical, tmp_path: Path, unique: str
) -> None:
    infisical_site(site, infisical, tmp_path)
    name = f"chk-{unique}"
    infisical.state.values[(f"/customers/{name}", "PW")] = REPO_PASSWORD
    site.customer(
        name,
        'SCHEDULE="0 3 * * *"\nREPO_PASSWORD=infisical:PW\nRESOURCES=files\n'
        f"FILES_TYPE=local\nFILES_PATH={site.root}/src\n",
    )
    site.customer(
        f"gap-{unique}",
        'SCHEDULE="0 3 * * *"\nREPO_PASSWORD=infisical:GONE\n'
        f"RESOURCES=files\nFILES_TYPE=local\nFILES_PATH={site.root}/src\n",
    )
    assert site.cli("validate").returncode == 0  # syntax only
    done = site.cli("validate", "--check-secrets")
    assert done.returncode == 1
    assert done.stdout.strip().splitlines() == [
        f"{site.customers}/gap-{unique}.env: REPO_PASSWORD: infisical:GONE: no secret GONE"
        f" in /customers/gap-{unique} (prod)"
    ]
    assert REPO_PASSWORD not in done.stdout + done.stderr


@pytest.mark.docker
def test_every_secret_from_infisical_backs_up_restores_and_leaks_nowhere(
    site: Site, infisical: FakeInfisical, tmp_path: Path, unique: str, daemon: DaemonProcess
) -> None:
    """Down, then back: a failed run with reason secrets, then a successful one."""
    infisical_site(site, infisical, tmp_path)
    name = f"inf-{unique}"
    infisical.state.values[(f"/customers/{name}", "REPO_PW")] = REPO_PASSWORD
    infisical.state.values[(f"/customers/{name}/ftp", "SITE_PW")] = PASSWORD
    source = open_dir("unstoppable-inf-src-")
    (source / "page.html").write_text("from the FTPS server")
    source.joinpath("page.html").chmod(0o644)
    metrics_port = free_port()
    site.env["UNSTOPPABLE_METRICS_LISTEN"] = f"127.0.0.1:{metrics_port}"
    with vsftpd() as ftps:
        site.customer(
            name,
            f'SCHEDULE="* * * * * */5"\nREPO_PASSWORD=infisical:REPO_PW\n'
            f"RESOURCES=site\nSITE_TYPE=ftps\nSITE_HOST=127.0.0.1\n"
            f"SITE_PORT={ftps.port}\nSITE_USER={USER}\n"
            f"SITE_PASSWORD=infisical:/customers/{name}/ftp/SITE_PW\nSITE_PATH={source}\n"
            f"SITE_TLS_CA_FILE={site.key_file(name, ftps.ca)}\n",
        )
        inspected: list[str] = []
        stop = threading.Event()

        def watch() -> None:
            while not stop.is_set():
                out = subprocess.run(
                    ["docker", "inspect", f"unstoppable_{name}_site"],
                    capture_output=True,
                    text=True,
                )
                if out.returncode == 0:
                    inspected.append(out.stdout)
                time.sleep(0.1)

        watcher = threading.Thread(target=watch)
        watcher.start()
        infisical.stop()  # down first
        ledger = Ledger(site.data / "state")
        daemon.start()
        try:
            wait_until(
                lambda: any(
                    r.reason == "secrets" for r in ledger.history.runs(JobKey.parse(f"{name}/site"))
                ),
                90,
                "a run failing with reason secrets",
            )
            infisical.start()  # back, on the same port
            wait_until(
                lambda: any(
                    r.result == "success" for r in ledger.history.runs(JobKey.parse(f"{name}/site"))
                ),
                90,
                "a successful run once Infisical is back",
            )
            with urllib.request.urlopen(
                f"http://127.0.0.1:{metrics_port}/metrics", timeout=10
            ) as response:
                metrics = response.read().decode()
        finally:
            stop.set()
            watcher.join()
            daemon.signal(signal.SIGTERM)
            daemon.wait(10)
        target = tmp_path / "restored"
        site.cli("restore", name, "site", "--target", str(target), check=True)
        assert (target / "page.html").read_text() == "from the FTPS server"

    status = site.cli("status", "--json", check=True).stdout
    rows = {r["job"]: r for r in json.loads(status)}
    assert rows[f"{name}/site"]["result"] == "success"
    assert inspected, "the worker was never seen by docker inspect"
    everywhere = {
        "daemon log": daemon.text(),
        "metrics": metrics,
        "status": status,
        "ledger": (site.data / "state" / "ledger.sqlite3").read_bytes().decode("latin-1"),
        "docker inspect": "\n".join(inspected),
    }
    for value in (REPO_PASSWORD, PASSWORD, CLIENT_SECRET):
        for where, text in everywhere.items():
            assert value not in text, f"a secret value leaked into the {where}"
