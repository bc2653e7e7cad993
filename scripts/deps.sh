#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Installs, only when missing, every Debian package the build, the tests and the
# demo need. Runs as root on Debian (CI and the developers' machines are root).
set -euo pipefail

PKGS=(build-essential pkg-config libssl-dev libcurl4-openssl-dev libjansson-dev
      libhiredis-dev libev-dev libmicrohttpd-dev libcmocka-dev libldns-dev libpsl-dev publicsuffix
      haproxy pebble redis-server redis-sentinel bind9 bind9-dnsutils curl openssl clang libclang-rt-14-dev python3
      debhelper dpkg-dev lintian debootstrap prometheus certbot lego caddy)

missing=()
for p in "${PKGS[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	if [ "$(id -u)" != 0 ]; then
		echo "deps: missing packages: ${missing[*]} (run as root to install them)" >&2
		exit 1
	fi
	echo "deps: installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -q >/dev/null
	apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
fi
# Consul: Debian 12 has no package; Debian 11's is unpacked into a cache for
# the tests (they skip without it).
bash "$(dirname "$0")/consul.sh" >/dev/null || echo "deps: no consul binary, its tests will skip" >&2
# Debian starts these as services on install; the tests start their own copies.
for svc in haproxy redis-server redis-sentinel named prometheus caddy; do
	if command -v systemctl >/dev/null 2>&1; then systemctl stop "$svc" >/dev/null 2>&1 || true; fi
done
exit 0
