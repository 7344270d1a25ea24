#!/usr/bin/env bash
# shellcheck disable=SC2317  # the steps run through phase/phase_here and the EXIT trap
# run.sh - the scale test: thousands of sessions through the real chart, operator and
# gateway on the local cluster, their instance pods on kwok's fake nodes.
#
# Usage: bench/scale/run.sh [--help]      (what `make scale` runs; must run as root)
#
# Phases (each timed and logged like e2e/run.sh's):
#   1. hack/cluster/build.sh ... kwok  the cluster's binaries and kwok v0.8.0 (cached)
#   2. cluster                         used as it is when it answers (others may be using
#                                      it); otherwise hack/cluster/up.sh, and then down.sh at
#                                      the end (trap), as e2e/run.sh does
#   3. hack/images/build.sh + load.sh  this tree's images into the cluster's containerd
#   4. kwok                            the kwok controller, a local process with the admin
#                                      kubeconfig, managing SCALE_NODES fake nodes of this run
#   5. install                         namespace, one FlowSchema per component (so the API
#                                      server counts their requests apart), the CRD if it is
#                                      missing, helm install (bench/scale/values.yaml + users with
#                                      cost-4 bcrypt hashes + the pod template for this run's nodes)
#   6. load                            bench/scale/load.py: ramp at SCALE_RATE to SCALE_SESSIONS,
#                                      settle, idle SCALE_IDLE_SECONDS, end; prints the report
#   7. plot                            bench/scale/plot.py: the run as a PNG (SCALE_PNG)
#   always (trap): the run's sessions and instance pods, release, namespace, nodes and
#   FlowSchemas deleted, kwok stopped; the cluster is left as it was found.
# The report's last line: `scale: <N> sessions, ready p99 <ms> ms, idle api <x> req/s,
# operator rss <MB> MB, gateway rss <MB> MB`.
#
# SCALE_MODE=claim-burst: the peers' gate instead (issue 17; kubernetes-sigs/agent-sandbox's
# KWOK presubmit): the release gets a warm pool of SESSIONS + 40 % pods on the kwok nodes,
# and once it is full, SESSIONS Logins at RATE/s (defaults 750 and 75/s; no idle phase, no
# picture). Printed: Login -> Ready p50/p90/p99 (warm and cold apart), the per-stage split
# (the gateway's create, the operator's claim, the labels after Ready), API requests per
# session and the gate (p50 <= 300, p90 <= 300, p99 <= 500 ms). Last line:
# `claim-burst: <N> at <R>/s from a pool of <P>: Login -> Ready p50/p90/p99 <ms> ms, gate met|MISSED`.
#
# Environment:
#   SCALE_MODE              ramp (default) or claim-burst
#   SCALE_SESSIONS (10000; claim-burst 750)  SCALE_RATE (50 Logins/s; claim-burst 75)
#   SCALE_NODES (100)  SCALE_USERS (20)
#   SCALE_POOL_MAX_STARTING (claim-burst: pool pods starting at once while it fills; 100)
#   SCALE_IDLE_SECONDS (60)  SCALE_READY_TIMEOUT (600 s: settle at most this long)
#   SCALE_KNEE_RATES        e.g. 10,25,50,100: first SCALE_KNEE_SESSIONS (300) sessions at each
#                           rate, ended after each step (where Ready stops keeping up)
#   SCALE_PNG               the picture (default docs/scale-<SESSIONS>.png)
#   SCALE_OUT_DIR           results.json, logs (default /tmp/myservice-scale/<run>)
#   SCALE_SKIP_BUILD=1      skip phase 3 (this tree's images are in the cluster already)
#   SCALE_KEEP=1            leave everything in place for debugging (cleanup by hand:
#                           the commands are printed)
set -uo pipefail

if [[ "${1:-}" == "--help" || "${1:-}" == "-h" ]]; then
  sed -n '3,/^set -uo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0
fi

