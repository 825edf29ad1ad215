#!/bin/bash
# /metrics on both daemons: Prometheus text that promtool accepts, scraped
# during verified fio on two devices of one session; counters that moved by
# exactly what fio did (bytes written, on the client and on the server),
# histograms that count every request, gauges back to zero at rest, and a
# bad or busy --metrics address refusing the start with a sentence.
. "$(dirname "$0")/lib.sh"

PROMTOOL=${PROMTOOL:-/var/cache/ibnbd/promtool}
SM=$ADDR:9642        # the server's /metrics
CM=127.0.0.1:9643    # the client's

truncate -s 256M "$WORK/a.img" "$WORK/b.img" "$WORK/c.img"
# A keepalive timeout of 2 s: a stopped daemon loses its connections soon.
start_server one --listen "$ADDR" --export "a=$WORK/a.img" --export "b=$WORK/b.img" \
	--metrics "$SM" --keepalive-timeout 2 || exit 1
wait_for 10 grep -q "metrics: http://$SM/metrics" "$WORK/one.log"
check "daemon starts with --metrics" start_daemon --workers 2 --metrics "$CM"
a=$("$CLIENT" map --name va "$ADDR" a) && b=$("$CLIENT" map --name vb "$ADDR" b)
check "two devices on one session ($a $b)" test -b "$a" -a -b "$b"

scrape() { curl -sf --max-time 10 "http://$1/metrics"; }
# value FILE NAME [LABELS]: the sample NAME{LABELS} of an exposition ("" if none).
value() {
	local want=$2
	[ -n "${3:-}" ] && want="$2{$3}"
	awk -v want="$want" '$1 == want { print $2 }' "$1"
}
# fio's bytes written (or read) in all jobs, from its JSON (after any
# line fio prints before it).
fio_bytes() { python3 -c "import json, sys
t = open(sys.argv[1]).read()
print(sum(j[sys.argv[2]]['io_bytes'] for j in json.loads(t[t.index('{'):])['jobs']))" "$1" "$2"; }
# Requests done on device $a so far, in an exposition.
ios_of_a() { echo $(( $(value "$1" ibnbd_client_device_reads_total "device=\"$a\",name=\"va\"") +
	$(value "$1" ibnbd_client_device_writes_total "device=\"$a\",name=\"va\"") )); }
lint() { # lint FILE: promtool's verdict on an exposition
	[ -x "$PROMTOOL" ] || { echo "no promtool at $PROMTOOL (scripts/install-deps gets it)"; return 1; }
	"$PROMTOOL" check metrics < "$1"
}

# Verified writes on both devices, on both queues (two jobs each, apart).
pids=()
for d in "$a" "$b"; do
	fio --name=verify --filename="$d" --direct=1 --rw=randwrite --verify=crc32c \
		--do_verify=1 --verify_fatal=1 --ioengine=io_uring --bs=4k --iodepth=16 \
		--size=24M --numjobs=2 --offset_increment=64M --time_based --runtime=15 \
		--verify_backlog=64 --output-format=json \
		> "$WORK/fio.${d##*/}.json" 2> "$WORK/fio.${d##*/}.err" &
	pids+=($!)
done
a_wrote() { scrape "$CM" | grep -q "^ibnbd_client_device_writes_total{device=\"$a\",name=\"va\"} [1-9]"; }
check "during fio: the client counts a's writes" wait_for 10 a_wrote
scrape "$CM" > "$WORK/c1.prom"
sleep 1
scrape "$CM" > "$WORK/c2.prom"
scrape "$SM" > "$WORK/s1.prom"
w1=$(ios_of_a "$WORK/c1.prom")
w2=$(ios_of_a "$WORK/c2.prom")
check "during fio: the client's counters move ($w1 -> $w2 requests)" test "$w2" -gt "$w1"
check "during fio: promtool accepts the client's metrics" lint "$WORK/c2.prom"
check "during fio: promtool accepts the server's metrics" lint "$WORK/s1.prom"
rc=0
for p in "${pids[@]}"; do wait "$p" || rc=1; done
check "verified fio on both devices" test "$rc" = 0 || cat "$WORK"/fio.*.err | sed 's/^/#   /'

scrape "$CM" > "$WORK/c.prom"
scrape "$SM" > "$WORK/s.prom"
check "at rest: promtool accepts the client's metrics" lint "$WORK/c.prom"
check "at rest: promtool accepts the server's metrics" lint "$WORK/s.prom"
for v in a b; do
	dev=${!v}
	l="device=\"$dev\",name=\"v$v\""
	fw=$(fio_bytes "$WORK/fio.${dev##*/}.json" write)
	fr=$(fio_bytes "$WORK/fio.${dev##*/}.json" read)
	cw=$(value "$WORK/c.prom" ibnbd_client_device_written_bytes_total "$l")
	cr=$(value "$WORK/c.prom" ibnbd_client_device_read_bytes_total "$l")
	sw=$(value "$WORK/s.prom" ibnbd_server_export_written_bytes_total "export=\"$v\"")
	sr=$(value "$WORK/s.prom" ibnbd_server_export_read_bytes_total "export=\"$v\"")
	check "$v: the client counted the bytes fio wrote ($cw = $fw)" test "$cw" = "$fw" -a "$fw" -gt 0
	check "$v: the client counted at least what fio read ($cr >= $fr)" \
		test -n "$cr" -a "${cr:-0}" -ge "$fr" -a "$fr" -gt 0
	check "$v: the server wrote what the client sent ($sw = $cw)" test "$sw" = "$cw"
	check "$v: the server read what the client read ($sr = $cr)" test "$sr" = "$cr"
	n=0
	for f in reads writes flushes discards write_zeroes errors; do
		x=$(value "$WORK/c.prom" "ibnbd_client_device_${f}_total" "$l")
		n=$((n + ${x:-0}))
	done
	cnt=$(value "$WORK/c.prom" ibnbd_client_device_request_duration_seconds_count "$l")
	inf=$(value "$WORK/c.prom" ibnbd_client_device_request_duration_seconds_bucket "$l,le=\"+Inf\"")
	check "$v: the latency histogram counts every request ($cnt = $n = +Inf $inf)" \
		test "$cnt" = "$n" -a "$inf" = "$n" -a "$n" -gt 0
	check "$v: no errors" test "$(value "$WORK/c.prom" ibnbd_client_device_errors_total "$l")" = 0
	check "$v: nothing in flight or waiting at rest" \
		test "$(value "$WORK/c.prom" ibnbd_client_device_requests_in_flight "$l")" = 0 -a \
		     "$(value "$WORK/c.prom" ibnbd_client_device_requests_waiting "$l")" = 0
	check "$v: state live" test "$(value "$WORK/c.prom" ibnbd_client_device_state "$l,state=\"live\"")" = 1
	sc=$(value "$WORK/s.prom" ibnbd_server_export_backing_duration_seconds_count "export=\"$v\"")
	sn=0
	for f in reads writes flushes discards write_zeroes io_errors; do
		x=$(value "$WORK/s.prom" "ibnbd_server_export_${f}_total" "export=\"$v\"")
		sn=$((sn + ${x:-0}))
	done
	check "$v: the server's backing histogram counts every IO ($sc = $sn)" test "$sc" = "$sn" -a "$sn" -gt 0
