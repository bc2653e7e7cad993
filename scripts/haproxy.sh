#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Prints the path of an HAProxy binary built from a release source tarball,
# building it first when it is not cached yet.
#
#   scripts/haproxy.sh VERSION      VERSION: 3.0.11, or a line (3.0, 3.4) for
#                                   the one tarball of that line in the peers
#   scripts/haproxy.sh --list       the versions the peers directory holds
#
# The sources are ${HAPROXY_PEERS:-../shared/peers}/haproxy-<version>.tar.gz
# (beside the clone). The binary is cached OUTSIDE the clone, keyed by the
# tarball's sha256:
#   ${HAPROXY_CACHE:-/var/cache/acme-spoa}/haproxy-<version>-<sha256>/haproxy
# so a machine builds each version once (1-4 minutes on 2 cores) and every
# later run, or a fresh clone, reuses it. Two runs at once are safe: the build
# is serialised by flock, done in a temporary directory, and the binary renamed
# into place (a reader sees either no binary or a complete one).
#
# Missing build packages (libpcre2-dev zlib1g-dev libssl-dev, make, gcc) are
# installed with apt-get (apt-get update first, only when something is missing).
#
# Environment: HAPROXY_TARBALL (one source tarball, instead of the peers
# directory), HAPROXY_PEERS, HAPROXY_CACHE. Without a tarball for VERSION
# (an unpacked `make dist` has no ../shared/peers beside it), a binary of that
# line already in the cache is used.
# Exit status: 0 with the path on stdout; 2 when there is no tarball for
# VERSION (the callers decide: a skip on a developer's machine, a failure
# under CI=true); 1 on any other failure. Reasons go to stderr.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PEERS=${HAPROXY_PEERS:-$ROOT/../shared/peers}

say() { echo "haproxy.sh: $*" >&2; }
die() { say "$*"; exit 1; }
usage() { echo "usage: $0 VERSION | --list" >&2; exit 1; }

