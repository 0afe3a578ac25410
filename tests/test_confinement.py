"""Each customer file reaches its own data only (issue 21): what `validate` refuses.

Infisical references outside the customer's folder, key files outside its key directory or
not plain files, private addresses written out, schedules firing too often, HOST_KEY lines
that pin nothing. Every refusal reads `path: KEY: message` and never repeats the value.
"""

import ipaddress
import os
import time
from pathlib import Path

import pytest

from orchestrator.config.confinement import Confinement
from orchestrator.config.customer_file import load_customer
from orchestrator.config.host_key import parse_host_key
from orchestrator.config.settings_file import load_settings
from orchestrator.errors import ConfigError
from orchestrator.schedule import GapCheck, check_cron
from tests.hostile import HOST_KEY

LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"),)
BASE = 'SCHEDULE="0 * * * *"\nREPO_PASSWORD=pw\nRESOURCES=web\nWEB_TYPE=local\nWEB_PATH=/srv/web\n'
FTPS = (
    'SCHEDULE="0 * * * *"\nREPO_PASSWORD=pw\nRESOURCES=web\nWEB_TYPE=ftps\nWEB_HOST={host}\n'
    "WEB_PORT={port}\nWEB_USER=u\nWEB_PASSWORD=p\nWEB_PATH=/\n"
)
SFTP = (
    'SCHEDULE="0 * * * *"\nREPO_PASSWORD=pw\nRESOURCES=mail\nMAIL_TYPE=sftp\n'
    "MAIL_HOST=sftp.example.com\nMAIL_USER=u\nMAIL_PATH=/\n"
    f'MAIL_HOST_KEY="ssh-ed25519 {HOST_KEY}"\n'
)


DEFAULTS = Confinement()


def problems(tmp_path: Path, text: str, confinement: Confinement = DEFAULTS) -> list[str]:
    """Return the problems of `acme.env` holding `text`: [] when it loads."""
    path = tmp_path / "acme.env"
    path.write_text(text)
    try:
        load_customer(path, confinement)
    except ConfigError as exc:
        return exc.problems
    return []


# --- Infisical: the customer's own folder ----------------------------------------------------


@pytest.mark.parametrize(
    ("text", "key"),
    [
        (BASE.replace("=pw", "=infisical:/customers/other/REPO_PASSWORD"), "REPO_PASSWORD"),
        (BASE.replace("=pw", "=infisical:/customers/acme/../other/PW"), "REPO_PASSWORD"),
        (BASE.replace("=pw", "=infisical:/customers/acme-old/PW"), "REPO_PASSWORD"),
        (BASE.replace("=pw", "=infisical:/PW"), "REPO_PASSWORD"),
        (BASE.replace("=pw", "=infisical:.."), "REPO_PASSWORD"),
        (FTPS.format(host="ftp.example.com", port=21).replace("=p\n", "=infisical:/x/PW\n"), "WEB_PASSWORD"),
        (
            BASE + "COLD_S3_ACCESS_KEY_ID=acme\nCOLD_S3_SECRET_ACCESS_KEY=infisical:/ops/S3_ROOT\n",
            "COLD_S3_SECRET_ACCESS_KEY",
        ),
    ],
)  # fmt: skip
def test_a_reference_outside_the_customer_folder_is_refused(
    tmp_path: Path, text: str, key: str
) -> None:
    found = problems(tmp_path, text)
    assert found == [
        f"{tmp_path}/acme.env: {key}: an infisical reference must lie in this customer's folder"
        " /customers/acme/ (UNSTOPPABLE_INFISICAL_CUSTOMER_FOLDER): write infisical:NAME"
    ] or found == [
        f"{tmp_path}/acme.env: {key}: an infisical reference must not hold an empty, '.' or '..'"
        " path part"
    ], found
    assert "other" not in found[0] and "S3_ROOT" not in found[0] and "/x/" not in found[0]


