#!/usr/bin/env bash
# Install (or upgrade in place) the unstoppable backup orchestrator on this server.
#
#   From a checkout:  sudo ./install.sh          (installs the checkout this file is in)
#   As one line:      curl -fsSL https://<your host>/install.sh \
#                         | sudo UNSTOPPABLE_SOURCE=https://<your host>/unstoppable.tar.gz bash
#                     (a piped script installs that tarball only, never the current directory)
#   Remove:           sudo ./install.sh --uninstall   (keeps /etc/unstoppable and the data)
#
# Environment: UNSTOPPABLE_SOURCE (tarball URL when not run from a checkout),
# UNSTOPPABLE_SOURCE_SHA256 (the tarball's sha256: any other tarball is refused),
# UNSTOPPABLE_DATA_DIR (written into a new /etc/unstoppable/unstoppable.env),
# RUSTIC_SHA256 (to build the worker image from the official rustic release).
set -euo pipefail

PREFIX=/opt/unstoppable
ETC=/etc/unstoppable
UNIT=/etc/systemd/system/unstoppable.service
DROPIN=/etc/systemd/system/unstoppable.service.d
SOCKET=/etc/systemd/system/unstoppable-metrics.socket
SOCKET_DROPIN=/etc/systemd/system/unstoppable-metrics.socket.d
DEFAULT_METRICS=127.0.0.1:9819
APPARMOR_ENABLED=/sys/module/apparmor/parameters/enabled
APPARMOR_DIR=/etc/apparmor.d
APPARMOR_PROFILES=/sys/kernel/security/apparmor/profiles

say() { printf '==> %s\n' "$*"; }
die() { printf 'install.sh: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "run me as root (sudo ./install.sh)"

uninstall() {
    say "stopping and removing the service"
    systemctl disable --now unstoppable unstoppable-metrics.socket >/dev/null 2>&1 || true
    rm -f "$UNIT" "$SOCKET" /usr/local/bin/unstoppable
    rm -rf "$DROPIN" "$SOCKET_DROPIN" "$PREFIX"
    systemctl daemon-reload 2>/dev/null || true
    if [ -f "$APPARMOR_DIR/unstoppable-worker" ]; then
        # Not unloaded: a worker still running would become unconfined, not docker-default.
        rm -f "$APPARMOR_DIR/unstoppable-worker"
        say "removed $APPARMOR_DIR/unstoppable-worker (the loaded profile stays until reboot)"
    fi
    say "kept $ETC (configuration) and the data directory (repositories, ledger)"
    echo "Uninstalled. Reinstall with ./install.sh; your customers and backups are still there."
    exit 0
}
[ "${1:-}" = "--uninstall" ] && uninstall
[ $# -eq 0 ] || die "unknown argument $1 (use --uninstall or nothing)"

# --- what this server is -------------------------------------------------------------------
[ -r /etc/os-release ] || die "cannot tell which OS this is (/etc/os-release missing)"
. /etc/os-release
case "${ID:-}:${VERSION_ID:-}" in
    debian:12 | ubuntu:24.04) say "supported OS: $PRETTY_NAME" ;;
    *) die "unsupported OS ${PRETTY_NAME:-unknown}: Debian 12 and Ubuntu 24.04 are supported" ;;
esac
[ -d /run/systemd/system ] || die "systemd is not running: the service needs it"

