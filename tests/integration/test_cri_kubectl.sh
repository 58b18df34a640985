#!/bin/bash
# vkc-provider-cri end to end: vkc-core runs the CRI provider on the test
# containerd (tests/cri/setup.sh) as node vkc-cri-e2e of the real test
# cluster, and everything is checked through the API server and kubectl, as
# a user reaches a node's containers:
#   - a pod scheduled onto the node (nodeSelector + the virtual-kubelet
#     toleration; hostNetwork, as the test containerd has no CNI) with a
#     ConfigMap volume and a Secret env var reaches Ready, with
#     containerStatuses that name the image, the containerd container and
#     say started/ready;
#   - kubectl logs (all, --tail=1, -f) show the ConfigMap/Secret output;
#   - kubectl exec: exit codes, stdin EOF reaching the container (-i), the
#     container's env and volumes, a terminal (-it, under script(1));
#   - kubectl port-forward to busybox httpd listening in the pod;
#   - a container exiting 1 under restartPolicy OnFailure: restartCount
#     grows, lastState.terminated.exitCode 1, logs --previous;
#   - a graceful kubectl delete removes the pods from the API and their
#     containers and sandboxes from containerd;
#   - SIGTERM: vkc-core exits 0, its provider is gone, the Node stays with
#     Ready=False/KubeletStopped.
# Its own node name (a client certificate for system:node:vkc-cri-e2e is
# minted from the cluster's CA unless up.sh made one), namespace, provider
# root directory and cgroup root, so it may share the cluster and the
# containerd with other tests. The trap deletes the pods through the core
# (or, if the core is gone, removes the namespace's sandboxes through CRI),
# stops the core, and deletes the namespace, the Node and its Lease.
# The node also gets node.kubernetes.io/network-unavailable:NoSchedule here:
# the provider reports NetworkUnavailable=True without CNI.
#   tests/integration/test_cri_kubectl.sh BUILD
set -euo pipefail

build=${1:-${BUILD:-build}}
: "${VKC_CLUSTER_DIR:?needs a running test cluster (tests/cluster/up.sh)}"
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
cd "$repo"
# shellcheck source=tests/integration/lib.sh
. "$here/lib.sh"
bin=$(cd "$build/bin" && pwd)
# shellcheck disable=SC1091
. "$VKC_CLUSTER_DIR/env"

node=vkc-cri-e2e
ns=vkc-cri-e2e
pod=cri-e2e
crasher=cri-crasher
image=docker.io/library/busybox:latest
lib_kubectl 30s
kn=("${K[@]}" -n "$ns")
# no request timeout: logs -f, exec, port-forward (each bounded by timeout(1))
kw=("$VKC_KUBECTL" --kubeconfig "$VKC_ADMIN_KUBECONFIG" -n "$ns")
dir=$(mktemp -d /tmp/vkc-cri-kubectl.XXXXXX)
T0=$SECONDS
core='' prov='' pf='' follow='' sock='' endpoint=''

log() { printf '[cri-kubectl %3ss] %s\n' "$((SECONDS - T0))" "$*"; }

fail() { echo "FAIL: $*"; lib_core_log "$dir/core.log"; exit 1; }

# Containers (sandboxes included) the CRI plugin made for this namespace.
ctr_ns() { ctr --address "$sock" --namespace k8s.io "$@"; }
ns_containers() { # [UID]: ids of the containers of this namespace's pods (or one pod)
    local filter="labels.\"io.kubernetes.pod.namespace\"==$ns"
    [ -n "${1:-}" ] && filter="labels.\"io.kubernetes.pod.uid\"==$1"
    ctr_ns containers ls -q "$filter"
}

# What a failed run left in containerd: the sandboxes of this namespace,
# stopped and removed through CRI (with their containers), as the provider
# would have. Python stubs of the provider's cri.proto, made on demand.