def test_references_inside_the_folder_load_and_the_folder_is_the_setting(tmp_path: Path) -> None:
    inside = BASE.replace("=pw", "=infisical:/customers/acme/db/PW") + (
        "COLD_S3_ACCESS_KEY_ID=acme\nCOLD_S3_SECRET_ACCESS_KEY=infisical:S3\n"
    )
    assert problems(tmp_path, inside) == []
    tenants = Confinement(infisical_folder="/tenants/{customer}")
    assert problems(tmp_path, BASE.replace("=pw", "=infisical:/tenants/acme/PW"), tenants) == []
    assert len(problems(tmp_path, inside, tenants)) == 1  # /customers/acme is not its folder now


# --- Key files: KEYS_DIR/<customer>/, plain files, read without blocking ----------------------


@pytest.fixture
def keys(tmp_path: Path) -> Path:
    """Return KEYS_DIR, holding acme/ca.pem and a key of another customer."""
    (tmp_path / "keys" / "acme").mkdir(parents=True)
    (tmp_path / "keys" / "acme" / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\n")
    (tmp_path / "keys" / "other").mkdir()
    (tmp_path / "keys" / "other" / "id").write_text("-----BEGIN OPENSSH PRIVATE KEY-----\n")
    return tmp_path / "keys"


def ftps_ca(path: str) -> str:
    return FTPS.format(host="ftp.example.com", port=21) + f"WEB_TLS_CA_FILE={path}\n"


def test_a_key_file_in_the_customer_directory_loads(tmp_path: Path, keys: Path) -> None:
    assert problems(tmp_path, ftps_ca(f"{keys}/acme/ca.pem"), Confinement(keys_dir=keys)) == []
    sftp = SFTP + f"MAIL_KEY_FILE={keys}/acme/ca.pem\n"
    assert problems(tmp_path, sftp, Confinement(keys_dir=keys)) == []


@pytest.mark.parametrize(
    ("written", "words"),
    [
        ("/etc/shadow", "must lie in this customer's key directory"),
        ("{keys}/other/id", "must lie in this customer's key directory"),
        ("{keys}/acme-2/id", "must lie in this customer's key directory"),
        ("{keys}/acme", "must lie in this customer's key directory"),
        ("{keys}/acme/../other/id", "must not hold '..'"),
        ("{keys}/acme//ca.pem", "must not hold '..'"),
        ("{keys}/acme/./ca.pem", "must not hold '..'"),
        ("{keys}/acme/missing.pem", "does not exist"),
        ("{keys}/acme/to-other", "symbolic link"),
        ("{keys}/acme/linked/id", "symbolic link"),
        ("{keys}/acme/sub", "a directory, not a regular file"),
        ("{keys}/acme/big.pem", "larger than 64 KiB"),
        ("{keys}/acme/binary.pem", "not text"),
    ],
)
def test_a_key_file_anywhere_else_or_of_another_kind_is_refused(
    tmp_path: Path, keys: Path, written: str, words: str
) -> None:
    acme = keys / "acme"
    (acme / "to-other").symlink_to(keys / "other" / "id")
    (acme / "linked").symlink_to(keys / "other")
    (acme / "sub").mkdir()
    (acme / "big.pem").write_text("A" * (64 * 1024 + 1))
    (acme / "binary.pem").write_bytes(b"\xff\xfe")
    found = problems(tmp_path, ftps_ca(written.format(keys=keys)), Confinement(keys_dir=keys))
    assert len(found) == 1, found
    assert found[0].startswith(f"{tmp_path}/acme.env: WEB_TLS_CA_FILE: ")
    assert words in found[0]
    assert "BEGIN" not in found[0]


@pytest.mark.parametrize("kind", ["fifo", "dev-zero", "link-to-dev-zero"])
def test_a_fifo_or_dev_zero_as_key_file_is_refused_within_a_second(
    tmp_path: Path, keys: Path, kind: str
) -> None:
    """Opened without blocking and judged by fstat: never a read that waits or never ends."""
    fifo = keys / "acme" / "fifo"
    os.mkfifo(fifo)
    (keys / "acme" / "zero").symlink_to("/dev/zero")
    written = {"fifo": fifo, "dev-zero": "/dev/zero", "link-to-dev-zero": keys / "acme" / "zero"}
    text = SFTP + f"MAIL_KEY_FILE={written[kind]}\n"
    started = time.monotonic()
    found = problems(tmp_path, text, Confinement(keys_dir=keys))
    assert time.monotonic() - started < 1
    assert len(found) == 1 and found[0].startswith(f"{tmp_path}/acme.env: MAIL_KEY_FILE: ")
    assert {
        "fifo": "a FIFO, not a regular file",
        "dev-zero": "must lie in this customer's key directory",
        "link-to-dev-zero": "symbolic link",
    }[kind] in found[0]


def test_a_character_device_in_the_key_directory_is_refused(tmp_path: Path, keys: Path) -> None:
    device = keys / "acme" / "zero"
    try:
        os.mknod(device, 0o600 | 0o020000, os.makedev(1, 5))  # S_IFCHR: /dev/zero's twin
    except PermissionError:
        pytest.skip("creating a device needs CAP_MKNOD")
    started = time.monotonic()
    found = problems(tmp_path, SFTP + f"MAIL_KEY_FILE={device}\n", Confinement(keys_dir=keys))
    assert time.monotonic() - started < 1
    assert found and "a character device, not a regular file" in found[0]


# --- Private targets written out --------------------------------------------------------------


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",
        "::1",
        "::ffff:127.0.0.1",
        "10.0.0.8",
        "169.254.169.254",
        "fe80::1",
        "0.0.0.0",
        "224.0.0.251",
        "100.64.0.1",
        "fd00::1",
    ],
)
def test_a_private_literal_host_is_refused(tmp_path: Path, host: str) -> None:
    found = problems(tmp_path, FTPS.format(host=host, port=22))
    assert found == [
        f"{tmp_path}/acme.env: WEB_HOST: is a loopback, private, link-local, multicast or reserved"
        " address, outside UNSTOPPABLE_ALLOW_PRIVATE_TARGETS"
    ]


