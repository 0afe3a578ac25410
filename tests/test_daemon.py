"""The daemon against real Docker, with second-granularity schedules.

What runs is judged from Docker's own event stream, not from the daemon's word.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from orchestrator.model import JobKey
from orchestrator.reporting.history import Event
from orchestrator.reporting.ledger import Ledger
from orchestrator.schedule import next_fire
from tests.conftest import ROOT, Site
from tests.helpers import (
    DaemonProcess,
    Events,
    assert_never_overlapping,
    customer,
    running_workers,
    starts,
    wait_until,
)

pytestmark = pytest.mark.docker
EVERY_5S = "* * * * * */5"


def test_origin_notes_timeline(
    site: Site, daemon: DaemonProcess, unique: str, slow_image: str
) -> None:
    """customer1 runs past its next time, which is skipped; customer2 runs alongside."""
    site.env["UNSTOPPABLE_WORKER_IMAGE"] = slow_image
    c1, c2 = f"c1-{unique}", f"c2-{unique}"
    customer(site, c1, "* * * * * */10", delay=14)
    customer(site, c2, "* * * * * */10")
    events = Events()
    daemon.start()
    ledger = Ledger(site.data / "state")
    wait_until(
        lambda: len(ledger.history.runs(JobKey.parse(f"{c1}/files"))) >= 2,
        60,
        "two runs of customer1",
    )
    daemon.signal(signal.SIGTERM)
    assert daemon.wait(10) == 0
    wait_until(lambda: not running_workers(c1[:2]), 30, "workers to end")
    log = events.stop()

    assert_never_overlapping(log, f"{c1}/files", f"{c2}/files")
    c1_starts = [
        datetime.fromisoformat(a["unstoppable.scheduled-for"].replace("Z", "+00:00"))
        for a in starts(log, f"{c1}/files")
    ]
    c2_starts = [
        datetime.fromisoformat(a["unstoppable.scheduled-for"].replace("Z", "+00:00"))
        for a in starts(log, f"{c2}/files")
    ]
    first = c1_starts[0]
    # 8am runs, 9am is skipped because 8am still runs, 10am runs (in 10-second hours).
    assert (c1_starts[1] - first).total_seconds() == 20, c1_starts
    assert ledger.history.event_count(JobKey.parse(f"{c1}/files"), Event.SKIPPED, "overlap") >= 1
    assert first in c2_starts, "customer2 must run alongside customer1 from the start"
    assert ledger.history.event_count(JobKey.parse(f"{c2}/files"), Event.SKIPPED) == 0
    results = {r.result for r in ledger.history.runs(JobKey.parse(f"{c1}/files"))}
    assert results == {"success"}, ledger.history.runs(JobKey.parse(f"{c1}/files"))


def test_kill_9_then_restart_adopts_without_duplicates(
    site: Site, daemon: DaemonProcess, unique: str, slow_image: str
) -> None:
    site.env["UNSTOPPABLE_WORKER_IMAGE"] = slow_image
    names = [f"k{i}-{unique}" for i in range(3)]
    for name in names:
        customer(site, name, EVERY_5S, delay=20)
    events = Events()
    daemon.start()
    wait_until(
        lambda: len(running_workers("k")) >= 3 and all(running_workers(n) for n in names),
        30,
        "three runs in flight",
    )
    daemon.signal(signal.SIGKILL)
    daemon.wait(5)
    # Two scheduled times pass while the daemon is down: computed, not guessed.
    second = next_fire(EVERY_5S, "UTC", next_fire(EVERY_5S, "UTC", datetime.now(UTC)))
    wait_until(lambda: datetime.now(UTC) > second, 15, "two scheduled times to pass")
    assert all(running_workers(n) for n in names), "workers must outlive the daemon"
    daemon.start()
    ledger = Ledger(site.data / "state")
    wait_until(
        lambda: all(len(ledger.history.runs(JobKey.parse(f"{n}/files"))) >= 1 for n in names),
        60,
        "the adopted runs' results",
    )
    daemon.signal(signal.SIGTERM)
    assert daemon.wait(10) == 0
    wait_until(lambda: not any(running_workers(n) for n in names), 60, "workers to end")
    log = events.stop()

    assert_never_overlapping(log, *(f"{n}/files" for n in names))
    for name in names:
        runs = ledger.history.runs(JobKey.parse(f"{name}/files"))
        first_scheduled = starts(log, f"{name}/files")[0]["unstoppable.scheduled-for"]
        assert (
            runs[0].scheduled_for
            == datetime.fromisoformat(first_scheduled.replace("Z", "+00:00")).isoformat()
        ), runs
        assert runs[0].result == "success", runs
        assert ledger.history.event_count(JobKey.parse(f"{name}/files"), Event.MISSED) >= 1
    assert "adopting" in daemon.text()


def test_customer_files_come_and_go_without_a_restart(
    site: Site, daemon: DaemonProcess, unique: str
) -> None:
    stays, leaves, arrives = f"stay-{unique}", f"leave-{unique}", f"new-{unique}"
    customer(site, stays, EVERY_5S)
    customer(site, leaves, EVERY_5S)
    ledger = Ledger(site.data / "state")  # the schema is idempotent: the daemon shares it
    daemon.start()
    wait_until(
        lambda: ledger.history.runs(JobKey.parse(f"{leaves}/files")),
        30,
        "a run of the leaving customer",
    )
    (site.customers / f"{leaves}.env").unlink()
    removed_at = time.time()
    customer(site, arrives, EVERY_5S)
    (site.customers / f"broken-{unique}.env").write_text("SCHEDULE=nonsense\n")
    wait_until(
        lambda: ledger.history.runs(JobKey.parse(f"{arrives}/files")),
        20,
        "the new customer's first run",
    )
    # The leaving customer would have run again by now: the staying one has, after it left.
    wait_until(
        lambda: any(
            datetime.fromisoformat(r.scheduled_for).timestamp() > removed_at + 10
            for r in ledger.history.runs(JobKey.parse(f"{stays}/files"))
        ),
        30,
        "a run of the staying customer scheduled after the other one left",
    )
    daemon.signal(signal.SIGTERM)
    assert daemon.wait(10) == 0
    late = [
        r
        for r in ledger.history.runs(JobKey.parse(f"{leaves}/files"))
        if datetime.fromisoformat(r.scheduled_for).timestamp() > removed_at + 10
    ]
    assert late == [], "a removed customer must not be scheduled any more"
    assert ledger.history.runs(JobKey.parse(f"{stays}/files")), "the other customers go on"
    assert f"broken-{unique}.env: SCHEDULE" in daemon.text()


def test_sigterm_leaves_running_workers_alone(
    site: Site, daemon: DaemonProcess, unique: str, slow_image: str
) -> None:
    site.env["UNSTOPPABLE_WORKER_IMAGE"] = slow_image
    name = f"term-{unique}"
    customer(site, name, EVERY_5S, delay=12)
    daemon.start()
    wait_until(lambda: running_workers(name), 30, "a running worker")
    started = time.monotonic()
    daemon.signal(signal.SIGTERM)
    assert daemon.wait(5) == 0
    assert time.monotonic() - started < 5
    assert running_workers(name), "SIGTERM must not stop a running worker"
    wait_until(lambda: not running_workers(name), 60, "the worker to finish on its own")


def test_status_reports_what_the_ledger_holds(site: Site, unique: str) -> None:
    name = f"stat-{unique}"
    customer(site, name, "0 3 * * *")
    site.cli("backup", name, check=True)
    done = site.cli("status", "--json", check=True)
    rows = {row["job"]: row for row in json.loads(done.stdout)}
    row = rows[f"{name}/files"]
    assert row["result"] == "success" and row["last_success"] and row["next_run"]
    assert row["next_run"].endswith("T03:00:00+00:00")


def test_a_run_past_the_job_timeout_is_stopped_and_counted(
    site: Site, unique: str, slow_image: str
) -> None:
    site.env["UNSTOPPABLE_WORKER_IMAGE"] = slow_image
    site.env["UNSTOPPABLE_JOB_TIMEOUT"] = "3s"
    name = f"slow-{unique}"
    customer(site, name, "0 3 * * *", delay=60)
    started = time.monotonic()
    done = site.cli("backup", name)
    assert done.returncode == 1
    assert f"{name}/files: timeout (timeout)" in done.stdout, done.stdout
    assert time.monotonic() - started < 30
    assert not running_workers(name)
    assert (
        Ledger(site.data / "state").history.runs(JobKey.parse(f"{name}/files"))[-1].result
        == "timeout"
    )


def test_sighup_reloads_customers_at_once(site: Site, daemon: DaemonProcess, unique: str) -> None:
    customer(site, f"hup-{unique}", "0 3 * * *")
    daemon.start()
    wait_until(lambda: "loaded 1 customer(s)" in daemon.text(), 20, "the first load")
    time.sleep(1)  # well inside the 5 s between two looks at customers.d
    customer(site, f"hup2-{unique}", "0 3 * * *")
    hup = time.monotonic()
    daemon.signal(signal.SIGHUP)
    wait_until(lambda: "loaded 2 customer(s)" in daemon.text(), 10, "the reload")
    assert time.monotonic() - hup < 2.5, "SIGHUP must reload at once, not at the next look"
    daemon.signal(signal.SIGTERM)
    assert daemon.wait(10) == 0


def test_a_path_the_daemon_cannot_follow_disables_only_its_customer(
    site: Site, daemon: DaemonProcess, unique: str
) -> None:
    """The audit's repro: PATH through a link to /proc/1/cwd once stopped every customer."""
    good, bad = f"good-{unique}", f"bad-{unique}"
    customer(site, good, EVERY_5S)
    link = site.root / f"link-{unique}"
    link.symlink_to("/proc/1/cwd")
    try:
        os.path.realpath(link)
        pytest.skip(
            "this host lets the daemon follow /proc/1/cwd: the fake-runtime test injects it"
        )
    except OSError:
        pass
    customer(site, bad, EVERY_5S)
    text = (site.customers / f"{bad}.env").read_text()
    (site.customers / f"{bad}.env").write_text(
        text.replace(f"FILES_PATH={site.root / f'src-{bad}'}", f"FILES_PATH={link}")
    )
    for command in ("validate", "jobs"):
        done = site.cli(command)
        assert "Traceback" not in done.stdout + done.stderr, done.stderr
    done = site.cli("validate")
    assert done.returncode == 1
    assert (
        f"{bad}.env: FILES_PATH: cannot be resolved: Permission denied" in done.stdout + done.stderr
    )
    ledger = Ledger(site.data / "state")
    daemon.start()
    wait_until(
        lambda: ledger.history.runs(JobKey.parse(f"{good}/files")),
        30,
        "a run of the healthy customer",
    )
    assert daemon.proc is not None and daemon.proc.poll() is None, daemon.text()
    daemon.signal(signal.SIGTERM)
    assert daemon.wait(10) == 0
    assert ledger.history.runs(JobKey.parse(f"{good}/files"))[0].result == "success"
    assert ledger.history.runs(JobKey.parse(f"{bad}/files")) == []
    assert f"{bad}.env: FILES_PATH: cannot be resolved" in daemon.text()


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        return str(answer.read().decode())


