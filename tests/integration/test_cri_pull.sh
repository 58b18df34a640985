#!/bin/bash
# vkc-provider-cri pulls through imagePullSecrets from a real registry: the
# CNCF distribution registry (Debian's docker-registry) run here as a plain
# process on 127.0.0.1:PORT with htpasswd (basic) auth and storage in a temp
# dir, the offline busybox image of tests/cri/setup.sh pushed into it under a
# tag unique to the run. vkc-core runs the CRI provider on the test
# containerd as node vkc-cri-pull of the real test cluster (as
# test_cri_kubectl.sh does), and everything is checked through kubectl:
#   (a) image 127.0.0.1:PORT/vkc/busybox:pull-TAG, absent from containerd,
#       imagePullPolicy IfNotPresent, a kubernetes.io/dockerconfigjson
#       imagePullSecret with the right credentials: the pod runs, events
#       Pulling and Pulled ("Successfully pulled"), the registry served the
#       manifest to an authenticated request;
#   (b) the wrong password (Always): the container waits in ErrImagePull /
#       ImagePullBackOff, a Warning event names the failure (401
#       Unauthorized), the registry refused it;
#   (c) no secret at all (Always): the same refusal;
#   (d) IfNotPresent with the image present and no secret: the pod runs
#       (an anonymous pull would have been refused), the Pulled event says
#       "already present on machine", and the registry saw no request for
#       the repository meanwhile;
#   (e) secrets [wrong, right] under Always: both tried in order, the pod
#       runs (a refused then a served manifest request);
#   neither password appears in events, pod statuses, the core's and
#   provider's debug log, the registry's log or containerd's.
# containerd 1.6's CRI plugin pulls from a loopback registry over plain HTTP
# when no registry config_path is set (tests/cri/setup.sh sets none).
# Needs docker-registry (Debian) and htpasswd (apache2-utils; python3's crypt
# module otherwise) for the bcrypt password file.
#   tests/integration/test_cri_pull.sh BUILD
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

node=vkc-cri-pull
ns=vkc-cri-pull
base_image=docker.io/library/busybox:latest
lib_kubectl 30s
kn=("${K[@]}" -n "$ns")
dir=$(mktemp -d /tmp/vkc-cri-pull.XXXXXX)
T0=$SECONDS
core='' prov='' reg='' sock='' endpoint='' ref='' rport=''
ctrd_log=${VKC_CONTAINERD_BASE:-/var/lib/vkc-containerd}/containerd.log
ctrd_off=0

log() { printf '[cri-pull %3ss] %s\n' "$((SECONDS - T0))" "$*"; }

fail() {
    echo "FAIL: $*"
    lib_core_log "$dir/core.log"
    echo "--- registry access log (tail)"
    grep '\] "' "$dir/registry.log" 2>/dev/null | tail -n 15 | sed 's/^/    registry| /'
    exit 1
}

ctr_ns() { ctr --address "$sock" --namespace k8s.io "$@"; }
ns_containers() {
    ctr_ns containers ls -q "labels.\"io.kubernetes.pod.namespace\"==$ns"
}
# This run's images in containerd: the tag and the digest reference the CRI
# plugin adds (never the sha256: image id, busybox:latest's too).
run_images() {
    local all
    all=$(ctr_ns images ls -q 2>/dev/null) || return 0
    grep -E "^127\.0\.0\.1:$rport/vkc/busybox[:@]" <<<"$all" || true
}

# What a failed run left in containerd, through CRI (as test_cri_kubectl.sh).

