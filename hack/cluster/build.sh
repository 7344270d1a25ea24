#!/usr/bin/env bash
# build.sh - build the e2e cluster's Kubernetes binaries from source (Go module proxy).
#
# Usage: hack/cluster/build.sh [--help] [component...]
#   components: helm etcd kube crictl images coredns
#               kube   = kube-apiserver kube-controller-manager kube-scheduler
#                        kubelet kube-proxy kubectl, built in ONE `go build`
#               crictl = CRI CLI (sigs.k8s.io/cri-tools), for debugging/cleanup
#               images = local images (docker-archive tars, never pulled):
#                        registry.k8s.io/pause:3.10 (static C pause) and
#                        myservice-e2e/probe:v1 (static Go smoke probe)
#               coredns = cluster DNS (only the plugins we use) + its image
#               kube-network-policies = the NetworkPolicy agent (kind's), patched
#                        (patches/kube-network-policies-<version>.patch)
#               kwok   = the kwok controller (fake nodes and pods) for `make scale`;
#                        not in the default set: only bench/scale/run.sh needs it
#   default:    helm images etcd kube crictl coredns kube-network-policies
#               (helm first: others need it early)
#   Individual kube binaries may be named too (e.g. `build.sh kubelet`); any kube
#   binary missing triggers the shared `kube` build.
#
# Output: ${MYSERVICE_CACHE:-/var/cache/myservice}/k8s/<K8S_VERSION>/bin/
#         stable symlinks ${MYSERVICE_CACHE}/bin/{helm,kubectl}
# A binary that already exists is not rebuilt (delete it to force a rebuild).
#
# Pinned releases and why:
#   Kubernetes v1.34.4 - this machine is cgroup v1 (hybrid) with Debian bookworm's
#       containerd 1.6.20 (CRI v1 only; no RuntimeConfig RPC). 1.34 runs on cgroup v1
#       with `failCgroupV1: false` and still supports containerd 1.x: the kubelet
#       falls back to the configured cgroupDriver when containerd 1.6 answers
#       RuntimeConfig with Unimplemented. 1.35 makes the kubelet refuse cgroup v1 by
#       default and is the LAST release for containerd 1.x; 1.36+ needs containerd 2.
#       So 1.34 (latest patch served: v1.34.4) is the newest line that is not at the
#       edge of both deprecations. The machine's kubectl (1.32) is outside the +-1
#       skew, so kubectl v1.34.4 is built too.
#   etcd v3.6.16     - the etcd 3.6 line is what Kubernetes 1.34 ships/tests with.
#   crictl v1.34.0   - cri-tools matching the Kubernetes minor.
#   CoreDNS v1.12.4  - the 1.12 line kubeadm 1.34 deploys; built with an external main
#                      importing only errors/health/ready/kubernetes/cache/loadbalance.
#   helm v3.22.0     - latest helm 3 served by the module proxy; supports k8s 1.34.
#   kube-network-policies v0.8.0 - the NetworkPolicy agent kind runs (nftables +
#                      nfqueue, no CNI of its own: it works with the bridge plugin).
#                      Two small patches (see the patch file): a --kubeconfig flag
#                      (upstream only has the in-cluster config) and nft_compat's
#                      NFQUEUE target for kernels without CONFIG_NFT_QUEUE (this VM).
#   kwok v0.8.0      - sigs.k8s.io/kwok, for the scale test (bench/scale/): fake nodes
#                      whose pods it marks Running/Ready, so 10,000 instance pods
#                      cost the API server and the operator what real ones do and
#                      the machine nothing. Built from the module's own source (its
#                      go.mod and go.sum), stamped with its version.
#
# Environment:
#   MYSERVICE_CACHE  cache root (default /var/cache/myservice); nothing is written
#                    in the repo.
#   MYSERVICE_GOCACHE Go module + build caches (default /var/tmp/myservice-e2e-go:
#                    {mod,build}); kept apart from MYSERVICE_CACHE so that a wiped
#                    cache root is rebuilt in ~1 min (mostly linking), not ~12 min.
set -euo pipefail

