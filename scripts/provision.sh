#!/usr/bin/env bash
# Provision everything `make test` needs, idempotently; each step says what it does.
#
# Tools are built once into a cache outside the checkout (UNSTOPPABLE_TOOLS_CACHE,
# default ~/.cache/unstoppable-tools) and linked into .tools/bin, so a fresh clone
# re-links in seconds instead of rebuilding for half an hour.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
cache=${UNSTOPPABLE_TOOLS_CACHE:-${HOME:-/root}/.cache/unstoppable-tools}
RUSTIC_VERSION=0.11.4
# MinIO publishes no semver module versions; this pins the server of 2026-02-12 by commit.
MINIO_VERSION=v0.0.0-20260212201848-7aac2a2c5b7c
# The second S3 server the object-lock tests run against (issue 14): S3 in front of a directory.
VERSITYGW_VERSION=v1.8.0
BASE_IMAGE=${UNSTOPPABLE_BASE_IMAGE:-unstoppable-base:bookworm}
version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$here/pyproject.toml" | head -n1)
WORKER_IMAGE=${UNSTOPPABLE_WORKER_IMAGE:-unstoppable-worker:$version}

say() { printf '==> %s\n' "$*"; }
die() { printf 'provision: %s\n' "$*" >&2; exit 1; }

