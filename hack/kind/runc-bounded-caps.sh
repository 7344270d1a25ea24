#!/bin/bash
# runc-bounded-caps.sh - runc, minus the capabilities this host's root cannot hold.
#
# The runtime of kind's own dockerd (hack/kind/dockerd.sh) on the development machine.
# There root's bounding set lacks CAP_SYS_RESOURCE, and docker 20.10 gives a
# --privileged container (every kind node) "all capabilities" from the kernel's list,
# so runc fails: `unable to apply caps: operation not permitted`. This wrapper drops,
# from the OCI spec of a container (create/run: <bundle>/config.json) or of an exec'd
# process (exec --process FILE), every capability outside its own bounding set, then
# runs the real runc. Everything else goes to runc unchanged.
set -euo pipefail
RUNC=${MYSERVICE_KIND_RUNC:-/usr/bin/runc}

CAPS=(CHOWN DAC_OVERRIDE DAC_READ_SEARCH FOWNER FSETID KILL SETGID SETUID SETPCAP
      LINUX_IMMUTABLE NET_BIND_SERVICE NET_BROADCAST NET_ADMIN NET_RAW IPC_LOCK IPC_OWNER
      SYS_MODULE SYS_RAWIO SYS_CHROOT SYS_PTRACE SYS_PACCT SYS_ADMIN SYS_BOOT SYS_NICE
      SYS_RESOURCE SYS_TIME SYS_TTY_CONFIG MKNOD LEASE AUDIT_WRITE AUDIT_CONTROL SETFCAP
      MAC_OVERRIDE MAC_ADMIN SYSLOG WAKE_ALARM BLOCK_SUSPEND AUDIT_READ PERFMON BPF
      CHECKPOINT_RESTORE)

# JSON array of the capability names outside the bounding set ("CAP_SYS_RESOURCE", ...)
missing_caps() {
  local bnd i out=""
  bnd=$((16#$(awk '/^CapBnd:/ {print $2}' /proc/self/status)))
  for i in "${!CAPS[@]}"; do
    (( (bnd >> i) & 1 )) || out+="\"CAP_${CAPS[i]}\","
  done
  echo "[${out%,}]"
}

# strip FILE JQ_PATH: remove the missing capabilities from every set under JQ_PATH
strip() {
  local file="$1" path="$2" missing tmp
  missing="$(missing_caps)"
  [[ "$missing" == "[]" ]] && return 0
  tmp="$file.bounded-caps.$$"
  jq --argjson missing "$missing" \
     "if $path == null then . else $path |= with_entries(.value |= ((. // []) - \$missing)) end" \
     "$file" >"$tmp"
  chmod --reference="$file" "$tmp"; mv "$tmp" "$file"
}

command="" bundle="" process="" prev=""
for arg in "$@"; do
  case "$prev" in
    --bundle|-b) bundle="$arg" ;;
    --process|-p) process="$arg" ;;
  esac
  case "$arg" in
    --bundle=*) bundle="${arg#--bundle=}" ;;
    --process=*) process="${arg#--process=}" ;;
    create|run|exec)
      # the first of these that is not the value of one of runc's global options
      case "$prev" in --root|--log|--log-format|--criu|--rootless) ;; *) [[ -n "$command" ]] || command="$arg" ;; esac ;;
  esac
  prev="$arg"
done
case "$command" in
  create|run) strip "${bundle:-.}/config.json" .process.capabilities ;;
  exec) [[ -n "$process" ]] && strip "$process" .capabilities ;;
esac
exec "$RUNC" "$@"
