# phases.sh - what run.sh and kind.sh share, so that the two paths stay identical:
# the repo root as working directory, the log folder, and `phase`, which runs one
# step with its output shown and logged and records its time for the summary.
# Sourced, not run; the caller sets PHASES_TAG (its name, for the log prefix).
# shellcheck shell=bash

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO" || exit 2
LOG_DIR=${MYSERVICE_E2E_LOG_DIR:-/tmp/myservice-e2e-logs}
mkdir -p "$LOG_DIR"
T0=$SECONDS
SUMMARY=()
PYTEST=${MYSERVICE_E2E_PYTEST:-$REPO/.venv/bin/pytest}

say() { printf '[%s %s +%4ds] %s\n' "${PHASES_TAG:-e2e}" "$(date -u +%H:%M:%S)" "$((SECONDS - T0))" "$*"; }

# phase NAME CMD...: run CMD with its output shown and logged; record its time
phase() {
  local name="$1" t=$SECONDS rc; shift
  say "==> $name: $*"
  "$@" 2>&1 | tee "$LOG_DIR/${name// /_}.log"
  rc=${PIPESTATUS[0]}
  SUMMARY+=("$(printf '%-14s %5ds  %s' "$name" "$((SECONDS - t))" "$([[ $rc == 0 ]] && echo ok || echo "FAILED ($rc)")")")
  say "<== $name: $([[ $rc == 0 ]] && echo ok || echo "FAILED (exit $rc)") in $((SECONDS - t))s"
  return "$rc"
}

# Stop the docker daemon whose pid is in $DOCKERD_PIDFILE (default /var/run/docker.pid): for
# the scripts that started one for their image builds and leave no daemon behind.
# shellcheck disable=SC2317  # invoked from the scripts' EXIT traps
stop_dockerd() {
  local pid pidfile=${DOCKERD_PIDFILE:-/var/run/docker.pid}
  pid=$(cat "$pidfile" 2>/dev/null) || { say "dockerd: no pid file, nothing to stop"; return 0; }
  kill -TERM "$pid" 2>/dev/null || return 0
  for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || { say "dockerd (pid $pid) stopped"; return 0; }; sleep 0.5; done
  say "dockerd (pid $pid) did not stop within 30s: SIGKILL"; kill -KILL "$pid" 2>/dev/null; return 1
}
