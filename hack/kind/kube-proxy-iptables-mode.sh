#!/bin/sh
# kube-proxy-iptables-mode.sh - /usr/local/bin/kube-proxy of the locally built kube-proxy
# image: use the iptables mode (legacy or nft) the node uses, then run kube-proxy.
# The same decision as the upstream image's iptables-wrapper: the kubelet's
# KUBE-IPTABLES-HINT chain says which one it used; without it, the mode with more rules.
set -eu
mode=
for m in legacy nft; do
  if "iptables-$m-save" -t mangle 2>/dev/null | grep -q KUBE-IPTABLES-HINT; then mode=$m; break; fi
done
if [ -z "$mode" ]; then
  legacy=$( (iptables-legacy-save; ip6tables-legacy-save) 2>/dev/null | grep -c '^-' || true)
  nft=$( (iptables-nft-save; ip6tables-nft-save) 2>/dev/null | grep -c '^-' || true)
  if [ "$legacy" -gt "$nft" ]; then mode=legacy; else mode=nft; fi
fi
update-alternatives --set iptables "/usr/sbin/iptables-$mode" >/dev/null
update-alternatives --set ip6tables "/usr/sbin/ip6tables-$mode" >/dev/null
echo "kube-proxy: iptables mode $mode (the node's)" >&2
exec /usr/local/bin/kube-proxy.bin "$@"