# the X.Y.Z of a tarball's name haproxy-X.Y.Z.tar.gz
tar_version() { local b; b=$(basename "$1"); b=${b#haproxy-}; echo "${b%.tar.gz}"; }

[ $# = 1 ] || usage
if [ "$1" = --list ]; then
	for t in "$PEERS"/haproxy-*.tar.gz; do [ -f "$t" ] && tar_version "$t"; done
	exit 0
fi
WANT=$1
[[ $WANT =~ ^[0-9]+\.[0-9]+(\.[0-9]+)?$ ]] || usage

if [ -n "${HAPROXY_TARBALL:-}" ]; then
	TARBALL=$HAPROXY_TARBALL
	if [ ! -f "$TARBALL" ]; then
		say "no HAProxy $WANT source: $TARBALL is absent"
		exit 2
	fi
else
	# X.Y.Z names one tarball; X.Y the one of that line (more than one: ambiguous)
	cands=()
	for t in "$PEERS"/haproxy-"$WANT".tar.gz "$PEERS"/haproxy-"$WANT".[0-9]*.tar.gz; do
		[ -f "$t" ] || continue
		[[ $(tar_version "$t") =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] && cands+=("$t")
	done
	if [ ${#cands[@]} = 0 ]; then
		# an unpacked `make dist` has no ../shared/peers beside it: a binary
		# this machine built before from such a tarball serves
		for b in "${HAPROXY_CACHE:-/var/cache/acme-spoa}"/haproxy-"$WANT"{,.[0-9]*}-*/haproxy \
			 "${XDG_CACHE_HOME:-$HOME/.cache}"/acme-spoa/haproxy-"$WANT"{,.[0-9]*}-*/haproxy; do
			[ -x "$b" ] || continue
			v=${b%/haproxy}; v=${v##*/haproxy-}; v=${v%-*}
			out=$("$b" -v 2>/dev/null) || continue
			[[ $out == "HAProxy version $v "* || $out == "HAProxy version $v-"* ]] || continue
			say "no HAProxy $WANT source in $PEERS; using the cached build $b"
			echo "$b"
			exit 0
		done
		say "no HAProxy $WANT source: no $PEERS/haproxy-$WANT*.tar.gz (nor a cached build)"
		exit 2
	fi
	[ ${#cands[@]} = 1 ] || die "more than one HAProxy $WANT source in $PEERS: name the version (X.Y.Z)"
	TARBALL=${cands[0]}
fi
TARBALL=$(cd "$(dirname "$TARBALL")" && pwd)/$(basename "$TARBALL")
VERSION=$(tar_version "$TARBALL")
[[ $VERSION =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || die "cannot read a version X.Y.Z from the name $TARBALL"
[[ $VERSION == "$WANT" || $VERSION == "$WANT".* ]] || die "$TARBALL is HAProxy $VERSION, not $WANT"
SHA=$(sha256sum "$TARBALL" | awk '{print $1}') || die "cannot read $TARBALL"

CACHE0=${HAPROXY_CACHE:-/var/cache/acme-spoa}
CACHE=$CACHE0
if ! mkdir -p "$CACHE" 2>/dev/null || [ ! -w "$CACHE" ]; then
	CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/acme-spoa
	mkdir -p "$CACHE" || die "no writable cache directory (tried $CACHE0 and $CACHE)"
fi
DIR=$CACHE/haproxy-$VERSION-$SHA
BIN=$DIR/haproxy

# is_version BINARY: it runs (its shared libraries are there) and reports
# $VERSION (output captured first: grep -q closing the pipe early would make
# the pipeline fail under pipefail).
is_version() {
	local out
	out=$("$1" -v 2>/dev/null) || return 1
	# "HAProxy version 3.4.0-64a335366 2026/06/03 ..." (a git archive adds the commit)
	[[ $out == "HAProxy version $VERSION "* || $out == "HAProxy version $VERSION-"* ]]
}
usable() { [ -x "$BIN" ] && is_version "$BIN"; }

if usable; then echo "$BIN"; exit 0; fi

mkdir -p "$DIR"
exec 9>"$DIR/.lock"
if ! flock -w 1200 9; then die "timed out waiting for another build ($DIR/.lock)"; fi
# another run may have finished the build while this one waited for the lock
if usable; then echo "$BIN"; exit 0; fi

# --- build packages ----------------------------------------------------------
missing=()
for p in libpcre2-dev zlib1g-dev libssl-dev make gcc libc6-dev; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	[ "$(id -u)" = 0 ] || die "missing packages ${missing[*]} (run as root to install them)"
	say "installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	alog=$(mktemp)
	if ! apt-get -o DPkg::Lock::Timeout=300 update -q >"$alog" 2>&1 ||
	   ! apt-get -o DPkg::Lock::Timeout=300 install -y -q --no-install-recommends "${missing[@]}" >>"$alog" 2>&1; then
		tail -20 "$alog" | sed 's/^/haproxy.sh: | /' >&2
		rm -f "$alog"
		die "apt-get could not install ${missing[*]}"
	fi
	rm -f "$alog"
fi

# --- build -------------------------------------------------------------------
# under the lock no other build of this key runs: a .build.* left here is a
# killed run's
rm -rf "$DIR"/.build.* "$DIR"/.haproxy.*
TMP=$(mktemp -d "$DIR/.build.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
trap 'exit 143' TERM INT HUP
say "building HAProxy $VERSION in $TMP (a few minutes, once per machine; log: $TMP/build.log)"
start=$(date +%s)
tar xzf "$TARBALL" -C "$TMP" || die "cannot unpack $TARBALL"
SRC=$TMP/haproxy-$VERSION
[ -f "$SRC/Makefile" ] || die "$TARBALL has no haproxy-$VERSION/Makefile"
jobs=$(nproc 2>/dev/null || echo 2)
if ! make -C "$SRC" -j"$jobs" TARGET=linux-glibc USE_OPENSSL=1 USE_PCRE2=1 USE_ZLIB=1 \
		>"$TMP/build.log" 2>&1; then
	tail -30 "$TMP/build.log" | sed 's/^/haproxy.sh: | /' >&2
	die "build of HAProxy $VERSION failed"
fi
is_version "$SRC/haproxy" ||
	die "the built binary does not report HAProxy version $VERSION"
# same file system: the rename is atomic
cp "$SRC/haproxy" "$DIR/.haproxy.$$"
chmod 755 "$DIR/.haproxy.$$"
mv -f "$DIR/.haproxy.$$" "$BIN"
say "built $BIN in $(( $(date +%s) - start )) s"
echo "$BIN"
