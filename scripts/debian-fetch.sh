#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# debian-fetch.sh SUITE PACKAGE DEST [PATH]: fetches PACKAGE from another
# Debian suite (bullseye, unstable...) without installing it. A private apt
# configuration (its own sources.list, lists and cache in a temporary
# directory; the system's apt state is untouched) runs apt-get update and
# apt-get download, and dpkg -x unpacks the .deb into DEST.new, which replaces
# DEST only when the unpack holds PATH (relative to DEST, e.g. usr/bin/consul).
# Prints DEST on success; otherwise prints nothing on stdout, the reason on
# stderr (its last line names the failing step) and exits non-zero.
# Callers keep their own cache check (DEST/PATH already there) and opt-outs.
set -euo pipefail

if [ $# -lt 3 ] || [ $# -gt 4 ] || [ -z "$1" ] || [ -z "$2" ] || [ -z "$3" ]; then
	echo "usage: debian-fetch.sh SUITE PACKAGE DEST [PATH]" >&2
	exit 2
fi
suite=$1 pkg=$2 dest=$3 want=${4:-}
what="$pkg ($suite)"

tmp=$(mktemp -d "/tmp/debian-fetch-$pkg.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/lists/partial" "$tmp/cache/archives/partial" "$tmp/deb"
echo "deb http://deb.debian.org/debian $suite main" > "$tmp/sources.list"
apt_opts=(
	-o "Dir::Etc::SourceList=$tmp/sources.list"
	-o "Dir::Etc::SourceParts=/dev/null"
	-o "Dir::State::Lists=$tmp/lists"
	-o "Dir::Cache=$tmp/cache"
	-o "APT::Get::List-Cleanup=0"
	-o "Debug::NoLocking=1"
)
if ! apt-get "${apt_opts[@]}" -q update >"$tmp/update.log" 2>&1; then
	echo "$what: apt-get update against Debian $suite failed:" >&2
	tail -5 "$tmp/update.log" >&2
	exit 1
fi
# apt-get download writes into the current directory.
if ! (cd "$tmp/deb" && apt-get "${apt_opts[@]}" -q download "$pkg") >"$tmp/download.log" 2>&1; then
	echo "$what: apt-get download $pkg failed:" >&2
	tail -5 "$tmp/download.log" >&2
	exit 1
fi
deb=$(ls "$tmp/deb/${pkg}"_*.deb 2>/dev/null | head -1)
if [ -z "$deb" ]; then
	echo "$what: no $pkg .deb downloaded" >&2
	exit 1
fi
rm -rf "$dest.new"
mkdir -p "$dest.new"
if ! dpkg -x "$deb" "$dest.new" 2>"$tmp/dpkg.log"; then
	echo "$what: dpkg -x $(basename "$deb") failed:" >&2
	tail -5 "$tmp/dpkg.log" >&2
	rm -rf "$dest.new"
	exit 1
fi
if [ -n "$want" ] && [ ! -e "$dest.new/$want" ]; then
	echo "$what: $(basename "$deb") holds no $want" >&2
	rm -rf "$dest.new"
	exit 1
fi
rm -rf "$dest"
mv "$dest.new" "$dest"
echo "$dest"
