#!/usr/bin/env bash
# kind.sh - the same e2e suite on a kind cluster (CI: .github/workflows/e2e.yml).
#
# Usage: e2e/kind.sh [--help] [PYTEST_ARGS...]      (needs docker, kind, kubectl, helm; root for
#                                                   the debootstrap base image, as locally)
#
# The steps mirror e2e/run.sh one for one; only the cluster and the way images
# reach its containerd differ (0. makes sure a docker daemon answers, as run.sh's image
# build does; one this run started is stopped at the end):
#   1. kind create cluster --name $KIND_CLUSTER          (instead of hack/cluster/build.sh + up.sh)
#   2. hack/images/build.sh                              (the same script and Dockerfiles, same
#                                                        debootstrap base: the images' operator
#                                                        command needs its /usr/bin/tini)
#   3. kind load docker-image <the three images>         (instead of hack/images/load.sh into our containerd)
#   4. .venv/bin/pytest e2e                              (the same invocation and suite)
#   5. kind delete cluster                               (always, unless MYSERVICE_E2E_KEEP=1)
# Exit status: pytest's. On a failure, `kind export logs` goes to $LOG_DIR/kind-logs first.
#
# KIND_NODE_IMAGE=local is the one difference from a user's kind run, and it only
# changes where kind and the node image come from: hack/kind/build.sh builds kind
# v0.30.0 and a node image for Kubernetes v1.34.4 from the same sources as the local
# cluster (no registry is reachable on the development machine, so kind's published
# image cannot be pulled) and puts kind, kubectl v1.34.4 and helm on PATH. Every
# step after it is the same as in CI.
#
# Environment:
#   KIND_CLUSTER                 cluster name (default myservice-e2e)
#   KIND_NODE_IMAGE              node image (default: kind's own default). `local` (make e2e-kind):
#                                build kind and a node image on this machine first (see below)
#   MYSERVICE_E2E_KEEP=1         keep the cluster
#   MYSERVICE_E2E_LOG_DIR        phase logs (default /tmp/myservice-e2e-kind-logs)
#   MYSERVICE_E2E_GATEWAY_IMAGE, MYSERVICE_E2E_SERVICE_IMAGE, MYSERVICE_E2E_INTERPRETER_IMAGE
#                                image names (default myservice-{gateway,service,interpreter}:dev)
#   MYSERVICE_DEBIAN_MIRROR      Debian mirror for the base image; required on a non-Debian host
#                                such as ubuntu-latest (on Debian, apt's own sources are used)
#   MYSERVICE_DEBIAN_SECURITY    its security mirror (default: derived from MYSERVICE_DEBIAN_MIRROR)
#   everything e2e/conftest.py reads
set -uo pipefail

if [[ "${1:-}" == "--help" || "${1:-}" == "-h" ]]; then
  sed -n '2,/^set -uo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0
fi

# shellcheck disable=SC2034  # PHASES_TAG is read by phases.sh
PHASES_TAG=kind.sh
# Its own log folder: run.sh's phases (same names) may be running beside it.
export MYSERVICE_E2E_LOG_DIR=${MYSERVICE_E2E_LOG_DIR:-/tmp/myservice-e2e-kind-logs}
# shellcheck source=e2e/phases.sh
source "$(dirname "${BASH_SOURCE[0]}")/phases.sh"
KIND_CLUSTER=${KIND_CLUSTER:-myservice-e2e}
export MYSERVICE_E2E_GATEWAY_IMAGE=${MYSERVICE_E2E_GATEWAY_IMAGE:-myservice-gateway:dev}
export MYSERVICE_E2E_SERVICE_IMAGE=${MYSERVICE_E2E_SERVICE_IMAGE:-myservice-service:dev}
export MYSERVICE_E2E_INTERPRETER_IMAGE=${MYSERVICE_E2E_INTERPRETER_IMAGE:-myservice-interpreter:dev}
# build.sh reads these names
export MYSERVICE_GATEWAY_IMAGE=$MYSERVICE_E2E_GATEWAY_IMAGE MYSERVICE_SERVICE_IMAGE=$MYSERVICE_E2E_SERVICE_IMAGE \
  MYSERVICE_INTERPRETER_IMAGE=$MYSERVICE_E2E_INTERPRETER_IMAGE
