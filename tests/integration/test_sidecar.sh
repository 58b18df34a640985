#!/usr/bin/env bash
# tests/integration/test_sidecar.sh [BUILD] -- the sidecar topology: vkc-core
# and its provider as two independent processes sharing a Unix socket
# (--provider-socket), on a real control plane (the shared one of
# tests/run-tests.sh when VKC_CLUSTER_DIR is set, else one of its own).
#
#  (a) contrib/deploy (one pod: core + mock provider, RBAC, namespace)
#      passes a server-side dry run, and the RBAC it grants is enough: a
#      core running as its ServiceAccount registers a node and runs a pod
#      that needs a ConfigMap, with no request refused.
#  (b) the same topology as two processes, checked through the provider's
#      own GetPods (Python stubs from proto/) and the API server:
#      - provider SIGKILLed and started again after the core noticed: the
#        core waits (node and pods stay), reconnects and recreates every pod
#        in the new, empty provider, once;
#      - provider SIGKILLed and started again at once, between two pings
#        (gRPC reconnects by itself there): the core still resyncs;
#      - core SIGKILLed: the provider keeps its pods; the restarted core
#        adopts them (no CreatePod: reconcile_total has no create, the
#        provider's pods keep their start times, the API's their uids).
set -uo pipefail

# shellcheck source=tests/integration/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
BUILD=$(lib_build_dir "${1:-}")
cd "$LIB_ROOT" || exit 1
BIN=$BUILD/bin
NS=vkc-sidecar-test
NPODS=5
WORK=$(mktemp -d /tmp/vkc-sidecar-XXXXXX) # 0700
CORE_PID=
PROV_PID=
RBAC_CORE_PID=
OWN_CLUSTER=
DEPLOY_NS_CREATED=
RBAC_APPLIED=
RBAC_NODE=vkc-sidecar-rbac

log() { echo "[test_sidecar $(date +%T)] $*" >&2; }
fail() {
	echo "FAIL: $*" >&2
	for f in core.log provider.log rbac-core.log; do
		[[ -s $WORK/$f ]] && { echo "--- $f" >&2; tail -n 30 "$WORK/$f" >&2; }
	done
	exit 1
}

cleanup() {
	if [[ -n ${K:-} ]]; then
		"${K[@]}" delete namespace "$NS" --wait=false >/dev/null 2>&1
		"${K[@]}" -n "$NS" delete pods --all --grace-period=0 --force >/dev/null 2>&1
		if [[ -n $RBAC_APPLIED ]]; then
			"${K[@]}" delete -f contrib/deploy/rbac.yaml -f contrib/deploy/serviceaccount.yaml \
				--ignore-not-found >/dev/null 2>&1
			"${K[@]}" -n "$NS" delete pods --all --grace-period=0 --force >/dev/null 2>&1
			lib_delete_node "$RBAC_NODE"
		fi
		[[ -n $DEPLOY_NS_CREATED ]] &&
			"${K[@]}" delete -f contrib/deploy/namespace.yaml --wait=false >/dev/null 2>&1
	fi
	lib_stop "$RBAC_CORE_PID" TERM 10
	lib_stop "$CORE_PID" TERM 10
	lib_stop "$PROV_PID" TERM 10
	[[ -n $OWN_CLUSTER ]] && tests/cluster/down.sh "$OWN_CLUSTER" >/dev/null 2>&1
	rm -rf "$WORK"
}
trap cleanup EXIT

[[ -x $BIN/vkc-core && -x $BIN/vkc-provider-mock ]] || fail "build $BIN first"

# ---- the control plane ---------------------------------------------------------------
lib_use_cluster "$WORK"
lib_kubectl 30s
NODE=$VKC_NODE_NAME

# Python stubs for talking to the provider directly, as the core does.
mkdir -p "$WORK/py"
protoc --proto_path=proto --python_out="$WORK/py" --grpc_python_out="$WORK/py" \
	--plugin=protoc-gen-grpc_python=/usr/bin/grpc_python_plugin proto/provider.proto ||
	fail "cannot generate the Python stubs"