MODE=${SCALE_MODE:-ramp}
case "$MODE" in
  ramp) SESSIONS=${SCALE_SESSIONS:-10000}; RATE=${SCALE_RATE:-50}; POOL=0 ;;
  claim-burst)
    SESSIONS=${SCALE_SESSIONS:-750}; RATE=${SCALE_RATE:-75}
    POOL=$(( (SESSIONS * 14 + 9) / 10 )) ;;   # figures.claim_pool_size: SESSIONS + 40 %, rounded up
  *) echo "run.sh: SCALE_MODE must be ramp or claim-burst, not $MODE" >&2; exit 2 ;;
esac
NODES=${SCALE_NODES:-100}
USERS=${SCALE_USERS:-20}
IDLE=${SCALE_IDLE_SECONDS:-60}
READY_TIMEOUT=${SCALE_READY_TIMEOUT:-600}
RUN="scale-$(head -c3 /dev/urandom | od -An -tx1 | tr -d ' \n')"
NS="myservice-$RUN"
RELEASE=scale
OUT_DIR=${SCALE_OUT_DIR:-/tmp/myservice-scale/$RUN}
mkdir -p "$OUT_DIR"
# shellcheck disable=SC2034  # read by phases.sh
PHASES_TAG=scale
MYSERVICE_E2E_LOG_DIR=$OUT_DIR
# shellcheck source=e2e/phases.sh
source "$(dirname "${BASH_SOURCE[0]}")/../../e2e/phases.sh"   # cd to the repo; say, phase, PYTEST
PNG=${SCALE_PNG:-$REPO/docs/scale-$SESSIONS.png}
PY=$REPO/.venv/bin/python
HERE=$REPO/bench/scale
KWOK_PID=""
CLUSTER_STARTED_HERE=0
DOCKERD_STARTED_HERE=0
CRD_CREATED_HERE=0

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [[ "${SCALE_KEEP:-}" == 1 ]]; then
    say "SCALE_KEEP=1: left in place. By hand: kubectl delete mss --all -n $NS; kubectl delete ns $NS;" \
        "kubectl delete nodes,flowschemas -l myservice.io/scale-run=$RUN; kill $KWOK_PID"
  else
    phase "cleanup" clean_cluster || true
    ((CLUSTER_STARTED_HERE)) && { phase "cluster down" hack/cluster/down.sh || true; }
    ((DOCKERD_STARTED_HERE)) && { phase "dockerd stop" stop_dockerd || true; }
  fi
  say "summary (logs in $OUT_DIR):"
  printf '    %s\n' "${SUMMARY[@]}"
  say "total $((SECONDS - T0))s, exit $rc"
  [[ -f "$OUT_DIR/load.log" ]] && tail -n1 "$OUT_DIR/load.log"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

kc() { "$MYSERVICE_KUBECTL" "$@"; }

# phase_here NAME CMD...: phase (phases.sh) run in this shell, not in a pipeline's
# subshell: the steps that set what the cleanup needs (kwok's pid, the gateway's address).
phase_here() {
  local name="$1" t=$SECONDS rc; shift
  say "==> $name: $*"
  "$@" > >(tee "$LOG_DIR/${name// /_}.log") 2>&1
  rc=$?
  SUMMARY+=("$(printf '%-14s %5ds  %s' "$name" "$((SECONDS - t))" "$([[ $rc == 0 ]] && echo ok || echo "FAILED ($rc)")")")
  say "<== $name: $([[ $rc == 0 ]] && echo ok || echo "FAILED (exit $rc)") in $((SECONDS - t))s"
  return "$rc"
}

