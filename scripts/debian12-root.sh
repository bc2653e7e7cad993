#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Prints the path of a tarball holding a fresh Debian 12 (bookworm) root made
# by debootstrap (minbase) with HAProxy and the agent's runtime libraries in it,
# for tests/integration/test_package.sh. Built once per machine into
# /var/cache/acme-spoa/ (a minute or two with a mirror at hand); later calls
# print the cached path at once. Needs root, debootstrap and the mirror apt
# uses: exits 2 with the reason on stderr when this machine cannot make it
# (not root, no debootstrap, mirror unreachable), 1 when making it failed (a
# package of INCLUDE that does not exist is that: a bug, not the machine).
#   DEBIAN_MIRROR  overrides the mirror (default: the first of apt's sources)
set -euo pipefail

CACHE=${ACME_SPOA_CACHE:-/var/cache/acme-spoa}
# bump when the list below changes, so a stale root is not reused
TAR=$CACHE/debian12-root-v3.tar.gz
INCLUDE=haproxy,adduser,ca-certificates,openssl,libcurl4,libev4,libjansson4,libhiredis0.14,libmicrohttpd12,libssl3,libpsl5,libldns3,publicsuffix

if [ -s "$TAR" ]; then echo "$TAR"; exit 0; fi
[ "$(id -u)" = 0 ] || { echo "debian12-root: needs root" >&2; exit 2; }
command -v debootstrap >/dev/null || { echo "debian12-root: debootstrap is not installed" >&2; exit 2; }
mirror=${DEBIAN_MIRROR:-}
if [ -z "$mirror" ]; then
	mirror=$(grep -hsE '^(URIs:|deb )' /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null |
		grep -v security | head -1 | awk "{ print \$2 }") || true
	mirror=${mirror:-http://deb.debian.org/debian}
fi
if ! curl -sf --max-time 10 -o /dev/null "$mirror/dists/bookworm/Release"; then
	echo "debian12-root: mirror $mirror unreachable" >&2
	exit 2
fi
mkdir -p "$CACHE"
work=$(mktemp -d "$CACHE/root.XXXXXX")
trap 'rm -rf "$work"' EXIT
if ! nice -n 10 debootstrap --variant=minbase --include="$INCLUDE" bookworm "$work/root" "$mirror" \
	>"$work/debootstrap.log" 2>&1; then
	echo "debian12-root: debootstrap failed:" >&2
	tail -5 "$work/debootstrap.log" >&2
	exit 1
fi
# no daemon starts inside the root on its own (the test starts what it needs)
printf '#!/bin/sh\nexit 101\n' > "$work/root/usr/sbin/policy-rc.d"
chmod 755 "$work/root/usr/sbin/policy-rc.d"
rm -rf "$work/root/var/cache/apt/archives/"*.deb
tar -C "$work/root" -czf "$work/root.tar.gz" .
mv "$work/root.tar.gz" "$TAR"
echo "$TAR"
