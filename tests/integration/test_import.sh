#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# acme-spoa import / export (core/import*.c, core/export.c) with the real
# clients of Debian 12 against Pebble (2.10, for ARI) on loopback: certbot (standalone), lego
# and Caddy 2.6 each obtain certificates into their own storage; the import
# takes them all (and certbot's account); HAProxy then serves each name with
# the imported serial and Pebble sees no new order; the next renewal signs with
# the imported account (same account URL, no newAccount). A mixed crt
# directory is sorted; import + export + `haproxy -c` holds every name.
#
# Two sources have no Debian package, and are written here per their own
# documented layouts instead (with certificates Pebble issued to lego):
#   - Kong's acme plugin (kong/plugins/acme/client.lua, lua-resty-acme
#     storage/redis.lua): records "kong_acme:cert_key:<host>" and
#     "kong_acme:account:<api_uri>:<base64 email>" in a real redis-server,
#     under a namespace ("<ns>::<key>");
#   - acme.sh: <home>/<domain>_ecc/{<domain>.conf,<domain>.cer,<domain>.key,
#     ca.cer,fullchain.cer} and <home>/ca/<host>/<path>/{account.key,ca.conf}.
set -u
source "$(dirname "$0")/lib.sh"
it_init

for tool in certbot lego caddy; do
	if ! command -v "$tool" >/dev/null; then
		echo "not ok - $tool is not installed (scripts/deps.sh installs it)"
		echo "0 passed, 1 failed"
		exit 1
	fi
done

# ---- the CA, and the old tools obtaining certificates --------------------------
# Pebble validates http-01 on $PORT80: each old tool listens there in turn,
# then HAProxy does.
# Pebble 2.10 (Debian unstable's, as test_renewal.sh): it has ARI, so the
# renewal with the imported account is a "replaces" order.
PEBBLE_BIN=$(bash "$IT_ROOT/scripts/pebble-unstable.sh") || {
	not_ok "Pebble 2.10 (Debian unstable) could be fetched"; it_summary; exit 1; }
PORT80=$(free_port)
start_pebble "$PORT80" "" "$PEBBLE_BIN" || { not_ok "pebble starts"; it_summary; exit 1; }
export REQUESTS_CA_BUNDLE=$IT_DIR/pebble-ca.pem LEGO_CA_CERTIFICATES=$IT_DIR/pebble-ca.pem

CB=$IT_DIR/certbot
timeout 120 certbot certonly --standalone --http-01-port "$PORT80" --http-01-address 127.0.0.1 \
	--server "$PEBBLE_DIR_URL" --config-dir "$CB" --work-dir "$IT_DIR/cbwork" \
	--logs-dir "$IT_DIR/cblogs" -d a.test -d a2.test --agree-tos -m cb@example.com \
	--non-interactive --key-type ecdsa >"$IT_DIR/certbot.log" 2>&1
check "certbot obtained a.test + a2.test from Pebble" test -s "$CB/live/a.test/fullchain.pem"

# lego <path> <email> <domain>: lego's "run" with its http-01 server
lego_run() {
	timeout 120 lego --server "$PEBBLE_DIR_URL" --email "$2" --accept-tos --path "$1" \
		--http --http.port "127.0.0.1:$PORT80" --domains "$3" run >>"$IT_DIR/lego.log" 2>&1
}
lego_run "$IT_DIR/lego" lg@example.com b.test
check "lego obtained b.test from Pebble" test -s "$IT_DIR/lego/certificates/b.test.crt"

CADDY_DATA=$IT_DIR/caddy-data
CADDY_HTTPS=$(free_port)
cat > "$IT_DIR/Caddyfile" <<EOF
{
	admin off
	http_port $PORT80
	https_port $CADDY_HTTPS
	skip_install_trust
	storage file_system $CADDY_DATA
}
c.test {
	tls {
		issuer acme {
			dir $PEBBLE_DIR_URL
			trusted_roots $IT_DIR/pebble-ca.pem
			email cd@example.com
			disable_tlsalpn_challenge
		}
	}
	respond "caddy"
}
EOF
HOME=$IT_DIR XDG_CONFIG_HOME=$IT_DIR/caddy-config caddy run --config "$IT_DIR/Caddyfile" \
	--adapter caddyfile >"$IT_DIR/caddy.log" 2>&1 &
