#!/bin/bash
# kubectl against a vkc node, through the real API server: logs (--tail,
# --since, --since-time, -f), exec (exit codes, stdin), attach, port-forward
# and the stats summary, as users reach a node's containers. The API server
# forwards each request to vkc's kubelet API (SPDY for this kubectl 1.20) and
# vkc to the mock provider; ws_apiserver.py does exec and logs over WebSocket.
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
dir=$(mktemp -d /tmp/vkc-kubectl.XXXXXX)
core=
pf=
follow=

cleanup() {
    # lib_stop, not "kill && ...": under set -e a kubectl that already ended
    # would make the trap exit here, leaving the core running.
    lib_stop "$pf"
    lib_stop "$follow"
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

# logs, with options. The mock writes "TIME POD/CTR line K" every 200 ms,
# from the moment the pod runs: just after Ready there may be one line only.
# --since and --since-time need a log longer than their window: 30 lines, 6 s
# (a deadline, not a count of tries: each kubectl may take a second when loaded).
deadline=$((SECONDS + 60))
while [ "$("${K[@]}" logs "$pod" | wc -l)" -lt 30 ] && ((SECONDS < deadline)); do
    sleep 0.2
done
# Not "kubectl | grep -q": grep quits at its match, kubectl may then die of
# SIGPIPE, and pipefail makes that a failure.
grep -q "$pod/app line" <<<"$("${K[@]}" logs "$pod" --tail=2)" || fail "kubectl logs"
[ "$("${K[@]}" logs "$pod" --tail=2 | wc -l)" -eq 2 ] || fail "kubectl logs --tail=2"
all=$("${K[@]}" logs "$pod" | wc -l)
recent=$("${K[@]}" logs "$pod" --since=1s | wc -l)
# 1 s before the mock reads the request is 5 or 6 lines; 10 leaves room.
((all >= 30 && recent >= 1 && recent <= 10)) ||
    fail "kubectl logs --since=1s: $recent lines of $all"
since=$(date -u -d "@$(($(date +%s) - 2))" +%Y-%m-%dT%H:%M:%SZ)
"${K[@]}" logs "$pod" --since-time="$since" >"$dir/since"
"${K[@]}" logs "$pod" >"$dir/all"
first=$(sed -n '1s/.* line //p' "$dir/since")
[[ $first -gt 1 && $(wc -l <"$dir/since") -lt $(wc -l <"$dir/all") ]] ||
    fail "kubectl logs --since-time=$since: $(wc -l <"$dir/since") lines from line ${first:-none}"
# It starts at the first line stamped $since or later: the one before is
# older. Stamps are whole seconds in the format of $since, so compare as text.
at=$(head -n 1 "$dir/since" | cut -d' ' -f1)
before=$(grep " line $((first - 1))\$" "$dir/all" | cut -d' ' -f1)
[[ ! $at < $since && $before < $since ]] ||
    fail "kubectl logs --since-time=$since began at line $first ($at), the line before is at $before"
# -f from the last line: newer lines must arrive, in order, while it runs.
# Until 5 lines came, not for a fixed time: kubectl's start on a loaded
# machine can take seconds, and a fixed window then holds too few lines.
# The file exists before the background job opens it: the loop reads it
# at once, and a read of a missing file would end the loop.
: >"$dir/follow"
"${K[@]}" logs --tail=1 -f "$pod" >"$dir/follow" 2>"$dir/follow.err" &
follow=$!
deadline=$((SECONDS + 60))
while [ "$(wc -l <"$dir/follow")" -lt 5 ] && ((SECONDS < deadline)) && kill -0 "$follow" 2>/dev/null; do
    sleep 0.2
done
lib_stop "$follow"
follow=
# Whole lines only: kubectl may have been stopped in the middle of one.
head -n "$(wc -l <"$dir/follow")" "$dir/follow" | sed 's/.* line //' >"$dir/follow.n"
n=$(wc -l <"$dir/follow.n")
[[ $n -ge 5 && $(tail -n 1 "$dir/follow.n") -eq $(($(head -n 1 "$dir/follow.n") + n - 1)) ]] ||
    fail "kubectl logs --tail=1 -f gave the lines $(tr '\n' ' ' <"$dir/follow.n") $(cat "$dir/follow.err")"

# exec: output, exit codes, stdin
[ "$("${K[@]}" exec "$pod" -- echo hello vkc)" = "hello vkc" ] || fail "kubectl exec echo"
rc=0
"${K[@]}" exec "$pod" -- sh -c 'exit 3' 2>"$dir/err" || rc=$?
[ "$rc" -eq 3 ] || fail "kubectl exec exit code: $rc, want 3: $(cat "$dir/err")"
[ "$(printf 'from stdin' | "${K[@]}" exec -i "$pod" -- cat)" = "from stdin" ] ||
    fail "kubectl exec -i with stdin"
# The API server itself refuses a container not in the pod's spec: this
# request never reaches vkc (the core's own 404 has a unit test).
rc=0
"${K[@]}" exec "$pod" -c nosuch -- echo x 2>"$dir/err" || rc=$?
if [ "$rc" -eq 0 ] || ! grep -qi "not found\|nosuch" "$dir/err"; then
    fail "API server: exec into a container not in the spec: rc $rc, $(cat "$dir/err")"
fi

# attach: the mock's main process echoes its stdin; closing stdin ends attach.
[ "$(printf 'to attach\n' | "${K[@]}" attach -i "$pod" 2>"$dir/err")" = "to attach" ] ||
    fail "kubectl attach -i: $(cat "$dir/err")"
[ "$(printf 'to app\n' | "${K[@]}" attach -i -c app "$pod" 2>"$dir/err")" = "to app" ] ||
    fail "kubectl attach -i -c app: $(cat "$dir/err")"

# exec and logs -f over WebSocket, as clients other than this kubectl speak
/usr/bin/python3 "$(dirname "${BASH_SOURCE[0]}")/ws_apiserver.py" "$VKC_ADMIN_KUBECONFIG" \
    default "$pod" app || fail "exec and logs over WebSocket through the API server"

# port-forward: the mock echoes what it gets. kubectl picks the local port
# itself (":8080") and says which: one picked here could be taken meanwhile.
"${K[@]}" port-forward "pod/$pod" ":8080" >"$dir/pf.log" 2>&1 &
pf=$!
fwd=
deadline=$((SECONDS + 60))
while [ -z "$fwd" ]; do
    fwd=$(sed -n 's/^Forwarding from 127\.0\.0\.1:\([0-9]*\) -> 8080$/\1/p;T;q' "$dir/pf.log")
    [ -n "$fwd" ] && break
    kill -0 "$pf" 2>/dev/null || fail "kubectl port-forward exited: $(cat "$dir/pf.log")"
    ((SECONDS < deadline)) || fail "kubectl port-forward not listening after 60 s: $(cat "$dir/pf.log")"
    sleep 0.2
done
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
"${K[@]}" get --raw "/api/v1/nodes/$node/proxy/stats/summary" >"$dir/summary" ||
    fail "stats/summary through the node proxy"
/usr/bin/python3 - "$dir/summary" "$node" "$pod" <<'PY' || fail "stats/summary is not the kubelet's Summary"
# The fields of the kubelet's Summary (k8s.io/kubelet/pkg/apis/stats/v1alpha1)
# that metrics-server and kubectl top read, with their JSON types.
import datetime, json, re, sys
doc = json.load(open(sys.argv[1]))

def rfc3339(v, where):
    ok = isinstance(v, str) and re.fullmatch(r"[0-9T:-]{19}(\.[0-9]+)?(Z|[+-]\d\d:\d\d)", v)
    assert ok, f"{where}: {v!r} is not an RFC 3339 time"
    datetime.datetime.strptime(v[:19], "%Y-%m-%dT%H:%M:%S")

def uint(v, where):
    assert type(v) is int and v >= 0, f"{where}: {v!r} is not a uint64"

def usage(d, where, node=False):
    cpu, mem = d["cpu"], d["memory"]
    rfc3339(cpu["time"], where + ".cpu.time")
    for k in ("usageNanoCores", "usageCoreNanoSeconds"):
        uint(cpu[k], f"{where}.cpu.{k}")
    rfc3339(mem["time"], where + ".memory.time")
    for k in ("usageBytes", "workingSetBytes", "rssBytes") + (("availableBytes",) if node else ()):
        uint(mem[k], f"{where}.memory.{k}")

def busy(d, where):
    assert d["cpu"]["usageNanoCores"] > 0 and d["memory"]["workingSetBytes"] > 0, f"{where}: no usage"

n = doc["node"]
assert n["nodeName"] == sys.argv[2], f"node.nodeName {n['nodeName']!r}"
rfc3339(n["startTime"], "node.startTime")
usage(n, "node", node=True)
busy(n, "node")
for p in doc["pods"]:
    ref = p["podRef"]
    assert all(isinstance(ref[k], str) and ref[k] for k in ("name", "namespace", "uid")), ref
    rfc3339(p["startTime"], f"{ref['name']}.startTime")
    usage(p, ref["name"])
    for c in p["containers"]:
        assert isinstance(c["name"], str) and c["name"], c
        rfc3339(c["startTime"], f"{ref['name']}/{c['name']}.startTime")
        usage(c, f"{ref['name']}/{c['name']}")
# Other tests' pods may linger on the node, idle: only ours must be running.
ours = [p for p in doc["pods"] if p["podRef"]["name"] == sys.argv[3]]
assert [[c["name"] for c in p["containers"]] for p in ours] == [["app"]], f"pod {sys.argv[3]}: {ours}"
busy(ours[0], sys.argv[3])
busy(ours[0]["containers"][0], sys.argv[3] + "/app")
PY
grep -q "pod_cpu_usage_seconds_total" <<<"$("${K[@]}" get --raw "/api/v1/nodes/$node/proxy/metrics/resource")" ||
    fail "metrics/resource lacks pod_cpu_usage_seconds_total"
echo "kubectl logs, exec, attach, port-forward and stats, WebSocket exec and logs, through the API server: ok"
