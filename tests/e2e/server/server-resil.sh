#!/bin/bash
# In the guest: how ibnbd-server copes with lost connections and competing
# writers, with ibnbd-probe posing as connections of reconnecting client
# sessions (--session/--conn-index/--host-id): the keepalive timeout drops a
# silent connection while others keep working; a reconnect supersedes the
# connection it replaces, and waits for that one's in-flight backing IO (a
# slow null_blk) before its own HELLO is answered; one writing session per
# export, shared by the connections of a session, taken over by a new
# session of the same host; shared exports with several writers.
name=server-resil
. "$(dirname "$0")/lib.sh"
kport=4422 # keepalive timeout 3 s
port=4423  # keepalive off: idle holders stay until something else drops them
klog=$work/srvk.log
log=$work/srv.log
nullb=/sys/kernel/config/nullb/resilnb
srvk=
srv=

check_fails_with() { # check_fails_with DESCRIPTION TEXT COMMAND...: fails, saying TEXT
	if "${@:3}" > "$work/check.out" 2>&1; then
		flunk "$1 (it succeeded)"; sed 's/^/#   /' "$work/check.out"
	elif grep -q "$2" "$work/check.out"; then
		pass "$1 ($(grep "$2" "$work/check.out" | head -n 1))"
	else
		flunk "$1 (no '$2')"; sed 's/^/#   /' "$work/check.out"
	fi
}
expect_job() { # expect_job DESCRIPTION PID OUTFILE [TEXT]: PID exits 0 (and printed TEXT)
	if wait "$2" && { [ -z "${4:-}" ] || grep -q "$4" "$3"; }; then
		pass "$1 ($(tail -n 1 "$3"))"
	else
		flunk "$1"; sed 's/^/#   /' "$3"
	fi
}
wait_log() { # wait_log FILE PATTERN: up to 20 s
	for _ in $(seq 200); do grep -q "$2" "$1" && return 0; sleep 0.1; done
	echo "# '$2' did not appear in $1"
	return 1
}
stop() { # stop PID LOG NAME
	local rc=124
	kill -TERM "$1"
	for _ in $(seq 300); do
		if ! kill -0 "$1" 2>/dev/null; then wait "$1"; rc=$?; break; fi
		sleep 0.1
	done
	[ $rc = 0 ] && pass "$3: SIGTERM exit 0" || flunk "$3: SIGTERM exit $rc"
}
cleanup() {
	jobs -p | xargs -r kill -KILL 2>/dev/null
	[ -n "$srvk" ] && kill -0 "$srvk" 2>/dev/null && kill -KILL "$srvk"
	[ -n "$srv" ] && kill -0 "$srv" 2>/dev/null && kill -KILL "$srv"
	sleep 0.2
	if [ -d "$nullb" ]; then echo 0 > "$nullb/power"; rmdir "$nullb"; fi
	if { [ "$fail" != 0 ] || [ -n "${IBNBD_E2E_VERBOSE:-}" ]; }; then
		for f in "$klog" "$log"; do
			[ -e "$f" ] || continue
			echo "# $(basename "$f") (last 80 lines):"; tail -n 80 "$f" | sed 's/^/#   /'
		done
	fi
	rm -rf "$work"
}
on_exit cleanup

[ -x "$server_bin" ] && [ -x "$probe" ] || { echo "not ok - binaries missing in $build"; exit 1; }

