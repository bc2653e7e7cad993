#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The SPDX license line of every source file (the project is Apache-2.0, see
# LICENSE):
#   scripts/spdx.sh            adds "SPDX-License-Identifier: Apache-2.0" where
#                              it is missing (idempotent: a file that has it in
#                              its first lines is left alone)
#   scripts/spdx.sh --check    lists the files without it, exits 1 if any
#
# Source files: *.c *.h *.sh, Makefile, .ci/run, debian/rules, postinst,
# postrm, *.service, *.cfg, *.conf, *.yml, *.8, anywhere in the tree but build
# output and .git (it runs from a clone or from an unpacked `make dist`).
# Where the line goes: C files begin with "/* SPDX-...: Apache-2.0 */"; files
# with a "#!" line get "# SPDX-..." right after it; others begin with it in
# their comment syntax ("#", or '.\"' for roff). JSON files take no comment.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
TAG="SPDX-License-Identifier: Apache-2.0"

sources() {
	find . \( -name .git -o -name 'build' -o -name 'build-*' \) -prune -o -type f \
		\( -name '*.c' -o -name '*.h' -o -name '*.sh' -o -name Makefile -o -path ./.ci/run \
		   -o -path ./debian/rules -o -path ./debian/postinst -o -path ./debian/postrm \
		   -o -name '*.service' -o -name '*.cfg' -o -name '*.conf' -o -name '*.yml' \
		   -o -name '*.8' \) -print | sed 's#^\./##' | LC_ALL=C sort
}

# has FILE: the tag within its first 5 lines (after a "#!" line and a header)
# (a line of its own, in one of the three forms add() writes)
has() { head -n 5 "$1" | grep -qxE "(/\\* $TAG \\*/|# $TAG|\\.\\\\\" $TAG)"; }

add() {
	local f=$1 tmp line
	case $f in
	*.c|*.h) line="/* $TAG */" ;;
	*.8) line=".\\\" $TAG" ;;
	*) line="# $TAG" ;;
	esac
	tmp=$(mktemp "$f.spdx.XXXXXX")
	if head -n 1 "$f" | grep -q '^#!'; then
		{ head -n 1 "$f"; printf '%s\n' "$line"; tail -n +2 "$f"; } >"$tmp"
	else
		{ printf '%s\n' "$line"; cat "$f"; } >"$tmp"
	fi
	chmod --reference="$f" "$tmp"
	mv -f "$tmp" "$f"
}

if [ "${1:-}" = --check ]; then
	missing=0
	while IFS= read -r f; do
		has "$f" || { echo "no SPDX line: $f"; missing=$((missing + 1)); }
	done < <(sources)
	[ "$missing" = 0 ] || { echo "spdx.sh: $missing source files without \"$TAG\" (run scripts/spdx.sh)" >&2; exit 1; }
	echo "spdx.sh: every source file has \"$TAG\" ($(sources | wc -l) files)"
	exit 0
fi
[ $# = 0 ] || { echo "usage: $0 [--check]" >&2; exit 1; }
n=0
while IFS= read -r f; do
	has "$f" && continue
	add "$f"
	n=$((n + 1))
done < <(sources)
echo "spdx.sh: added the SPDX line to $n files"