DAEMON = (sys.executable, "-m", "orchestrator.cli", "run")
# As systemd does: the socket at fd 3, LISTEN_FDS=1, and LISTEN_PID the daemon's own pid,
# which this wrapper's is too, as it execs the daemon once they are set.
ACTIVATE = """
import os, sys
from orchestrator.model import JobKey
from orchestrator.reporting.history import Event
os.dup2(int(sys.argv[1]), 3)
os.environ.update(LISTEN_PID=str(os.getpid()), LISTEN_FDS="1")
os.execv(sys.argv[2], sys.argv[2:])
"""


def test_a_taken_metrics_port_stops_the_daemon_at_start(site: Site, daemon: DaemonProcess) -> None:
    """A local process holding the port would answer Prometheus "all healthy" in its name."""
    listen = site.env["UNSTOPPABLE_METRICS_LISTEN"]
    with socket.socket() as impostor:
        impostor.bind(("127.0.0.1", int(listen.rsplit(":", 1)[1])))
        impostor.listen()
        started = time.monotonic()
        daemon.start()
        code = daemon.wait(30)
    assert code != 0
    assert time.monotonic() - started < 30
    text = daemon.text()
    assert f"Error: cannot serve /metrics (UNSTOPPABLE_METRICS_LISTEN={listen}):" in text
    assert "Address already in use" in text and "Traceback" not in text