done
hid=$("$CLIENT" host-id)
check "the server sees this host's 2 connections in 1 session" \
	test "$(value "$WORK/s.prom" ibnbd_server_host_connections "host=\"$hid\"")" = 2 -a \
	     "$(value "$WORK/s.prom" ibnbd_server_host_sessions "host=\"$hid\"")" = 1
check "the server reports pinned slot memory" \
	test "$(value "$WORK/s.prom" ibnbd_server_pinned_slot_memory_bytes)" -gt 0

# The server's control socket: what it serves, as the metrics say it.
SRV=$SERVER_BIN
sessions_match() {
	"$SRV" list-sessions --json > "$WORK/sessions.json" || return 1
	python3 - "$WORK/sessions.json" "$hid" "$1" "$2" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
want_w, want_r = int(sys.argv[3]), int(sys.argv[4])
print(json.dumps(s))
assert len(s) == 1, "one session"
x = s[0]
assert x["host"] == sys.argv[2] and x["connections"] == 2 and x["session"], "host, 2 connections"
assert len(x["addresses"]) >= 1
opens = {e["export"]: (e["access"], e["handles"]) for e in x["exports"]}
assert opens == {"a": ("rw", 2), "b": ("rw", 2)}, opens
assert x["io"]["write_bytes"] == want_w and x["io"]["read_bytes"] == want_r, x["io"]
assert x["slot_memory_bytes"] > 0
PY
}
exports_match() {
	"$SRV" list-exports --json > "$WORK/exports.json" || return 1
	python3 - "$WORK/exports.json" "$hid" "$1" "$2" <<'PY'
import json, sys
e = {x["export"]: x for x in json.load(open(sys.argv[1]))}
print(json.dumps(e))
assert sorted(e) == ["a", "b"]
for name, w in (("a", int(sys.argv[3])), ("b", int(sys.argv[4]))):
    x = e[name]
    assert x["sessions"] == 1 and x["writer"] == sys.argv[2] and x["access"] == "rw", x
    assert x["io"]["write_bytes"] == w and x["io_errors"] == 0 and x["size"] == 256 << 20, x
PY
}
swa=$(value "$WORK/s.prom" ibnbd_server_export_written_bytes_total 'export="a"')
swb=$(value "$WORK/s.prom" ibnbd_server_export_written_bytes_total 'export="b"')
sra=$(value "$WORK/s.prom" ibnbd_server_export_read_bytes_total 'export="a"')
srb=$(value "$WORK/s.prom" ibnbd_server_export_read_bytes_total 'export="b"')
check "ibnbd-server list-sessions: this host's session, 2 connections, a and b open rw, the IO the metrics count" \
	sessions_match $((swa + swb)) $((sra + srb))
