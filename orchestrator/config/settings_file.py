"""Loading the settings: `UNSTOPPABLE_*` variables over the file named by `UNSTOPPABLE_CONFIG`."""

import os
from pathlib import Path

from pydantic import ValidationError

from orchestrator.config.settings import DEFAULT_CONFIG, Settings
from orchestrator.errors import ConfigError


def load_settings(environ: dict[str, str] | None = None) -> Settings:
    """Load the settings from `environ` (default: the process) and its config file.

    Raises ConfigError naming the file and key of every problem.
    """
    env = dict(os.environ if environ is None else environ)
    path = Path(env.get("UNSTOPPABLE_CONFIG", str(DEFAULT_CONFIG)))
    source = str(path) if path.is_file() else "environment"
    overrides = {
        k: v for k, v in env.items() if k.startswith("UNSTOPPABLE_") and k != "UNSTOPPABLE_CONFIG"
    }
    try:
        file_values = _read_global_file(path) if path.is_file() else {}
        merged = {**file_values, **overrides}
        unknown = sorted(
            k for k in merged if k.removeprefix("UNSTOPPABLE_") not in Settings.model_fields
        )
        if unknown:
            raise ConfigError([f"{source}: {k}: unknown setting" for k in unknown])
        values = {k.removeprefix("UNSTOPPABLE_"): v for k, v in merged.items()}
        return Settings.model_validate(values)
    except ValidationError as exc:
        problems = []
        for e in exc.errors():
            # A rule across keys (the S3 settings) has no location: it is about the backend.
            key = ".".join(map(str, e["loc"])) or "COLD_BACKEND"
            problems.append(
                f"{source}: UNSTOPPABLE_{key}: {e['msg'].removeprefix('Value error, ')}"
            )
        raise ConfigError(problems) from None


def _read_global_file(path: Path) -> dict[str, str]:
    from orchestrator.config.files import parse_dotenv

    return {key: value for key, (value, _line) in parse_dotenv(path).items()}
