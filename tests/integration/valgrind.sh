#!/bin/bash
# The daemons' start, serve and stop paths under valgrind: vkc-core as a
# node of the shared test cluster ($VKC_CLUSTER_DIR) with the mock provider,
# both under memcheck. A pod runs, its logs are read through the kubelet
# API, the provider is SIGKILLed and restarted, then SIGTERM stops all.
# Fails on any memcheck error or definite leak in either process.
#   tests/integration/valgrind.sh BIN_DIR
set -euo pipefail

bin=${1:-build/bin}
# shellcheck source=tests/integration/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
: "${VKC_CLUSTER_DIR:?needs a running test cluster (tests/cluster/up.sh)}"
# shellcheck disable=SC1091
. "$VKC_CLUSTER_DIR/env"
kubectl=("$VKC_KUBECTL" --kubeconfig "$VKC_ADMIN_KUBECONFIG")
node=$VKC_NODE_NAME   # the identity the cluster issued certificates for
# A port free now and outside those tests/cluster/up.sh and the kernel pick
# (20000 + PID % 10000, unchecked, could be any of the cluster's or in use).
port=$(lib_free_port)
dir=$(mktemp -d /tmp/vkc-valgrind.XXXXXX)
core=
vg=(valgrind --quiet --leak-check=full --errors-for-leak-kinds=definite
    --error-exitcode=99 --track-fds=no)

cleanup() {
    # Not "[ -n ] && kill": under set -e a core already gone would make the
    # trap exit there and skip the rest.
    if [ -n "$core" ]; then
        kill -KILL "$core" 2>/dev/null || true
        wait "$core" 2>/dev/null || true
    fi
    "${kubectl[@]}" delete pod "$node-pod" --grace-period=0 --force >/dev/null 2>&1 || true
    rm -rf "$dir"
}
trap cleanup EXIT

fail() { echo "valgrind.sh: $*"; sed 's/^/    core| /' "$dir/core.log" | tail -n 40; exit 1; }

wait_log() { # pattern, count, seconds
    for _ in $(seq 1 $(($3 * 5))); do
        [ "$(grep -c -- "$1" "$dir/core.log" || true)" -ge "$2" ] && return 0
        sleep 0.2
    done
    fail "no \"$1\" (x$2) within $3 s"
}

"${vg[@]}" "$bin/vkc-core" --nodename "$node" --kubeconfig "$VKC_NODE_KUBECONFIG" \
    --socket-dir "$dir/run" --listen-port "$port" --node-ip 127.0.0.1 \
    --tls-cert-file "$VKC_NODE_KUBELET_CERT" --tls-private-key-file "$VKC_NODE_KUBELET_KEY" \
    --client-ca-file "$VKC_CA_CERT" \
    --provider-ping-interval 5s --provider-ping-timeout 4s \
    --provider-cmd "valgrind --quiet --leak-check=full --errors-for-leak-kinds=definite --error-exitcode=99 $bin/vkc-provider-mock" \
    2>"$dir/core.log" &
core=$!

wait_log 'msg="provider ready"' 1 120
wait_log 'msg="node ready"' 1 120
"${kubectl[@]}" apply -f - >/dev/null <<EOF
{"apiVersion":"v1","kind":"Pod","metadata":{"name":"$node-pod"},
 "spec":{"nodeName":"$node","tolerations":[{"operator":"Exists"}],
  "containers":[{"name":"app","image":"busybox"}]}}
EOF
"${kubectl[@]}" wait --for=condition=Ready "pod/$node-pod" --timeout=120s >/dev/null ||
    fail "the pod did not become Ready"
grep -q "$node-pod/app" <<<"$("${kubectl[@]}" logs "$node-pod" --limit-bytes=200)" ||
    fail "kubectl logs did not reach the mock through the kubelet API"

pid=$(grep -o 'msg="provider ready" [^ ]* [^ ]* pid=[0-9]*' "$dir/core.log" | grep -o '[0-9]*$' | tail -1)
kill -KILL "$pid"
wait_log 'msg="provider ready"' 2 120

"${kubectl[@]}" delete pod "$node-pod" --timeout=120s >/dev/null || fail "the pod was not deleted"
kill -TERM "$core"
rc=0
wait "$core" || rc=$?
core=
[ "$rc" -eq 0 ] || fail "vkc-core exited with $rc (99: a memcheck error or leak)"
grep -q 'msg="provider stopped".*status=0' "$dir/core.log" ||
    fail "the provider did not stop cleanly (status 99: a memcheck error or leak)"
echo "vkc-core and vkc-provider-mock: no memcheck errors, no definite leaks"
