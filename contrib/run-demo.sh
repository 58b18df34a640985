#!/bin/bash
# `make run`: vkc-core supervising the mock provider, in the foreground.
# Ctrl-C stops both. The Kubernetes side (a local control plane the node
# registers with) joins this script with the node milestone.
set -euo pipefail

build=${1:-build}
dir=$(mktemp -d /tmp/vkc-demo.XXXXXX)
trap 'rm -rf "$dir"' EXIT

cat <<MSG
vkc demo: vkc-core with the mock provider (sockets in $dir).
Try, in another terminal:
  kill -9 \$(pgrep -f vkc-provider-mock)   # the core restarts it
Ctrl-C stops the demo.
MSG

"$build/bin/vkc-core" --nodename vkc-demo --socket-dir "$dir/run" \
    --provider-cmd "$build/bin/vkc-provider-mock" &
core=$!
trap 'kill -TERM $core 2>/dev/null; wait $core; rm -rf "$dir"' INT TERM EXIT
wait $core
