#!/usr/bin/env bash
# install.sh - HAProxy 3.0 for the front (gateway/myservice_gateway/front/), on Debian bookworm.
#
# Usage: hack/haproxy/install.sh [--prefix DIR] [--into DIR] [--refresh] [--help]
#
# Why not bookworm's haproxy: 2.6 ends a stream answered while its client still sends
# (a Chat the instance ends, a call racing a Shutdown) with RST_STREAM(CANCEL), which a
# gRPC client reads as CANCELLED instead of the status (haproxy/haproxy#1219 and the h2
# abort work that followed it): against the contract. 3.0 (Debian trixie's, LTS to 2029)
# forwards the status. bookworm-backports has no haproxy, and trixie's package needs a
# newer libc than bookworm's.
#
# So this takes Debian trixie's own binary package, security updates included (apt,
# signatures checked against the machine's debian-archive-keyring), with the libraries it
# links (libc included) from trixie too, into one private tree; the binary's ELF
# interpreter and RPATH are set (patchelf) to that tree, so it runs beside bookworm's libc
# and touches nothing of the system. Nothing is built: every byte but the two ELF fields
# is Debian's.
#
#   --prefix DIR  the tree's final place (default $CACHE/haproxy/<version>); the binary is
#                 DIR/sbin/haproxy. build.sh uses --prefix /opt/haproxy --into <context>.
#   --into DIR    write the tree to DIR instead of the prefix (a docker build context).
#   --refresh     look for a newer trixie-security update even when a tree exists.
#
# Output: the tree, and the stable symlink $CACHE/haproxy/current -> <version> (host
# installs only). Prints the binary's path last. ~9 MB download, a few seconds; cached.
set -euo pipefail

CACHE=${MYSERVICE_CACHE:-/var/cache/myservice}
ROOT=$CACHE/haproxy
PREFIX="" INTO="" REFRESH=0
while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) PREFIX=$2; shift ;;
    --into) INTO=$2; shift ;;
    --refresh) REFRESH=1 ;;
    -h|--help) sed -n '2,26p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "install.sh: unknown argument $1 (--help)" >&2; exit 2 ;;
  esac
  shift
done

# The package and every library its binary (and those libraries) need: haproxy's
# NEEDED closure, checked below with ldd against the tree alone.
PACKAGES="haproxy libc6 libcrypt1 libssl3t64 liblua5.4-0 libopentracing-c-wrapper0t64 libopentracing1
          libpcre2-8-0 libjemalloc2 libstdc++6 libgcc-s1 zlib1g libzstd1"
LIB=usr/lib/x86_64-linux-gnu

if [ -z "$PREFIX$INTO" ] && [ "$REFRESH" = 0 ] && [ -x "$ROOT/current/sbin/haproxy" ]; then
  echo "$ROOT/current/sbin/haproxy"
  exit 0
fi
[ "$(dpkg --print-architecture 2>/dev/null)" = amd64 ] || { echo "install.sh: amd64 Debian only" >&2; exit 1; }
command -v patchelf >/dev/null || apt-get install -y -q patchelf >/dev/null 2>&1 \
  || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q patchelf >/dev/null; } \
  || { echo "install.sh: patchelf could not be installed (apt-get install patchelf, as root)" >&2; exit 1; }

# apt with its own lists and cache: the machine's sources and state stay as they are.
APT=$ROOT/apt
mkdir -p "$APT/lists/partial" "$APT/archives/partial"
cat >"$APT/sources.list" <<EOF
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian trixie main
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian-security trixie-security main
EOF
apt_opts=(-o "Dir::Etc::SourceList=$APT/sources.list" -o Dir::Etc::SourceParts=/dev/null
          -o "Dir::State::Lists=$APT/lists" -o "Dir::Cache=$APT" -o "Dir::Cache::archives=$APT/archives"
          -o Dir::State::status=/dev/null -o APT::Architecture=amd64 -o APT::Sandbox::User=root -q)
echo "install.sh: trixie's package lists" >&2
apt-get "${apt_opts[@]}" update >"$APT/update.log" 2>&1 || { tail -5 "$APT/update.log" >&2; exit 1; }
VERSION=$(apt-cache "${apt_opts[@]}" policy haproxy | sed -n 's/^ *Candidate: //p')
case "$VERSION" in 3.0.*) ;; *) echo "install.sh: trixie offers haproxy '$VERSION', not 3.0" >&2; exit 1 ;; esac
PREFIX=${PREFIX:-$ROOT/$VERSION}
OUT=${INTO:-$PREFIX}
if [ -z "$INTO" ] && [ -x "$OUT/sbin/haproxy" ] && "$OUT/sbin/haproxy" -v >/dev/null 2>&1; then
  ln -sfn "$VERSION" "$ROOT/current"
  echo "$OUT/sbin/haproxy"
  exit 0
fi

echo "install.sh: haproxy $VERSION and its libraries from trixie" >&2
DEBS=$APT/debs/$VERSION
mkdir -p "$DEBS"
# shellcheck disable=SC2086
(cd "$DEBS" && apt-get "${apt_opts[@]}" download $PACKAGES >"$APT/download.log" 2>&1) \
  || { tail -5 "$APT/download.log" >&2; exit 1; }
STAGE=$(mktemp -d "${TMPDIR:-/tmp}/myservice-haproxy.XXXXXX")
trap 'rm -rf "$STAGE"' EXIT
for deb in "$DEBS"/*.deb; do dpkg-deb -x "$deb" "$STAGE/x"; done
# The tree: the binary, the shared objects, the licences; not libc's locales, docs, configs.
mkdir -p "$STAGE/t/sbin" "$STAGE/t/lib" "$STAGE/t/doc"
cp -a "$STAGE/x/usr/sbin/haproxy" "$STAGE/t/sbin/"
cp -a "$STAGE/x/$LIB"/*.so* "$STAGE/t/lib/"
for d in "$STAGE"/x/usr/share/doc/*/; do
  [ -f "$d/copyright" ] && cp "$d/copyright" "$STAGE/t/doc/$(basename "$d").copyright"
done
cp "$STAGE/x/usr/share/doc/haproxy/changelog.Debian.gz" "$STAGE/t/doc/haproxy.changelog.Debian.gz"
# DT_RPATH (not RUNPATH): it also holds for the libraries' own needs (liblua's libm, ...).
patchelf --force-rpath --set-interpreter "$PREFIX/lib/ld-linux-x86-64.so.2" --set-rpath "$PREFIX/lib" \
  "$STAGE/t/sbin/haproxy"
rm -rf "$OUT.new"; mkdir -p "$(dirname "$OUT")"
cp -a "$STAGE/t" "$OUT.new"
rm -rf "$OUT"; mv "$OUT.new" "$OUT"
if [ -z "$INTO" ]; then
  # Every library from the tree, none from the system (a system one would be bookworm's).
  missing=$(ldd "$OUT/sbin/haproxy" | grep -v -e "$OUT/lib/" -e linux-vdso || true)
  [ -z "$missing" ] || { echo "install.sh: libraries outside the tree:" >&2; echo "$missing" >&2; exit 1; }
  "$OUT/sbin/haproxy" -vv | grep -q -- '+PROMEX' || { echo "install.sh: no Prometheus exporter" >&2; exit 1; }
  ln -sfn "$VERSION" "$ROOT/current"
fi
echo "install.sh: haproxy $VERSION in $OUT ($(du -sh "$OUT" | cut -f1))" >&2
echo "$OUT/sbin/haproxy"
