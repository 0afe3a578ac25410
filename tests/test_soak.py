"""The soak's short variant: two minutes of every fault at once, a fixed seed, every
invariant of bench/soak_checks.py held (`make soak` runs the long one)."""

import subprocess
import sys

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.docker
SEED = 4


def test_two_minutes_of_every_fault_at_once_keep_every_invariant() -> None:
    soak = subprocess.run(
        [sys.executable, "bench/soak.py", "--minutes", "2", "--seed", str(SEED)],
        cwd=ROOT, capture_output=True, text=True, timeout=1500,
    )  # fmt: skip
    table = soak.stdout
    assert "| invariant 4 accounted | holds |" in table, table + soak.stderr[-3000:]
    assert soak.returncode == 0, table + soak.stderr[-3000:]
    # Every kind was injected: a run where a fault never landed proves nothing about it.
    faults = [line for line in table.splitlines() if line.startswith("| fault `")]
    assert len(faults) == 12, table
    assert all(not line.endswith("| 0 |") for line in faults), table
