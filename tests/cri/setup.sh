#!/bin/bash
# Idempotent set-up of a containerd for vkc-provider-cri's tests and CI.
#
#   tests/cri/setup.sh          install, configure, start, import the image
#   tests/cri/setup.sh stop     stop the containerd this script started
#
# The containerd runs beside any system one: its own config, root, state and
# socket, all named vkc-containerd. Only hostNetwork pods are expected (no CNI
# configuration is written, so the runtime reports NetworkReady=false). The
# last line printed is the CRI endpoint, as `VKC_CRI_ENDPOINT=unix://...`.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
base=${VKC_CONTAINERD_BASE:-/var/lib/vkc-containerd}
run=${VKC_CONTAINERD_RUN:-/run/vkc-containerd}
sock=$run/containerd.sock
config=$base/config.toml
pidfile=$run/containerd.pid
image=docker.io/library/busybox:latest

running() {
    [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null
}

stop() {
    if running; then
        local pid
        pid=$(cat "$pidfile")
        kill "$pid"
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
    fi
    rm -f "$pidfile"
}

mkdir -p "$base" "$run"
# Test runs may set up at the same time: one at a time here.
exec 9>"$base/setup.lock"
flock 9

if [ "${1:-}" = stop ]; then
    stop
    exit 0
fi

missing=()
command -v containerd >/dev/null || missing+=(containerd)
command -v runc >/dev/null || missing+=(runc)
[ -x /bin/busybox ] && /bin/busybox --list >/dev/null 2>&1 || missing+=(busybox-static)
command -v python3 >/dev/null || missing+=(python3)
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing ${missing[*]}" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" >&2
fi
# The image holds /bin/busybox alone: it must be busybox-static's. (From a
# variable: under pipefail, "ldd | grep -q" fails should grep's early exit
# kill ldd with SIGPIPE.)
ldd_out=$(ldd /bin/busybox 2>&1 || true)
grep -q 'not a dynamic' <<<"$ldd_out" ||
    { echo "setup.sh: /bin/busybox is not static; install busybox-static" >&2; exit 1; }

# overlayfs where the kernel and the backing filesystem allow it, the (slow,
# copying) native snapshotter otherwise.
snapshotter=native
probe=$(mktemp -d "$base/overlay-probe.XXXXXX")
mkdir -p "$probe/l" "$probe/u" "$probe/w" "$probe/m"
if mount -t overlay overlay -o "lowerdir=$probe/l,upperdir=$probe/u,workdir=$probe/w" \
        "$probe/m" 2>/dev/null; then
    umount "$probe/m"
    snapshotter=overlayfs
fi
rm -rf "$probe"

cat >"$config.new" <<TOML
version = 2
root = "$base/root"
state = "$run/state"

[grpc]
  address = "$sock"

[ttrpc]
  address = "$sock.ttrpc"

[debug]
  level = "warn"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$image"
  # This machine refuses negative oom_score_adj values.
  restrict_oom_score_adj = true
  enable_tls_streaming = false
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"

  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "$snapshotter"
    default_runtime_name = "runc"

    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"

  # No CNI configuration: hostNetwork pods only.
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "$base/cni/bin"
    conf_dir = "$base/cni/net.d"
TOML
mkdir -p "$base/cni/bin" "$base/cni/net.d"

if ! cmp -s "$config" "$config.new"; then
    mv "$config.new" "$config"
    stop
else
    rm -f "$config.new"
fi

if ! running; then
    rm -f "$sock"
    setsid containerd --config "$config" </dev/null >>"$base/containerd.log" 2>&1 9>&- &
    echo $! >"$pidfile"
fi

ctr() { command ctr --address "$sock" --namespace k8s.io "$@"; }
for _ in $(seq 200); do
    [ -S "$sock" ] && ctr version >/dev/null 2>&1 && break
    running || { tail -n 20 "$base/containerd.log" >&2; echo "setup.sh: containerd exited" >&2; exit 1; }
    sleep 0.1
done
ctr version >/dev/null

# grep -q may stop reading early; with pipefail, ctr's SIGPIPE would then
# fail the check: look at the whole list instead.
has_image() { local all; all=$(ctr images ls -q) && grep -qx "$image" <<<"$all"; }
if ! has_image; then
    tar=$(mktemp "$base/image.XXXXXX")
    python3 "$here/mkimage.py" "$tar" "$image" >/dev/null
    ctr images import "$tar" >/dev/null
    rm -f "$tar"
fi
has_image || { echo "setup.sh: image import failed" >&2; exit 1; }

echo "containerd $(command ctr --version | awk '{print $3}') ($snapshotter) on $sock" >&2
echo "VKC_CRI_ENDPOINT=unix://$sock"