CADDY_PID=$!
IT_PIDS+=($CADDY_PID)
caddy_crt() { ls "$CADDY_DATA"/certificates/*/c.test/c.test.crt 2>/dev/null | head -1; }
caddy_has_crt() { local f; f=$(caddy_crt); [ -n "$f" ] && [ -s "$f" ]; }
wait_for 60 caddy_has_crt
check "caddy obtained c.test from Pebble" test -s "$(caddy_crt)"
stop_pid "$CADDY_PID"

# for the sources written by hand below (acme.sh, Kong): another account
lego_run "$IT_DIR/lego-aux" aux@example.com s.test
lego_run "$IT_DIR/lego-aux" aux@example.com k.test
check "lego obtained s.test and k.test for the acme.sh and Kong layouts" \
	test -s "$IT_DIR/lego-aux/certificates/s.test.crt" -a -s "$IT_DIR/lego-aux/certificates/k.test.crt"

# serial_of FILE: the serial of the first certificate of FILE
serial_of() { openssl x509 -noout -serial -in "$1" 2>/dev/null | cut -d= -f2; }
declare -A SERIAL=(
	[a.test]=$(serial_of "$CB/live/a.test/cert.pem") [a2.test]=$(serial_of "$CB/live/a.test/cert.pem")
	[b.test]=$(serial_of "$IT_DIR/lego/certificates/b.test.crt") [c.test]=$(serial_of "$(caddy_crt)")
)
CB_ACCT=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["uri"])' "$CB"/accounts/*/*/*/regr.json)
check "certbot's account URL read from its regr.json ($CB_ACCT)" test -n "$CB_ACCT"

# ---- import --------------------------------------------------------------------
SPOA_PORT=$(free_port)
HAP_HTTP=$PORT80
haproxy_config "$SPOA_PORT"
agent_config
STORE=$IT_DIR/store
imp() { "$IT_BIN" -c "$AGENT_CONF" import "$@" >"$IT_DIR/import.out" 2>>"$IT_DIR/import-stderr.log"; }
# line TEXT: the import's summary line "  TEXT: N" -> N
line() { awk -v k="  $1:" 'index($0, k) == 1 { print $NF; exit }' "$IT_DIR/import.out"; }
pebble_count() { grep -c "$1" "$IT_DIR/pebble.log"; }
ORDERS0=$(pebble_count 'POST /order-plz')
ACCTS0=$(pebble_count 'POST /sign-me-up')

imp "certbot:$CB" --dry-run
check "dry run: would import 2 names, writes nothing" \
	test "$(line 'would import')" = 2 -a ! -e "$STORE/certs/a.test"
imp "certbot:$CB"
check "certbot: 2 names imported (a.test, a2.test)" test "$(line imported)" = 2
check "certbot: its account imported with its URL" grep -q "account: imported .* as $CB_ACCT" "$IT_DIR/import.out"
imp "certbot:$CB"
check "certbot again: nothing imported, 2 already present" \
	test "$(line imported)" = 0 -a "$(line 'already present')" = 2
check "certbot again: the account is already present" grep -q '^account: already present' "$IT_DIR/import.out"
imp "lego:$IT_DIR/lego"
check "lego: b.test imported" test "$(line imported)" = 1
check "lego: its other account is a conflict, reported, not overwritten" \
	grep -q '^account: CONFLICT' "$IT_DIR/import.out"
imp "caddy:$CADDY_DATA"
check "caddy: c.test imported" test "$(line imported)" = 1
check "caddy: its account is a conflict too" grep -q '^account: CONFLICT' "$IT_DIR/import.out"
stool() { "$IT_BUILD/tools/storage_tool" "file:$STORE" "$@"; }
ACCT_URL_KEY=$(stool list accounts/ | grep '/url$')
check "storage keeps certbot's account URL" test "$(stool get "$ACCT_URL_KEY")" = "$CB_ACCT"
for h in a.test b.test c.test; do
	check "meta/$h written with the imported serial" grep -q "\"serial\":\"${SERIAL[$h]}\"" "$STORE/meta/$h"
done

# ---- the agent serves them, no new order ----------------------------------------
start_agent
start_haproxy || echo "# haproxy did not start"
wait_for 10 agent_up_in_haproxy
served_serial() {
	echo | timeout 5 openssl s_client -connect "127.0.0.1:$HAP_HTTPS" -servername "$1" 2>/dev/null |
		openssl x509 -noout -serial 2>/dev/null | cut -d= -f2
}
for h in a.test a2.test b.test c.test; do
	wait_for 10 test "$(served_serial "$h")" = "${SERIAL[$h]}"
	check "HAProxy serves $h with the imported serial ${SERIAL[$h]}" test "$(served_serial "$h")" = "${SERIAL[$h]}"
done
check "Pebble saw no new order" test "$(pebble_count 'POST /order-plz')" = "$ORDERS0"
admin GET /acme/certificates >"$IT_DIR/list.out"
for h in a.test a2.test b.test c.test; do
	check "GET /acme/certificates lists $h" grep -q "\"host\":\"$h\"" "$IT_DIR/list.out"
done

# ---- the next renewal uses the imported account ---------------------------------
r=$(admin POST /acme -d host=a.test)
check "renewal of a.test through the admin API (201)" test "${r%% *}" = 201 || echo "# answer: $r"
check "it signed with certbot's account: the agent logged it" \
	grep -q "account: issuer=default $CB_ACCT (imported" "$IT_DIR/agent.log"
check "no newAccount in Pebble's log" test "$(pebble_count 'POST /sign-me-up')" = "$ACCTS0"
check "one new order in Pebble's log" test "$(pebble_count 'POST /order-plz')" = "$((ORDERS0 + 1))"
check "it is an ARI renewal: Pebble marks certbot's order replaced" grep -q 'marked as replaced' "$IT_DIR/pebble.log"
NEW=$(openssl x509 -noout -serial -in "$STORE/certs/a.test" | cut -d= -f2)
check "a.test has a new serial now" test -n "$NEW" -a "$NEW" != "${SERIAL[a.test]}"
imp "certbot:$CB"
check "certbot again after the renewal: a.test kept (storage is newer)" \
	test "$(line 'kept (stored certificate is as new or newer)')" = 1 -a "$(line imported)" = 0
check "a.test still holds the renewed certificate" \
	test "$(openssl x509 -noout -serial -in "$STORE/certs/a.test" | cut -d= -f2)" = "$NEW"

# ---- a mixed crt directory --------------------------------------------------------
MIX=$IT_DIR/mixed
mkdir -p "$MIX"
python3 - "$MIX" <<'PY'
import datetime, sys
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
d = sys.argv[1]
now = datetime.datetime.now(datetime.timezone.utc)
ca_key = ec.generate_private_key(ec.SECP256R1())
ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mixed test CA")])
ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
      .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
      .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=30))
      .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
      .sign(ca_key, hashes.SHA256()))
def pem_key(k):
    return k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                           serialization.NoEncryption()).decode()
def leaf(name, key, days=30, start=-1):
    return (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now + datetime.timedelta(days=start)).not_valid_after(now + datetime.timedelta(days=days))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .sign(ca_key, hashes.SHA256())).public_bytes(serialization.Encoding.PEM).decode()
ca_pem = ca.public_bytes(serialization.Encoding.PEM).decode()
def write(fn, text):
    open(f"{d}/{fn}", "w").write(text)
k = [ec.generate_private_key(ec.SECP256R1()) for _ in range(8)]
write("good1.test.pem", leaf("good1.test", k[0]) + ca_pem + pem_key(k[0]))
# key and issuer in HAProxy's side files
write("good2.test.pem", leaf("good2.test", k[1]))
write("good2.test.pem.key", pem_key(k[1]))
write("good2.test.pem.issuer", ca_pem)
write("expired.test.pem", leaf("expired.test", k[2], days=-1, start=-10) + ca_pem + pem_key(k[2]))
write("mismatch.test.pem", leaf("mismatch.test", k[3]) + ca_pem + pem_key(k[4]))
write("other.test.pem", leaf("elsewhere.test", k[5]) + ca_pem + pem_key(k[5]))
write("twokeys.test.pem", leaf("twokeys.test", k[6]) + ca_pem + pem_key(k[6]) + pem_key(k[7]))
import os
os.makedirs(d + "-busy")
k3 = ec.generate_private_key(ec.SECP256R1())
open(d + "-busy/good3.test.pem", "w").write(leaf("good3.test", k3) + ca_pem + pem_key(k3))
PY
imp "crt-dir:$MIX"
check "mixed crt-dir: only the 2 good ones imported" test "$(line imported)" = 2
check "mixed crt-dir: 4 refused" test "$(line refused)" = 4
check "refusal named: expired" grep -q "refused: $MIX/expired.test.pem: bundle: the certificate has expired" "$IT_DIR/import.out"
check "refusal named: key does not match" grep -q "refused: $MIX/mismatch.test.pem: .*does not match the private key" "$IT_DIR/import.out"
check "refusal named: bundle for another name" grep -q "refused: $MIX/other.test.pem: .*does not cover host other.test" "$IT_DIR/import.out"
check "refusal named: 2-key file" grep -q "refused: $MIX/twokeys.test.pem: bundle: 2 private keys" "$IT_DIR/import.out"
for h in expired.test mismatch.test other.test elsewhere.test twokeys.test; do
	check "nothing of $h stored" test ! -e "$STORE/certs/$h" -a ! -e "$STORE/meta/$h"
done
check "good2.test stored with the key and issuer of its side files" \
	test "$(grep -c 'BEGIN CERTIFICATE' "$STORE/certs/good2.test")" = 2

# ---- acme.sh (layout written per its documentation: no Debian package) ----------
ASH=$IT_DIR/acme.sh
mkdir -p "$ASH/s.test_ecc" "$ASH/ca/127.0.0.1/dir"
AUX=$IT_DIR/lego-aux/certificates
openssl x509 -in "$AUX/s.test.crt" > "$ASH/s.test_ecc/s.test.cer"
cp "$AUX/s.test.issuer.crt" "$ASH/s.test_ecc/ca.cer"
cp "$AUX/s.test.crt" "$ASH/s.test_ecc/fullchain.cer"
cp "$AUX/s.test.key" "$ASH/s.test_ecc/s.test.key"
printf "Le_Domain='s.test'\nLe_Alt='no'\nLe_API='%s'\nLe_Keylength='ec-256'\n" "$PEBBLE_DIR_URL" > "$ASH/s.test_ecc/s.test.conf"
AUX_KEY=$(ls "$IT_DIR"/lego-aux/accounts/*/aux@example.com/keys/aux@example.com.key)
AUX_URL=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["registration"]["uri"])' \
	"$IT_DIR"/lego-aux/accounts/*/aux@example.com/account.json)
