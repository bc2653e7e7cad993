#!/usr/bin/env bash
# make deb: builds the Debian package with dpkg-buildpackage -us -uc -b from a
# copy of the source tree in build/deb/src/ (dpkg-buildpackage writes its
# output to the parent of the tree it builds), then puts the .deb, .buildinfo
# and .changes in build/deb/ and prints the .deb's path on the last line.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${DEB_OUT:-build/deb}
version=$(dpkg-parsechangelog -S Version)
src=$out/src/acme-spoa-$version

rm -rf "$out"
mkdir -p "$src"
# the files git knows (committed or not) plus new ones not ignored; no build output
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
	git ls-files -z --cached --others --exclude-standard |
		while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done |
		xargs -0 cp --parents -t "$src"
else
	tar --exclude=./build --exclude=./build-asan --exclude=./build-fuzz --exclude=./acme-spoa \
		-cf - . | tar -C "$src" -xf -
fi
(cd "$src" && env -u BUILD -u BIN -u SAN -u OPT dpkg-buildpackage -us -uc -b) >"$out/build.log" 2>&1 || {
	tail -30 "$out/build.log" >&2
	echo "deb: dpkg-buildpackage failed (log: $out/build.log)" >&2
	exit 1
}
mv "$out"/src/*.deb "$out"/src/*.changes "$out"/src/*.buildinfo "$out"/
rm -rf "$out/src"
ls "$out"/acme-spoa_"$version"_*.deb
