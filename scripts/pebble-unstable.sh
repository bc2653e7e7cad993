#!/usr/bin/env bash
# Fetches Debian unstable's pebble package (2.10+: ARI and profiles) without
# installing it: a private apt configuration downloads the .deb and dpkg -x
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
tmp=$(mktemp -d /tmp/pebble-unstable.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/lists/partial" "$tmp/cache/archives/partial" "$tmp/deb"
echo 'deb http://deb.debian.org/debian unstable main' > "$tmp/sources.list"
apt_opts=(
	-o "Dir::Etc::SourceList=$tmp/sources.list"
	-o "Dir::Etc::SourceParts=/dev/null"
	-o "Dir::State::Lists=$tmp/lists"
	-o "Dir::Cache=$tmp/cache"
	-o "APT::Get::List-Cleanup=0"
	-o "Debug::NoLocking=1"
)
if ! apt-get "${apt_opts[@]}" -q update >"$tmp/update.log" 2>&1; then
	echo "pebble-unstable: apt-get update against Debian unstable failed:" >&2
	tail -5 "$tmp/update.log" >&2
	exit 1
fi
# apt-get download writes into the current directory.
if ! (cd "$tmp/deb" && apt-get "${apt_opts[@]}" -q download pebble) >"$tmp/download.log" 2>&1; then
	echo "pebble-unstable: apt-get download pebble failed:" >&2
	tail -5 "$tmp/download.log" >&2
	exit 1
fi
deb=$(ls "$tmp"/deb/pebble_*.deb 2>/dev/null | head -1)
if [ -z "$deb" ]; then
	echo "pebble-unstable: no pebble .deb downloaded" >&2
	exit 1
fi
rm -rf "$dest.new"
mkdir -p "$dest.new"
dpkg -x "$deb" "$dest.new"
if [ ! -x "$dest.new/usr/bin/pebble" ]; then
	echo "pebble-unstable: $(basename "$deb") holds no usr/bin/pebble" >&2
	rm -rf "$dest.new"
	exit 1
fi
rm -rf "$dest"
mv "$dest.new" "$dest"
echo "$bin"
