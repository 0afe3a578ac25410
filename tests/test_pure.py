"""Table-driven tests of the pure pieces: durations, schedules, labels, rustic argv and output."""

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from orchestrator.config.confinement import Confinement
from orchestrator.config.customer_file import load_customer
from orchestrator.config.durations import parse_duration
from orchestrator.config.settings_file import load_settings
from orchestrator.errors import ConfigError
from orchestrator.model import JobKey, Kind, Reason, Result
from orchestrator.runtime.exit_codes import ExitCode, shell
from orchestrator.runtime.spec import container_name, labels
from orchestrator.rustic.commands import backup_args, forget_args
from orchestrator.rustic.output import judge_backup, judge_check, parse_snapshots
from orchestrator.schedule import next_fire

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90s", 90),
        ("15m", 900),
        ("12h", 43200),
        ("1h30m", 5400),
        ("2d", 172800),
        ("45", 45),
    ],
)
def test_durations(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "h", "1x", "1h 30m", "0s", "-5m", "1.5h"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


@pytest.mark.parametrize(
    ("cron", "tz", "after", "expected"),
    [
        ("0 * * * *", "UTC", "2026-11-26T05:40:00", "2026-11-26T06:00:00"),
        ("0 3 * * *", "Europe/Berlin", "2026-11-26T05:40:00", "2026-11-27T02:00:00"),
        ("* * * * * */5", "UTC", "2026-11-26T05:40:02", "2026-11-26T05:40:05"),
        # 02:30 does not exist in Berlin on 2026-03-29 (02:00 -> 03:00): it runs at 03:00 CEST.
        ("30 2 * * *", "Europe/Berlin", "2026-03-28T12:00:00", "2026-03-29T01:00:00"),
    ],
)
def test_next_fire_is_utc_and_zone_aware(cron: str, tz: str, after: str, expected: str) -> None:
    start = datetime.fromisoformat(after).replace(tzinfo=UTC)
    fire = next_fire(cron, tz, start)
    assert fire.tzinfo is not None and fire.utcoffset() is not None
    assert fire.utcoffset().total_seconds() == 0  # type: ignore[union-attr]
    assert fire.replace(tzinfo=None) >= datetime.fromisoformat(after)
    assert fire == datetime.fromisoformat(expected).replace(tzinfo=UTC)


def fires(cron: str, tz: str, start: str, end: str) -> list[str]:
    moment = datetime.fromisoformat(start).replace(tzinfo=UTC)
    stop = datetime.fromisoformat(end).replace(tzinfo=UTC)
    out = []
    while (moment := next_fire(cron, tz, moment)) < stop:
        out.append(moment.strftime("%H:%M"))
    return out


def test_fall_back_runs_a_daily_job_once_and_an_hourly_job_every_real_hour() -> None:
    # Berlin 2026-10-25: 03:00 CEST becomes 02:00 CET, so 02:30 happens twice.
    assert fires("30 2 * * *", "Europe/Berlin", "2026-10-24T12:00", "2026-10-25T12:00") == ["00:30"]
    assert fires("0 * * * *", "Europe/Berlin", "2026-10-24T23:30", "2026-10-25T03:30") == [
        "00:00",
        "01:00",
        "02:00",
        "03:00",
    ]


def test_spring_forward_runs_a_daily_job_in_the_gap_once() -> None:
    # Berlin 2026-03-29: 02:00 CET becomes 03:00 CEST; 02:30 does not exist.
    assert fires("30 2 * * *", "Europe/Berlin", "2026-03-28T12:00", "2026-03-29T12:00") == ["01:00"]
    assert fires("0 * * * *", "Europe/Berlin", "2026-03-28T23:30", "2026-03-29T02:30") == [
        "00:00",
        "01:00",
        "02:00",
    ]


def test_labels_and_names_follow_design() -> None:
    when = datetime(2026, 11, 26, 5, 40, tzinfo=UTC)
    assert dict(labels(JobKey("acme", "web"), Kind.BACKUP, when)) == {
        "unstoppable.managed": "true",
        "unstoppable.customer": "acme",
        "unstoppable.resource": "web",
        "unstoppable.job": "acme/web",
        "unstoppable.kind": "backup",
        "unstoppable.scheduled-for": "2026-11-26T05:40:00Z",
        "unstoppable.origin": "cli",
    }
    # Every kind that writes to the repository shares the job's name: Docker is the mutex.
    for kind in (Kind.BACKUP, Kind.PRUNE, Kind.VERIFY, Kind.CHECK, Kind.TAG, Kind.RECOVER):
        assert container_name(JobKey("acme", "web"), kind, when) == "unstoppable_acme_web"
    # One that only reads has a name of its own: a restore of hours never stops a backup.
    later = when + timedelta(microseconds=1)
    for kind in (Kind.RESTORE, Kind.SNAPSHOTS):
        name = container_name(JobKey("acme", "web"), kind, when)
        assert name.startswith(f"unstoppable_acme_web_{kind.value}_")
        assert name != container_name(JobKey("acme", "web"), kind, later)


def test_backup_argv_records_the_real_path_and_host() -> None:
    argv = backup_args(["--repository", "/repo/cold"], "acme", "/srv/a b/-x", ("*.tmp", "cache/"))
    assert argv[-2:] == ["--", "/srv/a b/-x"]
    assert argv[argv.index("--host") + 1] == "acme"
    assert ["--glob", "!*.tmp", "--glob", "!cache/"] == argv[
        argv.index("--glob") : argv.index("--glob") + 4
    ]
    assert "--password-file" in argv and "--json" in argv and "--init" in argv


def test_forget_argv_maps_keep_keys_and_always_keeps_the_floor() -> None:
    argv = forget_args(
        ["--repository", "/repo/cold"], (("KEEP_DAILY", 14), ("KEEP_LAST", 3)), 604800
    )
    assert argv[argv.index("forget") :] == [
        "forget",
        "--prune",
        "--filter-tags",
        "unstoppable-clean",
        "--keep-daily",
        "14",
        "--keep-last",
        "3",
        "--keep-within",
        "604800s",
        "--keep-tags",
        "unstoppable-pinned",
    ]
    # No KEEP_LAST, or KEEP_LAST=0 smuggled past validation: the newest snapshot stays.
    only_daily = forget_args([], (("KEEP_DAILY", 2),), 60)
    assert only_daily[-8:-2] == ["--keep-daily", "2", "--keep-last", "1", "--keep-within", "60s"]


SNAPSHOT = json.dumps(
    {
        "id": "abc123",
        "time": "2026-11-26T05:40:00Z",
        "summary": {
            "files_new": 3,
            "files_changed": 1,
            "data_added": 42,
            "total_bytes_processed": 1000,
        },
    }
)


@pytest.mark.parametrize(
    ("code", "stdout", "stderr", "result", "reason"),
    [
        (0, SNAPSHOT, "[INFO] done\n", Result.SUCCESS, Reason.NONE),
        (
            0,
            SNAPSHOT,
            "[WARN] error reading /src/secret: Permission denied (os error 13)\n",
            Result.FAILURE,
            Reason.SOURCE_UNREADABLE,
        ),
        (0, "", "[INFO] received SIGTERM\n", Result.FAILURE, Reason.INTERRUPTED),
        (1, "", "[ERROR] no suitable key found!\n", Result.FAILURE, Reason.REPOSITORY),
        (137, "", "", Result.FAILURE, Reason.INTERRUPTED),
        (1, "", "[ERROR] something else broke\n", Result.FAILURE, Reason.RUSTIC),
    ],
)
def test_judge_backup(code: int, stdout: str, stderr: str, result: Result, reason: Reason) -> None:
    outcome = judge_backup(code, stdout, stderr)
    assert (outcome.result, outcome.reason) == (result, reason)


def test_successful_backup_carries_its_summary() -> None:
    summary = judge_backup(0, SNAPSHOT, "").summary
    assert summary is not None
    assert (summary.snapshot_id, summary.files_new, summary.data_added) == ("abc123", 3, 42)


def test_parse_grouped_snapshots_oldest_first() -> None:
    grouped = [
        [
            {"hostname": "acme"},
            [
                {
                    "id": "b",
                    "time": "2026-11-26T06:00:00+00:00",
                    "paths": ["/src"],
                    "hostname": "acme",
                },
                {
                    "id": "a",
                    "time": "2026-11-26T05:00:00+00:00",
                    "paths": ["/src"],
                    "hostname": "acme",
                },
            ],
        ]
    ]
    assert [s.id for s in parse_snapshots(json.dumps(grouped))] == ["a", "b"]


def test_settings_environment_overrides_file(tmp_path: Path) -> None:
    config = tmp_path / "unstoppable.env"
    config.write_text("UNSTOPPABLE_MAX_PARALLEL=2\nUNSTOPPABLE_DATA_DIR=/srv/data\n")
    settings = load_settings({"UNSTOPPABLE_CONFIG": str(config), "UNSTOPPABLE_MAX_PARALLEL": "8"})
    assert (settings.MAX_PARALLEL, settings.DATA_DIR) == (8, Path("/srv/data"))
    assert settings.job_timeout_seconds == 12 * 3600


def test_settings_defaults_without_a_file(tmp_path: Path) -> None:
    settings = load_settings({"UNSTOPPABLE_CONFIG": str(tmp_path / "missing.env")})
    assert settings.CUSTOMERS_DIR == Path("/etc/unstoppable/customers.d")
    assert settings.COLD_BACKEND == "local" and settings.CATCH_UP == "once"


@pytest.mark.parametrize(
    ("env", "key"),
    [
        ({"UNSTOPPABLE_MAX_PARALEL": "3"}, "UNSTOPPABLE_MAX_PARALEL: unknown setting"),
        ({"UNSTOPPABLE_MAX_PARALLEL": "0"}, "UNSTOPPABLE_MAX_PARALLEL: "),
        ({"UNSTOPPABLE_JOB_TIMEOUT": "soon"}, "UNSTOPPABLE_JOB_TIMEOUT: "),
        ({"UNSTOPPABLE_COLD_BACKEND": "tape"}, "UNSTOPPABLE_COLD_BACKEND: "),
        ({"UNSTOPPABLE_DATA_DIR": "relative"}, "UNSTOPPABLE_DATA_DIR: "),
        (
            {"UNSTOPPABLE_COLD_BACKEND": "s3"},
            "needs UNSTOPPABLE_S3_ENDPOINT, UNSTOPPABLE_S3_ACCESS_KEY_ID",
        ),
    ],
)
def test_bad_settings_name_the_key(tmp_path: Path, env: dict[str, str], key: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings({"UNSTOPPABLE_CONFIG": str(tmp_path / "none"), **env})
    assert key in err.value.problems[0]


def test_shipped_sample_documents_a_valid_customer(tmp_path: Path) -> None:
    """Valid with default settings: its CA file in the default KEYS_DIR/acme/, here a copy."""
    text = (ROOT / "customers.d" / "example.env.sample").read_text()
    assert "_TLS_CA_FILE=/etc/unstoppable/keys/acme/" in text
    keys = tmp_path / "keys"
    (keys / "acme").mkdir(parents=True)
    (keys / "acme" / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\n")
    (tmp_path / "acme.env").write_text(text.replace("/etc/unstoppable/keys/", f"{keys}/"))
    customer = load_customer(tmp_path / "acme.env", Confinement(keys_dir=keys))
    assert [r.name for r in customer.resources] == ["website", "dumps"]


@pytest.mark.parametrize(
    ("code", "stderr", "problems", "leftovers"),
    [
        (0, "[INFO] checking index\n", 0, 0),
        (0, "[WARN] pack 48e90448 not referenced in index. Can be a parallel backup job.\n", 0, 1),
        (0, "[ERROR] pack 1234 is missing\n", 1, 0),
        (0, "[WARN] blob abc has wrong size\n", 1, 0),
        (1, "error: something\n", 1, 0),
    ],
)
def test_judge_check(code: int, stderr: str, problems: int, leftovers: int) -> None:
    found, left = judge_check(code, stderr)
    assert (len(found), left) == (problems, leftovers)


def test_given_settings_ignore_the_process_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`load_settings(environ=...)` reads what it is given: the real environment stays out."""
    monkeypatch.setenv("UNSTOPPABLE_MAX_PARALLEL", "7")
    monkeypatch.setenv("UNSTOPPABLE_DATA_DIR", "/from/the/environment")
    given = load_settings({"UNSTOPPABLE_CONFIG": str(tmp_path / "none")})
    assert (given.MAX_PARALLEL, given.DATA_DIR) == (4, Path("/var/lib/unstoppable"))
    assert load_settings().MAX_PARALLEL == 7  # the default still reads the process


def _event(status: str, job: str, at: int) -> dict[str, object]:
    return {"status": status, "timeNano": at, "Actor": {"Attributes": {"unstoppable.job": job}}}


def test_the_overlap_check_can_fail() -> None:
    """An empty or unrelated log proves nothing; two starts of a job before a die is overlap."""
    from tests.helpers import assert_never_overlapping

    one = [_event("start", "a/r", 1), _event("die", "a/r", 2), _event("start", "a/r", 3)]
    assert_never_overlapping(one, "a/r")
    with pytest.raises(AssertionError, match="holds no worker of a/r"):
        assert_never_overlapping([], "a/r")
    with pytest.raises(AssertionError, match="holds no worker of b/r"):
        assert_never_overlapping(one, "a/r", "b/r")
    with pytest.raises(AssertionError, match="two workers of a/r at once"):
        assert_never_overlapping([*one[:1], _event("start", "a/r", 2)], "a/r")


def bare_exits(text: str, named: set[int]) -> list[str]:
    """Return the lines of a shell script that exit with one of `named` as a literal."""
    found = []
    for line in text.splitlines():
        code = line.split("#", 1)[0]
        if any(int(n) in named for n in re.findall(r"\bexit (\d+)\b", code)):
            found.append(line.strip())
    return found


def test_the_worker_scripts_exit_with_the_codes_the_orchestrator_reads() -> None:
    """worker-image/exit-codes is ExitCode rendered, and no script exits with a bare number."""
    image = ROOT / "worker-image"
    assert (image / "exit-codes").read_text() == shell(), "render it again from ExitCode"
    named = {code.value for code in ExitCode if code is not ExitCode.OK}
    assert bare_exits("[ -d x ] || exit 6  # swapped\n", named), "the check must see one"
    scripts = sorted(image.glob("unstoppable-*"))
    assert len(scripts) >= 5
    for script in scripts:
        text = script.read_text()
        assert not bare_exits(text, named), f"{script.name} exits with a bare code"
        if "$EXIT_" in text:
            assert ". /usr/local/lib/unstoppable/exit-codes" in text, script.name
    dockerfile = (image / "Dockerfile").read_text()
    assert "COPY exit-codes /usr/local/lib/unstoppable/exit-codes\n" in dockerfile
    used = {n for n in ExitCode.__members__ for s in scripts if f"$EXIT_{n}" in s.read_text()}
    assert used == set(ExitCode.__members__) - {"OK"}, "every code is one a script gives"


@pytest.mark.parametrize(
    "key", ["JOB_TIMEOUT", "MIN_KEEP_WITHIN", "S3_LOCK_MARGIN", "MIN_INTERVAL"]
)
def test_a_duration_past_a_century_is_a_config_error_not_a_crash(key: str) -> None:
    """parse_duration takes 999999999d999999999d; a timedelta of it would overflow."""
    with pytest.raises(ConfigError) as err:
        load_settings(environ={f"UNSTOPPABLE_{key}": "999999999d999999999d"})
    assert f"UNSTOPPABLE_{key}" in str(err.value) and "100 years" in str(err.value)
    assert load_settings(environ={f"UNSTOPPABLE_{key}": "36500d"}) is not None