# Installed means dpkg's state "installed": a package removed with its configuration kept
# ("deinstall ok config-files") still answers `dpkg -s`, but its files are gone.
installed() { [ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null)" = installed ]; }

apt_install() {
    local missing=()
    for pkg in "$@"; do installed "$pkg" || missing+=("$pkg"); done
    [ ${#missing[@]} -eq 0 ] && return 0
    say "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# Load the remote workers' AppArmor profile ($1) where AppArmor is on: Docker's docker-default
# denies every mount, so rclone's FUSE mount inside a remote worker needs this profile there.
apparmor_profile() {
    local profile=$1 target=$APPARMOR_DIR/unstoppable-worker
    if [ "$(cat "$APPARMOR_ENABLED" 2>/dev/null)" != Y ]; then
        say "AppArmor: not enabled on this host, no profile to load"
        return 0
    fi
    [ -f "$profile" ] || die "AppArmor is enabled but this source has no $profile"
    command -v apparmor_parser >/dev/null 2>&1 || apt_install apparmor
    if cmp -s "$profile" "$target" && grep -qs '^unstoppable-worker ' "$APPARMOR_PROFILES"; then
        say "AppArmor: profile unstoppable-worker already loaded"
        return 0
    fi
    install -d -m 0755 "$APPARMOR_DIR"
    install -m 0644 "$profile" "$target"
    apparmor_parser -r -W "$target" || die "AppArmor: apparmor_parser could not load $target"
    say "AppArmor: loaded profile unstoppable-worker ($target) for the FUSE mount of remote workers"
}

metrics_port_taken() {
    die "cannot listen on $1 for /metrics (UNSTOPPABLE_METRICS_LISTEN): another process holds it (ss -ltnp 'sport = :${1##*:}'); journalctl -u unstoppable-metrics.socket"
}

docker_answers() {
    if command -v docker >/dev/null 2>&1; then docker info >/dev/null 2>&1; return; fi
    [ -S /var/run/docker.sock ] && curl -fsS --unix-socket /var/run/docker.sock http://docker/_ping >/dev/null 2>&1
}

# --- the source, fetched and verified before anything is installed ----------------------------
# A checkout is the directory of this script when it runs as a file next to pyproject.toml and
# orchestrator/. A script piped into bash has no file (BASH_SOURCE is empty), and the directory
# it happens to run in is never looked at: a piped install only ever installs UNSTOPPABLE_SOURCE.
checkout=
if [ -f "${BASH_SOURCE[0]:-}" ]; then
    here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
    if [ -f "$here/pyproject.toml" ] && [ -d "$here/orchestrator" ]; then checkout=$here; fi
fi
if [ -n "$checkout" ]; then
    src=$checkout
    say "source: the checkout $src"
    [ -z "${UNSTOPPABLE_SOURCE:-}" ] || say "ignoring UNSTOPPABLE_SOURCE: run from a checkout, which is installed"
else
    [ -n "${UNSTOPPABLE_SOURCE:-}" ] || die "not run from a checkout: set UNSTOPPABLE_SOURCE to the source tarball URL"
    want=$(printf '%s' "${UNSTOPPABLE_SOURCE_SHA256:-}" | tr 'A-F' 'a-f')
    [[ -z "$want" || "$want" =~ ^[0-9a-f]{64}$ ]] \
        || die "UNSTOPPABLE_SOURCE_SHA256 must be 64 hex digits (the sha256sum of the tarball); nothing was installed"
    command -v curl >/dev/null 2>&1 || apt_install curl ca-certificates
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    say "fetching $UNSTOPPABLE_SOURCE"
    curl -fsSL -o "$work/source.tar.gz" "$UNSTOPPABLE_SOURCE" || die "cannot fetch $UNSTOPPABLE_SOURCE"
    got=$(sha256sum "$work/source.tar.gz" | cut -d' ' -f1)
    if [ -n "$want" ] && [ "$got" != "$want" ]; then
        die "$UNSTOPPABLE_SOURCE has sha256 $got, not UNSTOPPABLE_SOURCE_SHA256=$want: refused, nothing was installed"
    fi
    say "source sha256 $got${want:+ (verified)}"
    src=$work/src
    mkdir "$src"
    tar -xzf "$work/source.tar.gz" -C "$src" --strip-components=1 || die "cannot unpack $UNSTOPPABLE_SOURCE"
    [ -f "$src/pyproject.toml" ] && [ -d "$src/orchestrator" ] \
        || die "$UNSTOPPABLE_SOURCE is not an unstoppable source tarball (no pyproject.toml and orchestrator/ in it)"
fi
version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$src/pyproject.toml" | head -n1)

# --- Docker ----------------------------------------------------------------------------------
apt_install python3 python3-venv curl ca-certificates
if docker_answers; then
    say "Docker engine: answering"
else
    apt_install docker.io
    systemctl enable --now docker >/dev/null 2>&1 || true
    for _ in $(seq 1 30); do docker_answers && break; sleep 1; done
    docker_answers || die "Docker is installed but not reachable at /var/run/docker.sock: check 'systemctl status docker'"
    say "Docker engine: installed and started"
fi
apparmor_profile "$src/worker-image/apparmor/unstoppable-worker"

# --- the orchestrator ------------------------------------------------------------------------
[ -x "$PREFIX/venv/bin/python" ] || python3 -m venv "$PREFIX/venv"
say "installing unstoppable-backups $version into $PREFIX/venv"
"$PREFIX/venv/bin/pip" install -q --upgrade pip >/dev/null
"$PREFIX/venv/bin/pip" install -q --upgrade "$src" >/dev/null
ln -sfn "$PREFIX/venv/bin/unstoppable" /usr/local/bin/unstoppable
install -d -m 0755 "$PREFIX/share"
cp "$src/README.md" "$PREFIX/README.md"
cp -r "$src/monitoring" "$src/docs" "$PREFIX/share/" 2>/dev/null || true

# --- configuration, never overwritten --------------------------------------------------------
install -d -m 0750 "$ETC" "$ETC/customers.d"
# A customer's KEY_FILE and TLS_CA_FILE live in keys/<customer>/ and nowhere else; local
# sources under /srv/<customer>/ (UNSTOPPABLE_SOURCE_ROOTS, README "Confinement").
install -d -m 0700 "$ETC/keys"
if [ ! -f "$ETC/unstoppable.env" ]; then
    say "writing $ETC/unstoppable.env"
    umask 077
    {
        echo "# Settings of the unstoppable daemon; see $PREFIX/README.md. UNSTOPPABLE_* variables override."
        echo "UNSTOPPABLE_DATA_DIR=${UNSTOPPABLE_DATA_DIR:-/var/lib/unstoppable}"
        echo "UNSTOPPABLE_WORKER_IMAGE=unstoppable-worker:$version"
    } >"$ETC/unstoppable.env"
    umask 022
else
    say "keeping $ETC/unstoppable.env"
fi
cp "$src/customers.d/example.env.sample" "$ETC/customers.d/example.env.sample"
data_dir=$(sed -n 's/^UNSTOPPABLE_DATA_DIR=//p' "$ETC/unstoppable.env" | tail -n1)
data_dir=${data_dir:-/var/lib/unstoppable}
install -d -m 0700 "$data_dir"
image=$(sed -n 's/^UNSTOPPABLE_WORKER_IMAGE=//p' "$ETC/unstoppable.env" | tail -n1)
image=${image:-unstoppable-worker:$version}

# --- the worker image ------------------------------------------------------------------------
if "$PREFIX/venv/bin/python" - "$image" <<'PY'
import sys, docker
try:
    docker.from_env().images.get(sys.argv[1])
except docker.errors.ImageNotFound:
    sys.exit(1)
PY
then
    say "worker image $image: present"
else
    command -v docker >/dev/null 2>&1 || apt_install docker.io
    [ -n "${RUSTIC_SHA256:-}" ] || die "worker image $image missing: set RUSTIC_SHA256 to the sha256 of the official rustic release tarball so it can be built and verified"
    say "building worker image $image"
    docker build -q -t "$image" --build-arg RUSTIC_SHA256="$RUSTIC_SHA256" "$src/worker-image" >/dev/null
fi

# --- the receipt key -------------------------------------------------------------------------
# Made now, not at the first receipt: its public half can be handed to customers from day one.
# An existing key is kept (a new one would break every customer's chain). Read with the
# settings file alone, as the service reads it (this script's own UNSTOPPABLE_SOURCE is none).
if env -i PATH="$PATH" "$PREFIX/venv/bin/unstoppable" receipts pubkey >"$ETC/receipt-key.pub.new"; then
    mv "$ETC/receipt-key.pub.new" "$ETC/receipt-key.pub"
    say "receipt key: hand customers $ETC/receipt-key.pub; back up $data_dir/state/receipt.key"
else
    rm -f "$ETC/receipt-key.pub.new"
    say "receipt key: not made now (see above); the daemon makes it with the first receipt"
fi

# --- the service -----------------------------------------------------------------------------
changed=0
if ! cmp -s "$src/systemd/unstoppable.service" "$UNIT"; then
    install -m 0644 "$src/systemd/unstoppable.service" "$UNIT"
    changed=1
fi
if [ "$data_dir" != /var/lib/unstoppable ]; then
    install -d "$DROPIN"
    printf '[Service]\nReadWritePaths=%s\n' "$data_dir" >"$DROPIN/data-dir.conf.new"
    if ! cmp -s "$DROPIN/data-dir.conf.new" "$DROPIN/data-dir.conf"; then
        mv "$DROPIN/data-dir.conf.new" "$DROPIN/data-dir.conf"
        changed=1
    else
        rm -f "$DROPIN/data-dir.conf.new"
    fi
fi
# The metrics port is the socket unit's: systemd holds it across the daemon's restarts.
socket_changed=0
if ! cmp -s "$src/systemd/unstoppable-metrics.socket" "$SOCKET"; then
    install -m 0644 "$src/systemd/unstoppable-metrics.socket" "$SOCKET"
    socket_changed=1
fi
listen=$(sed -n 's/^UNSTOPPABLE_METRICS_LISTEN=//p' "$ETC/unstoppable.env" | tail -n1)
listen=${listen:-$DEFAULT_METRICS}
if [ "$listen" != "$DEFAULT_METRICS" ]; then
    install -d "$SOCKET_DROPIN"
    printf '[Socket]\nListenStream=\nListenStream=%s\n' "$listen" >"$SOCKET_DROPIN/listen.conf.new"
    if ! cmp -s "$SOCKET_DROPIN/listen.conf.new" "$SOCKET_DROPIN/listen.conf"; then
        mv "$SOCKET_DROPIN/listen.conf.new" "$SOCKET_DROPIN/listen.conf"
        socket_changed=1
    else
        rm -f "$SOCKET_DROPIN/listen.conf.new"
    fi
elif [ -e "$SOCKET_DROPIN/listen.conf" ]; then
    rm -f "$SOCKET_DROPIN/listen.conf"
    socket_changed=1
fi
systemctl daemon-reload
systemctl enable unstoppable-metrics.socket unstoppable >/dev/null 2>&1
upgrade=0
if systemctl is-active --quiet unstoppable; then
    # An upgrade: running workers are left alone and adopted by the restarted daemon. It is
    # stopped first: a daemon from before the socket unit holds the port itself.
    upgrade=1
    systemctl stop unstoppable
fi
if [ "$socket_changed" -eq 1 ]; then
    systemctl restart unstoppable-metrics.socket || metrics_port_taken "$listen"
else
    systemctl start unstoppable-metrics.socket || metrics_port_taken "$listen"
fi
systemctl start unstoppable
if [ "$upgrade" -eq 1 ]; then say "service restarted with $version"; else say "service started"; fi
[ "$changed" -eq 0 ] || say "service unit updated"
for _ in $(seq 1 20); do systemctl is-active --quiet unstoppable && break; sleep 0.5; done
systemctl is-active --quiet unstoppable || die "the service did not start: journalctl -u unstoppable -n 50"

echo "Done. Next: copy $ETC/customers.d/example.env.sample to $ETC/customers.d/<customer>.env, edit it, run 'unstoppable validate'; the daemon picks it up within seconds."