cp "$AUX_KEY" "$ASH/ca/127.0.0.1/dir/account.key"
printf "ACCOUNT_URL='%s'\n" "$AUX_URL" > "$ASH/ca/127.0.0.1/dir/ca.conf"
imp "acmesh:$ASH"
check "acme.sh layout (written per its docs): s.test imported" test "$(line imported)" = 1
check "acme.sh: its account found for this CA, reported as a conflict" \
	grep -q "^account: CONFLICT.*$ASH/ca/127.0.0.1/dir/account.key" "$IT_DIR/import.out"

# ---- Kong in Redis (records per Kong's key scheme: no Kong package) ------------
start_redis
KNS=kongns
python3 - "$REDIS_PORT" "$KNS" "$PEBBLE_DIR_URL" "$AUX/k.test.crt" "$AUX/k.test.key" "$AUX_KEY" <<'PY'
import base64, json, socket, sys
port, ns, api, crt, key, akey = sys.argv[1:]
def cmd(*a):
    s = socket.create_connection(("127.0.0.1", int(port)))
    out = b"*%d\r\n" % len(a)
    for x in a:
        x = x.encode()
        out += b"$%d\r\n%s\r\n" % (len(x), x)
    s.sendall(out); s.recv(100); s.close()
pre = ns + "::"
cmd("SET", pre + "kong_acme:cert_key:k.test", json.dumps({"cert": open(crt).read(), "key": open(key).read()}))
cmd("SET", pre + "kong_acme:renew_config:k.test", json.dumps({"host": "k.test", "expire_at": 0}))
cmd("SET", pre + "kong_acme:account:" + api + ":" + base64.b64encode(b"kong@example.com").decode(),
    json.dumps({"key": open(akey).read()}))
