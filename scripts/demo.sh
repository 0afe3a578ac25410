#!/usr/bin/env bash
# The main job on the embedded default: back up a sample directory on this server into a
# local hot + cold repository through a rustic worker container, then list the snapshot.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
demo=${UNSTOPPABLE_DEMO_DIR:-/var/tmp/unstoppable-demo}

export UNSTOPPABLE_CONFIG="$demo/unstoppable.env"
export UNSTOPPABLE_CUSTOMERS_DIR="$demo/customers.d"
export UNSTOPPABLE_DATA_DIR="$demo/data"
# The demo's sample lies outside /srv/<customer>, the default root of local sources.
export UNSTOPPABLE_SOURCE_ROOTS="$demo/sample"
mkdir -p "$UNSTOPPABLE_CUSTOMERS_DIR" "$demo/sample/docs" "$demo/sample/empty"
touch "$UNSTOPPABLE_CONFIG"
[ -f "$demo/sample/docs/readme.txt" ] || {
    echo "a sample file, backed up by unstoppable" >"$demo/sample/docs/readme.txt"
    head -c 5000000 /dev/urandom >"$demo/sample/random.bin"
    ln -sf docs/readme.txt "$demo/sample/link"
}
customer="$UNSTOPPABLE_CUSTOMERS_DIR/demo.env"
if [ ! -f "$customer" ]; then
    umask 077
    cat >"$customer" <<ENV
SCHEDULE="0 * * * *"
REPO_PASSWORD=$(head -c 24 /dev/urandom | base64 | tr -d '/+=')
KEEP_LAST=10
RESOURCES=sample
SAMPLE_TYPE=local
SAMPLE_PATH=$demo/sample
ENV
fi
cli="$here/.venv/bin/unstoppable"
echo "==> customer file $customer"
"$cli" validate
"$cli" jobs
echo "==> unstoppable backup demo"
"$cli" backup demo
echo "==> unstoppable snapshots demo sample"
"$cli" snapshots demo sample
echo "==> hot repo (metadata): $UNSTOPPABLE_DATA_DIR/hot/demo/sample ($(du -sh "$UNSTOPPABLE_DATA_DIR/hot/demo/sample" | cut -f1))"
echo "==> cold repo (all data): $UNSTOPPABLE_DATA_DIR/cold/demo/sample ($(du -sh "$UNSTOPPABLE_DATA_DIR/cold/demo/sample" | cut -f1))"
echo "Restore it with: UNSTOPPABLE_CONFIG=$UNSTOPPABLE_CONFIG UNSTOPPABLE_CUSTOMERS_DIR=$UNSTOPPABLE_CUSTOMERS_DIR UNSTOPPABLE_DATA_DIR=$UNSTOPPABLE_DATA_DIR UNSTOPPABLE_SOURCE_ROOTS=$UNSTOPPABLE_SOURCE_ROOTS $cli restore demo sample --target /tmp/demo-restore"
