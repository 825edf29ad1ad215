#!/bin/bash
# In the guest: ibnbd-server authenticates hosts (docs/protocol.md,
# "Authentication"), with ibnbd-probe posing as hosts with and without the
# right key. Secure by default: no hosts file and no --no-auth, a hosts
# file others may read, or both, and the server refuses to start. A listed
# host with its key opens and does IO; no key, another key, an unlisted
# host, a wrong proof, the server's own proof sent back (reflection), a
# proof recorded on an earlier connection replayed without the key, and
# a connection that never says HELLO are each refused (the last dropped
# after the 5 s handshake time, on the worker's next tick: within 10 s),
# named in the log and counted; the
# server goes on serving. SIGHUP re-reads the hosts file; a broken one
# keeps the hosts read before. Slots are described zero-based, and one
# authenticated host RDMA-writing with another connection's rkey fails on
# its own connection while the other's verified IO goes on. With
# max_handshakes connections that say nothing, a new connection is
# refused (the limit named in the log) while a host connected before goes
# on, and connects again once they are dropped.
name=server-auth
. "$(dirname "$0")/lib.sh"
port=4424
log=$work/srv.log
srv=
cleanup() {
	[ -n "$srv" ] && kill -0 "$srv" 2>/dev/null && kill -KILL "$srv"
	rm -rf "$work"
}
on_exit cleanup
fails_with() { # fails_with DESCRIPTION TEXT COMMAND...: fails, saying TEXT
	if "${@:3}" > "$work/check.out" 2>&1; then
		flunk "$1 (it succeeded)"; sed 's/^/#   /' "$work/check.out"
	elif grep -q -e "$2" "$work/check.out"; then
		pass "$1 ($(grep -e "$2" "$work/check.out" | head -n 1))"
	else
		flunk "$1 (no '$2')"; sed 's/^/#   /' "$work/check.out"
	fi
}
in_log() { # in_log DESCRIPTION PATTERN: the server logged it (within 10 s)
	for _ in $(seq 100); do grep -q "$2" "$log" && break; sleep 0.1; done
	if grep -q "$2" "$log"; then pass "$1 ($(grep -m1 "$2" "$log" | cut -c1-160))"; else
		flunk "$1 (no '$2' in the log)"; tail -n 10 "$log" | sed 's/^/#   /'; fi
}

client=$build/src/client/ibnbd-client
umask 077
"$client" gen-key > "$work/a.key" && "$client" gen-key > "$work/b.key" &&
	"$client" gen-key > "$work/c.key" || { flunk "gen-key"; exit 1; }
echo "hostA $(cat "$work/a.key")" > "$work/hosts"
truncate -s 16M "$work/disk.img"
exp=(--export "disk=$work/disk.img,allow=hostA+hostC")

# ---- secure by default ----
fails_with "no hosts file and no --no-auth: refused, naming both" "--hosts-file.*--no-auth" \
	"$server_bin" --listen "$addr:$port" "${exp[@]}"
fails_with "a hosts file and --no-auth: refused" "both a hosts file" \
	"$server_bin" --listen "$addr:$port" --hosts-file "$work/hosts" --no-auth "${exp[@]}"
cp "$work/hosts" "$work/open-hosts"; chmod 644 "$work/open-hosts"
fails_with "a hosts file others may read: refused" "chmod 600" \
	"$server_bin" --listen "$addr:$port" --hosts-file "$work/open-hosts" "${exp[@]}"
printf 'hostA %s\nhostA %s\n' "$(cat "$work/a.key")" "$(cat "$work/b.key")" > "$work/twice"
fails_with "a host listed twice: refused, with the line" "twice:2: host 'hostA' is listed twice" \
	"$server_bin" --listen "$addr:$port" --hosts-file "$work/twice" "${exp[@]}"
"$server_bin" --listen "$addr:$port" --no-auth --export "disk=$work/disk.img" \
	> "$work/noauth.log" 2>&1 &
