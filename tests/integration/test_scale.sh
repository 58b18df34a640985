#!/usr/bin/env bash
# tests/integration/test_scale.sh BUILD -- 2,000 pods on one node.
#
# vkc-core with the mock provider on a real control plane (the shared one of
# tests/run-tests.sh when VKC_CLUSTER_DIR is set, else one of its own).
# 2,000 pods bound to the node are created at once; all must reach Running,
# the provider must run each exactly once, and after a graceful delete all
# must be gone from the API and from the provider: nothing lost, nothing
# duplicated. Throughout, the core's /metrics (through the API server's node
# proxy) are sampled and every queue and cache must stay within its bound:
#
#   pods_known              <= pods bound to the node (the API's count)
#   reconcile_queue_depth   <= pods_known (one entry per pod at most), and
#                              <= 100000 (the queue's configured max_keys)
#   objcache_entries        <= distinct Secrets/ConfigMaps the node's pods
#                              reference (one watch per referenced object)
#   kubelet_api_log_streams == 0 (none opened here)
#   kube_api_requests_waiting / _in_flight (each API client)
#                           <= kube_api_request_limit (its FIFO, its cap)
#   status_writes_pending   out <= status_writes_pending_limit,
#                           waiting <= pods_known (one place per pod)
#   lease_last_renew_timestamp_seconds
#                           at most 30 s old (renewed every 10 s; the Lease
#                           lasts 40 s): the heartbeat holds under the churn
#
# and no API request was refused for a full FIFO (status writes wait for
# their turn in podstatus instead),
# and once the pods are gone every one of them is back at 0 (the eviction
# rules work). Nothing here is timed: the limits are generous deadlines
# (each churn's 500 s, twice, within run-tests.sh's 1200 s for the test).
# Env: VKC_SCALE_PODS (2000).
set -uo pipefail

# shellcheck source=tests/integration/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
BUILD=$(lib_build_dir "${1:-}")
cd "$LIB_ROOT" || exit 1
BIN=$BUILD/bin
B=$BUILD/bench/vkc-bench
N=${VKC_SCALE_PODS:-2000}
NS=scale-test
WORK=$(mktemp -d /tmp/vkc-scale-XXXXXX)
CORE_PID=
OWN_CLUSTER=
fail() { echo "FAIL: $*" >&2; lib_core_log "$WORK/core.log" >&2; exit 1; }
log() { echo "[test_scale $(date +%T)] $*" >&2; }

cleanup() {
	lib_stop "$CORE_PID"
	if [[ -n ${K:-} ]]; then
		"${K[@]}" delete namespace "$NS" --wait=false >/dev/null 2>&1
		"${K[@]}" delete node "$NODE" --wait=false >/dev/null 2>&1
		[[ -n ${SAMPLER:-} ]] && kill "$SAMPLER" 2>/dev/null
	fi
	[[ -n $OWN_CLUSTER ]] && tests/cluster/down.sh "$OWN_CLUSTER" >/dev/null 2>&1
	[[ ${VKC_SCALE_KEEP:-0} == 1 ]] || rm -rf "$WORK"
}
trap cleanup EXIT

[[ -x $BIN/vkc-core && -x $BIN/vkc-provider-mock ]] || fail "build $BIN first"
if [[ ! -x $B ]]; then
	make -s BUILD="$BUILD" "$B" >&2 || fail "cannot build $B"
fi
command -v python3 >/dev/null || fail "python3 needed"

# ---- the control plane ------------------------------------------------------------
lib_use_cluster "$WORK"
ADMIN=$CLUSTER/admin.kubeconfig
lib_kubectl 30s
# The Node authorizer ties the identity to its node name: the cluster's
# first node (vkc-node) it is.
NODE=$VKC_NODE_NAME
NODE_KC=$VKC_NODE_KUBECONFIG
lib_fresh_namespace "$NS" 30 # no token: the pods say what is missing

# ---- vkc-core -----------------------------------------------------------------------
KPORT=$(lib_free_port)
MPORT=$(lib_free_port)
log "starting vkc-core as $NODE (kubelet port $KPORT)"
"$BIN/vkc-core" --kubeconfig "$NODE_KC" --nodename "$NODE" \
	--provider-cmd "$LIB_ROOT/$BIN/vkc-provider-mock --pods $((N + 100)) --log-level warn" \
	--socket-dir "$WORK/sock" --listen-port "$KPORT" --metrics-addr "127.0.0.1:$MPORT" \
	--node-ip 127.0.0.1 --client-ca-file "$VKC_CA_CERT" \
	--tls-cert-file "$VKC_NODE_KUBELET_CERT" --tls-private-key-file "$VKC_NODE_KUBELET_KEY" \
	--kube-api-qps 500 --kube-api-burst 1000 >"$WORK/core.log" 2>&1 &
CORE_PID=$!
lib_wait_node_ready "$NODE" "$CORE_PID" 120

