#!/usr/bin/env bash
# build.sh - kind and a kind node image for Kubernetes v1.34.4, built on this machine
# from the same sources as the local cluster (no container registry is reachable here,
# so kind's published node image cannot be pulled).
#
# Usage: hack/kind/build.sh [--help] [--print-env]
#   --print-env   print `export PATH=<kind's folder>:<kubectl, helm>:$PATH KIND_NODE_IMAGE=<image>
#                 DOCKER_HOST=<kind's dockerd>` and exit (builds nothing); e2e/kind.sh evals it
#
# Steps (each timed; everything cached by version, a warm run only checks):
#   1. hack/cluster/build.sh helm kube crictl images kube-network-policies  (the local
#      cluster's binaries and pause image: reused, never rebuilt here)
#   2. kind $KIND_VERSION from its module's source (its go.sum), Go module proxy
#   3. kubeadm $K8S_VERSION (the one Kubernetes binary the local cluster does not use),
#      in a module like build.sh's kube module
#   4. the add-on binaries at the versions the node needs: etcd and CoreDNS at the tags
#      `kubeadm config images list` names, local-path-provisioner at kind's version
#   (docker: kind's own daemon, hack/kind/dockerd.sh, started if it is not running; the
#    images below live there)
#   5. the kind base image (Dockerfile.base): the debootstrapped Debian base
#      (hack/images/base.sh) + kind's files from the module cache + containerd at the
#      version kind's base image pins (built here) + Debian's systemd, runc, CNI plugins
#   6. the node's images, named exactly as kubeadm and kind's manifests name them:
#      kube-apiserver, -controller-manager, -scheduler, etcd, coredns, local-path-provisioner
#      (single-layer, hack/cluster/mkimage.sh); kube-proxy and the kindnetd stand-in
#      (Dockerfile.addons); local-path-helper (the Debian base); pause (the local cluster's)
#   7. `kind build node-image --type file` from a kubernetes-server-linux-amd64.tar.gz
#      layout (kubernetes/version, server/bin/{kubeadm,kubelet,kubectl,kube-*.tar})
#
# How no pull happens: kind imports each kube-*.tar of the layout whole and counts the
# tags it reads in it as built; it pulls (`ctr content fetch`) only the required images
# it did not see. So kube-proxy.tar carries the add-on images too (etcd, coredns, pause,
# kindnetd, local-path-*), with a `repositories` file first that names them all
# (archive_tags.py says why), and the one pull left is kind's `docker pull` of the base
# image, which it tolerates failing (~10 s of retries: the image is local).
#
# Pinned: kind v0.30.0 - the release whose own default node image is Kubernetes 1.34
#   (kindest/node:v1.34.0), the minor we build; v0.31 defaults to 1.35 (whose kubelet
#   refuses cgroup v1, this host's, unless told otherwise) and v0.32/v0.33 to 1.36/1.37
#   and warn that cgroup v1 support is going. Its node-image build accepts the release
#   tarball layout (--type file). The workflow (.github/workflows/e2e.yml) pins the same.
#
# Output:  ${MYSERVICE_CACHE:-/var/cache/myservice}/kind/
#            $KIND_VERSION/bin/kind, containerd-<v>/bin/{containerd,ctr,containerd-shim-runc-v2}
#            k8s-$K8S_VERSION/bin/{kubeadm,etcd-<v>,coredns-<v>,local-path-provisioner-<v>}
#            k8s-$K8S_VERSION/images/*.tar (single-layer images), server-<key>.tar.gz
#          docker images myservice-e2e/kind-base:<kind>-<key>,
#            myservice-e2e/kind-node:<k8s>-<key> and its stable tag $NODE_IMAGE
# Environment: MYSERVICE_CACHE, MYSERVICE_GOCACHE (as hack/cluster/build.sh), K8S_VERSION,
#   MYSERVICE_BASE_IMAGE (the Debian base, default myservice-base:bookworm), DOCKER
set -euo pipefail

KIND_VERSION=v0.30.0
K8S_VERSION="${K8S_VERSION:-v1.34.4}"
LOCAL_PATH_VERSION=v0.0.30   # rancher/local-path-provisioner: what kind v0.30.0's image is built from
NODE_IMAGE="myservice-e2e/kind-node:$K8S_VERSION"

