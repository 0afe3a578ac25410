"""The status pages served by the real daemon, over real runs, opened in headless Chromium.

`UNSTOPPABLE_SCREENSHOT=docs/status-page.png pytest tests/test_status_daemon.py` also writes
the screenshot kept in docs/ (a customer named acme then; otherwise a unique name).
"""

import os
import signal
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from orchestrator.model import JobKey
from orchestrator.reporting.ledger import Ledger
from tests.conftest import ROOT, Site
from tests.helpers import DaemonProcess, wait_until
from tests.servers import free_port
from tests.test_status_page import chromium

pytestmark = pytest.mark.docker
TOKEN = "customer-Status-Token-5e1d27"
OTHER = "another-Status-Token-a9c044"
ADMIN = "operator-Status-Token-33f0b8"


def get(url: str, token: str | None) -> int:
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def test_the_daemon_serves_a_page_with_a_failed_and_a_healthy_resource(
    site: Site, daemon: DaemonProcess, unique: str, tmp_path: Path
) -> None:
    screenshot = os.environ.get("UNSTOPPABLE_SCREENSHOT")
    name, other = ("acme", "globex") if screenshot else (f"ac-{unique}", f"gx-{unique}")
    listen = f"127.0.0.1:{free_port()}"
    site.env["UNSTOPPABLE_STATUS_LISTEN"] = listen
    site.env["UNSTOPPABLE_STATUS_ADMIN_TOKEN"] = ADMIN
    www = site.root / "www"
    www.mkdir()
    for index in range(20):
        (www / f"page-{index}.html").write_text(f"<p>page {index}</p>" * 50)
    closed = free_port()  # nobody listens there: the FTPS server is down
    site.customer(
        name,
        'SCHEDULE="* * * * * */10"\nREPO_PASSWORD=pw-status-1\nRESOURCES=website,shop\n'
        f"STATUS_TOKEN={TOKEN}\nWEBSITE_TYPE=local\nWEBSITE_PATH={www}\n"
        'WEBSITE_VERIFY_SCHEDULE="* * * * * */15"\n'
        f"SHOP_TYPE=ftps\nSHOP_HOST=127.0.0.1\nSHOP_PORT={closed}\nSHOP_USER=shop\n"
        "SHOP_PASSWORD=ftp-Password-9\nSHOP_PATH=/public_html\nSHOP_TLS_VERIFY=false\n",
    )
    site.customer(
        other,
        'SCHEDULE="0 0 1 1 *"\nREPO_PASSWORD=pw-status-2\nRESOURCES=files\n'
        f"STATUS_TOKEN={OTHER}\nFILES_TYPE=local\nFILES_PATH={www}\n",
    )
    ledger = Ledger(site.data / "state")
    website, shop = JobKey(name, "website"), JobKey(name, "shop")
    daemon.start()
    try:

        def results(job: JobKey, kind: str = "backup") -> set[str]:
            return {r.result for r in ledger.history.runs(job) if r.kind == kind}

        wait_until(lambda: "success" in results(website), 120, "a backup of the website")
        wait_until(lambda: "failure" in results(shop), 120, "the shop's backup to fail")
        wait_until(lambda: results(website, "verify"), 120, "a restore drill of the website")
        page = f"http://{listen}/status/{name}"
        assert get(page, TOKEN) == 200
        assert get(page, None) == 401
        assert get(page, OTHER) == 403  # another customer's token
        assert get(page, TOKEN[:-1] + "0") == 403
        assert get(f"http://{listen}/status/{other}", TOKEN) == 403
        assert get(f"http://{listen}/status/", TOKEN) == 403
        assert get(f"http://{listen}/status/", ADMIN) == 200
        shown = chromium("--dump-dom", f"http://{name}:{TOKEN}@{listen}/status/{name}")
        assert ">failing<" in shown.stdout and ">ok<" in shown.stdout, shown.stdout[-3000:]
        assert "your server could not be reached" in shown.stdout
        assert "ftp-Password-9" not in shown.stdout and str(site.root) not in shown.stdout
        picture = Path(screenshot) if screenshot else tmp_path / "status-page.png"
        if not picture.is_absolute():
            picture = ROOT / picture
        taken = chromium(
            f"--screenshot={picture}",
            "--window-size=420,1100",
            "--hide-scrollbars",
            f"http://{name}:{TOKEN}@{listen}/status/{name}",
        )
        assert taken.returncode == 0 and picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    finally:
        daemon.signal(signal.SIGTERM)
        daemon.wait(30)
    log = daemon.text()
    for secret in (TOKEN, OTHER, ADMIN, "ftp-Password-9"):
        assert secret not in log
