# shellcheck shell=bash disable=SC2034  # settings are used by the scripts sourcing this
# lib.sh - shared settings and helpers for the e2e cluster scripts (sourced, not run).
# Every setting can be overridden from the environment.

E2E_CLUSTER_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

# Pinned versions live in build.sh (single source of truth).
_pin() { sed -n "s/^$1=\"\${$1:-\(.*\)}\"\$/\1/p" "$E2E_CLUSTER_DIR/build.sh"; }
K8S_VERSION="${K8S_VERSION:-$(_pin K8S_VERSION)}"
PAUSE_IMAGE="registry.k8s.io/pause:3.10"
PROBE_IMAGE="myservice-e2e/probe:v1"
COREDNS_IMAGE="myservice-e2e/coredns:$(_pin COREDNS_VERSION)"

CACHE="${MYSERVICE_CACHE:-/var/cache/myservice}"
BIN="$CACHE/k8s/$K8S_VERSION/bin"
IMAGES="$CACHE/k8s/$K8S_VERSION/images"

STATE="${MYSERVICE_E2E_STATE:-/var/lib/myservice-e2e}"
RUNDIR="${MYSERVICE_E2E_RUN:-/run/myservice-e2e}"
CERTS="$STATE/certs"
PIDS="$STATE/pids"
LOGS="$STATE/logs"
CONF="$STATE/config"
KUBECONFIG_ADMIN="$STATE/kubeconfig"

# Node: a dummy interface with a fixed address, so nothing depends on (or is
# exposed through) the host's real network.
NODE_NAME="${MYSERVICE_E2E_NODE:-myservice-e2e}"
NODE_IF="myse2e0"
NODE_IP="${MYSERVICE_E2E_NODE_IP:-10.250.0.1}"
APISERVER_PORT=6443
ETCD_CLIENT_PORT=12379
ETCD_PEER_PORT=12380
SERVICE_CIDR="10.96.0.0/16"
SERVICE_API_IP="10.96.0.1"
DNS_IP="10.96.0.10"
CLUSTER_CIDR="10.244.0.0/16"
POD_CIDR="10.244.0.0/24"
CNI_BRIDGE="myse2e-cni0"
CNI_NETWORK="myservice-e2e"
CNI_CONF_DIR="$STATE/cni/net.d"
CNI_BIN_DIR="/usr/lib/cni"

CONTAINERD_SOCK="$RUNDIR/containerd/containerd.sock"
CONTAINERD_ROOT="$STATE/containerd"
CONTAINERD_STATE="$RUNDIR/containerd/state"
KUBELET_ROOT="$STATE/kubelet"

# Order matters: started in this order, stopped in reverse.
COMPONENTS=(etcd kube-apiserver containerd kube-controller-manager kube-scheduler kubelet kube-proxy)

# Cluster DNS (CoreDNS) is deployed when its image was built; MYSERVICE_E2E_DNS=0 disables it.
dns_enabled() { [[ "${MYSERVICE_E2E_DNS:-1}" != 0 && -f "$IMAGES/coredns.tar" ]]; }

# The NetworkPolicy agent (kube-network-policies), a node process like kube-proxy;
# MYSERVICE_E2E_NETWORK_POLICY=0 runs the cluster without it (NetworkPolicies are then
# stored but not enforced). It is not in COMPONENTS: up.sh adds it to a running cluster.
NETPOL=kube-network-policies
NETPOL_TABLE=kube-network-policies   # its nftables table (inet family)
NETPOL_QUEUE=100                     # its nfqueue number
NETPOL_METRICS=127.0.0.1:10330       # its /metrics (upstream default :9080 on every address)
netpol_enabled() { [[ "${MYSERVICE_E2E_NETWORK_POLICY:-1}" != 0 ]]; }

log()  { printf '[e2e-cluster %s] %s\n' "$(date +%H:%M:%S)" "$*"; }
die()  { log "ERROR: $*" >&2; exit 1; }

kc()   { "$BIN/kubectl" --kubeconfig "$KUBECONFIG_ADMIN" "$@"; }
ctr_() { ctr --address "$CONTAINERD_SOCK" -n k8s.io "$@"; }

# pid_of NAME: print the pid of a component we started if it is still alive
# (checks the executable name too, so a recycled pid is not mistaken for ours).
pid_of() {
  local f="$PIDS/$1.pid" pid exe
  [[ -f "$f" ]] || return 1
  pid="$(cat "$f")"
  [[ -n "$pid" && -d "/proc/$pid" ]] || return 1
  exe="$(readlink "/proc/$pid/exe" 2>/dev/null || true)"
  [[ "$(basename "${exe% (deleted)}")" == "$1" ]] || return 1
  echo "$pid"
}

# cluster_lock: serialize up.sh/down.sh runs (several engineers share this machine).
# Nested calls (up.sh running down.sh) inherit the lock via MYSERVICE_E2E_LOCKED.
cluster_lock() {
  [[ -n "${MYSERVICE_E2E_LOCKED:-}" ]] && return 0
  local lock="${MYSERVICE_E2E_LOCK:-/run/lock/myservice-e2e-cluster.lock}"
  mkdir -p "$(dirname "$lock")"
  exec 9>"$lock"
  if ! flock -n 9; then
    log "another up.sh/down.sh holds $lock - waiting (up to 10 min)"
    flock -w 600 9 || die "could not take $lock"
  fi
  export MYSERVICE_E2E_LOCKED=1
}
