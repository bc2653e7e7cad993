#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Runs the unit tests (cmocka binaries) and the integration scripts, then prints
# one closing line "N passed, N failed, N skipped" over everything that ran. A
# skip is never a pass: it is counted apart (cmocka's skip(), lib.sh's skip).
#   tests/run.sh unit|integration|all
set -u
cd "$(dirname "$0")/.."
what=${1:-all}
BUILD=${BUILD:-build}
export BUILD BIN=${BIN:-acme-spoa}
pass=0 fail=0 skipped=0 failed=() skippers=()

count_cmocka() {   # parses a cmocka summary from $1: "passed failed skipped"
	local p f s
	p=$(grep -oE '\[  PASSED  \] [0-9]+' "$1" | awk '{s+=$4} END {print s+0}')
	f=$(grep -oE '\[  FAILED  \] [0-9]+ test' "$1" | awk '{s+=$4} END {print s+0}')
	s=$(grep -oE '\[  SKIPPED \] [0-9]+ test' "$1" | awk '{s+=$4} END {print s+0}')
	echo "$p $f $s"
}

run_one() {   # name, command...
	local name=$1 log rc p f s line; shift
	log=$(mktemp)
	echo "=== $name"
	"$@" 2>&1 | tee "$log"
	rc=${PIPESTATUS[0]}
	if grep -qE '^\[==========\]' "$log"; then
		read -r p f s < <(count_cmocka "$log")
	else
		# lib.sh's it_summary: "N passed, N failed, N skipped" (the last one)
		line=$(grep -E '^[0-9]+ passed, [0-9]+ failed(, [0-9]+ skipped)?$' "$log" | tail -1)
		read -r p f s < <(sed -E 's/^([0-9]+) passed, ([0-9]+) failed(, ([0-9]+) skipped)?$/\1 \2 \4/' <<<"$line")
		p=${p:-0} f=${f:-0} s=${s:-0}
	fi
	if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi   # crashed or failed without counting
	if [ $((p + f + s)) -eq 0 ]; then f=1; echo "$name: ran no test"; fi
	pass=$((pass + p)); fail=$((fail + f)); skipped=$((skipped + s))
	[ "$f" -eq 0 ] || failed+=("$name")
	[ "$s" -eq 0 ] || skippers+=("$name:$s")
	rm -f "$log"
}

if [ "$what" = unit ] || [ "$what" = all ]; then
	for t in "$BUILD"/tests/test_*; do
		[ -x "$t" ] || continue
		run_one "unit/$(basename "$t")" timeout 300 "$t"
	done
fi
if [ "$what" = integration ] || [ "$what" = all ]; then
	for t in tests/integration/test_*.sh; do
		[ -f "$t" ] || continue
		run_one "integration/$(basename "$t" .sh)" timeout 600 bash "$t"
	done
fi
echo
[ ${#failed[@]} -eq 0 ] || echo "failed suites: ${failed[*]}"
[ ${#skippers[@]} -eq 0 ] || echo "suites with skips: ${skippers[*]}"
echo "$pass passed, $fail failed, $skipped skipped"
[ "$fail" -eq 0 ] && [ "$pass" -gt 0 ]
