"""What a worker may use, as data: the settings become the spec's limits, the engine's
arguments and swarm's task template; a worker killed for memory is judged `memory`; only
the end of a worker's output is ever held.

The engine's side (a real worker killed past its limit, a real read-only root) is in
tests/test_runtime_contract.py and the end-to-end backups.
"""

import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.config.settings import Settings
from orchestrator.config.source import SourceType
from orchestrator.judgement import worker_failure
from orchestrator.model import Kind, Reason, Result
from orchestrator.runtime.engine_options import create_options, task_template
from orchestrator.runtime.paths import SECRETS
from orchestrator.runtime.protocol import Finished
from orchestrator.runtime.spec import (
    KEEP_STDERR,
    KEEP_STDOUT,
    SNAPSHOT_LOG,
    ContainerSpec,
    Limits,
    Mount,
    size_bytes,
)
from orchestrator.runtime.text import tail
from orchestrator.rustic.output import last_words, parse_snapshots
from tests.test_daemon_on_fake import WROTE

SETTINGS = Settings(WORKER_MEMORY="512m", WORKER_PIDS=64, WORKER_LOG_SIZE="2m", WORKER_TMPFS="32m")


def spec(tmp_path: Path, limits: Limits) -> ContainerSpec:
    return ContainerSpec(
        "unstoppable_acme_files",
        "unstoppable-worker:test",
        ("backup",),
        (("unstoppable.job", "acme/files"),),
        (Mount(tmp_path / "hot", "/repo/hot", read_only=False), Mount(tmp_path / "s", SECRETS)),
        limits=limits,
    )


@pytest.mark.parametrize(("size", "expected"), [("64k", 65536), ("10m", 10 * 2**20), ("2g", 2**31)])
def test_sizes_in_dockers_syntax(size: str, expected: int) -> None:
    assert size_bytes(size) == expected


def test_the_settings_become_each_workers_limits() -> None:
    backup = Limits.of(SETTINGS, Kind.BACKUP)
    assert backup == Limits("512m", 64, "2m", "32m", KEEP_STDOUT, KEEP_STDERR)
    # A snapshot listing's whole output is its answer: it keeps what the engine keeps, and
    # never less than SNAPSHOT_LOG.
    assert Limits.of(SETTINGS, Kind.SNAPSHOTS).stdout_bytes == size_bytes(SNAPSHOT_LOG)
    assert Limits.of(Settings(), Kind.BACKUP) == Limits()  # the defaults agree


def test_the_engine_is_asked_for_every_limit_and_a_read_only_root(tmp_path: Path) -> None:
    options = create_options(spec(tmp_path, Limits.of(SETTINGS, Kind.BACKUP)))
    assert options["mem_limit"] == options["memswap_limit"] == "512m"  # no swap on top
    assert options["pids_limit"] == 64
    assert options["log_config"] == {
        "type": "json-file",
        "config": {"max-size": "2m", "max-file": "1"},
    }
    assert options["read_only"] is True
    assert options["tmpfs"] == {"/tmp": "size=32m", "/remote": "size=1m"}
    assert options["environment"] == {}
    assert "no-new-privileges" in options["security_opt"]


def test_a_swarm_task_gets_the_same_limits(tmp_path: Path) -> None:
    template = task_template(spec(tmp_path, Limits.of(SETTINGS, Kind.BACKUP)), {}, "node.id==n", [])
    assert template["Resources"] == {"Limits": {"MemoryBytes": 512 * 2**20, "Pids": 64}}
    assert template["LogDriver"] == {
        "Name": "json-file",
        "Options": {"max-size": "2m", "max-file": "1"},
    }
    container = template["ContainerSpec"]
    assert container["ReadOnly"] is True
    tmpfs = [m for m in container["Mounts"] if m["Type"] == "tmpfs"]
    assert tmpfs == [
        {"Type": "tmpfs", "Target": "/tmp", "TmpfsOptions": {"SizeBytes": 32 * 2**20}},
        {"Type": "tmpfs", "Target": "/remote", "TmpfsOptions": {"SizeBytes": 2**20}},
    ]


class _Resource:
    type = SourceType.LOCAL


