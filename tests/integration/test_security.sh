#!/bin/bash
# The security properties of a running vkc-core (docs/security.md), against
# the real test cluster, vkc-core and the mock provider:
#   * --user: as root the core binds a port below 1024, drops to nobody, and
#     the node still works (Node Ready, Lease renewed, /healthz served); the
#     provider runs as nobody too; without --user a warning says root.
#   * the kubelet API: no client certificate and no token is 401; a client
#     certificate of another CA fails the handshake; a certificate of the
#     cluster CA or a ServiceAccount token without RBAC rights is 403; with
#     nodes/proxy granted it is served, and only that subresource.
#   * TLS: 1.0 and 1.1 refused by the server (alert protocol_version), 1.2
#     and 1.3 served, CBC, NULL and non-forward-secret suites refused.
#   * the socket directory is 0700 and its sockets 0600, all the user's.
#   * no Secret, ConfigMap or token value in the core's or the provider's
#     log (debug level), in /metrics, /metrics/resource, /stats/summary,
#     /pods, the pod's and the node's objects or any Event.
#   * the Core service refuses an unreferenced ConfigMap, and a referenced
#     one once its pod is gone (Secrets: test_pods.c test_callback_secrets;
#     tokens: test_tokens.c refused_after_pod_deleted).
#   tests/integration/test_security.sh BUILD
# "check && check || fail" means: fail unless both hold.
# shellcheck disable=SC2015
set -euo pipefail

build=${1:-build}
bin=$build/bin
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# shellcheck source=tests/integration/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
: "${VKC_CLUSTER_DIR:?needs a running test cluster (tests/cluster/up.sh)}"
# shellcheck disable=SC1091
. "$VKC_CLUSTER_DIR/env"
pki=$VKC_CLUSTER_DIR/pki
lib_kubectl 10s
node=$VKC_NODE_NAME
ns=vkc-security-$$
role=vkc-security-$$
dir=$(mktemp -d /tmp/vkc-security.XXXXXX)
marker=vkc-marker-$$-$RANDOM$RANDOM
plain=
core=

cleanup() {
    # lib_stop, not "kill && wait": under set -e a failed kill or a non-zero
    # status would make the trap exit here, leaving the core running.
    lib_stop "$plain"
    lib_stop "$core"
    "${K[@]}" delete namespace "$ns" --wait=false >/dev/null 2>&1 || true
    "${K[@]}" delete clusterrolebinding "$role" >/dev/null 2>&1 || true
    "${K[@]}" delete clusterrole "$role" >/dev/null 2>&1 || true
    rm -rf "$dir"
}
trap cleanup EXIT

fail() { echo "FAIL: $*"; lib_core_log "$dir/core.log"; exit 1; }

wait_for() { # SECONDS WHAT CMD...: until CMD succeeds
    local deadline=$((SECONDS + $1)) what=$2
    shift 2
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < deadline)) || fail "$what (waited $1 s)"
        sleep 0.5
    done
}