K8S_VERSION="${K8S_VERSION:-v1.34.4}"
ETCD_VERSION="${ETCD_VERSION:-v3.6.16}"
CRICTL_VERSION="${CRICTL_VERSION:-v1.34.0}"
COREDNS_VERSION="${COREDNS_VERSION:-v1.12.4}"
COREDNS_IMAGE="myservice-e2e/coredns:${COREDNS_VERSION}"
PAUSE_IMAGE="registry.k8s.io/pause:3.10"
PROBE_IMAGE="myservice-e2e/probe:v1"
HELM_VERSION="${HELM_VERSION:-v3.22.0}"
NETPOL_VERSION="${NETPOL_VERSION:-v0.8.0}"
KWOK_VERSION="${KWOK_VERSION:-v0.8.0}"

KUBE_BINS=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl)

if [[ "${1:-}" == "--help" || "${1:-}" == "-h" ]]; then
  sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
  exit 0
fi

CLUSTER_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE="${MYSERVICE_CACHE:-/var/cache/myservice}"
VDIR="$CACHE/k8s/$K8S_VERSION"
BIN="$VDIR/bin"
SRC="$VDIR/src"
mkdir -p "$BIN" "$SRC" "$CACHE/bin"
# One build at a time per cache: two runs at once (make test beside make e2e) would
# write the same .tmp files and move each other's half-built binaries away.
exec 9>"$CACHE/.build.lock"
flock 9

export PATH="/usr/local/go/bin:$PATH"
GOCACHE_ROOT="${MYSERVICE_GOCACHE:-/var/tmp/myservice-e2e-go}"
export GOMODCACHE="$GOCACHE_ROOT/mod"
export GOCACHE="$GOCACHE_ROOT/build"
export GOFLAGS="-mod=mod -buildvcs=false"
export GOTOOLCHAIN=local
# GOPROXY: the Go toolchain's own setting (go env GOPROXY) is used as it is.
export CGO_ENABLED=0

log() { printf '[build %s] %s\n' "$(date +%H:%M:%S)" "$*"; }

# build_timed NAME CMD... : run a build step, print how long it took
build_timed() {
  local name="$1"; shift
  local t0=$SECONDS
  log "building $name ..."
  "$@"
  log "built $name in $((SECONDS - t0))s"
}

# go_tool NAME MODULE VERSION PACKAGE [LDFLAGS]: `go build` PACKAGE of MODULE@VERSION
# into $BIN/NAME, in its own throwaway module; nothing to do when it is there.
go_tool() {
  local name="$1" module="$2" version="$3" package="$4" ldflags="-s -w ${5:-}"
  if [[ -x "$BIN/$name" ]]; then log "$name $version already built"; return; fi
  local d="$SRC/$name"; mkdir -p "$d"
  ( cd "$d"
    [[ -f go.mod ]] || go mod init "myservice-e2e/${name}build" >/dev/null 2>&1
    go get "$module@$version"
    go build -trimpath -o "$BIN/$name.tmp" -ldflags "$ldflags" "$package"
    mv "$BIN/$name.tmp" "$BIN/$name" )
}

build_helm() {
  go_tool helm helm.sh/helm/v3 "$HELM_VERSION" helm.sh/helm/v3/cmd/helm \
    "-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
  ln -sfn "$BIN/helm" "$CACHE/bin/helm"
}

build_etcd() {
  go_tool etcd go.etcd.io/etcd/server/v3 "$ETCD_VERSION" go.etcd.io/etcd/server/v3
}

build_crictl() {
  go_tool crictl sigs.k8s.io/cri-tools "$CRICTL_VERSION" sigs.k8s.io/cri-tools/cmd/crictl \
    "-X sigs.k8s.io/cri-tools/pkg/version.Version=$CRICTL_VERSION"
}

# CoreDNS with a minimal plugin set (the documented "external main" way), and its image.
build_coredns() {
  local d="$SRC/coredns" img="$VDIR/images"
  if [[ ! -x "$BIN/coredns" ]]; then
    mkdir -p "$d"
    ( cd "$d"
      [[ -f go.mod ]] || go mod init myservice-e2e/corednsbuild >/dev/null 2>&1
      cat > main.go <<'EOF'
// Generated by hack/cluster/build.sh: CoreDNS with the plugins the e2e cluster uses.
package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"
	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/loadbalance"
	_ "github.com/coredns/coredns/plugin/ready"
)

func init() {
	dnsserver.Directives = []string{"errors", "health", "ready", "cache", "loadbalance", "kubernetes"}
}

func main() { coremain.Run() }
EOF
      go get "github.com/coredns/coredns@$COREDNS_VERSION"
      go build -trimpath -o "$BIN/coredns.tmp" -ldflags "-s -w" .
      mv "$BIN/coredns.tmp" "$BIN/coredns" )
  fi
  if [[ ! -f "$img/coredns.tar" || "$BIN/coredns" -nt "$img/coredns.tar" ]]; then
    local r; r="$(mktemp -d)"; mkdir -p "$img"
    cp "$BIN/coredns" "$r/coredns"
    "$CLUSTER_DIR/mkimage.sh" "$COREDNS_IMAGE" "$img/coredns.tar" "$r" /coredns
    rm -rf "$r"
  fi
}

