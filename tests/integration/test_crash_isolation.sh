#!/usr/bin/env bash
# tests/integration/test_crash_isolation.sh [BUILD] -- the provider crashes
# over and over under load, and nothing leaks into or out of Kubernetes.
#
# vkc-core starts the mock provider (--provider-cmd) on a real control
# plane (the shared one of tests/run-tests.sh when VKC_CLUSTER_DIR is set,
# else one of its own). While a stream of pod creations and deletions goes
# on, the provider is SIGKILLed 20 times, each time once the core has
# restarted it and a moment passed. Then, once the churn stopped, the core
# must converge: every pod the API server holds for the node exists exactly
# once in the provider (the kubelet API's /pods, through the API server's
# node proxy, lists what the provider runs), the provider has no pod the
# API does not hold, and every status the API shows is the provider's.
# Prints the figures: kills, restarts, pods created and deleted, time to
# converge. Bounded in time, without timed assertions.
set -uo pipefail

# shellcheck source=tests/integration/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
BUILD=$(lib_build_dir "${1:-}")
cd "$LIB_ROOT" || exit 1
BIN=$BUILD/bin
NS=vkc-crash-test
KILLS=20
LIVE=8          # pods the churn keeps alive at once
CONVERGE_S=90   # at most this long to converge after the churn
WORK=$(mktemp -d /tmp/vkc-crash-XXXXXX)
CORE_PID=
CHURN_PID=
OWN_CLUSTER=

log() { echo "[test_crash_isolation $(date +%T)] $*" >&2; }
fail() { echo "FAIL: $*" >&2; lib_core_log "$WORK/core.log" >&2; exit 1; }

cleanup() {
	if [[ -n $CHURN_PID ]]; then
		touch "$WORK/stop"
		for _ in $(seq 100); do kill -0 "$CHURN_PID" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$CHURN_PID" 2>/dev/null
		wait "$CHURN_PID" 2>/dev/null
	fi
	if [[ -n ${K:-} ]]; then
		"${K[@]}" delete namespace "$NS" --wait=false >/dev/null 2>&1
		"${K[@]}" -n "$NS" delete pods --all --grace-period=0 --force >/dev/null 2>&1
	fi
	lib_stop "$CORE_PID"
	[[ -n $OWN_CLUSTER ]] && tests/cluster/down.sh "$OWN_CLUSTER" >/dev/null 2>&1
	rm -rf "$WORK"
}
trap cleanup EXIT

[[ -x $BIN/vkc-core && -x $BIN/vkc-provider-mock ]] || fail "build $BIN first"

# ---- the control plane ---------------------------------------------------------------
lib_use_cluster "$WORK"
lib_kubectl 30s
NODE=$VKC_NODE_NAME

lib_fresh_namespace "$NS" 30 # no token: the pods say what is missing

KPORT=$(lib_free_port)
# Restarts back off up to 1 s instead of 30: twenty crashes in a row are a
# crash loop, and the default cap would make this test take minutes.
"$BIN/vkc-core" --nodename "$NODE" --kubeconfig "$VKC_NODE_KUBECONFIG" \
	--provider-cmd "$BIN/vkc-provider-mock" --socket-dir "$WORK/run" \
	--provider-restart-max-backoff 1s \
	--listen-port "$KPORT" --node-ip 127.0.0.1 --client-ca-file "$VKC_CA_CERT" \
	--tls-cert-file "$VKC_NODE_KUBELET_CERT" --tls-private-key-file "$VKC_NODE_KUBELET_KEY" \
	>"$WORK/core.log" 2>&1 &
CORE_PID=$!
lib_wait_node_ready "$NODE" "$CORE_PID" 120

provider_pid() { ps -o pid= --ppid "$CORE_PID" | tr -d ' ' | head -n 1; }
ready_count() { grep -c "provider ready" "$WORK/core.log"; }
# Pods the churn created so far (0 before its first batch; the file is
# rewritten after each batch, so a read may find it empty for a moment).
churn_created() {
	local c=0
	read -r c _ 2>/dev/null <"$WORK/churn.count"
	echo "${c:-0}"
}

