"""Reporting that does not take the daemon's word: real Prometheus, Alertmanager and promtool."""

import contextlib
import json
import re
import signal
import socket
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.conftest import ROOT, SLOW_IMAGE, Site
from tests.helpers import DaemonProcess, customer, wait_until

MONITORING = ROOT / "monitoring"


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, cwd=MONITORING)


def test_promtool_checks_the_rules() -> None:
    done = run("promtool", "check", "rules", "alerts.yml")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 14 rules found" in done.stdout


def test_promtool_unit_tests_every_alert() -> None:
    done = run("promtool", "test", "rules", "alerts.test.yml")
    assert done.returncode == 0, done.stdout + done.stderr
    tests = (MONITORING / "alerts.test.yml").read_text()
    rules = (MONITORING / "alerts.yml").read_text()
    for name in (
        "BackupFailed",
        "BackupOverdue",
        "BackupNeverSucceeded",
        "BackupStuck",
        "BackupSkippedOverlap",
        "CustomerConfigInvalid",
        "OrchestratorDown",
        "BackupSuspect",
        "BackupCorrupt",
        "BackupUnverified",
        "BackupPruneFailed",
        "BackupLockExpiring",
        "BackupBucketUnlocked",
        "BackupReceiptUndelivered",
    ):
        assert f"alert: {name}" in rules
        assert f"alertname: {name}" in tests, f"{name} has no promtool test"


def test_example_configs_are_valid() -> None:
    for argv in (
        ("promtool", "check", "config", "prometheus.yml"),
        ("amtool", "check-config", "alertmanager.yml"),
    ):
        done = run(*argv)
        assert done.returncode == 0, done.stdout + done.stderr


def alert_rules() -> dict[str, str]:
    """Return each alerting rule of alerts.yml by name, with its text (up to the next rule)."""
    text = (MONITORING / "alerts.yml").read_text()
    starts = list(re.finditer(r"^\s*- (alert|record):\s*(\S+)", text, re.MULTILINE))
    rules_found = re.search(
        r"SUCCESS: (\d+) rules found", run("promtool", "check", "rules", "alerts.yml").stdout
    )
    assert rules_found and int(rules_found.group(1)) == len(starts), "a rule this parse missed"
    ends = [m.start() for m in starts[1:]] + [len(text)]
    return {
        m.group(2): text[m.start() : end]
        for m, end in zip(starts, ends, strict=True)
        if m.group(1) == "alert"
    }


def github_anchors(markdown: str) -> set[str]:
    """Return the anchors GitHub gives the headings of `markdown` (code blocks left out)."""
    anchors, fenced = set(), False
    for line in markdown.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and (heading := re.match(r"^#{1,6} +(.+?) *#*$", line)):
            anchors.add(re.sub(r"[^\w\- ]", "", heading.group(1).lower()).replace(" ", "-"))
    return anchors


def test_every_alert_links_to_its_own_runbook_section() -> None:
    rules = alert_rules()
    assert len(rules) >= 1
    anchors = github_anchors((ROOT / "docs" / "runbook.md").read_text())
    for name, rule in rules.items():
        links = re.findall(r"^\s*runbook_url:\s*[\"']?([^\"'\s]+)", rule, re.MULTILINE)
        assert len(links) == 1, f"{name}: {len(links)} runbook_url annotations"
        path, _, anchor = links[0].partition("#")
        assert path == "docs/runbook.md", f"{name}: {links[0]}"
        assert anchor in anchors, f"{name}: docs/runbook.md has no section #{anchor}"
        assert anchor == name.lower(), f"{name} links to the section of another alert"