PY
# Kong's account under its own email, on Redis storage (a fleet's)
python3 - "$AGENT_CONF" "$IT_DIR/agent-kong.json" "$REDIS_PORT" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
c["account_email"] = "kong@example.com"
c["storage"] = "redis"
c["storage_config"]["redis"] = {"port": int(sys.argv[3]), "namespace": "it"}
json.dump(c, open(sys.argv[2], "w"), indent=1)
PY
"$IT_BIN" -c "$IT_DIR/agent-kong.json" import "kong-redis:127.0.0.1:$REDIS_PORT/$KNS" \
	>"$IT_DIR/import.out" 2>>"$IT_DIR/import-stderr.log"
check "Kong records (written per Kong's key scheme): k.test imported" test "$(line imported)" = 1
check "Kong: its account key imported (Kong keeps no URL)" grep -q '^account: imported .*kong_acme:account:' "$IT_DIR/import.out"
K_SERIAL=$(serial_of "$AUX/k.test.crt")
# an agent on that Redis storage serves it
stop_pid "$AGENT_PID"
NACC0=$(grep -o 'There are now [0-9]* accounts' "$IT_DIR/pebble.log" | tail -1)
ORDERS1=$(pebble_count 'POST /order-plz')
start_agent "$IT_DIR/agent-kong.json"
wait_for 10 agent_up_in_haproxy
wait_for 10 test "$(served_serial k.test)" = "$K_SERIAL"
check "HAProxy serves k.test with Kong's serial $K_SERIAL" test "$(served_serial k.test)" = "$K_SERIAL"
# an import while the agent runs reaches HAProxy through the change feed
G_SERIAL=$(serial_of "$MIX/good1.test.pem")
"$IT_BIN" -c "$IT_DIR/agent-kong.json" import "crt-dir:$MIX" >"$IT_DIR/import.out" 2>>"$IT_DIR/import-stderr.log"
check "crt-dir into Redis: 2 imported while the agent runs" test "$(line imported)" = 2
wait_for 10 test "$(served_serial good1.test)" = "$G_SERIAL"
check "the running agent pushed good1.test (change feed) into HAProxy" test "$(served_serial good1.test)" = "$G_SERIAL"
check "still no new order at Pebble" test "$(pebble_count 'POST /order-plz')" = "$ORDERS1"
# a name an agent is issuing (its lock "issue/<host>" held) is not written
redis-cli -p "$REDIS_PORT" SET "it:lock:issue/good3.test" some-agent PX 60000 >/dev/null
"$IT_BIN" -c "$IT_DIR/agent-kong.json" import "crt-dir:$MIX-busy" >"$IT_DIR/import.out" 2>>"$IT_DIR/import-stderr.log"
check "a name locked by an agent: exit 1, reported, not written" \
	test $? = 1 -a "$(line imported)" = 0 -a -z "$(redis-cli -p "$REDIS_PORT" GET it:certs/good3.test)"
