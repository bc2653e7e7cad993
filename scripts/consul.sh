#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Fetches Debian 11's consul package (1.8: Debian 12 has none) without
# installing it: scripts/debian-fetch.sh downloads the bullseye .deb and
# dpkg -x unpacks it under /var/cache/acme-spoa/consul/ (CONSUL_CACHE
# overrides). Idempotent. Prints the path of the consul binary; exits non-zero
# (printing nothing on stdout) when the package cannot be had.
# CONSUL_OFFLINE=1 skips the download (as if refused). For the tests only: the
# agent talks to any Consul over its HTTP API, it needs no binary.
set -euo pipefail

dest=${CONSUL_CACHE:-/var/cache/acme-spoa/consul}
bin=$dest/usr/bin/consul

if [ -x "$bin" ]; then
	echo "$bin"
	exit 0
fi
if [ "${CONSUL_OFFLINE:-0}" = 1 ]; then
	echo "consul: download disabled by CONSUL_OFFLINE=1" >&2
	exit 1
fi
bash "$(dirname "$0")/debian-fetch.sh" bullseye consul "$dest" usr/bin/consul >/dev/null
if [ ! -x "$bin" ]; then
	echo "consul: $bin is not executable" >&2
	exit 1
fi
echo "$bin"
