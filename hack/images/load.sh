#!/usr/bin/env bash
# load.sh — copy local Docker images into a containerd for Kubernetes (no registry).
#
# Usage: hack/images/load.sh --address SOCKET [--namespace NS] [--snapshotter NAME] [IMAGE...]
#
# `docker save`s the images (one archive, shared layers once) and imports them
# with `ctr --address SOCKET -n k8s.io images import`, where the kubelet's CRI
# finds them. Images default to $MYSERVICE_GATEWAY_IMAGE, $MYSERVICE_SERVICE_IMAGE
# and $MYSERVICE_INTERPRETER_IMAGE (myservice-gateway:dev, myservice-service:dev,
# myservice-interpreter:dev: the interpreter example, e2e check 19).
#
# Names: a short name is normalised the Docker way, both by the import and by
# the kubelet: `myservice-service:dev` is stored as
# docker.io/library/myservice-service:dev, which is what a pod with
# `image: myservice-service:dev` resolves to. Pods must use
# imagePullPolicy: Never (or IfNotPresent) — there is no registry to pull from.
# After the import each image is checked to be in the namespace under that name
# with the same image (config) digest docker has.
#
# Options:
#   --address SOCKET     containerd socket (default $MYSERVICE_CONTAINERD_ADDRESS; required)
#   --namespace NS       containerd namespace (default $MYSERVICE_CONTAINERD_NAMESPACE or k8s.io)
#   --snapshotter NAME   snapshotter to unpack for (default $MYSERVICE_CONTAINERD_SNAPSHOTTER,
#                        else containerd's default, overlayfs)
#   --force              import even when the same image is already there
#   -h, --help           this text
#
# Environment: CTR (ctr binary, default ctr), DOCKER (default /usr/bin/docker).
set -euo pipefail

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }

ADDRESS=${MYSERVICE_CONTAINERD_ADDRESS:-}
NAMESPACE=${MYSERVICE_CONTAINERD_NAMESPACE:-k8s.io}
SNAPSHOTTER=${MYSERVICE_CONTAINERD_SNAPSHOTTER:-}
FORCE=0
IMAGES=()
while [ $# -gt 0 ]; do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --address) ADDRESS=${2:?--address needs a socket}; shift ;;
    --address=*) ADDRESS=${1#--address=} ;;
    --namespace|-n) NAMESPACE=${2:?}; shift ;;
    --snapshotter) SNAPSHOTTER=${2:?}; shift ;;
    --force) FORCE=1 ;;
    -*) echo "unknown option: $1" >&2; usage >&2; exit 2 ;;
    *) IMAGES+=("$1") ;;
  esac
  shift
done
[ -n "$ADDRESS" ] || { echo "load.sh: --address SOCKET (or MYSERVICE_CONTAINERD_ADDRESS) is required" >&2; usage >&2; exit 2; }
ADDRESS=${ADDRESS#unix://}
[ -S "$ADDRESS" ] || { echo "load.sh: no socket at $ADDRESS" >&2; exit 1; }
[ ${#IMAGES[@]} -gt 0 ] || IMAGES=("${MYSERVICE_GATEWAY_IMAGE:-myservice-gateway:dev}" "${MYSERVICE_SERVICE_IMAGE:-myservice-service:dev}"
                                  "${MYSERVICE_INTERPRETER_IMAGE:-myservice-interpreter:dev}")

CTR=${CTR:-ctr}
if [ -z "${DOCKER:-}" ]; then
  if [ -x /usr/bin/docker ]; then DOCKER=/usr/bin/docker; else DOCKER=docker; fi
fi
ctr_() { "$CTR" --address "$ADDRESS" --namespace "$NAMESPACE" "$@"; }
T0=$SECONDS
log() { printf '[load %s +%ss] %s\n' "$(date -u +%H:%M:%S)" "$((SECONDS - T0))" "$*" >&2; }

# The name containerd and the kubelet give a Docker-style short reference.
normalise() {
  local ref=$1 first=${1%%/*}
  if [[ "$ref" != */* ]]; then ref=docker.io/library/$ref
  elif [[ "$first" != *.* && "$first" != *:* && "$first" != localhost ]]; then ref=docker.io/$ref
  fi
  [[ "${ref##*/}" == *[:@]* ]] || ref=$ref:latest
  printf '%s\n' "$ref"
}

ctr_ version >/dev/null || { echo "load.sh: containerd at $ADDRESS does not answer" >&2; exit 1; }

# Config digest (= docker's image ID) of an image in containerd, if present.
ctr_config_digest() {
  local manifest
  manifest=$(ctr_ images ls "name==$1" 2>/dev/null | awk 'NR>1 {print $3}')
  [ -n "$manifest" ] || return 0
  ctr_ content get "$manifest" 2>/dev/null \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["config"]["digest"])' 2>/dev/null || true
}

todo=()
for img in "${IMAGES[@]}"; do
  id=$("$DOCKER" image inspect -f '{{.Id}}' "$img" 2>/dev/null) || { echo "load.sh: no docker image $img (run hack/images/build.sh)" >&2; exit 1; }
  ref=$(normalise "$img")
  if [ "$FORCE" = 0 ] && [ "$(ctr_config_digest "$ref")" = "$id" ]; then
    log "$ref already loaded (${id:7:12})"
  else
    todo+=("$img")
  fi
done

if [ ${#todo[@]} -gt 0 ]; then
  log "docker save ${todo[*]} | ctr --address $ADDRESS -n $NAMESPACE images import"
  args=()
  [ -z "$SNAPSHOTTER" ] || args+=(--snapshotter "$SNAPSHOTTER")
  "$DOCKER" save "${todo[@]}" | ctr_ images import "${args[@]}" - >&2
fi

# Verify: each image under the name pods resolve to, same image as docker's.
fail=0
for img in "${IMAGES[@]}"; do
  ref=$(normalise "$img")
  want=$("$DOCKER" image inspect -f '{{.Id}}' "$img")
  got=$(ctr_config_digest "$ref")
  if [ "$got" = "$want" ]; then
    log "ok  $img -> $ref (${want:7:12})"
  else
    log "FAIL $img: $ref in $NAMESPACE has config ${got:-<missing>}, docker has $want"; fail=1
  fi
done
log "done in $((SECONDS - T0))s"
exit "$fail"