# Everything this run made, in an order that needs no help: sessions while the operator
# still runs (its finalizer), instance pods while kwok still runs (it completes their
# deletion), then the release and namespace, the nodes, the FlowSchemas, kwok itself.
clean_cluster() {
  [[ -n "${MYSERVICE_KUBECTL:-}" ]] || return 0   # stopped before the cluster was known
  if kc get namespace "$NS" >/dev/null 2>&1; then
    kc -n "$NS" delete mss --all --wait=false >/dev/null 2>&1
    for _ in $(seq 1 60); do
      [[ -z "$(kc -n "$NS" get mss -o name 2>/dev/null | head -n1)" ]] && break; sleep 2
    done
    kc -n "$NS" get mss -o name 2>/dev/null | while read -r mss; do
      kc -n "$NS" patch "$mss" --type=merge -p '{"metadata":{"finalizers":null}}' >/dev/null 2>&1
    done
    kc -n "$NS" delete pods -l app.kubernetes.io/component=instance --wait=false >/dev/null 2>&1
    for _ in $(seq 1 60); do
      [[ -z "$(kc -n "$NS" get pods -l app.kubernetes.io/component=instance -o name 2>/dev/null | head -n1)" ]] && break
      sleep 2
    done
    # kwok gone or stuck: nothing else would ever finish these deletions
    kc -n "$NS" delete pods -l app.kubernetes.io/component=instance --grace-period=0 --force >/dev/null 2>&1
    "$MYSERVICE_HELM" -n "$NS" uninstall "$RELEASE" --wait --timeout 120s >/dev/null 2>&1
    kc delete namespace "$NS" --wait=true --timeout=300s
  fi
  kc delete nodes -l "myservice.io/scale-run=$RUN" --wait=true --timeout=120s
  kc delete flowschemas -l "myservice.io/scale-run=$RUN"
  if ((CRD_CREATED_HERE)) && [[ -z "$(kc get mss -A -o name 2>/dev/null | head -n1)" ]]; then
    kc delete -f crds/myservicesessions.yaml   # made here, used by nobody: as it was found
  fi
  stop_kwok
  say "cleanup done: no namespace $NS, no node or FlowSchema of $RUN, kwok stopped"
}

stop_kwok() {
  [[ -n "$KWOK_PID" ]] || return 0
  kill -TERM "$KWOK_PID" 2>/dev/null || return 0
  for _ in $(seq 1 20); do kill -0 "$KWOK_PID" 2>/dev/null || { say "kwok (pid $KWOK_PID) stopped"; return 0; }; sleep 0.5; done
  kill -KILL "$KWOK_PID" 2>/dev/null
}

# A dockerd this run started for the image build is stopped: stop_dockerd (phases.sh).

cluster_answers() { [[ -f "$MYSERVICE_E2E_STATE/kubeconfig" ]] && kc get --raw /readyz >/dev/null 2>&1; }

start_kwok() {
  local bin stages
  bin="$(dirname "$MYSERVICE_KUBECTL")/kwok"
  stages="$(dirname "$MYSERVICE_KUBECTL")/kwok.stages.yaml"
  # --cidr: the fake pods' IPs (nobody routes to them; kept apart from the real pod,
  # service and node ranges); no --node-port/--server-address: kwok serves nothing.
  "$bin" --kubeconfig "$KUBECONFIG" --config "$stages" \
    --manage-all-nodes=false --manage-nodes-with-annotation-selector "kwok.x-k8s.io/node=$RUN" \
    --node-lease-duration-seconds 40 --cidr 10.128.0.0/16 >"$OUT_DIR/kwok.log" 2>&1 &
  KWOK_PID=$!
  sleep 2
  kill -0 "$KWOK_PID" 2>/dev/null || { cat "$OUT_DIR/kwok.log"; return 1; }
  say "kwok running (pid $KWOK_PID, log $OUT_DIR/kwok.log)"
  "$PY" "$HERE/manifests.py" nodes "$RUN" "$NODES" | kc apply -f - >/dev/null || return 1
  kc wait --for=condition=Ready nodes -l "myservice.io/scale-run=$RUN" --timeout=120s >/dev/null || return 1
  say "$NODES kwok nodes Ready"
}

