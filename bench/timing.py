"""What every bench run shares: a timed command that must do its work, or the bench stops."""

import subprocess
import time


class Broken(Exception):
    """A run that did not do its work: its numbers mean nothing, and no ratio is printed."""


def timed(argv: list[str], env: dict[str, str] | None = None) -> tuple[float, str]:
    """Run `argv`; return its wall time and stdout, or raise Broken if it exited non-zero."""
    start = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, env=env)
    took = time.perf_counter() - start
    if done.returncode != 0:
        raise Broken(f"{' '.join(argv[:4])} exited {done.returncode}: {done.stderr[-1500:]}")
    return took, done.stdout
