#!/usr/bin/env bash
# up.sh - bring up the single-node e2e Kubernetes cluster on this machine.
#
# Usage: hack/cluster/up.sh [--help]
#
# Idempotent:
#   * cluster already up and healthy -> prints so and does nothing;
#   * stale state (dead processes, e.g. after a reboot) -> down.sh, then a fresh start.
# Steps: build.sh (no-op when cached) -> dummy node interface -> certificates and
# kubeconfigs (openssl) -> etcd -> kube-apiserver -> containerd (own socket, state,
# config; local images imported, nothing is ever pulled) -> kube-controller-manager
# -> kube-scheduler -> kubelet -> kube-proxy -> kube-network-policies (the
# NetworkPolicy agent; MYSERVICE_E2E_NETWORK_POLICY=0: none) -> wait for the node
# to be Ready and for the default ServiceAccount.
#
# Everything runs as background processes with pid files and logs under
# ${MYSERVICE_E2E_STATE:-/var/lib/myservice-e2e}/{pids,logs}; admin kubeconfig:
# ${MYSERVICE_E2E_STATE:-/var/lib/myservice-e2e}/kubeconfig. Must run as root.
# See hack/cluster/README.md and `hack/cluster/env.sh`.
set -euo pipefail

main() {
  if [[ "${1:-}" == "--help" || "${1:-}" == "-h" ]]; then
    sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0
  fi
  # shellcheck source=SCRIPTDIR/lib.sh
  source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
  [[ $EUID -eq 0 ]] || die "must run as root"
  cluster_lock
  local t_start=$SECONDS

  if cluster_healthy; then
    if netpol_enabled && ! pid_of "$NETPOL" >/dev/null; then
      log "cluster up and healthy, but without its NetworkPolicy agent: starting it"
      "$E2E_CLUSTER_DIR/build.sh" kube-network-policies
      host_prereqs
      start_netpol
      exit 0
    fi
    log "cluster already up and healthy (kubeconfig: $KUBECONFIG_ADMIN) - nothing to do"
    exit 0
  fi
  if [[ -d "$STATE" || -d "$RUNDIR" ]] || ip link show "$NODE_IF" >/dev/null 2>&1; then
    log "stale or partial cluster state found - cleaning it with down.sh first"
    "$E2E_CLUSTER_DIR/down.sh"
  fi

  log "step 1/9: build (cached binaries are reused)"
  "$E2E_CLUSTER_DIR/build.sh"

  log "step 2/9: host prerequisites and node interface $NODE_IF ($NODE_IP)"
  host_prereqs
  mkdir -p "$CERTS" "$PIDS" "$LOGS" "$CONF" "$CNI_CONF_DIR" "$RUNDIR/containerd"

  log "step 3/9: certificates and kubeconfigs"
  make_certs
  make_kubeconfigs

  log "step 4/9: etcd"
  start_etcd
  log "step 5/9: kube-apiserver"
  start_apiserver
  log "step 6/9: containerd (socket $CONTAINERD_SOCK)"
  start_containerd
  log "step 7/9: kube-controller-manager, kube-scheduler"
  start_controller_manager
  start_scheduler
  log "step 8/9: kubelet, kube-proxy, NetworkPolicy agent"
  local t_node=$SECONDS
  start_kubelet
  start_kube_proxy
  if netpol_enabled; then start_netpol; else log "  NetworkPolicy agent disabled (MYSERVICE_E2E_NETWORK_POLICY=0): policies are not enforced"; fi

  log "step 9/9: waiting for node $NODE_NAME to be Ready"
  wait_for "node $NODE_NAME Ready" 180 node_ready
  log "node $NODE_NAME Ready $((SECONDS - t_node))s after kubelet start"
  wait_for "default ServiceAccount" 60 kc -n default get serviceaccount default
  wait_for "kube-proxy rules for Service $SERVICE_API_IP:443" 60 has_api_svc_rules
  if dns_enabled; then deploy_dns; else log "cluster DNS disabled (no CoreDNS image or MYSERVICE_E2E_DNS=0)"; fi
  log "cluster up in $((SECONDS - t_start))s. export KUBECONFIG=$KUBECONFIG_ADMIN  (or: eval \"\$($E2E_CLUSTER_DIR/env.sh)\")"
  kc get nodes -o wide
}

