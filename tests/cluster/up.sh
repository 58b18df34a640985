#!/usr/bin/env bash
# Start a local Kubernetes control plane (etcd, kube-apiserver,
# kube-scheduler, kube-controller-manager) whose whole state lives in DIR.
#
#   tests/cluster/up.sh DIR        # then: source DIR/env; tests/cluster/down.sh DIR
#
# Everything listens on 127.0.0.1 only. Ports are picked free at random unless
# set by env. Prints the path of DIR/env on stdout; progress on stderr.
# See tests/cluster/README.md for the env knobs.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
START=$(date +%s)
log() { printf '[up.sh %4ss] %s\n' "$(($(date +%s) - START))" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

(($# == 1)) || die "usage: $0 DIR"
mkdir -p "$1"
DIR=$(cd "$1" && pwd)
PKI=$DIR/pki
LOGS=$DIR/logs
PIDS=$DIR/pids
TIMEOUT=${VKC_UP_TIMEOUT:-120}
NODES=${VKC_NODES:-vkc-node}
NODES=${NODES//,/ }
SERVICE_CIDR=10.0.0.0/24
SERVICE_IP=10.0.0.1
SA_ISSUER=https://kubernetes.default.svc.cluster.local
VERBOSITY=${VKC_K8S_V:-1}

# ---- refuse to start twice ----------------------------------------------------
# A "pids" line is: NAME PID STARTTIME (field 22 of /proc/PID/stat), so that a
# recycled PID is never mistaken for ours.
proc_start() { # PID -> start time, or nothing
	local stat
	stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 0
	stat=${stat##*) } # strip "pid (comm) ", comm may contain spaces
	# shellcheck disable=SC2086
	set -- $stat
	echo "${20}"
}
if [[ -s $PIDS ]]; then
	while read -r name pid st; do
		if [[ -n $pid && $(proc_start "$pid") == "$st" ]]; then
			die "$name (pid $pid) from an earlier up.sh still runs in $DIR; run $HERE/down.sh $DIR first"
		fi
	done <"$PIDS"
fi
: >"$PIDS"
mkdir -p "$PKI" "$LOGS"

# ---- binaries and packages ------------------------------------------------------
if [[ -n ${VKC_K8S_BIN:-} ]]; then
	BIN=$VKC_K8S_BIN
else
	log "locating Kubernetes binaries (tests/cluster/build.sh; a first build takes 10-20 min)"
	BIN=$("$HERE/build.sh")
fi
for t in kube-apiserver kube-scheduler kube-controller-manager kubectl; do
	[[ -x $BIN/$t ]] || die "$BIN/$t missing (run $HERE/build.sh or set VKC_K8S_BIN)"
done
KUBECTL=$BIN/kubectl

need_pkgs=()
command -v etcd >/dev/null || need_pkgs+=(etcd-server)
command -v openssl >/dev/null || need_pkgs+=(openssl)
command -v curl >/dev/null || need_pkgs+=(curl ca-certificates)
if ((${#need_pkgs[@]})); then
	[[ $(id -u) -eq 0 ]] || die "need ${need_pkgs[*]} installed (run as root to install them)"
	log "apt-get install ${need_pkgs[*]}"
	export DEBIAN_FRONTEND=noninteractive
	compgen -G '/var/lib/apt/lists/*_Packages*' >/dev/null || apt-get update >>"$LOGS/apt.log" 2>&1
	# etcd-server's postinst would start a system-wide etcd on 2379/2380:
	# forbid service starts while installing (policy-rc.d exit 101).
	policy_added=0
	if [[ ! -e /usr/sbin/policy-rc.d ]]; then
		printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
		chmod 755 /usr/sbin/policy-rc.d
		policy_added=1
	fi
	rc=0
	apt-get install -y --no-install-recommends "${need_pkgs[@]}" >>"$LOGS/apt.log" 2>&1 ||
		{ apt-get update >>"$LOGS/apt.log" 2>&1 &&
			apt-get install -y --no-install-recommends "${need_pkgs[@]}" >>"$LOGS/apt.log" 2>&1; } || rc=$?
	((policy_added)) && rm -f /usr/sbin/policy-rc.d
	((rc == 0)) || { tail -n 20 "$LOGS/apt.log" >&2; die "apt-get install ${need_pkgs[*]} failed"; }
fi
ETCD=$(command -v etcd)

# ---- ports ------------------------------------------------------------------
# Every TCP port this machine uses in any state, from /proc (no extra tools).
used_ports() {
	local hex
	awk 'FNR > 1 { split($2, a, ":"); print a[2] }' /proc/net/tcp /proc/net/tcp6 2>/dev/null |
		while read -r hex; do
			[[ $hex =~ ^[0-9A-Fa-f]+$ ]] && echo $((16#$hex))
		done
}
CHOSEN=" "
pick_port() { # ENV_VALUE -> port
	if [[ -n $1 ]]; then
		CHOSEN+="$1 "
		echo "$1"
		return
	fi
	local used p tries
	used=" $(used_ports | tr '\n' ' ') "
	# Below the kernel's ephemeral range (32768+), above well-known ones.
	for ((tries = 0; tries < 200; tries++)); do
		p=$((20000 + RANDOM % 12000))
		[[ $used == *" $p "* || $CHOSEN == *" $p "* ]] && continue
		echo "$p"
		return
	done
	die "no free TCP port found"
}
ETCD_PORT=$(pick_port "${VKC_ETCD_PORT:-}")
CHOSEN+="$ETCD_PORT "
ETCD_PEER_PORT=$(pick_port "${VKC_ETCD_PEER_PORT:-}")
CHOSEN+="$ETCD_PEER_PORT "
APISERVER_PORT=$(pick_port "${VKC_APISERVER_PORT:-}")
CHOSEN+="$APISERVER_PORT "
SCHEDULER_PORT=$(pick_port "${VKC_SCHEDULER_PORT:-}")
CHOSEN+="$SCHEDULER_PORT "
CM_PORT=$(pick_port "${VKC_CONTROLLER_MANAGER_PORT:-}")
CHOSEN+="$CM_PORT "
APISERVER=https://127.0.0.1:$APISERVER_PORT
ETCD_URL=http://127.0.0.1:$ETCD_PORT

# ---- PKI --------------------------------------------------------------------
# Reused when present: etcd data in DIR holds service-account token secrets
# signed with sa.key, so a restart must keep the keys.
# Leaf keys are ECDSA P-256 (instant to make; RSA 2048 costs ~1 s each on a
# loaded 2-core machine); VKC_PKI_RSA=1 makes them RSA 2048. The CA and the
# service-account signing key (RS256) are RSA 2048.
new_key() { # FILE
	if [[ ${VKC_PKI_RSA:-0} == 1 ]]; then
		ssl genrsa -out "$1" 2048
	else
		ssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1"
	fi
}
ssl() { openssl "$@" >>"$LOGS/openssl.log" 2>&1 || die "openssl $1 failed (see $LOGS/openssl.log)"; }
gen_cert() { # NAME SUBJECT EKU [SAN [CA]]
	local name=$1 subj=$2 eku=$3 san=${4:-} ca=${5:-ca}
	[[ -s $PKI/$name.crt && -s $PKI/$name.key ]] && return 0
	new_key "$PKI/$name.key"
	ssl req -new -key "$PKI/$name.key" -subj "$subj" -out "$PKI/$name.csr"
	{
		echo "basicConstraints=critical,CA:FALSE"
		echo "keyUsage=critical,digitalSignature,keyEncipherment"
		echo "extendedKeyUsage=$eku"
		[[ -z $san ]] || echo "subjectAltName=$san"
	} >"$PKI/$name.ext"
	ssl x509 -req -in "$PKI/$name.csr" -CA "$PKI/$ca.crt" -CAkey "$PKI/$ca.key" \
		-CAserial "$PKI/$ca.srl" -CAcreateserial -days 3650 -sha256 \
		-extfile "$PKI/$name.ext" -out "$PKI/$name.crt"
	rm -f "$PKI/$name.csr" "$PKI/$name.ext"
}
log "PKI in $PKI"
umask 077
gen_ca() { # NAME CN
	[[ -s $PKI/$1.crt && -s $PKI/$1.key ]] && return 0
	ssl genrsa -out "$PKI/$1.key" 2048
	ssl req -x509 -new -key "$PKI/$1.key" -subj "/CN=$2" -days 3650 -sha256 \
		-addext "basicConstraints=critical,CA:TRUE" \
		-addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" \
		-out "$PKI/$1.crt"
}
gen_ca ca vkc-test-ca
# Request-header (front proxy) CA: without it the scheduler's and the
# controller-manager's delegated authentication log an error every few
# seconds ("missing content for CA bundle ... requestheader-client-ca-file");
# it also makes API aggregation work.
gen_ca front-proxy-ca vkc-test-front-proxy-ca
if [[ ! -s $PKI/sa.key || ! -s $PKI/sa.pub ]]; then
	ssl genrsa -out "$PKI/sa.key" 2048
	ssl rsa -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub"
fi
gen_cert apiserver "/CN=kube-apiserver" serverAuth \
	"DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,IP:127.0.0.1,IP:$SERVICE_IP"
gen_cert apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" clientAuth
gen_cert admin "/O=system:masters/CN=admin" clientAuth
gen_cert front-proxy-client "/CN=front-proxy-client" clientAuth "" front-proxy-ca
gen_cert scheduler "/CN=system:kube-scheduler" clientAuth
gen_cert controller-manager "/CN=system:kube-controller-manager" clientAuth
for n in $NODES; do
	[[ $n =~ ^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$ ]] || die "bad node name '$n' in VKC_NODES"
	# Client identity of the node (what vkc-core authenticates with) ...
	gen_cert "node-$n" "/O=system:nodes/CN=system:node:$n" clientAuth
	# ... and a CA-signed serving cert for its kubelet API, for tests that
	# want the apiserver to verify it (--kubelet-certificate-authority).
	gen_cert "kubelet-$n" "/O=system:nodes/CN=system:node:$n" serverAuth \
		"DNS:$n,DNS:localhost,IP:127.0.0.1"
done
umask 022

# ---- kubeconfigs ------------------------------------------------------------
write_kubeconfig() { # FILE USER CERTNAME
	local tmp=$1.tmp
	(
		umask 077
		cat >"$tmp" <<-EOF
			apiVersion: v1
			kind: Config
			clusters:
			- name: vkc
			  cluster:
			    server: $APISERVER
			    certificate-authority-data: $(base64 -w0 "$PKI/ca.crt")
			users:
			- name: $2
			  user:
			    client-certificate-data: $(base64 -w0 "$PKI/$3.crt")
			    client-key-data: $(base64 -w0 "$PKI/$3.key")
			contexts:
			- name: $2@vkc
			  context:
			    cluster: vkc
			    user: $2
			current-context: $2@vkc
		EOF
	)
	mv "$tmp" "$1"
}
write_kubeconfig "$DIR/admin.kubeconfig" admin admin
write_kubeconfig "$DIR/scheduler.kubeconfig" system:kube-scheduler scheduler
write_kubeconfig "$DIR/controller-manager.kubeconfig" system:kube-controller-manager controller-manager
for n in $NODES; do
	write_kubeconfig "$DIR/node-$n.kubeconfig" "system:node:$n" "node-$n"
done

# ---- process helpers ----------------------------------------------------------
FAILED=1
cleanup() {
	if ((FAILED)) && [[ ${VKC_UP_KEEP_ON_FAILURE:-0} != 1 ]]; then
		log "stopping what was started (VKC_UP_KEEP_ON_FAILURE=1 keeps it)"
		"$HERE/down.sh" "$DIR" >&2 || true
	fi
}
trap cleanup EXIT

declare -A PID_OF
start() { # NAME CMD... ; stdout/stderr to DIR/logs/NAME.log, own session
	local name=$1
	shift
	log "starting $name"
	printf '%q ' "$@" >"$LOGS/$name.cmdline"
	echo >>"$LOGS/$name.cmdline"
	# Background jobs of a non-interactive shell are not process-group
	# leaders, so setsid does not fork: $! is the daemon's own PID.
	setsid "$@" >>"$LOGS/$name.log" 2>&1 </dev/null &
	local pid=$!
	echo "$name $pid $(proc_start "$pid")" >>"$PIDS"
	PID_OF[$name]=$pid
}
component_failed() { # NAME MSG
	log "ERROR: $2; last lines of $LOGS/$1.log:"
	tail -n 30 "$LOGS/$1.log" >&2 || true
	exit 1
}
wait_until() { # NAME WHAT CMD...: until CMD succeeds, NAME alive, bounded
	local name=$1 what=$2 deadline=$((SECONDS + TIMEOUT))
	shift 2
	until "$@" >/dev/null 2>&1; do
		kill -0 "${PID_OF[$name]}" 2>/dev/null || component_failed "$name" "$name exited while waiting for $what"
		((SECONDS < deadline)) || component_failed "$name" "$what not ready after ${TIMEOUT}s"
		sleep 0.5
	done
	log "$what ok"
}
body_is() { # EXPECTED CMD...: CMD's stdout contains EXPECTED
	local want=$1 out
	shift
	out=$("$@" 2>/dev/null) || return 1
	[[ $out == *"$want"* ]]
}
CURL_ADMIN=(curl -sS --max-time 5 --cacert "$PKI/ca.crt" --cert "$PKI/admin.crt" --key "$PKI/admin.key")
KADMIN=("$KUBECTL" --kubeconfig "$DIR/admin.kubeconfig" --request-timeout=5s)

# shellcheck disable=SC2206 # extra args are meant to be word-split
EXTRA_ETCD=(${VKC_ETCD_ARGS:-})
# shellcheck disable=SC2206
EXTRA_APISERVER=(${VKC_APISERVER_ARGS:-})
# shellcheck disable=SC2206
EXTRA_SCHEDULER=(${VKC_SCHEDULER_ARGS:-})
# shellcheck disable=SC2206
EXTRA_CM=(${VKC_CONTROLLER_MANAGER_ARGS:-})

# ---- etcd ---------------------------------------------------------------------
mkdir -p "$DIR/etcd"
chmod 700 "$DIR/etcd"
start etcd "$ETCD" \
	--name vkc \
	--data-dir "$DIR/etcd" \
	--listen-client-urls "$ETCD_URL" \
	--advertise-client-urls "$ETCD_URL" \
	--listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
	--initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
	--initial-cluster "vkc=http://127.0.0.1:$ETCD_PEER_PORT" \
	--initial-cluster-state new \
	--logger=zap --log-level=warn \
	"${EXTRA_ETCD[@]}"
wait_until etcd "etcd $ETCD_URL/health" body_is '"health":"true"' curl -sS --max-time 5 "$ETCD_URL/health"

# ---- kube-apiserver -------------------------------------------------------------
start kube-apiserver "$BIN/kube-apiserver" \
	--v="$VERBOSITY" \
	--etcd-servers="$ETCD_URL" \
	--bind-address=127.0.0.1 \
	--advertise-address=127.0.0.1 \
	--secure-port="$APISERVER_PORT" \
	--cert-dir="$PKI/apiserver-generated" \
	--tls-cert-file="$PKI/apiserver.crt" \
	--tls-private-key-file="$PKI/apiserver.key" \
	--client-ca-file="$PKI/ca.crt" \
	--authorization-mode=Node,RBAC \
	--enable-admission-plugins=NodeRestriction \
	--allow-privileged=true \
	--service-cluster-ip-range="$SERVICE_CIDR" \
	--endpoint-reconciler-type=none \
	--service-account-issuer="$SA_ISSUER" \
	--service-account-key-file="$PKI/sa.pub" \
	--service-account-signing-key-file="$PKI/sa.key" \
	--kubelet-client-certificate="$PKI/apiserver-kubelet-client.crt" \
	--kubelet-client-key="$PKI/apiserver-kubelet-client.key" \
	--kubelet-preferred-address-types=InternalIP \
	--requestheader-client-ca-file="$PKI/front-proxy-ca.crt" \
	--requestheader-allowed-names=front-proxy-client \
	--requestheader-username-headers=X-Remote-User \
	--requestheader-group-headers=X-Remote-Group \
	--requestheader-extra-headers-prefix=X-Remote-Extra- \
	--proxy-client-cert-file="$PKI/front-proxy-client.crt" \
	--proxy-client-key-file="$PKI/front-proxy-client.key" \
	"${EXTRA_APISERVER[@]}"
wait_until kube-apiserver "kube-apiserver $APISERVER/readyz" \
	body_is ok "${CURL_ADMIN[@]}" "$APISERVER/readyz"
wait_until kube-apiserver "kubectl get --raw /api" "${KADMIN[@]}" get --raw /api
# /readyz turns ok once the bootstrap RBAC objects are written, but the RBAC
# authorizer sees them only when its informer catches up; a component started
# before that is refused the authentication ConfigMap and exits. So start each
# one only once its own identity can read that ConfigMap.
AUTH_CM="$APISERVER/api/v1/namespaces/kube-system/configmaps/extension-apiserver-authentication"
for who in scheduler controller-manager; do
	wait_until kube-apiserver "RBAC for system:kube-$who" \
		curl -sSf --max-time 5 --cacert "$PKI/ca.crt" --cert "$PKI/$who.crt" --key "$PKI/$who.key" "$AUTH_CM"
done

# ---- scheduler and controller-manager -------------------------------------------
start kube-scheduler "$BIN/kube-scheduler" \
	--v="$VERBOSITY" \
	--kubeconfig="$DIR/scheduler.kubeconfig" \
	--authentication-kubeconfig="$DIR/scheduler.kubeconfig" \
	--authorization-kubeconfig="$DIR/scheduler.kubeconfig" \
	--bind-address=127.0.0.1 \
	--secure-port="$SCHEDULER_PORT" \
	--port=0 \
	--cert-dir="$PKI/scheduler-generated" \
	--leader-elect=false \
	"${EXTRA_SCHEDULER[@]}"
start kube-controller-manager "$BIN/kube-controller-manager" \
	--v="$VERBOSITY" \
	--kubeconfig="$DIR/controller-manager.kubeconfig" \
	--authentication-kubeconfig="$DIR/controller-manager.kubeconfig" \
	--authorization-kubeconfig="$DIR/controller-manager.kubeconfig" \
	--bind-address=127.0.0.1 \
	--secure-port="$CM_PORT" \
	--port=0 \
	--cert-dir="$PKI/controller-manager-generated" \
	--leader-elect=false \
	--use-service-account-credentials=true \
	--root-ca-file="$PKI/ca.crt" \
	--service-account-private-key-file="$PKI/sa.key" \
	--cluster-signing-cert-file="$PKI/ca.crt" \
	--cluster-signing-key-file="$PKI/ca.key" \
	--service-cluster-ip-range="$SERVICE_CIDR" \
	"${EXTRA_CM[@]}"
wait_until kube-scheduler "kube-scheduler https://127.0.0.1:$SCHEDULER_PORT/healthz" \
	body_is ok curl -sSk --max-time 5 "https://127.0.0.1:$SCHEDULER_PORT/healthz"
wait_until kube-controller-manager "kube-controller-manager https://127.0.0.1:$CM_PORT/healthz" \
	body_is ok curl -sSk --max-time 5 "https://127.0.0.1:$CM_PORT/healthz"
# 1.20's ServiceAccount admission refuses pods until the account's token
# Secret exists, so wait for that, not just for the account.
wait_until kube-controller-manager "service account default/default with its token" \
	body_is token "${KADMIN[@]}" -n default get serviceaccount default -o 'jsonpath={.secrets[0].name}'

# ---- env for callers ------------------------------------------------------------
first_node=${NODES%% *}
{
	echo "# generated by tests/cluster/up.sh; source it"
	for kv in \
		"VKC_CLUSTER_DIR=$DIR" \
		"KUBECONFIG=$DIR/admin.kubeconfig" \
		"VKC_ADMIN_KUBECONFIG=$DIR/admin.kubeconfig" \
		"VKC_NODES=$NODES" \
		"VKC_NODE_NAME=$first_node" \
		"VKC_NODE_KUBECONFIG=$DIR/node-$first_node.kubeconfig" \
		"VKC_NODE_KUBELET_CERT=$PKI/kubelet-$first_node.crt" \
		"VKC_NODE_KUBELET_KEY=$PKI/kubelet-$first_node.key" \
		"VKC_CA_CERT=$PKI/ca.crt" \
		"VKC_APISERVER=$APISERVER" \
		"VKC_APISERVER_PORT=$APISERVER_PORT" \
		"VKC_ETCD_URL=$ETCD_URL" \
		"VKC_ETCD_PORT=$ETCD_PORT" \
		"VKC_ETCD_PEER_PORT=$ETCD_PEER_PORT" \
		"VKC_SCHEDULER_PORT=$SCHEDULER_PORT" \
		"VKC_CONTROLLER_MANAGER_PORT=$CM_PORT" \
		"VKC_SERVICE_CIDR=$SERVICE_CIDR" \
		"VKC_SERVICE_ACCOUNT_ISSUER=$SA_ISSUER" \
		"VKC_K8S_BIN=$BIN" \
		"VKC_KUBECTL=$KUBECTL"; do
		printf 'export %s=%q\n' "${kv%%=*}" "${kv#*=}"
	done
} >"$DIR/env.tmp"
mv "$DIR/env.tmp" "$DIR/env"

FAILED=0
log "ready in $(($(date +%s) - START)) s: $APISERVER (source $DIR/env; stop with $HERE/down.sh $DIR)"
echo "$DIR/env"
