#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# make dist: the source tarball acme-spoa-<VERSION>.tar.gz in ${DIST_OUT:-build},
# its path on the last line of stdout. Reproducible: the same tree gives the
# same bytes (files in name order, every mtime the last commit's, owner 0/0
# numeric, modes normalised, gzip without name or time). The tarball is
# enough to build, package and test (make, make test, make deb): it holds
# the files git tracks, and needs no .git.
#
# From a clone: the files git tracks, as they are in the work tree (a change
# not committed yet is in it, and said on stderr). From an unpacked tarball
# (no .git): every file but build output, with the date of the tarball's
# files (they all carry the date of the commit it was made from).
# SOURCE_DATE_EPOCH, when set, is the date instead.
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=${VERSION:-$(cat VERSION)}
OUT=${DIST_OUT:-build}
NAME=acme-spoa-$VERSION

list=$(mktemp)
trap 'rm -f "$list"' EXIT
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
	git ls-files -z | while IFS= read -r -d '' f; do
		[ -e "$f" ] && printf '%s\0' "$f"
	done >"$list"
	epoch=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct)}
	if [ -n "$(git status --porcelain --untracked-files=no)" ]; then
		echo "dist: the work tree has changes not committed: they are in the tarball" >&2
	fi
else
	find . \( -name .git -o -name 'build' -o -name 'build-*' -o -path ./acme-spoa \) -prune \
		-o \( -type f -o -type l \) -print0 | sed -z 's#^\./##' >"$list"
	epoch=${SOURCE_DATE_EPOCH:-$(xargs -0 stat -c %Y <"$list" | sort -n | tail -1)}
fi
[ -s "$list" ] || { echo "dist: no files to pack" >&2; exit 1; }
# tar keeps the order of a list (--sort only orders what it finds in directories)
LC_ALL=C sort -z -o "$list" "$list"

mkdir -p "$OUT"
tmp=$OUT/.$NAME.tar.gz.$$
# modes: what git keeps (755 or 644)
tar --null -T "$list" --format=gnu \
	--mtime="@$epoch" --owner=0 --group=0 --numeric-owner \
	--mode='u+rw,go=rX,a-s' --transform="s#^#$NAME/#S" -cf - |
	gzip -9 -n >"$tmp"
mv -f "$tmp" "$OUT/$NAME.tar.gz"
echo "$OUT/$NAME.tar.gz"