signalled=0
cleanup() {
    local rc=$? left
    set +e
    if [ -n "$core" ] && kill -0 "$core" 2>/dev/null; then
        if [ "$signalled" = 0 ]; then
            "${kn[@]}" delete pod --all --grace-period=1 --timeout=30s >/dev/null 2>&1 ||
                "${kn[@]}" delete pod --all --grace-period=0 --force >/dev/null 2>&1
        fi
        lib_stop "$core" TERM 20
    fi
    if [ -n "$prov" ] && [ "$(cat "/proc/$prov/comm" 2>/dev/null)" = vkc-provider-cr ]; then
        echo "WARNING: provider $prov still running after the core; killing it"
        kill -KILL "$prov"
    fi
    if [ -n "$reg" ]; then
        kill -TERM "$reg" 2>/dev/null
        for _ in $(seq 1 50); do kill -0 "$reg" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$reg" 2>/dev/null
        wait "$reg" 2>/dev/null
    fi
    if [ -n "$sock" ]; then
        if [ -n "$(ns_containers 2>/dev/null)" ]; then
            lib_cri_scrub "$endpoint" "$ns" "$dir/cri-py"
            left=$(ns_containers 2>/dev/null)
            [ -n "$left" ] && echo "WARNING: containers of namespace $ns left in containerd: $left"
        fi
        if [ -n "$rport" ]; then
            left=$(run_images)
            # shellcheck disable=SC2086 # one reference a word
            [ -n "$left" ] && ctr_ns images rm $left >/dev/null 2>&1
            left=$(run_images)
            [ -n "$left" ] && echo "WARNING: images left in containerd: $left"
        fi
    fi
    "${kn[@]}" delete pod --all --grace-period=0 --force >/dev/null 2>&1
    "${K[@]}" delete namespace "$ns" --wait=false >/dev/null 2>&1
    lib_delete_node "$node"
    grep -o " $dir/[^ ]*" /proc/mounts | xargs -r -n1 umount -l
    rm -rf "$dir"
    exit "$rc"
}
trap cleanup EXIT
trap 'signalled=1; exit 130' INT TERM

jp() { "${kn[@]}" get pod "$1" -o "jsonpath=$2" 2>/dev/null; } # POD JSONPATH
# "Type Reason: message" lines of a pod's events.
pod_events() {
    "${kn[@]}" get events --field-selector "involvedObject.kind=Pod,involvedObject.name=$1" \
        -o 'jsonpath={range .items[*]}{.type} {.reason}: {.message}{"\n"}{end}' 2>/dev/null
}
# The registry's log: access lines ("GET /v2/... HTTP/1.1" 200) and its own
# (level=... msg=...). Lines from FROM on; the next line's number.
reg_since() { tail -n "+$1" "$dir/registry.log"; }
reg_next() { echo $(($(wc -l <"$dir/registry.log") + 1)); }
# Access lines for the repository, from line FROM on.
repo_requests() { reg_since "$1" | grep '\] "[A-Z]* /v2/vkc/busybox/' || true; }
# Wait until the registry has had no request for 1 s (at most 15 s).
registry_quiet() {
    local n m
    n=$(reg_next)
    for _ in $(seq 1 15); do
        sleep 1
        m=$(reg_next)
        [ "$m" = "$n" ] && return 0
        n=$m
    done
    fail "the registry is still being asked: $(reg_since $((n - 5)))"
}

for b in vkc-core vkc-provider-cri; do [ -x "$bin/$b" ] || fail "build $bin/$b first"; done
registry_bin=$(command -v docker-registry || true)
[ -n "$registry_bin" ] || fail "no docker-registry: apt-get install docker-registry"

