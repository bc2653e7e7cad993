#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The release artefacts and the one version (the file VERSION):
#   - make dist twice gives the same bytes (sha256), whatever the files' dates
#     and the umask; the tarball holds every file git tracks and needs no
#     .git: unpacked alone it builds the agent and makes the same tarball again;
#   - --version, acme_spoa_build_info{version}, debian/changelog (made from
#     NEWS.md, VERSION and MAINTAINER) and the User-Agent of every ACME request
#     all say VERSION. Pebble does not log the User-Agent, so the agent talks
#     to Pebble through a small capture proxy (below) that records each
#     request's method, path and User-Agent and forwards it unchanged: Pebble
#     builds its URLs from the Host header, so every later request of the
#     order goes through the proxy too;
#   - every source file carries the SPDX line (scripts/spdx.sh --check).
set -u
source "$(dirname "$0")/lib.sh"
it_init
VERSION=$(cat "$IT_ROOT/VERSION")
sha() { sha256sum "$1" | awk '{print $1}'; }

# --- make dist: reproducible ------------------------------------------------
t1=$(cd "$IT_ROOT" && DIST_OUT=$IT_DIR/d1 bash scripts/dist.sh 2>"$IT_DIR/dist1.err" | tail -1)
check "make dist builds acme-spoa-$VERSION.tar.gz" test "$t1" = "$IT_DIR/d1/acme-spoa-$VERSION.tar.gz" -a -s "$t1"
# the same tree again, another day and another umask: the files' dates and
# the umask must not reach the tarball
mtime=$(stat -c %Y "$IT_ROOT/README.md")
touch -d '2001-02-03 04:05' "$IT_ROOT/README.md"
t2=$(cd "$IT_ROOT" && umask 077 && DIST_OUT=$IT_DIR/d2 bash scripts/dist.sh 2>/dev/null | tail -1)
touch -d "@$mtime" "$IT_ROOT/README.md"
check "make dist twice: identical tarballs ($(sha "$t1" | cut -c1-16)... and $(sha "$t2" | cut -c1-16)...)" \
	test -s "$t2" -a "$(sha "$t1")" = "$(sha "$t2")"
if git -C "$IT_ROOT" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
	missing=$(comm -23 <(git -C "$IT_ROOT" ls-files | LC_ALL=C sort) \
		<(tar tzf "$t1" | sed "s#^acme-spoa-$VERSION/##" | grep -v '/$' | LC_ALL=C sort) | head -5 | tr '\n' ' ')
	check "the tarball holds every file git tracks${missing:+ (missing: $missing)}" test -z "$missing"
fi
check "the tarball has no .git, no build output" \
	sh -c "! tar tzf '$t1' | grep -qE '^acme-spoa-$VERSION/(\\.git|build|build-asan|acme-spoa)(/|\$)'"
owners=$(tar tvzf "$t1" | awk '{print $2}' | sort -u | tr '\n' ' ')
check "every member is owned 0/0 ($owners)" test "$owners" = "0/0 "

mkdir "$IT_DIR/unpacked"
tar xzf "$t1" -C "$IT_DIR/unpacked"
U=$IT_DIR/unpacked/acme-spoa-$VERSION
t3=$(cd "$U" && DIST_OUT=$IT_DIR/d3 bash scripts/dist.sh 2>/dev/null | tail -1)
check "unpacked alone (no .git), make dist gives the very same tarball" \
	test -s "$t3" -a "$(sha "$t1")" = "$(sha "$t3")"
# (a plain build whatever BUILD/BIN/SAN this suite runs under)
env -u BUILD -u BIN -u SAN -u OPT nice -n 10 make -C "$U" -j2 acme-spoa >"$IT_DIR/unpacked-build.log" 2>&1; rc=$?
check "unpacked alone, make builds the agent (rc=$rc)" test "$rc" = 0 -a -x "$U/acme-spoa"
[ "$rc" = 0 ] || tail -5 "$IT_DIR/unpacked-build.log" | sed 's/^/#   /'
v=$("$U/acme-spoa" --version 2>&1)
check "the agent built from the tarball says acme-spoa $VERSION ($v)" test "$v" = "acme-spoa $VERSION"

# --- one version everywhere ---------------------------------------------------
v=$("$IT_BIN" --version 2>&1)
check "acme-spoa --version: acme-spoa $VERSION ($v)" test "$v" = "acme-spoa $VERSION"
pv=$(cd "$IT_ROOT" && dpkg-parsechangelog -S Version 2>&1)
check "debian/changelog's version is VERSION ($pv)" test "$pv" = "$VERSION"
out=$(cd "$IT_ROOT" && bash scripts/changelog.sh --check 2>&1); rc=$?
check "debian/changelog is the one made from NEWS.md, VERSION and MAINTAINER (make changelog)" test "$rc" = 0
[ "$rc" = 0 ] || echo "$out" | head -10 | sed 's/^/#   /'
maint=$(make -s -C "$IT_ROOT" --no-print-directory print-maintainer)
check "debian/control names the Makefile's MAINTAINER ($maint)" grep -qxF "Maintainer: $maint" "$IT_ROOT/debian/control"

