#!/bin/sh
# restrict-oom-score-adj.sh - ExecStartPre of containerd in the locally built kind base image.
#
# Lowering a process's oom_score_adj needs CAP_SYS_RESOURCE. Where the node has none
# (the development machine: root's bounding set lacks it, so kind's nodes do too),
# runc fails every pod sandbox the kubelet asks for with a negative score
# ("can't get final child's PID from pipe: EOF"). containerd's restrict_oom_score_adj
# then keeps each score at or above containerd's own, which needs no capability; kind's
# entrypoint turns on the same setting for rootless nodes. With CAP_SYS_RESOURCE
# nothing changes.
set -eu
CAP_SYS_RESOURCE=24
bounding=$(awk '/^CapBnd:/ {print $2}' /proc/self/status)
if [ $(( (0x$bounding >> CAP_SYS_RESOURCE) & 1 )) -eq 0 ]; then
  sed -i 's/restrict_oom_score_adj = false/restrict_oom_score_adj = true/' /etc/containerd/config.toml
  echo "no CAP_SYS_RESOURCE: containerd's restrict_oom_score_adj = true" >&2
fi