# ---- the runtime ----------------------------------------------------------------------
endpoint=$(lib_cri_endpoint "$dir/setup.log") || true
[ -n "$endpoint" ] || { cat "$dir/setup.log"; fail "no CRI runtime: tests/cri/setup.sh failed"; }
sock=${endpoint#unix://}
ctr_ns version >/dev/null 2>&1 || fail "ctr cannot reach containerd at $sock"
images=$(ctr_ns images ls -q) || fail "ctr cannot list images"
grep -qx "$base_image" <<<"$images" || fail "image $base_image is not in containerd"
[ -f "$ctrd_log" ] && ctrd_off=$(stat -c %s "$ctrd_log")
log "containerd at $endpoint"

# ---- the registry ------------------------------------------------------------------------------
user=vkc-puller
# Random each run, so that finding one in a log means it leaked. A ':' in
# the password: the "auth" field is user:password, split at the first ':'.
pass="R1ght:$(od -An -tx1 -N8 /dev/urandom | tr -d ' \n')"
bad_pass="Wr0ng-$(od -An -tx1 -N8 /dev/urandom | tr -d ' \n')"
if command -v htpasswd >/dev/null; then
    htpasswd -nbB "$user" "$pass" >"$dir/htpasswd" 2>/dev/null || fail "htpasswd failed"
else
    # shellcheck disable=SC2016 # python, not shell
    VKC_PASS=$pass /usr/bin/python3 -W ignore -c '
import crypt, os, sys
h = crypt.crypt(os.environ["VKC_PASS"], crypt.mksalt(crypt.METHOD_BLOWFISH))
assert h and h.startswith("$2"), "no bcrypt in crypt(3)"
print(sys.argv[1] + ":" + h)' "$user" >"$dir/htpasswd" ||
        fail "no bcrypt: install apache2-utils (htpasswd)"
fi
rport=$(lib_free_port)
registry=127.0.0.1:$rport
mkdir -p "$dir/registry"
cat >"$dir/registry.yml" <<EOF
version: 0.1
log:
  level: info
  accesslog:
    disabled: false
storage:
  filesystem:
    rootdirectory: $dir/registry
  delete:
    enabled: true
http:
  addr: $registry
  secret: vkc-test-$RANDOM$RANDOM
auth:
  htpasswd:
    realm: vkc-test
    path: $dir/htpasswd
EOF
"$registry_bin" serve "$dir/registry.yml" >"$dir/registry.log" 2>&1 &
reg=$!
deadline=$((SECONDS + 60))
while :; do
    kill -0 "$reg" 2>/dev/null || { cat "$dir/registry.log"; fail "docker-registry exited"; }
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://$registry/v2/" || true)
    [ "$code" = 401 ] && break
    ((SECONDS < deadline)) || fail "registry at $registry not answering after 60 s (last: $code)"
    sleep 0.1
done
code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 -u "$user:$pass" "http://$registry/v2/")
[ "$code" = 200 ] || fail "registry refuses the right credentials: $code"

# The busybox image under a tag of this run, pushed, then removed from
# containerd so that the first pod has to pull it.
tag=pull-$(date +%s)-$$
ref=$registry/vkc/busybox:$tag
ctr_ns images tag "$base_image" "$ref" >/dev/null || fail "ctr images tag $ref"
ctr_ns images push --plain-http --user "$user:$pass" "$ref" >"$dir/push.log" 2>&1 ||
    fail "ctr images push $ref: $(tail -n 5 "$dir/push.log")"
# shellcheck disable=SC2046
ctr_ns images rm $(run_images) >/dev/null || fail "ctr images rm $ref"
[ -z "$(run_images)" ] || fail "$ref still in containerd"
code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 -u "$user:$pass" \
    -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
    -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
    "http://$registry/v2/vkc/busybox/manifests/$tag")
[ "$code" = 200 ] || fail "pushed manifest not served: $code"
log "registry at $registry (pid $reg), $ref pushed and absent from containerd"

# ---- the node's identity (as test_cri_kubectl.sh) ------------------------------------------------
lib_node_identity "$node" "$dir"

# ---- namespace and pull secrets ------------------------------------------------------------------
lib_delete_node "$node"
# 1.20 admits pods once the namespace's service account has its token.
lib_fresh_namespace "$ns" 20 || fail "no token for $ns/default after 20 s"
# As users make them: {"auths":{"127.0.0.1:PORT":{"username","password","auth"}}}
"${kn[@]}" create secret docker-registry right-creds --docker-server="$registry" \
    --docker-username="$user" --docker-password="$pass" >/dev/null || fail "cannot create secret right-creds"
