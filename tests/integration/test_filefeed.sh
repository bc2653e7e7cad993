#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The file store's change feed (storage/storage_file_feed.c, issue 21): an
# agent on file storage (preload all) runs with HAProxy and Pebble; `acme-spoa
# import crt-dir:DIR`, another process on the same directory, writes two
# certificates beside it, and HAProxy serves both within a few seconds, with
# no restart of the agent (the agent polls the feed file every second). A
# second import of a newer certificate for one of them replaces it the same
# way. Certificates made here with openssl (a test CA of our own).
set -u
source "$(dirname "$0")/lib.sh"
it_init

PORT80=$(free_port)
start_pebble "$PORT80" || { not_ok "pebble starts"; it_summary; exit 1; }
SPOA_PORT=$(free_port)
HAP_HTTP=$PORT80
haproxy_config "$SPOA_PORT"
agent_config
STORE=$IT_DIR/store
start_agent || { not_ok "the agent starts"; it_summary; exit 1; }
start_haproxy || echo "# haproxy did not start"
wait_for 10 agent_up_in_haproxy
check "the agent on file storage is UP in HAProxy" agent_up_in_haproxy
AGENT0=$AGENT_PID

# ---- certificates for the import: a CA of our own, 30-day leaves -----------------
DIR=$IT_DIR/crt
mkdir -p "$DIR"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
	-subj "/CN=filefeed test CA" -keyout "$IT_DIR/ca.key" -out "$IT_DIR/ca.crt" 2>/dev/null
# leaf HOST OUT: a bundle (leaf, CA, key) for HOST signed by the CA
leaf() {
	openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$1" \
		-keyout "$IT_DIR/$1.key" -out "$IT_DIR/$1.csr" 2>/dev/null &&
	openssl x509 -req -in "$IT_DIR/$1.csr" -CA "$IT_DIR/ca.crt" -CAkey "$IT_DIR/ca.key" \
		-set_serial "0x7$(openssl rand -hex 11)0" -days 30 \
		-extfile <(printf 'subjectAltName=DNS:%s\n' "$1") -out "$IT_DIR/$1.crt" 2>/dev/null &&
	cat "$IT_DIR/$1.crt" "$IT_DIR/ca.crt" "$IT_DIR/$1.key" > "$2"
}
serial_of() { openssl x509 -noout -serial -in "$1" 2>/dev/null | cut -d= -f2; }
# hap_serial HOST: the serial of HOST's certificate in HAProxy (runtime API,
# no handshake: an SNI would make the agent look HOST up by itself)
hap_serial() {
	hap_cmd "show ssl cert $HAP_CERTS/$1.pem" | awk '$1 == "Serial:" { print $2; exit }'
}
served_serial() {
	echo | timeout 5 openssl s_client -connect "127.0.0.1:$HAP_HTTPS" -servername "$1" 2>/dev/null |
		openssl x509 -noout -serial 2>/dev/null | cut -d= -f2
}
leaf f1.test "$DIR/f1.test.pem" && leaf f2.test "$DIR/f2.test.pem"
check "two bundles made with openssl (f1.test, f2.test)" test -s "$DIR/f1.test.pem" -a -s "$DIR/f2.test.pem"
S1=$(serial_of "$DIR/f1.test.pem"); S2=$(serial_of "$DIR/f2.test.pem")
check "before the import neither name is stored nor in HAProxy" \
	test ! -e "$STORE/certs/f1.test" -a ! -e "$STORE/certs/f2.test" -a -z "$(hap_serial f1.test)"
ORDERS0=$(grep -c 'POST /order-plz' "$IT_DIR/pebble.log")
CH0=$(metric acme_spoa_feed_changes_total)

# ---- import beside the running agent ----------------------------------------------
imp() { "$IT_BIN" -c "$AGENT_CONF" import "$@" >"$IT_DIR/import.out" 2>>"$IT_DIR/import-stderr.log"; }
line() { awk -v k="  $1:" 'index($0, k) == 1 { print $NF; exit }' "$IT_DIR/import.out"; }
T0=$(it_now_us)
imp "crt-dir:$DIR"
check "import crt-dir: 2 imported into the file store while the agent runs" test "$(line imported)" = 2
check "the feed file holds both names" grep -q ' f1.test +' "$STORE/#feeds/certs"
both_loaded() { [ "$(hap_serial f1.test)" = "$S1" ] && [ "$(hap_serial f2.test)" = "$S2" ]; }
wait_for 5 both_loaded
T1=$(it_now_us)
echo "# imported names served $(( (T1 - T0) / 1000 )) ms after the import started"
check "HAProxy serves f1.test with the imported serial $S1" test "$(served_serial f1.test)" = "$S1"
check "HAProxy serves f2.test with the imported serial $S2" test "$(served_serial f2.test)" = "$S2"
check "... within 5 s of the import" test $(( (T1 - T0) / 1000 )) -lt 5000
check "the agent was not restarted" kill -0 "$AGENT0"
check "it learnt them from the change feed (feed_changes +2)" \
	delta_ge 2 "$CH0" "$(metric acme_spoa_feed_changes_total)"
check "no order at Pebble for them" test "$(grep -c 'POST /order-plz' "$IT_DIR/pebble.log")" = "$ORDERS0"

# ---- a newer certificate for f1.test replaces the served one -------------------------
sleep 1	# a later notBefore: the import keeps what is as new or newer
DIR2=$IT_DIR/crt2
mkdir -p "$DIR2"
leaf f1.test "$DIR2/f1.test.pem"
S1B=$(serial_of "$DIR2/f1.test.pem")
imp "crt-dir:$DIR2"
check "a newer f1.test imported" test "$(line imported)" = 1
newer_loaded() { [ "$(hap_serial f1.test)" = "$S1B" ]; }
wait_for 5 newer_loaded
check "HAProxy serves the newer f1.test ($S1B) without a restart" test "$(served_serial f1.test)" = "$S1B"

# ---- at rest: polls, no changes ------------------------------------------------------
R0=$(metric acme_spoa_feed_reads_total); C0=$(metric acme_spoa_feed_changes_total)
sleep 2.5
R1=$(metric acme_spoa_feed_reads_total); C1=$(metric acme_spoa_feed_changes_total)
check "at rest the feed is polled every second (reads +2 or more in 2.5 s)" delta_ge 2 "$R0" "$R1"
check "... and no change is learnt" delta_is 0 "$C0" "$C1"
check "the agent stops cleanly" agent_stops_cleanly
it_summary