if [[ "${1:-}" == "--help" || "${1:-}" == "-h" ]]; then
  sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0
fi

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
HACK="$(cd "$HERE/.." && pwd)"  # the cluster and image scripts beside this folder
CACHE="${MYSERVICE_CACHE:-/var/cache/myservice}"
KIND_BIN_DIR="$CACHE/kind/$KIND_VERSION/bin"
if [[ "${1:-}" == "--print-env" ]]; then
  # kind, then kubectl v1.34.4 and helm as hack/cluster/build.sh links them in $CACHE/bin
  # shellcheck disable=SC2016  # $PATH is for the eval
  printf 'export PATH=%q:%q:"$PATH" KIND_NODE_IMAGE=%q\n' "$KIND_BIN_DIR" "$CACHE/bin" "$NODE_IMAGE"
  "$HERE/dockerd.sh" --print-env; exit 0
fi
[[ $# -eq 0 ]] || { echo "unknown argument: $1 (see --help)" >&2; exit 2; }
# The images go to kind's own docker daemon (dockerd.sh says why).
eval "$("$HERE/dockerd.sh" --print-env)"

K8S_BIN="$CACHE/k8s/$K8S_VERSION/bin"          # hack/cluster/build.sh's
K8S_IMAGES="$CACHE/k8s/$K8S_VERSION/images"    # ... and its image tars (pause)
OUT="$CACHE/kind/k8s-$K8S_VERSION"
BIN="$OUT/bin" IMAGES="$OUT/images" SRC="$OUT/src"
mkdir -p "$KIND_BIN_DIR" "$BIN" "$IMAGES" "$SRC"
BASE_IMAGE="${MYSERVICE_BASE_IMAGE:-myservice-base:bookworm}"
if [[ -z "${DOCKER:-}" ]]; then
  if [[ -x /usr/bin/docker ]]; then DOCKER=/usr/bin/docker; else DOCKER=docker; fi
fi

export PATH="/usr/local/go/bin:$PATH"
GOCACHE_ROOT="${MYSERVICE_GOCACHE:-/var/tmp/myservice-e2e-go}"
export GOMODCACHE="$GOCACHE_ROOT/mod" GOCACHE="$GOCACHE_ROOT/build"
export GOFLAGS="-mod=mod -buildvcs=false" GOTOOLCHAIN=local CGO_ENABLED=0

T0=$SECONDS
log() { printf '[kind-build %s +%ss] %s\n' "$(date -u +%H:%M:%S)" "$((SECONDS - T0))" "$*" >&2; }
step() { local name="$1" t=$SECONDS; shift; log "== $name"; "$@"; log "   $name: done in $((SECONDS - t))s"; }

# One build at a time: the images' names and the context folders are shared.
exec 9>"$CACHE/kind/.build.lock"
if ! flock -n 9; then log "another hack/kind/build.sh is running; waiting for it"; flock 9; fi

# The source of MODULE@VERSION as the Go module proxy serves it (read-only module cache).
module_dir() {
  local d
  d="$(go mod download -json "$1@$2" | sed -n 's/^\s*"Dir": "\(.*\)",$/\1/p')"
  [[ -d "$d" ]] || { log "cannot download $1@$2"; exit 1; }
  echo "$d"
}

# A writable copy of MODULE@VERSION in DIR, for builds inside the module's own tree.
module_copy() {
  local upstream; upstream="$(module_dir "$1" "$2")"
  rm -rf "$3"; mkdir -p "$3"; cp -r "$upstream/." "$3/"; chmod -R u+w "$3"
}

KIND_MODULE_DIR=""
kind_module() { [[ -n "$KIND_MODULE_DIR" ]] || KIND_MODULE_DIR="$(module_dir sigs.k8s.io/kind "$KIND_VERSION")"; }

# ------------------------------------------------------------------ 1. the local cluster's binaries
cluster_bits() {
  "$HACK/cluster/build.sh" helm kube crictl images kube-network-policies >"$OUT/cluster-build.log" 2>&1 \
    || { tail -n 30 "$OUT/cluster-build.log" >&2; log "hack/cluster/build.sh failed (log: $OUT/cluster-build.log)"; exit 1; }
  grep -E 'already built|up to date|built .* in' "$OUT/cluster-build.log" | sed 's/^/   /' >&2 || true
}

# ------------------------------------------------------------------ 2. kind
build_kind() {
  if [[ -x "$KIND_BIN_DIR/kind" ]]; then log "   kind $KIND_VERSION already built"; return; fi
  kind_module
  local d="$SRC/kind-$KIND_VERSION"
  module_copy sigs.k8s.io/kind "$KIND_VERSION" "$d"
  ( cd "$d" && go build -trimpath -ldflags "-s -w" -o "$KIND_BIN_DIR/kind.tmp" . )
  mv "$KIND_BIN_DIR/kind.tmp" "$KIND_BIN_DIR/kind"
  rm -rf "$d"
}

# ------------------------------------------------------------------ 3. kubeadm
# The version stamps hack/cluster/build.sh gives the other binaries: kubeadm refuses a
# control plane newer than itself, and an unstamped build says v0.0.0-master.
kube_ldflags() {
  local minor="${K8S_VERSION#v1.}" vpkg ldf="-s -w"; minor="${minor%%.*}"
  for vpkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldf+=" -X $vpkg.gitVersion=$K8S_VERSION -X $vpkg.gitMajor=1 -X $vpkg.gitMinor=$minor"
    ldf+=" -X $vpkg.gitTreeState=clean -X $vpkg.buildDate=1970-01-01T00:00:00Z"
  done
  echo "$ldf"
}

build_kubeadm() {
  if [[ -x "$BIN/kubeadm" ]]; then log "   kubeadm $K8S_VERSION already built"; return; fi
  # The module hack/cluster/build.sh resolved for the other kube binaries (k8s.io/kubernetes
  # with its staging modules replaced by their published twins), copied, not shared.
  local d="$SRC/kube" from="$CACHE/k8s/$K8S_VERSION/src/kube"
  [[ -f "$from/go.mod" ]] || { log "no $from/go.mod: hack/cluster/build.sh kube has not run"; exit 1; }
  mkdir -p "$d"; cp "$from/go.mod" "$d/"; [[ -f "$from/go.sum" ]] && cp "$from/go.sum" "$d/"
  ( cd "$d" && go build -trimpath -ldflags "$(kube_ldflags)" -o "$BIN/kubeadm.tmp" k8s.io/kubernetes/cmd/kubeadm )
  mv "$BIN/kubeadm.tmp" "$BIN/kubeadm"
}

# ------------------------------------------------------------------ image names
# Every name comes from the pinned sources, none is typed here: kubeadm's own list,
# kind's manifests (pkg/build/nodeimage/const_*.go) and kind's containerd config.
image_names() {
  kind_module
  local list; list="$("$BIN/kubeadm" config images list --kubernetes-version "$K8S_VERSION")"
  ETCD_IMAGE="$(grep '/etcd:' <<<"$list")"
  COREDNS_IMAGE="$(grep '/coredns:' <<<"$list")"
  ETCD_VERSION="v${ETCD_IMAGE##*:}"; ETCD_VERSION="${ETCD_VERSION%-*}"
  COREDNS_VERSION="${COREDNS_IMAGE##*:}"
  local c="$KIND_MODULE_DIR/pkg/build/nodeimage"
  KINDNETD_IMAGE="$(sed -n 's/^const kindnetdImage = "\(.*\)"$/\1/p' "$c/const_cni.go")"
  PROVISIONER_IMAGE="$(sed -n 's/^const storageProvisionerImage = "\(.*\)"$/\1/p' "$c/const_storage.go")"
  HELPER_IMAGE="$(sed -n 's/^const storageHelperImage = "\(.*\)"$/\1/p' "$c/const_storage.go")"
  PAUSE_IMAGE="$(sed -n 's/^\s*sandbox_image = "\(.*\)"$/\1/p' "$KIND_MODULE_DIR/images/base/files/etc/containerd/config.toml")"
  local n
  for n in ETCD_IMAGE COREDNS_IMAGE KINDNETD_IMAGE PROVISIONER_IMAGE HELPER_IMAGE PAUSE_IMAGE; do
    [[ -n "${!n}" ]] || { log "could not read $n from kubeadm/kind $KIND_VERSION's sources"; exit 1; }
    log "   $n=${!n}"
  done
  # The local cluster's pause image is the one kind's containerd config names.
  local manifest; manifest="$(tar -xOf "$K8S_IMAGES/pause.tar" manifest.json)"
  [[ "$manifest" == *"\"$PAUSE_IMAGE\""* ]] || { log "$K8S_IMAGES/pause.tar is not $PAUSE_IMAGE"; exit 1; }
}

# ------------------------------------------------------------------ 4. add-on binaries
build_etcd() {
  local out="$BIN/etcd-$ETCD_VERSION"
  if [[ -x "$out" ]]; then log "   etcd $ETCD_VERSION already built"; return; fi
  local d="$SRC/etcd-$ETCD_VERSION"; mkdir -p "$d"
  ( cd "$d"
    [[ -f go.mod ]] || go mod init myservice-e2e/kind-etcdbuild >/dev/null 2>&1
    go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION"
    go build -trimpath -ldflags "-s -w" -o "$out.tmp" go.etcd.io/etcd/server/v3 )
  mv "$out.tmp" "$out"
}

# CoreDNS with the plugins kubeadm's Corefile uses (the "external main" way, as
# hack/cluster/build.sh does for the local cluster's smaller set).
build_coredns() {
  local out="$BIN/coredns-$COREDNS_VERSION"
  if [[ -x "$out" ]]; then log "   coredns $COREDNS_VERSION already built"; return; fi
  local d="$SRC/coredns-$COREDNS_VERSION" p imports=""
  mkdir -p "$d"
  for p in errors health ready kubernetes metrics forward cache loop reload loadbalance log; do
    imports+=$'\t_ "github.com/coredns/coredns/plugin/'"$p"$'"\n'
  done
  ( cd "$d"
    [[ -f go.mod ]] || go mod init myservice-e2e/kind-corednsbuild >/dev/null 2>&1
    cat >main.go <<EOF
// Generated by hack/kind/build.sh: CoreDNS with the plugins of kubeadm's Corefile.
package main

import (
	"github.com/coredns/coredns/coremain"
$imports)

func main() { coremain.Run() }
EOF
    go get "github.com/coredns/coredns@$COREDNS_VERSION"
    go build -trimpath -ldflags "-s -w" -o "$out.tmp" . )
  mv "$out.tmp" "$out"
}

build_local_path() {
  local out="$BIN/local-path-provisioner-$LOCAL_PATH_VERSION"
  if [[ -x "$out" ]]; then log "   local-path-provisioner $LOCAL_PATH_VERSION already built"; return; fi
  local d="$SRC/local-path-provisioner"
  module_copy github.com/rancher/local-path-provisioner "$LOCAL_PATH_VERSION" "$d"
  # The module zip holds vendor/modules.txt but not the vendored code: the dependencies
  # come from the proxy, pinned by the module's go.sum.
  rm -rf "$d/vendor"
  ( cd "$d" && go build -trimpath \
      -ldflags "-s -w -X main.VERSION=$LOCAL_PATH_VERSION" -o "$out.tmp" . )
  mv "$out.tmp" "$out"; rm -rf "$d"
}

# ------------------------------------------------------------------ 5. the kind base image
# containerd at the version kind's base Dockerfile pins (CONTAINERD_VERSION), its three
# binaries built as kind's Makefile target does, without cgo (the build tags leave out
# the snapshotters that need it).
build_containerd() {
  kind_module
  CONTAINERD_VERSION="$(sed -n 's/^ARG CONTAINERD_VERSION="\(.*\)"$/\1/p' "$KIND_MODULE_DIR/images/base/Dockerfile")"
  [[ -n "$CONTAINERD_VERSION" ]] || { log "no CONTAINERD_VERSION in kind $KIND_VERSION's images/base/Dockerfile"; exit 1; }
  CONTAINERD_BIN="$CACHE/kind/containerd-$CONTAINERD_VERSION/bin"
  if [[ -x "$CONTAINERD_BIN/containerd" && -x "$CONTAINERD_BIN/ctr" && -x "$CONTAINERD_BIN/containerd-shim-runc-v2" ]]; then
    log "   containerd $CONTAINERD_VERSION already built"; return
  fi
  local d="$SRC/containerd" tmp="$CONTAINERD_BIN.tmp"
  module_copy github.com/containerd/containerd/v2 "$CONTAINERD_VERSION" "$d"
  rm -rf "$d/vendor" "$tmp"; mkdir -p "$tmp"   # (the zip's vendor/ holds modules.txt only)
  ( cd "$d" && go build -trimpath -tags "no_aufs no_zfs no_btrfs no_devmapper" \
      -ldflags "-s -w -X github.com/containerd/containerd/v2/version.Version=$CONTAINERD_VERSION" \
      -o "$tmp/" ./cmd/containerd ./cmd/ctr ./cmd/containerd-shim-runc-v2 )
  rm -rf "$CONTAINERD_BIN"; mv "$tmp" "$CONTAINERD_BIN"; rm -rf "$d"
}

KIND_BASE_IMAGE=""
build_base_image() {
  "$HACK/images/base.sh" --tag "$BASE_IMAGE"
  kind_module
  local ctx="$OUT/base-context" key
  rm -rf "$ctx"; mkdir -p "$ctx"
  cp -r "$KIND_MODULE_DIR/images/base/files" "$ctx/kind-files"; chmod -R u+w "$ctx/kind-files"
  rm -rf "$ctx/kind-files/LICENSES"
  cp "$K8S_BIN/crictl" "$ctx/crictl"
  cp -r "$CONTAINERD_BIN" "$ctx/containerd"
  cp -r "$HERE/base" "$ctx/base"
  cp "$HERE/Dockerfile.base" "$ctx/Dockerfile"
  key="$( { "$DOCKER" image inspect -f '{{.Id}}' "$BASE_IMAGE"
            (cd "$ctx" && find . -type f | LC_ALL=C sort | xargs sha256sum); } | sha256sum | cut -c1-12)"
  KIND_BASE_IMAGE="myservice-e2e/kind-base:$KIND_VERSION-$key"
  if "$DOCKER" image inspect "$KIND_BASE_IMAGE" >/dev/null 2>&1; then
    log "   $KIND_BASE_IMAGE exists"; return
  fi
  # --network host: apt reaches the Debian mirror (dockerd runs without NAT here)
  "$DOCKER" build --network host --build-arg BASE_IMAGE="$BASE_IMAGE" -t "$KIND_BASE_IMAGE" "$ctx" \
    >"$OUT/base-build.log" 2>&1 || { tail -n 40 "$OUT/base-build.log" >&2; log "docker build failed (log: $OUT/base-build.log)"; exit 1; }
  log "   built $KIND_BASE_IMAGE (log: $OUT/base-build.log)"
}