"${kn[@]}" create secret docker-registry wrong-creds --docker-server="http://$registry" \
    --docker-username="$user" --docker-password="$bad_pass" >/dev/null || fail "cannot create secret wrong-creds"
[ "$("${kn[@]}" get secret right-creds -o 'jsonpath={.type}')" = kubernetes.io/dockerconfigjson ] ||
    fail "secret right-creds is not of type kubernetes.io/dockerconfigjson"

# ---- vkc-core with vkc-provider-cri, both logging at debug -----------------------------------------
port=$(lib_free_port)
mport=$(lib_free_port)
"$bin/vkc-core" --nodename "$node" --kubeconfig "$NODE_KUBECONFIG" --log-level debug \
    --socket-dir "$dir/run" --listen-port "$port" --metrics-addr "127.0.0.1:$mport" \
    --node-ip 127.0.0.1 --tls-cert-file "$NODE_SERVING_CERT" --tls-private-key-file "$NODE_SERVING_KEY" \
    --client-ca-file "$VKC_CA_CERT" \
    --provider-cmd "$bin/vkc-provider-cri --runtime-endpoint $endpoint --root-dir $dir/root --cgroup-root /vkc-cri-pull --log-level debug" \
    2>"$dir/core.log" &
core=$!
lib_wait_node_ready "$node" "$core" 120
prov=$(lib_child_of "$core") || true
[ "$(cat "/proc/$prov/comm" 2>/dev/null)" = vkc-provider-cr ] ||
    fail "vkc-core's child is not vkc-provider-cri (pid '$prov')"
log "node $node Ready (core $core, provider $prov)"

# POD POLICY SECRET... : a busybox pod of $ref on this node.
make_pod() {
    local name=$1 policy=$2 secrets='' s
    shift 2
    for s in "$@"; do secrets+="${secrets:+,}{\"name\":\"$s\"}"; done
    "${kn[@]}" apply -f - >/dev/null <<EOF || fail "cannot create pod $name"
{"apiVersion":"v1","kind":"Pod","metadata":{"name":"$name"},
 "spec":{"nodeName":"$node","hostNetwork":true,"terminationGracePeriodSeconds":2,
  "tolerations":[{"key":"virtual-kubelet.io/provider","operator":"Exists","effect":"NoSchedule"},
                 {"key":"node.kubernetes.io/network-unavailable","operator":"Exists","effect":"NoSchedule"}],
  "imagePullSecrets":[$secrets],
  "containers":[{"name":"app","image":"$ref","imagePullPolicy":"$policy",
   "command":["sh","-c","trap 'exit 0' TERM; while true; do sleep 1; done"]}]}}
EOF
}

# wait_events POD REGEX...: until the pod's events have a line matching each
# (grep -E), 30 s at most; prints them. The Ready status and the events are
# separate writes: the events may land after the status.
wait_events() {
    local pod=$1 ev re ok deadline=$((SECONDS + 30))
    shift
    while :; do
        ev=$(pod_events "$pod")
        ok=1
        for re in "$@"; do grep -qE -- "$re" <<<"$ev" || ok=0; done
        if [ "$ok" = 1 ] || ((SECONDS >= deadline)); then
            printf '%s\n' "$ev"
            return 0
        fi
        sleep 0.5
    done
}

wait_running() { # POD
    "${kn[@]}" wait --for=condition=Ready "pod/$1" --timeout=60s >/dev/null 2>&1 || {
        "${kn[@]}" get pod "$1" -o yaml | sed 's/^/    pod| /'
        pod_events "$1" | sed 's/^/    event| /'
        fail "pod $1 not Ready after 60 s"
    }
    [ "$(jp "$1" '{.status.phase}')" = Running ] || fail "pod $1: phase $(jp "$1" '{.status.phase}')"
    [ "$(jp "$1" '{.status.containerStatuses[0].state.running.startedAt}')" != '' ] ||
        fail "pod $1: container not running"
}

