#!/usr/bin/env bash
# Build kube-apiserver, kube-scheduler, kube-controller-manager and kubectl
# from Debian's `kubernetes` source package and cache them outside the
# checkout, keyed by version.
#
#   BIN=$(tests/cluster/build.sh)     # prints the bin dir on stdout
#
# Progress goes to stderr. If the binaries are cached already it does nothing.
# Env: VKC_CACHE (default /var/cache/vkc), VKC_K8S_VERSION (expected upstream
# version, default 1.20.2), VKC_KEEP_BUILD=1 keeps the source tree and Go
# caches after a successful build (they are removed by default).
set -euo pipefail

CACHE=${VKC_CACHE:-/var/cache/vkc}
EXPECTED_VERSION=${VKC_K8S_VERSION:-1.20.2}
SRC_PKG=kubernetes
TARGETS=(kube-apiserver kube-scheduler kube-controller-manager kubectl)
# Bump when the way the binaries are built changes: cached binaries of an
# older revision are rebuilt in place.
#   2: vendor/github.com/modern-go/reflect2 replaced by Debian's 1.0.2
BUILD_REV=2
START=$(date +%s)

log() { printf '[build.sh %5ss] %s\n' "$(($(date +%s) - START))" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

have_bins() { # DIR [NOREV]
	local t
	for t in "${TARGETS[@]}"; do
		[[ -x "$1/$t" ]] || return 1
	done
	[[ -n ${2:-} ]] || grep -qx "vkc_build_rev=$BUILD_REV" "$1/BUILDINFO" 2>/dev/null
}

# Fast path: nothing to do, no apt, no lock.
if have_bins "$CACHE/k8s-$EXPECTED_VERSION/bin"; then
	log "cached: $CACHE/k8s-$EXPECTED_VERSION/bin"
	echo "$CACHE/k8s-$EXPECTED_VERSION/bin"
	exit 0
fi

[[ $(id -u) -eq 0 ]] || die "must run as root (installs Debian packages)"
mkdir -p "$CACHE"

# One build at a time per cache.
exec 9>"$CACHE/.build.lock"
if ! flock -n 9; then
	log "another build.sh holds $CACHE/.build.lock; waiting"
	flock 9
fi

export DEBIAN_FRONTEND=noninteractive
APT_UPDATED=0
APT_LOG=$CACHE/apt.log
apt_fail() { log "ERROR: $1; last lines of $APT_LOG:"; tail -n 20 "$APT_LOG" >&2; exit 1; }
apt_update() {
	log "apt-get update"
	apt-get update >>"$APT_LOG" 2>&1 || apt_fail "apt-get update failed"
	APT_UPDATED=1
}

# apt-get update once if the package lists were never fetched.
if ! compgen -G '/var/lib/apt/lists/*_Packages*' >/dev/null; then
	apt_update
fi

apt_install() { # PKG...
	local missing=() p
	for p in "$@"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' ||
			missing+=("$p")
	done
	((${#missing[@]})) || return 0
	log "apt-get install ${missing[*]}"
	local cmd=(apt-get install -y --no-install-recommends "${missing[@]}")
	"${cmd[@]}" >>"$APT_LOG" 2>&1 && return 0
	# A stale package list is the usual cause: refresh once and retry.
	((APT_UPDATED)) || { apt_update; "${cmd[@]}" >>"$APT_LOG" 2>&1 && return 0; }
	apt_fail "apt-get install ${missing[*]} failed"
}

# ---- deb-src -------------------------------------------------------------
# Add deb-src stanzas mirroring the deb stanzas of Debian's deb822 file in a
# separate file, leaving the existing one untouched. Idempotent.
SRC_LIST=/etc/apt/sources.list.d/vkc-deb-src.sources
have_src() { [[ -n $(apt-cache showsrc "$SRC_PKG" 2>/dev/null) ]]; }
if ! have_src; then
	if [[ ! -e $SRC_LIST ]]; then
		tmp=$(mktemp)
		if [[ -f /etc/apt/sources.list.d/debian.sources ]]; then
			log "enabling deb-src in $SRC_LIST (from debian.sources)"
			# Each stanza whose Types has "deb" but not "deb-src" is copied
			# with Types: deb-src; disabled stanzas and comments are skipped.
			awk '
				function flush() {
					if (n && isdeb && !issrc && !off) {
						for (i = 1; i <= n; i++) print lines[i]
						print ""
					}
					n = 0; isdeb = 0; issrc = 0; off = 0
				}
				/^[[:space:]]*$/ { flush(); next }
				/^#/ { next }
				/^Types:/ {
					for (i = 2; i <= NF; i++) {
						if ($i == "deb") isdeb = 1
						if ($i == "deb-src") issrc = 1
					}
					lines[++n] = "Types: deb-src"; next
				}
				/^Enabled:[[:space:]]*no/ { off = 1 }
				{ lines[++n] = $0 }
				END { flush() }
			' /etc/apt/sources.list.d/debian.sources >"$tmp"
		fi
		if [[ ! -s $tmp ]]; then
			log "enabling deb-src in $SRC_LIST (deb.debian.org bookworm)"
			cat >"$tmp" <<-'EOF'
				Types: deb-src
				URIs: http://deb.debian.org/debian
				Suites: bookworm bookworm-updates
				Components: main
				Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
			EOF
		fi
		install -m 0644 "$tmp" "$SRC_LIST"
		rm -f "$tmp"
	fi
	apt_update
	have_src || die "apt-cache showsrc $SRC_PKG finds nothing even with $SRC_LIST"
fi

# Upstream version of the newest source: strip epoch and Debian revision.
DEB_VERSION=$(apt-cache showsrc "$SRC_PKG" | awk '/^Version:/ {print $2}' | sort -V | tail -n1)
# bookworm ships "1.20.5+really1.20.2-...": the tree is 1.20.2.
VERSION=${DEB_VERSION#*:}
VERSION=${VERSION%-*}
[[ $VERSION != *+really* ]] || VERSION=${VERSION##*+really}
VERSION=${VERSION%%[+~]*}
[[ $VERSION =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || die "cannot parse upstream version from '$DEB_VERSION'"
[[ $VERSION == "$EXPECTED_VERSION" ]] ||
	log "note: Debian has $SRC_PKG $DEB_VERSION, not $EXPECTED_VERSION; set VKC_K8S_VERSION=$VERSION to hit the cache fast path"

TOP=$CACHE/k8s-$VERSION
BIN=$TOP/bin
if have_bins "$BIN"; then
	log "cached: $BIN"
	echo "$BIN"
	exit 0
fi
mkdir -p "$TOP"
LOG=$TOP/build.log
: >"$LOG"
log "building Kubernetes $VERSION ($SRC_PKG $DEB_VERSION) in $TOP; log: $LOG"

fail() { # MSG
	log "ERROR: $1; last lines of $LOG:"
	tail -n 40 "$LOG" >&2
	exit 1
}

# ---- build deps -------------------------------------------------------------
# dpkg-dev: apt-get source unpacks with dpkg-source. The Makefile's build
# (hack/make-rules/build.sh, Makefile.generated_files) needs GNU make, Go and
# rsync (kube::golang::place_bins copies binaries with it; without it the
# code generators "build" but are never placed and make fails with
# "_output/bin/prerelease-lifecycle-gen: Permission denied").
# golang-github-modern-go-reflect2-dev: see "reflect2" below.
apt_install golang-go dpkg-dev make rsync findutils sed grep golang-github-modern-go-reflect2-dev
GO_VERSION=$(go version)
log "using $GO_VERSION"

# ---- source -----------------------------------------------------------------
SRC_PARENT=$TOP/src
if [[ ! -f $SRC_PARENT/.unpacked ]]; then
	log "apt-get source $SRC_PKG=$DEB_VERSION"
	rm -rf "$SRC_PARENT"
	mkdir -p "$SRC_PARENT"
	# _apt cannot write into a root-only cache dir; download as root.
	(cd "$SRC_PARENT" && apt-get source -q "$SRC_PKG=$DEB_VERSION") >>"$LOG" 2>&1 ||
		fail "apt-get source failed"
	touch "$SRC_PARENT/.unpacked"
fi
TREE=$(find "$SRC_PARENT" -mindepth 1 -maxdepth 1 -type d -name "$SRC_PKG-*" | head -n1)
[[ -n $TREE && -f $TREE/Makefile && -d $TREE/vendor ]] ||
	fail "unpacked tree in $SRC_PARENT lacks Makefile or vendor/"

# ---- reflect2 ----------------------------------------------------------------
# Kubernetes 1.20 vendors github.com/modern-go/reflect2 v1.0.1, which is broken
# with Go >= 1.18 (Debian bookworm has only Go 1.19): json-iterator then panics
# decoding some map-typed fields, and the API server answers e.g. a POST of
# selfsubjectrulesreviews with a panic (HTTP/2 INTERNAL_ERROR). v1.0.2 fixes
# it and is API-compatible; Debian packages it. Swap it into vendor/.
REFLECT2=/usr/share/gocode/src/github.com/modern-go/reflect2
[[ -f $REFLECT2/go_above_118.go ]] || fail "$REFLECT2 lacks go_above_118.go (need reflect2 >= 1.0.2)"
if [[ ! -f $TREE/vendor/github.com/modern-go/reflect2/go_above_118.go ]]; then
	log "replacing vendor/github.com/modern-go/reflect2 with Debian's $(dpkg-query -W -f='${Version}' golang-github-modern-go-reflect2-dev)"
	rm -rf "$TREE/vendor/github.com/modern-go/reflect2"
	mkdir -p "$TREE/vendor/github.com/modern-go/reflect2"
	find "$REFLECT2" -maxdepth 1 -type f \( -name '*.go' -o -name '*.s' \) ! -name '*_test.go' \
		-exec cp {} "$TREE/vendor/github.com/modern-go/reflect2/" \;
fi

# ---- GOPATH ----------------------------------------------------------------
# (hack/lib/golang.sh then builds in its own _output/go GOPATH, with
# GOCACHE=_output/go/cache, so a failed build resumes incrementally.)
export GOPATH=$TOP/gopath
export GO111MODULE=off CGO_ENABLED=0 GOFLAGS=
mkdir -p "$GOPATH/src/k8s.io"
ln -sfn "$TREE" "$GOPATH/src/k8s.io/kubernetes"

# No git checkout is needed for the version: the orig tarball is a
# `git archive` whose hack/lib/version.sh carries the tag (v1.20.2).
# The build's own "verify" of the Go version is fine with Debian's Go; do not
# let it download anything (no network but the package registries).
export GOPROXY=off GOTOOLCHAIN=local

WHAT=""
for t in "${TARGETS[@]}"; do WHAT+="cmd/$t "; done
WHAT=${WHAT% }

log "make WHAT=\"$WHAT\" (nice -n 19; GO111MODULE=off CGO_ENABLED=0) — roughly 15-30 min on 2 cores"
(
	cd "$GOPATH/src/k8s.io/kubernetes"
	exec nice -n 19 make WHAT="$WHAT" KUBE_VERBOSE=2
) >>"$LOG" 2>&1 &
MAKE_PID=$!

# Progress every 60 s: elapsed time and the latest build step.
while kill -0 "$MAKE_PID" 2>/dev/null; do
	for _ in $(seq 60); do
		kill -0 "$MAKE_PID" 2>/dev/null || break
		sleep 1
	done
	kill -0 "$MAKE_PID" 2>/dev/null || break
	step=$(grep -E '^(\+\+\+|!!!|  [a-z-]+-gen|Generating|[A-Za-z]+: )' "$LOG" | tail -n1 || true)
	log "still building; latest step: ${step:-$(tail -n1 "$LOG" | cut -c1-160)}"
done
rc=0
wait "$MAKE_PID" || rc=$?
((rc == 0)) || fail "make exited with status $rc"

OUT=$TREE/_output/bin
[[ -d $OUT ]] || OUT=$TREE/_output/local/bin/$(go env GOOS)/$(go env GOARCH)
have_bins "$OUT" norev || fail "make succeeded but $OUT lacks some of: ${TARGETS[*]}"

rm -rf "$BIN.tmp"
mkdir -p "$BIN.tmp"
for t in "${TARGETS[@]}"; do
	cp -L "$OUT/$t" "$BIN.tmp/$t"
done
{
	echo "version=$VERSION"
	echo "debian_source=$SRC_PKG $DEB_VERSION"
	echo "go=$GO_VERSION"
	echo "patches=vendor/github.com/modern-go/reflect2 from golang-github-modern-go-reflect2-dev $(dpkg-query -W -f='${Version}' golang-github-modern-go-reflect2-dev)"
	echo "vkc_build_rev=$BUILD_REV"
	echo "built=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
	echo "build_seconds=$(($(date +%s) - START))"
} >"$BIN.tmp/BUILDINFO"
"$BIN.tmp/kubectl" version --client >>"$LOG" 2>&1 || fail "built kubectl does not run"
# Replace an older revision with two renames (running clusters keep their
# already-open binaries).
rm -rf "$BIN.old"
[[ ! -e $BIN ]] || mv "$BIN" "$BIN.old"
mv "$BIN.tmp" "$BIN"
rm -rf "$BIN.old"

if [[ ${VKC_KEEP_BUILD:-0} != 1 ]]; then
	log "removing source tree and Go cache (VKC_KEEP_BUILD=1 keeps them)"
	rm -rf "$SRC_PARENT" "$GOPATH"
fi
log "done in $(($(date +%s) - START)) s: $BIN"
echo "$BIN"