# ------------------------------------------------------------------ 6. the node's images
# mkimage_tar NAME OUT.tar BINARY PATH_IN_IMAGE [ARGS...]: a single-layer image, rebuilt
# when the binary is newer; then loaded into docker (for `docker save` below).
mkimage_tar() {
  local name="$1" tar="$2" binary="$3" path="$4"; shift 4
  if [[ ! -f "$tar" || "$binary" -nt "$tar" ]]; then
    local r; r="$(mktemp -d)"; mkdir -p "$r$(dirname "$path")" "$r/tmp"; chmod 1777 "$r/tmp"
    cp "$binary" "$r$path"
    "$HACK/cluster/mkimage.sh" "$name" "$tar" "$r" "$path" "$@" >/dev/null
    rm -rf "$r"
  fi
  docker_load "$name" "$tar"
}

# docker_load NAME TAR: load TAR unless NAME already is that image
docker_load() {
  local cfg; cfg="$(tar -xOf "$2" manifest.json | sed -n 's/.*"Config":"\([0-9a-f]*\)\.json".*/\1/p')"
  if [[ "$("$DOCKER" image inspect -f '{{.Id}}' "$1" 2>/dev/null)" == "sha256:$cfg" ]]; then return; fi
  "$DOCKER" load -i "$2" >/dev/null
}