wait_refused() { # POD: waits in ErrImagePull/ImagePullBackOff with a Warning naming the 401
    local reason='' ev=''
    for i in $(seq 1 120); do
        reason=$(jp "$1" '{.status.containerStatuses[0].state.waiting.reason}')
        ev=$(pod_events "$1" | grep '^Warning Failed: ' || true)
        case $reason in ErrImagePull | ImagePullBackOff) [ -n "$ev" ] && break ;; esac
        [ "$i" = 120 ] && {
            "${kn[@]}" get pod "$1" -o yaml | sed 's/^/    pod| /'
            fail "pod $1: waiting reason '$reason', Warning events '$ev' after 60 s"
        }
        sleep 0.5
    done
    grep -q "$ref" <<<"$ev" || fail "pod $1: the Warning does not name the image: $ev"
    grep -qi '401 Unauthorized' <<<"$ev" || fail "pod $1: the Warning does not name the refusal: $ev"
    # and, as the kubelet's, a Normal event says the next pull waits
    grep -qF "Normal BackOff: Back-off pulling image \"$ref\"" <<<"$(wait_events "$1" '^Normal BackOff: ')" ||
        fail "pod $1: no Back-off pulling image event"
    [ "$(jp "$1" '{.status.phase}')" = Pending ] || fail "pod $1: phase $(jp "$1" '{.status.phase}')"
    [ -z "$(jp "$1" '{.status.containerStatuses[0].state.running}')" ] || fail "pod $1 runs"
    msg=$(jp "$1" '{.status.containerStatuses[0].state.waiting.message}')
    log "pod $1: waiting $reason, event: $(head -n 1 <<<"$ev" | cut -c1-220)"
}

# ---- (a) right credentials, (b) wrong ones, (c) none ---------------------------------------------
pods_from=$(reg_next)
make_pod pull-right IfNotPresent right-creds
make_pod pull-wrong Always wrong-creds
make_pod pull-anon Always
wait_running pull-right
ev=$(wait_events pull-right '^Normal Pulling: ' '^Normal Pulled: ')
grep -qx "Normal Pulling: Pulling image \"$ref\"" <<<"$ev" || fail "pull-right: no Pulling event: $ev"
grep -q "^Normal Pulled: Successfully pulled image \"$ref\" in " <<<"$ev" ||
    fail "pull-right: no Pulled event: $ev"
[ "$(jp pull-right '{.status.containerStatuses[0].image}')" = "$ref" ] ||
    fail "pull-right: image $(jp pull-right '{.status.containerStatuses[0].image}')"
[ -n "$(run_images)" ] || fail "pull-right runs, but $ref is not in containerd"
# containerd got the manifest on an authorized request (htpasswd has
# $user alone).
# (Matching reads a variable, not a pipe: under pipefail, grep -q's early
# exit would kill the writer with SIGPIPE and fail the match.)
grep -q "\"[A-Z]* /v2/vkc/busybox/manifests/$tag HTTP/1.1\" 200 .*\"containerd/" <<<"$(repo_requests "$pods_from")" ||
    fail "the registry served no manifest: $(repo_requests "$pods_from" | tail -n 5)"
grep -q "uri=/v2/vkc/busybox/manifests/$tag .*useragent=\"containerd/" \
    <<<"$(grep 'msg="authorized request"' <<<"$(reg_since "$pods_from")")" ||
    fail "the registry authorized no request of containerd"
log "(a) pull-right Running: $(grep '^Normal Pulled' <<<"$ev")"

wait_refused pull-wrong
grep -qi 'ImagePull\|401\|unauthorized\|failed to pull' <<<"$msg" ||
    fail "pull-wrong: waiting message '$msg'"
wait_refused pull-anon
# The wrong password reached the registry (and was refused), not just no
# credentials at all (refused too).
refused_user="error authenticating user \\\"$user\\\": authentication failure"
grep -q "uri=/v2/vkc/busybox/manifests/$tag " <<<"$(grep -F "$refused_user" <<<"$(reg_since "$pods_from")")" ||
    fail "the registry saw no wrong password for $user"
