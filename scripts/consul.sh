#!/usr/bin/env bash
# Fetches Debian 11's consul package (1.8: Debian 12 has none) without
# installing it: a private apt configuration for bullseye downloads the .deb
# and dpkg -x unpacks it under /var/cache/acme-spoa/consul/ (CONSUL_CACHE
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
tmp=$(mktemp -d /tmp/consul-deb.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/lists/partial" "$tmp/cache/archives/partial" "$tmp/deb"
echo 'deb http://deb.debian.org/debian bullseye main' > "$tmp/sources.list"
apt_opts=(
	-o "Dir::Etc::SourceList=$tmp/sources.list"
	-o "Dir::Etc::SourceParts=/dev/null"
	-o "Dir::State::Lists=$tmp/lists"
	-o "Dir::Cache=$tmp/cache"
	-o "APT::Get::List-Cleanup=0"
	-o "Debug::NoLocking=1"
)
if ! apt-get "${apt_opts[@]}" -q update >"$tmp/update.log" 2>&1; then
	echo "consul: apt-get update against Debian bullseye failed:" >&2
	tail -5 "$tmp/update.log" >&2
	exit 1
fi
# apt-get download writes into the current directory.
if ! (cd "$tmp/deb" && apt-get "${apt_opts[@]}" -q download consul) >"$tmp/download.log" 2>&1; then
	echo "consul: apt-get download consul failed:" >&2
	tail -5 "$tmp/download.log" >&2
	exit 1
fi
deb=$(ls "$tmp"/deb/consul_*.deb 2>/dev/null | head -1)
if [ -z "$deb" ]; then
	echo "consul: no consul .deb downloaded" >&2
	exit 1
fi
mkdir -p "$(dirname "$dest")"
rm -rf "$dest.new"
mkdir -p "$dest.new"
dpkg -x "$deb" "$dest.new"
if [ ! -x "$dest.new/usr/bin/consul" ]; then
	echo "consul: $(basename "$deb") holds no usr/bin/consul" >&2
	rm -rf "$dest.new"
	exit 1
fi
rm -rf "$dest"
mv "$dest.new" "$dest"
echo "$bin"