def test_the_daemon_serves_metrics_on_the_socket_systemd_passes(site: Site, unique: str) -> None:
    """Socket activation: UNSTOPPABLE_METRICS_LISTEN's port is bound by the parent (systemd)
    and is fd 3 in the daemon, which never binds it itself (a bind would fail: it is held)."""
    customer(site, f"sa-{unique}", "0 0 1 1 *")
    listen = site.env["UNSTOPPABLE_METRICS_LISTEN"]
    with socket.socket() as held:
        held.bind(("127.0.0.1", int(listen.rsplit(":", 1)[1])))
        held.listen()
        port = held.getsockname()[1]
        log = open(site.root / "daemon.log", "wb")  # noqa: SIM115
        proc = subprocess.Popen(
            [sys.executable, "-c", ACTIVATE, str(held.fileno()), *DAEMON],
            env=site.env,
            cwd=ROOT,
            stdout=log,
            stderr=log,
            pass_fds=(held.fileno(),),
        )
        try:
            # Served before customers.d is read: the customer shows once it has been.
            valid = f'unstoppable_config_valid{{customer="sa-{unique}"}} 1.0'
            wait_until(lambda: valid in _try(scrape, port), 30, "/metrics on the inherited socket")
            assert proc.poll() is None
        finally:
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(20)
            log.close()
    text = (site.root / "daemon.log").read_text()
    assert code == 0, text
    assert f"metrics on http://127.0.0.1:{port}/metrics (the socket systemd holds" in text


