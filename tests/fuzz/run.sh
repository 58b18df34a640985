#!/bin/bash
# Runs the libFuzzer targets of one build tree (see tests/fuzz/README.md).
#   tests/fuzz/run.sh replay BUILD            every seed and regression, once
#   tests/fuzz/run.sh fuzz BUILD SECONDS      fuzz each target for SECONDS
# Exits non-zero when any target crashed, leaked or broke an invariant
# (replay: on an input not listed as a known failure).
set -uo pipefail

mode=${1:?usage: run.sh replay|fuzz BUILD [SECONDS]}
build=${2:?usage: run.sh replay|fuzz BUILD [SECONDS]}
seconds=${3:-30}
here=$(cd "$(dirname "$0")" && pwd)
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

failed=()
ran=0
for bin in "$build"/fuzz/fuzz_*; do
    [ -x "$bin" ] || continue
    name=${bin##*/fuzz_}
    seeds="$here/corpus/$name"
    regressions="$here/regressions/$name"
    case $mode in
    replay)
        # Inputs as files: libFuzzer runs each once and mutates nothing.
        # Those listed in regressions/NAME/known-failures reproduce bugs
        # reported and not fixed yet: each must still fail, alone (a known
        # failure that passes has been fixed: take it off the list).
        known=()
        [ -f "$regressions/known-failures" ] &&
            mapfile -t known < <(sed -e 's/#.*//' -e 's/[[:space:]]*$//' -e '/^$/d' "$regressions/known-failures")
        inputs=()
        while IFS= read -r f; do
            case " ${known[*]} " in *" ${f##*/} "*) continue ;; esac
            inputs+=("$f")
        done < <(find "$seeds" "$regressions" -type f ! -name '*.md' ! -name known-failures 2>/dev/null | sort)
        if [ ${#inputs[@]} -eq 0 ]; then
            echo "fuzz_$name: no seeds in $seeds"
            failed+=("$name")
            continue
        fi
        log="$build/fuzz/replay-$name.log"
        if ! "$bin" -artifact_prefix="$build/fuzz/" "${inputs[@]}" >"$log" 2>&1; then
            tail -n 30 "$log"
            failed+=("$name")
        fi
        for k in "${known[@]}"; do
            if [ ! -f "$regressions/$k" ]; then
                echo "fuzz_$name: known failure $k: no such file in $regressions"
                failed+=("$name")
            elif "$bin" -artifact_prefix="$build/fuzz/" "$regressions/$k" >"$log.known" 2>&1; then
                echo "fuzz_$name: known failure $k passes now: remove it from $regressions/known-failures"
                failed+=("$name")
            fi
        done
        ;;
    fuzz)
        # New inputs go to a working corpus in the build tree; the seeds in
        # the source tree are only read. Regressions join the working
        # corpus, but not the known failures, which would stop the run
        # before it starts.
        work="$build/fuzz/corpus/$name"
        crashes="$build/fuzz/crashes/$name"
        mkdir -p "$work" "$crashes"
        known=""
        [ -f "$regressions/known-failures" ] &&
            known=$(sed 's/#.*//' "$regressions/known-failures" | tr -s ' \t\n' '   ')
        for f in "$regressions"/*; do
            [ -f "$f" ] || continue
            case ${f##*/} in *.md | known-failures) continue ;; esac
            case " $known " in *" ${f##*/} "*) continue ;; esac
            cp "$f" "$work/regression-${f##*/}"
        done
        echo "fuzz_$name: ${seconds}s"
        if ! nice "$bin" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
            -artifact_prefix="$crashes/" -print_final_stats=1 "$work" "$seeds" \
            </dev/null >"$build/fuzz/fuzz-$name.log" 2>&1; then
            grep -E "ERROR|invariant|SUMMARY" "$build/fuzz/fuzz-$name.log" | head -n 20
            echo "fuzz_$name: failed; reproducer in $crashes, log $build/fuzz/fuzz-$name.log"
            failed+=("$name")
        fi
        ;;
    *)
        echo "unknown mode $mode" >&2
        exit 2
        ;;
    esac
    ran=$((ran + 1))
done

echo "fuzz targets: $ran, failed: ${#failed[@]}"
[ "$ran" -gt 0 ] || { echo "no fuzz targets in $build/fuzz (make fuzz-build)"; exit 1; }
[ ${#failed[@]} -eq 0 ] || { printf 'failed: fuzz_%s\n' "${failed[@]}"; exit 1; }