def test_127_0_0_1_port_22_as_ftps_host_is_refused_unless_allowed(tmp_path: Path) -> None:
    text = FTPS.format(host="127.0.0.1", port=22)
    assert len(problems(tmp_path, text)) == 1
    assert problems(tmp_path, text, Confinement(private_targets=LOOPBACK)) == []
    # The mapped spelling is judged as the IPv4 address it is: allowed alike.
    mapped = FTPS.format(host="::ffff:127.0.0.1", port=22)
    assert problems(tmp_path, mapped, Confinement(private_targets=LOOPBACK)) == []
    # Host and port in one value is no host name at all.
    glued = problems(tmp_path, FTPS.format(host="127.0.0.1:22", port=21))
    assert glued == [
        f"{tmp_path}/acme.env: WEB_HOST: must be a host name or an IP address (the port goes in"
        " PORT)"
    ]


@pytest.mark.parametrize("host", ["2130706433", "0x7f.1", "0177.0.0.1", "127.1", "0x7f000001"])
def test_other_spellings_of_an_ipv4_address_are_refused_even_when_allowed(
    tmp_path: Path, host: str
) -> None:
    found = problems(
        tmp_path, FTPS.format(host=host, port=21), Confinement(private_targets=LOOPBACK)
    )
    assert found == [
        f"{tmp_path}/acme.env: WEB_HOST: an IPv4 address must be written as four decimal numbers"
        " (a.b.c.d)"
    ]


@pytest.mark.parametrize(
    ("line", "key"),
    [
        ("PING_URL=http://127.0.0.1:8000/hc", "PING_URL"),
        ("PING_URL=http://[::ffff:7f00:1]/hc", "PING_URL"),
        ("PING_URL=http://user@169.254.169.254/latest", "PING_URL"),
        ("PING_URL=http://2130706433/hc", "PING_URL"),
        ("WEB_PING_URL=https://10.1.2.3/ping/abc", "WEB_PING_URL"),
    ],
)
def test_a_private_ping_url_is_refused(tmp_path: Path, line: str, key: str) -> None:
    found = problems(tmp_path, BASE + line + "\n")
    assert len(found) == 1 and found[0].startswith(f"{tmp_path}/acme.env: {key}: its host ")
    assert "hc" not in found[0].split(": ", 2)[2]


