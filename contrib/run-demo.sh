#!/bin/bash
# `make run`: a real local control plane (tests/cluster), vkc-core as the
# node vkc-node with the mock provider, and a sample Deployment of three
# replicas scheduled onto it. Ctrl-C stops everything this script started.
set -euo pipefail

build=${1:-build}
node=vkc-node
port=${VKC_DEMO_PORT:-10250}
dir=$(mktemp -d /tmp/vkc-demo.XXXXXX)
core=

say() { printf '\n==> %s\n' "$*"; }

cleanup() {
    trap - INT TERM EXIT
    # Ctrl-C reached vkc-core too (same process group): let it stop its
    # provider gracefully, as a second signal would make it kill it at once.
    if [ "${1:-}" = INT ] && [ -n "$core" ]; then
        for _ in $(seq 50); do kill -0 "$core" 2>/dev/null || break; sleep 0.2; done
    fi
    if [ -n "$core" ] && kill -0 "$core" 2>/dev/null; then
        say "stopping vkc-core"
        kill -TERM "$core"
    fi
    [ -z "$core" ] || wait "$core" 2>/dev/null || true
    say "stopping the control plane"
    tests/cluster/down.sh "$dir/cluster" >/dev/null 2>&1 || true
    rm -rf "$dir"
}
trap 'cleanup INT' INT
trap cleanup TERM EXIT

say "control plane binaries (built once from Debian's kubernetes source, ~15 min)"
bin=$(tests/cluster/build.sh)
say "starting etcd, kube-apiserver, scheduler and controller-manager"
VKC_NODES=$node tests/cluster/up.sh "$dir/cluster" >"$dir/cluster-up.log" 2>&1 ||
    { tail -n 30 "$dir/cluster-up.log"; exit 1; }
# shellcheck disable=SC1091
. "$dir/cluster/env"
kubectl=("$bin/kubectl" --kubeconfig "$VKC_ADMIN_KUBECONFIG")

say "starting vkc-core as system:node:$node (log: $dir/core.log)"
"$build/bin/vkc-core" --nodename "$node" --kubeconfig "$VKC_NODE_KUBECONFIG" \
    --socket-dir "$dir/run" --listen-port "$port" --node-ip 127.0.0.1 \
    --tls-cert-file "$VKC_NODE_KUBELET_CERT" --tls-private-key-file "$VKC_NODE_KUBELET_KEY" \
    --client-ca-file "$VKC_CA_CERT" --authentication-token-webhook \
    --provider-cmd "$build/bin/vkc-provider-mock" 2>"$dir/core.log" &
core=$!
# kubectl wait fails at once on a Node that does not exist yet.
for _ in $(seq 1 120); do "${kubectl[@]}" get node "$node" >/dev/null 2>&1 && break; sleep 0.5; done
"${kubectl[@]}" wait --for=condition=Ready "node/$node" --timeout=60s >/dev/null
"${kubectl[@]}" get nodes -o wide

say "a Deployment of 3 replicas on the virtual node"
"${kubectl[@]}" apply -f contrib/demo-deployment.json >/dev/null
"${kubectl[@]}" rollout status deployment/demo --timeout=120s
"${kubectl[@]}" get pods -o wide

cat <<MSG

vkc is running. In another terminal:
  . $dir/cluster/env
  k="$bin/kubectl"
  \$k get nodes,pods -o wide
  \$k logs -f deployment/demo
  \$k exec -it deployment/demo -- sh          # the mock's tiny shell
  \$k get --raw /api/v1/nodes/$node/proxy/stats/summary
  kill -9 \$(pgrep -x vkc-provider-mo)          # the core restarts its provider
Ctrl-C stops everything.
MSG
wait "$core"
