#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Builds every tests/fuzz/fuzz_*.c as a libFuzzer binary (ASan + UBSan) into
# build-fuzz/, writes a small seed corpus for each, runs each for FUZZ_SECONDS
# (default 60) and exits non-zero if any target crashes.
#   FUZZ_SECONDS=30 bash tests/fuzz/run.sh            all targets
#   bash tests/fuzz/run.sh fuzz_spop                  one target
set -euo pipefail

cd "$(dirname "$0")/../.."
OUT=build-fuzz
SECS=${FUZZ_SECONDS:-60}
CC=${FUZZ_CC:-clang}
CFLAGS=(-g -O1 -std=c11 -I. -D_GNU_SOURCE -fsanitize=fuzzer,address,undefined
        -fno-sanitize-recover=undefined -fno-omit-frame-pointer)

if ! command -v "$CC" >/dev/null 2>&1; then
	echo "fuzz: $CC not found (bash scripts/deps.sh installs clang)" >&2
	exit 1
fi

# The library sources each target needs. A target not listed here is linked
# with the whole library and its packages.
srcs_for() {
	case "$1" in
	fuzz_spop) echo "spoa/spop.c lib/log.c" ;;
	*) echo "" ;;
	esac
}

# Seed corpus: frames as HAProxy sends them (SPOE.txt section 3), with their
# 4-byte length prefix.
write_seeds() {
	local name=$1 dir=$2
	mkdir -p "$dir"
	case "$name" in
	fuzz_spop)
		local hello notify disc ack
		hello='\x00\x00\x00\x4b\x01\x00\x00\x00\x01\x00\x00\x12supported-versions\x08\x032.0\x0emax-frame-size\x03\xfc\xf0\x06\x0ccapabilities\x08\x0apipelining'
		notify='\x00\x00\x00\x43\x03\x00\x00\x00\x01\xfc\x03\x07\x08acme-sni\x01\x03sni\x08\x06a.test\x0bacme-http01\x02\x04host\x08\x06a.test\x05token\x08\x03abc'
		disc='\x00\x00\x00\x22\x02\x00\x00\x00\x01\x00\x00\x0bstatus-code\x03\x00\x07message\x08\x03bye'
		ack='\x00\x00\x00\x17\x67\x00\x00\x00\x01\x01\x01\x01\x03\x02\x07keyauth\x08\x03a.b'
		printf "$hello" >"$dir/hello"
		printf "$notify" >"$dir/notify"
		printf "$disc" >"$dir/disconnect"
		printf "$ack" >"$dir/ack"
		printf "$hello$notify$notify$disc" >"$dir/session"
		printf '\x00\x00\x00\x12\x01\x00\x00\x00\x01\x00\x00\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x7f' >"$dir/varint-overflow"
		printf '\x00\x00\x00\x12\x03\x00\x00\x00\x01\x01\x01\x08acme-sni\x03\x00' >"$dir/lying-nargs"
		;;
	fuzz_bundle)
		# a good bundle (leaf + CA + key, valid around 2025), the same with
		# a second key before ours, with the key of another certificate, and
		# a certificate alone; EC keys keep the inputs short
		local t
		t=$(mktemp -d)
		openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
			-subj /CN=Fuzz-CA -keyout "$t/ca.key" -out "$t/ca.pem" 2>/dev/null
		openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=a.test \
			-keyout "$t/leaf.key" -out "$t/leaf.csr" 2>/dev/null
		printf 'subjectAltName=DNS:a.test,DNS:*.w.test\n' >"$t/ext"
		openssl x509 -req -in "$t/leaf.csr" -CA "$t/ca.pem" -CAkey "$t/ca.key" -days 3650 \
			-extfile "$t/ext" -out "$t/leaf.pem" 2>/dev/null
		{ printf 'host=a.test\n'; cat "$t/leaf.pem" "$t/ca.pem" "$t/leaf.key"; } >"$dir/good"
		{ printf 'host=*.w.test\n'; cat "$t/leaf.pem" "$t/ca.pem" "$t/leaf.key"; } >"$dir/wildcard"
		{ printf 'host=a.test\n'; cat "$t/ca.key" "$t/leaf.pem" "$t/ca.pem" "$t/leaf.key"; } >"$dir/two-keys"
		{ printf 'host=a.test\n'; cat "$t/leaf.pem" "$t/ca.pem" "$t/ca.key"; } >"$dir/wrong-key"
		cat "$t/leaf.pem" >"$dir/cert-only"
		rm -rf "$t"
		;;
	fuzz_admin)
		printf '{"host":"a.example.com","test_http_challenge_flow":true}' >"$dir/json"
		printf '{"host":"*.w.example.com"}' >"$dir/json-wildcard"
		printf '[1,{"host":null}]' >"$dir/json-array"
		printf '{"host":"A.Example.COM","host":"b.example.com"}' >"$dir/json-dup"
		printf '0x7f.0x1' >"$dir/host-ip"
		printf 'xn--bcher-kva.example' >"$dir/host-idn"
		;;
	*)
		printf 'seed' >"$dir/seed"
		;;
	esac
}

targets=()
if [ $# -gt 0 ]; then
	targets=("$@")
else
	for f in tests/fuzz/fuzz_*.c; do
		[ -e "$f" ] || continue
		targets+=("$(basename "$f" .c)")
	done
fi
if [ ${#targets[@]} -eq 0 ]; then
	echo "fuzz: no targets"
	exit 0
fi

mkdir -p "$OUT"
failed=()
for t in "${targets[@]}"; do
	src=tests/fuzz/$t.c
	srcs=$(srcs_for "$t")
	libs=()
	if [ -z "$srcs" ]; then
		srcs=$(ls lib/*.c core/*.c spoa/*.c acme/*.c dns/*.c runtime/*.c storage/*.c admin/*.c 2>/dev/null | grep -v '^core/main\.c$' || true)
		read -r -a libs <<<"$(pkg-config --libs openssl libcurl jansson hiredis libmicrohttpd ldns libpsl 2>/dev/null) -lev -lpthread"
	fi
	echo "fuzz: building $t"
	# shellcheck disable=SC2086
	"$CC" "${CFLAGS[@]}" -o "$OUT/$t" "$src" $srcs "${libs[@]}"
	seeds=$OUT/seeds/$t
	corpus=$OUT/corpus/$t
	arts=$OUT/artifacts/$t
	write_seeds "$t" "$seeds"
	mkdir -p "$corpus" "$arts"
	echo "fuzz: running $t for ${SECS}s"
	if ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
		"$OUT/$t" -max_total_time="$SECS" -timeout=10 -max_len=4096 -print_final_stats=1 \
		-artifact_prefix="$arts/" "$corpus" "$seeds" >"$OUT/$t.log" 2>&1; then
		echo "fuzz: $t ok ($(grep -m1 -o 'stat::number_of_executed_units: *[0-9]*' "$OUT/$t.log" | grep -o '[0-9]*$' || echo '?') runs)"
	else
		echo "fuzz: $t FAILED, see $OUT/$t.log and $arts/" >&2
		tail -n 40 "$OUT/$t.log" >&2
		failed+=("$t")
	fi
done

if [ ${#failed[@]} -gt 0 ]; then
	echo "fuzz: ${#failed[@]} failed, ${#targets[@]} run: ${failed[*]}"
	exit 1
fi
echo "fuzz: ${#targets[@]} passed, 0 failed"
