# shellcheck shell=bash
# shellcheck disable=SC2034 # globals set here are for the caller (see each comment)
# tests/integration/lib.sh -- shell helpers shared by the integration tests.
# Sourced, never run:  . "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
#
# Plain functions, no state of their own. What they read or set beyond their
# arguments is named in each one's comment:
#   K      the caller's kubectl command as an array (lib_kubectl sets it);
#   fail   the caller's own fail MESSAGE function, which must not return.
# Paths are the repository's, wherever the caller's working directory is.

LIB_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

# lib_build_dir [BUILD]: print the build tree: BUILD if given, else the one $VKC_BIN_DIR is in (tests/run-tests.sh sets it), else build.
lib_build_dir() {
    local b=${1:-${VKC_BIN_DIR:+$(dirname "$VKC_BIN_DIR")}}
    echo "${b:-build}"
}

# lib_core_log LOG: print the last 40 lines of vkc-core's LOG (if there is one) under a header, for a failure report.
lib_core_log() {
    echo "--- core log (tail)"
    tail -n 40 "$1" 2>/dev/null | sed 's/^/    core| /'
}

# lib_start_cluster DIR LOG: start a control plane of our own in DIR (progress in LOG) and source its env; calls fail.
lib_start_cluster() {
    local k8s
    k8s=$("$LIB_ROOT/tests/cluster/build.sh") || fail "cannot build the control plane"
    VKC_K8S_BIN=$k8s "$LIB_ROOT/tests/cluster/up.sh" "$1" >"$2" 2>&1 ||
        { tail -n 20 "$2"; fail "cannot start a control plane in $1"; }
    # shellcheck disable=SC1091
    . "$1/env"
}

# lib_use_cluster WORK: source $VKC_CLUSTER_DIR's env if it has one, else start our own in WORK/cluster; sets CLUSTER and OWN_CLUSTER (empty when shared).
lib_use_cluster() {
    if [[ -n ${VKC_CLUSTER_DIR:-} && -s $VKC_CLUSTER_DIR/env ]]; then
        CLUSTER=$VKC_CLUSTER_DIR
        OWN_CLUSTER=
        # shellcheck disable=SC1091
        . "$CLUSTER/env"
    else
        CLUSTER=$1/cluster
        OWN_CLUSTER=$CLUSTER
        echo "starting a control plane in $CLUSTER" >&2
        lib_start_cluster "$CLUSTER" "$1/up.log"
    fi
}

# lib_kubectl TIMEOUT: set K to kubectl as the cluster's admin, each request limited to TIMEOUT (e.g. 30s; 0: none).
lib_kubectl() {
    K=("$VKC_KUBECTL" --kubeconfig "$VKC_ADMIN_KUBECONFIG" "--request-timeout=$1")
}

# lib_free_port: print a TCP port that nothing uses now, for a server the caller starts next.
# Not a port the kernel hands out (bind to port 0, connect): between this pick and the
# server's bind, any outgoing connection (kubectl, the API server's, etcd's) could take
# one of those. So a random one of 12000-19999: below the ephemeral range (32768+),
# apart from tests/cluster/up.sh's picks (20000-31999), and free on every address.
lib_free_port() {
    /usr/bin/python3 - <<'PY'
import errno, random, socket, sys
def busy(fam, addr, port):
    try:
        s = socket.socket(fam)
    except OSError:
        return False  # no such family here
    try:
        s.bind((addr, port))
        return False
    except OSError as e:
        # IPv6 may be off (EADDRNOTAVAIL): only a port in use counts.
        return fam == socket.AF_INET or e.errno == errno.EADDRINUSE
    finally:
        s.close()
for _ in range(500):
    p = random.randint(12000, 19999)
    if not busy(socket.AF_INET, "0.0.0.0", p) and not busy(socket.AF_INET6, "::", p):
        print(p)
        sys.exit(0)
sys.exit("no free TCP port in 12000-19999")
PY
}

# lib_wait_sa_token NS SECONDS: wait (with K) until NS's default ServiceAccount has its token Secret, which 1.20 needs to admit pods; 1 if not in time.
lib_wait_sa_token() {
    local i
    for ((i = 0; i < $2 * 5; i++)); do
        [[ -n $("${K[@]}" -n "$1" get sa default -o 'jsonpath={.secrets[0].name}' 2>/dev/null) ]] && return 0
        sleep 0.2
    done
    return 1
}

# lib_fresh_namespace NS SECONDS: delete NS (waiting 60 s at most for it to go), create it again (with K; calls fail if it cannot) and wait SECONDS at most for its token (1 if none came).
lib_fresh_namespace() {
    "${K[@]}" delete namespace "$1" --ignore-not-found --timeout=60s >/dev/null 2>&1 || true
    "${K[@]}" create namespace "$1" >/dev/null || fail "cannot create namespace $1"
    lib_wait_sa_token "$1" "$2"
}

# lib_wait_node_ready NODE PID SECONDS: wait (with K) until Node NODE is Ready while vkc-core PID runs; calls fail with which of the two went wrong.
lib_wait_node_ready() {
    local node=$1 pid=$2 i
    for ((i = 1; i <= $3 * 2; i++)); do
        kill -0 "$pid" 2>/dev/null || fail "vkc-core (pid $pid) exited before node $node was Ready"
        [[ $("${K[@]}" get node "$node" -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null) == True ]] &&
            return 0
        sleep 0.5
    done
    fail "node $node never became Ready (waited $3 s)"
}

# lib_wait_apiserver SECONDS: wait (with K) until the API server answers /readyz; 1 if not in time.
lib_wait_apiserver() {
    local i
    for ((i = 0; i < $1 * 2; i++)); do
        "${K[@]}" get --raw /readyz >/dev/null 2>&1 && return 0
        sleep 0.5
    done
    return 1
}