# The same session in the metrics: its series carry host and session uuid.
sid=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))[0]['session'])" "$WORK/sessions.json")
sl="host=\"$hid\",session=\"$sid\""
check "per session: 2 connections and pinned slot memory ($sl)" \
	test "$(value "$WORK/s.prom" ibnbd_server_session_connections "$sl")" = 2 -a \
	     "$(value "$WORK/s.prom" ibnbd_server_session_slot_memory_bytes "$sl")" -gt 0
check "per session: the bytes of both exports, written and read" \
	test "$(value "$WORK/s.prom" ibnbd_server_session_written_bytes_total "$sl")" = $((swa + swb)) -a \
	     "$(value "$WORK/s.prom" ibnbd_server_session_read_bytes_total "$sl")" = $((sra + srb)) -a \
	     $((swa + swb)) -gt 0
check "ibnbd-server list-exports: a and b, one session each, this host writing, their bytes" \
	exports_match "$swa" "$swb"
check "... and as tables" sh -c "'$SRV' list-sessions | grep -q '^$hid ' &&
	'$SRV' list-exports | grep -Eq '^a +$WORK/a.img +268435456 +rw +1 +$hid '"
"$SRV" list-exports --control-socket "$WORK/none.sock" > "$WORK/nosock.out" 2>&1
rc=$?
check "no server on a socket: status 1 and a sentence ($rc)" \
	sh -c "test $rc = 1 && grep -q 'the ibnbd server is not running (nothing listens on $WORK/none.sock)' $WORK/nosock.out"
check "one session on the client, up" \
	test "$(grep -c '^ibnbd_client_session_up{' "$WORK/c.prom")" = 1 -a \
	     "$(value "$WORK/c.prom" ibnbd_client_session_up "server=\"$ADDR:4422\"")" = 1

check "show: the same writes, and a mean latency" sh -c "
	'$CLIENT' show va | grep -qx 'io.writes  *$(value "$WORK/c.prom" ibnbd_client_device_writes_total "device=\"$a\",name=\"va\"")' &&
	'$CLIENT' show va | grep -Eq '^io.latency_mean_us +[0-9]+\.[0-9]$'"

# HTTP: only GET /metrics.
check "another path: 404" test "$(curl -s -o /dev/null -w '%{http_code}' "http://$CM/")" = 404
check "POST: 405" test "$(curl -s -o /dev/null -w '%{http_code}' -X POST "http://$CM/metrics")" = 405
check "the content type of the text format" \
	sh -c "curl -sfI 'http://$SM/metrics' | grep -qi '^content-type: text/plain; version=0.0.4'"

"$CLIENT" list -o csv > "$WORK/list.csv"
check "list -o csv: a header and a line per device" sh -c "
	test \$(wc -l < '$WORK/list.csv') = 3 &&
	head -n 1 '$WORK/list.csv' | grep -qx 'device,name,server,port,export,size,access,state,last_error' &&
	grep -qx '$a,va,$ADDR,4422,a,268435456,rw,live,' '$WORK/list.csv'"