signalled=0
cleanup() {
    local rc=$? left
    set +e
    lib_stop "$pf"
    lib_stop "$follow"
    if [ -n "$core" ] && kill -0 "$core" 2>/dev/null; then
        # With the core up, the provider removes the containers. Not when
        # a timeout signalled the whole process group, the core included.
        if [ "$signalled" = 0 ]; then
            "${kn[@]}" delete pod --all --grace-period=1 --timeout=30s >/dev/null 2>&1 ||
                "${kn[@]}" delete pod --all --grace-period=0 --force >/dev/null 2>&1
        fi
        lib_stop "$core" TERM 20
    fi
    # A provider outlives its core only if PR_SET_PDEATHSIG failed.
    if [ -n "$prov" ] && [ "$(cat "/proc/$prov/comm" 2>/dev/null)" = vkc-provider-cr ]; then
        echo "WARNING: provider $prov still running after the core; killing it"
        kill -KILL "$prov"
    fi
    if [ -n "$sock" ] && [ -n "$(ns_containers 2>/dev/null)" ]; then
        lib_cri_scrub "$endpoint" "$ns" "$dir/cri-py"
        left=$(ns_containers 2>/dev/null)
        [ -n "$left" ] && echo "WARNING: containers of namespace $ns left in containerd: $left"
    fi
    # Pods whose node is gone would hold the namespace in Terminating.
    "${kn[@]}" delete pod --all --grace-period=0 --force >/dev/null 2>&1
    "${K[@]}" delete namespace "$ns" --wait=false >/dev/null 2>&1
    lib_delete_node "$node"
    # Volumes the provider mounted (tmpfs for Secrets) if it could not.
    grep -o " $dir/[^ ]*" /proc/mounts | xargs -r -n1 umount -l
    rm -rf "$dir"
    exit "$rc"
}
trap cleanup EXIT
trap 'signalled=1; exit 130' INT TERM

jp() { "${kn[@]}" get pod "$1" -o "jsonpath=$2" 2>/dev/null; } # POD JSONPATH

for b in vkc-core vkc-provider-cri; do [ -x "$bin/$b" ] || fail "build $bin/$b first"; done