APISERVER_IMAGE="registry.k8s.io/kube-apiserver:$K8S_VERSION"
CONTROLLER_MANAGER_IMAGE="registry.k8s.io/kube-controller-manager:$K8S_VERSION"
SCHEDULER_IMAGE="registry.k8s.io/kube-scheduler:$K8S_VERSION"
PROXY_IMAGE="registry.k8s.io/kube-proxy:$K8S_VERSION"

node_images() {
  mkimage_tar "$APISERVER_IMAGE" "$IMAGES/kube-apiserver.tar" "$K8S_BIN/kube-apiserver" /usr/local/bin/kube-apiserver
  mkimage_tar "$CONTROLLER_MANAGER_IMAGE" "$IMAGES/kube-controller-manager.tar" "$K8S_BIN/kube-controller-manager" /usr/local/bin/kube-controller-manager
  mkimage_tar "$SCHEDULER_IMAGE" "$IMAGES/kube-scheduler.tar" "$K8S_BIN/kube-scheduler" /usr/local/bin/kube-scheduler
  mkimage_tar "$ETCD_IMAGE" "$IMAGES/etcd-$ETCD_VERSION.tar" "$BIN/etcd-$ETCD_VERSION" /usr/local/bin/etcd
  mkimage_tar "$COREDNS_IMAGE" "$IMAGES/coredns-$COREDNS_VERSION.tar" "$BIN/coredns-$COREDNS_VERSION" /coredns
  mkimage_tar "$PROVISIONER_IMAGE" "$IMAGES/local-path-provisioner-$LOCAL_PATH_VERSION.tar" \
    "$BIN/local-path-provisioner-$LOCAL_PATH_VERSION" /usr/local/bin/local-path-provisioner
  docker_load "$PAUSE_IMAGE" "$K8S_IMAGES/pause.tar"
  # local-path-helper runs the provisioner's sh scripts (mkdir, rm): the Debian base has them
  "$DOCKER" tag "$BASE_IMAGE" "$HELPER_IMAGE"

  local ctx="$OUT/addons-context" target
  rm -rf "$ctx"; mkdir -p "$ctx"
  cp "$K8S_BIN/kube-proxy" "$K8S_BIN/kube-network-policies" "$HERE/kindnetd.py" \
     "$HERE/kube-proxy-iptables-mode.sh" "$ctx/"
  cp "$HERE/Dockerfile.addons" "$ctx/Dockerfile"
  for target in kube-proxy kindnetd; do
    local tag; [[ $target == kube-proxy ]] && tag="$PROXY_IMAGE" || tag="$KINDNETD_IMAGE"
    "$DOCKER" build --network host --build-arg BASE_IMAGE="$BASE_IMAGE" --target "$target" -t "$tag" "$ctx" \
      >"$OUT/addons-$target.log" 2>&1 || { tail -n 40 "$OUT/addons-$target.log" >&2; log "docker build $target failed"; exit 1; }
  done
  log "   $APISERVER_IMAGE, $CONTROLLER_MANAGER_IMAGE, $SCHEDULER_IMAGE, $PROXY_IMAGE"
  log "   add-ons: $ETCD_IMAGE $COREDNS_IMAGE $PAUSE_IMAGE $KINDNETD_IMAGE $PROVISIONER_IMAGE $HELPER_IMAGE"
}