@pytest.mark.parametrize("code", [137, 0, 1, 4])
def test_a_worker_killed_for_memory_fails_with_reason_memory(code: int) -> None:
    done = Finished(code, "", "Killed\n", oom_killed=True)
    outcome = worker_failure(_Resource(), done)  # type: ignore[arg-type]
    assert outcome is not None
    assert (outcome.result, outcome.reason) == (Result.FAILURE, Reason.MEMORY)
    assert "went over its memory limit (UNSTOPPABLE_WORKER_MEMORY)" in outcome.message
    # An exit 137 alone is a SIGKILL of any kind (a stop past the grace): not memory.
    assert worker_failure(_Resource(), Finished(137, "", "")) is None  # type: ignore[arg-type]
    assert "memory" not in last_words(Finished(137, "", ""))


def test_a_memory_kill_is_told_in_our_words_and_hides_no_snapshot() -> None:
    server = "550 Call +1-555-0100 now, your backups are fine"
    outcome = worker_failure(_Resource(), Finished(3, "", server, oom_killed=True))  # type: ignore[arg-type]
    assert outcome is not None and outcome.reason is Reason.MEMORY
    assert "555" not in outcome.message and "fine" not in outcome.message
    # rclone killed, rustic done: the snapshot it wrote is judged (and may be suspect).
    wrote = Finished(0, WROTE.stdout, "", oom_killed=True)
    assert worker_failure(_Resource(), wrote) is None  # type: ignore[arg-type]


def test_the_snapshot_listing_keeps_what_two_thousand_snapshots_print() -> None:
    listing = Limits.of(Settings(), Kind.SNAPSHOTS)
    assert size_bytes(listing.log_size) >= 2_000 * 5_200 * 20
    assert listing.stdout_bytes == size_bytes(listing.log_size)
    with pytest.raises(ValueError, match="cut short"):
        parse_snapshots('  {"id": "4f8c", "time": "2026-01-01T00:00:00Z"}\n  }\n]\n]\n')
    assert parse_snapshots("") == []


def test_memory_is_the_last_reason_and_a_metric_label() -> None:
    assert list(Reason)[-1] is Reason.MEMORY and Reason.MEMORY.value == "memory"


def text(lines: int, width: int = 10) -> bytes:
    return b"".join(f"{i:0{width - 1}}\n".encode() for i in range(lines))


@pytest.mark.parametrize(
    ("chunks", "keep", "expected"),
    [
        ([b"abc\n", b"def\n"], 100, "abc\ndef\n"),
        ([b"abc\n", b"", b"def\n"], 8, "abc\ndef\n"),  # exactly `keep`: nothing cut
        ([b"", b"abcdefgh"], 8, "abcdefgh"),
        ([b"abc\n", b"def\n"], 6, "[output cut: only its last 6 bytes were read]\ndef\n"),
        ([b"abc\ndef\n"], 6, "[output cut: only its last 6 bytes were read]\ndef\n"),
        ([b"a\nb", b"c", b"d\ne\n"], 5, "[output cut: only its last 5 bytes were read]\ne\n"),
        ([], 10, ""),
        # A cut that falls on a line's start keeps that whole line.
        (
            [b"AAA\n", b"BBB\n", b"CCC\n"],
            8,
            "[output cut: only its last 8 bytes were read]\nBBB\nCCC\n",
        ),
        ([b"\xff\xfe ok\n"], 100, "\ufffd\ufffd ok\n"),  # not UTF-8: replaced, never raised
    ],
)
def test_the_tail_of_a_stream(chunks: list[bytes], keep: int, expected: str) -> None:
    assert tail(chunks, keep) == expected


@pytest.mark.parametrize("chunk", [1, 16 * 1024, 3 * 2**20])
def test_the_tail_is_the_same_however_the_stream_is_cut_into_chunks(chunk: int) -> None:
    data = text(20000)
    pieces = [data[i : i + chunk] for i in range(0, len(data), chunk)]
    assert tail(pieces, 1000) == tail([data], 1000)
    assert tail(pieces, 1000).endswith("000019999\n")


def test_a_worker_printing_a_gigabyte_costs_the_reader_its_tail_only() -> None:
    def gigabyte() -> Iterator[bytes]:
        line = b"x" * 16383 + b"\n"  # the engine's log lines come at most 16 KiB long
        for _ in range(2**30 // len(line)):
            yield line

    tracemalloc.start()
    try:
        kept = tail(gigabyte(), 2**20)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(kept) <= 2**20 + 100
    assert peak < 4 * 2**20, f"peak {peak} bytes for a 1 MiB tail"
