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