check "the report names it" grep -q '^failed: good3.test: an agent is issuing it right now' "$IT_DIR/import.out"
check "the agent's lock is left alone" test "$(redis-cli -p "$REDIS_PORT" GET it:lock:issue/good3.test)" = some-agent
redis-cli -p "$REDIS_PORT" DEL "it:lock:issue/good3.test" >/dev/null
"$IT_BIN" -c "$IT_DIR/agent-kong.json" import "crt-dir:$MIX-busy" >"$IT_DIR/import.out" 2>>"$IT_DIR/import-stderr.log"
check "once the lock is gone it imports, and releases its own lock" \
	test "$(line imported)" = 1 -a -z "$(redis-cli -p "$REDIS_PORT" --scan --pattern 'it:lock:*')"
# the Kong account is reused: the agent under kong@ finds the account the key
# already has at Pebble (lego-aux's), Pebble holds no more accounts than before
r=$(admin POST /acme -d host=k.test)
check "renewal of k.test with the Kong account (201)" test "${r%% *}" = 201
check "the agent found Kong's account at the CA: $AUX_URL" grep -q "acme: account $AUX_URL found" "$IT_DIR/agent.log"
check "Pebble holds no new account" test "$(grep -o 'There are now [0-9]* accounts' "$IT_DIR/pebble.log" | tail -1)" = "$NACC0"

