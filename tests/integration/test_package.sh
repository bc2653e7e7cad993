#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The Debian package: `make deb` builds it, lintian reports no error, it holds
# what it should, acme-spoa(8) documents exactly the keys of the config table
# (acme-spoa --list-keys), and, installed on a fresh Debian 12 root, it runs as
# its own user and issues a certificate through the example HAProxy config.
#
# Where the install runs: a chroot, not systemd. This machine has no systemd as
# PID 1, so the fresh root is a debootstrap'ed Debian 12 (minbase, HAProxy and
# the agent's libraries added) made once per machine by scripts/debian12-root.sh
# into /var/cache/acme-spoa/ (about a minute with a mirror at hand), unpacked
# anew for each run. The package is installed there with dpkg -i (its postinst
# creates the user, groups, directories); HAProxy runs the installed example
# config; the agent runs as the unit says (its User= and ExecStart=, through
# setpriv with the user's groups, as systemd would). Pebble runs on the host,
# on loopback, which the chroot shares.
# The install part runs under SAN=1 too (the package's binary is never
# sanitized; the install is tested all the same). It is a skip (lib.sh
# skip_peer: a failure under CI=true) only when this machine cannot make the
# root (not root, no debootstrap, no mirror); debootstrap failing otherwise (a
# bad package name in scripts/debian12-root.sh) is a failure.
. "$(dirname "$0")/lib.sh"
it_init

# --- the package ---------------------------------------------------------
DEB_OUT=$IT_DIR/deb
if deb=$(cd "$IT_ROOT" && DEB_OUT=$DEB_OUT nice -n 10 bash scripts/deb.sh 2>"$IT_DIR/deb.err" | tail -1) && [ -f "$IT_ROOT/$deb" -o -f "$deb" ]; then
	[ -f "$deb" ] || deb=$IT_ROOT/$deb
	ok "make deb builds $(basename "$deb")"
else
	not_ok "make deb: $(tail -5 "$IT_DIR/deb.err")"
	it_summary; exit
fi

# the one version (the file VERSION) and the one maintainer (make's MAINTAINER)
pv=$(dpkg-deb -f "$deb" Version)
check "the package's version is the file VERSION ($pv)" test "$pv" = "$(cat "$IT_ROOT/VERSION")"
pm=$(dpkg-deb -f "$deb" Maintainer)
check "the package's maintainer is make's MAINTAINER ($pm)" \
	test "$pm" = "$(make -s -C "$IT_ROOT" --no-print-directory print-maintainer)"