# lib_stop PID [SIGNAL] [SECONDS]: send SIGNAL (TERM) to a child we started, SIGKILL it after SECONDS (15), reap it; nothing if PID is empty.
# Safe under set -e, like every function here: the commands that may fail are allowed to.
lib_stop() {
    local pid=$1 sig=${2:-TERM} i
    [[ -n $pid ]] || return 0
    kill "-$sig" "$pid" 2>/dev/null || true
    for ((i = 0; i < ${3:-15} * 10; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

# lib_node_metrics NODE: print NODE's /metrics (the core's) through the API server's node proxy, with K.
lib_node_metrics() {
    "${K[@]}" get --raw "/api/v1/nodes/$1/proxy/metrics"
}

# lib_rss PID: print the resident set size of PID in kB (VmRSS).
lib_rss() {
    awk '/^VmRSS:/ {print $2}' "/proc/$1/status"
}

# lib_delete_node NODE: delete Node NODE and its Lease (with K), ignoring errors.
lib_delete_node() {
    "${K[@]}" delete node "$1" >/dev/null 2>&1 || true
    "${K[@]}" -n kube-node-lease delete lease "$1" >/dev/null 2>&1 || true
}

# lib_node_identity NODE DIR: credentials for node NODE: up.sh's if it made them, else a client certificate
# for system:node:NODE minted from the cluster CA (files in DIR) with the default node's serving certificate;
# sets NODE_KUBECONFIG, NODE_SERVING_CERT, NODE_SERVING_KEY; calls fail.
lib_node_identity() {
    local node=$1 dir=$2 pki=$VKC_CLUSTER_DIR/pki
    if [[ -s $VKC_CLUSTER_DIR/node-$node.kubeconfig ]]; then
        NODE_KUBECONFIG=$VKC_CLUSTER_DIR/node-$node.kubeconfig
        NODE_SERVING_CERT=$pki/kubelet-$node.crt
        NODE_SERVING_KEY=$pki/kubelet-$node.key
        return 0
    fi
    # The API server does not check the kubelet serving certificate.
    printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n' \
        >"$dir/node.ext"
    {
        openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$dir/node.key" &&
            openssl req -new -key "$dir/node.key" -subj "/O=system:nodes/CN=system:node:$node" \
                -out "$dir/node.csr" &&
            openssl x509 -req -in "$dir/node.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" \
                -CAserial "$dir/ca.srl" -CAcreateserial -days 1 -sha256 -extfile "$dir/node.ext" \
                -out "$dir/node.crt"
    } >"$dir/openssl.log" 2>&1 ||
        fail "cannot make a client certificate for system:node:$node: $(tail -n 5 "$dir/openssl.log")"
    NODE_KUBECONFIG=$dir/node.kubeconfig
    sed -e "s|client-certificate-data: .*|client-certificate-data: $(base64 -w0 "$dir/node.crt")|" \
        -e "s|client-key-data: .*|client-key-data: $(base64 -w0 "$dir/node.key")|" \
        -e "s|system:node:$VKC_NODE_NAME|system:node:$node|g" \
        "$VKC_NODE_KUBECONFIG" >"$NODE_KUBECONFIG"
    NODE_SERVING_CERT=$VKC_NODE_KUBELET_CERT
    NODE_SERVING_KEY=$VKC_NODE_KUBELET_KEY
}

# lib_cri_endpoint LOG: print the test containerd's endpoint, $VKC_CRI_ENDPOINT or tests/cri/setup.sh's (its stderr in LOG); empty if none.
lib_cri_endpoint() {
    if [[ -n ${VKC_CRI_ENDPOINT:-} ]]; then
        echo "$VKC_CRI_ENDPOINT"
    else
        "$LIB_ROOT/tests/cri/setup.sh" 2>"$1" | sed -n 's/^VKC_CRI_ENDPOINT=//p' | tail -n 1
    fi
}

# lib_cri_scrub ENDPOINT NS STUBS: stop and remove, through CRI, every pod sandbox of namespace NS (and so its
# containers) as the provider would have; Python stubs of cri-provider/cri.proto are made in STUBS.
lib_cri_scrub() {
    mkdir -p "$3"
    protoc --proto_path="$LIB_ROOT/cri-provider" --python_out="$3" --grpc_python_out="$3" \
        --plugin=protoc-gen-grpc_python=/usr/bin/grpc_python_plugin "$LIB_ROOT/cri-provider/cri.proto" || return 1
    PYTHONPATH=$3 /usr/bin/python3 - "$1" "$2" <<'PY'
import sys
import grpc
import cri_pb2 as pb
import cri_pb2_grpc as rpc
rt = rpc.RuntimeServiceStub(grpc.insecure_channel(sys.argv[1]))
sel = pb.PodSandboxFilter(label_selector={"io.kubernetes.pod.namespace": sys.argv[2]})
for sb in rt.ListPodSandbox(pb.ListPodSandboxRequest(filter=sel), timeout=10).items:
    print("removing sandbox", sb.id[:12], sb.metadata.name)
    rt.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=sb.id), timeout=30)
    rt.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=sb.id), timeout=30)
PY
}

# lib_child_of PID: print the first child process of PID, read from /proc (no procps needed).
lib_child_of() {
    local f st
    for f in /proc/[0-9]*/stat; do
        st=$(cat "$f" 2>/dev/null) || continue
        st=${st##*) }
        [[ $(cut -d' ' -f2 <<<"$st") == "$1" ]] && { cut -d/ -f3 <<<"$f"; return 0; }
    done
    return 1
}
