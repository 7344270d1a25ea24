#!/usr/bin/env bash
# run.sh - the e2e suite on a single-node Kubernetes built from source on this machine.
#
# Usage: e2e/run.sh [--help] [PYTEST_ARGS...]     (what `make e2e` and CI run; must run as root)
#
# Phases (each prints its start, its end and how long it took; a summary at the end):
#   1. hack/cluster/build.sh           Kubernetes/etcd/helm from the Go module proxy (cached)
#   2. hack/cluster/up.sh              start the cluster; prints how long the node took to turn Ready
#   3. hack/images/build.sh            myservice-gateway:dev, myservice-service:dev (local dockerd)
#   4. hack/images/load.sh --address <the cluster's containerd socket>
#   5. .venv/bin/pytest e2e            the suite (e2e/README.md), with KUBECONFIG etc. from env.sh
#   6. hack/cluster/down.sh            always (trap), unless MYSERVICE_E2E_KEEP=1
#   7. dockerd stop                    only if phase 3 started it (a daemon already running stays)
#
# Exit status: pytest's (0 all passed; 1 failures; 5 nothing collected, also a failure);
# a failing phase before pytest exits with that phase's status (at least 1).
#
# Environment:
#   MYSERVICE_E2E_KEEP=1        keep the cluster (and the test namespace, and dockerd) for debugging
#   MYSERVICE_E2E_KEEP_CLUSTER=1  keep the cluster only (e.g. others use it); the namespace goes
#   MYSERVICE_E2E_SKIP_BUILD=1  skip phases 3-4 (images already in the cluster's containerd)
#   MYSERVICE_E2E_PYTEST_ARGS   extra pytest arguments (also: arguments to this script)
#   MYSERVICE_E2E_LOG_DIR       where phase logs go (default /tmp/myservice-e2e-logs)
#   everything e2e/conftest.py reads (MYSERVICE_E2E_NAMESPACE, _GATEWAY_IMAGE, ...)
set -uo pipefail

if [[ "${1:-}" == "--help" || "${1:-}" == "-h" ]]; then
  sed -n '2,/^set -uo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0
fi

# shellcheck disable=SC2034  # PHASES_TAG is read by phases.sh
PHASES_TAG=run.sh
# shellcheck source=e2e/phases.sh
source "$(dirname "${BASH_SOURCE[0]}")/phases.sh"

# shellcheck disable=SC2317  # invoked by the EXIT trap
finish() {
  local rc=$?
  trap - EXIT INT TERM
  if [[ "${MYSERVICE_E2E_KEEP:-}" == 1 || "${MYSERVICE_E2E_KEEP_CLUSTER:-}" == 1 ]]; then
    say "MYSERVICE_E2E_KEEP=1: cluster left running. eval \"\$(hack/cluster/env.sh)\"; kubectl get pods -A; hack/cluster/down.sh when done"
  else
    phase "cluster down" hack/cluster/down.sh || true
    [[ "${DOCKERD_STARTED_HERE:-0}" == 1 ]] && { phase "dockerd stop" stop_dockerd || true; }
  fi
  say "summary (logs in $LOG_DIR):"
  printf '    %s\n' "${SUMMARY[@]}"
  [[ -n "${NODE_READY:-}" ]] && printf '    %s\n' "$NODE_READY"
  say "total $((SECONDS - T0))s, exit $rc"
  exit "$rc"
}
trap finish EXIT

# dockerd is needed for the image builds only: one that this run started is
# stopped at the end (stop_dockerd, phases.sh), so that `make e2e` leaves no daemon behind.
DOCKERD_PIDFILE=/var/run/docker.pid
trap 'exit 130' INT TERM

[[ $EUID -eq 0 ]] || { say "must run as root (the cluster runs kubelet/containerd as local processes)"; exit 2; }
[[ -x "$PYTEST" ]] || { say "$PYTEST missing: run \`make e2e\` (it creates .venv) or \`make test\` once"; exit 2; }

phase "cluster build" hack/cluster/build.sh || exit $?
phase "cluster up" hack/cluster/up.sh || exit $?
NODE_READY=$(grep -o 'node .* Ready [0-9]*s after kubelet start' "$LOG_DIR/cluster_up.log" | tail -n1 || true)
[[ -n "$NODE_READY" ]] && say "$NODE_READY"
# shellcheck source=hack/cluster/env.sh
eval "$(bash hack/cluster/env.sh)"

if [[ "${MYSERVICE_E2E_SKIP_BUILD:-}" != 1 ]]; then
  docker info >/dev/null 2>&1 || DOCKERD_STARTED_HERE=1
  phase "images build" hack/images/build.sh || exit $?
  phase "images load" hack/images/load.sh --address "$MYSERVICE_E2E_CONTAINERD_SOCK" || exit $?
fi

export KUBECONFIG MYSERVICE_E2E_KUBECTL="$MYSERVICE_KUBECTL" MYSERVICE_E2E_HELM="$MYSERVICE_HELM"
# shellcheck disable=SC2086
phase "pytest" "$PYTEST" e2e -p no:cacheprovider -v -s -rA --durations=0 --color=yes \
  ${MYSERVICE_E2E_PYTEST_ARGS:-} "$@"
exit $?
