#!/usr/bin/env bash
# tests/bench/profile.sh BUILD [callgrind|perf] -- `make bench-profile`:
# profile vkc-core through a pod churn (BENCH_PROFILE_PODS, 1000 pods
# created at once, Running, deleted, gone) on a control plane of its own.
#
#   callgrind  vkc-core runs under valgrind --tool=callgrind: instruction
#              counts, repeatable on a noisy machine (the core is ~50x
#              slower, so the API server is never its bottleneck here)
#   perf       native vkc-core, sampled with perf record -e cpu-clock -g
#              (software clock: this machine has no hardware counters)
#
# Output in BUILD/bench/profile/: the raw profile, top-self.txt (functions
# by own cost), top-inclusive.txt, and for perf perf-report.txt.
set -uo pipefail
BUILD=${1:-build}
MODE=${2:-callgrind}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
OUT=$BUILD/bench/profile
BIN=$BUILD/bin
B=$BUILD/bench/vkc-bench
N=${BENCH_PROFILE_PODS:-1000}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
CLUSTER=$OUT/cluster
log() { echo "[profile] $*" >&2; }
CORE_PID=
cleanup() {
	if [[ -n $CORE_PID ]]; then
		kill -TERM "$CORE_PID" 2>/dev/null
		for _ in $(seq 300); do kill -0 "$CORE_PID" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$CORE_PID" 2>/dev/null
	fi
	tests/cluster/down.sh "$CLUSTER" >/dev/null 2>&1
	rm -rf "${SOCK:-/nonexistent}"
}
trap cleanup EXIT

tests/cluster/down.sh "$CLUSTER" >/dev/null 2>&1
rm -rf "$CLUSTER"
log "control plane"
nice tests/cluster/up.sh "$CLUSTER" >"$OUT/cluster-up.log" 2>&1 || { tail "$OUT/cluster-up.log"; exit 1; }
# shellcheck disable=SC1091
. "$CLUSTER/env"
K=("$VKC_KUBECTL" --kubeconfig "$CLUSTER/admin.kubeconfig")
"${K[@]}" create namespace prof >/dev/null
for _ in $(seq 100); do
	[[ -n $("${K[@]}" -n prof get sa default -o 'jsonpath={.secrets[0].name}' 2>/dev/null) ]] && break
	sleep 0.2
done
SOCK=$(mktemp -d /tmp/vkc-prof-XXXXXX)
PORT=$((20000 + RANDOM % 12000))
CORE=("$BIN/vkc-core" --kubeconfig "$VKC_NODE_KUBECONFIG" --nodename vkc-node
	--provider-cmd "$ROOT/$BIN/vkc-provider-mock --pods $((N + 100)) --log-level warn"
	--socket-dir "$SOCK" --listen-port "$PORT" --metrics-addr "127.0.0.1:$((PORT + 1))"
	--node-ip 127.0.0.1 --client-ca-file "$VKC_CA_CERT"
	--tls-cert-file "$VKC_NODE_KUBELET_CERT" --tls-private-key-file "$VKC_NODE_KUBELET_KEY"
	--kube-api-qps 1000 --kube-api-burst 2000)
if [[ $MODE == callgrind ]]; then
	valgrind --tool=callgrind --callgrind-out-file="$OUT/vkc-core.callgrind" "${CORE[@]}" \
		>"$OUT/core.log" 2>&1 &
else
	nice "${CORE[@]}" >"$OUT/core.log" 2>&1 &
fi
CORE_PID=$!
for _ in $(seq 600); do
	[[ $("${K[@]}" get node vkc-node -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null) == True ]] && break
	sleep 0.5
done
sleep 5
if [[ $MODE == perf ]]; then
	perf record -e cpu-clock -F 999 -g -p "$CORE_PID" -o "$OUT/perf.data" >/dev/null 2>"$OUT/perf-record.log" &
	PERF=$!
fi
log "churn of $N pods through vkc-core ($MODE)"
"$B" churn --kubeconfig "$CLUSTER/admin.kubeconfig" --node vkc-node --ns prof --prefix p --pods "$N" \
	--timeout 3600 >"$OUT/churn.out" 2>"$OUT/churn.err"
cat "$OUT/churn.out" >&2
if [[ $MODE == perf ]]; then
	kill -INT "$PERF"
	wait "$PERF"
	perf report -i "$OUT/perf.data" --no-children --sort dso,symbol --stdio 2>/dev/null | head -n 80 >"$OUT/perf-report.txt"
	perf report -i "$OUT/perf.data" --no-children --sort dso --stdio 2>/dev/null | head -n 40 >"$OUT/perf-dso.txt"
	cat "$OUT/perf-dso.txt" "$OUT/perf-report.txt" | grep -v '^#' | grep -v '^$' | head -n 60
else
	# SIGTERM: the core shuts down cleanly and callgrind writes its profile.
	kill -TERM "$CORE_PID"
	wait "$CORE_PID"
	CORE_PID=
	callgrind_annotate --threshold=99 "$OUT/vkc-core.callgrind" 2>/dev/null | head -n 60 >"$OUT/top-self.txt"
	callgrind_annotate --inclusive=yes --threshold=99 "$OUT/vkc-core.callgrind" 2>/dev/null | head -n 120 >"$OUT/top-inclusive.txt"
	head -n 45 "$OUT/top-self.txt"
fi