# ------------------------------------------------------------------ 7. the node image
node_image() {
  local addons=("$ETCD_IMAGE" "$COREDNS_IMAGE" "$PAUSE_IMAGE" "$KINDNETD_IMAGE" "$PROVISIONER_IMAGE" "$HELPER_IMAGE")
  local all=("$APISERVER_IMAGE" "$CONTROLLER_MANAGER_IMAGE" "$SCHEDULER_IMAGE" "$PROXY_IMAGE" "${addons[@]}") key i
  key="$( { echo "$KIND_VERSION $KIND_BASE_IMAGE"
            for i in "${all[@]}"; do echo "$i $("$DOCKER" image inspect -f '{{.Id}}' "$i")"; done
            sha256sum "$BIN/kubeadm" "$K8S_BIN/kubelet" "$K8S_BIN/kubectl" | cut -d' ' -f1; } | sha256sum | cut -c1-12)"
  local keyed="myservice-e2e/kind-node:$K8S_VERSION-$key"
  if "$DOCKER" image inspect "$keyed" >/dev/null 2>&1; then
    log "   $keyed exists"
  else
    local layout="$OUT/server-layout" tarball="$OUT/server-$key.tar.gz"
    rm -rf "$layout"; mkdir -p "$layout/kubernetes/server/bin"
    echo "$K8S_VERSION" >"$layout/kubernetes/version"
    cp "$BIN/kubeadm" "$K8S_BIN/kubelet" "$K8S_BIN/kubectl" "$layout/kubernetes/server/bin/"
    local b="$layout/kubernetes/server/bin"
    "$DOCKER" save -o "$b/kube-apiserver.tar" "$APISERVER_IMAGE"
    "$DOCKER" save -o "$b/kube-controller-manager.tar" "$CONTROLLER_MANAGER_IMAGE"
    "$DOCKER" save -o "$b/kube-scheduler.tar" "$SCHEDULER_IMAGE"
    "$DOCKER" save -o "$b/kube-proxy.tar" "$PROXY_IMAGE" "${addons[@]}"   # the add-ons ride here
    python3 "$HERE/archive_tags.py" "$b/kube-proxy.tar" | sed 's/^/   kube-proxy.tar: /' >&2  # ... seen by kind
    tar -C "$layout" -cf - kubernetes | gzip -1 >"$tarball.tmp"; mv "$tarball.tmp" "$tarball"
    rm -rf "$layout"
    find "$OUT" -maxdepth 1 -name 'server-*.tar.gz' ! -name "$(basename "$tarball")" -delete
    log "   $tarball: $(du -h "$tarball" | cut -f1)"
    "$KIND_BIN_DIR/kind" build node-image --type file --base-image "$KIND_BASE_IMAGE" --image "$keyed" "$tarball" \
      >"$OUT/node-image.log" 2>&1 || { tail -n 40 "$OUT/node-image.log" >&2; log "kind build node-image failed (log: $OUT/node-image.log)"; exit 1; }
    grep -q 'build completed' "$OUT/node-image.log" || { tail -n 20 "$OUT/node-image.log" >&2; exit 1; }
    if grep -q 'Failed to pull' "$OUT/node-image.log"; then
      grep 'Failed to pull' "$OUT/node-image.log" >&2; log "kind pulled an image it should have had"; exit 1
    fi
  fi
  "$DOCKER" tag "$keyed" "$NODE_IMAGE"
  # Node images of earlier keys (~1.4 GB each) go; one a cluster still runs on stays.
  local old
  for old in $("$DOCKER" images --format '{{.Repository}}:{{.Tag}}' | grep -E '^myservice-e2e/kind-(node|base):'); do
    [[ "$old" == "$keyed" || "$old" == "$NODE_IMAGE" || "$old" == "$KIND_BASE_IMAGE" ]] && continue
    if "$DOCKER" rmi "$old" >/dev/null 2>&1; then log "   removed the older $old"; fi
  done
  log "   node image $NODE_IMAGE = $keyed ($("$DOCKER" image inspect -f '{{.Size}}' "$keyed" | awk '{printf "%.0f MB", $1/1e6}'))"
}

step "the local cluster's binaries (hack/cluster/build.sh)" cluster_bits
step "kind $KIND_VERSION" build_kind
step "kubeadm $K8S_VERSION" build_kubeadm
step "image names" image_names
step "etcd $ETCD_VERSION" build_etcd
step "coredns $COREDNS_VERSION" build_coredns
step "local-path-provisioner $LOCAL_PATH_VERSION" build_local_path
step "containerd (kind's base image pins it)" build_containerd
step "kind's docker daemon (dockerd.sh)" "$HERE/dockerd.sh" start
step "kind base image" build_base_image
step "node images" node_images
step "node image" node_image
log "kind: $KIND_BIN_DIR/kind ($("$KIND_BIN_DIR/kind" version)); node image: $NODE_IMAGE"
log "total $((SECONDS - T0))s"