# A block device whose every IO takes 4 s, one at a time: backing IO that
# is still in flight when its connection is superseded. (Longer delays run
# into the block layer's request timeout; queueing three writes behind one
# another gives the slow guest a margin instead.)
[ -d /sys/kernel/config/nullb ] || modprobe null_blk nr_devices=0
if mkdir "$nullb" && echo 64 > "$nullb/size" && echo 2 > "$nullb/irqmode" &&
   echo 1 > "$nullb/submit_queues" && echo 1 > "$nullb/hw_queue_depth" &&
   echo 4000000000 > "$nullb/completion_nsec" && echo 1 > "$nullb/power"; then
	# Named after the configfs item on recent kernels, nullbN before.
	name=$(basename "$nullb")
	[ -e "/sys/block/$name" ] || name=nullb$(cat "$nullb/index")
	slowdev=/dev/$name
	for _ in $(seq 50); do [ -b "$slowdev" ] && break; sleep 0.1; done
	[ -b "$slowdev" ] || mknod "$slowdev" b $(tr ':' ' ' < "/sys/block/$name/dev")
	pass "slow null_blk device $slowdev (4 s per IO, one at a time)"
else
	flunk "cannot create a null_blk device through configfs"; exit 1
fi

truncate -s 64M "$work/kdisk.img" "$work/disk.img" "$work/sh.img"
"$server_bin" --no-auth --listen "$addr:$kport" --workers 2 --keepalive-timeout 3 \
	--export "disk=$work/kdisk.img" > "$klog" 2>&1 &
srvk=$!
"$server_bin" --no-auth --listen "$addr:$port" --workers 2 --keepalive-timeout 0 \
	--export "disk=$work/disk.img" --export "sh=$work/sh.img,shared" \
	--export "slow=$slowdev" > "$log" 2>&1 &
srv=$!
if wait_log "$klog" "serving 1 export.*keepalive timeout 3 s" &&
   wait_log "$log" "serving 3 export.*keepalive timeout off"; then
	pass "servers started"
else
	flunk "servers started"; exit 1
fi

UK1=aaaaaaaa-0000-0000-0000-000000000001
UK2=aaaaaaaa-0000-0000-0000-000000000002
UJ1=aaaaaaaa-0000-0000-0000-000000000003
UJ2=aaaaaaaa-0000-0000-0000-000000000004
US=bbbbbbbb-0000-0000-0000-000000000001
UF=cccccccc-0000-0000-0000-000000000001
UW1=dddddddd-0000-0000-0000-000000000001
UW2=dddddddd-0000-0000-0000-000000000002
UW3=dddddddd-0000-0000-0000-000000000003

# ---- keepalive: 3 s of silence drops a connection, others keep working ----
"$probe" --ro --session $UK1 "$addr:$kport" disk expect-drop 20 > "$work/ka1.out" 2>&1 &
ka1=$!
"$probe" --session $UK2 "$addr:$kport" disk keepalive-for 9 write-read-verify 16 \
	> "$work/ka2.out" 2>&1 &
ka2=$!
# Without a session uuid the server waits for a first KEEPALIVE before it
# watches: clients from before reconnect never send one.
"$probe" --ro "$addr:$kport" disk idle 8 > "$work/ka3.out" 2>&1 &
ka3=$!
"$probe" --ro "$addr:$kport" disk keepalive expect-drop 20 > "$work/ka4.out" 2>&1 &
ka4=$!
# A session's first connection waits, silent after its HELLO, while the
# client connects the others (up to its 10 s connect timeout): the server
# allows 15 s for that, not the keepalive timeout; then it drops it too.
"$probe" --session $UJ1 --conn-index 1 --conn-count 2 "$addr:$kport" - idle 7 keepalive-for 2 \
	> "$work/kj1.out" 2>&1 &
kj1=$!
"$probe" --session $UJ2 --conn-index 1 --conn-count 2 "$addr:$kport" - expect-drop 30 \
	> "$work/kj2.out" 2>&1 &
kj2=$!
expect_job "keepalive: a silent session connection is dropped" $ka1 "$work/ka1.out" "dropped after"
after=$(sed -n 's/expect-drop: dropped after \([0-9]*\) ms/\1/p' "$work/ka1.out")
if [ -n "$after" ] && [ "$after" -ge 2500 ] && [ "$after" -le 9000 ]; then
	pass "keepalive: dropped after $after ms (timeout 3 s, 1 s tick)"
else
	flunk "keepalive: dropped after '$after' ms, wanted 3000..6000 give or take"
