#!/usr/bin/env bash
# Runs the unit tests (cmocka binaries) and the integration scripts, then prints
# one closing line "N passed, N failed" over everything that ran.
#   tests/run.sh unit|integration|all
set -u
cd "$(dirname "$0")/.."
what=${1:-all}
BUILD=${BUILD:-build}
export BUILD BIN=${BIN:-acme-spoa}
pass=0 fail=0 failed=()

count_cmocka() {   # parses a cmocka summary from $1
	local p f
	p=$(grep -oE '\[  PASSED  \] [0-9]+' "$1" | awk '{s+=$4} END {print s+0}')
	f=$(grep -oE '\[  FAILED  \] [0-9]+ test' "$1" | awk '{s+=$4} END {print s+0}')
	echo "$p $f"
}

run_one() {   # name, command...
	local name=$1 log rc p f; shift
	log=$(mktemp)
	echo "=== $name"
	"$@" 2>&1 | tee "$log"
	rc=${PIPESTATUS[0]}
	if grep -qE '^\[==========\]' "$log"; then
		read -r p f < <(count_cmocka "$log")
	else
		p=$(grep -oE '^[0-9]+ passed, [0-9]+ failed' "$log" | tail -1 | awk '{print $1}')
		f=$(grep -oE '^[0-9]+ passed, [0-9]+ failed' "$log" | tail -1 | awk '{print $3}')
		p=${p:-0} f=${f:-0}
	fi
	if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi   # crashed or failed without counting
	if [ $((p + f)) -eq 0 ]; then f=1; echo "$name: ran no test"; fi
	pass=$((pass + p)); fail=$((fail + f))
	[ "$f" -eq 0 ] || failed+=("$name")
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
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ] && [ "$pass" -gt 0 ]
