# SPDX-License-Identifier: Apache-2.0
# Sourced by tests/bench/run.sh (uses its lib, say, fail, bench_row).
# 7. Import: BENCH_N_IMPORT (10000) certificates in a crt directory (written
#    by gen_certs --cert-dir: EC P-256 leaf + test CA + key each) imported by
#    `acme-spoa import crt-dir:DIR` into file storage and into Redis, each
#    beside gen_certs writing the same number straight into the same kind of
#    store (the storage writes alone, no reading, checking or comparing).
#    Bar: under 30 s each. A second import of the same directory (nothing to
#    write, every name already present) is timed too.
N_IMPORT=${BENCH_N_IMPORT:-10000}
# imp_timed OUT ERR CPUFILE CMD...: runs CMD; CPUFILE gets its CPU seconds
# (user + system, from the subshell's "times": independent of the load of a
# shared machine, unlike the wall clock)
imp_timed() {
	local out=$1 err=$2 cpu=$3; shift 3
	( "$@" >"$out" 2>"$err"; rc=$?
	  times >"$cpu.raw"	# not in a pipe: that would be a new subshell
	  awk 'NR == 2 { gsub(/[ms]/, " "); print $1 * 60 + $2 + $3 * 60 + $4 }' "$cpu.raw" >"$cpu"
	  exit $rc )
}
import_one() {   # KIND (file|redis): sets IMP_T IMP_T2 IMP_REF
	local kind=$1 d=$IT_DIR/import-$1 port="" rpid="" spec storage t0
	IMP_T="" IMP_T2="" IMP_REF="" IMP_CPU="" IMP_LOAD=""
	mkdir -p "$d"
	if [ "$kind" = redis ]; then
		port=$(free_port)
		redis-server --bind 127.0.0.1 --port "$port" --save '' --appendonly no --dir "$d" \
			>"$d/redis.log" 2>&1 &
		rpid=$!
		IT_PIDS+=($rpid)
		wait_for 10 redis-cli -p "$port" ping || { fail "7 import $kind: redis does not start"; return; }
		spec="redis:127.0.0.1:$port:ref"
		storage="\"storage\": \"redis\", \"storage_config\": { \"redis\": { \"port\": $port, \"namespace\": \"imp\" } }"
	else
		spec="file:$d/ref-store"
		storage="\"storage\": \"file\", \"storage_config\": { \"file\": { \"path\": \"$d/store\" } }"
	fi
	# the source directory, and the reference: the same writes by gen_certs
	mkdir -p "$d/crt"
	t0=$(bench_now)
	"$TOOLS/gen_certs" --store "$spec" --count "$N_IMPORT" --domain imp.test --cert-dir "$d/crt" \
		>"$d/gen.log" 2>&1 || { fail "7 import $kind: gen_certs failed"; [ -n "$rpid" ] && stop_pid "$rpid"; return; }
	IMP_REF=$(bench_dt "$t0" "$(bench_now)")
	cat >"$d/agent.json" <<JSON
{
  "account_email": "bench@example.com",
  "api_uri": "https://127.0.0.1:9/directory",
  "tos_accepted": true,
  "cert_type": "ecc",
  $storage,
  "haproxy": { "runtime": ["unix:$d/no-haproxy.sock"], "cert_dir": "$d/certs" }
}
JSON
	t0=$(bench_now)
	if imp_timed "$d/import.out" "$d/import.err" "$d/cpu1" "$IT_BIN" -c "$d/agent.json" import "crt-dir:$d/crt" &&
	   grep -q "^  imported: $N_IMPORT\$" "$d/import.out"; then
		IMP_T=$(bench_dt "$t0" "$(bench_now)")
	else
		fail "7 import $kind: $(tail -3 "$d/import.out" "$d/import.err" | tr '\n' ' ')"
	fi
	t0=$(bench_now)
	if imp_timed "$d/import2.out" "$d/import2.err" "$d/cpu2" "$IT_BIN" -c "$d/agent.json" import "crt-dir:$d/crt" &&
	   grep -q "^  already present: $N_IMPORT\$" "$d/import2.out"; then
		IMP_T2=$(bench_dt "$t0" "$(bench_now)")
	else
		fail "7 import $kind again: $(tail -3 "$d/import2.out" | tr '\n' ' ')"
	fi
	IMP_CPU=$(cat "$d/cpu1" 2>/dev/null)
	IMP_LOAD=$(cut -d' ' -f1 /proc/loadavg)
	say "import $kind: $N_IMPORT certificates in ${IMP_T:-?} s (CPU ${IMP_CPU:-?} s), again (all present) ${IMP_T2:-?} s (CPU $(cat "$d/cpu2" 2>/dev/null) s); gen_certs writing them ${IMP_REF} s; load average $IMP_LOAD"
	[ -n "$IMP_T" ] && awk -v t="$IMP_T" 'BEGIN { exit !(t >= 30) }' && fail "7 import $kind: $IMP_T s, over the 30 s bar"
	[ -n "$rpid" ] && stop_pid "$rpid"
	rm -rf "$d/crt" "$d/store" "$d/ref-store"
}
for kind in file redis; do
	import_one "$kind"
	bench_row "7 import $N_IMPORT certs, $kind storage" "${IMP_T:-FAILED}${IMP_T:+ s, CPU ${IMP_CPU:-?} s}" \
		"${IMP_REF:-?} s gen_certs writes" "$(bench_ratio "$IMP_T" "$IMP_REF") (import/raw writes)" \
		"acme-spoa import crt-dir:DIR of $N_IMPORT PEMs (gen_certs --cert-dir: EC P-256 leaf + test CA + key): read, crypto_bundle_check_info each, compare with storage (meta/ then certs/), write meta/ del, certs/, meta/, change feed; reference: gen_certs writing the same $N_IMPORT into a $kind store (certs/, meta/, feed; no read, no check); again: ${IMP_T2:-?} s (all already present); CPU = user + system of the import process (its 4 checking threads included); load average at the end $IMP_LOAD; bar < 30 s"
done
