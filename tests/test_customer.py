"""Customer files: each broken one gets its own clear message; valid ones load exactly."""

from pathlib import Path

import pytest

from orchestrator.config.customer_file import load_customer, load_customers
from orchestrator.config.source import SourceType
from orchestrator.errors import ConfigError

SECRET = "s3cr3t-Value-Never-Printed"
VALID = f"""
# a comment
SCHEDULE="0 * * * *"
TIMEZONE=Europe/Berlin
REPO_PASSWORD={SECRET}
KEEP_DAILY=14
RESOURCES=website,db-dumps
WEBSITE_TYPE=local
WEBSITE_PATH=/srv/acme/www
DB_DUMPS_TYPE=local
DB_DUMPS_PATH="/srv/acme/dumps with space"
DB_DUMPS_SCHEDULE="*/15 * * * *"   # override
DB_DUMPS_EXCLUDE="*.tmp, cache/"
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_valid_customer_loads_every_key(tmp_path: Path) -> None:
    customer = load_customer(write(tmp_path, "acme.env", VALID))
    assert customer.name == "acme"
    assert customer.timezone == "Europe/Berlin"
    assert customer.repo_password.literal is not None
    assert customer.repo_password.literal.get_secret_value() == SECRET
    assert customer.keep == (("KEEP_DAILY", 14),)
    web, dumps = customer.resources
    assert (web.name, web.type, web.path, web.schedule) == (
        "website",
        SourceType.LOCAL,
        "/srv/acme/www",
        "0 * * * *",
    )
    assert dumps.path == "/srv/acme/dumps with space"
    assert dumps.schedule == "*/15 * * * *"
    assert dumps.excludes == ("*.tmp", "cache/")
    assert SECRET not in repr(customer)


def test_daemon_environment_never_leaks_into_a_customer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REPO_PASSWORD", "from-env")
    monkeypatch.setenv("TIMEZONE", "Asia/Tokyo")
    text = VALID.replace(f"REPO_PASSWORD={SECRET}\n", "").replace("TIMEZONE=Europe/Berlin\n", "")
    with pytest.raises(ConfigError) as err:
        load_customer(write(tmp_path, "acme.env", text))
    assert err.value.problems == [
        f"{tmp_path}/acme.env: REPO_PASSWORD: required (a literal or infisical:NAME)"
    ]


def test_infisical_references_parse(tmp_path: Path) -> None:
    ref = "infisical:/customers/acme/shared/ACME_PW"  # below the customer's own folder
    text = VALID.replace(f"REPO_PASSWORD={SECRET}", f"REPO_PASSWORD={ref}")
    customer = load_customer(write(tmp_path, "acme.env", text))
    assert customer.repo_password.infisical == "/customers/acme/shared/ACME_PW"
    assert customer.repo_password.literal is None


BASE = f'REPO_PASSWORD={SECRET}\nSCHEDULE="0 * * * *"\nRESOURCES=web\nWEB_TYPE=local\nWEB_PATH=/srv/web\n'

# (file name, text, the key the single problem must name, words the message must hold)
BROKEN = [
    ("bad-cron.env", BASE.replace('"0 * * * *"', '"61 * * * *"'), "SCHEDULE", "cron"),
    ("few-fields.env", BASE.replace('"0 * * * *"', '"0 * *"'), "SCHEDULE", "5 cron fields"),
    ("unknown-key.env", BASE + "COLOUR=blue\n", "COLOUR", "unknown key"),
    ("no-password.env", BASE.replace(f"REPO_PASSWORD={SECRET}\n", ""), "REPO_PASSWORD", "required"),
    ("Upper.env", BASE, "file name", "customer name"),
    ("ab.env", BASE, "file name", "3-63 characters"),
    ("dotdot.env", BASE.replace("RESOURCES=web", "RESOURCES=web,../etc"), "RESOURCES", "'../etc'"),
    ("upper-res.env", BASE.replace("RESOURCES=web", "RESOURCES=web,Docs"), "RESOURCES", "'Docs'"),
    (
        "unknown-type.env",
        BASE.replace("WEB_TYPE=local", "WEB_TYPE=nfs"),
        "WEB_TYPE",
        "one of local",
    ),
    ("no-type.env", BASE.replace("WEB_TYPE=local\n", ""), "WEB_TYPE", "required"),
    ("relative.env", BASE.replace("/srv/web", "srv/web"), "WEB_PATH", "absolute"),
    ("dotdot-path.env", BASE.replace("/srv/web", "/srv/../etc"), "WEB_PATH", "'..'"),
    ("no-path.env", BASE.replace("WEB_PATH=/srv/web\n", ""), "WEB_PATH", "required for TYPE=local"),
    (
        "dup-res.env",
        BASE.replace("RESOURCES=web", "RESOURCES=web,web"),
        "RESOURCES",
        "listed twice",
    ),
    ("bad-tz.env", BASE + "TIMEZONE=Mars/Olympus\n", "TIMEZONE", "IANA"),
    ("bad-keep.env", BASE + "KEEP_DAILY=-1\n", "KEEP_DAILY", "whole number"),
    ("twice.env", BASE + "WEB_PATH=/srv/other\n", "WEB_PATH", "set twice"),
    ("garbage.env", BASE + "this is not a key\n", "line 6", "KEY=value"),
    ("quote.env", BASE + 'WEB_EXCLUDE="*.tmp\n', "WEB_EXCLUDE", "a quote is not closed"),
    ("no-schedule.env", BASE.replace('SCHEDULE="0 * * * *"\n', ""), "WEB_SCHEDULE", "required"),
    ("empty-res.env", BASE.split("RESOURCES")[0] + "RESOURCES=\n", "RESOURCES", "required"),
    ("other-res.env", BASE + "DOCS_PATH=/srv/docs\n", "DOCS_PATH", "unknown key"),
    ("wrong-type-key.env", BASE + "WEB_HOST=ftp.example\n", "WEB_HOST", "not used by TYPE=local"),
    (
        "ftps-host.env",
        BASE.replace("WEB_TYPE=local", "WEB_TYPE=ftps") + f"WEB_USER=u\nWEB_PASSWORD={SECRET}\n",
        "WEB_HOST",
        "required for TYPE=ftps",
    ),
    (
        "ftps-port.env",
        BASE.replace("WEB_TYPE=local", "WEB_TYPE=ftps")
        + f"WEB_HOST=h\nWEB_USER=u\nWEB_PASSWORD={SECRET}\nWEB_PORT=99999\n",
        "WEB_PORT",
        "port",
    ),
    (
        "ftps-fp.env",
        BASE.replace("WEB_TYPE=local", "WEB_TYPE=ftps")
        + f"WEB_HOST=h\nWEB_USER=u\nWEB_PASSWORD={SECRET}\nWEB_TLS_FINGERPRINT=AB:CD\n",
        "WEB_TLS_FINGERPRINT",
        "sha256:",
    ),
    (
        "sftp-hostkey.env",
        BASE.replace("WEB_TYPE=local", "WEB_TYPE=sftp")
        + f"WEB_HOST=h\nWEB_USER=u\nWEB_PASSWORD={SECRET}\n",
        "WEB_HOST_KEY",
        "required",
    ),
    (
        "bad-infisical.env",
        BASE.replace(f"REPO_PASSWORD={SECRET}", "REPO_PASSWORD=infisical:"),
        "REPO_PASSWORD",
        "infisical:NAME",
    ),
]


@pytest.mark.parametrize(("name", "text", "key", "words"), BROKEN, ids=[b[0] for b in BROKEN])
def test_each_broken_file_names_its_key(
    tmp_path: Path, name: str, text: str, key: str, words: str
) -> None:
    with pytest.raises(ConfigError) as err:
        load_customer(write(tmp_path, name, text))
    assert len(err.value.problems) == 1, err.value.problems
    problem = err.value.problems[0]
    assert problem.startswith(f"{tmp_path}/{name}: {key}: "), problem
    assert words in problem
    assert SECRET not in problem


def test_one_broken_file_never_hides_the_others(tmp_path: Path) -> None:
    for name, text, _key, _words in BROKEN:
        write(tmp_path, name, text)
    write(tmp_path, "good-one.env", BASE)
    write(tmp_path, "example.env.sample", "not even a dotenv file")
    customers = load_customers(tmp_path)
    assert [c.name for c in customers.valid] == ["good-one"]
    assert len(customers.problems) == len(BROKEN)
    assert "good-one" not in customers.invalid
    with pytest.raises(ConfigError) as err:
        customers.get("bad-cron")
    assert "SCHEDULE" in err.value.problems[0]


def test_ambiguous_resource_prefix_is_resolved_by_known_keys(tmp_path: Path) -> None:
    text = (
        BASE.replace("RESOURCES=web", "RESOURCES=web,web-tls")
        + "WEB_TLS_TYPE=local\nWEB_TLS_PATH=/x\n"
    )
    customer = load_customer(write(tmp_path, "acme.env", text))
    assert [r.path for r in customer.resources] == ["/srv/web", "/x"]


def test_s3_backend_refuses_customers_whose_bucket_name_is_invalid(tmp_path: Path) -> None:
    write(tmp_path, "acme.env", BASE)
    write(tmp_path, "a.b-c.env", BASE)  # a valid customer? no: '.' is not allowed
    fine = load_customers(tmp_path, bucket_prefix="backups-")
    assert [c.name for c in fine.valid] == ["acme"]
    reserved = load_customers(tmp_path, bucket_prefix="xn--")
    assert reserved.valid == ()
    assert any(
        "acme.env: file name: with UNSTOPPABLE_S3_BUCKET_PREFIX" in p and "reserves" in p
        for p in reserved.problems
    )
    too_long = load_customers(tmp_path, bucket_prefix="x" * 60)
    assert any("3-63 characters" in p for p in too_long.problems)
    assert too_long.valid == ()


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ("COLD_S3_ACCESS_KEY_ID=k\n", "COLD_S3_SECRET_ACCESS_KEY: required with the other"),
        ("COLD_S3_SECRET_ACCESS_KEY=s\n", "COLD_S3_ACCESS_KEY_ID: required with the other"),
        ('COLD_S3_ACCESS_KEY_ID="a b"\nCOLD_S3_SECRET_ACCESS_KEY=s\n', "no blanks"),
    ],
)
def test_half_a_customer_key_is_refused_by_name(tmp_path: Path, lines: str, message: str) -> None:
    source = tmp_path / "src"
    source.mkdir()
    path = tmp_path / "acme.env"
    path.write_text(
        f'SCHEDULE="0 3 * * *"\nREPO_PASSWORD=x\nRESOURCES=files\nFILES_TYPE=local\n'
        f"FILES_PATH={source}\n{lines}"
    )
    with pytest.raises(ConfigError) as caught:
        load_customer(path)
    assert message in str(caught.value)
    assert "=s" not in str(caught.value)


SFTP = (
    'SCHEDULE="0 * * * *"\nREPO_PASSWORD=pw\nRESOURCES=web\nWEB_TYPE=sftp\nWEB_HOST=example.com\n'
    "WEB_USER=u\nWEB_PASSWORD=p\nWEB_PATH=/\nWEB_HOST_KEY=ssh-ed25519 "
    "AAAAC3NzaC1lZDI1NTE5AAAAIHq3GP8gH2Pfbnx0Nfhu9g2oH6hH2cOTeUGDlS+Fyf9V\n"
)


def test_connections_default_to_eight_and_stay_within_one_to_32(tmp_path: Path) -> None:
    """CONNECTIONS bounds what a remote source's server sees at once (issue 22)."""
    assert load_customer(write(tmp_path, "acme.env", SFTP)).resources[0].source.CONNECTIONS == 8
    two = load_customer(write(tmp_path, "acme.env", SFTP + "WEB_CONNECTIONS=2\n"))
    assert two.resources[0].source.CONNECTIONS == 2
    for bad in ("0", "33", "-1", "four", "２", "8.0"):
        with pytest.raises(ConfigError) as err:
            load_customer(write(tmp_path, "acme.env", SFTP + f"WEB_CONNECTIONS={bad}\n"))
        assert err.value.problems == [
            f"{tmp_path}/acme.env: WEB_CONNECTIONS: must be a whole number, 1-32"
        ], bad
    with pytest.raises(ConfigError) as err:  # a local directory opens no connection
        load_customer(write(tmp_path, "acme.env", VALID + "WEBSITE_CONNECTIONS=4\n"))
    assert "WEBSITE_CONNECTIONS: not used by TYPE=local" in str(err.value)
