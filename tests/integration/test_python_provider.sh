#!/usr/bin/env bash
# tests/integration/test_python_provider.sh [BUILD] -- the Python provider
# behind vkc-core, on a real control plane (the shared one of
# tests/run-tests.sh when VKC_CLUSTER_DIR is set, else one of its own).
#
# vkc-core runs as system:node:NAME (Node authorizer) and starts
# contrib/python-provider/provider.py. Checked through the API server and
# kubectl, as a user would: the node becomes Ready; a pod bound to it, with a
# ConfigMap volume, reaches Running; `kubectl logs` shows its output;
# `kubectl exec` runs commands (stdout, stdin, exit code) and sees the
# ConfigMap's file, which the provider could only get through the core;
# a graceful delete removes the pod from the API and its processes and files
# from the host.
set -uo pipefail

# shellcheck source=tests/integration/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
BUILD=$(lib_build_dir "${1:-}")
cd "$LIB_ROOT" || exit 1
BIN=$BUILD/bin
NS=python-provider-test
POD=py-hello
WORK=$(mktemp -d /tmp/vkc-python-XXXXXX)
CORE_PID=
OWN_CLUSTER=
fail() { echo "FAIL: $*" >&2; lib_core_log "$WORK/core.log" >&2; exit 1; }
log() { echo "[test_python_provider $(date +%T)] $*" >&2; }

cleanup() {
	if [[ -n ${K:-} ]]; then
		"${K[@]}" delete namespace "$NS" --wait=false >/dev/null 2>&1
	fi
	lib_stop "$CORE_PID"
	[[ -n $OWN_CLUSTER ]] && tests/cluster/down.sh "$OWN_CLUSTER" >/dev/null 2>&1
	rm -rf "$WORK"
}
trap cleanup EXIT

[[ -x $BIN/vkc-core ]] || fail "build $BIN/vkc-core first"

# ---- the control plane -------------------------------------------------------------
lib_use_cluster "$WORK"
lib_kubectl 30s
NODE=$VKC_NODE_NAME
lib_fresh_namespace "$NS" 30 # no token: the pods say what is missing

# ---- vkc-core with the Python provider ------------------------------------------------
KPORT=$(lib_free_port)
MPORT=$(lib_free_port)
log "starting vkc-core as $NODE with the Python provider (kubelet port $KPORT)"
VKC_PYTHON_STUBS="$LIB_ROOT/$BUILD/python" "$BIN/vkc-core" --kubeconfig "$VKC_NODE_KUBECONFIG" \
	--nodename "$NODE" --provider-cmd "/usr/bin/python3 $LIB_ROOT/contrib/python-provider/provider.py" \
	--socket-dir "$WORK/sock" --listen-port "$KPORT" --metrics-addr "127.0.0.1:$MPORT" \
	--node-ip 127.0.0.1 --client-ca-file "$VKC_CA_CERT" \
	--tls-cert-file "$VKC_NODE_KUBELET_CERT" --tls-private-key-file "$VKC_NODE_KUBELET_KEY" \
	>"$WORK/core.log" 2>&1 &
CORE_PID=$!
lib_wait_node_ready "$NODE" "$CORE_PID" 120
log "node $NODE is Ready"

# ---- a pod -------------------------------------------------------------------------------
"${K[@]}" -n "$NS" create configmap py-config --from-literal=greeting="hello from a configmap" \
	>/dev/null || fail "cannot create the ConfigMap"
"${K[@]}" -n "$NS" apply -f - >/dev/null <<EOF || fail "cannot create the pod"
apiVersion: v1
kind: Pod
metadata:
  name: $POD
spec:
  nodeName: $NODE
  tolerations: [{operator: Exists}]
  terminationGracePeriodSeconds: 5
  containers:
  - name: app
    image: none
    command: ["sh", "-c", "echo hello from python; i=0; while true; do i=\$((i+1)); echo tick \$i; sleep 1; done"]
    env: [{name: GREETING, value: "hi there"}]
    volumeMounts: [{name: config, mountPath: /etc/config}]
  volumes:
  - name: config
    configMap: {name: py-config}
EOF
"${K[@]}" -n "$NS" wait --for=condition=Ready "pod/$POD" --timeout=60s >/dev/null ||
	{ "${K[@]}" -n "$NS" get pod "$POD" -o yaml >&2; fail "pod $POD never became Ready"; }
log "pod $POD is Running"

# ---- logs ----------------------------------------------------------------------------------
deadline=$((SECONDS + 60))
while :; do
	out=$("${K[@]}" -n "$NS" logs "$POD" 2>&1)
	grep -q "^tick 2$" <<<"$out" && break
	((SECONDS < deadline)) || fail "kubectl logs: $out"
	sleep 0.5
done
[[ $(head -n 1 <<<"$out") == "hello from python" ]] || fail "kubectl logs starts with: $(head -n 1 <<<"$out")"
out=$("${K[@]}" -n "$NS" logs "$POD" --tail=1 --timestamps 2>&1)
[[ $out =~ ^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]+Z\ tick\ [0-9]+$ ]] || fail "kubectl logs --tail=1 --timestamps: $out"
log "kubectl logs works"

# ---- exec --------------------------------------------------------------------------------
# shellcheck disable=SC2016 # expanded by the pod's shell
out=$("${K[@]}" -n "$NS" exec "$POD" -- sh -c 'echo "$GREETING"' 2>&1)
[[ $out == "hi there" ]] || fail "kubectl exec echo: $out"
out=$(printf 'one\ntwo\n' | "${K[@]}" -n "$NS" exec -i "$POD" -- cat 2>&1)
[[ $out == $'one\ntwo' ]] || fail "kubectl exec -i cat: $out"
"${K[@]}" -n "$NS" exec "$POD" -- sh -c 'exit 3' >/dev/null 2>&1
rc=$?
[[ $rc == 3 ]] || fail "kubectl exec sh -c 'exit 3' exited $rc"
out=$("${K[@]}" -n "$NS" exec "$POD" -- cat etc/config/greeting 2>&1)
[[ $out == "hello from a configmap" ]] || fail "the ConfigMap volume: $out"
log "kubectl exec works"

# ---- delete --------------------------------------------------------------------------------
dir=$(ls -d "$WORK/sock/python-pods/${NS}_${POD}_"* 2>/dev/null)
[[ -d $dir ]] || fail "no pod directory under $WORK/sock/python-pods"
pid=$(cat "$dir/app.log.pid")
"${K[@]}" -n "$NS" delete pod "$POD" --timeout=60s >/dev/null || fail "kubectl delete pod"
deadline=$((SECONDS + 30))
while :; do
	[[ ! -d $dir ]] && ! kill -0 "$pid" 2>/dev/null && break
	((SECONDS < deadline)) || fail "after delete: directory $( [[ -d $dir ]] && echo kept || echo gone), process $pid $(kill -0 "$pid" 2>/dev/null && echo runs || echo gone)"
	sleep 0.2
done
log "delete removed the pod, its processes and its files"
echo "test_python_provider: 1 passed, 0 failed"