# Every TCP port in use, any state (as tests/cluster/up.sh reads them).
used_ports() {
    awk 'FNR > 1 { split($2, a, ":"); print a[2] }' /proc/net/tcp /proc/net/tcp6 |
        while read -r hex; do echo $((16#$hex)); done
}
free_port() { # FROM TO
    local used p
    used=" $(used_ports | tr '\n' ' ') "
    for ((p = $1; p <= $2; p++)); do
        [[ $used == *" $p "* ]] || { echo "$p"; return; }
    done
    fail "no free port in $1-$2"
}

# As root: a privileged port, so binding it before the drop is tested too.
if [ "$(id -u)" -eq 0 ]; then
    as_root=1
    port=$(free_port 900 1000)
    user_args=(--user nobody)
    want_uid=$(id -u nobody)
    want_gid=$(id -g nobody)
else
    as_root=0
    port=$(lib_free_port)
    user_args=()
    want_uid=$(id -u)
    want_gid=$(id -g)
fi
# The socket directory is handed to nobody, who must be able to reach it.
chmod 711 "$dir"

# ---- --user refused early, and the root warning --------------------------------------
rc=0
"$bin/vkc-core" --user vkc-no-such-user --provider-cmd "$bin/vkc-provider-mock" \
    --socket-dir "$dir/bad" 2>"$dir/bad.log" || rc=$?
[ "$rc" -eq 2 ] && grep -q '^vkc-core: --user "vkc-no-such-user": no such user$' "$dir/bad.log" ||
    fail "--user vkc-no-such-user: exit $rc, $(cat "$dir/bad.log")"
rc=0
"$bin/vkc-core" --user root --provider-cmd "$bin/vkc-provider-mock" \
    --socket-dir "$dir/bad" 2>"$dir/bad.log" || rc=$?
[ "$rc" -eq 2 ] && grep -q 'uid 0 is root' "$dir/bad.log" ||
    fail "--user root: exit $rc, $(cat "$dir/bad.log")"
if ((as_root)); then
    # Provider-only mode (no kubeconfig) is enough to see the warning.
    "$bin/vkc-core" --provider-cmd "$bin/vkc-provider-mock" --socket-dir "$dir/plain" \
        --provider-stop-timeout 2s 2>"$dir/plain.log" &
    plain=$!
    wait_for 60 "root core: provider not ready" grep -q 'msg="provider ready"' "$dir/plain.log"
    kill -TERM "$plain"
    rc=0
    wait "$plain" || rc=$?
    plain=
    [ "$rc" -eq 0 ] || fail "the core as root exited $rc"
    [ "$(grep -c 'level=warn component=core msg="running as root"' "$dir/plain.log")" -eq 1 ] ||
        fail "no single 'running as root' warning: $(cat "$dir/plain.log")"
fi

# ---- the node, at debug level ----------------------------------------------------------
"$bin/vkc-core" --nodename "$node" --kubeconfig "$VKC_NODE_KUBECONFIG" \
    "${user_args[@]}" --log-level debug \
    --socket-dir "$dir/run" --listen-port "$port" --node-ip 127.0.0.1 \
    --tls-cert-file "$VKC_NODE_KUBELET_CERT" --tls-private-key-file "$VKC_NODE_KUBELET_KEY" \
    --client-ca-file "$VKC_CA_CERT" --authentication-token-webhook \
    --provider-cmd "$bin/vkc-provider-mock --log-level debug" 2>"$dir/core.log" &
core=$!
lib_wait_node_ready "$node" "$core" 120
kill -0 "$core" || fail "the core exited"

# ---- privileges ------------------------------------------------------------------------
ids() { # PID FIELD -> "real effective saved fs"
    awk -v f="$2:" '$1 == f { print $2, $3, $4, $5 }' "/proc/$1/status"
}
provider=$(sed -n 's/.*msg="provider started" pid=\([0-9]*\).*/\1/p' "$dir/core.log" | tail -n 1)
[ -n "$provider" ] || fail "no provider pid in the log"
for who in core provider; do
    pid=${!who}
    [ "$(ids "$pid" Uid)" = "$want_uid $want_uid $want_uid $want_uid" ] ||
        fail "$who uids: $(ids "$pid" Uid), want $want_uid"
    [ "$(ids "$pid" Gid)" = "$want_gid $want_gid $want_gid $want_gid" ] ||
        fail "$who gids: $(ids "$pid" Gid), want $want_gid"
done
if ((as_root)); then
    grep -q '^NoNewPrivs:[[:space:]]*1$' "/proc/$core/status" || fail "core: no_new_privs not set"
    grep -q '^CapEff:[[:space:]]*0*$' "/proc/$core/status" || fail "core: capabilities left"
    grep -q 'msg="dropped root privileges" user=nobody' "$dir/core.log" || fail "no drop logged"
    ! grep -q 'msg="running as root"' "$dir/core.log" || fail "root warning despite --user"
fi

# The socket directory and its sockets: the user's alone.
[ "$(stat -c '%a %u %F' "$dir/run")" = "700 $want_uid directory" ] ||
    fail "socket dir: $(stat -c '%a %u %F' "$dir/run")"
for s in core.sock provider.sock; do
    [ "$(stat -c '%a %u %F' "$dir/run/$s")" = "600 $want_uid socket" ] ||
        fail "$s: $(stat -c '%a %u %F' "$dir/run/$s")"
done

# The node works as nobody: Lease renewed (every 10 s), kubelet API served.
lease() { "${K[@]}" -n kube-node-lease get lease "$node" -o 'jsonpath={.spec.renewTime}'; }
first=$(lease)
renewed() { [ "$(lease)" != "$first" ]; }
# 60 s: three renewals, should a loaded machine delay one.
wait_for 60 "Lease of $node not renewed since $first" renewed

api() { # PATH [curl args...] -> "CODE" on stdout, the body in $dir/body
    local path=$1
    shift
    curl -sS --max-time 10 --cacert "$VKC_CA_CERT" -o "$dir/body" -w '%{http_code}' "$@" \
        "https://127.0.0.1:$port$path" 2>"$dir/curl.err" || true
}
admin=(--cert "$pki/admin.crt" --key "$pki/admin.key")
[ "$(api /healthz "${admin[@]}")" = 200 ] && [ "$(cat "$dir/body")" = ok ] ||
    fail "/healthz as admin: $(cat "$dir/body" "$dir/curl.err")"

# ---- kubelet API authentication and authorization -----------------------------------------
# Not even /healthz without credentials (anonymous access is off by default).
[ "$(api /healthz)" = 401 ] || fail "anonymous /healthz: $(cat "$dir/body")"

new_cert() { # NAME SUBJECT CA: an ECDSA client certificate signed by CA
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$dir/$1.key" 2>/dev/null
    openssl req -new -key "$dir/$1.key" -subj "$2" -out "$dir/$1.csr" 2>/dev/null
    printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n' \
        >"$dir/$1.ext"
    openssl x509 -req -in "$dir/$1.csr" -CA "$3.crt" -CAkey "$3.key" -CAcreateserial \
        -days 1 -sha256 -extfile "$dir/$1.ext" -out "$dir/$1.crt" 2>/dev/null
}
# A CA of our own signs the admin's very identity: not the client CA's, so
# the handshake fails and no HTTP status comes back at all.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=vkc-rogue-ca \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign \
    -days 1 -keyout "$dir/rogue-ca.key" -out "$dir/rogue-ca.crt" 2>/dev/null
new_cert rogue "/O=system:masters/CN=admin" "$dir/rogue-ca"
code=$(api /healthz --cert "$dir/rogue.crt" --key "$dir/rogue.key")
[ "$code" = 000 ] || fail "a certificate of another CA: HTTP $code, want a failed handshake"
# The cluster CA's certificate of a user nobody granted anything.
new_cert stranger "/CN=vkc-security-stranger" "$pki/ca"
[ "$(api /healthz --cert "$dir/stranger.crt" --key "$dir/stranger.key")" = 403 ] &&
    grep -q 'user=vkc-security-stranger' "$dir/body" ||
    fail "an unauthorized certificate: $(cat "$dir/body")"

# Tokens: two ServiceAccounts, one granted nodes/proxy (nothing else).
"${K[@]}" create namespace "$ns" >/dev/null
"${K[@]}" -n "$ns" create serviceaccount denied >/dev/null
"${K[@]}" -n "$ns" create serviceaccount allowed >/dev/null
"${K[@]}" create clusterrole "$role" --verb=get --resource=nodes/proxy >/dev/null
"${K[@]}" create clusterrolebinding "$role" --clusterrole="$role" \
    --serviceaccount="$ns:allowed" >/dev/null
sa_token() { # ACCOUNT: its legacy token Secret's token (Kubernetes 1.20)
    local s
    s=$("${K[@]}" -n "$ns" get serviceaccount "$1" -o 'jsonpath={.secrets[0].name}')
    [ -n "$s" ] && "${K[@]}" -n "$ns" get secret "$s" -o 'jsonpath={.data.token}' | base64 -d
}
wait_for 60 "no token for $ns/denied" sa_token denied
wait_for 60 "no token for $ns/allowed" sa_token allowed
wait_for 60 "default account of $ns without its token" sa_token default
denied_token=$(sa_token denied)
allowed_token=$(sa_token allowed)
# A denial is cached by the core for 30 s: ask only once RBAC says yes.
wait_for 30 "RBAC never granted $ns/allowed nodes/proxy" \
    "${K[@]}" auth can-i get nodes --subresource=proxy --as="system:serviceaccount:$ns:allowed"
[ "$(api /healthz -H "Authorization: Bearer $denied_token")" = 403 ] &&
    grep -q "user=system:serviceaccount:$ns:denied" "$dir/body" ||
    fail "a token without rights: $(cat "$dir/body")"
[ "$(api /healthz -H "Authorization: Bearer $allowed_token")" = 200 ] ||
    fail "a token granted nodes/proxy: $(cat "$dir/body")"
[ "$(api /stats/summary -H "Authorization: Bearer $allowed_token")" = 403 ] &&
    grep -q 'subresource=stats' "$dir/body" ||
    fail "nodes/proxy must not grant nodes/stats: $(cat "$dir/body")"

# ---- TLS -------------------------------------------------------------------------------------
tls() { # s_client args...: its output in $dir/tls, its status returned
    timeout 10 openssl s_client -connect "127.0.0.1:$port" -CAfile "$VKC_CA_CERT" \
        -verify_return_error "$@" </dev/null >"$dir/tls" 2>&1
}
# SECLEVEL=0: this client would offer old protocols and weak suites, so a
# refusal is the server's (its alert is in the output).
for v in -tls1 -tls1_1; do
    ! tls "$v" -cipher 'DEFAULT@SECLEVEL=0' && grep -q 'alert protocol version' "$dir/tls" ||
        fail "$v not refused by the server: $(cat "$dir/tls")"
done
tls -tls1_3 && grep -q 'New, TLSv1.3, Cipher is TLS_' "$dir/tls" || fail "TLS 1.3: $(cat "$dir/tls")"
tls -tls1_2 && grep -q 'New, TLSv1.2, Cipher is ECDHE-' "$dir/tls" || fail "TLS 1.2: $(cat "$dir/tls")"
# Suites that suit the serving key, so only the suite can be at fault.
if grep -q 'id-ecPublicKey' <<<"$(openssl x509 -in "$VKC_NODE_KUBELET_CERT" -noout -text)"; then
    kx=ECDSA
else
    kx=RSA
fi
tls -tls1_2 -cipher "ECDHE-$kx-CHACHA20-POLY1305" || fail "ECDHE-$kx-CHACHA20-POLY1305 refused"
for c in "ECDHE-$kx-AES128-SHA" "ECDHE-$kx-AES256-SHA384" "ECDHE-$kx-NULL-SHA" \
    AES128-GCM-SHA256 AES128-SHA; do
    ! tls -tls1_2 -cipher "$c@SECLEVEL=0" && grep -q 'alert handshake failure' "$dir/tls" ||
        fail "weak TLS 1.2 suite $c accepted: $(cat "$dir/tls")"
done

# ---- secrets never leak ------------------------------------------------------------------------
secret_value="secret-$marker"
config_value="config-$marker"
"${K[@]}" -n "$ns" create secret generic sec --from-literal=password="$secret_value" >/dev/null
"${K[@]}" -n "$ns" create configmap cm --from-literal=conf="$config_value" >/dev/null
"${K[@]}" -n "$ns" create configmap unref --from-literal=conf=unreferenced >/dev/null
"${K[@]}" apply -f - >/dev/null <<EOF
{"apiVersion":"v1","kind":"Pod","metadata":{"name":"leaky","namespace":"$ns"},
 "spec":{"nodeName":"$node","tolerations":[{"operator":"Exists"}],
  "containers":[{"name":"app","image":"busybox",
   "env":[{"name":"S","valueFrom":{"secretKeyRef":{"name":"sec","key":"password"}}},
          {"name":"C","valueFrom":{"configMapKeyRef":{"name":"cm","key":"conf"}}}],
   "volumeMounts":[{"name":"s","mountPath":"/s"},{"name":"c","mountPath":"/c"},
                   {"name":"t","mountPath":"/t"}]}],
  "volumes":[{"name":"s","secret":{"secretName":"sec"}},
             {"name":"c","configMap":{"name":"cm"}},
             {"name":"t","projected":{"sources":[{"serviceAccountToken":
                 {"path":"token","expirationSeconds":3600}}]}}]}}
EOF
"${K[@]}" -n "$ns" wait --for=condition=Ready pod/leaky --timeout=60s >/dev/null ||
    fail "pod leaky not Ready"
uid=$("${K[@]}" -n "$ns" get pod leaky -o 'jsonpath={.metadata.uid}')
legacy_secret=$("${K[@]}" -n "$ns" get serviceaccount default -o 'jsonpath={.secrets[0].name}')
legacy_token=$(sa_token default)

# Play the provider on the Core service, as a provider would (root may
# connect to the user's socket): Python stubs of proto/provider.proto.
mkdir "$dir/py"
protoc --proto_path="$root/proto" --python_out="$dir/py" --grpc_python_out="$dir/py" \
    --plugin=protoc-gen-grpc_python=/usr/bin/grpc_python_plugin "$root/proto/provider.proto"
cat >"$dir/core_call.py" <<'PY'
# core_call.py SOCKET_DIR STUBS METHOD NS NAME [UID]: the status code's name
# on the first line; on OK the object's JSON (or the token) on the second.
# METHOD: secret, configmap, token (the Core service), pod (the provider's
# GetPod, to see what it was given).
import sys
sys.path.insert(0, sys.argv[2])
import grpc
import provider_pb2 as pb
import provider_pb2_grpc as pbg

sock_dir, _, method, ns, name = sys.argv[1:6]
core = pbg.CoreStub(grpc.insecure_channel("unix:" + sock_dir + "/core.sock"))
try:
    if method == "pod":
        provider = pbg.ProviderStub(grpc.insecure_channel("unix:" + sock_dir + "/provider.sock"))
        out = provider.GetPod(pb.GetPodRequest(pod=pb.PodRef(namespace=ns, name=name)),
                              timeout=20).pod_json.decode()
    elif method == "token":
        ref = pb.PodRef(namespace=ns, name=name, uid=sys.argv[6])
        out = core.RequestServiceAccountToken(
            pb.ServiceAccountTokenRequest(pod=ref, service_account_name="default"),
            timeout=20).token
    else:
        call = core.GetSecret if method == "secret" else core.GetConfigMap
        out = call(pb.GetObjectRequest(namespace=ns, name=name), timeout=20).object_json.decode()
    print("OK")
    print(out)
except grpc.RpcError as e:
    print(e.code().name)
PY
core_call() { /usr/bin/python3 "$dir/core_call.py" "$dir/run" "$dir/py" "$@"; }
# What the provider gets is what must not leak: the resolved environment
# of its pod, and each object and token taken through the core.
out=$(core_call pod "$ns" leaky) || fail "Core service call failed"
[ "$(head -n 1 <<<"$out")" = OK ] && grep -qF "\"value\":\"$secret_value\"" <<<"$out" &&
    grep -qF "\"value\":\"$config_value\"" <<<"$out" ||
    fail "the provider's pod lacks the resolved values: $out"
out=$(core_call secret "$ns" sec) || fail "Core service call failed"
[ "$(head -n 1 <<<"$out")" = OK ] && grep -q "$(printf %s "$secret_value" | base64 -w0)" <<<"$out" ||
    fail "GetSecret sec: $out"
out=$(core_call configmap "$ns" cm) || fail "Core service call failed"
[ "$(head -n 1 <<<"$out")" = OK ] && grep -q "$config_value" <<<"$out" || fail "GetConfigMap cm: $out"
out=$(core_call secret "$ns" "$legacy_secret") || fail "Core service call failed"
[ "$(head -n 1 <<<"$out")" = OK ] || fail "GetSecret $legacy_secret (auto-mounted): $out"
out=$(core_call token "$ns" leaky "$uid") || fail "Core service call failed"
[ "$(head -n 1 <<<"$out")" = OK ] || fail "RequestServiceAccountToken: $out"
projected_token=$(sed -n 2p <<<"$out")
[ "${#projected_token}" -gt 100 ] || fail "token too short: $projected_token"
[ "$(core_call configmap "$ns" unref)" = PERMISSION_DENIED ] ||
    fail "an unreferenced ConfigMap was served"

# Everything a client of the node sees, while the pod runs.
for p in /metrics /metrics/resource /stats/summary /pods; do
    [ "$(api "$p" "${admin[@]}")" = 200 ] || fail "$p: $(cat "$dir/body")"
    cp "$dir/body" "$dir/seen-${p//\//_}"
done
"${K[@]}" -n "$ns" get pod leaky -o json >"$dir/seen-pod"
# The core's own figures, read from /proc after the drop to nobody.
for m in process_open_fds process_resident_memory_bytes; do
    awk -v m="$m" '$1 == m && $2 > 0 { found = 1 } END { exit !found }' "$dir/seen-_metrics" ||
        fail "/metrics has no $m > 0: $(grep "^$m" "$dir/seen-_metrics")"
done

# Gone: its ConfigMap is refused from then on.
"${K[@]}" -n "$ns" delete pod leaky --wait=false >/dev/null
configmap_refused() { [ "$(core_call configmap "$ns" cm)" = PERMISSION_DENIED ]; }
wait_for 60 "ConfigMap cm still served after its pod was deleted" configmap_refused

"${K[@]}" get events -A -o json >"$dir/seen-events"
"${K[@]}" get node "$node" -o json >"$dir/seen-node"
grep -q 'level=debug component=core' "$dir/core.log" || fail "the core did not log at debug"
grep -q 'component=mock msg=handshake' "$dir/core.log" || fail "no provider log in $dir/core.log"
for needle in "$secret_value" "$config_value" "$projected_token" "$legacy_token" \
    "$denied_token" "$allowed_token"; do
    for f in "$dir/core.log" "$dir"/seen-*; do
        ! grep -qF -- "$needle" "$f" || fail "$(basename "$f") holds a secret (${needle:0:24}...)"
    done
done
# A JWT's payload alone, should a log cut the header off.
for t in "$projected_token" "$legacy_token" "$denied_token" "$allowed_token"; do
    payload=$(cut -d. -f2 <<<"$t")
    ! grep -qF -- "$payload" "$dir/core.log" || fail "the log holds a token's payload"
done

kill -TERM "$core"
rc=0
wait "$core" || rc=$?
core=
[ "$rc" -eq 0 ] || fail "the core exited $rc at SIGTERM"
echo "privilege drop, kubelet API auth, TLS, socket modes, no secret in logs/metrics/events: ok"
