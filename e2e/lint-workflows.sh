#!/usr/bin/env bash
# lint-workflows.sh - actionlint (with shellcheck, when installed) over .github/workflows,
# and shellcheck over the e2e scripts and the toolchain's in hack/ and bench/scale/
# (hack/images/base.sh not yet: style notes only).
#
# Usage: e2e/lint-workflows.sh
# actionlint is built from the Go module proxy into $MYSERVICE_CACHE/bin when missing:
#   GOBIN=/var/cache/myservice/bin go install github.com/rhysd/actionlint/cmd/actionlint@v1.7.12
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=${MYSERVICE_CACHE:-/var/cache/myservice}/bin
ACTIONLINT=${ACTIONLINT:-$BIN/actionlint}
if [[ ! -x "$ACTIONLINT" ]]; then
  mkdir -p "$BIN"
  GOBIN=$BIN GOTOOLCHAIN=local PATH="/usr/local/go/bin:$PATH" go install github.com/rhysd/actionlint/cmd/actionlint@v1.7.12
fi
cd "$REPO"
"$ACTIONLINT" -version | head -n1
"$ACTIONLINT" .github/workflows/*.yml
if command -v shellcheck >/dev/null; then
  shellcheck -x e2e/run.sh e2e/kind.sh e2e/lint-workflows.sh hack/kind/build.sh hack/kind/dockerd.sh \
    hack/kind/runc-bounded-caps.sh hack/kind/kube-proxy-iptables-mode.sh hack/kind/base/restrict-oom-score-adj.sh \
    hack/cluster/*.sh hack/images/build.sh hack/images/ensure-docker.sh hack/images/load.sh hack/images/verify.sh \
    bench/scale/run.sh
else
  echo "shellcheck not installed: skipped (actionlint also checks run: blocks with it)"
fi
echo "workflows and e2e scripts: clean"
