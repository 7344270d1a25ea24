#!/usr/bin/env bash
# down.sh - stop the e2e cluster started by up.sh and remove its state.
#
# Usage: hack/cluster/down.sh [--help] [--keep-state]
#
# Stops, by pid file: the NetworkPolicy agent, kube-proxy, kubelet (and removes the
# agent's nftables table if it is left); then removes all pods/containers from
# the cluster's own containerd (crictl, then ctr as fallback) and kills what is
# left in the kubepods cgroups; then kube-controller-manager, kube-scheduler,
# kube-apiserver, etcd, containerd (and its leftover shims). Unmounts everything
# under the state/run dirs, deletes the CNI bridge, the pod netns, the dummy node
# interface and the KUBE-* / CNI-* iptables chains, then removes
# ${MYSERVICE_E2E_STATE:-/var/lib/myservice-e2e} and /run/myservice-e2e.
# The build cache (${MYSERVICE_CACHE:-/var/cache/myservice}) is kept.
# Safe to run when nothing is running (e.g. after a reboot).
set -euo pipefail

main() {
  local keep=0
  case "${1:-}" in
    --help|-h) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
    --keep-state) keep=1 ;;
  esac
  # shellcheck source=SCRIPTDIR/lib.sh
  source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
  [[ $EUID -eq 0 ]] || die "must run as root"
  cluster_lock
  local t0=$SECONDS

  stop "$NETPOL" INT &  # SIGINT: the agent deletes its nftables table on SIGINT, not on SIGTERM
  stop_parallel kube-proxy kubelet
  remove_netpol_table
  remove_pods
  stop_parallel kube-controller-manager kube-scheduler kube-apiserver
  stop_parallel etcd containerd
  kill_shims
  kill_kubepods
  unmount_all
  cleanup_network
  cleanup_iptables
  if ((keep)); then
    log "state kept in $STATE"
  else
    rm -rf --one-file-system "$STATE" "$RUNDIR"
    # host paths the kubelet/containerd use whatever their root dirs: CNI result
    # cache (our network, pod loopbacks), the kubelet's device-plugin socket
    rm -f /var/lib/cni/results/"$CNI_NETWORK"-* /var/lib/cni/results/cni-loopback-* 2>/dev/null || true
    rm -f /var/lib/kubelet/device-plugins/kubelet.sock /var/lib/kubelet/device-plugins/DEPRECATION
    rmdir /var/lib/kubelet/device-plugins /var/lib/kubelet 2>/dev/null || true
    find /var/log/containers -maxdepth 1 -type l -lname "$STATE/*" -delete 2>/dev/null || true
    log "removed $STATE and $RUNDIR (build cache $CACHE kept)"
  fi
  log "cluster down ($((SECONDS - t0))s)"
}

# stop NAME [SIGNAL]: SIGTERM (or SIGNAL) the component by pid file, SIGKILL after 15s
stop() {
  local name="$1" sig="${2:-TERM}" pid i
  if pid="$(pid_of "$name")"; then
    log "stopping $name (pid $pid)"
    kill "-$sig" "$pid" 2>/dev/null || true
    for ((i = 0; i < 150; i++)); do [[ -d /proc/$pid ]] || break; sleep 0.1; done
    if [[ -d /proc/$pid ]]; then log "  $name still alive, SIGKILL"; kill -KILL "$pid" 2>/dev/null || true; sleep 0.5; fi
  fi
  rm -f "$PIDS/$name.pid"
}

stop_parallel() {
  local n
  for n in "$@"; do stop "$n" & done
  wait
}

remove_pods() {
  pid_of containerd >/dev/null || return 0
  log "removing pods and containers from containerd ($CONTAINERD_SOCK)"
  if [[ -x "$BIN/crictl" ]]; then
    # stops sandboxes properly: CNI DEL releases IPs, portmap/masq rules
    timeout 120 "$BIN/crictl" --runtime-endpoint "unix://$CONTAINERD_SOCK" --timeout 30s rmp -af >/dev/null 2>&1 || true
  fi
  local t
  for t in $(ctr_ tasks ls -q 2>/dev/null); do ctr_ tasks kill -s SIGKILL "$t" >/dev/null 2>&1 || true; done
  sleep 1
  for t in $(ctr_ tasks ls -q 2>/dev/null); do ctr_ tasks delete -f "$t" >/dev/null 2>&1 || true; done
  for t in $(ctr_ containers ls -q 2>/dev/null); do ctr_ containers delete "$t" >/dev/null 2>&1 || true; done
}