if ! grep -qs '^ID=debian' /etc/os-release && [ -z "${MYSERVICE_DEBIAN_MIRROR:-}" ]; then
  echo "kind.sh: not a Debian host: set MYSERVICE_DEBIAN_MIRROR to a Debian mirror for the base image" >&2
  exit 2
fi
export KUBECONFIG=${MYSERVICE_E2E_KUBECONFIG:-$LOG_DIR/kind-kubeconfig}

# shellcheck disable=SC2317  # invoked by the EXIT trap
finish() {
  local rc=$?
  trap - EXIT INT TERM
  if [[ $rc != 0 && -n "${CLUSTER_CREATED:-}" ]]; then
    phase "kind logs" kind export logs --name "$KIND_CLUSTER" "$LOG_DIR/kind-logs" || true
  fi
  if [[ "${MYSERVICE_E2E_KEEP:-}" == 1 ]]; then
    say "MYSERVICE_E2E_KEEP=1: kind cluster $KIND_CLUSTER left running (KUBECONFIG=$KUBECONFIG)"
  else
    [[ -n "${CLUSTER_CREATED:-}" ]] && { phase "cluster down" kind delete cluster --name "$KIND_CLUSTER" || true; }
    [[ "${DOCKERD_STARTED_HERE:-0}" == 1 ]] && { phase "dockerd stop" stop_dockerd || true; }
    [[ "${KIND_DOCKERD_STARTED_HERE:-0}" == 1 ]] && { phase "dockerd stop" hack/kind/dockerd.sh stop || true; }
  fi
  say "summary (logs in $LOG_DIR):"
  printf '    %s\n' "${SUMMARY[@]}"
  say "total $((SECONDS - T0))s, exit $rc"
  exit "$rc"
}
trap finish EXIT
trap 'exit 130' INT TERM

# A docker daemon this run started (hack/images/ensure-docker.sh, or kind's own with
# KIND_NODE_IMAGE=local) is stopped at the end, as run.sh does, so that `make e2e-kind`
# leaves no daemon behind (the images stay in its data folder): stop_dockerd, phases.sh.
DOCKERD_PIDFILE=/var/run/docker.pid

if [[ "${KIND_NODE_IMAGE:-}" == local ]]; then
  # PATH (kind, kubectl, helm), KIND_NODE_IMAGE, DOCKER_HOST (kind's own dockerd: hack/kind/dockerd.sh)
  eval "$(hack/kind/build.sh --print-env)"
  docker info >/dev/null 2>&1 || KIND_DOCKERD_STARTED_HERE=1
  phase "node image" hack/kind/build.sh || exit $?
fi

for cmd in docker kind kubectl helm; do
  command -v "$cmd" >/dev/null || { say "$cmd missing"; exit 2; }
done
[[ -x "$PYTEST" ]] || { say "$PYTEST missing: run \`make test\` once (it creates .venv)"; exit 2; }

docker info >/dev/null 2>&1 || DOCKERD_STARTED_HERE=1
phase "docker" hack/images/ensure-docker.sh || exit $?
create=(kind create cluster --name "$KIND_CLUSTER" --kubeconfig "$KUBECONFIG" --wait 180s)
[[ -n "${KIND_NODE_IMAGE:-}" ]] && create+=(--image "$KIND_NODE_IMAGE")
CLUSTER_CREATED=1   # from here on, a failure exports its logs and deletes it
phase "cluster up" "${create[@]}" || exit $?
say "node Ready: $(kubectl get nodes -o jsonpath='{range .items[*]}{.metadata.name}={.status.conditions[?(@.type=="Ready")].status} {end}')"

phase "images build" hack/images/build.sh || exit $?
phase "images load" kind load docker-image --name "$KIND_CLUSTER" \
  "$MYSERVICE_E2E_GATEWAY_IMAGE" "$MYSERVICE_E2E_SERVICE_IMAGE" "$MYSERVICE_E2E_INTERPRETER_IMAGE" || exit $?

export MYSERVICE_E2E_KUBECTL=kubectl MYSERVICE_E2E_HELM=helm
# shellcheck disable=SC2086
phase "pytest" "$PYTEST" e2e -p no:cacheprovider -v -s -rA --durations=0 --color=yes \
  ${MYSERVICE_E2E_PYTEST_ARGS:-} "$@"
exit $?
