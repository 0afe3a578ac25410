"""Outside text (a server's replies, rustic's and rclone's lines) never reaches a message raw."""

import pytest

from orchestrator.config.customer import Resource
from orchestrator.config.source import parse_source
from orchestrator.judgement import worker_failure
from orchestrator.model import Outcome, Reason, Result, plain
from orchestrator.runtime.protocol import Finished
from orchestrator.rustic.output import error_summary, judge_backup

HOSTILE = "a\x1b[31mred\x1b[0m\x07 b\x9b2Jc\nd\x7fe\x1b]0;title\x07f\x00g\x85h\x1b[?1049h!"


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        (HOSTILE, "ared bc defgh!"),
        ("tab\there", "tab here"),
        ("ünïcødé – ok", "ünïcødé – ok"),
        ("\x1b]8;;http://evil\x1b\\link\x1b]8;;\x1b\\", "link"),
        ("\x1bc reset", " reset"),
        ("one\u2028two\u2029three", "one two three"),
        ("evil\u202egnp.exe\u200b\u2066x\u2069", "evilgnp.exex"),
    ],
)
def test_plain_keeps_words_and_drops_controls_and_escapes(text: str, shown: str) -> None:
    assert plain(text) == shown


def test_an_outcome_message_is_always_plain() -> None:
    outcome = Outcome(Result.FAILURE, Reason.RUSTIC, HOSTILE)
    assert outcome.message == "ared bc defgh!"
    assert not any(ord(c) < 32 or 0x7F <= ord(c) <= 0x9F for c in outcome.message)


def test_rustic_error_lines_lose_their_escapes() -> None:
    stderr = "[ERROR] cannot read /src/\x1b]0;owned\x07file\x1b[2J: denied\n"
    assert error_summary(stderr) == "cannot read /src/file: denied"
    judged = judge_backup(1, "", stderr)
    assert judged.message == "rustic exited 1: cannot read /src/file: denied"


def _remote() -> Resource:
    source, problems = parse_source(
        {
            "TYPE": "ftps",
            "HOST": "ftp.example.com",
            "USER": "u",
            "PASSWORD": "p",
            "PATH": "/site",
        },
        "UTC",
        "0 * * * *",
    )
    assert source is not None, problems
    return Resource("site", source)


@pytest.mark.parametrize(
    ("stderr", "reason"),
    [
        ("ERROR : 530 Login incorrect. CALL 0800-SCAM \x1b[2J", Reason.AUTH),
        ("dial tcp 203.0.113.9:21: connection refused (banner: BUY NOW)", Reason.CONNECT),
        ("x509: certificate signed by unknown authority; server says HELLO", Reason.TLS),
        ("550 /site: No such file: our server is the best", Reason.PATH_NOT_FOUND),
        ("ssh: handshake failed: knownhosts: key mismatch SSH-2.0-EvilBanner", Reason.HOST_KEY),
        ("220 Welcome to EvilFTP, you have been hacked", Reason.CONNECT),
    ],
)
def test_an_unreachable_remote_source_is_told_in_our_words(stderr: str, reason: Reason) -> None:
    """rclone quotes the server; the message (and so the ping body) must not."""
    failed = worker_failure(_remote(), Finished(3, "", stderr))
    assert failed is not None
    assert failed.reason is reason
    for word in ("SCAM", "BUY", "HELLO", "best", "Evil", "hacked", "\x1b"):
        assert word not in failed.message


@pytest.mark.parametrize(
    ("stderr", "reason"),
    [
        # The probe passed, then the mount's own login was refused: the server's reason.
        ("[ERROR] cannot mount source:/site\n530 Login incorrect. Visit https://evil", Reason.AUTH),
        # A reply that names no reason we know: the mount's failure, none of its words.
        (
            "[ERROR] cannot mount source:/site\n421 fuse overloaded, go to https://evil",
            Reason.MOUNT,
        ),
        (
            "[ERROR] cannot mount source:/site\nfusermount3: mount failed: Permission denied",
            Reason.MOUNT,
        ),
    ],
)
def test_a_refused_mount_is_told_in_our_words(stderr: str, reason: Reason) -> None:
    failed = worker_failure(_remote(), Finished(5, "", stderr))
    assert failed is not None
    assert failed.reason is reason
    for word in ("evil", "Visit", "overloaded", "cannot mount"):
        assert word not in failed.message
