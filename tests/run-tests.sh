#!/bin/bash
# Runs the test programs of one build tree and reports each.
#   tests/run-tests.sh BUILD [unit|integration|python|conformance]
# Every test is a program that exits non-zero on failure; each gets a time
# limit so a hang fails the run instead of stalling it.
set -uo pipefail

build=${1:?usage: run-tests.sh BUILD [group]}
only=${2:-}
export VKC_BIN_DIR="$build/bin"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$PWD/tests/lsan.supp:print_suppressions=0}
# check's default limit per test is 4 s, which a loaded machine can exceed
# with no fault of the code; run() bounds each program as a whole.
export CK_DEFAULT_TIMEOUT=${CK_DEFAULT_TIMEOUT:-60}
# test_http_server's fixture drops a client idle for 1 s, scaled by this:
# doubled, a starved machine cannot make a well-behaved client look idle.
export VKC_TEST_TIME_SCALE=${VKC_TEST_TIME_SCALE:-2}

failed=()
passed=0

run() { # name, timeout seconds, command...
    local name=$1 limit=$2
    shift 2
    local start=$SECONDS
    printf '%-40s ' "$name"
    local log="$build/test-logs/$name.log"
    mkdir -p "$(dirname "$log")"
    if timeout --kill-after=10 "$limit" "$@" >"$log" 2>&1; then
        echo "ok    ($((SECONDS - start))s)"
        passed=$((passed + 1))
    else
        echo "FAIL  ($((SECONDS - start))s, log: $log)"
        tail -n 40 "$log" | sed 's/^/    | /'
        # A test's own verdict may sit above the logs it printed after it.
        grep -m 5 '^FAIL' "$log" | sed 's/^/    > /'
        failed+=("$name")
    fi
}

if [ -z "$only" ] || [ "$only" = unit ]; then
    for t in "$build"/tests/test_*; do
        [ -x "$t" ] || continue
        run "unit/$(basename "$t")" 300 "$t"
    done
fi

if [ -z "$only" ] || [ "$only" = unit ]; then
    run "docs/readme-example" 10 tests/readme-example.sh
    run "docs/metrics" 10 tests/docs-metrics.sh
fi

# Every fuzz target over its seeds and regressions, once (tests/fuzz). The
# targets carry ASan and UBSan themselves, so a sanitizer build skips them.
if { [ -z "$only" ] || [ "$only" = unit ]; } && ! grep -q __asan_init "$build/bin/vkc-core"; then
    run "fuzz/replay" 300 tests/fuzz/run.sh replay "$build"
fi

if [ -z "$only" ] || [ "$only" = integration ]; then
    # One real control plane serves every integration test that does not
    # need one of its own (those that restart the API server start theirs).
    # The first build of its binaries takes 10-20 minutes; they are cached.
    if [ -z "${VKC_CLUSTER_DIR:-}" ]; then
        tests/cluster/build.sh >/dev/null || { echo "cannot build the test cluster"; exit 1; }
        export VKC_CLUSTER_DIR="$build/cluster"
        tests/cluster/down.sh "$VKC_CLUSTER_DIR" >/dev/null 2>&1 || true
        rm -rf "$VKC_CLUSTER_DIR"
        tests/cluster/up.sh "$VKC_CLUSTER_DIR" >"$build/cluster-up.log" 2>&1 ||
            { tail -n 30 "$build/cluster-up.log"; echo "cannot start the test cluster"; exit 1; }
        trap 'tests/cluster/down.sh "$VKC_CLUSTER_DIR" >/dev/null 2>&1' EXIT
    fi
    for t in "$build"/tests/integration/test_*; do
        [ -x "$t" ] || continue
        run "integration/$(basename "$t")" 600 "$t"
    done
    for t in tests/integration/test_*.sh; do
        run "integration/$(basename "$t" .sh)" 1200 env BUILD="$build" "$t" "$build"
    done
    # memcheck and AddressSanitizer do not mix: valgrind runs on plain builds.
    if ! grep -q __asan_init "$build/bin/vkc-core"; then
        run "integration/valgrind" 600 tests/integration/valgrind.sh "$build/bin"
    fi
fi

if [ -z "$only" ] || [ "$only" = python ]; then
    stubs="$build/python"
    mkdir -p "$stubs"
    protoc --proto_path=proto --python_out="$stubs" --grpc_python_out="$stubs" \
        --plugin=protoc-gen-grpc_python=/usr/bin/grpc_python_plugin proto/provider.proto
    # Debian's grpcio lives in the system interpreter, not in any other
    # python3 that may come first on PATH.
    run "python/test_mock_client" 300 /usr/bin/python3 tests/python/test_mock_client.py "$build/bin" "$stubs"
fi

if [ -z "$only" ] || [ "$only" = conformance ]; then
    run "conformance/mock" 300 "$build/bin/vkc-conformance" \
        --provider-cmd "$build/bin/vkc-provider-mock" \
        --junit "$build/test-logs/conformance/mock.xml"
    # The README's example runs nothing (its pods are Running until
    # deleted), so the checks that wait for a container to exit are known
    # failures; its pods start at once, so they need not wait a minute each.
    run "conformance/example" 300 "$build/bin/vkc-conformance" \
        --provider-cmd "$build/bin/vkc-provider-example" \
        --known-failure pod/terminated --known-failure watch/terminated \
        --known-failure pod/restart --start-timeout 5000 \
        --junit "$build/test-logs/conformance/example.xml"
    run "conformance/python" 300 env VKC_PYTHON_STUBS="$build/python" "$build/bin/vkc-conformance" \
        --provider-cmd "/usr/bin/python3 contrib/python-provider/provider.py" \
        --echo-server --port-forward-port 0 --junit "$build/test-logs/conformance/python.xml"
    # vkc-provider-cri on the test containerd of tests/cri/setup.sh, as
    # test_cri finds it. Without CNI its pods share the host network, so the
    # suite serves the port-forward echo itself. Another run may share the
    # containerd: the suite's pod names carry a run id, and the provider
    # keeps its pods in a root directory of its own.
    # exec/cancel-stops-command is a known failure: CRI has no call that
    # signals an exec'd process, and containerd 1.6 leaves the command
    # running when the stream's connection closes, with a terminal or not.
    cri_endpoint=${VKC_CRI_ENDPOINT:-}
    if [ -z "$cri_endpoint" ]; then
        mkdir -p "$build/test-logs/conformance"
        cri_endpoint=$(tests/cri/setup.sh 2>"$build/test-logs/conformance/cri-setup.log" |
                       sed -n 's/^VKC_CRI_ENDPOINT=//p' | tail -n 1)
    fi
    if [ -z "$cri_endpoint" ]; then
        run "conformance/cri" 10 sh -c "echo 'no CRI runtime: tests/cri/setup.sh failed, see $build/test-logs/conformance/cri-setup.log'; exit 1"
    else
        cri_root=$(mktemp -d /tmp/vkc-conformance-cri.XXXXXX)
        run "conformance/cri" 600 "$build/bin/vkc-conformance" \
            --provider-cmd "$build/bin/vkc-provider-cri --runtime-endpoint $cri_endpoint --root-dir $cri_root/root --cgroup-root /vkc-conformance" \
            --host-network --echo-server --port-forward-port 0 \
            --known-failure exec/cancel-stops-command \
            --junit "$build/test-logs/conformance/cri.xml"
        rm -rf --one-file-system "$cri_root"
    fi
fi

echo "passed: $passed, failed: ${#failed[@]}"
[ ${#failed[@]} -eq 0 ] || { printf 'failed: %s\n' "${failed[@]}"; exit 1; }