# provider_pods SOCKET: one line per pod the provider has:
#   namespace/name uid phase startTime
provider_pods() {
	/usr/bin/python3 - "$WORK/py" "$1" <<'PY'
import json, sys
sys.path.insert(0, sys.argv[1])
import grpc, provider_pb2 as pb, provider_pb2_grpc as pbg
with grpc.insecure_channel("unix:" + sys.argv[2]) as ch:
    for raw in pbg.ProviderStub(ch).GetPods(pb.GetPodsRequest(), timeout=10).pods_json:
        p = json.loads(raw)
        m, st = p["metadata"], p.get("status", {})
        print(f'{m["namespace"]}/{m["name"]} {m["uid"]} {st.get("phase", "-")} {st.get("startTime", "-")}')
PY
}
# api_pods: the same lines for the API's pods of the test namespace.
api_pods() {
	"${K[@]}" -n "$NS" get pods -o \
		'jsonpath={range .items[*]}{.metadata.namespace}/{.metadata.name} {.metadata.uid} {.status.phase} {.metadata.deletionTimestamp}{"\n"}{end}' |
		sort
}

# ==== (a) contrib/deploy ==================================================================
log "(a) contrib/deploy: server-side dry run"
out=$("${K[@]}" kustomize contrib/deploy) || fail "kubectl kustomize contrib/deploy"
for kind in Namespace ServiceAccount ClusterRole ClusterRoleBinding Role RoleBinding Deployment; do
	grep -q "^kind: $kind$" <<<"$out" || fail "contrib/deploy renders no $kind"
done
# A dry run creates nothing, so the objects inside the namespace need the
# namespace for real.
if ! "${K[@]}" get namespace vkc-system >/dev/null 2>&1; then
	"${K[@]}" apply -f contrib/deploy/namespace.yaml >/dev/null || fail "cannot create vkc-system"
	DEPLOY_NS_CREATED=1
fi
out=$("${K[@]}" apply --dry-run=server -k contrib/deploy 2>&1) || fail "dry run of contrib/deploy: $out"
n=$(grep -c "(server dry run)" <<<"$out")
((n == 7)) || fail "dry run applied $n objects, want 7: $out"
"${K[@]}" get deployment -n vkc-system vkc >/dev/null 2>&1 && fail "the dry run created the Deployment"

# The RBAC for real, and a core running with the ServiceAccount's token: a
# verb missing from the ClusterRole shows up as a refused request.
log "(a) the ClusterRole is enough for a core running as the ServiceAccount"
RBAC_APPLIED=1
"${K[@]}" apply -f contrib/deploy/serviceaccount.yaml -f contrib/deploy/rbac.yaml >/dev/null ||
	fail "cannot apply the ServiceAccount and RBAC"
for _ in $(seq 150); do
	secret=$("${K[@]}" -n vkc-system get sa vkc -o 'jsonpath={.secrets[0].name}' 2>/dev/null)
	[[ -n $secret ]] && break
	sleep 0.2
done
[[ -n $secret ]] || fail "the ServiceAccount vkc got no token"
token=$("${K[@]}" -n vkc-system get secret "$secret" -o 'jsonpath={.data.token}' | base64 -d)
[[ -n $token ]] || fail "empty ServiceAccount token"
cat >"$WORK/sa.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "$VKC_APISERVER", certificate-authority: "$VKC_CA_CERT"}}]
users: [{name: vkc, user: {token: "$token"}}]
contexts: [{name: c, context: {cluster: c, user: vkc}}]
current-context: c
EOF
# What the core does, as the account: every verb of every rule is used by
# core/*.c (see rbac.yaml); anything beyond is refused.
SA=system:serviceaccount:vkc-system:vkc
for check in "create nodes" "patch nodes --subresource=status" "watch pods" "delete pods" \
	"update pods --subresource=status" "create events" "patch events" "list secrets" \
	"watch configmaps" "list services" "create serviceaccounts --subresource=token" \
	"create tokenreviews.authentication.k8s.io" \
	"create subjectaccessreviews.authorization.k8s.io" "-n kube-node-lease update leases.coordination.k8s.io"; do
	# shellcheck disable=SC2086
	[[ $("${K[@]}" auth can-i --as "$SA" $check 2>/dev/null) == yes ]] || fail "the ClusterRole does not allow: $check"