class Receiver:
    """An HTTP server on loopback recording every POST: Alertmanager's webhook and the pings."""

    def __init__(self) -> None:
        self.posts: list[tuple[float, str, bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.posts.append((time.time(), self.path, body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def alerts(self) -> list[dict[str, object]]:
        out = []
        for _, path, body in list(self.posts):
            if path == "/alertmanager":
                out.extend(json.loads(body)["alerts"])
        return out

    def firing(self, name: str) -> list[dict[str, str]]:
        return [
            a["labels"]
            for a in self.alerts()  # type: ignore[misc]
            if a["labels"]["alertname"] == name and a["status"] == "firing"
        ]  # type: ignore[index]

    def pings(self, prefix: str) -> list[str]:
        return [path for _, path, _ in list(self.posts) if path.startswith(prefix)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.server.shutdown()
    r.server.server_close()


@pytest.fixture
def stack(site: Site, receiver: Receiver) -> Iterator[dict[str, int]]:
    """Prometheus and Alertmanager on loopback, scraping and alerting every second."""
    ports = {"metrics": free_port(), "prometheus": free_port(), "alertmanager": free_port()}
    (site.root / "prometheus.yml").write_text(f"""
global: {{scrape_interval: 1s, evaluation_interval: 1s}}
rule_files: ["{MONITORING / "alerts.yml"}"]
alerting:
  alertmanagers: [{{static_configs: [{{targets: ["127.0.0.1:{ports["alertmanager"]}"]}}]}}]
scrape_configs:
  - job_name: unstoppable
    static_configs: [{{targets: ["127.0.0.1:{ports["metrics"]}"]}}]
""")
    (site.root / "alertmanager.yml").write_text(f"""
route:
  receiver: test
  group_by: [alertname, customer, resource]
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: test
    webhook_configs: [{{url: "http://127.0.0.1:{receiver.port}/alertmanager"}}]
""")
    logs = contextlib.ExitStack()
    procs = [
        subprocess.Popen(
            [
                "prometheus",
                f"--config.file={site.root / 'prometheus.yml'}",
                f"--storage.tsdb.path={site.root / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{ports['prometheus']}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=logs.enter_context(open(site.root / "prom.log", "wb")),  # noqa: SIM115
        ),
        subprocess.Popen(
            [
                "prometheus-alertmanager",
                f"--config.file={site.root / 'alertmanager.yml'}",
                f"--storage.path={site.root / 'am'}",
                "--cluster.listen-address=",
                f"--web.listen-address=127.0.0.1:{ports['alertmanager']}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=logs.enter_context(open(site.root / "am.log", "wb")),  # noqa: SIM115
        ),
    ]
    yield ports
    for proc in procs:
        proc.terminate()
        proc.wait(10)
    logs.close()


def query(port: int, promql: str) -> dict[str, object]:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())  # type: ignore[no-any-return]


def metric(port: int, name: str, job: str) -> float | None:
    customer_name, resource = job.split("/")
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    wanted = f'{name}{{customer="{customer_name}",resource="{resource}"}} '
    for line in text.splitlines():
        if line.startswith(wanted):
            return float(line.split()[-1])
    return None


@pytest.mark.docker
def test_alerts_reach_alertmanager_and_pings_their_receiver(
    site: Site, receiver: Receiver, stack: dict[str, int], unique: str, slow_image: str
) -> None:
    healthy, broken, late = f"ok-{unique}", f"bad-{unique}", f"late-{unique}"
    site.env.update(
        {
            "UNSTOPPABLE_WORKER_IMAGE": SLOW_IMAGE,
            "UNSTOPPABLE_METRICS_LISTEN": f"127.0.0.1:{stack['metrics']}",
            "UNSTOPPABLE_PING_URL": f"http://127.0.0.1:{receiver.port}/ping",
        }
    )
    every5 = "* * * * * */5"
    customer(site, healthy, every5)
    site.customer(
        broken,
        f'SCHEDULE="{every5}"\nREPO_PASSWORD=pw\nRESOURCES=files\n'
        f"FILES_TYPE=local\nFILES_PATH={site.root / 'gone'}\n",
    )
    late_source = customer(site, late, every5)
    site.cli("backup", late, check=True)  # it worked once...
    (late_source / ".test-delay").write_text("600")  # ...then hangs
    daemon = DaemonProcess(site)
    daemon.start()
    try:
        wait_until(lambda: receiver.firing("BackupFailed"), 90, "BackupFailed at the webhook")
        wait_until(lambda: receiver.firing("BackupOverdue"), 90, "BackupOverdue at the webhook")
        failed = {(a["customer"], a["resource"]) for a in receiver.firing("BackupFailed")}
        assert failed == {(broken, "files")}
        overdue = {(a["customer"], a["resource"]) for a in receiver.firing("BackupOverdue")}
        assert (late, "files") in overdue and (healthy, "files") not in overdue

        # `status` tells the same as /metrics.
        rows = {r["job"]: r for r in json.loads(site.cli("status", "--json", check=True).stdout)}
        assert rows[f"{broken}/files"]["reason"] == "source_missing"
        assert (
            metric(stack["metrics"], "unstoppable_backup_last_run_success", f"{broken}/files") == 0
        )
        assert (
            metric(
                stack["metrics"],
                "unstoppable_backup_last_success_timestamp_seconds",
                f"{broken}/files",
            )
            is None
        )
        assert rows[f"{broken}/files"]["last_success"] is None
        snapshots = metric(stack["metrics"], "unstoppable_repo_snapshots", f"{healthy}/files")
        assert snapshots is not None and snapshots >= 1

        # Every panel of the shipped dashboard is a query Prometheus accepts.
        dashboard = json.loads((MONITORING / "grafana-dashboard.json").read_text())
        for panel in dashboard["panels"]:
            for target in panel["targets"]:
                assert query(stack["prometheus"], target["expr"])["status"] == "success"
    finally:
        daemon.signal(signal.SIGTERM)
        assert daemon.wait(10) == 0
    wait_until(lambda: receiver.firing("OrchestratorDown"), 90, "OrchestratorDown")

    # Pings: start then success for the healthy job, start then fail for the broken one.
    ok = receiver.pings(f"/ping/{healthy}_files")
    assert ok[:2] == [f"/ping/{healthy}_files/start", f"/ping/{healthy}_files"], ok
    bad = receiver.pings(f"/ping/{broken}_files")
    assert bad[:2] == [f"/ping/{broken}_files/start", f"/ping/{broken}_files/fail"], bad
    assert f"/ping/{healthy}_files/fail" not in ok
    subprocess.run(
        f"docker ps -q --filter label=unstoppable.customer={late} | xargs -r docker rm -f",
        shell=True,
        capture_output=True,
    )
