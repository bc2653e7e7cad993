#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Fetches Debian unstable's pebble package (2.10+: ARI and profiles) without
# installing it: scripts/debian-fetch.sh downloads the .deb and dpkg -x
# unpacks it under build/peers/pebble-unstable/. Idempotent. Prints the path of
# the pebble binary; exits non-zero (printing nothing on stdout) when the package
# cannot be had. PEBBLE_UNSTABLE_OFFLINE=1 skips the download (as if refused).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
dest=$root/build/peers/pebble-unstable
bin=$dest/usr/bin/pebble

if [ -x "$bin" ]; then
	echo "$bin"
	exit 0
fi

if [ "${PEBBLE_UNSTABLE_OFFLINE:-0}" = 1 ]; then
	echo "pebble-unstable: download disabled by PEBBLE_UNSTABLE_OFFLINE=1" >&2
	exit 1
fi
bash "$root/scripts/debian-fetch.sh" unstable pebble "$dest" usr/bin/pebble >/dev/null
if [ ! -x "$bin" ]; then
	echo "pebble-unstable: $bin is not executable" >&2
	exit 1
fi
echo "$bin"
