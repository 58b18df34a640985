#!/bin/bash
# kubectl against a vkc node, through the real API server: logs, exec (exit
# codes, stdin), port-forward and stats, as users reach a node's containers.
# The API server forwards each request to vkc's kubelet API (SPDY for this
# kubectl 1.20) and vkc to the mock provider.
#   tests/integration/test_kubectl.sh BUILD
set -euo pipefail

build=${1:-build}
# shellcheck source=tests/integration/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
: "${VKC_CLUSTER_DIR:?needs a running test cluster (tests/cluster/up.sh)}"
# shellcheck disable=SC1091
. "$VKC_CLUSTER_DIR/env"
lib_kubectl 0
node=$VKC_NODE_NAME
pod=kubectl-e2e
port=$(lib_free_port)
fwd=$(lib_free_port)
dir=$(mktemp -d /tmp/vkc-kubectl.XXXXXX)
core=
pf=

cleanup() {
    [ -n "$pf" ] && kill "$pf" 2>/dev/null
    "${K[@]}" delete pod "$pod" --grace-period=0 --force >/dev/null 2>&1 || true
    lib_stop "$core"
    rm -rf "$dir"
}
trap cleanup EXIT

fail() { echo "FAIL: $*"; lib_core_log "$dir/core.log"; exit 1; }

"$build/bin/vkc-core" --nodename "$node" --kubeconfig "$VKC_NODE_KUBECONFIG" \
    --socket-dir "$dir/run" --listen-port "$port" --node-ip 127.0.0.1 \
    --tls-cert-file "$VKC_NODE_KUBELET_CERT" --tls-private-key-file "$VKC_NODE_KUBELET_KEY" \
    --client-ca-file "$VKC_CA_CERT" \
    --provider-cmd "$build/bin/vkc-provider-mock --log-interval 200" 2>"$dir/core.log" &
core=$!
lib_wait_node_ready "$node" "$core" 120
"${K[@]}" apply -f - >/dev/null <<EOF
{"apiVersion":"v1","kind":"Pod","metadata":{"name":"$pod"},
 "spec":{"nodeName":"$node","tolerations":[{"operator":"Exists"}],
  "containers":[{"name":"app","image":"busybox"}]}}
EOF
"${K[@]}" wait --for=condition=Ready "pod/$pod" --timeout=60s >/dev/null || fail "pod not Ready"

# logs, with options, and -f cut short by the client
"${K[@]}" logs "$pod" --tail=2 | grep -q "$pod/app line" || fail "kubectl logs"
[ "$("${K[@]}" logs "$pod" --tail=2 | wc -l)" -eq 2 ] || fail "kubectl logs --tail=2"
timeout 2 "${K[@]}" logs -f "$pod" >"$dir/follow" || true
[ "$(wc -l <"$dir/follow")" -ge 3 ] || fail "kubectl logs -f delivered $(wc -l <"$dir/follow") lines in 2 s"

# exec: output, exit codes, stdin
[ "$("${K[@]}" exec "$pod" -- echo hello vkc)" = "hello vkc" ] || fail "kubectl exec echo"
rc=0
"${K[@]}" exec "$pod" -- sh -c 'exit 3' || rc=$?
[ "$rc" -eq 3 ] || fail "kubectl exec exit code: $rc, want 3"
[ "$(printf 'from stdin' | "${K[@]}" exec -i "$pod" -- cat)" = "from stdin" ] ||
    fail "kubectl exec -i with stdin"
rc=0
"${K[@]}" exec "$pod" -c nosuch -- echo x 2>"$dir/err" || rc=$?
if [ "$rc" -eq 0 ] || ! grep -qi "not found\|nosuch" "$dir/err"; then
    fail "exec into an unknown container: rc $rc, $(cat "$dir/err")"
fi

# port-forward: the mock echoes what it gets
"${K[@]}" port-forward "pod/$pod" "$fwd:8080" >"$dir/pf.log" 2>&1 &
pf=$!
for _ in $(seq 1 50); do grep -q Forwarding "$dir/pf.log" && break; sleep 0.2; done
reply=$(/usr/bin/python3 - "$fwd" <<'PY'
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10)
s.sendall(b"ping through vkc")
s.shutdown(socket.SHUT_WR)
data = b""
while True:
    chunk = s.recv(4096)
    if not chunk:
        break
    data += chunk
print(data.decode())
PY
) || fail "port-forward connection"
[ "$reply" = "ping through vkc" ] || fail "port-forward echoed [$reply]"

# stats through the API server's node proxy
"${K[@]}" get --raw "/api/v1/nodes/$node/proxy/stats/summary" | grep -q "\"nodeName\":\"$node\"" ||
    fail "stats/summary does not name the node"
"${K[@]}" get --raw "/api/v1/nodes/$node/proxy/metrics/resource" | grep -q "pod_cpu_usage_seconds_total" ||
    fail "metrics/resource lacks pod_cpu_usage_seconds_total"
echo "kubectl logs, exec, port-forward and stats through the API server: ok"