fi
expect_job "keepalive: a connection sending KEEPALIVEs keeps working meanwhile" $ka2 "$work/ka2.out" \
	"IOs verified"
expect_job "keepalive: a silent connection without session uuid and KEEPALIVE stays" $ka3 \
	"$work/ka3.out" "still up"
expect_job "keepalive: once it sent a KEEPALIVE, a silent connection without uuid is dropped" \
	$ka4 "$work/ka4.out" "dropped after"
check "keepalive: the server logged the drop with the peer's identity" \
	grep -q "host 'ibnbd-probe-$ka1': nothing received for [0-9]* ms (keepalive timeout 3 s)" "$klog"
expect_job "keepalive: a connection silent for 7 s after its HELLO, its session still joining, stays" \
	$kj1 "$work/kj1.out" "keepalives answered"
expect_job "keepalive: one that never sends anything after its HELLO is dropped in the end" \
	$kj2 "$work/kj2.out" "dropped after"
after=$(sed -n 's/expect-drop: dropped after \([0-9]*\) ms/\1/p' "$work/kj2.out")
if [ -n "$after" ] && [ "$after" -ge 14500 ] && [ "$after" -le 21000 ]; then
	pass "keepalive: dropped $after ms after its HELLO (15 s to join, 1 s tick)"
else
	flunk "keepalive: dropped '$after' ms after its HELLO, wanted 15000..20000 give or take"
fi
check "keepalive: the server said why" \
	grep -q "host 'ibnbd-probe-$kj2': nothing received for [0-9]* ms since its HELLO" "$klog"

# ---- a reconnect supersedes the connection it replaces ----
"$probe" --session $US --conn-index 0 --conn-count 2 "$addr:$port" disk write 0 4096 \
	expect-drop 40 > "$work/s0.out" 2>&1 &
s0=$!
"$probe" --session $US --conn-index 1 --conn-count 2 "$addr:$port" disk idle 15 \
	> "$work/s1.out" 2>&1 &
s1=$!
wait_log "$log" "host 'ibnbd-probe-$s0': opened export 'disk'"
wait_log "$log" "host 'ibnbd-probe-$s1': opened export 'disk'"
check "supersede: the reconnect of conn 0 works" \
	"$probe" --session $US --conn-index 0 --conn-count 2 "$addr:$port" disk write-read-verify 16
expect_job "supersede: the old conn 0 was dropped" $s0 "$work/s0.out" "dropped after"
expect_job "supersede: conn 1 of the same session was left alone" $s1 "$work/s1.out" "still up"
check "supersede: logged" grep -q \
	"host 'ibnbd-probe-$s0': superseded by a reconnect of session $US conn 0/2 from $addr" "$log"

# ---- fencing: the reconnect waits until the old one's backing IO landed ----
"$probe" --session $UF "$addr:$port" slow write-nowait 0 4096 write-nowait 8192 4096 \
	write-nowait 16384 4096 expect-drop 40 \
	> "$work/f0.out" 2>&1 &
f0=$!
wait_log "$work/f0.out" "write-nowait: posted 4096 bytes at 16384"
sleep 0.3
t0=$(date +%s%N)
check "fence: the reconnect works" \
	"$probe" --timeout 30 --verbose --session $UF "$addr:$port" slow write 65536 4096
cp "$work/check.out" "$work/f1.out"
t1=$(date +%s%N)
expect_job "fence: the old connection was dropped" $f0 "$work/f0.out" "dropped after"
hello=$(sed -n 's/hello: answered after \([0-9]*\) ms/\1/p' "$work/f1.out")
if [ -n "$hello" ] && [ "$hello" -ge 3000 ]; then
	pass "fence: HELLO answered after $hello ms, once the old writes (3 x 4 s) had landed"
else
	flunk "fence: HELLO answered after '$hello' ms: did not wait for the old writes"