# The NetworkPolicy agent: the module's source at NETPOL_VERSION with our patch, built
# in place. Cached by version and patch: a stamp beside the binary names both.
# A writable copy of MODULE@VERSION's source tree in DIR (from the Go module proxy;
# the module cache itself is read-only), for builds inside the module's own tree.
module_source() {
  local module="$1" version="$2" dir="$3" upstream
  upstream="$(go mod download -json "$module@$version" | sed -n 's/^\s*"Dir": "\(.*\)",$/\1/p')"
  [[ -d "$upstream" ]] || { log "cannot download $module@$version"; exit 1; }
  rm -rf "$dir"; mkdir -p "$dir"
  cp -r "$upstream/." "$dir/"; chmod -R u+w "$dir"
}

build_netpol() {
  local name=kube-network-policies module=sigs.k8s.io/kube-network-policies
  local patch="$CLUSTER_DIR/patches/$name-$NETPOL_VERSION.patch" stamp
  [[ -f "$patch" ]] || { log "no patch $patch for $name $NETPOL_VERSION"; exit 1; }
  stamp="$NETPOL_VERSION $(sha256sum "$patch" | cut -c1-16)"
  if [[ -x "$BIN/$name" && "$(cat "$BIN/$name.version" 2>/dev/null)" == "$stamp" ]]; then
    log "$name $NETPOL_VERSION already built"; return
  fi
  local d="$SRC/$name"
  module_source "$module" "$NETPOL_VERSION" "$d"
  ( cd "$d"
    patch -p1 --forward --quiet <"$patch"
    go build -trimpath -o "$BIN/$name.tmp" -ldflags "-s -w" ./cmd
    mv "$BIN/$name.tmp" "$BIN/$name" )
  echo "$stamp" >"$BIN/$name.version"
  rm -rf "$d"
}

# The kwok controller, built in the module's source tree (its go.sum pins every
# dependency); cached by version: a stamp beside the binary names it. Beside it,
# $name.stages.yaml: the stages kwokctl gives a cluster by default (node-initialize,
# node-heartbeat-with-lease, pod-ready/-complete/-delete), taken from the same source.
build_kwok() {
  local name=kwok module=sigs.k8s.io/kwok
  if [[ -x "$BIN/$name" && -f "$BIN/$name.stages.yaml" &&
        "$(cat "$BIN/$name.version" 2>/dev/null)" == "$KWOK_VERSION" ]]; then
    log "$name $KWOK_VERSION already built"; return
  fi
  local d="$SRC/$name"
  module_source "$module" "$KWOK_VERSION" "$d"
  ( cd "$d"
    go build -trimpath -o "$BIN/$name.tmp" \
      -ldflags "-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=${KWOK_VERSION#v}" ./cmd/kwok
    mv "$BIN/$name.tmp" "$BIN/$name"
    local f
    for f in node/fast/node-initialize node/heartbeat-with-lease/node-heartbeat-with-lease \
             pod/fast/pod-ready pod/fast/pod-complete pod/fast/pod-delete; do
      echo "---"; cat "kustomize/stage/$f.yaml"
    done >"$BIN/$name.stages.yaml" )
  echo "$KWOK_VERSION" >"$BIN/$name.version"
  rm -rf "$d"
}

# Local images as docker-archive tars in $VDIR/images (rebuilt when sources change).
build_images() {
  local here="$CLUSTER_DIR" img="$VDIR/images" r
  mkdir -p "$img"
  if [[ ! -f "$img/pause.tar" || "$here/images/pause/pause.c" -nt "$img/pause.tar" ]]; then
    r="$(mktemp -d)"
    gcc -static -O2 -s -o "$r/pause" "$here/images/pause/pause.c"
    "$here/mkimage.sh" "$PAUSE_IMAGE" "$img/pause.tar" "$r" /pause
    rm -rf "$r"
  else log "pause image up to date"; fi
  if [[ ! -f "$img/probe.tar" || "$here/images/probe/main.go" -nt "$img/probe.tar" ]]; then
    r="$(mktemp -d)"
    ( cd "$here/images/probe" && GO111MODULE=off GOFLAGS='' go build -trimpath -ldflags "-s -w" -o "$r/probe" main.go )
    "$here/mkimage.sh" "$PROBE_IMAGE" "$img/probe.tar" "$r" /probe
    rm -rf "$r"
  else log "probe image up to date"; fi
}