# ---- the runtime ----------------------------------------------------------------------
endpoint=$(lib_cri_endpoint "$dir/setup.log") || true
[ -n "$endpoint" ] || { cat "$dir/setup.log"; fail "no CRI runtime: tests/cri/setup.sh failed"; }
sock=${endpoint#unix://}
ctr_ns version >/dev/null 2>&1 || fail "ctr cannot reach containerd at $sock"
images=$(ctr_ns images ls -q) || fail "ctr cannot list images"
grep -qx "$image" <<<"$images" || fail "image $image is not in containerd"
log "containerd at $endpoint"

# ---- the node's identity ----------------------------------------------------------------
# up.sh makes certificates for VKC_NODES only; otherwise mint the client
# certificate of system:node:$node from the cluster's CA. The API server does
# not check the kubelet serving certificate: the default node's does.
lib_node_identity "$node" "$dir"

# ---- namespace, ConfigMap, Secret ---------------------------------------------------------
lib_delete_node "$node"
# 1.20 admits pods once the namespace's service account has its token.
lib_fresh_namespace "$ns" 20 || fail "no token for $ns/default after 20 s"
"${kn[@]}" create configmap e2e-config --from-literal=greeting="hello from a configmap" >/dev/null ||
    fail "cannot create the ConfigMap"
"${kn[@]}" create secret generic e2e-secret --from-literal=token="s3cr3t-t0ken" >/dev/null ||
    fail "cannot create the Secret"
# 1.20 admits pods once the namespace's service account has its token.

# ---- vkc-core with vkc-provider-cri ---------------------------------------------------------
port=$(lib_free_port)
mport=$(lib_free_port)
"$bin/vkc-core" --nodename "$node" --kubeconfig "$NODE_KUBECONFIG" \
    --socket-dir "$dir/run" --listen-port "$port" --metrics-addr "127.0.0.1:$mport" \
    --node-ip 127.0.0.1 --tls-cert-file "$NODE_SERVING_CERT" --tls-private-key-file "$NODE_SERVING_KEY" \
    --client-ca-file "$VKC_CA_CERT" \
    --provider-cmd "$bin/vkc-provider-cri --runtime-endpoint $endpoint --root-dir $dir/root --cgroup-root /vkc-cri-e2e --volume-sync-period 2" \
    2>"$dir/core.log" &
core=$!
lib_wait_node_ready "$node" "$core" 120
prov=$(lib_child_of "$core") || true
[ "$(cat "/proc/$prov/comm" 2>/dev/null)" = vkc-provider-cr ] ||
    fail "vkc-core's child is not vkc-provider-cri (pid '$prov')"
taint=$("${K[@]}" get node "$node" -o 'jsonpath={.spec.taints[?(@.key=="virtual-kubelet.io/provider")].effect}')
[ "$taint" = NoSchedule ] || fail "node taint virtual-kubelet.io/provider: '$taint', want NoSchedule"
log "node $node Ready (core $core, provider $prov)"

# ---- the pods ----------------------------------------------------------------------------------
hport=$(lib_free_port) # httpd's, on the host network
# The crasher first: its back-off runs while the main pod is checked.
"${kn[@]}" apply -f - >/dev/null <<EOF || fail "cannot create pod $crasher"
{"apiVersion":"v1","kind":"Pod","metadata":{"name":"$crasher"},
 "spec":{"nodeName":"$node","hostNetwork":true,"restartPolicy":"OnFailure",
  "terminationGracePeriodSeconds":2,
  "tolerations":[{"key":"virtual-kubelet.io/provider","operator":"Exists","effect":"NoSchedule"}],
  "containers":[{"name":"crash","image":"$image","imagePullPolicy":"IfNotPresent",
   "command":["sh","-c","echo crashing; exit 1"]}]}}
EOF
"${kn[@]}" apply -f - >/dev/null <<EOF || fail "cannot create pod $pod"
apiVersion: v1
kind: Pod
metadata:
  name: $pod
spec:
  nodeSelector: {kubernetes.io/hostname: $node}
  # Without CNI the provider reports NetworkUnavailable=True, which the node
  # lifecycle controller turns into this taint: host-network pods tolerate
  # it, as the DaemonSet controller makes them.
  tolerations:
  - {key: virtual-kubelet.io/provider, operator: Exists, effect: NoSchedule}
  - {key: node.kubernetes.io/network-unavailable, operator: Exists, effect: NoSchedule}
  hostNetwork: true
  # Far longer than the delete takes when SIGTERM reaches the container,
  # even on a loaded machine: the check below tells the two apart.
  terminationGracePeriodSeconds: 30
  containers:
  - name: app
    image: $image
    imagePullPolicy: IfNotPresent
    command:
    - sh
    - -c
    - |
      trap 'echo got SIGTERM; exit 0' TERM
      echo "config: \$(cat /etc/cfg/greeting)"
      echo "secret: \$SECRET_TOKEN"
      i=0
      while true; do i=\$((i+1)); echo "line \$i"; sleep 0.3; done
    env:
    - name: SECRET_TOKEN
      valueFrom: {secretKeyRef: {name: e2e-secret, key: token}}
    volumeMounts: [{name: cfg, mountPath: /etc/cfg}]
  - name: web
    image: $image
    imagePullPolicy: IfNotPresent
    command: [sh, -c, "trap 'exit 0' TERM; httpd -f -p 127.0.0.1:$hport -h /etc/cfg & wait"]
    volumeMounts: [{name: cfg, mountPath: /etc/cfg, readOnly: true}]
  volumes:
  - name: cfg
    configMap: {name: e2e-config}
EOF
"${kn[@]}" wait --for=condition=Ready "pod/$pod" --timeout=90s >/dev/null || {
    "${kn[@]}" get pod "$pod" -o yaml | sed 's/^/    pod| /'
    fail "pod $pod not Ready after 90 s"
}
[ "$(jp "$pod" '{.spec.nodeName}')" = "$node" ] || fail "pod $pod scheduled onto '$(jp "$pod" '{.spec.nodeName}')'"
[ "$(jp "$pod" '{.status.phase}')" = Running ] || fail "pod $pod phase $(jp "$pod" '{.status.phase}')"
uid=$(jp "$pod" '{.metadata.uid}')
for c in app web; do
    st="{.status.containerStatuses[?(@.name==\"$c\")]"
    [ "$(jp "$pod" "$st.ready}")" = true ] || fail "container $c: ready '$(jp "$pod" "$st.ready}")'"
    [ "$(jp "$pod" "$st.started}")" = true ] || fail "container $c: started '$(jp "$pod" "$st.started}")'"
    [ -n "$(jp "$pod" "$st.state.running.startedAt}")" ] || fail "container $c: not in state running"
    [ "$(jp "$pod" "$st.restartCount}")" = 0 ] || fail "container $c: restartCount $(jp "$pod" "$st.restartCount}")"
    [ "$(jp "$pod" "$st.image}")" = "$image" ] || fail "container $c: image '$(jp "$pod" "$st.image}")'"
    imageid=$(jp "$pod" "$st.imageID}")
    [[ $imageid == *sha256:[0-9a-f]* ]] || fail "container $c: imageID '$imageid'"
    cid=$(jp "$pod" "$st.containerID}")
    [[ $cid == containerd://* ]] || fail "container $c: containerID '$cid'"
    ctr_ns containers info "${cid#containerd://}" >/dev/null 2>&1 ||
        fail "container $c: $cid is not in containerd"
done
log "pod $pod Running on $node: containerStatuses ok ($imageid)"

# ---- logs ----------------------------------------------------------------------------------------
deadline=$((SECONDS + 60))
while :; do
    out=$("${kn[@]}" logs "$pod" -c app 2>&1) || true
    grep -q '^line 3$' <<<"$out" && break
    ((SECONDS < deadline)) || fail "kubectl logs: [$out]"
    sleep 0.5
done
[ "$(sed -n 1p <<<"$out")" = "config: hello from a configmap" ] || fail "kubectl logs, line 1: $(sed -n 1p <<<"$out")"
[ "$(sed -n 2p <<<"$out")" = "secret: s3cr3t-t0ken" ] || fail "kubectl logs, line 2: $(sed -n 2p <<<"$out")"
out=$("${kn[@]}" logs "$pod" -c app --tail=1 2>&1)
[[ $out =~ ^line\ [0-9]+$ ]] || fail "kubectl logs --tail=1: [$out]"
# -f: until 4 lines came, not for a fixed time (kubectl's start on a loaded
# machine can take seconds, and a fixed window then holds too few lines).
: >"$dir/follow" # read at once by the loop below, before the job may open it
"${kw[@]}" logs -f "$pod" -c app --tail=1 >"$dir/follow" 2>&1 &
follow=$!
start=$SECONDS
while [ "$(grep -c '^line [0-9]*$' "$dir/follow" || true)" -lt 4 ] && ((SECONDS - start < 60)) &&
    kill -0 "$follow" 2>/dev/null; do
    sleep 0.2
done
lib_stop "$follow"
follow=''
took=$((SECONDS - start))
# Whole lines only: kubectl may have been stopped in the middle of one.
head -n "$(wc -l <"$dir/follow")" "$dir/follow" >"$dir/follow.whole"
n=$(grep -c '^line [0-9]*$' "$dir/follow.whole" || true)
first=$(grep -m1 -o '[0-9]*$' "$dir/follow.whole" || echo 0)
last=$(tail -n 1 "$dir/follow.whole" | grep -o '[0-9]*$' || echo 0)
{ [ "$n" -ge 4 ] && [ "$last" -gt "$first" ]; } ||
    fail "kubectl logs -f: $n lines in $took s ($first..$last): $(head -c 300 "$dir/follow")"
log "kubectl logs, --tail=1, -f ($n lines in $took s) ok"

# ---- exec -------------------------------------------------------------------------------------------
# shellcheck disable=SC2016 # expanded in the container
out=$(timeout 30 "${kw[@]}" exec "$pod" -c app -- sh -c 'echo "$SECRET_TOKEN $(cat /etc/cfg/greeting)"' 2>&1) ||
    fail "kubectl exec echo: $out"
[ "$out" = "s3cr3t-t0ken hello from a configmap" ] || fail "kubectl exec sees [$out]"
rc=0
timeout 30 "${kw[@]}" exec "$pod" -c app -- sh -c 'exit 3' >"$dir/exec.out" 2>&1 || rc=$?
[ "$rc" = 3 ] || fail "kubectl exec sh -c 'exit 3' exited $rc: $(cat "$dir/exec.out")"
rc=0
out=$(printf 'a\nb\n' | timeout 30 "${kw[@]}" exec -i "$pod" -c app -- cat 2>&1) || rc=$?
[ "$rc" = 0 ] || fail "kubectl exec -i cat exited $rc (124: stdin EOF never reached the container): [$out]"
[ "$out" = $'a\nb' ] || fail "kubectl exec -i cat printed [$out]"
rc=0
timeout 30 "${kw[@]}" exec "$pod" -c nosuch -- true >"$dir/exec.out" 2>&1 || rc=$?
{ [ "$rc" != 0 ] && grep -qi 'nosuch\|not found' "$dir/exec.out"; } ||
    fail "exec into an unknown container: rc $rc, $(cat "$dir/exec.out")"
if command -v script >/dev/null; then
    # script(1) gives kubectl the terminal -t wants, 24x80. Its stdin is a
    # FIFO opened read-write, never at EOF: at EOF script writes its
    # terminal's EOF character, a NUL once kubectl made the terminal raw.
    # The size reaches the container on the resize stream, after the command
    # started (as with the kubelet): the command waits for it (10 s at most,
    # not a fixed second a loaded machine may miss), then prints it.
    mkfifo "$dir/tty.in"
    rc=0
    # shellcheck disable=SC2016 # expanded in the container
    tty_cmd='tty; i=0; while [ "$(stty size)" != "24 80" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done; stty size; exit 5'
    timeout 30 script -qec "stty rows 24 cols 80; $(printf '%q ' "${kw[@]}") exec -it $pod -c app -- sh -c $(printf '%q' "$tty_cmd")" \
        /dev/null <>"$dir/tty.in" >"$dir/tty.out" 2>&1 || rc=$?
    tr -d '\r' <"$dir/tty.out" >"$dir/tty.txt"
    [ "$rc" = 5 ] || fail "kubectl exec -it exited $rc, want 5: $(cat "$dir/tty.txt")"
    grep -q '^/dev/pts/[0-9]*$' "$dir/tty.txt" || fail "kubectl exec -it: no terminal in the container: $(cat "$dir/tty.txt")"
    grep -qx '24 80' "$dir/tty.txt" || fail "kubectl exec -it: terminal size not 24x80: $(cat "$dir/tty.txt")"
    log "kubectl exec: exit code, -i with stdin EOF, -it (terminal, size) ok"
else
    log "kubectl exec: exit code, -i with stdin EOF ok (no script(1): -it skipped)"
fi

# ---- port-forward --------------------------------------------------------------------------------
# kubectl picks the local port itself (":PORT") and says which: one picked
# here could be taken before kubectl binds it.
timeout 120 "${kw[@]}" port-forward "pod/$pod" ":$hport" >"$dir/pf.log" 2>&1 &
pf=$!
fport=''
start=$SECONDS
while :; do
    fport=$(sed -n "s/^Forwarding from 127\.0\.0\.1:\([0-9]*\) -> $hport\$/\1/p;T;q" "$dir/pf.log")
    [ -n "$fport" ] && break
    kill -0 "$pf" 2>/dev/null || fail "kubectl port-forward exited: $(cat "$dir/pf.log")"
    ((SECONDS - start < 60)) || fail "kubectl port-forward not ready in 60 s: $(cat "$dir/pf.log")"
    sleep 0.2
done
for round in 1 2; do
    out=$(curl -sS --max-time 15 "http://127.0.0.1:$fport/greeting" 2>&1) ||
        fail "port-forward, request $round: $out; $(cat "$dir/pf.log")"
    [ "$out" = "hello from a configmap" ] || fail "port-forward, request $round: got [$out]"
done
lib_stop "$pf"
pf=''
log "kubectl port-forward to httpd in the pod ok"

# ---- restarts: exit 1 under OnFailure -------------------------------------------------------------
for i in $(seq 1 90); do
    count=$(jp "$crasher" '{.status.containerStatuses[0].restartCount}')
    [ "${count:-0}" -ge 2 ] && break
    [ "$i" = 90 ] && {
        "${kn[@]}" get pod "$crasher" -o yaml | sed 's/^/    pod| /'
        fail "$crasher: restartCount ${count:-none} after 45 s, want >= 2"
    }
    sleep 0.5
done
code=$(jp "$crasher" '{.status.containerStatuses[0].lastState.terminated.exitCode}')
[ "$code" = 1 ] || fail "$crasher: lastState.terminated.exitCode '$code', want 1"
reason=$(jp "$crasher" '{.status.containerStatuses[0].lastState.terminated.reason}')
[ "$reason" = Error ] || fail "$crasher: lastState.terminated.reason '$reason', want Error"
[ "$(jp "$crasher" '{.status.phase}')" = Running ] || fail "$crasher: phase $(jp "$crasher" '{.status.phase}'), want Running"
out=$("${kn[@]}" logs "$crasher" --previous 2>&1) || true
[ "$out" = crashing ] || fail "kubectl logs --previous $crasher: [$out]"
log "$crasher: restartCount $count, lastState.terminated exit 1 ($reason), logs --previous ok"

# ---- graceful delete ----------------------------------------------------------------------------
crasher_uid=$(jp "$crasher" '{.metadata.uid}')
[ -n "$(ns_containers "$uid")" ] || fail "no containers of pod $pod (uid $uid) in containerd before the delete"
start=$SECONDS
"${kn[@]}" delete pod "$pod" --timeout=60s >/dev/null || fail "kubectl delete pod $pod"
took=$((SECONDS - start))
"${kn[@]}" get pod "$pod" >/dev/null 2>&1 && fail "pod $pod still in the API after the delete"
# The trap's exit, not the 30 s grace period: SIGTERM reached the container.
[ "$took" -lt 30 ] || fail "kubectl delete pod $pod took $took s: SIGTERM did not reach the container?"
"${kn[@]}" delete pod "$crasher" --timeout=60s >/dev/null || fail "kubectl delete pod $crasher"
deadline=$((SECONDS + 60))
while :; do
    left=$(ns_containers)
    [ -z "$left" ] && break
    ((SECONDS < deadline)) || fail "containers of $pod/$crasher still in containerd 60 s after the delete: $left"
    sleep 0.2
done
[ -z "$(ns_containers "$uid")$(ns_containers "$crasher_uid")" ] || fail "containers left in containerd"
log "kubectl delete: pods gone from the API ($took s) and from containerd"

# ---- SIGTERM ----------------------------------------------------------------------------------------
kill -TERM "$core"
for i in $(seq 1 200); do
    kill -0 "$core" 2>/dev/null || break
    [ "$i" = 200 ] && fail "vkc-core still running 20 s after SIGTERM"
    sleep 0.1
done
rc=0
wait "$core" || rc=$?
core=''
[ "$rc" = 0 ] || fail "vkc-core exited $rc after SIGTERM"
[ "$(cat "/proc/$prov/comm" 2>/dev/null)" != vkc-provider-cr ] || fail "provider $prov outlived the core"
prov=''
ready=$("${K[@]}" get node "$node" -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}/{.status.conditions[?(@.type=="Ready")].reason}') ||
    fail "node $node is gone after SIGTERM"
[ "$ready" = False/KubeletStopped ] || fail "node Ready after SIGTERM: $ready, want False/KubeletStopped"
grep -q 'level=error' "$dir/core.log" && {
    grep 'level=error' "$dir/core.log" | head -n 10 | sed 's/^/    core| /'
    fail "errors in the core's log"
}
log "SIGTERM: core exited 0, provider gone, node Ready=False/KubeletStopped"
echo "CRI provider through the API server and kubectl: ok ($((SECONDS - T0)) s)"
