"""Receipts POSTed to a customer's RECEIPT_URL as well: in order, once each, never dropped."""

import json
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from orchestrator.config.customer import Customers
from orchestrator.config.customer_file import load_customer
from orchestrator.config.settings_file import load_settings
from orchestrator.model import JobKey, Kind, Outcome, Reason, Result, RunRecord
from orchestrator.receipts.issuer import Issuer
from orchestrator.receipts.places import Folder
from orchestrator.receipts.terms import Terms, terms_of
from tests.servers import free_port

T0 = datetime(2026, 12, 1, 3, 0, tzinfo=UTC)
JOB = JobKey("acme", "www")


class Receiver:
    """An HTTP endpoint on loopback that keeps what is POSTed, or answers `status`."""

    def __init__(self) -> None:
        self.port = free_port()
        self.bodies: list[tuple[str, str, bytes]] = []
        self.status = 201
        self.delay = 0.0  # seconds before each answer: a customer endpoint that drips
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                data = self.rfile.read(int(self.headers["Content-Length"]))
                time.sleep(receiver.delay)
                if receiver.status < 300:
                    receiver.bodies.append((self.path, self.headers["Content-Type"], data))
                self.send_response(receiver.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def issuer(tmp_path: Path, url: str | None, allow: str = "127.0.0.0/8") -> Issuer:
    settings = load_settings(
        {
            "UNSTOPPABLE_CONFIG": str(tmp_path / "none.env"),
            "UNSTOPPABLE_DATA_DIR": str(tmp_path / "data"),
            "UNSTOPPABLE_ALLOW_PRIVATE_TARGETS": allow,
        }
    )
    return Issuer(settings, lambda _job: Terms("0 * * * *", "UTC", url))


def backups(issued: Issuer, count: int, start: int = 0) -> None:
    outcome = Outcome(Result.SUCCESS, Reason.NONE, "")
    for hour in range(start, start + count):
        at = T0 + timedelta(hours=hour)
        issued.run(RunRecord(JOB, Kind.BACKUP, at, at, at, outcome))


def published(tmp_path: Path) -> list[bytes]:
    folder = Folder(tmp_path / "data" / "cold" / "acme" / "receipts")
    return [folder.get(name) for name in folder.names("www")]


def test_each_receipt_is_posted_once_in_order_after_it_is_published(tmp_path: Path) -> None:
    receiver = Receiver()
    try:
        issued = issuer(tmp_path, f"http://127.0.0.1:{receiver.port}/hook/acme?k=1")
        backups(issued, 3)
        assert issued.undelivered() == {}
        assert [b for _, _, b in receiver.bodies] == published(tmp_path)
        assert len(receiver.bodies) == 3
        assert {p for p, _, _ in receiver.bodies} == {"/hook/acme?k=1"}
        assert {t for _, t, _ in receiver.bodies} == {"application/json"}
    finally:
        receiver.stop()


def test_a_url_that_refuses_keeps_its_receipts_waiting_and_publishes_them_only_once(
    tmp_path: Path,
) -> None:
    refusing, answering = Receiver(), Receiver()
    try:
        refusing.status = 503
        issued = issuer(tmp_path, f"http://127.0.0.1:{refusing.port}/hook")
        backups(issued, 2)
        assert issued.undelivered() == {JOB: 2}  # published, still to be POSTed
        assert len(published(tmp_path)) == 2 and refusing.bodies == []
        refusing.stop()  # down altogether now
        backups(issued, 1, start=2)
        assert issued.undelivered() == {JOB: 3}
        issued.terms = lambda _job: Terms(
            "0 * * * *", "UTC", f"http://127.0.0.1:{answering.port}/h"
        )
        assert issued.deliver(JOB) == 0
        assert [b for _, _, b in answering.bodies] == published(tmp_path)  # in order, all three
        assert len(published(tmp_path)) == 3  # each written to its place once
    finally:
        answering.stop()


def test_a_url_reaching_a_private_address_is_never_posted_to(tmp_path: Path) -> None:
    receiver = Receiver()
    try:
        issued = issuer(tmp_path, f"http://127.0.0.1:{receiver.port}/hook", allow="")
        backups(issued, 1)
        assert receiver.bodies == []
        assert issued.undelivered() == {JOB: 1}  # waiting, and alerted on, never dropped
        assert len(published(tmp_path)) == 1  # the receipt itself is published all the same
    finally:
        receiver.stop()


def test_receipts_waiting_for_a_url_taken_out_of_the_file_are_let_go(tmp_path: Path) -> None:
    issued = issuer(tmp_path, f"http://127.0.0.1:{free_port()}/nobody-listens")
    backups(issued, 2)
    assert issued.undelivered() == {JOB: 2}
    issued.terms = lambda _job: Terms("0 * * * *", "UTC", None)
    assert issued.deliver(JOB) == 0
    assert len(published(tmp_path)) == 2


def test_a_resources_receipt_url_comes_before_the_customers(tmp_path: Path) -> None:
    file = tmp_path / "acme.env"
    file.write_text(
        "SCHEDULE=0 3 * * *\nREPO_PASSWORD=p\nRESOURCES=www,db1\nRECEIPT_URL=https://a.example/r\n"
        "WWW_TYPE=local\nWWW_PATH=/srv/acme/www\nWWW_RECEIPT_URL=https://b.example/www\n"
        "DB1_TYPE=local\nDB1_PATH=/srv/acme/db\n"
    )
    customers = Customers((load_customer(file),), (), ())
    terms = terms_of(lambda: customers)
    assert terms(JobKey("acme", "www")) == Terms("0 3 * * *", "UTC", "https://b.example/www")
    assert terms(JobKey("acme", "db1")) == Terms("0 3 * * *", "UTC", "https://a.example/r")
    assert terms(JobKey("acme", "gone")) is None


def test_an_endpoint_that_drips_never_holds_up_another_customers_receipts(tmp_path: Path) -> None:
    slow, fast = Receiver(), Receiver()
    slow.delay = 6.0
    beta = JobKey("beta", "www")
    try:
        settings = issuer(tmp_path, None).settings
        urls = {JOB: f"http://127.0.0.1:{slow.port}/a", beta: f"http://127.0.0.1:{fast.port}/b"}
        issued = Issuer(settings, lambda job: Terms("0 * * * *", "UTC", urls[job]), background=True)
        outcome = Outcome(Result.SUCCESS, Reason.NONE, "")
        for job in (JOB, beta):
            issued.run(RunRecord(job, Kind.BACKUP, T0, T0, T0, outcome))
        started = time.monotonic()
        for job in (JOB, beta):  # as the publishing thread goes: the slow one first
            issued.deliver(job)
        while not fast.bodies and time.monotonic() - started < 5:
            time.sleep(0.05)
        assert fast.bodies and time.monotonic() - started < 3
        issued.posts.join(10)
        assert len(slow.bodies) == 1 and issued.undelivered() == {}
    finally:
        slow.stop()
        fast.stop()


def test_receipts_waiting_for_a_url_stay_while_the_customer_file_is_broken(tmp_path: Path) -> None:
    issued = issuer(tmp_path, f"http://127.0.0.1:{free_port()}/nobody-listens")
    backups(issued, 2)
    issued.terms = lambda _job: None  # the customer's file broke: it is not loaded
    backups(issued, 1, start=2)
    assert issued.deliver(JOB) == 3  # published, and still waiting for their POST
    assert len(published(tmp_path)) == 3


def test_two_deliveries_at_once_post_each_receipt_once(tmp_path: Path) -> None:
    receiver = Receiver()
    receiver.delay = 0.3
    try:
        url = f"http://127.0.0.1:{receiver.port}/hook"
        daemon = issuer(tmp_path, f"http://127.0.0.1:{free_port()}/down")
        backups(daemon, 3)  # published; their POSTs wait for the URL to answer
        assert daemon.undelivered() == {JOB: 3}
        command = issuer(tmp_path, url)
        daemon = Issuer(daemon.settings, command.terms, background=True)  # posts from a thread
        both = [threading.Thread(target=each.deliver, args=(JOB,)) for each in (daemon, command)]
        for thread in both:
            thread.start()
        for thread in both:
            thread.join(20)
        daemon.posts.join(20)
        while daemon.deliver(JOB):
            daemon.posts.join(20)
        seqs = [json.loads(body)["receipt"]["seq"] for _, _, body in receiver.bodies]
        assert seqs == [0, 1, 2]
    finally:
        receiver.stop()