done
for check in "get secrets" "create pods" "delete nodes" "update nodes" "patch pods --subresource=status" \
	"-n default update leases.coordination.k8s.io"; do
	# shellcheck disable=SC2086
	[[ $("${K[@]}" auth can-i --as "$SA" $check 2>/dev/null) == no ]] || fail "the ClusterRole allows more than needed: $check"
done

lib_fresh_namespace "$NS" 30 # no token: the pods say what is missing
"${K[@]}" -n "$NS" create configmap sidecar-config --from-literal=greeting=hello >/dev/null ||
	fail "cannot create the ConfigMap"

RPORT=$(lib_free_port)
"$BIN/vkc-core" --nodename "$RBAC_NODE" --kubeconfig "$WORK/sa.kubeconfig" \
	--provider-cmd "$BIN/vkc-provider-mock" --socket-dir "$WORK/rbac-run" \
	--listen-port "$RPORT" --node-ip 127.0.0.1 --authentication-token-webhook \
	--authorization-mode Webhook --log-level debug >"$WORK/rbac-core.log" 2>&1 &
RBAC_CORE_PID=$!
lib_wait_node_ready "$RBAC_NODE" "$RBAC_CORE_PID" 120
"${K[@]}" -n "$NS" apply -f - >/dev/null <<EOF || fail "cannot create the RBAC pod"
apiVersion: v1
kind: Pod
metadata: {name: rbac-pod}
spec:
  nodeName: $RBAC_NODE
  tolerations: [{operator: Exists}]
  containers:
  - name: app
    image: busybox
    env: [{name: GREETING, valueFrom: {configMapKeyRef: {name: sidecar-config, key: greeting}}}]
EOF
"${K[@]}" -n "$NS" wait --for=condition=Ready pod/rbac-pod --timeout=60s >/dev/null ||
	fail "the pod on $RBAC_NODE (ServiceAccount credentials) never became Ready"
"${K[@]}" -n "$NS" delete pod rbac-pod --timeout=60s >/dev/null || fail "cannot delete the RBAC pod"
# The heartbeat lease exists.
[[ -n $("${K[@]}" -n kube-node-lease get lease "$RBAC_NODE" -o 'jsonpath={.spec.renewTime}' 2>/dev/null) ]] ||
	fail "no lease for $RBAC_NODE"
if grep -Eq 'status=403|Forbidden|forbidden' "$WORK/rbac-core.log"; then
	grep -E 'status=403|Forbidden|forbidden' "$WORK/rbac-core.log" | head -n 5 >&2
	fail "the API server refused a request of the core running as the ServiceAccount"
fi
lib_stop "$RBAC_CORE_PID" TERM 10
RBAC_CORE_PID=
"${K[@]}" delete node "$RBAC_NODE" >/dev/null 2>&1
log "(a) ok: dry run of 7 objects; the ClusterRole runs a node and a pod, nothing refused"

# ==== (b) the sidecar topology as two processes ===========================================
PDIR=$WORK/provider # 0700, like the pod's emptyDir is private to the pod
mkdir -m 700 "$PDIR"
PSOCK=$PDIR/provider.sock
KPORT=$(lib_free_port)

start_provider() {
	"$BIN/vkc-provider-mock" --listen "unix:$PSOCK" >>"$WORK/provider.log" 2>&1 &
	PROV_PID=$!
	for _ in $(seq 100); do [[ -S $PSOCK ]] && provider_pods "$PSOCK" >/dev/null 2>&1 && return 0; sleep 0.1; done
	fail "the provider does not serve on $PSOCK"
}
start_core() {
	"$BIN/vkc-core" --nodename "$NODE" --kubeconfig "$VKC_NODE_KUBECONFIG" \
		--provider-socket "$PSOCK" --socket-dir "$WORK/core" \
		--listen-port "$KPORT" --node-ip 127.0.0.1 --client-ca-file "$VKC_CA_CERT" \
		--tls-cert-file "$VKC_NODE_KUBELET_CERT" --tls-private-key-file "$VKC_NODE_KUBELET_KEY" \
		>>"$WORK/core.log" 2>&1 &
	CORE_PID=$!
}
kill9() { # PID: SIGKILL and reap
	kill -KILL "$1" 2>/dev/null
	wait "$1" 2>/dev/null
}
# wait_provider_matches WHAT: until the provider has exactly the API's pods of
# the test namespace (by name and uid), each Running, and nothing else of it.
wait_provider_matches() {
	local want got
	for i in $(seq 120); do
		want=$(api_pods | awk '$4 == "" {print $1, $2, "Running"}')
		got=$(provider_pods "$PSOCK" 2>/dev/null | awk -v ns="$NS/" 'index($1, ns) == 1 {print $1, $2, $3}' | sort)
		[[ $(wc -l <<<"$want") -eq $NPODS && $want == "$got" ]] && return 0
		((i == 120)) && fail "$1: provider has
$got
the API has
$want"
		sleep 0.5
	done
}
metrics() { lib_node_metrics "$NODE"; }
count_metric() { # NAME LABEL-SUBSTRING: sum of the matching series (0 if none)
	metrics | awk -v n="$1" -v l="$2" 'index($1, n "{") == 1 && index($1, l) {s += $2} END {print s + 0}'
}

