#!/usr/bin/env bash
# smoke.sh - quick health check of the e2e cluster brought up by up.sh.
#
# Usage: hack/cluster/smoke.sh [--help] [--keep]
#   --keep  leave the smoke namespace/CRD in place for inspection
#
# Checks (each prints PASS/FAIL; exit status 1 if any failed):
#   1. node Ready, all component pids alive
#   2. a pod from a locally imported image (myservice-e2e/probe:v1, never pulled)
#      reaches Running
#   3. that pod reaches the API server through the `kubernetes` Service
#      (10.96.0.1:443) with its ServiceAccount token and verified TLS, and (when
#      CoreDNS is deployed) resolves kubernetes.default.svc.cluster.local
#   4. the host reaches the API server through the Service IP (kube-proxy rules)
#   5. the host reaches the probe pod's HTTP port through a ClusterIP Service, a
#      NodePort on the node IP and on 127.0.0.1, and `kubectl port-forward`
#   6. garbage collection: a pod owned by a custom resource is deleted with it
#   7. NetworkPolicy is enforced (unless MYSERVICE_E2E_NETWORK_POLICY=0): with a
#      deny-all ingress policy on the probe pod, another pod's TCP connect to it
#      times out; without the policy it connects
set -euo pipefail

NS=e2e-smoke
FAILS=0

main() {
  local keep=0 t0=$SECONDS
  case "${1:-}" in
    --help|-h) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
    --keep) keep=1 ;;
  esac
  # shellcheck source=SCRIPTDIR/lib.sh
  source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

  check_components           # 1
  fresh_namespace
  check_probe_pod            # 2 + 3
  check_host_to_apiserver    # 4
  check_probe_service        # 5
  check_garbage_collection   # 6
  if netpol_enabled; then check_network_policy; fi   # 7

  if ((keep)); then log "kept namespace $NS"; else
    kc delete namespace "$NS" --wait=false >/dev/null
    kc delete crd smokeowners.e2e.myservice.io --wait=false >/dev/null
  fi
  if ((FAILS)); then log "smoke: $FAILS check(s) FAILED ($((SECONDS - t0))s)"; exit 1; fi
  log "smoke: all checks passed ($((SECONDS - t0))s)"
}

check_components() {
  local dead="" c
  for c in "${COMPONENTS[@]}"; do pid_of "$c" >/dev/null || dead+=" $c"; done
  if netpol_enabled; then pid_of "$NETPOL" >/dev/null || dead+=" $NETPOL"; fi
  check "components running${dead:+ (dead:$dead)}" test -z "$dead"
  check "node $NODE_NAME Ready" test "$(kc get node "$NODE_NAME" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}')" = True
}

# The smoke namespace (and CRD) of an earlier run go first; the probe image is imported once.
fresh_namespace() {
  kc delete namespace "$NS" --ignore-not-found --wait=true >/dev/null
  kc delete crd smokeowners.e2e.myservice.io --ignore-not-found >/dev/null
  kc create namespace "$NS" >/dev/null
  wait_until 60 kc -n "$NS" get serviceaccount default
  ctr_ images ls -q | grep -q "$PROBE_IMAGE" || ctr_ images import "$IMAGES/probe.tar" >/dev/null
}

# A pod from the locally imported image; it reaches the API server (and DNS) from inside.
check_probe_pod() {
  kc -n "$NS" apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Pod
metadata: {name: probe, labels: {app: probe}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: probe
    image: $PROBE_IMAGE
    imagePullPolicy: Never
EOF
  check "pod with local image Running" kc -n "$NS" wait --for=condition=Ready pod/probe --timeout=120s
  check "pod -> API server via Service $SERVICE_API_IP:443 (SA token, TLS verified)" \
    wait_until 90 sh -c "'$BIN/kubectl' --kubeconfig '$KUBECONFIG_ADMIN' -n $NS logs probe | grep -q 'PROBE OK'"
  kc -n "$NS" logs probe | grep -E 'PROBE|attempt' | tail -3 | cut -c1-200 | sed 's/^/    /'
  if dns_enabled; then
    check "pod resolves kubernetes.default.svc.cluster.local to $SERVICE_API_IP (CoreDNS)" \
      wait_until 90 sh -c "'$BIN/kubectl' --kubeconfig '$KUBECONFIG_ADMIN' -n $NS logs probe | grep -q 'DNS OK $SERVICE_API_IP'"
  fi
}

check_host_to_apiserver() {
  check "host -> API server via Service $SERVICE_API_IP:443" \
    curl -fsS --max-time 5 --cacert "$CERTS/ca.crt" --resolve "kubernetes.default.svc:443:$SERVICE_API_IP" \
      https://kubernetes.default.svc/version
}

# The probe pod's HTTP port from the host: ClusterIP, NodePort (node IP and loopback), port-forward.
check_probe_service() {
  kc -n "$NS" apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Service
metadata: {name: probe}
spec:
  type: NodePort
  selector: {app: probe}
  ports: [{port: 80, targetPort: 8080}]
EOF
  local cip np
  cip="$(kc -n "$NS" get svc probe -o jsonpath='{.spec.clusterIP}')"
  np="$(kc -n "$NS" get svc probe -o jsonpath='{.spec.ports[0].nodePort}')"
  check "host -> pod via ClusterIP $cip:80" wait_until 30 curl -fsS --max-time 3 "http://$cip/"
  check "host -> pod via NodePort $NODE_IP:$np" wait_until 30 curl -fsS --max-time 3 "http://$NODE_IP:$np/"
  check "host -> pod via NodePort 127.0.0.1:$np" wait_until 30 curl -fsS --max-time 3 "http://127.0.0.1:$np/"
  local pf_log; pf_log="$(mktemp)"
  kc -n "$NS" port-forward pod/probe 0:8080 --address 127.0.0.1 >"$pf_log" 2>&1 &
  local pf_pid=$!
  wait_until 20 grep -q 'Forwarding from' "$pf_log" || true
  local pf_port; pf_port="$(sed -n 's/.*127.0.0.1:\([0-9]*\) ->.*/\1/p' "$pf_log" | head -1)"
  check "kubectl port-forward to the pod (127.0.0.1:${pf_port:-?})" curl -fsS --max-time 5 "http://127.0.0.1:${pf_port:-1}/"
  kill "$pf_pid" 2>/dev/null || true; wait "$pf_pid" 2>/dev/null || true; rm -f "$pf_log"
}

# A pod owned by a custom resource goes with it (the operator's pods rely on this).
check_garbage_collection() {
  kc apply -f - >/dev/null <<EOF
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: smokeowners.e2e.myservice.io}
spec:
  group: e2e.myservice.io
  scope: Namespaced
  names: {plural: smokeowners, singular: smokeowner, kind: SmokeOwner}
  versions:
  - name: v1
    served: true
    storage: true
    schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}
