#!/bin/bash
# vkc-core as a node of a cluster of its own, with the mock provider: a
# Deployment is scheduled onto it and runs; the API server is stopped for
# 20 s and started again. Afterwards the core has reconnected (the Lease is
# renewed, the node is Ready), no pod was lost or duplicated (the same pods
# in the API, the same pods in the provider), and status catches up: a
# container that ended during the outage shows as ended, and pods created
# after the outage reach Running. Last, SIGTERM stops the core cleanly: it
# exits 0 within its grace time, leaving the Node NotReady (KubeletStopped),
# its Lease, and its pods bound, not deleted.
#   tests/integration/test_apiserver_restart.sh BUILD
set -euo pipefail

build=${1:-build}
# shellcheck source=tests/integration/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
dir=$(mktemp -d /tmp/vkc-restart.XXXXXX)
core=

cleanup() {
    lib_stop "$core"
    tests/cluster/down.sh "$dir/cluster" >/dev/null 2>&1 || true
    rm -rf "$dir"
}
trap cleanup EXIT

fail() { echo "FAIL: $*"; lib_core_log "$dir/core.log"; exit 1; }

# A cluster of its own: this test stops its API server.
lib_start_cluster "$dir/cluster" "$dir/up.log"
lib_kubectl 0
port=$(lib_free_port)

"$build/bin/vkc-core" --nodename "$VKC_NODE_NAME" --kubeconfig "$VKC_NODE_KUBECONFIG" \
    --socket-dir "$dir/run" --listen-port "$port" --node-ip 127.0.0.1 \
    --tls-cert-file "$VKC_NODE_KUBELET_CERT" --tls-private-key-file "$VKC_NODE_KUBELET_KEY" \
    --client-ca-file "$VKC_CA_CERT" \
    --provider-cmd "$build/bin/vkc-provider-mock" 2>"$dir/core.log" &
core=$!
lib_wait_node_ready "$VKC_NODE_NAME" "$core" 120

# Through the scheduler, as users deploy: the Deployment tolerates the taint.
"${K[@]}" apply -f contrib/demo-deployment.json >/dev/null
"${K[@]}" rollout status deployment/demo --timeout=120s >/dev/null || fail "the Deployment did not roll out"
before=$("${K[@]}" get pods -l app=demo -o jsonpath='{range .items[*]}{.metadata.uid}{"\n"}{end}' | sort)
[ "$(wc -l <<<"$before")" -eq 3 ] || fail "expected 3 pods, got: $before"
lease_before=$("${K[@]}" -n kube-node-lease get lease "$VKC_NODE_NAME" -o jsonpath='{.spec.renewTime}')

# bare_pod NAME ANNOTATIONS RESTART: a pod bound to our node, with the mock's annotations.
bare_pod() {
    "${K[@]}" apply -f - >/dev/null <<JSON
{"apiVersion":"v1","kind":"Pod","metadata":{"name":"$1","annotations":{$2}},
 "spec":{"nodeName":"$VKC_NODE_NAME","restartPolicy":"$3",
  "tolerations":[{"key":"virtual-kubelet.io/provider","operator":"Exists","effect":"NoSchedule"}],
  "containers":[{"name":"c","image":"busybox"}]}}
JSON
}
# A container that exits once, 15 s after it starts: during the outage. No
# status comes from the provider after that, so only the core catching up
# can bring the exit to the API.
bare_pod ender '"mock.vkc.io/exit-code":"3","mock.vkc.io/run-ms":"15000"' Never
"${K[@]}" wait --for=condition=Ready pod/ender --timeout=30s >/dev/null || fail "pod ender did not run"
down_at=$(date +%s)

tests/cluster/restart.sh "$dir/cluster" kube-apiserver 20
lib_wait_apiserver 60 || fail "the API server did not come back"
up_at=$(date +%s)
kill -0 "$core" || fail "vkc-core died while the API server was away"

# Caught up: the exit the provider reported while the API was away. The
# core retries a failed status write with a back-off capped at 30 s: 90 s
# (a deadline, whatever each kubectl costs on a loaded machine).
deadline=$((SECONDS + 90))
while ((SECONDS < deadline)); do
    [ "$("${K[@]}" get pod ender -o jsonpath='{.status.phase}' 2>/dev/null)" = Failed ] && break
    sleep 1