def _try(read: Callable[[int], str], port: int) -> str:
    try:
        return read(port)
    except OSError:
        return ""


def test_a_daemon_stopped_over_two_times_leaves_missed_receipts_the_verifier_names(
    site: Site, daemon: DaemonProcess, unique: str
) -> None:
    name = f"rm-{unique}"
    customer(site, name, EVERY_5S)
    job = JobKey.parse(f"{name}/files")
    ledger = Ledger(site.data / "state")
    daemon.start()
    wait_until(lambda: len(ledger.history.runs(job)) >= 2, 60, "two scheduled runs")
    daemon.signal(signal.SIGTERM)
    assert daemon.wait(10) == 0
    wait_until(lambda: not running_workers(name), 30, "its worker to end")
    # Three scheduled times pass: the newest is caught up (UNSTOPPABLE_CATCH_UP=once), the
    # two before it are missed.
    third = datetime.now(UTC)
    for _ in range(3):
        third = next_fire(EVERY_5S, "UTC", third)
    wait_until(lambda: datetime.now(UTC) > third, 20, "three scheduled times to pass")
    daemon.start()
    wait_until(lambda: ledger.history.event_count(job, Event.MISSED) >= 1, 30, "the missed times")
    runs_before = len(ledger.history.runs(job))
    wait_until(lambda: len(ledger.history.runs(job)) > runs_before, 60, "a run after restart")
    daemon.signal(signal.SIGTERM)
    assert daemon.wait(10) == 0

    folder = site.data / "cold" / name / "receipts" / "files"
    receipts = [json.loads(p.read_text())["receipt"] for p in sorted(folder.iterdir())]
    missed = [r for r in receipts if r["result"] == "missed"]
    assert missed and sum(r["count"] for r in missed) >= 2, receipts
    assert all(r["first"] <= r["scheduled_for"] for r in missed)
    assert [r["seq"] for r in receipts] == list(range(len(receipts)))
    # Every time a receipt promised is accounted for (a run, a skip or a missed range), up
    # to the last promise, which may fall after the stop: a short grace covers only that.
    done = site.cli("receipts", "verify", name, "--grace", "15")
    assert done.returncode == 0, done.stdout
    assert "chain whole" in done.stdout and "missed" in done.stdout
    assert "scheduled time(s) missed, not run" in done.stdout