EOF
  wait_until 30 kc -n "$NS" get smokeowners
  kc -n "$NS" apply -f - >/dev/null <<EOF
apiVersion: e2e.myservice.io/v1
kind: SmokeOwner
metadata: {name: owner}
EOF
  local uid
  uid="$(kc -n "$NS" get smokeowner owner -o jsonpath='{.metadata.uid}')"
  kc -n "$NS" apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Pod
metadata:
  name: owned
  ownerReferences:
  - {apiVersion: e2e.myservice.io/v1, kind: SmokeOwner, name: owner, uid: "$uid", controller: true, blockOwnerDeletion: true}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - {name: pause, image: $PAUSE_IMAGE, imagePullPolicy: Never}
EOF
  check "pod owned by a custom resource Running" kc -n "$NS" wait --for=condition=Ready pod/owned --timeout=120s
  kc -n "$NS" delete smokeowner owner --wait=false >/dev/null
  check "garbage collector deletes the CR-owned pod" \
    wait_until 90 sh -c "! '$BIN/kubectl' --kubeconfig '$KUBECONFIG_ADMIN' -n $NS get pod owned 2>/dev/null"
}

# With a deny-all ingress policy on the probe pod another pod's connect times out; without, it connects.
check_network_policy() {
  local probe_ip; probe_ip="$(kc -n "$NS" get pod probe -o jsonpath='{.status.podIP}')"
  kc -n "$NS" apply -f - >/dev/null <<EOF
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: probe-deny-ingress}
spec:
  podSelector: {matchLabels: {app: probe}}
  policyTypes: [Ingress]
EOF
  sleep 2  # the agent updates its pod IP sets from watch events
  check "NetworkPolicy deny-all ingress: pod -> probe pod $probe_ip:8080 times out" \
    test "$(connect_from_pod client-denied "$probe_ip:8080")" = "CONNECT TIMEOUT $probe_ip:8080"
  kc -n "$NS" delete networkpolicy probe-deny-ingress >/dev/null
  sleep 2
  check "no NetworkPolicy: pod -> probe pod $probe_ip:8080 connects" \
    test "$(connect_from_pod client-allowed "$probe_ip:8080")" = "CONNECT OK $probe_ip:8080"
}

# connect_from_pod NAME HOST:PORT: `probe connect HOST:PORT 3` in a one-shot pod; prints its verdict
connect_from_pod() {
  local name="$1" addr="$2"
  kc -n "$NS" run "$name" --image="$PROBE_IMAGE" --image-pull-policy=Never --restart=Never \
    --labels=app=probe-client -- connect "$addr" 3 >/dev/null 2>&1 || return 1
  kc -n "$NS" wait --for=jsonpath='{.status.phase}'=Succeeded "pod/$name" --timeout=60s >/dev/null 2>&1 || return 1
  kc -n "$NS" logs "$name" 2>/dev/null | grep '^CONNECT'
}

check() {
  local what="$1"; shift
  if "$@" >/dev/null 2>&1; then log "PASS $what"; else log "FAIL $what"; FAILS=$((FAILS + 1)); fi
}

wait_until() { # wait_until TIMEOUT_S CMD...
  local timeout="$1" t0=$SECONDS; shift
  until "$@" >/dev/null 2>&1; do ((SECONDS - t0 < timeout)) || return 1; sleep 1; done
}

main "$@"