# --------------------------------------------------------------------------- checks
cluster_healthy() {
  local c
  for c in "${COMPONENTS[@]}"; do pid_of "$c" >/dev/null || return 1; done
  [[ -f "$KUBECONFIG_ADMIN" ]] || return 1
  kc get --raw /readyz >/dev/null 2>&1 || return 1
  node_ready
}

node_ready() {
  [[ "$(kc get node "$NODE_NAME" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" == "True" ]]
}

has_api_svc_rules() {
  iptables -t nat -S KUBE-SERVICES 2>/dev/null | grep -q -- "-d $SERVICE_API_IP/32 .*default/kubernetes:https"
}

# wait_for WHAT TIMEOUT_S CMD... : poll CMD until it succeeds
wait_for() {
  local what="$1" timeout="$2" t0=$SECONDS; shift 2
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS - t0 > timeout)); then die "timed out after ${timeout}s waiting for $what (logs: $LOGS)"; fi
    sleep 1
  done
  log "  ok: $what ($((SECONDS - t0))s)"
}

# start_bg NAME CMD... : start a component in the background (own session),
# stdout+stderr to logs/NAME.log, pid to pids/NAME.pid
start_bg() {
  local name="$1"; shift
  log "  starting $name"
  setsid "$@" >>"$LOGS/$name.log" 2>&1 </dev/null 9>&- &  # 9: the cluster lock, not for daemons
  echo $! >"$PIDS/$name.pid"
  sleep 0.5
  pid_of "$name" >/dev/null || { tail -20 "$LOGS/$name.log" >&2; die "$name exited at once (log: $LOGS/$name.log)"; }
}

alive_and() { # alive_and NAME CMD... : CMD succeeds while NAME is still running
  local name="$1"; shift
  pid_of "$name" >/dev/null || { tail -30 "$LOGS/$name.log" >&2; die "$name died (log: $LOGS/$name.log)"; }
  "$@"
}

# --------------------------------------------------------------------------- host
host_prereqs() {
  local cmd missing=()
  # command -> the Debian package that brings it (a fresh machine has none of them)
  local -A package_of=([iptables]=iptables [ip]=iproute2 [openssl]=openssl [containerd]=containerd
                       [runc]=runc [ctr]=containerd [conntrack]=conntrack [socat]=socat
                       [nft]=nftables)
  for cmd in "${!package_of[@]}"; do
    command -v "$cmd" >/dev/null || missing+=("${package_of[$cmd]}")
  done
  [[ -x "$CNI_BIN_DIR/bridge" ]] || missing+=(containernetworking-plugins)
  if ((${#missing[@]})); then
    log "installing host packages: ${missing[*]}"
    apt-get update -q >/dev/null || die "apt-get update failed"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null \
      || die "apt-get install ${missing[*]} failed"
  fi
  for cmd in "${!package_of[@]}"; do
    command -v "$cmd" >/dev/null || die "$cmd still missing after installing ${package_of[$cmd]}"
  done
  [[ -x "$CNI_BIN_DIR/bridge" ]] || die "CNI plugins missing in $CNI_BIN_DIR after installing containernetworking-plugins"
  [[ -e /proc/sys/net/bridge/bridge-nf-call-iptables ]] || modprobe br_netfilter 2>/dev/null || true
  sysctl -qw net.ipv4.ip_forward=1 net.bridge.bridge-nf-call-iptables=1 2>/dev/null || true
  swapoff -a 2>/dev/null || true
  # node interface: a dummy link, or (kernels without the dummy driver, like this
  # VM's) a veth pair whose peer is simply left up and unused.
  if ! ip link show "$NODE_IF" >/dev/null 2>&1; then
    ip link add "$NODE_IF" type dummy 2>/dev/null ||
      ip link add "$NODE_IF" type veth peer name "${NODE_IF}p"
  fi
  ip addr replace "$NODE_IP/32" dev "$NODE_IF"
  ip link set "$NODE_IF" up
  ip link set "${NODE_IF}p" up 2>/dev/null || true
}

# --------------------------------------------------------------------------- certs
# ECDSA P-256 keys: much faster than RSA on this 2-core machine.
genkey() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

# cert NAME CN O(or "") KIND(client|server|both) [SAN...]
cert() {
  local name="$1" cn="$2" o="$3" kind="$4"; shift 4
  local subj="/CN=$cn" eku ext="$CERTS/$name.ext" san="" s
  [[ -n "$o" ]] && subj="/O=$o$subj"
  case "$kind" in
    client) eku="clientAuth" ;; server) eku="serverAuth" ;; both) eku="serverAuth,clientAuth" ;;
  esac
  for s in "$@"; do
    if [[ "$s" =~ ^[0-9.]+$ ]]; then san+="IP:$s,"; else san+="DNS:$s,"; fi
  done
  {
    echo "basicConstraints=critical,CA:FALSE"
    echo "keyUsage=critical,digitalSignature"
    echo "extendedKeyUsage=$eku"
    [[ -n "$san" ]] && echo "subjectAltName=${san%,}"
  } >"$ext"
  genkey "$CERTS/$name.key"
  openssl req -new -key "$CERTS/$name.key" -subj "$subj" -out "$CERTS/$name.csr" 2>/dev/null
  openssl x509 -req -in "$CERTS/$name.csr" -CA "$CERTS/ca.crt" -CAkey "$CERTS/ca.key" -CAcreateserial \
    -days 3650 -sha256 -extfile "$ext" -out "$CERTS/$name.crt" 2>/dev/null
  rm -f "$CERTS/$name.csr" "$ext"
}