pid=$!
for _ in $(seq 100); do grep -q listening "$work/noauth.log" && break; sleep 0.1; done
grep -q "warning: --no-auth" "$work/noauth.log"; r=$?
kill -TERM $pid; wait $pid
[ $r = 0 ] && pass "--no-auth starts, with a warning" || flunk "--no-auth warning"

# ---- a server with a hosts file ----
"$server_bin" --listen "$addr:$port" --hosts-file "$work/hosts" "${exp[@]}" > "$log" 2>&1 &
srv=$!
for _ in $(seq 100); do grep -q listening "$log" && break; sleep 0.1; done
grep -q listening "$log" && pass "the server starts with a hosts file of one host" ||
	{ flunk "server start"; sed 's/^/#   /' "$log"; exit 1; }
check "hostA with its key: opens and does verified IO" \
	"$probe" --host-id hostA --key-file "$work/a.key" "$addr:$port" disk write-read-verify 32
fails_with "hostA without a key: refused" "give --key-file" \
	"$probe" --host-id hostA "$addr:$port" disk info
fails_with "hostA with another key: the server's proof is refused" "could not prove" \
	"$probe" --host-id hostA --key-file "$work/b.key" "$addr:$port" disk info
fails_with "an unlisted host: refused" "HELLO refused: Permission denied" \
	"$probe" --host-id hostZ --key-file "$work/a.key" "$addr:$port" disk info
in_log "... the log names the host and why" "host 'hostZ' refused: not in the hosts file"
fails_with "hostA with a wrong proof: refused" "HELLO refused: Permission denied" \
	"$probe" --host-id hostA --key-file "$work/a.key" --bad-proof "$addr:$port" disk info
in_log "... logged as a failed authentication" "host 'hostA' refused: authentication failed"
fails_with "hostA sending back the server's own proof: refused" "HELLO refused: Permission denied" \
	"$probe" --host-id hostA --key-file "$work/a.key" --reflect-proof "$addr:$port" disk info
check "hostA's proof recorded on a good connection" \
	"$probe" --host-id hostA --key-file "$work/a.key" --save-proof "$work/proof" "$addr:$port" disk info
fails_with "that HELLO and proof replayed without the key on a new connection: refused" \
	"HELLO refused: Permission denied" \
	"$probe" --host-id hostA --replay-proof "$work/proof" "$addr:$port" disk info
check "a connection that says nothing is dropped within the handshake time" \
	"$probe" --no-hello "$addr:$port" disk expect-drop 12
in_log "... and logged" "no HELLO within 5 s"
check "hostA still works after all that" \
	"$probe" --host-id hostA --key-file "$work/a.key" "$addr:$port" disk write-read-verify 8

# ---- SIGHUP ----
fails_with "hostC, not listed yet: refused" "Permission denied" \
	"$probe" --host-id hostC --key-file "$work/c.key" "$addr:$port" disk info
echo "hostC $(cat "$work/c.key")" >> "$work/hosts"
kill -HUP "$srv"
in_log "SIGHUP re-reads the hosts file" "SIGHUP: 2 host(s)"
check "hostC, listed now: opens" \
	"$probe" --host-id hostC --key-file "$work/c.key" "$addr:$port" disk info
echo "hostD IBNBD-1:broken:" >> "$work/hosts"
kill -HUP "$srv"
in_log "a broken hosts file on SIGHUP is reported" "hosts:3: .*; the hosts listed before stay"
check "... and the hosts read before still open" \
	"$probe" --host-id hostC --key-file "$work/c.key" "$addr:$port" disk info
# ---- one connection's rkey is useless on another's ----
# One worker, so that both connections are on the same worker and device
# (where, with a protection domain per worker, the rkey would work).
grep -v '^hostD' "$work/hosts" > "$work/hosts2"
"$server_bin" --listen "$addr:$((port + 1))" --workers 1 --hosts-file "$work/hosts2" \
	"${exp[@]}" > "$work/one.log" 2>&1 &
one=$!
for _ in $(seq 100); do grep -q listening "$work/one.log" && break; sleep 0.1; done
"$probe" --host-id hostA --key-file "$work/a.key" --range 0:$((8 << 20)) "$addr:$((port + 1))" \
	disk print-slots idle 6 write-read-verify 64 > "$work/victim.out" 2>&1 &