check "show -o csv: that device's line" sh -c "
	'$CLIENT' show vb -o csv | tail -n 1 | grep -qx '$b,vb,$ADDR,4422,b,268435456,rw,live,'"

# Last, since it leaves the devices a last error: the session reconnects
# (the server drops a daemon that does not answer for its keepalive
# timeout), and its IO counts go on from where they were.
dpid=$(cat /run/ibnbd/client.lock)
kill -STOP "$dpid"
check "the server drops the stopped daemon's connections" \
	wait_for 20 grep -q "presumed dead, dropping the connection" "$WORK/one.log"
sleep 1
kill -CONT "$dpid"
check "the session reconnected after the server dropped it" \
	wait_for 30 grep -q "reconnected after" "$WORK/daemon.log"
check "... its devices live again" wait_for 20 devices_are 2 live
check "... and list-sessions still counts what it did before ($((swa + swb)) bytes written)" \
	wait_for 10 sessions_match $((swa + swb)) $((sra + srb))

# An unmapped device leaves the metrics.
check "unmap vb" "$CLIENT" unmap vb
scrape "$CM" > "$WORK/c3.prom"
check "vb is gone from the metrics, va stays" \
	sh -c "! grep -q 'name=\"vb\"' '$WORK/c3.prom' && grep -q 'name=\"va\"' '$WORK/c3.prom'"

# Bad addresses: a clear sentence and exit status 2; a busy one: no start.
"$SERVER_BIN" --no-auth --listen "$ADDR:4500" --export "c=$WORK/c.img" --metrics "$ADDR" \
	> "$WORK/bad1.out" 2>&1
check "server --metrics without a port: status 2 and why ($?)" \
	sh -c "test $? = 2 && grep -q 'has no port' '$WORK/bad1.out'"
"$CLIENT" daemon --foreground --metrics "[::1" > "$WORK/bad2.out" 2>&1
check "daemon --metrics malformed: status 2 and why ($?)" \
	sh -c "test $? = 2 && grep -q 'metrics' '$WORK/bad2.out'"
timeout 20 "$SERVER_BIN" --no-auth --listen "$ADDR:4500" --export "c=$WORK/c.img,allow=*" \
	--metrics "$SM" > "$WORK/busy.out" 2>&1
rc=$?
check "server --metrics on a busy port: refuses to run ($rc) and says so" \
	sh -c "test $rc != 0 -a $rc != 124 && grep -q 'cannot serve metrics on $SM' '$WORK/busy.out'"
check "the first server still serves metrics" sh -c "curl -sf 'http://$SM/metrics' | grep -q ibnbd_server_info"

# More servers on the host: each needs a control socket of its own.
printf 'listen = %s:4501\ncontrol_socket = %s\n[export c]\npath = %s\nallow = *\n' \
	"$ADDR" "$WORK/two.sock" "$WORK/c.img" > "$WORK/two.conf"
start_server two --config "$WORK/two.conf" || flunk "a second server starts"
check "a second server with control_socket = PATH in its file answers there" \
	sh -c "'$SRV' list-exports --control-socket '$WORK/two.sock' | grep -Eq '^c +'"
start_server three --listen "$ADDR:4502" --export "d=$WORK/c.img,ro" || flunk "a third server starts"
check "a third one, on the default socket the first holds, says so and serves anyway" \
	grep -q "no control socket: another running ibnbd-server answers on /run/ibnbd/server.sock" \
	"$WORK/three.log"
check "... while the first keeps the default socket" \
	sh -c "'$SRV' list-exports | grep -Eq '^a +' && ! '$SRV' list-exports | grep -Eq '^d +'"
kill -9 "$two_pid"
wait "$two_pid" 2> /dev/null
check "the second server killed: its socket file stays behind" test -S "$WORK/two.sock"
start_server two --config "$WORK/two.conf" || flunk "the second server starts again"
check "... and its successor takes the dead one's socket over" \
	sh -c "'$SRV' list-exports --control-socket '$WORK/two.sock' | grep -Eq '^c +'"
kill -TERM "$two_pid" "$three_pid"
wait "$two_pid" "$three_pid"
check "a server stopped cleanly removes its socket" test ! -e "$WORK/two.sock"

check "unmap va" "$CLIENT" unmap va
kill -TERM "$one_pid"
wait "$one_pid"
check "the server stops cleanly with metrics on (exit status $?)" test $? = 0
stop_all
check "no ublk device left" no_ublk_devices
done_testing
