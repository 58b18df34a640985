#!/bin/bash
# Faults around a running node: vkc-core + the mock provider on a cluster of
# its own, ~20 pods Running on the node, then in turn:
#   1. etcd killed, down 10 s, started again on the same data dir;
#   2. the API server answers 500s and 429s (Retry-After) for 20 s: the core
#      talks to it through tests/integration/faultproxy.py, while pods are
#      created and deleted through the real API server;
#   3. vkc-core SIGKILLed with pods running, then started again;
#   4. the provider killed in the middle of a `kubectl exec`;
#   5. `kubectl logs -f` clients stopped (SIGSTOP) while logs flow fast, and
#      a raw HTTPS log reader on the kubelet port that stops reading.
# After each: nothing lost or duplicated (the same pod uids in the API, the
# same pods in the provider), statuses converge (Running, the API's status
# matches the provider's), the Lease renewed, the core still running; the
# figures of each scenario are printed on one "RESULT" line.
# Covered elsewhere, not here: API server restart (test_apiserver_restart.sh),
# provider crash/hang (test_core.c, test_pods.c), SPDY-level provider death
# mid-exec (test_streams.c), kubectl dying mid-follow (test_kubelet_api.c).
#   tests/integration/test_faults.sh BUILD
set -euo pipefail

build=${1:-${BUILD:-build}}
bin=$(cd "$build/bin" && pwd)
mkdir -p "$build/tmp"
dir=$(mktemp -d "$(cd "$build/tmp" && pwd)/faults.XXXXXX")
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
T0=$SECONDS
# shellcheck source=tests/integration/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

core='' proxy='' watcher=''
helpers=()   # background kubectl processes
providers=() # provider PIDs seen (children of the core)

log() { printf '[faults %3ss] %s\n' "$((SECONDS - T0))" "$*"; }

