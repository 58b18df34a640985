#!/bin/bash
# Stop one component of a cluster that up.sh started, keep it down for a
# while, then start it again with its recorded command line: for tests of
# what vkc does while the API server (or etcd) is away.
#   tests/cluster/restart.sh DIR NAME [SECONDS_DOWN]
# NAME is as in DIR/pids (kube-apiserver, etcd, ...). The new process is
# recorded in DIR/pids, so down.sh stops it. etcd comes back on the same
# data dir and ports (its recorded command line), so the cluster's state
# survives; "--initial-cluster-state new" is ignored on an existing data dir.
# Env: VKC_RESTART_SIGNAL, how to stop it: TERM (default, a clean stop, then
# KILL after 15 s) or KILL (a crash).
set -euo pipefail

dir=${1:?usage: restart.sh DIR NAME [SECONDS_DOWN]}
name=${2:?usage: restart.sh DIR NAME [SECONDS_DOWN]}
down_for=${3:-0}
signal=${VKC_RESTART_SIGNAL:-TERM}
case $signal in TERM | KILL) ;; *) echo "restart.sh: VKC_RESTART_SIGNAL must be TERM or KILL" >&2; exit 2 ;; esac
pids=$dir/pids
cmdline=$dir/logs/$name.cmdline

proc_start() { # PID -> start time (field 22 of /proc/PID/stat), or nothing
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 0
    stat=${stat##*) }
    # shellcheck disable=SC2086
    set -- $stat
    echo "${20}"
}

[ -r "$cmdline" ] || { echo "restart.sh: no $cmdline" >&2; exit 1; }
read -r _ pid start < <(grep "^$name " "$pids" | tail -n 1)
if [ -n "${pid:-}" ] && [ "$(proc_start "$pid")" = "$start" ]; then
    kill -"$signal" "$pid"
    for _ in $(seq 1 150); do
        [ "$(proc_start "$pid")" = "$start" ] || break
        sleep 0.1
    done
    [ "$(proc_start "$pid")" = "$start" ] && kill -KILL "$pid"
fi
echo "[restart.sh] $name stopped (SIG$signal); down for ${down_for}s" >&2
sleep "$down_for"

# The command line was written with printf %q: eval gives back the words.
eval "cmd=($(cat "$cmdline"))"
# shellcheck disable=SC2154
setsid "${cmd[@]}" >>"$dir/logs/$name.log" 2>&1 </dev/null &
pid=$!
echo "$name $pid $(proc_start "$pid")" >>"$pids"
echo "[restart.sh] $name started again (pid $pid)" >&2
