#!/usr/bin/env bash
# tests/bench/micro/run.sh BUILD [POD.json] -- `make bench-micro`:
# instructions per pod of each hot-path step of the core (callgrind, one
# run per step, only that step collected), into BUILD/bench/micro.txt.
set -euo pipefail
BUILD=${1:-build}
OUT=$BUILD/bench
M=$OUT/vkc-micro
POD=${2:-tests/bench/micro/pod.json}
mkdir -p "$OUT"
iter=$(sed -n 's/^#define ITER \([0-9]*\).*/\1/p' tests/bench/micro/micro.c)
"$M" "$POD" | tee "$OUT/micro-time.txt"
steps=$(awk '/^[a-z_]+ +[0-9]+ ns\/op/ { print $1 }' "$OUT/micro-time.txt")
{
	echo "instructions per pod (callgrind Ir of op_STEP / $iter iterations); pod: $POD"
	for s in $steps; do
		valgrind --tool=callgrind --toggle-collect="op_$s" --callgrind-out-file="$OUT/micro-$s.callgrind" \
			"$M" "$POD" "$s" >/dev/null 2>"$OUT/micro-valgrind.log"
		ir=$(awk '/^summary:/ { print $2 }' "$OUT/micro-$s.callgrind")
		printf '%-18s %10.0f\n' "$s" "$(awk -v a="$ir" -v n="$iter" 'BEGIN { print a / n }')"
	done
} | tee "$OUT/micro.txt"