# the capture proxy: TLS with Pebble's listener certificate on CAPTURE_PORT,
# each request logged as "METHOD PATH<TAB>User-Agent", then forwarded to
# Pebble with its headers (Host included) and the answer relayed as it is
capture_proxy() {
	python3 - "$CAPTURE_PORT" "$PEBBLE_PORT" "$IT_DIR" <<'PY' >"$IT_DIR/capture.err" 2>&1 &
import http.client, http.server, ssl, sys
port, upstream, d = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
up_ctx = ssl.create_default_context(cafile=d + "/pebble-ca.pem")
log = open(d + "/capture.log", "a", buffering=1)
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def relay(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else None
        log.write("%s %s\t%s\n" % (self.command, self.path, self.headers.get("User-Agent", "")))
        c = http.client.HTTPSConnection("127.0.0.1", upstream, context=up_ctx, timeout=30)
        hdrs = {k: v for k, v in self.headers.items() if k.lower() not in ("connection", "keep-alive")}
        c.request(self.command, self.path, body=body, headers=hdrs)
        r = c.getresponse()
        data = r.read()
        self.send_response_only(r.status, r.reason)
        for k, v in r.getheaders():
            if k.lower() not in ("connection", "transfer-encoding", "content-length", "keep-alive"):
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
        c.close()
    do_GET = do_POST = do_HEAD = relay
    def log_message(self, *a): pass
srv = http.server.ThreadingHTTPServer(("127.0.0.1", port), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(d + "/pebble-cert.pem", d + "/pebble-key.pem")
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
srv.serve_forever()
PY
	IT_PIDS+=($!)
	wait_for 10 port_open "$CAPTURE_PORT"
}

SPOA_PORT=$(free_port)
haproxy_config "$SPOA_PORT"
start_challtestsrv || { not_ok "challtestsrv starts"; it_summary; exit 1; }
start_pebble "$HAP_HTTP" || { not_ok "pebble starts"; it_summary; exit 1; }
CAPTURE_PORT=$(free_port)
capture_proxy || { not_ok "the capture proxy starts"; cat "$IT_DIR/capture.err"; it_summary; exit 1; }
PEBBLE_DIR_URL=https://127.0.0.1:$CAPTURE_PORT/dir
agent_config
start_agent || { not_ok "agent starts"; it_summary; exit 1; }
start_haproxy || { not_ok "haproxy starts"; it_summary; exit 1; }
wait_for 10 agent_up_in_haproxy
r=$(admin POST /acme -d host=ua.test)
check "an order through the capture proxy issues ua.test ($r)" grep -q '^201 ' <<<"$r"
bi=$(curl -s "http://127.0.0.1:$ADMIN_PORT/metrics" | grep '^acme_spoa_build_info')
check "/metrics: acme_spoa_build_info{version=\"$VERSION\"} 1 and no other ($bi)" \
	test "$bi" = "acme_spoa_build_info{version=\"$VERSION\"} 1"
libcurl=$(curl -V | head -1 | grep -oE 'libcurl/[0-9][^ ]*')
ua="acme-spoa/$VERSION $libcurl"
n=$(wc -l <"$IT_DIR/capture.log")
others=$(awk -F'\t' -v ua="$ua" '$2 != ua' "$IT_DIR/capture.log" | head -3)
check "every ACME request ($n) carried User-Agent \"$ua\"${others:+ (not: $others)}" test "$n" -ge 5 -a -z "$others"
check "they include newAccount, newOrder and finalize" sh -c "
	grep -q '^POST /sign-me-up' '$IT_DIR/capture.log' && grep -q '^POST /order-plz' '$IT_DIR/capture.log' &&
	grep -q '^POST /finalize-order/' '$IT_DIR/capture.log'"
check "agent exits cleanly on SIGTERM" agent_stops_cleanly

# --- the license --------------------------------------------------------------
check "LICENSE is the Apache License 2.0" grep -q 'Apache License' "$IT_ROOT/LICENSE"
check "debian/copyright: License: Apache-2.0 for every file" \
	sh -c "grep -qx 'License: Apache-2.0' '$IT_ROOT/debian/copyright' && ! grep -q 'not chosen a license' '$IT_ROOT/debian/copyright'"
out=$(bash "$IT_ROOT/scripts/spdx.sh" --check 2>&1); rc=$?
check "every source file has the SPDX line (scripts/spdx.sh --check: $(echo "$out" | tail -1))" test "$rc" = 0
[ "$rc" = 0 ] || echo "$out" | head -5 | sed 's/^/#   /'
it_summary
