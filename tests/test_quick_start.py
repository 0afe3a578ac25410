"""The README's quick start, as root on a Debian 12 without sudo: nothing in it asks for one."""

import re
import subprocess

import pytest

from tests.conftest import ROOT

BASE_IMAGE = "unstoppable-base:bookworm"  # debootstrap's Debian 12: root, and no sudo


def quick_start() -> list[str]:
    """Return the command lines of the README's quick start block, comments dropped."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```sh\n(.*?)```", section, re.DOTALL)
    assert block, "the quick start has a shell block"
    return [line.split("  #")[0].strip() for line in block.group(1).splitlines() if line.strip()]


def test_the_quick_start_never_calls_sudo() -> None:
    lines = quick_start()
    assert any(line.startswith("make demo") for line in lines)
    assert not [line for line in lines if re.search(r"\bsudo\b", line)]
    for script in ("Makefile", "scripts/provision.sh", "scripts/demo.sh"):
        assert not re.search(r"^[^#]*\bsudo\b", (ROOT / script).read_text(), re.MULTILINE)


@pytest.mark.docker
def test_the_quick_start_runs_as_root_without_sudo_and_names_what_is_missing() -> None:
    """Its apt line, then `make demo`, in a fresh Debian 12 as root: make is found, no sudo is
    asked for, and the one thing this container lacks (Rust, which rustup would bring from
    the internet, unreachable here) is named with what to install."""
    found = subprocess.run(["docker", "image", "inspect", BASE_IMAGE], capture_output=True)
    assert found.returncode == 0, f"{BASE_IMAGE} is built by `make provision`"
    apt = next(line for line in quick_start() if line.startswith("apt-get"))
    script = f"""
set -u
command -v sudo && {{ echo 'this Debian has sudo: the test proves nothing'; exit 90; }}
{apt} >/tmp/apt.log 2>&1 || {{ tail -5 /tmp/apt.log; exit 91; }}
mkdir /tmp/unstoppable && cd /tmp/unstoppable
tar -C /checkout --exclude=./.venv --exclude=./.tools --exclude=./.git -cf - . | tar -xf -
export HOME=/root UNSTOPPABLE_TOOLS_CACHE=/tmp/no-cache
make demo
"""
    done = subprocess.run(
        ["docker", "run", "--rm", "-v", f"{ROOT}:/checkout:ro", BASE_IMAGE, "bash", "-c", script],
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    said = done.stdout + done.stderr
    assert done.returncode not in (90, 91), said
    assert "sudo" not in said, said
    assert "make: not found" not in said and "command not found" not in said, said
    assert "provision: cargo is needed to build rustic once" in said, said
    assert done.returncode != 0
