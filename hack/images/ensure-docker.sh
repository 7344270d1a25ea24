#!/usr/bin/env bash
# ensure-docker.sh — make sure a local Docker daemon answers.
#
# Usage: hack/images/ensure-docker.sh [--help]
#
# Idempotent. It
#   1. installs Debian's docker.io (and debootstrap, used by base.sh) with apt
#      when they are missing;
#   2. starts dockerd in the background when no daemon answers on the docker
#      socket (log: $MYSERVICE_DOCKER_STATE/dockerd.log, pid: /var/run/docker.pid);
#   3. waits until `docker info` works (up to $MYSERVICE_DOCKER_TIMEOUT s, default 90).
#
# dockerd is started without touching iptables or ip_forward (see below) and
# with its own supervised containerd (socket under
# /run/docker/containerd/). Another containerd — e.g. the e2e cluster's own,
# at its own socket — is left alone. Only when a containerd listens at the
# *default* address /run/containerd/containerd.sock does dockerd use that one
# (in its own "moby" namespace), which does not disturb it either.
#
# Environment:
#   DOCKER                    docker client to use (default: /usr/bin/docker, Debian's,
#                             matching the daemon; falls back to `docker` on PATH)
#   MYSERVICE_DOCKER_STATE    where the dockerd log lives (default /var/lib/myservice-images)
#   MYSERVICE_DOCKER_TIMEOUT  seconds to wait for the daemon (default 90)
set -euo pipefail

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }
case "${1:-}" in -h|--help) usage; exit 0 ;; "") ;; *) echo "unknown argument: $1" >&2; usage >&2; exit 2 ;; esac

STATE=${MYSERVICE_DOCKER_STATE:-/var/lib/myservice-images}
TIMEOUT=${MYSERVICE_DOCKER_TIMEOUT:-90}
log() { printf '[ensure-docker %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# 1. packages -----------------------------------------------------------------
missing=()
[ -x /usr/sbin/dockerd ] || [ -x /usr/bin/dockerd ] || missing+=(docker.io)
command -v debootstrap >/dev/null 2>&1 || [ -x /usr/sbin/debootstrap ] || missing+=(debootstrap)
if [ ${#missing[@]} -gt 0 ]; then
  log "installing ${missing[*]} with apt-get"
  as_root apt-get update -q
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
    "${missing[@]}" iptables ca-certificates
fi

if [ -z "${DOCKER:-}" ]; then
  if [ -x /usr/bin/docker ]; then DOCKER=/usr/bin/docker; else DOCKER=docker; fi
fi

# 2. daemon -------------------------------------------------------------------
DOCKERD_PIDFILE=/var/run/docker.pid
if "$DOCKER" info >/dev/null 2>&1 && ! ip link show docker0 >/dev/null 2>&1 \
    && [ -f "$DOCKERD_PIDFILE" ] && kill -0 "$(cat "$DOCKERD_PIDFILE")" 2>/dev/null; then
  # Another dockerd started with `--bridge none` (kind's own, hack/kind/dockerd.sh) deletes the
  # host's docker0 as it starts; ours then answers but can run no build step. Its restart
  # makes docker0 again (nothing else uses this daemon between builds).
  log "the docker0 bridge is gone: restarting dockerd (pid $(cat "$DOCKERD_PIDFILE"))"
  pid=$(cat "$DOCKERD_PIDFILE")
  as_root kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  kill -0 "$pid" 2>/dev/null && as_root kill -KILL "$pid" 2>/dev/null
fi
if "$DOCKER" info >/dev/null 2>&1; then
  log "docker daemon already answers ($("$DOCKER" version -f '{{.Server.Version}}' 2>/dev/null))"
  exit 0
fi

bg_pid=
if [ -f "$DOCKERD_PIDFILE" ] && kill -0 "$(cat "$DOCKERD_PIDFILE")" 2>/dev/null; then
  log "dockerd (pid $(cat "$DOCKERD_PIDFILE")) is running but not answering yet; waiting"
else
  as_root mkdir -p "$STATE"
  # A stale pid file from a killed daemon stops dockerd from starting again.
  as_root rm -f "$DOCKERD_PIDFILE"
  log "starting dockerd (log: $STATE/dockerd.log, pid file: $DOCKERD_PIDFILE)"
  # setsid: the daemon must outlive this script and its caller's process group.
  # --iptables=false --ip-forward=false: dockerd leaves the host's firewall and
  # sysctls alone. With iptables on it sets the FORWARD policy to DROP, which
  # drops pod-to-pod traffic of a Kubernetes node on this machine (the e2e
  # cluster, br_netfilter). Builds need no network (wheels are local) and
  # `docker run -p 127.0.0.1:...` still works through docker-proxy.
  as_root setsid nohup /usr/sbin/dockerd \
      --host=unix:///var/run/docker.sock \
      --pidfile="$DOCKERD_PIDFILE" \
      --iptables=false --ip-forward=false \
      >>"$STATE/dockerd.log" 2>&1 </dev/null 8>&- 9>&- &
  # (8>&- 9>&-: the daemon outlives us and must not keep the lock files that
  # base.sh and build.sh hold on fds 8 and 9, or their next run waits forever.)
  bg_pid=$!
fi

# 3. wait ---------------------------------------------------------------------
start=$SECONDS
until "$DOCKER" info >/dev/null 2>&1; do
  if [ $((SECONDS - start)) -ge "$TIMEOUT" ]; then
    log "docker daemon did not answer within ${TIMEOUT}s; last lines of $STATE/dockerd.log:"
    tail -n 30 "$STATE/dockerd.log" >&2 || true
    exit 1
  fi
  if [ -n "$bg_pid" ] && ! kill -0 "$bg_pid" 2>/dev/null; then
    log "dockerd exited; last lines of $STATE/dockerd.log:"
    tail -n 30 "$STATE/dockerd.log" >&2 || true
    exit 1
  fi
  sleep 1
done
log "docker daemon ready after $((SECONDS - start))s: $("$DOCKER" info -f '{{.ServerVersion}} driver={{.Driver}} cgroup={{.CgroupDriver}}' 2>/dev/null)"
