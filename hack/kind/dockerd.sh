#!/usr/bin/env bash
# dockerd.sh - a docker daemon of kind's own on the development machine.
#
# Usage: hack/kind/dockerd.sh start|stop|status|--print-env|--help
#   start        start it unless it answers (idempotent); waits until `docker info` works
#   stop         stop it if this script started it (its pid file); its images stay
#   --print-env  print `export DOCKER_HOST=...` (hack/kind/build.sh --print-env includes it)
#
# Why not the daemon hack/images/ensure-docker.sh starts:
#   * kind's nodes are `docker run --privileged` containers; docker 20.10 gives those every
#     capability the kernel knows, and root's bounding set here lacks CAP_SYS_RESOURCE, so
#     runc refuses them (`unable to apply caps: operation not permitted`). This daemon's
#     runtime is runc-bounded-caps.sh: runc minus the capabilities root cannot hold.
#   * that daemon is shared (others' image builds start and stop it); a kind cluster in
#     it would die with it.
# Everything else is as ensure-docker.sh starts dockerd: Debian's docker 20.10, no
# iptables/ip_forward changes on the host (so the local cluster beside it is untouched),
# its own supervised containerd; plus: its own socket, data, exec root and pid file, no
# docker0 bridge, and networks from $MYSERVICE_KIND_DOCKER_POOL (kind's network: a /24 of it).
#
# Environment:
#   MYSERVICE_KIND_DOCKER_STATE   state folder (default /var/lib/myservice-kind-docker):
#                                 data-root, daemon log, the runtime wrapper's copy
#   MYSERVICE_KIND_DOCKER_RUN     run folder (default /run/myservice-kind-docker): socket, pid, exec root
#   MYSERVICE_KIND_DOCKER_POOL    its networks' address pool (default 172.30.0.0/16; a second
#                                 daemon beside it needs another)
#   MYSERVICE_DOCKER_TIMEOUT      seconds to wait for it (default 90)
set -euo pipefail

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
STATE=${MYSERVICE_KIND_DOCKER_STATE:-/var/lib/myservice-kind-docker}
RUN=${MYSERVICE_KIND_DOCKER_RUN:-/run/myservice-kind-docker}
SOCK="$RUN/docker.sock" PIDFILE="$RUN/docker.pid"
TIMEOUT=${MYSERVICE_DOCKER_TIMEOUT:-90}
POOL=${MYSERVICE_KIND_DOCKER_POOL:-172.30.0.0/16}
export DOCKER_HOST="unix://$SOCK"
DOCKER=/usr/bin/docker; [[ -x $DOCKER ]] || DOCKER=docker
log() { printf '[kind-dockerd %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

start() {
  if "$DOCKER" info >/dev/null 2>&1; then log "kind's dockerd answers at $SOCK"; return 0; fi
  [[ $EUID -eq 0 ]] || { log "must run as root"; exit 2; }
  if [[ ! -x /usr/sbin/dockerd ]]; then   # as ensure-docker.sh installs it: Debian's docker.io
    log "installing docker.io with apt-get"
    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
      docker.io iptables ca-certificates
  fi
  mkdir -p "$STATE/data" "$RUN"
  # The daemon runs the copy, so that a work tree removed meanwhile does not break it.
  install -m 0755 "$HERE/runc-bounded-caps.sh" "$STATE/runc-bounded-caps"
  echo '{}' >"$STATE/daemon.json"
  rm -f "$PIDFILE"
  log "starting dockerd (socket $SOCK, data $STATE/data, log $STATE/dockerd.log)"
  setsid nohup /usr/sbin/dockerd \
      --config-file "$STATE/daemon.json" \
      --host "$DOCKER_HOST" --pidfile "$PIDFILE" \
      --data-root "$STATE/data" --exec-root "$RUN/exec" \
      --bridge none --iptables=false --ip-forward=false --ip-masq=false \
      --default-address-pool "base=$POOL,size=24" \
      --add-runtime "bounded-caps=$STATE/runc-bounded-caps" --default-runtime bounded-caps \
      >>"$STATE/dockerd.log" 2>&1 </dev/null 8>&- 9>&- &
  local bg=$! t0=$SECONDS
  until "$DOCKER" info >/dev/null 2>&1; do
    if ((SECONDS - t0 >= TIMEOUT)) || ! kill -0 "$bg" 2>/dev/null; then
      log "dockerd did not come up; last lines of $STATE/dockerd.log:"; tail -n 30 "$STATE/dockerd.log" >&2; exit 1
    fi
    sleep 1
  done
  log "ready after $((SECONDS - t0))s: $("$DOCKER" info -f '{{.ServerVersion}} runtime={{.DefaultRuntime}} cgroup={{.CgroupDriver}} v{{.CgroupVersion}}')"
}

stop() {
  local pid
  pid=$(cat "$PIDFILE" 2>/dev/null) || { log "no pid file: not running (or not started by this script)"; return 0; }
  kill -TERM "$pid" 2>/dev/null || { log "dockerd $pid already gone"; return 0; }
  for _ in $(seq 1 60); do
    kill -0 "$pid" 2>/dev/null || { log "dockerd $pid stopped"; return 0; }
    sleep 0.5
  done
  log "dockerd $pid did not stop within 30s: SIGKILL"; kill -KILL "$pid" 2>/dev/null || true; return 1
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) "$DOCKER" info -f '{{.ServerVersion}} {{.DefaultRuntime}}' ;;
  --print-env) printf 'export DOCKER_HOST=%q\n' "$DOCKER_HOST" ;;
  -h|--help) usage ;;
  *) usage >&2; exit 2 ;;
esac