# ---- metrics sampling ---------------------------------------------------------------------
SAMPLES=$WORK/metrics.samples
: >"$SAMPLES"
metrics() { lib_node_metrics "$NODE" 2>/dev/null; }
value() { # SERIES (NAME or NAME{LABELS} as rendered) on stdin -> value or empty
	awk -v n="$1" '$1 == n { print $2; exit }'
}
# The series each sample records, in its order (api_pods, last, from the API).
SERIES=(pods_known reconcile_queue_depth objcache_entries kubelet_api_log_streams
	'status_writes_pending{state="out"}' status_writes_pending_limit
	'status_writes_pending{state="waiting"}')
for c in main heartbeat; do
	for b in waiting in_flight; do
		SERIES+=("kube_api_requests_$b{client=\"$c\"}" "kube_api_request_limit{client=\"$c\",bound=\"$b\"}")
	done
done
SERIES+=(lease_last_renew_timestamp_seconds)
# Sampler: one line per sample, the SERIES' values, api_pods, then the
# sample's time (epoch s); "-" for a series /metrics lacks.
sampler() {
	while :; do
		local m api now line=() v
		m=$(metrics) || { sleep 1; continue; }
		now=$(date +%s)
		api=$("${K[@]}" get pods -A --field-selector "spec.nodeName=$NODE" --no-headers 2>/dev/null | wc -l)
		for v in "${SERIES[@]}"; do
			v=$(value "$v" <<<"$m")
			line+=("${v:--}")
		done
		echo "${line[*]} $api $now" >>"$SAMPLES"
		sleep 1
	done
}
sampler &
SAMPLER=$!

# Pods of other tests on the node count against pods_known too.
OTHER=$("${K[@]}" get pods -A --field-selector "spec.nodeName=$NODE" --no-headers 2>/dev/null | grep -vc "^$NS ")

# ---- 2000 pods ------------------------------------------------------------------------------
log "creating $N pods bound to $NODE"
"$B" churn --kubeconfig "$ADMIN" --node "$NODE" --ns "$NS" --prefix scale --pods "$N" --keep \
	--timeout 500 >"$WORK/create.out" 2>"$WORK/create.err" ||
	{ cat "$WORK/create.out" "$WORK/create.err"; fail "not all $N pods reached Running"; }
grep -E '^(running|t_running_s)=' "$WORK/create.out" >&2

