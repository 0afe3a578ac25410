"""A strict reader for `.env` files: `KEY=value` lines, quotes, comments; nothing expanded."""

import re
from pathlib import Path

from orchestrator.errors import ConfigError

_LINE = re.compile(r"^(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)$")


def parse_dotenv(path: Path) -> dict[str, tuple[str, int]]:
    """Return {KEY: (value, line number)} for the file at `path`.

    Values are never expanded (`$` is literal). Raises ConfigError listing every
    malformed line, duplicate key or unreadable file, without printing a value.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"{path}: cannot read: {type(exc).__name__}: {_reason(exc)}"]) from None
    values: dict[str, tuple[str, int]] = {}
    problems: list[str] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _LINE.match(line)
        if not match:
            problems.append(f"{path}: line {number}: expected KEY=value")
            continue
        key, rest = match.groups()
        try:
            value = _unquote(rest)
        except ValueError as exc:
            problems.append(f"{path}: {key}: {exc} (line {number})")
            continue
        if key in values:
            problems.append(f"{path}: {key}: set twice (lines {values[key][1]} and {number})")
            continue
        values[key] = (value, number)
    if problems:
        raise ConfigError(problems)
    return values


def _unquote(rest: str) -> str:
    if rest[:1] in ('"', "'"):
        quote = rest[0]
        out, i = [], 1
        while i < len(rest):
            char = rest[i]
            if char == "\\" and quote == '"' and i + 1 < len(rest):
                out.append(rest[i + 1])
                i += 2
                continue
            if char == quote:
                tail = rest[i + 1 :].strip()
                if tail and not tail.startswith("#"):
                    raise ValueError("text after the closing quote")
                return "".join(out)
            out.append(char)
            i += 1
        raise ValueError("unterminated quote")
    # An unquoted value ends at a comment that follows whitespace.
    return re.split(r"\s+#", rest, maxsplit=1)[0].strip()


def _reason(exc: Exception) -> str:
    return exc.strerror if isinstance(exc, OSError) and exc.strerror else "not UTF-8 text"