# lintian exits 0 with no error tag, 1 when it reports errors, 2 and more when
# it could not check (no .changes, an unreadable package): only 0 with no
# error and no warning passes
changes=$(ls "$DEB_OUT"/*.changes 2>/dev/null | head -1)
lintian --no-tag-display-limit "${changes:-$DEB_OUT/no-changes-file}" >"$IT_DIR/lintian.out" 2>&1
lrc=$?
if [ "$lrc" != 0 ] || grep -qE '^[EW]: ' "$IT_DIR/lintian.out"; then
	not_ok "lintian: status $lrc on ${changes:-no .changes file}, errors or warnings:"
	grep -vE '^(I|N|P): ' "$IT_DIR/lintian.out" | head -10 | sed 's/^/#   /'
else
	ok "lintian: no error, no warning"
fi

dpkg-deb -c "$deb" | awk '{ print $6 }' | sed 's#^\./#/#' > "$IT_DIR/contents"
missing=""
for f in /usr/sbin/acme-spoa /lib/systemd/system/acme-spoa.service /etc/acme-spoa/config.json \
	 /usr/share/man/man8/acme-spoa.8.gz /usr/share/doc/acme-spoa/examples/haproxy.cfg \
	 /usr/share/doc/acme-spoa/examples/spoe-acme.conf /usr/share/doc/acme-spoa/examples/acme-spoa.json \
	 /usr/share/doc/acme-spoa/examples/prometheus/acme-spoa.rules.yml \
	 /usr/share/doc/acme-spoa/examples/grafana/acme-spoa.json; do
	grep -qxF "$f" "$IT_DIR/contents" || missing="$missing $f"
done
check "the package holds the agent, unit, conffile, man page and examples${missing:+ (missing:$missing)}" test -z "$missing"
dpkg-deb -e "$deb" "$IT_DIR/control"
check "/etc/acme-spoa/config.json is a conffile" grep -qx /etc/acme-spoa/config.json "$IT_DIR/control/conffiles"

dpkg-deb -x "$deb" "$IT_DIR/pkg"
unit=$IT_DIR/pkg/lib/systemd/system/acme-spoa.service
unit_ok() {
	grep -qx 'User=acme-spoa' "$unit" && grep -qx 'StateDirectory=acme-spoa' "$unit" &&
	grep -qx 'ExecReload=/bin/kill -HUP $MAINPID' "$unit" &&
	grep -qx 'ExecStart=/usr/sbin/acme-spoa -c /etc/acme-spoa/config.json' "$unit" &&
	! grep -q /usr/local "$unit"
}
check "the unit: User=acme-spoa, StateDirectory, /usr/sbin, reload = SIGHUP" unit_ok
if command -v systemd-analyze >/dev/null; then
	# (the binary at its path in the unpacked package: verify checks it exists;
	# the man page is the package's: MANPATH points man at it)
	mkdir -p "$IT_DIR/unit"
	sed "s#/usr/sbin/acme-spoa#$IT_DIR/pkg/usr/sbin/acme-spoa#g" "$unit" > "$IT_DIR/unit/acme-spoa.service"
	out=$(MANPATH=$IT_DIR/pkg/usr/share/man systemd-analyze verify "$IT_DIR/unit/acme-spoa.service" 2>&1); rc=$?
	check "systemd-analyze verify: the unit is clean (rc=$rc${out:+: $out})" test "$rc" = 0 -a -z "$out"
fi
out=$("$IT_DIR/pkg/usr/sbin/acme-spoa" -c "$IT_DIR/pkg/etc/acme-spoa/config.json" --check 2>&1); rc=$?
check "the shipped config is refused until edited, naming account_email (rc=$rc)" \
	test "$rc" = 1 -a -n "$(grep 'config: account_email: missing' <<<"$out")"

# --- acme-spoa(8) against the config table, both ways -----------------------
"$IT_BIN" --list-keys | cut -f1 | sort > "$IT_DIR/keys.table"
awk '/^\.SH /{ sec = $2 } sec == "CONFIGURATION" && prev == ".TP" && $1 == ".B" { print $2 } { prev = $0 }' \
	"$IT_ROOT/doc/acme-spoa.8" | sort > "$IT_DIR/keys.man"
undocumented=$(comm -23 "$IT_DIR/keys.table" "$IT_DIR/keys.man" | tr '\n' ' ')
stale=$(comm -13 "$IT_DIR/keys.table" "$IT_DIR/keys.man" | tr '\n' ' ')
check "acme-spoa(8) documents every config key (missing: ${undocumented:-none})" test -z "$undocumented"
check "acme-spoa(8) documents no key the table lacks (stale: ${stale:-none})" test -z "$stale"
check "the config table lists keys ($(wc -l < "$IT_DIR/keys.table"))" test "$(wc -l < "$IT_DIR/keys.table")" -gt 20
sections=""
for s in SYNOPSIS OPTIONS CONFIGURATION SIGNALS FILES "EXIT STATUS"; do
	grep -q "^\.SH \"\\?$s" "$IT_ROOT/doc/acme-spoa.8" || sections="$sections $s"
done
check "acme-spoa(8) has its sections${sections:+ (missing:$sections)}" test -z "$sections"
check "acme-spoa(8) renders without groff warnings" \
	test -z "$(LC_ALL=C.UTF-8 MANROFFSEQ='' man --warnings -l "$IT_ROOT/doc/acme-spoa.8" 2>&1 >/dev/null)"

# The SPOA on a unix socket as the unit makes it: in its RuntimeDirectory
# (RuntimeDirectoryMode), under its UMask, with the shipped config's
# spoa.socket_mode and socket_group, reached by a second HAProxy running as
# user haproxy (issue 19 finding 8). Runs inside install_part, with its locals
# (root, uid, hgid, agid, ex, log, user, exec); leaves the first HAProxy alone.
unix_spoa_part() {
	local unit=$root/lib/systemd/system/acme-spoa.service rdir rmode um smode sgroup sock hpid apid
	local h1=$HAP_HTTP h2=$HAP_HTTPS s1=$HAP_SOCK
	rdir=/run/$(sed -n 's/^RuntimeDirectory=//p' "$unit")
	rmode=$(sed -n 's/^RuntimeDirectoryMode=//p' "$unit")
	um=$(sed -n 's/^UMask=//p' "$unit")
	read -r smode sgroup < <(python3 -c 'import json,sys; s=json.load(open(sys.argv[1]))["spoa"]; print(s.get("socket_mode","-"), s.get("socket_group","-"))' \
		"$IT_DIR/pkg/etc/acme-spoa/config.json")
	check "the shipped config sets spoa.socket_mode 0660 and socket_group haproxy ($smode $sgroup)" \
		test "$smode $sgroup" = "0660 haproxy"
	sock=$rdir/spoa.sock
	# what systemd does for RuntimeDirectory=: owned by User=/Group=, RuntimeDirectoryMode=
	install -d -o "$uid" -g "$agid" -m "$rmode" "$root$rdir"
	python3 - "$root/etc/acme-spoa/config.json" "$sock" "$smode" "$sgroup" <<'PY'
import json, sys
p, sock, mode, group = sys.argv[1:]
c = json.load(open(p))
c["spoa"] = {"listen": "unix:" + sock, "socket_mode": mode, "socket_group": group}
json.dump(c, open(p, "w"), indent=2)
PY
	# shellcheck disable=SC2086
	unshare -m sh -c 'mount -t proc proc "$0/proc" && exec chroot "$0" "$@"' "$root" \
		setpriv --reuid="$user" --regid="$user" --init-groups --inh-caps=-all \
		sh -c "umask $um && exec $exec" >>"$log" 2>&1 &
	apid=$!
	IT_PIDS+=($apid)
	AGENT_PID=$apid
	if wait_for 15 test -S "$root$sock" && wait_for 10 admin_answers; then
		ok "the agent listens on unix:$sock (UMask=$um, as the unit runs it)"
	else
		not_ok "the agent on unix:$sock did not start: $(tail -3 "$log")"; return
	fi
	check "$sock is group haproxy, $smode" test "$(stat -c '%g 0%a' "$root$sock" 2>&1)" = "$hgid $smode"
	check "$rdir is $rmode, HAProxy's user passes through" \
		test "$(stat -c '%u:%g 0%a' "$root$rdir" 2>&1)" = "$uid:$agid $rmode"
	# a second HAProxy, as user haproxy, whose SPOE server is that socket
	HAP_HTTP=$(free_port); HAP_HTTPS=$(free_port)
	sed -e "s#0.0.0.0:80\$#127.0.0.1:$HAP_HTTP#" -e "s#0.0.0.0:443\$#127.0.0.1:$HAP_HTTPS#" \
	    -e "s#server agent 127.0.0.1:12345#server agent $sock#" \
	    -e "s#/run/haproxy/admin.sock#/run/haproxy/admin2.sock#" \
	    -e "s#/run/haproxy/https.sock#/run/haproxy/https2.sock#" \
	    -e "s#^global\$#global\n    user haproxy\n    group haproxy#" \
	    -e "s#^\( *\)log global#\1no log#" "$ex/haproxy.cfg" > "$root/etc/haproxy/haproxy2.cfg"
	unshare -m sh -c 'mount -t proc proc "$0/proc" && exec chroot "$0" "$@"' "$root" \
		haproxy -db -f /etc/haproxy/haproxy2.cfg >"$IT_DIR/haproxy2.log" 2>&1 &
	hpid=$!
	IT_PIDS+=($hpid)
	HAP_SOCK=$root/run/haproxy/admin2.sock
	if wait_for 10 port_open "$HAP_HTTPS" && wait_for 10 test -S "$HAP_SOCK"; then
		ok "a second HAProxy runs with \"user haproxy\""
	else
		not_ok "HAProxy as user haproxy did not start: $(tail -3 "$IT_DIR/haproxy2.log")"
	fi
	check "that HAProxy runs as haproxy's uid" test "$(awk '/^Uid:/ { print $2 }' "/proc/$hpid/status")" = \
		"$(awk -F: '$1 == "haproxy" { print $3 }' "$root/etc/passwd")"
	check "HAProxy as user haproxy reaches the agent over $sock (spop-check UP)" \
		wait_for 10 agent_up_in_haproxy
	local b a
	b=$(metric 'acme_spoa_spoe_messages_total{message="acme-sni"}')
	https_get unix.test
	a=$(metric 'acme_spoa_spoe_messages_total{message="acme-sni"}')
	check "its ClientHello reports reach the agent over the socket ($b -> $a)" delta_ge 1 "$b" "$a"
	check "it serves pkg.test from /etc/haproxy/certs" served_by_pebble pkg.test
	check "SIGTERM stops the unix-socket agent cleanly" agent_stops_cleanly
	check "and it removes $sock" test ! -e "$root$sock"
	stop_pid "$hpid" >/dev/null
	HAP_HTTP=$h1 HAP_HTTPS=$h2 HAP_SOCK=$s1
}

# --- installed on a fresh Debian 12 root ---------------------------------
install_part() {
	local root=$IT_DIR/root tar why rc uid pid log=$IT_DIR/agent.log
	tar=$(bash "$IT_ROOT/scripts/debian12-root.sh" 2>"$IT_DIR/root.err"); rc=$?
	why=$(tail -5 "$IT_DIR/root.err" | tr '\n' ' ')
	if [ "$rc" = 2 ]; then
		skip_peer "install on a fresh root: this machine cannot make a Debian 12 root ($why)"; return
	elif [ "$rc" != 0 ] || [ ! -s "$tar" ]; then
		not_ok "scripts/debian12-root.sh makes the Debian 12 root (status $rc: $why)"; return
	fi
	mkdir -p "$root"
	tar -C "$root" -xzf "$tar" || { not_ok "cannot unpack $tar"; return; }
	# every command in the root gets its own /proc in a private mount namespace
	inroot() { unshare -m sh -c 'mount -t proc proc "$0/proc" && exec chroot "$0" "$@"' "$root" "$@"; }

	cp "$deb" "$root/tmp/acme-spoa.deb"
	if inroot dpkg -i /tmp/acme-spoa.deb >"$IT_DIR/dpkg.log" 2>&1; then
		ok "dpkg -i on a fresh Debian 12 root"
	elif grep -q 'dependency problems' "$IT_DIR/dpkg.log"; then
		# a dependency the cached root lacks (the package gained one since
		# scripts/debian12-root.sh's list): apt fetches it, as an operator's would
		cp /etc/resolv.conf "$root/etc/resolv.conf" 2>/dev/null
		if inroot sh -c 'apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -f -y -q' \
			>>"$IT_DIR/dpkg.log" 2>&1 && inroot dpkg -s acme-spoa >/dev/null 2>&1; then
			ok "dpkg -i on a fresh Debian 12 root (missing dependencies from apt: $(grep -o 'depends on [^;]*' "$IT_DIR/dpkg.log" | head -3 | tr '\n' ' '))"
		else
			not_ok "dpkg -i, then apt-get -f install: $(tail -5 "$IT_DIR/dpkg.log")"; return
		fi
	else
		not_ok "dpkg -i: $(tail -5 "$IT_DIR/dpkg.log")"; return
	fi
	uid=$(inroot id -u acme-spoa 2>/dev/null)
	# ids as the root knows them (stat -c %U would read the host's names)
	local hgid agid
	hgid=$(awk -F: '$1 == "haproxy" { print $3 }' "$root/etc/group")
	agid=$(awk -F: '$1 == "acme-spoa" { print $3 }' "$root/etc/group")
	check "postinst made the system user acme-spoa (uid $uid)" test -n "$uid" -a "${uid:-1000}" -lt 1000
	check "acme-spoa is in HAProxy's group haproxy" \
		grep -qE '^haproxy:[^:]*:[0-9]+:(.*,)?acme-spoa(,|$)' "$root/etc/group"
	check "/var/lib/acme-spoa: acme-spoa, 0700" test "$(stat -c '%u %a' "$root/var/lib/acme-spoa" 2>&1)" = "$uid 700"
	check "/etc/haproxy/certs: acme-spoa:haproxy, 0750" \
		test "$(stat -c '%u:%g %a' "$root/etc/haproxy/certs" 2>&1)" = "$uid:$hgid 750"
	check "the config is root:acme-spoa 0640 (it may hold secrets)" \
		test "$(stat -c '%u:%g %a' "$root/etc/acme-spoa/config.json" 2>&1)" = "0:$agid 640"
	check "man acme-spoa is installed" test -f "$root/usr/share/man/man8/acme-spoa.8.gz"

	# the CA on the host; HAProxy in the root with the installed example config
	HAP_HTTP=$(free_port); HAP_HTTPS=$(free_port); SPOA_PORT=$(free_port); ADMIN_PORT=$(free_port)
	start_pebble "$HAP_HTTP" || { not_ok "pebble did not start"; return; }
	ex=$root/usr/share/doc/acme-spoa/examples
	sed -e "s#0.0.0.0:80\$#127.0.0.1:$HAP_HTTP#" -e "s#0.0.0.0:443\$#127.0.0.1:$HAP_HTTPS#" \
	    -e "s#127.0.0.1:12345#127.0.0.1:$SPOA_PORT#" -e "s#^\( *\)log global#\1no log#" \
	    "$ex/haproxy.cfg" > "$root/etc/haproxy/haproxy.cfg"
	cp "$ex/spoe-acme.conf" "$root/etc/haproxy/spoe-acme.conf"
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 -subj /CN=haproxy-default \
		-keyout "$IT_DIR/default.key" -out "$IT_DIR/default.crt" 2>/dev/null
	cat "$IT_DIR/default.crt" "$IT_DIR/default.key" > "$root/etc/haproxy/default.pem"
	install -d "$root/run/haproxy"
	# (unshare, sh and chroot exec each other: $! is HAProxy's pid)
	unshare -m sh -c 'mount -t proc proc "$0/proc" && exec chroot "$0" "$@"' "$root" \
		haproxy -db -f /etc/haproxy/haproxy.cfg >"$IT_DIR/haproxy.log" 2>&1 &
	IT_PIDS+=($!)
	HAP_SOCK=$root/run/haproxy/admin.sock
	if wait_for 10 port_open "$HAP_HTTPS" && wait_for 10 test -S "$HAP_SOCK"; then
		ok "HAProxy runs the installed example config"
	else
		not_ok "HAProxy did not start: $(tail -3 "$IT_DIR/haproxy.log")"; return
	fi
	check "the runtime socket is group haproxy, 0660" \
		test "$(stat -c '%g %a' "$HAP_SOCK" 2>&1)" = "$hgid 660"

	# the operator edits the conffile
	cp "$IT_DIR/pebble-ca.pem" "$root/etc/acme-spoa/pebble-ca.pem"
	cat > "$root/etc/acme-spoa/config.json" <<JSON
{
  "account_email": "pkg@example.com",
  "api_uri": "$PEBBLE_DIR_URL",
  "api_ca_file": "/etc/acme-spoa/pebble-ca.pem",
  "tos_accepted": true,
  "cert_type": "ecc",
  "domains": ["*.test"],
  "storage": "file",
  "storage_config": { "file": { "path": "/var/lib/acme-spoa" } },
  "spoa": { "listen": "127.0.0.1:$SPOA_PORT" },
  "admin": { "listen": "127.0.0.1:$ADMIN_PORT" },
  "haproxy": { "runtime": ["unix:/run/haproxy/admin.sock"], "cert_dir": "/etc/haproxy/certs" }
}
JSON
	# started as the unit says: its User= with the user's groups, its ExecStart=
	local user exec
	user=$(sed -n 's/^User=//p' "$root/lib/systemd/system/acme-spoa.service")
	exec=$(sed -n 's/^ExecStart=//p' "$root/lib/systemd/system/acme-spoa.service")
	# shellcheck disable=SC2086
	unshare -m sh -c 'mount -t proc proc "$0/proc" && exec chroot "$0" "$@"' "$root" \
		setpriv --reuid="$user" --regid="$user" --init-groups --inh-caps=-all $exec >"$log" 2>&1 &
	pid=$!
	IT_PIDS+=($pid)
	AGENT_PID=$pid
	if wait_for 15 admin_answers; then ok "the agent starts from the unit's ExecStart as $user"
	else not_ok "the agent did not start: $(tail -3 "$log")"; return; fi
	check "it runs as uid $uid, not root" \
		test "$(awk '/^Uid:/ { print $2 }' "/proc/$pid/status")" = "$uid"
	wait_for 10 agent_up_in_haproxy
	out=$(curl -s --max-time 60 -F host=pkg.test "http://127.0.0.1:$ADMIN_PORT/acme")
	check "POST /acme (curl -F) issues pkg.test through the example config ($out)" \
		test "$out" = '{"message":"certificate for host pkg.test is created"}'
	check "HAProxy serves pkg.test the certificate from Pebble" wait_for 10 served_by_pebble pkg.test
	check "the PEM in /etc/haproxy/certs is acme-spoa's, 0600" \
		test "$(stat -c '%u %a' "$root/etc/haproxy/certs/pkg.test.pem" 2>&1)" = "$uid 600"
	check "state is kept in /var/lib/acme-spoa, owned by acme-spoa" \
		test -n "$(find "$root/var/lib/acme-spoa" -mindepth 1 -uid "$uid" -print -quit)"
	# systemctl reload = ExecReload=/bin/kill -HUP $MAINPID
	local size; size=$(stat -c %s "$log")
	sed -i 's/"tos_accepted": true,/"tos_accepted": true, "renew_threshold_days": 10,/' "$root/etc/acme-spoa/config.json"
	kill -HUP "$pid"
	check "SIGHUP (systemctl reload) applies an edited live key, agent still up" \
		wait_for 5 sh -c "tail -c +$((size + 1)) '$log' | grep -A3 'config reloaded' | grep -q renew_threshold_days && kill -0 $pid"
	check "SIGTERM stops it cleanly" agent_stops_cleanly
	unix_spoa_part
	if inroot dpkg --purge acme-spoa >"$IT_DIR/purge.log" 2>&1 && [ ! -e "$root/var/lib/acme-spoa" ] &&
	   [ ! -e "$root/usr/sbin/acme-spoa" ]; then
		ok "dpkg --purge removes the agent and its state"
	else
		not_ok "dpkg --purge: $(tail -3 "$IT_DIR/purge.log")"
	fi
}
install_part

it_summary
