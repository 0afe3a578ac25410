"""The .env reader: python-dotenv's parser with our rules on top, and line numbers that hold."""

from pathlib import Path

import pytest

from orchestrator.config.files import MAX_BLANKS, parse_text
from orchestrator.errors import ConfigError

FILE = Path("/c/acme.env")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("A=plain\n", {"A": ("plain", 1)}),
        ("export A=1\n", {"A": ("1", 1)}),
        ("A = spaced value  # a comment\n", {"A": ("spaced value", 1)}),
        ("A=x#not-a-comment\n", {"A": ("x#not-a-comment", 1)}),
        ('A="quoted # kept"\n', {"A": ("quoted # kept", 1)}),
        ('A="say \\"hi\\""\n', {"A": ('say "hi"', 1)}),
        ("A='single \\' quote'\n", {"A": ("single ' quote", 1)}),
        ("A=${HOME}\n", {"A": ("${HOME}", 1)}),  # never expanded
        ("A=\n", {"A": ("", 1)}),
        ("A=1\r\nB=2\r\n", {"A": ("1", 1), "B": ("2", 2)}),
        ("# c\n\n  # c\nA=1\n\nB=2\n", {"A": ("1", 4), "B": ("2", 6)}),
    ],
)
def test_values_read_as_written(text: str, expected: dict[str, tuple[str, int]]) -> None:
    assert parse_text(FILE, text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        # A backslash escape that makes a line break must not become a different secret.
        ('A="line1\\nline2"\n', "/c/acme.env: A: contains a control character (line 1)"),
        ("# c\nA=1\nA=2\n", "/c/acme.env: A: set twice (lines 2 and 3)"),
        ("# c\n\nA\n", "/c/acme.env: line 3: expected KEY=value"),
        ("1A=x\n", "/c/acme.env: line 1: expected KEY=value"),
        ('# c\nA="open\n', "/c/acme.env: A: a quote is not closed, or text follows it (line 2)"),
        ('A="x" junk\n', "/c/acme.env: A: a quote is not closed, or text follows it (line 1)"),
        ("A=1\x00\n", "/c/acme.env: A: contains a control character (line 1)"),
        (
            "B=1\nA=x" + " " * (MAX_BLANKS + 1) + "y\n",
            f"/c/acme.env: line 2: more than {MAX_BLANKS} blanks in a row",
        ),
    ],
)
def test_each_problem_names_key_or_line_and_never_the_value(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_text(FILE, text)
    assert caught.value.problems[0] == message
    for secret in ("line1", "open", "junk"):
        assert secret not in str(caught.value)


def test_every_bad_line_is_reported_at_once() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_text(FILE, "A\nB=1\nB=2\n3C=x\n")
    assert len(caught.value.problems) == 3