log "(b) provider on $PSOCK, vkc-core --provider-socket as $NODE"
start_provider
start_core
lib_wait_node_ready "$NODE" "$CORE_PID" 120
for i in $(seq "$NPODS"); do
	cat <<EOF
---
apiVersion: v1
kind: Pod
metadata: {name: side-$i, labels: {app: sidecar}}
spec:
  nodeName: $NODE
  tolerations: [{operator: Exists}]
  containers: [{name: app, image: busybox}]
EOF
done | "${K[@]}" -n "$NS" apply -f - >/dev/null || fail "cannot create the pods"
"${K[@]}" -n "$NS" wait --for=condition=Ready pod -l app=sidecar --timeout=60s >/dev/null ||
	fail "the pods never became Ready"
wait_provider_matches "first start"
uids0=$(api_pods | awk '{print $1, $2}')
# The kubelet API's /pods lists the provider's pods.
raw=$("${K[@]}" get --raw "/api/v1/nodes/$NODE/proxy/pods") || fail "kubelet API /pods"
for i in $(seq "$NPODS"); do
	grep -q "\"name\":\"side-$i\"" <<<"$raw" || fail "kubelet API /pods lacks side-$i"
done
log "(b) $NPODS pods Running in the provider"

# -- provider SIGKILLed; started again once the core noticed --------------------------------
lines=$(wc -l <"$WORK/core.log")
kill9 "$PROV_PID"
PROV_PID=
# Three missed pings (2 s apart) and the core gives the provider up.
for i in $(seq 60); do
	grep -q "provider hung" <<<"$(tail -n +$((lines + 1)) "$WORK/core.log")" && break
	((i == 60)) && fail "the core did not notice the provider is gone"
	sleep 0.5
done
sleep 3 # the core waits: it must not give up the node or the pods
kill -0 "$CORE_PID" 2>/dev/null || fail "vkc-core exited while the provider was down"
# The NotReady status is a write of its own, after the log line: polled.
deadline=$((SECONDS + 30))
while :; do
	reason=$("${K[@]}" get node "$NODE" -o 'jsonpath={.status.conditions[?(@.type=="Ready")].reason}') ||
		fail "the node went away while the provider was down"
	[[ $reason == ProviderDown ]] && break
	((SECONDS < deadline)) || fail "node Ready reason while the provider is down: $reason"
	sleep 0.5
done
[[ $(api_pods | awk '$4 == "" {print $1, $2}') == "$uids0" ]] || fail "pods changed in the API while the provider was down"
start_provider
wait_provider_matches "provider restarted after a pause"
[[ $(api_pods | awk '{print $1, $2}') == "$uids0" ]] || fail "pods were recreated in the API"
log "(b) provider killed, the core gave it up (node NotReady, pods kept), provider restarted: the $NPODS pods were recreated"

# -- provider SIGKILLed and started again at once: between two pings -----------------------
# The status stream breaks and makes the core list the pods again, but only
# the supervisor handshakes: without it the new provider would not know the
# node or where the core's callback service is.
plines=$(wc -l <"$WORK/provider.log")
kill9 "$PROV_PID"
start_provider
wait_provider_matches "provider restarted between pings"
for i in $(seq 40); do
	hs=$(tail -n +$((plines + 1)) "$WORK/provider.log" | grep -c "msg=handshake")
	((hs >= 1)) && break
	sleep 0.25
