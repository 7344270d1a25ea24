#!/usr/bin/env bash
# env.sh - paths of the e2e cluster (kubeconfig, binaries, containerd socket).
#
# Usage:  eval "$(hack/cluster/env.sh)"     # export into the current shell
#         source hack/cluster/env.sh         # same
#         hack/cluster/env.sh [--help]       # print the export lines
# Exports: KUBECONFIG, PATH (+ ${MYSERVICE_CACHE}/bin and the versioned bin dir:
# helm, kubectl, crictl, ...), MYSERVICE_E2E_STATE, MYSERVICE_E2E_CONTAINERD_SOCK,
# CONTAINER_RUNTIME_ENDPOINT (for crictl), MYSERVICE_CONTAINERD_ADDRESS (for
# hack/images/load.sh), MYSERVICE_HELM, MYSERVICE_KUBECTL.
_e2e_env() {
  # shellcheck source=SCRIPTDIR/lib.sh
  source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
  cat <<EOT
export KUBECONFIG="$KUBECONFIG_ADMIN"
export PATH="$CACHE/bin:$BIN:\$PATH"
export MYSERVICE_E2E_STATE="$STATE"
export MYSERVICE_E2E_CONTAINERD_SOCK="$CONTAINERD_SOCK"
export CONTAINER_RUNTIME_ENDPOINT="unix://$CONTAINERD_SOCK"
export MYSERVICE_CONTAINERD_ADDRESS="$CONTAINERD_SOCK"
export MYSERVICE_HELM="$BIN/helm"
export MYSERVICE_KUBECTL="$BIN/kubectl"
# import an image tar (docker-archive or OCI) into the cluster:
#   ctr --address $CONTAINERD_SOCK -n k8s.io images import IMAGE.tar
EOT
}
if [[ "${BASH_SOURCE[0]}" != "$0" ]]; then
  eval "$(bash "${BASH_SOURCE[0]}")"; unset -f _e2e_env
else
  set -euo pipefail
  if [[ "${1:-}" == "--help" || "${1:-}" == "-h" ]]; then
    sed -n '2,/^# e2e.images.load/p' "$0" | sed 's/^# \{0,1\}//'; exit 0
  fi
  _e2e_env
fi