# containerd-shim processes of OUR containerd carry "-address <our socket>"
kill_shims() {
  local p
  for p in $(pgrep -f "containerd-shim.*-address $CONTAINERD_SOCK" 2>/dev/null || true); do
    log "killing leftover shim pid $p"; kill -KILL "$p" 2>/dev/null || true
  done
}

# Processes still in the kubelet's cgroups (only our kubelet uses /kubepods on the host)
kill_kubepods() {
  local d f p n=0
  for d in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/kubepods; do
    [[ -d "$d" ]] || continue
    while read -r f; do
      while read -r p; do
        if kill -KILL "$p" 2>/dev/null; then n=$((n + 1)); fi
      done <"$f"
    done < <(find "$d" -name cgroup.procs 2>/dev/null)
  done
  if ((n)); then log "killed $n leftover pod processes"; sleep 1; fi
  for d in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/kubepods; do
    if [[ -d "$d" ]]; then find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null || true; fi
  done
}

# A table left by an agent that was killed would keep queueing packets to a queue
# nobody reads, i.e. drop them, in the next cluster (pod IPs are reused).
remove_netpol_table() {
  command -v nft >/dev/null || return 0
  if nft list table inet "$NETPOL_TABLE" >/dev/null 2>&1; then
    nft delete table inet "$NETPOL_TABLE" && log "deleted the nftables table inet $NETPOL_TABLE left by $NETPOL"
  fi
}

unmount_all() {
  local m n=0
  while read -r m; do
    if umount -l "$m" 2>/dev/null; then n=$((n + 1)); fi
  done < <(findmnt -rn -o TARGET | grep -E "^($STATE|$RUNDIR)(/|$)" | sort -r)
  # pod network namespaces (containerd CRI keeps them in /run/netns/cni-*)
  local ns
  for ns in /run/netns/cni-*; do
    [[ -e "$ns" ]] || continue
    if ip netns exec "$(basename "$ns")" ip -4 -o addr 2>/dev/null | grep -q " ${POD_CIDR%.*}\."; then
      ip netns delete "$(basename "$ns")" 2>/dev/null || { umount -l "$ns" 2>/dev/null; rm -f "$ns"; }
      n=$((n + 1))
    fi
  done
  if ((n)); then log "unmounted $n mounts/netns"; fi
}

cleanup_network() {
  local l
  if ip link show "$CNI_BRIDGE" >/dev/null 2>&1; then
    for l in $(ip -o link show master "$CNI_BRIDGE" 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1); do
      ip link del "$l" 2>/dev/null || true
    done
    ip link del "$CNI_BRIDGE" 2>/dev/null || true
    log "deleted bridge $CNI_BRIDGE"
  fi
  if ip link show "$NODE_IF" >/dev/null 2>&1; then
    ip link del "$NODE_IF"; log "deleted node interface $NODE_IF"
  fi
  conntrack -D -s "$CLUSTER_CIDR" >/dev/null 2>&1 || true
  conntrack -D -d "${SERVICE_CIDR}" >/dev/null 2>&1 || true
}

# Delete every rule that jumps to a KUBE-*/CNI-* chain from other chains, then the chains
# (IPv4 and IPv6: kube-proxy creates its chains for both families).
cleanup_iptables() {
  local ipt t line chain n=0
  for ipt in iptables ip6tables; do
    command -v "$ipt" >/dev/null || continue
    for t in filter nat mangle; do
      "$ipt" -t "$t" -S >/dev/null 2>&1 || continue
      while read -r line; do
        if eval "$ipt -t $t -D ${line#-A }" 2>/dev/null; then n=$((n + 1)); fi
      done < <("$ipt-save" -t "$t" 2>/dev/null | grep -E '^-A ' | grep -vE '^-A (KUBE|CNI)-' | grep -E -- '-j (KUBE|CNI)-')
      for chain in $("$ipt-save" -t "$t" 2>/dev/null | sed -n 's/^:\(\(KUBE\|CNI\)-[^ ]*\) .*/\1/p'); do
        "$ipt" -t "$t" -F "$chain" 2>/dev/null || true
      done
      for chain in $("$ipt-save" -t "$t" 2>/dev/null | sed -n 's/^:\(\(KUBE\|CNI\)-[^ ]*\) .*/\1/p'); do
        if "$ipt" -t "$t" -X "$chain" 2>/dev/null; then n=$((n + 1)); fi
      done
    done
  done
  if ((n)); then log "removed $n KUBE-*/CNI-* iptables rules/chains"; fi
}

main "$@"