victim=$!
for _ in $(seq 100); do grep -q "^slots:" "$work/victim.out" && break; sleep 0.1; done
read -r rkey saddr < <(sed -n 's/^slots: rkey \(0x[0-9a-f]*\) address \(0x[0-9a-f]*\).*/\1 \2/p' "$work/victim.out")
echo "# the victim's slots: rkey ${rkey:-?} address ${saddr:-?}"
if [ "$saddr" = 0x0 ]; then
	pass "slots are described zero-based: no server address on the wire"
else
	flunk "slots are described zero-based (address ${saddr:-none})"
fi
check "hostC, authenticated, RDMA-writing with hostA's rkey on its own connection: refused" \
	"$probe" --ro --host-id hostC --key-file "$work/c.key" "$addr:$((port + 1))" disk \
	foreign-write "${rkey:-0}" "${saddr:-0}"
wait "$victim"; r=$?
[ $r = 0 ] && pass "hostA's connection and its verified IO are unaffected ($(tail -n 1 "$work/victim.out"))" ||
	{ flunk "hostA's connection and its verified IO are unaffected"; sed 's/^/#   /' "$work/victim.out"; }
kill -TERM "$one"; wait "$one"

# ---- connections that never authenticate are capped ----
cat > "$work/cap.conf" <<EOC
listen = $addr:$((port + 2))
hosts_file = $work/hosts2
max_handshakes = 4
[export disk]
path = $work/disk.img
allow = hostA hostC
EOC
"$server_bin" --config "$work/cap.conf" > "$work/cap.log" 2>&1 &
cap=$!
for _ in $(seq 100); do grep -q listening "$work/cap.log" && break; sleep 0.1; done
"$probe" --host-id hostA --key-file "$work/a.key" --range 0:$((8 << 20)) "$addr:$((port + 2))" \
	disk idle 4 write-read-verify 64 > "$work/held.out" 2>&1 &
held=$!
sleep 1
silent=()
for i in 1 2 3 4 5 6; do
	"$probe" --no-hello "$addr:$((port + 2))" disk expect-drop 12 > "$work/silent$i.out" 2>&1 &
	silent+=($!)
done
sleep 2
fails_with "with max_handshakes (4) connections saying nothing, a new one is refused" \
	"refused the connection: Device or resource busy" \
	"$probe" --host-id hostA --key-file "$work/a.key" "$addr:$((port + 2))" disk info
if grep -q "in their handshake already (max_handshakes)" "$work/cap.log"; then
	pass "... and the server's log names the limit"
else
	flunk "... and the server's log names the limit"; tail -n 5 "$work/cap.log" | sed 's/^/#   /'
fi
wait "$held"; r=$?
[ $r = 0 ] && pass "a host connected before the flood goes on with verified IO ($(tail -n 1 "$work/held.out"))" ||
	{ flunk "the connected host's verified IO"; sed 's/^/#   /' "$work/held.out"; }
for p in "${silent[@]}"; do wait "$p"; done
check "once the silent ones are dropped, a host connects again" \
	"$probe" --host-id hostA --key-file "$work/a.key" "$addr:$((port + 2))" disk write-read-verify 8
kill -TERM "$cap"; wait "$cap"

kill -USR1 "$srv"
for _ in $(seq 100); do grep -q "stats (SIGUSR1)" "$log" && break; sleep 0.1; done
st=$(grep "stats (SIGUSR1)" "$log" | tail -n 1)
af=$(sed -n 's/.* auth_failures=\([0-9]*\).*/\1/p' <<< "$st")
ht=$(sed -n 's/.* handshake_timeouts=\([0-9]*\).*/\1/p' <<< "$st")
[ "${af:-0}" -ge 5 ] && [ "${ht:-0}" -ge 1 ] &&
	pass "counted: $af refused hosts, $ht handshake timeouts" || flunk "counters: $st"
kill -TERM "$srv"; wait "$srv"; rc=$?; srv=
[ $rc = 0 ] && pass "SIGTERM: exit 0" || flunk "SIGTERM: exit $rc"
done_testing