# Installed means dpkg's state "installed": a package removed with its configuration kept
# ("deinstall ok config-files") still answers `dpkg -s`, but its files are gone.
installed() { [ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null)" = installed ]; }

apt_install() {
    local missing=()
    for pkg in "$@"; do installed "$pkg" || missing+=("$pkg"); done
    [ ${#missing[@]} -eq 0 ] && return 0
    say "installing Debian packages: ${missing[*]}"
    [ "$(id -u)" -eq 0 ] || die "need root to install ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

docker_engine() {
    if docker info >/dev/null 2>&1; then say "docker engine: answering"; return; fi
    command -v dockerd >/dev/null 2>&1 || apt_install docker.io
    say "docker engine: starting dockerd"
    if [ -d /run/systemd/system ] && systemctl start docker 2>/dev/null; then :; else
        nohup dockerd >/var/log/unstoppable-dockerd.log 2>&1 &
    fi
    for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && return; sleep 1; done
    die "dockerd did not answer within 60 s (see /var/log/unstoppable-dockerd.log)"
}

# rustic from its published sources, with worker-image/rustic-patches/*.patch applied to its
# rustic_core (each patch names the upstream issue it works around). The patches are part of
# the cache key: changing one rebuilds; otherwise the cached binary is reused.
rustic_binary() {
    local patches="$here/worker-image/rustic-patches" key root src manifest core
    compgen -G "$patches/*.patch" >/dev/null || die "no rustic patches in $patches"
    key=$(cat "$patches"/*.patch | sha256sum | cut -c1-12)
    root="$cache/rustic-$RUSTIC_VERSION-$key"
    if [ ! -x "$root/bin/rustic" ]; then
        say "rustic $RUSTIC_VERSION: building once into $root (about 10 min on 2 cores; 1 min when $cache/cargo-target holds an earlier build)"
        command -v cargo >/dev/null 2>&1 || die "cargo is needed to build rustic once (Rust >= 1.91, e.g. from rustup)"
        command -v patch >/dev/null 2>&1 || apt_install patch
        src="$cache/rustic-src-$key"
        rm -rf "$src"
        mkdir -p "$src/fetch"
        # cargo fetches the published crates through whatever registry this host's cargo uses.
        printf '[package]\nname = "fetch"\nversion = "0.0.0"\nedition = "2021"\n[lib]\npath = "lib.rs"\n[dependencies]\nrustic-rs = { version = "=%s", default-features = false }\n' \
            "$RUSTIC_VERSION" >"$src/fetch/Cargo.toml"
        touch "$src/fetch/lib.rs"
        manifest=$(cargo metadata -q --format-version 1 --manifest-path "$src/fetch/Cargo.toml" | package_dir rustic-rs) \
            || die "cannot fetch rustic-rs $RUSTIC_VERSION with cargo"
        cp -r "$manifest" "$src/rustic-rs"
        # rustic_core as rustic's own Cargo.lock pins it.
        core=$(cargo metadata -q --locked --format-version 1 --manifest-path "$src/rustic-rs/Cargo.toml" | package_dir rustic_core) \
            || die "cannot fetch the rustic_core that rustic-rs $RUSTIC_VERSION locks"
        cp -r "$core" "$src/rustic_core"
        for p in "$patches"/*.patch; do
            patch -s -F0 -p1 -d "$src/rustic_core" <"$p" || die "$p does not apply to $(basename "$core")"
        done
        printf '\n[patch.crates-io]\nrustic_core = { path = "../rustic_core" }\n' >>"$src/rustic-rs/Cargo.toml"
        # Fat LTO with one codegen unit takes hours on 2 cores; thin settings cost a few
        # percent of speed and are the same binary for the product and for bench/.
        # The lock file moves rustic_core to the patched copy and nothing else; --locked then
        # holds every other crate at the version rustic's own Cargo.lock pins.
        (cd "$src/rustic-rs" && cargo update -q --offline -p rustic_core \
            && CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 \
            CARGO_TARGET_DIR="$cache/cargo-target" \
            cargo build -q --locked --release --no-default-features --bin rustic) \
            || die "building rustic failed"
        install -D -m 0755 "$cache/cargo-target/release/rustic" "$root/bin/rustic"
        rm -rf "$src"
    fi
    mkdir -p "$here/.tools/bin"
    ln -sfn "$root/bin/rustic" "$here/.tools/bin/rustic"
    say "rustic: $("$here/.tools/bin/rustic" --version) (patched: $(cd "$patches" && ls *.patch | tr '\n' ' '))"
}

# The directory of package $1 in `cargo metadata` JSON on stdin.
package_dir() {
    python3 -c 'import json, os, sys
name = sys.argv[1]
packages = json.load(sys.stdin)["packages"]
print(os.path.dirname(next(p["manifest_path"] for p in packages if p["name"] == name)))' "$1"
}

minio_binary() {
    local root="$cache/minio-$(echo "$MINIO_VERSION" | cut -d- -f2)"
    if [ ! -x "$root/bin/minio" ]; then
        say "minio $MINIO_VERSION: building once into $root (a few minutes)"
        command -v go >/dev/null 2>&1 || die "go is needed to build MinIO once (Go >= 1.24; Debian's is too old)"
        GOBIN="$root/bin" GOFLAGS=-trimpath go install "github.com/minio/minio@$MINIO_VERSION"
    fi
    mkdir -p "$here/.tools/bin"
    ln -sfn "$root/bin/minio" "$here/.tools/bin/minio"
    say "minio: $("$here/.tools/bin/minio" --version | head -n1)"
}

versitygw_binary() {
    local root="$cache/versitygw-${VERSITYGW_VERSION#v}"
    if [ ! -x "$root/bin/versitygw" ]; then
        say "versitygw $VERSITYGW_VERSION: building once into $root (a few minutes)"
        command -v go >/dev/null 2>&1 || die "go is needed to build versitygw once (Go >= 1.24; Debian's is too old)"
        GOBIN="$root/bin" GOFLAGS=-trimpath \
            go install "github.com/versity/versitygw/cmd/versitygw@$VERSITYGW_VERSION"
    fi
    mkdir -p "$here/.tools/bin"
    ln -sfn "$root/bin/versitygw" "$here/.tools/bin/versitygw"
    say "versitygw: $VERSITYGW_VERSION at $root"  # go install leaves --version saying "git"
}

# Print the first URI in the apt sources under directory $1 (sources.list, then sources.list.d
# in apt's order; one-line .list and deb822 .sources files) that serves the Debian suite
# "bookworm" (not -updates or -security) with component main; fail if there is none. The host's
# own mirror is the one it is known to reach: nothing here names a mirror of its own.
debian_mirror() {
    local apt=$1 files=() f
    [ -f "$apt/sources.list" ] && files+=("$apt/sources.list")
    for f in "$apt"/sources.list.d/*; do
        case $f in *.list | *.sources) [ -f "$f" ] && files+=("$f") ;; esac
    done
    [ ${#files[@]} -gt 0 ] || return 1
    awk '
        function has(list, word,   n, i, w) {
            n = split(list, w, /[ \t]+/)
            for (i = 1; i <= n; i++) if (w[i] == word) return 1
            return 0
        }
        function usable(uri) { return uri ~ /^(https?|file):\// }
        function pick(uri) { print uri; found = 1; exit }
        function stanza(   n, i, u) {
            if (has(types, "deb") && tolower(enabled) != "no" && has(suites, "bookworm") && has(components, "main")) {
                n = split(uris, u, /[ \t]+/)
                for (i = 1; i <= n; i++) if (usable(u[i])) pick(u[i])
            }
            types = uris = suites = components = key = ""; enabled = "yes"
        }
        FNR == 1 { if (deb822) stanza(); deb822 = FILENAME ~ /\.sources$/ }
        deb822 && /^#/ { next }
        deb822 && /^[ \t]*$/ { stanza(); next }
        deb822 {
            value = $0
            if ($0 !~ /^[ \t]/) {
                key = tolower(substr($0, 1, index($0, ":") - 1))
                value = substr($0, index($0, ":") + 1)
            }
            if (key == "types") types = types " " value
            else if (key == "uris") uris = uris " " value
            else if (key == "suites") suites = suites " " value
            else if (key == "components") components = components " " value
            else if (key == "enabled") { enabled = value; gsub(/[ \t]/, "", enabled) }
            next
        }
        {
            line = $0
            sub(/#.*/, "", line)
            gsub(/\[[^]]*\]/, " ", line)
            $0 = line
            if ($1 == "deb" && $3 == "bookworm" && usable($2))
                for (i = 4; i <= NF; i++) if ($i == "main") pick($2)
        }
        END {
            if (!found && deb822) stanza()
            if (!found) exit 1
        }
    ' "${files[@]}"
}

base_image() {
    if docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then say "base image $BASE_IMAGE: present"; return; fi
    if docker pull -q debian:bookworm-slim >/dev/null 2>&1; then
        docker tag debian:bookworm-slim "$BASE_IMAGE"; say "base image: pulled debian:bookworm-slim"; return
    fi
    say "base image: no registry, building $BASE_IMAGE with debootstrap"
    local root="$cache/bookworm-rootfs" mirror
    mirror=$(debian_mirror /etc/apt) \
        || die "no apt source of this host serves Debian bookworm main (looked in /etc/apt/sources.list, sources.list.d/*.list and *.sources): add one, then run me again"
    apt_install debootstrap
    rm -rf "$root"
    say "base image: debootstrap from $mirror (this host's apt source)"
    debootstrap --variant=minbase bookworm "$root" "$mirror" >"$cache/debootstrap.log" 2>&1 \
        || die "debootstrap failed, see $cache/debootstrap.log"
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
    tar -C "$root" -c . | docker import - "$BASE_IMAGE" >/dev/null
    rm -rf "$root"
}

worker_image() {
    local ctx="$here/worker-image" stamp
    install -m 0755 "$(readlink -f "$here/.tools/bin/rustic")" "$ctx/dist/rustic"
    stamp=$(cat "$ctx"/Dockerfile "$ctx"/unstoppable-* "$ctx"/exit-codes "$ctx"/dist/* | sha256sum | cut -c1-16)
    if [ "$(docker image inspect -f '{{index .Config.Labels "unstoppable.inputs"}}' "$WORKER_IMAGE" 2>/dev/null)" = "$stamp" ]; then
        say "worker image $WORKER_IMAGE: up to date"; return
    fi
    say "worker image: building $WORKER_IMAGE"
    docker build -q -t "$WORKER_IMAGE" --label "unstoppable.inputs=$stamp" \
        --build-arg BASE_IMAGE="$BASE_IMAGE" --build-arg RUSTIC_SOURCE=context "$ctx" >/dev/null
}

python_env() {
    local stamp
    stamp=$(sha256sum "$here/pyproject.toml" | cut -c1-16)
    if [ -x "$here/.venv/bin/unstoppable" ] && [ "$(cat "$here/.venv/.stamp" 2>/dev/null)" = "$stamp" ]; then
        say ".venv: up to date"; return
    fi
    say ".venv: installing the project with its dev tools"
    # Debian's python3 makes no virtual environment without python3-venv (ensurepip).
    python3 -c 'import ensurepip' 2>/dev/null || apt_install python3-venv
    python3 -m venv "$here/.venv"
    "$here/.venv/bin/pip" install -q --upgrade pip
    "$here/.venv/bin/pip" install -q -e "$here[dev]"
    echo "$stamp" >"$here/.venv/.stamp"
}

host_tools() {
    # Real parts the tests run against: systemd-analyze verifies the unit; promtool, Prometheus
    # and Alertmanager check and fire the shipped alert rules; rclone is bench/'s baseline;
    # restic checks the cold repository independently; openssl and ssh-keygen make the test
    # servers' keys. vsftpd, sshd and MinIO run in containers (tests/images/), not here.
    command -v systemd-analyze >/dev/null 2>&1 || apt_install systemd
    # apparmor_parser compiles the worker's AppArmor profile in the tests (never loads it).
    apt_install prometheus prometheus-alertmanager openssh-client openssl rclone restic apparmor
    # Headless Chromium opens the status pages as a customer's browser would (and takes the
    # screenshot in docs/).
    apt_install chromium fonts-dejavu-core
    # The tests start their own instances on free loopback ports, beside any packaged ones.
    say "host tools: systemd-analyze, promtool, prometheus, alertmanager, ssh-keygen, rclone, restic, apparmor_parser, chromium"
}

mkdir -p "$cache"
steps=${*:-host docker rustic minio versitygw base worker venv}
for step in $steps; do
    case $step in
        host) host_tools ;;
        docker) docker_engine ;;
        rustic) rustic_binary ;;
        minio) minio_binary ;;
        versitygw) versitygw_binary ;;
        base) base_image ;;
        worker) worker_image ;;
        venv) python_env ;;
        *) die "unknown step $step" ;;
    esac
done
