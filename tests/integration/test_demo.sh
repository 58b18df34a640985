#!/bin/bash
# `make run` end to end: contrib/run-demo.sh as a user runs it, but on a
# kubelet port of its own (VKC_DEMO_PORT), so it does not clash with a
# cluster or a core already running (its control plane picks free ports and
# lives in a directory of its own). The node turns Ready and the demo's 3
# replicas run on it; then Ctrl-C (SIGINT to the demo's process group, as a
# terminal sends it) stops everything the demo started: no process of its
# directory is left, and the directory is gone.
#   tests/integration/test_demo.sh BUILD
set -euo pipefail

# shellcheck source=tests/integration/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
build=$(lib_build_dir "${1:-}")
cd "$LIB_ROOT"
out=$(mktemp /tmp/vkc-demo-test.XXXXXX)
demo=

cleanup() {
    # Only on failure is the demo still running: Ctrl-C it, then make sure.
    if [[ -n $demo ]] && kill -0 "$demo" 2>/dev/null; then
        kill -INT -- "-$demo" 2>/dev/null || true
        lib_stop "$demo" TERM 60
    fi
    rm -f "$out"
}
trap cleanup EXIT

fail() { echo "FAIL: $*"; tail -n 40 "$out" | sed 's/^/    demo| /'; exit 1; }

# cmdline_of PID: its command line, blank-separated (empty once it is gone).
cmdline_of() {
    { tr '\0' ' ' <"/proc/$1/cmdline"; } 2>/dev/null || true
}

# procs_of DIR: the PIDs of the processes whose command line mentions DIR.
procs_of() {
    local f pid
    for f in /proc/[0-9]*/cmdline; do
        pid=${f#/proc/}
        pid=${pid%/cmdline}
        [[ $(cmdline_of "$pid") == *"$1"* ]] && echo "$pid"
    done
    return 0
}

# Job control puts the demo in a process group of its own, as a shell does
# for a foreground command, and leaves its SIGINT as it would be there (a
# script's background jobs would ignore it otherwise).
set -m
VKC_DEMO_PORT=$(lib_free_port) contrib/run-demo.sh "$build" >"$out" 2>&1 &
demo=$!
set +m

# A control plane, a node and a rollout of 3 (its own limit 120 s) in one:
# 300 s, for a loaded machine.
deadline=$((SECONDS + 300))
while ((SECONDS < deadline)); do
    grep -q '^vkc is running' "$out" && break
    kill -0 "$demo" 2>/dev/null || fail "run-demo.sh exited before the demo was up"
    sleep 0.5
done
grep -q '^vkc is running' "$out" || fail "the demo was not up after 300 s"
dir=$(sed -n 's|.*(log: \(/tmp/vkc-demo\.[^/]*\)/core\.log).*|\1|p' "$out")
[[ -n $dir && -s $dir/cluster/env ]] || fail "cannot find the demo's directory in its output"
# shellcheck disable=SC1091
. "$dir/cluster/env"
lib_kubectl 30s

[[ $("${K[@]}" get node vkc-node -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}') == True ]] ||
    fail "node vkc-node is not Ready"
pods=$("${K[@]}" get pods -l app=demo -o 'jsonpath={range .items[*]}{.status.phase} {.spec.nodeName}{"\n"}{end}')
[[ $(grep -c '^Running vkc-node$' <<<"$pods") -eq 3 && $(wc -l <<<"$pods") -eq 3 ]] ||
    fail "want 3 demo pods Running on vkc-node, got: [$pods]"

# What the demo runs: the control plane and vkc-core name the directory on
# their command lines; the provider is vkc-core's child.
before=$(procs_of "$dir")
for name in etcd kube-apiserver kube-scheduler kube-controller-manager vkc-core; do
    found=
    for pid in $before; do
        args=$(cmdline_of "$pid")
        args=${args%% *}
        if [[ ${args##*/} == "$name" ]]; then found=$pid; fi
    done
    [[ -n $found ]] || fail "no $name running from $dir (processes: $before)"
done
core=$found # the last name's
provider=$(lib_child_of "$core") || fail "vkc-core (pid $core) has no provider child"
before="$before $provider"

kill -INT -- "-$demo"
for _ in $(seq 1 600); do kill -0 "$demo" 2>/dev/null || break; sleep 0.1; done
kill -0 "$demo" 2>/dev/null && fail "run-demo.sh still runs 60 s after Ctrl-C"
wait "$demo" || true
demo=
left=$(procs_of "$dir")
[[ -d /proc/$provider ]] && left="$left $provider"
[[ -z ${left// /} ]] || fail "left running after Ctrl-C: $(for p in $left; do cmdline_of "$p"; echo; done)"
[[ ! -e $dir ]] || fail "$dir is left after Ctrl-C"
echo "make run: node Ready, 3 demo pods Running on vkc-node; Ctrl-C stopped $(wc -w <<<"$before") processes and removed $dir"
