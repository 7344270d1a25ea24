#!/usr/bin/env bash
# mkimage.sh - write a single-layer image as a docker-archive tar (the format
# `ctr images import` and `docker load` accept) from a root filesystem dir.
# No daemon, no registry: tar + sha256sum only.
#
# Usage: hack/cluster/mkimage.sh [--help] NAME:TAG OUT.tar ROOTFS_DIR ENTRYPOINT [ARG...]
#   e.g. mkimage.sh registry.k8s.io/pause:3.10 pause.tar ./rootfs /pause
# Then import into the e2e cluster (see env.sh for $MYSERVICE_CTR):
#   ctr --address /run/myservice-e2e/containerd/containerd.sock -n k8s.io images import OUT.tar
set -euo pipefail
if [[ "${1:-}" == "--help" || "${1:-}" == "-h" || $# -lt 4 ]]; then
  sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
  [[ "${1:-}" == "--help" || "${1:-}" == "-h" ]] && exit 0 || exit 2
fi
name="$1" out="$2" rootfs="$3"; shift 3
json_array() { local s="" a; for a in "$@"; do a="${a//\\/\\\\}"; s+="\"${a//\"/\\\"}\","; done; echo "[${s%,}]"; }

work="$(mktemp -d)"; trap 'rm -rf "$work"' EXIT
tar -C "$rootfs" --sort=name --numeric-owner --owner=0 --group=0 --mtime=@0 -cf "$work/layer.tar" .
diffid="$(sha256sum "$work/layer.tar" | cut -d' ' -f1)"
mkdir "$work/$diffid"; mv "$work/layer.tar" "$work/$diffid/layer.tar"
cat > "$work/config.json" <<JSON
{"architecture":"amd64","os":"linux","created":"1970-01-01T00:00:00Z","config":{"Entrypoint":$(json_array "$@"),"Env":["PATH=/usr/local/bin:/usr/bin:/bin:/"],"WorkingDir":"/"},"rootfs":{"type":"layers","diff_ids":["sha256:$diffid"]},"history":[{"created":"1970-01-01T00:00:00Z","created_by":"myservice e2e mkimage.sh"}]}
JSON
cfgid="$(sha256sum "$work/config.json" | cut -d' ' -f1)"
mv "$work/config.json" "$work/$cfgid.json"
echo "[{\"Config\":\"$cfgid.json\",\"RepoTags\":[\"$name\"],\"Layers\":[\"$diffid/layer.tar\"]}]" > "$work/manifest.json"
tar -C "$work" --sort=name --numeric-owner --owner=0 --group=0 --mtime=@0 -cf "$out.tmp" manifest.json "$cfgid.json" "$diffid"
mv "$out.tmp" "$out"
echo "wrote $out ($name, config sha256:$cfgid)"