# ---- churn: create pods, delete the oldest, until told to stop -----------------------------
# In batches of BATCH (one kubectl each way): kubectl is slow to start on a
# loaded machine. Deletions are graceful, so the core deletes in the provider
# and then in the API.
BATCH=4
churn() {
	local i=0 created=0 deleted=0 b names
	while [[ ! -e $WORK/stop ]]; do
		for b in $(seq "$BATCH"); do
			cat <<EOF
{"apiVersion":"v1","kind":"Pod","metadata":{"name":"churn-$((i + b))","labels":{"app":"churn"}},
 "spec":{"nodeName":"$NODE","tolerations":[{"operator":"Exists"}],"terminationGracePeriodSeconds":5,
  "containers":[{"name":"app","image":"busybox"}]}}
EOF
		done | "${K[@]}" -n "$NS" apply -f - 2>>"$WORK/churn.err" >"$WORK/churn.out"
		created=$((created + $(grep -c created "$WORK/churn.out")))
		names=()
		for b in $(seq "$BATCH"); do
			((i + b > LIVE)) && names+=("churn-$((i + b - LIVE))")
		done
		if ((${#names[@]})); then
			"${K[@]}" -n "$NS" delete pod "${names[@]}" --wait=false 2>>"$WORK/churn.err" >"$WORK/churn.out"
			deleted=$((deleted + $(grep -c deleted "$WORK/churn.out")))
		fi
		i=$((i + BATCH))
		echo "$created $deleted" >"$WORK/churn.count"
	done
}
churn &
CHURN_PID=$!

# ---- 20 crashes ------------------------------------------------------------------------------
# At least KILLS kills, and on until the churn created 2 * KILLS pods: how
# many batches fit between 20 kills depends on how fast kubectl starts, so
# on a loaded machine the kills go on rather than the churn coming up short.
log "churning pods on $NODE; SIGKILLing the provider $KILLS times or more"
start=$SECONDS
kills=0
while ((kills < KILLS || $(churn_created) < 2 * KILLS)); do
	((SECONDS - start < 600)) || fail "the churn created only $(churn_created) pods in 600 s ($kills kills)"
	# Once the core restarted the provider (and handshook), a moment of work.
	n=$(ready_count)
	for i in $(seq 200); do
		pid=$(provider_pid)
		[[ -n $pid ]] && (($(ready_count) >= n)) && ((n > 0)) && break
		((i == 200)) && fail "no provider running after $kills kills"
		sleep 0.1
	done
	sleep "0.$((RANDOM % 8 + 2))"
	kill -0 "$CORE_PID" 2>/dev/null || fail "vkc-core exited after $kills provider kills"
	kill -KILL "$pid" 2>/dev/null && kills=$((kills + 1))
	# Wait for the core to see the exit and start the next provider.
	deadline=$((SECONDS + 60))
	while :; do
		p=$(provider_pid)
		[[ -n $p && $p != "$pid" ]] && (($(ready_count) > n)) && break
		((SECONDS < deadline)) || fail "the core did not restart the provider after kill $kills"
		sleep 0.1
	done
done
touch "$WORK/stop"
wait "$CHURN_PID"
CHURN_PID=
read -r created deleted <"$WORK/churn.count"
churn_s=$((SECONDS - start))
((created >= 2 * KILLS)) || fail "the churn created only $created pods"
((deleted > 0)) || fail "the churn deleted no pods"
log "$kills kills in ${churn_s}s; churn created $created pods, deleted $deleted"

# ---- converge ------------------------------------------------------------------------------
# compare: the API's pods of the node against the provider's (kubelet /pods),
# by namespace/name and uid, and their statuses. Prints the differences;
# exit 0 when there are none and no API pod of the node is being deleted.
compare() {
	"${K[@]}" get pods --all-namespaces --field-selector "spec.nodeName=$NODE" -o json >"$WORK/api.json" || return 2
	"${K[@]}" get --raw "/api/v1/nodes/$NODE/proxy/pods" >"$WORK/kubelet.json" || return 2
	/usr/bin/python3 - "$WORK/api.json" "$WORK/kubelet.json" <<'PY'
import collections, json, sys
api = json.load(open(sys.argv[1]))["items"]
prov = json.load(open(sys.argv[2]))["items"]
def key(p):
    return p["metadata"]["namespace"] + "/" + p["metadata"]["name"]
# restartCount is not compared: a restarted provider counts from 0 again,
# while the API counts on (core/podstatus.c, restart_count); the
# containerID pins the container itself.
def status(p):
    s = p.get("status", {})
    return (s.get("phase"), s.get("podIP"),
            tuple(sorted((c["name"], c.get("ready"), c.get("containerID"))
                         for c in s.get("containerStatuses", []))))
problems = []
counts = collections.Counter((key(p), p["metadata"]["uid"]) for p in prov)
problems += [f"in the provider {n} times: {k}" for k, n in counts.items() if n > 1]
by_key = {key(p): p for p in prov}
for p in api:
    k = key(p)
    if p["metadata"].get("deletionTimestamp"):
        problems.append(f"still being deleted: {k}")
        continue
    q = by_key.pop(k, None)
    if q is None:
        problems.append(f"missing in the provider: {k}")
    elif q["metadata"]["uid"] != p["metadata"]["uid"]:
        problems.append(f"other uid in the provider: {k}")
    elif status(p) != status(q) or status(p)[0] != "Running":
        problems.append(f"status of {k}: API {status(p)}, provider {status(q)}")
problems += [f"not in the API: {k}" for k in by_key
             if not any(key(p) == k for p in api)]
print(f"api={len(api)} provider={len(prov)}")
for line in problems:
    print(line)
sys.exit(1 if problems else 0)
PY
}

start=$SECONDS
for i in $(seq "$CONVERGE_S"); do
	kill -0 "$CORE_PID" 2>/dev/null || fail "vkc-core exited"
	out=$(compare) && break
	((i == CONVERGE_S)) && fail "not converged ${CONVERGE_S}s after the churn:
$out"
	sleep 1
done
converge_s=$((SECONDS - start))
pods=$(head -n 1 <<<"$out")
in_ns=$("${K[@]}" -n "$NS" get pods -o name | wc -l)
((in_ns == created - deleted)) || fail "$in_ns pods left in $NS, want $((created - deleted))"
restarts=$(lib_node_metrics "$NODE" |
	awk '$1 == "provider_restarts_total" {print $2}')
[[ -n $restarts ]] || fail "no provider_restarts_total in the core's metrics"
((restarts >= KILLS)) || fail "provider_restarts_total is $restarts after $KILLS kills"
# The one core saw every crash; none took it down.
[[ $(grep -c "provider exited" "$WORK/core.log") -ge $KILLS ]] || fail "the core logged fewer than $KILLS provider exits"

echo "kills=$kills restarts=$restarts pods_created=$created pods_deleted=$deleted churn_s=$churn_s converge_s=$converge_s $pods"
echo "test_crash_isolation: ok"
