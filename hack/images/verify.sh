#!/usr/bin/env bash
# verify.sh — run the built images with docker and talk gRPC to them.
#
# Usage: hack/images/verify.sh [--port PORT] [--help]
#
# 1. `docker run -d -p 127.0.0.1:PORT:50051 $MYSERVICE_SERVICE_IMAGE` (the instance,
#    read-only root file system, all capabilities dropped, as its image user);
# 2. a small Python gRPC client (verify_client.py) calls 127.0.0.1:PORT: health
#    check, MyServiceEcho with a session-id, MyServiceEchoStream, then
#    MyServiceShutdown — after which the instance must exit 0 by itself. The
#    client runs from the gateway image (--network host), so the host needs no grpcio;
# 3. checks both images run as uid 10001 and `--help` of the entry points.
#
# Options: --port PORT  host port to publish on 127.0.0.1 (default 50051)
# Environment: MYSERVICE_SERVICE_IMAGE, MYSERVICE_GATEWAY_IMAGE, DOCKER.
set -euo pipefail

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PORT=50051
while [ $# -gt 0 ]; do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --port) PORT=${2:?}; shift ;;
    *) echo "unknown argument: $1" >&2; usage >&2; exit 2 ;;
  esac
  shift
done
SERVICE=${MYSERVICE_SERVICE_IMAGE:-myservice-service:dev}
GATEWAY=${MYSERVICE_GATEWAY_IMAGE:-myservice-gateway:dev}
if [ -z "${DOCKER:-}" ]; then
  if [ -x /usr/bin/docker ]; then DOCKER=/usr/bin/docker; else DOCKER=docker; fi
fi
log() { printf '[verify %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

name=myservice-verify-$$
cleanup() { "$DOCKER" rm -f "$name" >/dev/null 2>&1 || true; }
trap cleanup EXIT

for img in "$SERVICE" "$GATEWAY"; do
  uid=$("$DOCKER" run --rm --entrypoint id "$img" -u)
  [ "$uid" = 10001 ] || { log "FAIL $img runs as uid $uid"; exit 1; }
  log "ok   $img runs as uid $uid"
done

log "starting $SERVICE on 127.0.0.1:$PORT"
"$DOCKER" run -d --name "$name" -p "127.0.0.1:$PORT:50051" \
  --read-only --cap-drop ALL --security-opt no-new-privileges -e POD_NAME=verify-pod \
  "$SERVICE" >/dev/null

"$DOCKER" run --rm -i --network host --entrypoint python "$GATEWAY" - "$PORT" <"$HERE/verify_client.py"

# After Shutdown the instance exits 0 on its own.
code=$(timeout 30 "$DOCKER" wait "$name" || echo timeout)
if [ "$code" != 0 ]; then
  log "FAIL instance exit status after Shutdown: $code"; "$DOCKER" logs "$name" 2>&1 | tail -n 20 >&2; exit 1
fi
log "ok   instance exited 0 after MyServiceShutdown"

"$DOCKER" run --rm "$GATEWAY" --help >/dev/null && log "ok   $GATEWAY --help"
"$DOCKER" run --rm "$SERVICE" instance --help >/dev/null && log "ok   $SERVICE instance --help"
log "all good"
