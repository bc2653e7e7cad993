#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# make deb: builds the Debian package with dpkg-buildpackage -us -uc -b from a
# copy of the source tree in build/deb/src/ (dpkg-buildpackage writes its
# output to the parent of the tree it builds), then puts the .deb, .buildinfo
# and .changes in build/deb/ and prints the .deb's path on the last line.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${DEB_OUT:-build/deb}
# the version is the file VERSION's, the maintainer make's MAINTAINER: the
# copy's debian/changelog is made from NEWS.md with them (scripts/changelog.sh)
# and its debian/control names that maintainer
version=${VERSION:-$(cat VERSION)}
MAINTAINER=${MAINTAINER:-$(make -s --no-print-directory print-maintainer)}
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
VERSION=$version MAINTAINER=$MAINTAINER bash scripts/changelog.sh > "$src/debian/changelog"
M=$MAINTAINER python3 -c '
import os, re, sys
p = sys.argv[1]; s = open(p).read()
open(p, "w").write(re.sub(r"(?m)^Maintainer: .*$", lambda m: "Maintainer: " + os.environ["M"], s))' "$src/debian/control"
got=$(cd "$src" && dpkg-parsechangelog -S Version)
[ "$got" = "$version" ] || { echo "deb: debian/changelog says $got, VERSION $version" >&2; exit 1; }
(cd "$src" && env -u BUILD -u BIN -u SAN -u OPT dpkg-buildpackage -us -uc -b) >"$out/build.log" 2>&1 || {
	tail -30 "$out/build.log" >&2
	echo "deb: dpkg-buildpackage failed (log: $out/build.log)" >&2
	exit 1
}
mv "$out"/src/*.deb "$out"/src/*.changes "$out"/src/*.buildinfo "$out"/
rm -rf "$out/src"
ls "$out"/acme-spoa_"$version"_*.deb
