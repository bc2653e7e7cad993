#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Prints debian/changelog made from NEWS.md: one entry per "## X.Y.Z
# (YYYY-MM-DD)" section, newest first, each top-level "- " item of the section
# one "  * " line (wrapped at 78 columns), signed by MAINTAINER on that date.
# The top section must be the version of the file VERSION.
#   make changelog                  rewrites debian/changelog
#   scripts/changelog.sh --check    exits 1 when debian/changelog differs
# Environment: VERSION (default: the file VERSION), MAINTAINER (default: the
# Makefile's).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VERSION=${VERSION:-$(cat "$ROOT/VERSION")}
MAINTAINER=${MAINTAINER:-$(make -s -C "$ROOT" --no-print-directory print-maintainer)}

if [ "${1:-}" = --check ]; then
	want=$(MAINTAINER=$MAINTAINER VERSION=$VERSION bash "$0") || exit 1
	if ! diff -u "$ROOT/debian/changelog" <(printf '%s\n' "$want"); then
		echo "changelog.sh: debian/changelog is not NEWS.md's (run make changelog)" >&2
		exit 1
	fi
	exit 0
fi

python3 - "$ROOT/NEWS.md" "$VERSION" "$MAINTAINER" <<'PY'
import re, sys, textwrap, email.utils, datetime
news, version, maint = sys.argv[1], sys.argv[2], sys.argv[3]
sections, cur = [], None
for line in open(news, encoding="utf-8"):
    line = line.rstrip("\n")
    m = re.match(r"^## (\S+) \((\d{4}-\d\d-\d\d)\)\s*$", line)
    if m:
        cur = {"v": m.group(1), "d": m.group(2), "items": []}
        sections.append(cur)
    elif line.startswith("## "):
        sys.exit("changelog.sh: NEWS.md: a section title must be '## X.Y.Z (YYYY-MM-DD)': " + line)
    elif cur is not None and line.startswith("- "):
        cur["items"].append(line[2:].strip())
    elif cur is not None and line.startswith("  ") and line.strip() and cur["items"]:
        cur["items"][-1] += " " + line.strip()
if not sections:
    sys.exit("changelog.sh: NEWS.md has no '## X.Y.Z (YYYY-MM-DD)' section")
if sections[0]["v"] != version:
    sys.exit("changelog.sh: NEWS.md's newest section is %s, the file VERSION says %s" % (sections[0]["v"], version))
out = []
for s in sections:
    if not s["items"]:
        sys.exit("changelog.sh: NEWS.md section %s lists no '- ' item" % s["v"])
    d = datetime.datetime.strptime(s["d"], "%Y-%m-%d").replace(hour=12, tzinfo=datetime.timezone.utc)
    out.append("acme-spoa (%s) unstable; urgency=medium\n" % s["v"])
    for it in s["items"]:
        it = it.replace("`", "")
        out.append(textwrap.fill(it, width=78, initial_indent="  * ", subsequent_indent="    ",
                                 break_on_hyphens=False))
    out.append("\n -- %s  %s\n" % (maint, email.utils.format_datetime(d)))
sys.stdout.write("\n".join(out))
PY