def test_public_hosts_and_names_are_left_to_run_time(tmp_path: Path) -> None:
    for host in ("8.8.8.8", "2606:4700::1111", "ftp.example.com", "localhost"):
        assert problems(tmp_path, FTPS.format(host=host, port=21)) == [], host
    assert problems(tmp_path, BASE + "PING_URL=https://hc-ping.com/abc\n") == []


# --- MIN_INTERVAL -----------------------------------------------------------------------------


def test_every_second_is_refused_by_default_and_accepted_without_a_minimum(tmp_path: Path) -> None:
    text = BASE.replace('"0 * * * *"', '"* * * * * *"')
    assert problems(tmp_path, text) == [
        f"{tmp_path}/acme.env: SCHEDULE: fires every 1s, more often than "
        "UNSTOPPABLE_MIN_INTERVAL=5m"
    ]
    assert problems(tmp_path, text, Confinement(min_interval=0, min_interval_text="0")) == []


@pytest.mark.parametrize(
    ("line", "key", "gap"),
    [
        ('WEB_SCHEDULE="*/4 * * * *"', "WEB_SCHEDULE", 240),
        ('WEB_SCHEDULE="*/7 * * * *"', "WEB_SCHEDULE", 240),  # 56 → 0 of the next hour
        ('WEB_PRUNE_SCHEDULE="0,1 3 * * *"', "WEB_PRUNE_SCHEDULE", 60),
        ('WEB_VERIFY_SCHEDULE="* * * * * */30"', "WEB_VERIFY_SCHEDULE", 30),
    ],
)
def test_each_schedule_of_a_resource_is_held_to_the_minimum(
    tmp_path: Path, line: str, key: str, gap: int
) -> None:
    assert problems(tmp_path, BASE + line + "\n") == [
        f"{tmp_path}/acme.env: {key}: fires every {gap}s, more often than "
        "UNSTOPPABLE_MIN_INTERVAL=5m"
    ]


@pytest.mark.parametrize(
    "expression",
    ["*/5 * * * *", "0 * * * *", "H H * * H", "0,30 * * * *", "0,58 0,12 * * *", "0 0 L * *"],
)
def test_schedules_at_or_above_the_minimum_pass(expression: str) -> None:
    assert GapCheck(300).gap(expression) is None


@pytest.mark.parametrize(
    ("expression", "gap"),
    [
        # Day-of-month OR weekday: 23:59 and 00:00 of two days that both fire, now and then.
        ("0,10,20,30,40,50,59 0,2,4,6,8,10,12,14,16,18,20,23 15 * 1,3,5", 60),
        ("* * * * * 0,50", 10),  # 50 s, then 10 s into the next minute
        ("0,59 0,12 29 2 *", None),  # once a leap day, never refused as firing too often
    ],
)
def test_gaps_across_midnight_and_minutes_are_counted(expression: str, gap: int | None) -> None:
    assert GapCheck(300).gap(expression) == gap


@pytest.mark.parametrize("expression", ["R * * * * R", "r 3 * * *", "0 R * * *"])
def test_a_random_field_is_refused(expression: str) -> None:
    with pytest.raises(ValueError, match=r"R \(a random time\) is not supported"):
        check_cron(expression)


def test_a_close_pair_hidden_at_a_month_end_is_found() -> None:
    """Twice an hour, but 23:58 on the last day is two minutes before 00:00 on the first."""
    assert GapCheck(300).gap("0,58 0,23 1,L * *") == 120


