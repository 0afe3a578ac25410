"""What this host's AppArmor allows a worker: read from the kernel's own files."""

from pathlib import Path

ENABLED = Path("/sys/module/apparmor/parameters/enabled")

PROFILES = Path("/sys/kernel/security/apparmor/profiles")


def enabled() -> bool:
    """Return whether AppArmor is enabled in this kernel."""
    try:
        return ENABLED.read_text().strip().upper().startswith("Y")
    except OSError:
        return False


def loaded_profiles() -> frozenset[str]:
    """Return the names of the loaded profiles (readable by root only), or none."""
    try:
        lines = PROFILES.read_text().splitlines()
    except OSError:
        return frozenset()
    return frozenset(line.rsplit(" (", 1)[0] for line in lines if line.strip())


MOUNT_HINT = (
    "the FUSE mount of the source was refused; on a host with AppArmor, load the "
    "unstoppable-worker profile (install.sh does: apparmor_parser -r "
    "/etc/apparmor.d/unstoppable-worker)"
)