grep -q "uri=/v2/vkc/busybox/manifests/$tag " \
    <<<"$(grep 'invalid authorization credential' <<<"$(reg_since "$pods_from")")" ||
    fail "the registry saw no request without credentials"
grep -q '" 401 ' <<<"$(repo_requests "$pods_from")" || fail "the registry refused no request"
log "(b) pull-wrong and (c) pull-anon refused by the registry"
"${kn[@]}" delete pod pull-wrong pull-anon --timeout=60s >/dev/null || fail "cannot delete the refused pods"

# ---- (d) IfNotPresent, image present, no secret: no pull ------------------------------------------
registry_quiet
from=$(reg_next)
make_pod pull-present IfNotPresent
wait_running pull-present
ev=$(wait_events pull-present '^Normal Pulled: ')
grep -qx "Normal Pulled: Container image \"$ref\" already present on machine" <<<"$ev" ||
    fail "pull-present: no 'already present' event: $ev"
grep -q 'Pulling\|Successfully pulled' <<<"$ev" && fail "pull-present: pulled: $ev"
[ -z "$(repo_requests "$from")" ] || fail "pull-present: the registry was asked: $(repo_requests "$from")"
log "(d) pull-present Running without a pull (registry untouched since line $from)"

# ---- (e) [wrong, right] under Always: tried in turn ------------------------------------------------
from=$(reg_next)
make_pod pull-both Always wrong-creds right-creds
wait_running pull-both
ev=$(wait_events pull-both '^Normal Pulled: ')
grep -q "^Normal Pulled: Successfully pulled image \"$ref\" in " <<<"$ev" ||
    fail "pull-both: no Pulled event: $ev"
# The wrong password first (refused), then the right one (served). From a
# variable with grep -m1, not "| head -n 1": under pipefail and set -e, head's
# early exit could kill grep with SIGPIPE and end the test without a word.
since_from=$(reg_since "$from")
wrong_at=$(grep -m1 -nF "$refused_user" <<<"$since_from" | cut -d: -f1 || true)
served_at=$(grep -m1 -n "\"[A-Z]* /v2/vkc/busybox/manifests/$tag HTTP/1.1\" 200 " <<<"$since_from" |
    cut -d: -f1 || true)
{ [ -n "$wrong_at" ] && [ -n "$served_at" ] && [ "$wrong_at" -lt "$served_at" ]; } ||
    fail "pull-both: want the wrong password refused, then the manifest served: $(repo_requests "$from")"
log "(e) pull-both Running: wrong credentials refused, then the right ones served"

# ---- no password anywhere --------------------------------------------------------------------------
"${kn[@]}" get events -o json >"$dir/events.json" || fail "cannot list events"
"${kn[@]}" get pods -o json >"$dir/pods.json" || fail "cannot list pods"
[ -f "$ctrd_log" ] && tail -c "+$((ctrd_off + 1))" "$ctrd_log" >"$dir/containerd.log"
grep -q 'pulling image' "$dir/core.log" || fail "the provider's log is not in the core's"
for p in "$pass" "$bad_pass" "$(printf '%s' "$user:$pass" | base64 -w0)" \
    "$(printf '%s' "$user:$bad_pass" | base64 -w0)"; do
    for f in events.json pods.json core.log registry.log containerd.log push.log; do
        [ -f "$dir/$f" ] || continue
        grep -qF -- "$p" "$dir/$f" && fail "a password is in $f"
    done
done
log "no password in events, pod statuses, the core's, registry's or containerd's logs"

grep -q 'level=error' "$dir/core.log" && {
    grep 'level=error' "$dir/core.log" | head -n 10 | sed 's/^/    core| /'
    fail "errors in the core's log"
}
echo "CRI provider pulls with imagePullSecrets from a registry: ok ($((SECONDS - T0)) s)"