done
((hs == 1)) || fail "the new provider got $hs handshakes, want 1"
[[ $(api_pods | awk '{print $1, $2}') == "$uids0" ]] || fail "pods were recreated in the API"
log "(b) provider killed and restarted at once: the core noticed and resynced"

# -- core SIGKILLed: the provider keeps its pods; a new core adopts them -------------------
# The counter works: this core created every pod three times (first start,
# and once per empty provider).
creates=$(count_metric reconcile_total 'op="create",result="ok"')
((creates >= 3 * NPODS)) || fail "reconcile_total counts $creates creates, want >= $((3 * NPODS)): $(metrics | grep reconcile_total)"
# Each empty provider ran the pods' containers again: the API counts those
# as restarts (the kubelet's rule; core/podstatus.c). Wait until the counts
# are written and settled: the core restart must leave them as they are.
# Settled: the same for 5 s (not two reads half a second apart, which one
# pod's status write, a second late on a loaded machine, could fall between).
restart_counts() {
	"${K[@]}" -n "$NS" get pods -o 'jsonpath={range .items[*]}{.status.containerStatuses[0].restartCount}{" "}{end}'
}
restarts0=
since=$SECONDS
deadline=$((SECONDS + 90))
while :; do
	r=$(restart_counts)
	if [[ $r != "$restarts0" ]]; then
		restarts0=$r
		since=$SECONDS
	fi
	[[ $r =~ ^([1-9][0-9]* )+$ ]] && ((SECONDS - since >= 5)) && break
	((SECONDS < deadline)) || fail "restart counts after the provider restarts: '$r', want all >= 1 and settled"
	sleep 0.5
done
before=$(provider_pods "$PSOCK" | grep "^$NS/" | sort)
kill9 "$CORE_PID"
CORE_PID=
sleep 3
after=$(provider_pods "$PSOCK" | grep "^$NS/" | sort)
[[ $(wc -l <<<"$after") -eq $NPODS && $after == "$before" ]] ||
	fail "the provider's pods changed without a core:
$before
->
$after"
lines=$(wc -l <"$WORK/core.log")
start_core
for i in $(seq 120); do
	kill -0 "$CORE_PID" 2>/dev/null || fail "the restarted vkc-core exited"
	resynced=$(tail -n +$((lines + 1)) "$WORK/core.log" | grep "provider resynced" | grep -v "api_pods=0 " | head -n 1)
	[[ -n $resynced ]] && break
	((i == 120)) && fail "the restarted core never resynced with the API's pods"
	sleep 0.5
done
[[ $resynced == *"provider_pods=$NPODS to_create=0 to_delete=0"* ]] ||
	fail "the restarted core did not adopt the pods: $resynced"
sleep 2 # a create or delete would come right after the resync
creates=$(count_metric reconcile_total 'op="create"')
deletes=$(count_metric reconcile_total 'op="delete"')
((creates == 0 && deletes == 0)) ||
	fail "the restarted core created $creates and deleted $deletes pods instead of adopting: $(metrics | grep reconcile_total)"
wait_provider_matches "after the core restart"
now=$(provider_pods "$PSOCK" | grep "^$NS/" | sort)
[[ $now == "$before" ]] || fail "the provider's pods changed across the core restart:
$before
->
$now"
[[ $(api_pods | awk '{print $1, $2}') == "$uids0" ]] || fail "pods were recreated in the API"
restarts=$(restart_counts)
[[ $restarts == "$restarts0" ]] || fail "restart counts changed across the core restart: $restarts0 -> $restarts"
log "(b) core killed and restarted: the $NPODS pods were adopted (no create, no delete)"

# -- pods still work end to end: delete one through the API ---------------------------------
"${K[@]}" -n "$NS" delete pod side-1 --timeout=60s >/dev/null || fail "cannot delete side-1"
for i in $(seq 40); do
	grep -q "^$NS/side-1 " <<<"$(provider_pods "$PSOCK")" || break
	((i == 40)) && fail "side-1 is still in the provider after its deletion"
	sleep 0.25
done
echo "test_sidecar: ok"