def test_two_hundred_resources_validate_within_a_second_or_two(tmp_path: Path) -> None:
    names = [f"r{i:03d}" for i in range(200)]
    lines = [f"RESOURCES={','.join(names)}", "REPO_PASSWORD=pw"]
    for i, name in enumerate(names):
        key = name.upper()
        # Distinct schedules that need sampling (their fields alone do not settle them).
        lines += [
            f"{key}_TYPE=local",
            f"{key}_PATH=/srv/acme/{name}",
            f'{key}_SCHEDULE="{i % 60},{(i + 58) % 60} */2 * * *"',
            f'{key}_PRUNE_SCHEDULE="{i % 50},{i % 50 + 9} 3 * * *"',
        ]
    started = time.monotonic()
    found = problems(tmp_path, "\n".join(lines) + "\n")
    assert time.monotonic() - started < 2.5
    assert found  # the 58-minute pairs wrap to a 2-minute gap: refused, each by its key
    assert all(": fires every " in p or "too irregular" in p for p in found), found[:3]


def test_the_settings_give_the_loader_its_confinement(tmp_path: Path) -> None:
    settings = load_settings(
        {
            "UNSTOPPABLE_CONFIG": str(tmp_path / "none"),
            "UNSTOPPABLE_KEYS_DIR": str(tmp_path / "keys"),
            "UNSTOPPABLE_INFISICAL_CUSTOMER_FOLDER": "/tenants/{customer}",
            "UNSTOPPABLE_ALLOW_PRIVATE_TARGETS": "127.0.0.0/8, fd00::/8",
            "UNSTOPPABLE_MIN_INTERVAL": "1h",
        }
    )
    confinement = settings.confinement
    assert confinement.keys_of("acme") == tmp_path / "keys" / "acme"
    assert confinement.folder_of("acme") == "/tenants/acme/"
    assert confinement.private_targets == (
        ipaddress.ip_network("127.0.0.0/8"),
        ipaddress.ip_network("fd00::/8"),
    )
    assert (confinement.min_interval, confinement.min_interval_text) == (3600, "1h")
    assert confinement.bounds == settings.bounds


# --- HOST_KEY ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "line",
    [
        f"ssh-ed25519 {HOST_KEY}",
        f"ssh-ed25519 {HOST_KEY} root@server",
        f"sftp.example.com ssh-ed25519 {HOST_KEY}",
        f"[sftp.example.com]:2222,203.0.113.5 ssh-ed25519 {HOST_KEY} a comment with words",
        f"|1|F1E1KeoE/eEWhi10WpGv4OdiO6Y=|3988QV0VE8wmZL7suNrYQLITLCg= ssh-ed25519 {HOST_KEY}",
    ],
)
def test_a_known_hosts_line_is_read_by_its_fields(line: str) -> None:
    pinned = parse_host_key(line)
    assert (pinned.type, pinned.key) == ("ssh-ed25519", HOST_KEY)


@pytest.mark.parametrize(
    ("line", "words"),
    [
        (f"@cert-authority *.example.com ssh-ed25519 {HOST_KEY}", "pins no host key"),
        (f"@revoked * ssh-ed25519 {HOST_KEY}", "pins no host key"),
        (f"@marker host ssh-ed25519 {HOST_KEY}", "unknown marker"),
        ("ssh-ed25519", "must be a known_hosts line"),
        (f"host ssh-dss {HOST_KEY}", "must be a known_hosts line"),
        (f"host {HOST_KEY}", "must be a known_hosts line"),
        ("host ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHh0Y2Y3c2RmZ2hqa2xxd2VydHl1aW9wYXNkZmdoams",
         "not base64 of an ssh-ed25519 public key"),
        (f"host ssh-rsa {HOST_KEY}", "not base64 of an ssh-rsa public key"),
        ("host ssh-ed25519 not!base64", "not base64"),
    ],
)  # fmt: skip
def test_a_line_that_pins_no_key_is_refused(line: str, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        parse_host_key(line)


def test_validate_names_the_host_key_problem_without_the_line(tmp_path: Path) -> None:
    text = SFTP.replace('MAIL_HOST_KEY="', 'MAIL_HOST_KEY="@revoked * ') + "MAIL_PASSWORD=p\n"
    found = problems(tmp_path, text)
    assert len(found) == 1
    assert found[0].startswith(f"{tmp_path}/acme.env: MAIL_HOST_KEY: a @revoked line pins no")
    assert HOST_KEY not in found[0]