done
caught_in=$(($(date +%s) - up_at))
ended=$("${K[@]}" get pod ender -o jsonpath='{.status.phase} {.status.containerStatuses[0].state.terminated.exitCode} {.status.containerStatuses[0].state.terminated.finishedAt}')
read -r phase code finished <<<"$ended"
[ "$phase $code" = "Failed 3" ] || fail "pod ender after the outage: [$ended], want Failed with exit code 3"
finished_s=$(date -d "$finished" +%s)
[[ $finished_s -ge $down_at && $finished_s -le $up_at ]] ||
    fail "pod ender's container ended at $finished, not during the outage ($down_at..$up_at): the test's timing is off"

# Reconnected: the Lease moves on, the node is Ready.
renewed=
for _ in $(seq 1 60); do
    now=$("${K[@]}" -n kube-node-lease get lease "$VKC_NODE_NAME" -o jsonpath='{.spec.renewTime}' 2>/dev/null || true)
    if [ -n "$now" ] && [ "$now" != "$lease_before" ]; then renewed=1; break; fi
    sleep 1
done
[ -n "$renewed" ] || fail "the Lease was not renewed after the API server came back"
"${K[@]}" wait --for=condition=Ready "node/$VKC_NODE_NAME" --timeout=60s >/dev/null ||
    fail "the node is not Ready after the API server came back"

# Nothing lost or duplicated, in the API and in the provider.
after=$("${K[@]}" get pods -l app=demo -o jsonpath='{range .items[*]}{.metadata.uid}{"\n"}{end}' | sort)
[ "$before" = "$after" ] || fail "pods changed across the outage: before [$before] after [$after]"
running=$("${K[@]}" get --raw "/api/v1/nodes/$VKC_NODE_NAME/proxy/runningpods/" |
    /usr/bin/python3 -c 'import json,sys; print(len([p for p in json.load(sys.stdin)["items"] if p["metadata"]["name"].startswith("demo-")]))')
[ "$running" -eq 3 ] || fail "the provider runs $running demo pods, want 3"

# Status catches up: new pods after the outage run.
"${K[@]}" scale deployment/demo --replicas=5 >/dev/null
"${K[@]}" rollout status deployment/demo --timeout=120s >/dev/null || fail "scaling up after the outage did not complete"
n=$("${K[@]}" get pods -l app=demo --field-selector=status.phase=Running -o name | wc -l)
[ "$n" -eq 5 ] || fail "$n pods Running after scaling to 5"

"${K[@]}" delete deployment demo --wait=true >/dev/null
deadline=$((SECONDS + 120))
while ((SECONDS < deadline)); do
    [ -z "$("${K[@]}" get pods -l app=demo -o name)" ] && break
    sleep 1
done
[ -z "$("${K[@]}" get pods -l app=demo -o name)" ] || fail "pods remained after deleting the Deployment"

# SIGTERM: a clean stop that leaves the node's pods where they are.
bare_pod keeper '' Always
"${K[@]}" wait --for=condition=Ready pod/keeper --timeout=60s >/dev/null || fail "pod keeper did not run"
pods_before=$("${K[@]}" get pods -o jsonpath='{range .items[*]}{.metadata.uid} {.spec.nodeName}{"\n"}{end}' | sort)
provider=$(lib_child_of "$core") || fail "vkc-core has no provider child"
kill -TERM "$core"
for _ in $(seq 1 150); do kill -0 "$core" 2>/dev/null || break; sleep 0.1; done
kill -0 "$core" 2>/dev/null && fail "vkc-core still runs 15 s after SIGTERM"
rc=0
wait "$core" || rc=$?
core=
[ "$rc" -eq 0 ] || fail "vkc-core exited $rc after SIGTERM, want 0"
[ -d "/proc/$provider" ] && fail "the provider (pid $provider) outlived vkc-core"
ready=$("${K[@]}" get node "$VKC_NODE_NAME" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status} {.status.conditions[?(@.type=="Ready")].reason}')
[ "$ready" = "False KubeletStopped" ] || fail "Ready after SIGTERM: [$ready], want False KubeletStopped"
"${K[@]}" -n kube-node-lease get lease "$VKC_NODE_NAME" >/dev/null || fail "the Lease is gone after SIGTERM"
pods_after=$("${K[@]}" get pods -o jsonpath='{range .items[*]}{.metadata.uid} {.spec.nodeName}{"\n"}{end}' | sort)
[ "$pods_before" = "$pods_after" ] || fail "pods changed across SIGTERM: before [$pods_before] after [$pods_after]"
[ -z "$("${K[@]}" get pods -o jsonpath='{.items[*].metadata.deletionTimestamp}')" ] ||
    fail "pods are being deleted after SIGTERM"
echo "API server restart: reconnected, 3 pods kept, a status caught up (${caught_in} s), 5 running after, all deleted;" \
    "SIGTERM: exit 0, node KubeletStopped, Lease and 2 pods kept"