install_release() {
  kc create namespace "$NS" >/dev/null || return 1
  kc label namespace "$NS" myservice.io/scale-run="$RUN" \
    pod-security.kubernetes.io/enforce=restricted >/dev/null || return 1
  "$PY" "$HERE/manifests.py" flowschemas "$RUN" "$NS" "$RELEASE" | kc apply -f - >/dev/null || return 1
  if ! kc get crd myservicesessions.myservice.io >/dev/null 2>&1; then
    kc apply -f crds/myservicesessions.yaml >/dev/null || return 1
    CRD_CREATED_HERE=1
    kc wait --for=condition=Established crd/myservicesessions.myservice.io --timeout=60s >/dev/null || return 1
  fi
  "$PY" "$HERE/manifests.py" values "$RUN" "$USERS" "$SCALE_PASSWORD" >"$OUT_DIR/run-values.json" || return 1
  local pool_values=()
  if ((POOL)); then   # claim-burst: the warm pool, filled fast (kwok starts pods in no time)
    pool_values=(--set "instance.warmPool.size=$POOL" --set "instance.warmPool.maxStarting=${SCALE_POOL_MAX_STARTING:-100}")
  fi
  "$MYSERVICE_HELM" -n "$NS" install "$RELEASE" helm/myservice -f "$HERE/values.yaml" -f "$OUT_DIR/run-values.json" \
    --set "operator.maxSessions=$((SESSIONS + ${SCALE_KNEE_SESSIONS:-300}))" "${pool_values[@]}" \
    --wait --timeout 300s || return 1
  GATEWAY="$(kc -n "$NS" get pods -l app.kubernetes.io/component=gateway -o jsonpath='{.items[0].status.podIP}')"
  [[ -n "$GATEWAY" ]] || return 1
  say "release $RELEASE in $NS; gateway pod at $GATEWAY:10000 (reached from the host directly)"
}

[[ $EUID -eq 0 ]] || { say "must run as root (kwok and the cluster run as local processes; /proc of the pods)"; exit 2; }
[[ -x "$PY" ]] || { say "$PY missing: run \`make scale\` (it creates .venv)"; exit 2; }
"$PY" -c "import matplotlib" 2>/dev/null || { say "matplotlib missing: pip install -e '.[test,bench]' (make scale does)"; exit 2; }
say "run $RUN ($MODE): $SESSIONS sessions at $RATE/s$( ((POOL)) && echo ", a warm pool of $POOL"), $NODES kwok nodes, namespace $NS, results in $OUT_DIR"

phase "cluster build" hack/cluster/build.sh helm images etcd kube crictl coredns kube-network-policies kwok || exit $?
# shellcheck source=hack/cluster/env.sh
eval "$(bash hack/cluster/env.sh)"
if cluster_answers; then
  say "the cluster is up: using it as it is (it is left running)"
else
  CLUSTER_STARTED_HERE=1
  phase "cluster up" hack/cluster/up.sh || exit $?
fi
if [[ "${SCALE_SKIP_BUILD:-}" != 1 ]]; then
  docker info >/dev/null 2>&1 || DOCKERD_STARTED_HERE=1
  phase "images build" hack/images/build.sh || exit $?
  phase "images load" hack/images/load.sh --address "$MYSERVICE_E2E_CONTAINERD_SOCK" || exit $?
fi
SCALE_PASSWORD="$(head -c12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
export SCALE_PASSWORD KUBECONFIG
phase_here "kwok" start_kwok || exit $?
phase_here "install" install_release || exit $?
if ((POOL)); then
  phase "load" "$PY" "$HERE/load.py" --gateway "$GATEWAY:10000" --namespace "$NS" --release "$RELEASE" \
    --run "$RUN" --sessions "$SESSIONS" --rate "$RATE" --users "$USERS" --claim-burst-pool "$POOL" \
    --ready-timeout "$READY_TIMEOUT" --out "$OUT_DIR/results.json" || exit $?
  exit 0
fi
phase "load" "$PY" "$HERE/load.py" --gateway "$GATEWAY:10000" --namespace "$NS" --release "$RELEASE" \
  --run "$RUN" --sessions "$SESSIONS" --rate "$RATE" --users "$USERS" --idle-seconds "$IDLE" \
  --ready-timeout "$READY_TIMEOUT" --knee-rates "${SCALE_KNEE_RATES:-}" \
  --knee-sessions "${SCALE_KNEE_SESSIONS:-300}" --out "$OUT_DIR/results.json" || exit $?
phase "plot" "$PY" "$HERE/plot.py" "$OUT_DIR/results.json" "$PNG" || exit $?
exit 0