cleanup() {
    local rc=$?
    set +e
    for p in "${helpers[@]}" $watcher; do
        kill -KILL "$p" 2>/dev/null && wait "$p" 2>/dev/null
    done
    lib_stop "$core"
    # A provider outlives a SIGKILLed core only if PR_SET_PDEATHSIG failed.
    for p in "${providers[@]}"; do
        if running "$p" vkc-provider-mo; then
            echo "WARNING: provider $p still running after the core; killing it"
            kill -KILL "$p"
        fi
    done
    if [ -n "$proxy" ]; then kill -TERM "$proxy" 2>/dev/null && wait "$proxy" 2>/dev/null; fi
    tests/cluster/down.sh "$dir/cluster" >/dev/null 2>&1
    # VKC_FAULTS_KEEP=1 keeps the directory (logs, cluster state) for a look.
    if [ -z "${VKC_FAULTS_KEEP:-}" ]; then rm -rf "$dir"; else echo "kept $dir"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

fail() {
    echo "FAIL: $*"
    echo "--- core log (tail)"
    tail -n 40 "$dir/core.log" 2>/dev/null || true
    exit 1
}

cd "$repo"

# ---- a cluster of its own: this test restarts etcd --------------------------------
log "starting the cluster in $dir/cluster"
lib_start_cluster "$dir/cluster" "$dir/up.log"
pki=$VKC_CLUSTER_DIR/pki
node=$VKC_NODE_NAME
lib_kubectl 10s
kw=("$VKC_KUBECTL" --kubeconfig "$VKC_ADMIN_KUBECONFIG") # no timeout: watch, exec, logs -f
port=$(lib_free_port)

# ---- the fault proxy between the core and the API server ---------------------------
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=faultproxy \
    -keyout "$dir/proxy.key" -out "$dir/proxy.csr" >/dev/null 2>&1
printf 'basicConstraints=critical,CA:FALSE\nextendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n' >"$dir/proxy.ext"
openssl x509 -req -in "$dir/proxy.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" -CAcreateserial \
    -CAserial "$dir/proxy.srl" -days 1 -sha256 -extfile "$dir/proxy.ext" -out "$dir/proxy.crt" >/dev/null 2>&1 ||
    fail "cannot make the proxy's certificate"
/usr/bin/python3 tests/integration/faultproxy.py --upstream "127.0.0.1:$VKC_APISERVER_PORT" \
    --cert "$dir/proxy.crt" --key "$dir/proxy.key" --port-file "$dir/proxy.port" \
    --stats-file "$dir/proxy.stats" 2>"$dir/proxy.log" &
proxy=$!
deadline=$((SECONDS + 60))
while [ ! -s "$dir/proxy.port" ] && ((SECONDS < deadline)) && kill -0 "$proxy" 2>/dev/null; do sleep 0.1; done
[ -s "$dir/proxy.port" ] || fail "the fault proxy did not start: $(cat "$dir/proxy.log")"
proxy_port=$(cat "$dir/proxy.port")
sed "s|server: .*|server: https://127.0.0.1:$proxy_port|" "$VKC_NODE_KUBECONFIG" >"$dir/node.kubeconfig"
proxy_stat() { /usr/bin/python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$dir/proxy.stats" "$1"; }

# ---- vkc-core ----------------------------------------------------------------------
start_core() {
    "$bin/vkc-core" --nodename "$node" --kubeconfig "$dir/node.kubeconfig" \
        --socket-dir "$dir/run" --listen-port "$port" --node-ip 127.0.0.1 \
        --tls-cert-file "$VKC_NODE_KUBELET_CERT" --tls-private-key-file "$VKC_NODE_KUBELET_KEY" \
        --client-ca-file "$VKC_CA_CERT" \
        --provider-cmd "$bin/vkc-provider-mock --log-interval 1" 2>>"$dir/core.log" &
    core=$!
}
provider_pid() { # sets prov to the core's child, once it has one
    local p
    prov=
    for _ in $(seq 1 100); do
        # Not "| head -n 1": under pipefail and set -e, a SIGPIPE there
        # would end the test.
        p=$(children "$core")
        p=${p%%$'\n'*}
        if [ -n "$p" ]; then
            providers+=("$p")
            prov=$p
            return 0
        fi
        sleep 0.1
    done
    return 1
}
# From /proc, so that neither procps nor iproute2 is needed.
children() { # PID -> its child processes
    /usr/bin/python3 - "$1" <<'EOF'
import glob
import sys
for f in glob.glob("/proc/[0-9]*/stat"):
    try:
        st = open(f).read()
    except OSError:
        continue
    if st[st.rindex(")") + 2:].split()[1] == sys.argv[1]:
        print(f.split("/")[2])
EOF
}
sendq() { # LOCAL_PORT [PEER_PORT] -> bytes written and not yet acknowledged, established sockets
    /usr/bin/python3 - "$@" <<'EOF'
import sys
local = "%04X" % int(sys.argv[1])
peer = "%04X" % int(sys.argv[2]) if len(sys.argv) > 2 else None
n = 0
for f in ("/proc/net/tcp", "/proc/net/tcp6"):
    try:
        lines = open(f).read().splitlines()[1:]
    except OSError:
        continue
    for l in lines:
        x = l.split()
        if x[3] == "01" and x[1].endswith(":" + local) and (peer is None or x[2].endswith(":" + peer)):
            n += int(x[4].split(":")[0], 16)
print(n)
EOF
}
kubelet() { # PATH: GET on the core's kubelet API as admin
    curl -sS --max-time 5 --cacert "$VKC_CA_CERT" --cert "$pki/admin.crt" --key "$pki/admin.key" \
        "https://127.0.0.1:$port$1"
}
metric_sum() { # FILE NAME [LABEL-FILTER]: the sum of a family's series
    awk -v n="$2" -v f="${3:-}" '{split($1, a, "{")} a[1] == n && index($1, f) {s += $NF} END {printf "%d\n", s}' "$1"
}
alive() { kill -0 "$core" 2>/dev/null || fail "vkc-core exited ($1)"; }
lease_time() { "${K[@]}" -n kube-node-lease get lease "$node" -o jsonpath='{.spec.renewTime}' 2>/dev/null || true; }
epoch() { # RFC 3339 (micro) time -> seconds since the epoch, with fraction
    /usr/bin/python3 -c 'import sys,datetime; print("%.3f" % datetime.datetime.strptime(sys.argv[1].replace("Z",""), "%Y-%m-%dT%H:%M:%S.%f").replace(tzinfo=datetime.timezone.utc).timestamp())' "$1"
}
now() { date +%s.%N | cut -c1-14; }
# proxy_mode MODE: wait (30 s at most) until the fault proxy says it is in MODE.
proxy_mode() {
    local deadline=$((SECONDS + 30))
    until [ "$(proxy_stat mode 2>/dev/null)" = "$1" ]; do
        ((SECONDS < deadline)) || return 1
        sleep 0.1
    done
}
# running PID NAME: PID is a live process called NAME. A process that died
# but is not reaped yet (a zombie: its parent, say, was SIGKILLed and its new
# one has not waited yet) still has its /proc/PID/comm.
running() {
    [ "$(cat "/proc/$1/comm" 2>/dev/null)" = "$2" ] || return 1
    local st
    st=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    st=${st##*) }
    [[ ${st:0:1} != [ZX] ]]
}
since() { awk -v a="$1" -v b="$(now)" 'BEGIN {printf "%.1f", b - a}'; }

# Wait until the Lease's renewTime is later than T (epoch); prints the delay,
# fails when it is longer than LIMIT_S.
lease_after() { # T LIMIT_S
    local t=$1 limit=$2 r e
    local deadline=$((SECONDS + limit + 5))
    while [ $SECONDS -lt $deadline ]; do
        r=$(lease_time)
        if [ -n "$r" ]; then
            e=$(epoch "$r")
            if awk -v e="$e" -v t="$t" 'BEGIN {exit !(e > t)}'; then
                awk -v e="$e" -v t="$t" 'BEGIN {printf "%.1f\n", e - t}'
                # Renewed, but in time?
                awk -v e="$e" -v t="$t" -v l="$limit" 'BEGIN {exit !(e - t <= l)}'
                return
            fi
        fi
        sleep 1
    done
    return 1
}

# The API's pods on the node against the provider's: the same pods (names and
# uids), each once, all Running and ready, the same phase and IP on both sides,
# none being deleted; with WANT, exactly those namespace/name uid lines.
cat >"$dir/compare.py" <<'EOF'
import json, sys
api = json.load(open(sys.argv[1]))["items"]
prov = json.load(open(sys.argv[2]))["items"]
want = open(sys.argv[3]).read().split("\n") if len(sys.argv) > 3 else None
key = lambda p: "%s/%s" % (p["metadata"].get("namespace", "default"), p["metadata"]["name"])
bad = []
names = [key(p) for p in prov]
dups = sorted({n for n in names if names.count(n) > 1})
if dups:
    bad.append("provider duplicates: %s" % dups)
a = {key(p): p for p in api}
pv = {key(p): p for p in prov}
if set(a) != set(pv):
    bad.append("API only: %s; provider only: %s" % (sorted(set(a) - set(pv)), sorted(set(pv) - set(a))))
if want is not None:
    got = sorted("%s %s" % (n, p["metadata"]["uid"]) for n, p in a.items())
    w = sorted(l for l in want if l)
    if got != w:
        bad.append("API pods differ from the expected: missing %s, extra %s"
                   % (sorted(set(w) - set(got)), sorted(set(got) - set(w))))
running = 0
for n, p in a.items():
    st = p.get("status", {})
    if p["metadata"].get("deletionTimestamp"):
        bad.append("%s is being deleted" % n)
        continue
    ready = all(c.get("ready") for c in st.get("containerStatuses", [])) and st.get("containerStatuses")
    if st.get("phase") == "Running" and ready:
        running += 1
    else:
        bad.append("%s is %s (ready %s)" % (n, st.get("phase"), bool(ready)))
    q = pv.get(n)
    if q is None:
        continue
    if q["metadata"].get("uid") != p["metadata"]["uid"]:
        bad.append("%s: uid %s in the API, %s in the provider" % (n, p["metadata"]["uid"], q["metadata"].get("uid")))
    qs = q.get("status", {})
    for f in ("phase", "podIP"):
        if qs.get(f) != st.get(f):
            bad.append("%s: %s %s in the API, %s in the provider" % (n, f, st.get(f), qs.get(f)))
print("api=%d provider=%d running=%d" % (len(a), len(pv), running))
for b in bad[:8]:
    print("  " + b)
sys.exit(1 if bad else 0)
EOF
api_pods() { "${K[@]}" get pods -A --field-selector "spec.nodeName=$node" -o json; }
uids() { # namespace/name uid, sorted, of the node's pods in the API
    "${K[@]}" get pods -A --field-selector "spec.nodeName=$node" \
        -o jsonpath='{range .items[*]}{.metadata.namespace}/{.metadata.name} {.metadata.uid}{"\n"}{end}' | sort
}
# converge LIMIT [WANT_FILE]: prints the seconds it took; fails the test after LIMIT.
converge() {
    local limit=$1 want=${2:-} start out
    start=$(now)
    local deadline=$((SECONDS + limit))
    while :; do
        if api_pods >"$dir/api.json" 2>/dev/null &&
            kubelet /runningpods/ >"$dir/prov.json" 2>/dev/null &&
            out=$(/usr/bin/python3 "$dir/compare.py" "$dir/api.json" "$dir/prov.json" ${want:+"$want"} 2>&1); then
            since "$start"
            return 0
        fi
        [ $SECONDS -lt $deadline ] || { echo "not converged after ${limit}s: $out" >&2; return 1; }
        sleep 1
    done
}

log "starting vkc-core (through the fault proxy on port $proxy_port)"
start_core
lib_wait_node_ready "$node" "$core" 120
provider_pid || fail "the core started no provider"

# ~20 pods: a Deployment of 15 through the scheduler, 5 bare pods bound directly.
pod_json() { # NAME
    printf '{"apiVersion":"v1","kind":"Pod","metadata":{"name":"%s","labels":{"fault":"bare"}},"spec":{"nodeName":"%s","containers":[{"name":"app","image":"busybox"}]}}' "$1" "$node"
}
sed -e 's/"demo"/"faults"/g' -e 's/"replicas":3/"replicas":15/' contrib/demo-deployment.json |
    "${K[@]}" apply -f - >/dev/null
for i in 1 2 3 4 5; do pod_json "pre-$i"; done | "${K[@]}" create -f - >/dev/null
"${K[@]}" rollout status deployment/faults --timeout=120s >/dev/null || fail "the Deployment did not roll out"
converge 60 >/dev/null || fail "the 20 pods did not start"
uids >"$dir/uids0"
[ "$(wc -l <"$dir/uids0")" -eq 20 ] || fail "expected 20 pods on the node, got $(wc -l <"$dir/uids0")"
rss_start=$(lib_rss "$core")
log "20 pods Running; core VmRSS ${rss_start} kB"

# ---- 1. etcd restarted -----------------------------------------------------------------
log "scenario 1: etcd SIGKILLed, down 10 s"
VKC_RESTART_SIGNAL=KILL tests/cluster/restart.sh "$VKC_CLUSTER_DIR" etcd 10 2>>"$dir/restart.log"
t_back=$(now)
lib_wait_apiserver 60 || fail "the API server did not recover from the etcd restart"
alive "etcd restart"
lease1=$(lease_after "$t_back" 40) || fail "the Lease was not renewed within 40 s of etcd's return"
conv1=$(converge 60 "$dir/uids0") || fail "pods did not converge after the etcd restart"
alive "etcd restart"
echo "RESULT etcd-restart: etcd down 10 s (SIGKILL); lease renewed ${lease1} s after etcd was back (limit 40); 20/20 pods kept (same uids, none duplicated in the provider), converged ${conv1} s after etcd was back; core alive"

# ---- 2. API server answering 500 / 429 for 20 s --------------------------------------
log "scenario 2: 500/429 storm for 20 s"
kubelet /metrics >"$dir/metrics.before" || fail "no /metrics before the storm"
rss0=$(lib_rss "$core")
kill -USR1 "$proxy"
proxy_mode fault || fail "the proxy did not enter fault mode"
t_storm=$(now)
rss_peak=$rss0
# Changes made meanwhile, through the real API server.
for i in 1 2 3 4 5; do "${K[@]}" delete pod "pre-$i" --wait=false >/dev/null; done
for i in 1 2 3 4 5; do pod_json "storm-$i"; done | "${K[@]}" create -f - >/dev/null
while awk -v a="$t_storm" -v b="$(now)" 'BEGIN {exit !(b - a < 20)}'; do
    alive "storm"
    r=$(lib_rss "$core")
    [ "$r" -gt "$rss_peak" ] && rss_peak=$r
    sleep 1
done
kill -USR2 "$proxy"
proxy_mode pass || fail "the proxy did not leave fault mode"
t_calm=$(now)
n500=$(proxy_stat sent_500)
n429=$(proxy_stat sent_429)
nconn=$(proxy_stat faulted_connections)
storm_s=$(awk -v a="$t_storm" -v b="$t_calm" 'BEGIN {printf "%.1f", b - a}')
[ $((n500 + n429)) -gt 0 ] || fail "the core sent no request during the storm"
grep -v '^default/pre-' "$dir/uids0" >"$dir/uids2.part"
alive "storm"
lease2=$(lease_after "$t_calm" 40) || fail "the Lease was not renewed within 40 s after the storm"
# The storm pods' uids are the API's; the pre-* pods must be gone.
conv2=
deadline=$((SECONDS + 90))
while [ $SECONDS -lt $deadline ]; do
    { cat "$dir/uids2.part"; uids | grep '^default/storm-' || true; } | sort >"$dir/uids2"
    if [ "$(wc -l <"$dir/uids2")" -eq 20 ] && conv2=$(converge 5 "$dir/uids2" 2>"$dir/conv2.err"); then
        break
    fi
    conv2=
done
[ -n "$conv2" ] || fail "pods did not converge after the storm: $(cat "$dir/conv2.err")"
conv2=$(since "$t_calm")
kubelet /metrics >"$dir/metrics.after" || fail "no /metrics after the storm"
retries=0
for f in lease_renewals_total:error node_status_updates_total:error status_writes_total:error \
    reconcile_total:error events_dropped_total:; do
    filter=${f#*:}
    f=${f%%:*}
    b=$(metric_sum "$dir/metrics.before" "$f" ${filter:+"result=\"$filter\""})
    a=$(metric_sum "$dir/metrics.after" "$f" ${filter:+"result=\"$filter\""})
    [ $((a - b)) -gt 0 ] && retries_detail="${retries_detail:-}$f+$((a - b)) "
    retries=$((retries + a - b))
done
[ "$retries" -gt 0 ] || fail "/metrics shows no failed (retried) API writes across the storm"
rss1=$(lib_rss "$core")
[ "$rss1" -lt $((2 * rss0)) ] || fail "core VmRSS ${rss1} kB after the storm, baseline ${rss0} kB"
alive "after the storm"
rate=$(awk -v n=$((n500 + n429)) -v s="$storm_s" 'BEGIN {printf "%.1f", n / s}')
echo "RESULT api-500-429: ${storm_s} s storm, proxy answered ${n500}x500 + ${n429}x429 (${rate} req/s, ${nconn} TLS connections); 5 pods deleted + 5 created meanwhile: all gone/Running, 20 pods, none duplicated, converged ${conv2} s after the storm; lease renewed ${lease2} s after; metrics errors ${retries_detail}; VmRSS ${rss0} kB before, peak ${rss_peak} kB, ${rss1} kB after"
cp "$dir/uids2" "$dir/uids3"

# ---- 3. vkc-core SIGKILLed and restarted ------------------------------------------------
log "scenario 3: vkc-core SIGKILLed"
provider_pid || fail "no provider"
# Every change of the node's pods in the API while the core is away and back.
"${kw[@]}" get pods -A --field-selector "spec.nodeName=$node" -w --no-headers \
    -o 'custom-columns=N:.metadata.name,U:.metadata.uid,P:.status.phase,R:.status.containerStatuses[0].ready,D:.metadata.deletionTimestamp' \
    >"$dir/watch3" 2>&1 &
watcher=$!
sleep 2
api_pods >"$dir/api3.before.json"
kill -KILL "$core"
wait "$core" 2>/dev/null || true
t_kill=$(now)
pdeath=
for _ in $(seq 1 50); do
    running "$prov" vkc-provider-mo || { pdeath=$(since "$t_kill"); break; }
    sleep 0.1
done
[ -n "$pdeath" ] || fail "the provider (pid $prov) outlived the SIGKILLed core by 5 s"
sleep 3
start_core
provider_pid || fail "the restarted core started no provider"
conv3=$(converge 60 "$dir/uids3") || fail "pods did not converge after the core restart"
conv3=$(since "$t_kill")
lease3=$(lease_after "$t_kill" 40) || fail "the Lease was not renewed after the core restart"
sleep 2
{ kill -KILL "$watcher"; wait "$watcher"; } 2>/dev/null || true
watcher=
# No pod left Running or was re-created in the API meanwhile.
flaps=$(awk '$3 != "Running" || $4 != "true" || $5 != "<none>"' "$dir/watch3")
[ -z "$flaps" ] || fail "pods left Running/ready in the API across the core restart:
$(head -n 10 <<<"$flaps")"
newuids=$(awk '{print $2}' "$dir/watch3" | sort -u | grep -vxF -f <(awk '{print $2}' "$dir/uids3") || true)
[ -z "$newuids" ] || fail "new pod uids appeared across the core restart: $newuids"
alive "core restart"
changed=$(/usr/bin/python3 - "$dir/api3.before.json" "$dir/api.json" 2>"$dir/changed.err" <<'EOF'
import json, sys
b = {p["metadata"]["uid"]: p["status"] for p in json.load(open(sys.argv[1]))["items"]}
a = {p["metadata"]["uid"]: p["status"] for p in json.load(open(sys.argv[2]))["items"]}
def cs(s, f):
    c = (s.get("containerStatuses") or [{}])[0]
    return c.get("state", {}).get("running", {}).get("startedAt") if f == "startedAt" else c.get(f)
n = {"podIP": 0, "startTime": 0, "containerID": 0, "startedAt": 0, "restartCount": 0}
for u in b:
    if u not in a:
        continue
    n["podIP"] += b[u].get("podIP") != a[u].get("podIP")
    n["startTime"] += b[u].get("startTime") != a[u].get("startTime")
    for f in ("containerID", "startedAt", "restartCount"):
        n[f] += cs(b[u], f) != cs(a[u], f)
    # The kubelet's rules, which vkc keeps (core/podstatus.c): startTime is
    # set once; a container that was run again counts a restart.
    if b[u].get("startTime") != a[u].get("startTime"):
        print("BAD: startTime of %s moved" % u, file=sys.stderr)
    if cs(b[u], "containerID") != cs(a[u], "containerID") and \
            (cs(a[u], "restartCount") or 0) <= (cs(b[u], "restartCount") or 0):
        print("BAD: %s runs a new container but its restartCount stayed" % u, file=sys.stderr)
print(", ".join("%s %d" % kv for kv in n.items()))
EOF
)
! grep -q '^BAD' "$dir/changed.err" || fail "$(cat "$dir/changed.err")"
echo "RESULT core-sigkill: provider died ${pdeath} s after the core (PDEATHSIG); core restarted 3 s later, pods recreated in the new provider, 20/20 same uids, $(wc -l <"$dir/watch3") API updates seen, all Running+ready; changed in the API (of 20): ${changed}; converged ${conv3} s after the kill; lease renewed ${lease3} s after the kill"

# ---- 4. the provider dies mid-exec ---------------------------------------------------
log "scenario 4: provider SIGKILLed during kubectl exec"
pod=$(awk '$1 ~ /^default\/faults-/ {sub("default/", "", $1); print $1; exit}' "$dir/uids3")
[ "$("${K[@]}" exec "$pod" -- echo before)" = before ] || fail "exec before the fault did not work"
"${kw[@]}" exec "$pod" -- sleep 120 >"$dir/exec.out" 2>"$dir/exec.err" &
ex=$!
helpers+=("$ex")
# The exec must have reached the core (its connection open) before the
# provider dies, or it would simply run on the next provider.
deadline=$((SECONDS + 60))
until [ "$(kubelet /metrics | metric_sum /dev/stdin kubelet_api_stream_connections 'route="exec"')" -ge 1 ]; do
    ((SECONDS < deadline)) || fail "kubectl exec sleep 120 never reached the core: $(cat "$dir/exec.err")"
    sleep 0.2
done
sleep 1 # from the upgrade to the provider's ExecInContainer
kill -0 "$ex" 2>/dev/null || fail "kubectl exec sleep 120 ended early: $(cat "$dir/exec.err")"
provider_pid || fail "no provider"
kill -KILL "$prov"
t_kill=$(now)
exec_rc=
for _ in $(seq 1 200); do
    if ! kill -0 "$ex" 2>/dev/null; then
        wait "$ex" && exec_rc=0 || exec_rc=$?
        break
    fi
    sleep 0.1
done
exec_s=$(since "$t_kill")
[ -n "$exec_rc" ] || fail "kubectl exec still running 20 s after the provider died"
[ "$exec_rc" -ne 0 ] || fail "kubectl exec exited 0 although the provider died"
[ -s "$dir/exec.err" ] || fail "kubectl exec gave no error message"
awk -v s="$exec_s" 'BEGIN {exit !(s < 15)}' || fail "kubectl exec took ${exec_s} s to end"
alive "provider died mid-exec"
back=
for _ in $(seq 1 60); do
    if [ "$("${K[@]}" exec "$pod" -- echo after 2>/dev/null)" = after ]; then back=$(since "$t_kill"); break; fi
    sleep 1
done
[ -n "$back" ] || fail "no exec worked within 60 s of the provider's death"
conv4=$(converge 60 "$dir/uids3") || fail "pods did not converge after the provider's death"
echo "RESULT exec-provider-killed: kubectl exec exited ${exec_rc} ${exec_s} s after the provider's SIGKILL ('$(head -c 120 "$dir/exec.err" | tr '\n' ' ')'); core alive; a new exec worked ${back} s after the kill; pods converged ${conv4} s after the exec error (20/20 same uids)"

# ---- 5. kubectl logs -f clients that stop reading ---------------------------------------
log "scenario 5: 4 kubectl logs -f + 1 raw reader stopped for 15 s (mock log interval 1 ms)"
mapfile -t lpods < <(awk '$1 ~ /^default\/faults-/ {sub("default/", "", $1); print $1}' "$dir/uids3" | head -n 5)
followers=()
for i in 0 1 2 3; do
    "${kw[@]}" logs -f "${lpods[$i]}" >"$dir/follow.$i" 2>&1 &
    followers+=("$!")
    helpers+=("$!")
done
# Through the API server, kernel buffers and HTTP/2 windows (kubectl's 4 MiB
# per stream) hold more than the mock writes in 15 s (~60 KB/s per
# container), so the core's own back-pressure is never needed there. So one
# more reader talks to the core directly, with a 4 KiB receive buffer, and
# does not read until SIGUSR1; it follows a pod whose name (253 bytes) and
# container name (63) make each mock log line ~350 bytes, ~350 KB/s: more
# than the core's socket send buffer (tcp_wmem max, 4 MiB) takes in 15 s.
# Then it reads for 4 s and checks that the line numbers have no gap.
long=$(/usr/bin/python3 -c 'print("logburst-" + "a" * 54 + "." + "b" * 63 + "." + "c" * 63 + "." + "d" * 61)')
lctr=$(printf 'c%.0s' $(seq 1 63))
printf '{"apiVersion":"v1","kind":"Pod","metadata":{"name":"%s"},"spec":{"nodeName":"%s","containers":[{"name":"%s","image":"busybox"}]}}' \
    "$long" "$node" "$lctr" | "${K[@]}" create -f - >/dev/null
"${K[@]}" wait --for=condition=Ready "pod/$long" --timeout=30s >/dev/null || fail "the long-named pod did not start"
cat >"$dir/rawreader.py" <<'EOF'
import re, signal, socket, ssl, sys, time
port, path, ca, cert, key, out = sys.argv[1:]
go = []
signal.signal(signal.SIGUSR1, lambda *_: go.append(1))
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
s.connect(("127.0.0.1", int(port)))
ctx = ssl.create_default_context(cafile=ca)
ctx.load_cert_chain(cert, key)
t = ctx.wrap_socket(s, server_hostname="127.0.0.1")
# HTTP/1.0: no chunked framing, the body is the log itself.
t.sendall(("GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n" % path).encode())
head = b""
while b"\r\n\r\n" not in head:
    head += t.recv(1)
with open(out, "w") as f:
    f.write("%d %s\n" % (t.getsockname()[1], head.split(b"\r\n")[0].decode()))
while not go:
    time.sleep(0.1)
data, end = bytearray(), time.monotonic() + 4
t.settimeout(0.5)
while time.monotonic() < end:
    try:
        d = t.recv(65536)
    except socket.timeout:
        continue
    if not d:
        break
    data += d
nums = [int(x) for x in re.findall(rb" line (\d+)\n", bytes(data))]
gaps = sum(1 for a, b in zip(nums, nums[1:]) if b != a + 1)
with open(out, "a") as f:
    f.write("%d %d %d %d %d\n" % (len(data), len(nums), nums[0] if nums else 0, nums[-1] if nums else 0, gaps))
EOF
/usr/bin/python3 "$dir/rawreader.py" "$port" "/containerLogs/default/$long/$lctr?follow=true" \
    "$VKC_CA_CERT" "$pki/admin.crt" "$pki/admin.key" "$dir/raw.out" 2>"$dir/raw.err" &
raw=$!
helpers+=("$raw")
# Until all five readers are streaming, not for a fixed time: kubectl's and
# Python's start on a loaded machine can take seconds.
deadline=$((SECONDS + 60))
streams=0
while :; do
    for f in "${followers[@]}"; do kill -0 "$f" 2>/dev/null || fail "a kubectl logs -f ended early: $(cat "$dir"/follow.*)"; done
    kill -0 "$raw" 2>/dev/null || fail "the raw log reader ended early: $(cat "$dir/raw.err")"
    if [ -s "$dir/raw.out" ]; then
        streams=$(kubelet /metrics | metric_sum /dev/stdin kubelet_api_log_streams) || streams=0
        [ "$streams" -ge 5 ] && break
    fi
    ((SECONDS < deadline)) || fail "the core has $streams log streams open after 60 s, want 5 (raw reader: $(cat "$dir/raw.out" 2>/dev/null))"
    sleep 0.5
done
read -r raw_port raw_status < <(head -n 1 "$dir/raw.out")
[[ $raw_status == *" 200 "* ]] || fail "the raw log reader got: $raw_status"
rss_l0=$(lib_rss "$core")
for f in "${followers[@]}"; do kill -STOP "$f"; done
rss_lmax=$rss_l0
sendq_max=0 rawq=0 rawqs='' rsss=
for _ in $(seq 1 15); do
    sleep 1
    r=$(lib_rss "$core")
    [ "$r" -gt "$rss_lmax" ] && rss_lmax=$r
    rsss+="$((r / 1024)) "
    # Bytes the core wrote that its peers have not read: how far the
    # back-pressure reached.
    q=$(sendq "$port")
    [ "$q" -gt "$sendq_max" ] && sendq_max=$q
    rawq=$(sendq "$port" "$raw_port")
    rawqs+="$((rawq / 1024)) "
done
# Still serving while the readers are stopped.
t=$(now)
[ "$(kubelet /healthz)" = ok ] || fail "/healthz failed while log readers were stopped"
health_s=$(since "$t")
t=$(now)
n=$("${K[@]}" logs --tail=5 "${lpods[0]}" | wc -l)
[ "$n" -eq 5 ] || fail "another kubectl logs got $n lines, want 5"
logs_s=$(since "$t")
growth=$((rss_lmax - rss_l0))
[ "$growth" -lt 16384 ] || fail "core VmRSS grew ${growth} kB while log readers were stopped"
# The raw reader reads again: the stream was paused, not lost.
kill -USR1 "$raw"
wait "$raw" || fail "the raw log reader failed: $(cat "$dir/raw.err")"
read -r raw_bytes raw_lines raw_first raw_last raw_gaps < <(sed -n 2p "$dir/raw.out")
[ "${raw_lines:-0}" -gt 0 ] || fail "the raw log reader got nothing after it resumed reading"
[ "$raw_gaps" -eq 0 ] || fail "the raw log reader's lines have $raw_gaps gaps (lines $raw_first..$raw_last, $raw_lines read)"
# Two readers resume, two are killed while stopped.
kill -CONT "${followers[0]}" "${followers[1]}"
{ kill -KILL "${followers[2]}" "${followers[3]}"; wait "${followers[2]}" "${followers[3]}"; } 2>/dev/null || true
sleep 3
sizes2=$(cat "$dir/follow.0" "$dir/follow.1" | wc -c)
kill -0 "${followers[0]}" 2>/dev/null || fail "a resumed kubectl logs -f ended: $(tail -n 2 "$dir/follow.0")"
{ kill -KILL "${followers[0]}" "${followers[1]}"; wait "${followers[0]}" "${followers[1]}"; } 2>/dev/null || true
released=
# The API server closes its proxied stream to the kubelet port once it sees
# its client gone; on a loaded machine that takes seconds.
for _ in $(seq 1 60); do
    # A failed read (curl's 5 s limit) is another try, not the end of the test (set -e).
    streams=$(kubelet /metrics | metric_sum /dev/stdin kubelet_api_log_streams) || streams=unknown
    [ "$streams" = 0 ] && { released=1; break; }
    sleep 0.5
done
[ -n "$released" ] || fail "$streams log streams still open 30 s after every reader was gone"
rss_l1=$(lib_rss "$core")
alive "log readers"
echo "RESULT logs-reader-stopped: 4 kubectl followers (~60 KB/s each) + 1 raw reader (~350 KB/s), stopped 15 s: core VmRSS ${rss_l0} kB -> peak ${rss_lmax} kB (MiB, each second: ${rsss}) (+${growth} kB, limit 16384), ${rss_l1} kB after release; core's unread socket bytes: all peers up to ${sendq_max} B, raw reader's socket (KiB, each second) ${rawqs}; after resuming the raw reader read ${raw_bytes} B in 4 s, lines ${raw_first}..${raw_last} without a gap; resumed kubectls $sizes2 B in total; /healthz ${health_s} s, another logs call ${logs_s} s while stopped; log streams back to 0"

# ---- the end: a clean stop ---------------------------------------------------------
kill -TERM "$core"
rc=0
wait "$core" || rc=$?
core=
[ "$rc" -eq 0 ] || fail "vkc-core exited $rc on SIGTERM"
log "all scenarios passed in $((SECONDS - T0)) s; core VmRSS at start ${rss_start} kB"
