#!/usr/bin/env bash
# Stop the control plane that tests/cluster/up.sh started in DIR: only the
# processes recorded in DIR/pids (and only if the PID still names the same
# process, by start time), SIGTERM first, SIGKILL after a grace period.
# Idempotent: a second run, or a DIR with nothing running, does nothing.
# State (etcd data, PKI, logs) stays in DIR; rm -rf DIR to drop it.
#
#   tests/cluster/down.sh DIR
#
# Env: VKC_DOWN_GRACE seconds to wait after SIGTERM (default 15).
set -euo pipefail

log() { printf '[down.sh] %s\n' "$*" >&2; }
(($# == 1)) || { log "usage: $0 DIR"; exit 2; }
DIR=$1
PIDS=$DIR/pids
GRACE=${VKC_DOWN_GRACE:-15}
[[ -s $PIDS ]] || exit 0

proc_start() { # PID -> start time (field 22 of /proc/PID/stat), or nothing
	local stat
	stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 0
	stat=${stat##*) }
	# shellcheck disable=SC2086
	set -- $stat
	echo "${20}"
}
ours() { # PID STARTTIME: still the process we started?
	[[ -n $2 && $(proc_start "$1") == "$2" ]]
}

names=() pids=() starts=()
while read -r name pid st; do
	[[ -n ${pid:-} ]] || continue
	names+=("$name") pids+=("$pid") starts+=("${st:-}")
done <"$PIDS"

# Stop in reverse start order: controllers, then the apiserver, then etcd.
stop_one() { # INDEX
	local name=${names[$1]} pid=${pids[$1]} st=${starts[$1]} i
	ours "$pid" "$st" || return 0
	log "stopping $name (pid $pid)"
	kill -TERM "$pid" 2>/dev/null || return 0
	for ((i = 0; i < GRACE * 10; i++)); do
		ours "$pid" "$st" || return 0
		# a zombie (our child only if sourced) counts as gone
		[[ $(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) != Z ]] || return 0
		sleep 0.1
	done
	log "$name (pid $pid) ignored SIGTERM for ${GRACE}s; SIGKILL"
	kill -KILL "$pid" 2>/dev/null || true
	for ((i = 0; i < 50; i++)); do
		ours "$pid" "$st" || return 0
		sleep 0.1
	done
	log "WARNING: $name (pid $pid) still present after SIGKILL"
	return 1
}
rc=0
for ((k = ${#pids[@]} - 1; k >= 0; k--)); do
	stop_one "$k" || rc=1
done
((rc == 0)) && : >"$PIDS"
exit "$rc"