# Temporary module requiring k8s.io/kubernetes with every staging module
# (k8s.io/* => ./staging/src/...) replaced by its published v0.X.Y twin.
kube_module() {
  local d="$SRC/kube" stage="v0.${K8S_VERSION#v1.}"
  mkdir -p "$d"
  [[ -f "$d/go.mod" ]] && return 0
  local gomod
  gomod="$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/^\s*"GoMod": "\(.*\)",$/\1/p')"
  [[ -f "$gomod" ]] || { log "cannot download k8s.io/kubernetes@$K8S_VERSION go.mod"; exit 1; }
  {
    echo "module myservice-e2e/kubebuild"
    echo
    echo "go 1.24.0"
    echo
    echo "require k8s.io/kubernetes $K8S_VERSION"
    echo
    echo "replace ("
    grep -E '^\s*k8s\.io/[^ ]+ => \./staging/' "$gomod" |
      awk -v v="$stage" '{print "\t" $1 " => " $1 " " v}'
    echo ")"
  } > "$d/go.mod.tmp"
  mv "$d/go.mod.tmp" "$d/go.mod"
}

build_kube() {
  local missing=() b
  for b in "${KUBE_BINS[@]}"; do [[ -x "$BIN/$b" ]] || missing+=("$b"); done
  if ((${#missing[@]} == 0)); then log "kube binaries $K8S_VERSION already built"; else
    kube_module
    local minor="${K8S_VERSION#v1.}"; minor="${minor%%.*}"
    local vpkg ldf="-s -w"
    for vpkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
      ldf+=" -X $vpkg.gitVersion=$K8S_VERSION -X $vpkg.gitMajor=1 -X $vpkg.gitMinor=$minor"
      ldf+=" -X $vpkg.gitTreeState=clean -X $vpkg.buildDate=1970-01-01T00:00:00Z"
    done
    local pkgs=()
    for b in "${missing[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$b"); done
    log "resolving modules for ${missing[*]}"
    ( cd "$SRC/kube"
      go get "k8s.io/kubernetes@$K8S_VERSION"
      local tmp="$BIN/.tmp"; rm -rf "$tmp"; mkdir -p "$tmp"
      go build -trimpath -ldflags "$ldf" -o "$tmp/" "${pkgs[@]}"
      mv "$tmp"/* "$BIN/"; rmdir "$tmp" )
  fi
  ln -sfn "$BIN/kubectl" "$CACHE/bin/kubectl"
}

comps=("$@")
((${#comps[@]})) || comps=(helm images etcd kube crictl coredns kube-network-policies)
kube_done=0
for c in "${comps[@]}"; do
  case "$c" in
    helm) build_timed "helm $HELM_VERSION" build_helm ;;
    etcd) build_timed "etcd $ETCD_VERSION" build_etcd ;;
    crictl) build_timed "crictl $CRICTL_VERSION" build_crictl ;;
    images) build_timed "images ($PAUSE_IMAGE $PROBE_IMAGE)" build_images ;;
    coredns) build_timed "coredns $COREDNS_VERSION (+ image $COREDNS_IMAGE)" build_coredns ;;
    kube-network-policies) build_timed "kube-network-policies $NETPOL_VERSION" build_netpol ;;
    kwok) build_timed "kwok $KWOK_VERSION" build_kwok ;;
    kube|kube-apiserver|kube-controller-manager|kube-scheduler|kubelet|kube-proxy|kubectl)
      ((kube_done)) || build_timed "kube $K8S_VERSION (${KUBE_BINS[*]})" build_kube
      kube_done=1 ;;
    *) echo "unknown component: $c (see --help)" >&2; exit 2 ;;
  esac
done
log "binaries in $BIN:"
find "$BIN" -maxdepth 1 -type f -printf '  %f\t%s bytes\t%TY-%Tm-%Td %TH:%TM\n' | sort