# The provider runs each pod exactly once.
"${K[@]}" get --raw "/api/v1/nodes/$NODE/proxy/pods" >"$WORK/provider-pods.json" || fail "kubelet API /pods"
"${K[@]}" get pods -n "$NS" -o json >"$WORK/api-pods.json" || fail "list pods"
python3 - "$WORK/provider-pods.json" "$WORK/api-pods.json" "$N" "$NS" <<'EOF' || fail "provider and API disagree"
import json, sys
prov = json.load(open(sys.argv[1]))["items"]
api = json.load(open(sys.argv[2]))["items"]
n, ns = int(sys.argv[3]), sys.argv[4]
prov = [p for p in prov if p["metadata"].get("namespace") == ns]
puids = [p["metadata"]["uid"] for p in prov]
auids = {p["metadata"]["uid"] for p in api}
running = sum(1 for p in api if p.get("status", {}).get("phase") == "Running")
errs = []
if len(api) != n: errs.append(f"API has {len(api)} pods, want {n}")
if running != n: errs.append(f"{running} Running, want {n}")
if len(puids) != len(set(puids)): errs.append(f"provider lists {len(puids) - len(set(puids))} duplicates")
if set(puids) != auids: errs.append(f"provider has {len(set(puids) - auids)} unknown, lacks {len(auids - set(puids))}")
for e in errs: print("  " + e)
sys.exit(1 if errs else 0)
EOF
# Distinct Secrets/ConfigMaps the node's pods reference: objcache's bound.
REFS=$("${K[@]}" get pods -A --field-selector "spec.nodeName=$NODE" -o json | python3 -c '
import json, sys
refs = set()
for p in json.load(sys.stdin)["items"]:
    ns = p["metadata"]["namespace"]
    spec = p["spec"]
    for v in spec.get("volumes", []):
        if "secret" in v: refs.add(("s", ns, v["secret"]["secretName"]))
        if "configMap" in v: refs.add(("c", ns, v["configMap"]["name"]))
        for src in v.get("projected", {}).get("sources", []):
            if "secret" in src: refs.add(("s", ns, src["secret"]["name"]))
            if "configMap" in src: refs.add(("c", ns, src["configMap"]["name"]))
    for c in spec.get("containers", []) + spec.get("initContainers", []):
        for e in c.get("env", []):
            r = e.get("valueFrom", {})
            if "secretKeyRef" in r: refs.add(("s", ns, r["secretKeyRef"]["name"]))
            if "configMapKeyRef" in r: refs.add(("c", ns, r["configMapKeyRef"]["name"]))
        for e in c.get("envFrom", []):
            if "secretRef" in e: refs.add(("s", ns, e["secretRef"]["name"]))
            if "configMapRef" in e: refs.add(("c", ns, e["configMapRef"]["name"]))
    for s in spec.get("imagePullSecrets", []): refs.add(("s", ns, s["name"]))
print(len(refs))')
log "pods reference $REFS distinct Secrets/ConfigMaps"
sleep 3
cp "$SAMPLES" "$WORK/samples.running"

# ---- delete, graceful --------------------------------------------------------------------------
log "deleting the $N pods (graceful)"
"$B" churn --kubeconfig "$ADMIN" --node "$NODE" --ns "$NS" --prefix scale --pods "$N" --delete-only \
	--timeout 500 >"$WORK/delete.out" 2>"$WORK/delete.err" ||
	{ cat "$WORK/delete.out" "$WORK/delete.err"; fail "not all $N pods were deleted"; }
grep -E '^(gone|t_gone_s)=' "$WORK/delete.out" >&2
# The caches empty out once the pods are gone.
for i in $(seq 60); do
	m=$(metrics)
	known=$(value pods_known <<<"$m")
	depth=$(value reconcile_queue_depth <<<"$m")
	oc=$(value objcache_entries <<<"$m")
	[[ $known == 0 && $depth == 0 && ${oc:-0} == 0 ]] && break
	((i == 60)) && fail "after deletion: pods_known=$known reconcile_queue_depth=$depth objcache_entries=$oc"
	sleep 1
done
left=$("${K[@]}" get --raw "/api/v1/nodes/$NODE/proxy/pods" | python3 -c "
import json, sys
print(sum(1 for p in json.load(sys.stdin)['items'] if p['metadata'].get('namespace') == '$NS'))")
[[ $left == 0 ]] || fail "the provider still runs $left pods of $NS"
kill "$SAMPLER" 2>/dev/null
wait "$SAMPLER" 2>/dev/null

# ---- bounds over every sample -------------------------------------------------------------------
log "checking $(wc -l <"$SAMPLES") metric samples against their bounds"
awk -v refs="$REFS" -v other="$OTHER" '
	NF < 18 { next }
	{
		known = $1; depth = $2; oc = $3; ls = $4; renewed = $16; api = $17; now = $18
		if (renewed == "-" || renewed + 0 == 0) { print "no Lease renewal on record at " now; bad = 1 }
		else if (now - renewed > 30) { print "Lease last renewed " now - renewed " s before " now; bad = 1 }
		if (now - renewed > ml) ml = now - renewed
		if ($1 == "-" || $2 == "-" || $5 == "-" || $6 == "-" || $7 == "-") { print "a series is missing: " $0; bad = 1 }
		if (known > '"$N"' + other) { print "pods_known " known " > pods bound " '"$N"' + other; bad = 1 }
		if ($5 > $6) { print "status writes out " $5 " > their bound " $6; bad = 1 }
		if ($7 > known) { print "status writes waiting " $7 " > pods_known " known; bad = 1 }
		for (i = 8; i <= 15; i += 2) {
			if ($i == "-" || $(i + 1) == "-") { print "an API client series is missing: " $0; bad = 1 }
			else if ($i > $(i + 1)) { print "API client gauge " i " at " $i " > its bound " $(i + 1); bad = 1 }
			if ($i > mq) mq = $i
		}
		if ($5 > ms) ms = $5
		if ($7 > mw) mw = $7
		if (depth > '"$N"' + other || depth > 100000) { print "reconcile_queue_depth " depth " > pods " '"$N"' + other; bad = 1 }
		if (oc != "" && oc > refs) { print "objcache_entries " oc " > referenced objects " refs; bad = 1 }
		if (ls != "" && ls != 0) { print "kubelet_api_log_streams " ls " != 0"; bad = 1 }
		if (known > mk) mk = known
		if (depth > md) md = depth
		if (oc > mo) mo = oc
	}
	END {
		printf "max pods_known %d, max reconcile_queue_depth %d, max objcache_entries %d\n", mk, md, mo
		printf "max status writes out %d, waiting %d; max API client queue or in flight %d\n", ms, mw, mq
		printf "oldest Lease renewal seen: %d s\n", ml
		exit bad
	}' "$SAMPLES" >&2 || fail "a queue or cache went past its bound"
# Status writes wait for their turn in the core rather than fill the API
# client's FIFO: nothing was refused for a full FIFO.
m=$(metrics) || fail "cannot read /metrics"
rejected=$(awk '$1 ~ /^kube_api_requests_rejected_total/ { n += $2 } END { print n + 0 }' <<<"$m")
[[ $rejected == 0 ]] || fail "the API client refused $rejected requests: its FIFO was full"
grep '^status_writes_total' <<<"$m" >&2
grep -q 'level=error' "$WORK/core.log" && { grep 'level=error' "$WORK/core.log" | head -n 5; fail "vkc-core logged errors"; }
echo "test_scale: $N pods Running, provider ran each once, all deleted, bounds held"