# ---- export, then haproxy -c ------------------------------------------------------
"$IT_BIN" -c "$AGENT_CONF" export "crt-dir:$IT_DIR/exported" >"$IT_DIR/export.out" 2>>"$IT_DIR/import-stderr.log"
check "export exits 0" test $? = 0
NAMES=$(ls "$STORE/certs" | sort)
for h in $NAMES; do
	[ -f "$IT_DIR/exported/$h.pem" ] || { echo "# $h not exported"; EXPORT_MISSING=1; }
done
check "every stored name exported ($(echo $NAMES | wc -w))" test -z "${EXPORT_MISSING:-}"
check "exported files are 0600" test -z "$(find "$IT_DIR/exported" -name '*.pem' ! -perm 600)"
cat > "$IT_DIR/export-check.cfg" <<EOF
defaults
    mode http
    timeout connect 1s
    timeout client 1s
    timeout server 1s
frontend f
    bind 127.0.0.1:$(free_port) ssl crt $IT_DIR/exported
EOF
check "haproxy -c accepts the exported directory" haproxy -c -q -f "$IT_DIR/export-check.cfg"

# a long import shows its progress on a terminal (script(1) gives it one),
# and only there
mkdir -p "$IT_DIR/many"
"$IT_BUILD/tools/gen_certs" --store "file:$IT_DIR/gen-store" --count 600 --domain many.test \
	--cert-dir "$IT_DIR/many" >/dev/null 2>>"$IT_DIR/import-stderr.log"
script -qec "$IT_BIN -c $AGENT_CONF import crt-dir:$IT_DIR/many --dry-run" /dev/null 2>&1 |
	tr '\r' '\n' >"$IT_DIR/tty.out"
check "progress on a terminal (600 names)" grep -aq '^import: 600/600 names' "$IT_DIR/tty.out"
"$IT_BIN" -c "$AGENT_CONF" import "crt-dir:$IT_DIR/many" --dry-run >"$IT_DIR/import.out" 2>"$IT_DIR/notty.err"
check "no progress when stderr is no terminal" test ! -s "$IT_DIR/notty.err" -a "$(line 'would import')" = 600

# a source that cannot be read is an error, not an empty import
"$IT_BIN" -c "$AGENT_CONF" import "certbot:$IT_DIR/nothing-here" >/dev/null 2>>"$IT_DIR/import-stderr.log"
check "an unreadable source exits 1" test $? = 1
"$IT_BIN" -c "$AGENT_CONF" import "bogus:$IT_DIR" >/dev/null 2>>"$IT_DIR/import-stderr.log"
check "an unknown source kind exits 2" test $? = 2

it_summary