make_certs() {
  if [[ ! -f "$CERTS/ca.crt" ]]; then
    genkey "$CERTS/ca.key"
    openssl req -x509 -new -nodes -key "$CERTS/ca.key" -sha256 -days 3650 \
      -subj "/CN=myservice-e2e-ca" -addext "basicConstraints=critical,CA:TRUE" \
      -addext "keyUsage=critical,digitalSignature,keyCertSign,cRLSign" \
      -out "$CERTS/ca.crt" 2>/dev/null
  fi
  [[ -f "$CERTS/apiserver.crt" ]] || cert apiserver kube-apiserver "" server \
    127.0.0.1 "$NODE_IP" "$SERVICE_API_IP" localhost "$NODE_NAME" kubernetes kubernetes.default \
    kubernetes.default.svc kubernetes.default.svc.cluster.local
  [[ -f "$CERTS/apiserver-kubelet-client.crt" ]] || cert apiserver-kubelet-client kube-apiserver-kubelet-client system:masters client
  [[ -f "$CERTS/admin.crt" ]] || cert admin myservice-e2e-admin system:masters client
  [[ -f "$CERTS/controller-manager.crt" ]] || cert controller-manager system:kube-controller-manager "" client
  [[ -f "$CERTS/scheduler.crt" ]] || cert scheduler system:kube-scheduler "" client
  [[ -f "$CERTS/kubelet.crt" ]] || cert kubelet "system:node:$NODE_NAME" system:nodes both "$NODE_NAME" "$NODE_IP" 127.0.0.1 localhost
  [[ -f "$CERTS/kube-proxy.crt" ]] || cert kube-proxy system:kube-proxy "" client
  [[ -f "$CERTS/front-proxy-client.crt" ]] || cert front-proxy-client front-proxy-client "" client
  if [[ ! -f "$CERTS/sa.key" ]]; then
    genkey "$CERTS/sa.key"
    openssl pkey -in "$CERTS/sa.key" -pubout -out "$CERTS/sa.pub" 2>/dev/null
  fi
  chmod 600 "$CERTS"/*.key
}

# kubeconfig FILE CERTNAME [SERVER]
kubeconfig() {
  local file="$1" name="$2" server="${3:-https://$NODE_IP:$APISERVER_PORT}"
  cat >"$file" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: myservice-e2e
  cluster:
    server: $server
    certificate-authority-data: $(base64 -w0 "$CERTS/ca.crt")
users:
- name: $name
  user:
    client-certificate-data: $(base64 -w0 "$CERTS/$name.crt")
    client-key-data: $(base64 -w0 "$CERTS/$name.key")
contexts:
- name: myservice-e2e
  context: {cluster: myservice-e2e, user: $name, namespace: default}
current-context: myservice-e2e
EOF
  chmod 600 "$file"
}

make_kubeconfigs() {
  kubeconfig "$KUBECONFIG_ADMIN" admin "https://127.0.0.1:$APISERVER_PORT"
  local n
  for n in controller-manager scheduler kubelet kube-proxy; do
    kubeconfig "$CONF/$n.kubeconfig" "$n"
  done
}

# --------------------------------------------------------------------------- components
start_etcd() {
  mkdir -p "$STATE/etcd"
  start_bg etcd "$BIN/etcd" --name e2e --data-dir "$STATE/etcd" \
    --listen-client-urls "http://127.0.0.1:$ETCD_CLIENT_PORT" \
    --advertise-client-urls "http://127.0.0.1:$ETCD_CLIENT_PORT" \
    --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster "e2e=http://127.0.0.1:$ETCD_PEER_PORT" \
    --listen-metrics-urls "http://127.0.0.1:12381" \
    --quota-backend-bytes 4294967296 --snapshot-count 10000 --log-level warn
  wait_for "etcd health" 60 alive_and etcd curl -fsS "http://127.0.0.1:$ETCD_CLIENT_PORT/health"
}

start_apiserver() {
  start_bg kube-apiserver "$BIN/kube-apiserver" \
    --advertise-address "$NODE_IP" --bind-address 0.0.0.0 --secure-port "$APISERVER_PORT" \
    --etcd-servers "http://127.0.0.1:$ETCD_CLIENT_PORT" \
    --service-cluster-ip-range "$SERVICE_CIDR" \
    --tls-cert-file "$CERTS/apiserver.crt" --tls-private-key-file "$CERTS/apiserver.key" \
    --client-ca-file "$CERTS/ca.crt" \
    --kubelet-client-certificate "$CERTS/apiserver-kubelet-client.crt" \
    --kubelet-client-key "$CERTS/apiserver-kubelet-client.key" \
    --kubelet-preferred-address-types InternalIP,Hostname \
    --service-account-key-file "$CERTS/sa.pub" \
    --service-account-signing-key-file "$CERTS/sa.key" \
    --service-account-issuer "https://kubernetes.default.svc.cluster.local" \
    --authorization-mode Node,RBAC \
    --enable-admission-plugins NodeRestriction \
    --allow-privileged=true \
    --requestheader-client-ca-file "$CERTS/ca.crt" --requestheader-allowed-names front-proxy-client \
    --requestheader-username-headers X-Remote-User --requestheader-group-headers X-Remote-Group \
    --requestheader-extra-headers-prefix X-Remote-Extra- \
    --proxy-client-cert-file "$CERTS/front-proxy-client.crt" \
    --proxy-client-key-file "$CERTS/front-proxy-client.key" \
    --profiling=false --v=1
  wait_for "kube-apiserver /readyz" 120 alive_and kube-apiserver kc get --raw /readyz
}

write_containerd_config() {
  mkdir -p "$CONTAINERD_ROOT" "$CONTAINERD_STATE" "$STATE/containerd-opt"
  cat >"$CONF/containerd.toml" <<EOF
# myservice e2e cluster containerd - separate from any system/docker containerd
version = 2
root = "$CONTAINERD_ROOT"
state = "$CONTAINERD_STATE"

[grpc]
  address = "$CONTAINERD_SOCK"

[ttrpc]
  address = ""

[debug]
  address = ""
  level = "info"

[metrics]
  address = ""

[plugins]
  [plugins."io.containerd.internal.v1.opt"]
    path = "$STATE/containerd-opt"
  [plugins."io.containerd.grpc.v1.cri"]
    sandbox_image = "$PAUSE_IMAGE"
    stream_server_address = "127.0.0.1"
    stream_server_port = "0"
    enable_selinux = false
    max_container_log_line_size = 16384
    # This machine grants no CAP_SYS_RESOURCE: processes cannot lower their
    # oom_score_adj, so the sandbox's default -998 makes runc fail with
    # "can't get final child's PID from pipe: EOF". Clamp to containerd's own score.
    restrict_oom_score_adj = true
    [plugins."io.containerd.grpc.v1.cri".containerd]
      snapshotter = "overlayfs"
      default_runtime_name = "runc"
      discard_unpacked_layers = false
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
        runtime_type = "io.containerd.runc.v2"
        [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
          SystemdCgroup = false
          Root = "$RUNDIR/runc"
    [plugins."io.containerd.grpc.v1.cri".cni]
      bin_dir = "$CNI_BIN_DIR"
      conf_dir = "$CNI_CONF_DIR"
      max_conf_num = 1
EOF
}

# Pod network: bridge + host-local (+ portmap, firewall). containerd itself
# sets up each pod's loopback with the loopback plugin from bin_dir.
# The firewall plugin adds CNI-FORWARD accepts: dockerd sets FORWARD policy DROP.
write_cni_config() {
  cat >"$CNI_CONF_DIR/10-myservice-e2e.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "$CNI_NETWORK",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$CNI_BRIDGE",
      "isGateway": true,
      "isDefaultGateway": true,
      "ipMasq": true,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "$STATE/cni/networks",
        "ranges": [[{"subnet": "$POD_CIDR"}]]
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}},
    {"type": "firewall", "backend": "iptables"}
  ]
}
EOF
}

start_containerd() {
  write_containerd_config
  write_cni_config
  start_bg containerd containerd --config "$CONF/containerd.toml"
  wait_for "containerd socket" 60 alive_and containerd ctr_ version
  local tar tars=("$IMAGES/pause.tar" "$IMAGES/probe.tar") names="$PAUSE_IMAGE (pinned sandbox image), docker.io/$PROBE_IMAGE"
  if dns_enabled; then tars+=("$IMAGES/coredns.tar"); names+=", docker.io/$COREDNS_IMAGE"; fi
  for tar in "${tars[@]}"; do
    ctr_ images import "$tar" >/dev/null
  done
  ctr_ images label "$PAUSE_IMAGE" io.cri-containerd.pinned=pinned >/dev/null
  log "  imported local images: $names"
}

start_controller_manager() {
  local kcfg="$CONF/controller-manager.kubeconfig"
  start_bg kube-controller-manager "$BIN/kube-controller-manager" \
    --kubeconfig "$kcfg" --authentication-kubeconfig "$kcfg" --authorization-kubeconfig "$kcfg" \
    --bind-address 127.0.0.1 --leader-elect=false \
    --service-account-private-key-file "$CERTS/sa.key" --root-ca-file "$CERTS/ca.crt" \
    --cluster-signing-cert-file "$CERTS/ca.crt" --cluster-signing-key-file "$CERTS/ca.key" \
    --use-service-account-credentials=true \
    --controllers '*,bootstrapsigner,tokencleaner' \
    --allocate-node-cidrs=true --cluster-cidr "$CLUSTER_CIDR" --node-cidr-mask-size 24 \
    --service-cluster-ip-range "$SERVICE_CIDR" \
    --profiling=false --v=1
  wait_for "kube-controller-manager healthz" 60 alive_and kube-controller-manager curl -fsSk https://127.0.0.1:10257/healthz
}

start_scheduler() {
  local kcfg="$CONF/scheduler.kubeconfig"
  start_bg kube-scheduler "$BIN/kube-scheduler" \
    --kubeconfig "$kcfg" --authentication-kubeconfig "$kcfg" --authorization-kubeconfig "$kcfg" \
    --bind-address 127.0.0.1 --leader-elect=false --profiling=false --v=1
  wait_for "kube-scheduler healthz" 60 alive_and kube-scheduler curl -fsSk https://127.0.0.1:10259/healthz
}

start_kubelet() {
  mkdir -p "$KUBELET_ROOT" "$STATE/pod-logs"
  cat >"$CONF/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $NODE_IP
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
tlsCertFile: $CERTS/kubelet.crt
tlsPrivateKeyFile: $CERTS/kubelet.key
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $CERTS/ca.crt}
authorization:
  mode: Webhook
cgroupDriver: cgroupfs
failCgroupV1: false
containerRuntimeEndpoint: unix://$CONTAINERD_SOCK
failSwapOn: false
registerNode: true
clusterDomain: cluster.local
clusterDNS: [$(if dns_enabled; then echo "$DNS_IP"; fi)]
resolvConf: /etc/resolv.conf
podLogsDir: $STATE/pod-logs
serializeImagePulls: false
# locally imported images cannot be re-pulled: never garbage-collect them
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
# a busy/full-ish disk must not evict e2e pods
evictionHard:
  memory.available: "50Mi"
  nodefs.available: "1%"
  nodefs.inodesFree: "1%"
  imagefs.available: "1%"
evictionMinimumReclaim: {}
maxPods: 110
protectKernelDefaults: false
# no CAP_SYS_RESOURCE here: the kubelet cannot lower its own oom_score_adj (-999 default)
oomScoreAdj: 0
EOF
  start_bg kubelet "$BIN/kubelet" \
    --config "$CONF/kubelet.yaml" --kubeconfig "$CONF/kubelet.kubeconfig" \
    --hostname-override "$NODE_NAME" --node-ip "$NODE_IP" \
    --root-dir "$KUBELET_ROOT" --cert-dir "$KUBELET_ROOT/pki" --v=1
  wait_for "kubelet healthz" 90 alive_and kubelet curl -fsS http://127.0.0.1:10248/healthz
}

start_kube_proxy() {
  cat >"$CONF/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection:
  kubeconfig: $CONF/kube-proxy.kubeconfig
hostnameOverride: $NODE_NAME
mode: iptables
clusterCIDR: $CLUSTER_CIDR
bindAddress: $NODE_IP
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
nodePortAddresses: ["$NODE_IP/32", "127.0.0.0/8"]
oomScoreAdj: 0
iptables:
  minSyncPeriod: 1s
  syncPeriod: 30s
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
EOF
  start_bg kube-proxy "$BIN/kube-proxy" --config "$CONF/kube-proxy.yaml" --v=1
  wait_for "kube-proxy healthz" 60 alive_and kube-proxy curl -fsS http://127.0.0.1:10256/healthz
}

# kube-network-policies: enforces NetworkPolicy with nftables rules that send the first
# packet of each connection from or to a pod selected by a policy to an nfqueue, where
# the agent decides (kind's agent; patched by build.sh, see patches/). Traffic from
# root processes on the node (the kubelet's probes) is let through by the agent itself.
start_netpol() {
  local queue_flag=""
  if ! kernel_has_nft_queue; then
    # nf_tables, nfnetlink_queue and xt_NFQUEUE are built in here, nft's queue expression is not
    queue_flag="--nft-compat-queue"
    log "  the kernel has no nftables queue expression (CONFIG_NFT_QUEUE): the agent queues with xt NFQUEUE via nft_compat"
  fi
  # --netfilter-bug-1766-fix=false: the DNS workaround is for kernels before 6.12
  start_bg "$NETPOL" "$BIN/$NETPOL" --kubeconfig "$KUBECONFIG_ADMIN" --hostname-override "$NODE_NAME" \
    --nfqueue-id "$NETPOL_QUEUE" --metrics-bind-address "$NETPOL_METRICS" \
    --netfilter-bug-1766-fix=false $queue_flag --v=1
  wait_for "$NETPOL: its nftables rules loaded (table inet $NETPOL_TABLE)" 60 alive_and "$NETPOL" netpol_rules_loaded
}

# The agent loads its table in one batch: the rules matching its pod IP sets are
# there only if the kernel took the queue rules too.
netpol_rules_loaded() {
  nft list chain inet "$NETPOL_TABLE" postrouting 2>/dev/null | grep -q '@podips-v4'
}

# Whether nftables' queue expression exists (a scratch table; nothing is hooked).
kernel_has_nft_queue() {
  local t=myservice-e2e-queue-probe ok=1
  nft add table inet "$t" && nft add chain inet "$t" probe &&
    nft add rule inet "$t" probe queue num 65000 bypass 2>/dev/null && ok=0
  nft delete table inet "$t" 2>/dev/null || true
  return "$ok"
}

# CoreDNS serving cluster.local only: no upstream forwarding, so no DNS query ever
# leaves the machine (other names get REFUSED/SERVFAIL).
deploy_dns() {
  log "  deploying CoreDNS ($COREDNS_IMAGE) as Service kube-system/kube-dns $DNS_IP"
  sed -e "s|\${COREDNS_IMAGE}|$COREDNS_IMAGE|g" -e "s|\${DNS_IP}|$DNS_IP|g" "$E2E_CLUSTER_DIR/coredns.yaml" \
    | kc apply -f - >/dev/null
  if wait_for_soft 60 kc -n kube-system rollout status deployment/coredns --timeout=5s; then
    log "  ok: CoreDNS ready"
  else
    log "  WARNING: CoreDNS not ready (kubectl -n kube-system describe pod -l k8s-app=kube-dns); the cluster works without it"
  fi
}

wait_for_soft() { # wait_for_soft TIMEOUT_S CMD... : like wait_for, but returns 1 instead of dying
  local timeout="$1" t0=$SECONDS; shift
  until "$@" >/dev/null 2>&1; do ((SECONDS - t0 < timeout)) || return 1; sleep 1; done
}

main "$@"