fi
check "fence: the server logged the wait and the drain" sh -c \
	"grep -q 'reconnect of session $UF conn 0/1 .*answered once the superseded connection has drained' '$log' &&
	 grep -q 'the superseded connection drained after' '$log'"
echo "# fence: reconnect took $(((t1 - t0) / 1000000)) ms in all"

# ---- one writing session per export ----
"$probe" --session $UW1 --conn-index 0 --conn-count 2 --host-id hostA "$addr:$port" disk \
	idle 90 > "$work/w1.out" 2>&1 &
w1=$!
wait_log "$log" "host 'hostA': opened export 'disk'.*read-write"
check_fails_with "writer: another session's read-write OPEN is refused" "Device or resource busy" \
	"$probe" --session $UW2 --host-id hostB "$addr:$port" disk info
check "writer: another session may open it read-only" \
	"$probe" --ro --session $UW2 --host-id hostB "$addr:$port" disk read 0 4096
check_fails_with "writer: a connection without session uuid is another session" \
	"Device or resource busy" "$probe" "$addr:$port" disk info
check "writer: another connection of the same session shares the role" \
	"$probe" --session $UW1 --conn-index 1 --conn-count 2 --host-id hostA "$addr:$port" disk \
	write-read-verify 8
check "writer: the refusal was logged with who holds it" grep -q \
	"host 'hostB': OPEN read-write of 'disk' refused: it is open read-write by session $UW1" "$log"
check "takeover: a new session of the same host takes the export over" \
	"$probe" --session $UW3 --host-id hostA "$addr:$port" disk write-read-verify 8
if wait $w1; then
	flunk "takeover: the old session's connection survived"; sed 's/^/#   /' "$work/w1.out"
else
	pass "takeover: the old session's connection was dropped ($(tail -n 1 "$work/w1.out"))"
fi
check "takeover: logged" grep -q "taken over by session $UW3 of the same host 'hostA'" "$log"
sleep 1 # the probes' disconnects reach the server
check "writer: released when its session is gone: another host may now write" \
	"$probe" --session $UW2 --host-id hostB "$addr:$port" disk write 0 4096

# ---- shared exports take several writers ----
"$probe" --session $UW1 --host-id hostA --range 0:$((32 << 20)) "$addr:$port" sh \
	write-read-verify 8 idle 10 > "$work/sh1.out" 2>&1 &
sh1=$!
wait_log "$log" "host 'hostA': opened export 'sh'.*read-write"
check "shared: a second session writes the shared export" \
	"$probe" --session $UW2 --host-id hostB --range $((32 << 20)):$((32 << 20)) "$addr:$port" sh \
	write-read-verify 8
check "shared: so does a connection without session uuid" \
	"$probe" --range $((32 << 20)):$((32 << 20)) "$addr:$port" sh write-read-verify 8
expect_job "shared: the first writer was not disturbed" $sh1 "$work/sh1.out" "still up"

# ---- counters and a clean exit ----
kill -USR1 "$srv" "$srvk"
wait_log "$log" "stats (SIGUSR1)" && wait_log "$klog" "stats (SIGUSR1)"
num() { sed -n "s/.* $2=\([0-9]*\).*/\1/p" <<< "$1"; }
stats=$(grep "stats (SIGUSR1)" "$log" | tail -n 1)
kstats=$(grep "stats (SIGUSR1)" "$klog" | tail -n 1)
if [ "$(num "$stats" superseded)" -ge 3 ] 2>/dev/null && [ "$(num "$stats" busy_opens)" -ge 2 ] &&
   [ "$(num "$kstats" keepalive_timeouts)" -ge 2 ] && [ "$(num "$stats" io_errors)" = 0 ]; then
	pass "counters: $(num "$stats" superseded) superseded, $(num "$stats" busy_opens) busy opens, $(num "$kstats" keepalive_timeouts) keepalive timeouts"
else
	flunk "counters: '$stats' / '$kstats'"
fi
stop "$srvk" "$klog" "keepalive server"; srvk=
stop "$srv" "$log" "server"; srv=
done_testing
