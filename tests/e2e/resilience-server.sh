#!/bin/bash
# The server goes away under verified IO and comes back; the application
# sees pauses, never an error, and nothing acknowledged is lost. Three
# devices: vol and vol2, two exports of the server that goes away (one
# session), and other, an export of a second server that stays; verified
# IO on both queues of each:
#   1. kill -9 the server 5 times during fio random writes with crc32c
#      verification; restart it each time.
#   2. stop it gracefully (SIGTERM) 3 times under the same load.
#      Each outage of 1 and 2 is noticed within 5 s of the kill or stop,
#      and the client is back within 2 s of the server listening again
#      (its first minute of retries is every 100 ms: a client waiting for
#      a keepalive timeout or a long backoff fails this); the times are
#      printed.
#   3. keep it away longer than vol's loss timeout (its own, from map
#      --loss-timeout, shorter than the daemon's): vol's IO fails with EIO
#      and `list` says failed, while vol2 (mapped --loss-timeout 0: forever)
#      holds a write and says reconnecting; bring it back: vol2's write
#      completes and is on the disk, both devices work again. The other
#      server's device never notices. A new daemon takes them over with
#      each device's own loss timeout, and its own default for the rest.
#   4. another backing under vol's name: vol fails, vol2 carries on.
# Prints, per event, how long after the server listened again the client
# was back, and fio's longest IO latency (the application's longest pause).
. "$(dirname "$0")/lib.sh"

LOSS=25
# Both daemons stamp their log lines with the monotonic clock, so that the
# time from the server listening again to the client being back is read
# from their own logs, not from this script's polling.
export IBNBD_LOG_TIME=1
truncate -s 512M "$WORK/vol.img" "$WORK/vol2.img" "$WORK/other.img"
srv_args=(--listen "$ADDR" --export "vol=$WORK/vol.img" --export "vol2=$WORK/vol2.img")
start_server srv "${srv_args[@]}" || exit 1
start_server other --listen "$ADDR:4500" --export "other=$WORK/other.img" || exit 1
check "daemon starts (loss timeout 120 s)" start_daemon --loss-timeout 120
map_with_loss() { # map_with_loss NAME SECONDS
	"$CLIENT" map "$ADDR" "$1" --name "$1" --loss-timeout "$2" > /dev/null
}
check "vol mapped with its own loss timeout ($LOSS s)" map_with_loss vol "$LOSS"
check "vol2 mapped with none (--loss-timeout 0: IO waits forever)" map_with_loss vol2 0
"$CLIENT" map "$ADDR:4500" other --name other > /dev/null
check "three devices: two of one server, one of another" \
	test -b "$(dev_of vol)" -a -b "$(dev_of vol2)" -a -b "$(dev_of other)"
DEVS="vol vol2 other"
vol_dev=$(dev_of vol)
vol2_dev=$(dev_of vol2)
# losses_are VOL VOL2 OTHER: the loss timeouts `show` gives (0: forever).
losses_are() {
	local x got=""
	for x in vol vol2 other; do
		got="$got $("$CLIENT" show "$x" --json | python3 -c "import json,sys
print(json.load(sys.stdin)['loss_timeout_s'])")"
	done
	echo "loss timeouts:$got"
	[ "$got" = " $1 $2 $3" ]
}
check "show gives each device's loss timeout: vol's own, vol2 forever, other the daemon's" \
	losses_are "$LOSS" 0 120

reconnects() { grep -c "reconnected after" "$WORK/daemon.log"; }

# outage HOW: takes the server down (kill -9 or SIGTERM), restarts it after a
# second, waits for the client to be back and reports the times.
outage() {
	local how=$1 before t_down t_up lost detection
	before=$(reconnects)
	t_down=$(uptime_ms)
	if [ "$how" = kill ]; then
		kill -9 "$srv_pid"
	else
		kill -TERM "$srv_pid"
	fi
	wait "$srv_pid" 2>/dev/null
	sleep 1
	start_server srv "${srv_args[@]}" >> "$WORK/restarts.log" 2>&1 || return 1
	t_up=$(uptime_ms)
	wait_for 30 sh -c "[ \$(grep -c 'reconnected after' $WORK/daemon.log) -gt $before ]" ||
		return 1
	back=$(log_time "reconnected after" "$WORK/daemon.log")
	listened=$(log_time "listening on" "$WORK/srv.log")
	lost=$(log_time "session lost" "$WORK/daemon.log")
	recovery=$((back - listened))
	detection=$((lost - t_down))
	echo "# $how: server down $((t_up - t_down)) ms; the loss noticed $detection ms after" \
		"the $how, the client back $recovery ms after the server listened (daemon" \
		"and server logs)" | tee -a "$WORK/times"
	[ "$detection" -le "$DETECT_MS" ] && [ "$recovery" -le "$RECOVER_MS" ] && return 0
	echo "# $how: over the targets (noticed within $DETECT_MS ms, back within" \
		"$RECOVER_MS ms)"
	return 1
}

# The targets of an outage on one host: the loss is noticed within 5 s
# (a server killed or stopped closes its connections, so at once, not by
# the keepalive), and the client is back within 2 s of the server
# listening again (retries every 100 ms in an outage's first minute).
DETECT_MS=5000 RECOVER_MS=2000

# uptime_ms: CLOCK_BOOTTIME in ms, the clock of the daemons' log stamps (no
# suspend in a guest, so the same as their CLOCK_MONOTONIC), to 10 ms.
uptime_ms() {
	local up
	read -r up _ < /proc/uptime
	echo $((${up%.*} * 1000 + 10#${up#*.} * 10))
}

# log_time TEXT FILE: the monotonic time (ms) of the last line with TEXT.
log_time() {
	grep "$1" "$2" | tail -n 1 | sed -E 's/^\[([0-9]+)\.([0-9]{3})\].*/\1\2/'
}

# The write load on device X: 2 jobs (one per CPU, so both queues), 64 MiB
# of crc32c-checked random writes each. fio keeps its verify state (which
# writes completed) in a directory per round and device, so that a
# verify-only pass afterwards checks exactly what was acknowledged. The
# writes are paced (fio catches up after a pause) so that they last over a
# minute on a fast guest as on a slow one: every outage of a round must find
# fio still writing. Reads (the verify) are not paced.
load() { # load X: fio's options
	echo --name="$1" --filename="$(dev_of "$1")" --direct=1 --ioengine=io_uring \
		--rw=randwrite --bs=4k --iodepth=8 --numjobs=2 --cpus_allowed=0-1 \
		--cpus_allowed_policy=split --size=64M --offset_increment=128M --group_reporting \
		--verify=crc32c --verify_fatal=1 --output-format=json --rate_iops=,250
}

# load_with_outages HOW N: N outages during the write load on every device
# (verify_saved checks what it wrote); fio must still be running on every
# device at each outage.
load_with_outages() {
	local how=$1 n=$2 i x ok=0
	declare -A fio_pid
	for x in $DEVS; do
		mkdir -p "$WORK/$how-$x"
		# shellcheck disable=SC2046 # load's words are options
		(cd "$WORK/$how-$x" && exec fio $(load "$x") --do_verify=0 --verify_state_save=1 \
			--output="$WORK/fio-$how-$x.json" > "$WORK/fio-$how-$x.log" 2>&1) &
		fio_pid[$x]=$!
	done
	for i in $(seq "$n"); do
		sleep 2
		for x in $DEVS; do
			kill -0 "${fio_pid[$x]}" 2>/dev/null ||
				{ echo "# fio on $x ended before outage $i:"
				  tail -n 5 "$WORK/fio-$how-$x.log" | sed 's/^/#   /'; ok=1; }
		done
		[ "$ok" = 0 ] || break
		outage "$how" || { echo "# outage $i: the client not back, or not within the targets"; ok=1; }
	done
	for x in $DEVS; do
		wait "${fio_pid[$x]}" || { echo "# fio on $x failed:"
			grep -iE "error|bad|verify" "$WORK/fio-$how-$x.log" | head -n 5 | sed 's/^/#   /'
			ok=1; }
		echo "# $x: longest IO latency the application saw:" \
			"$(fio_pause "$WORK/fio-$how-$x.json") ms" | tee -a "$WORK/times"
	done
	return $ok
}

# verify_saved HOW: a verify-only pass on every device (all at once) over
# what the round's write load recorded as written (fio's verify state); all
# 128 MiB of each must be read back. It is the rounds' only verification:
# the write load itself does not read back.
verify_saved() {
	local x out rc=0
	declare -A pid
	for x in $DEVS; do
		# shellcheck disable=SC2046
		(cd "$WORK/$1-$x" && ls ./*verify.state > /dev/null &&
			exec fio $(load "$x") --verify_only=1 --verify_state_load=1 \
				--output="$WORK/verify-$1-$x.json") &
		pid[$x]=$!
	done
	for x in $DEVS; do
		wait "${pid[$x]}" || { echo "# $1: $x: the verify-only pass failed"; rc=1; continue; }
		# (fio's own messages may come before its JSON)
		out=$(python3 -c 'import json,sys; t=open(sys.argv[1]).read()
r=json.loads(t[t.index("{"):])["jobs"][0]["read"]
print(r["io_bytes"] >> 20); sys.exit(r["io_bytes"] != 128 << 20)' "$WORK/verify-$1-$x.json") ||
			rc=1
		echo "# $1: $x: the verify-only pass with fio's verify state read back $out MiB" |
			tee -a "$WORK/times"
	done
	return $rc
}

check "5 x kill -9 of the server during crc32c-stamped random writes: no IO error, noticed within 5 s, back within 2 s" \
	load_with_outages kill 5
check "what fio recorded as written survives: a verify-only pass with its verify state" \
	verify_saved kill
check "3 x graceful stop of the server: no error, noticed within 5 s, back within 2 s of it listening" \
	load_with_outages term 3
check "... and a verify-only pass with its verify state" verify_saved term
check "show says how often it reconnected and what it re-issued" \
	sh -c "$CLIENT show vol | grep -E '^reconnects +[1-9]' && $CLIENT show vol | grep -q '^reissued'"
reconnects_of() { "$CLIENT" list --json | python3 -c "import json,sys
d = next(d for d in json.load(sys.stdin) if d['name'] == '$1')
print(d['reconnects'] if d['state'] == 'live' else -1)"; }
check "list counts vol's and vol2's reconnects (one session)" \
	sh -c "[ $(reconnects_of vol) -ge 8 ] && [ $(reconnects_of vol2) = $(reconnects_of vol) ]"
check "... and other's session never reconnected" test "$(reconnects_of other)" = 0

# 3. Away longer than vol's loss timeout; vol2 has none.
head -c 8192 /dev/urandom > "$WORK/held.blk"
kill -9 "$srv_pid"
wait "$srv_pid" 2>/dev/null
t0=$(now_ms)
# One write to vol2 from each CPU, so on each queue (and so in the same
# worker's wait list as vol's failing writes below): blocks 1000 and 1001.
declare -a held
for cpu in 0 1; do
	taskset -c $cpu dd if="$WORK/held.blk" of="$vol2_dev" bs=4k skip=$cpu seek=$((1000 + cpu)) \
		count=1 oflag=direct > "$WORK/dd-held$cpu.log" 2>&1 &
	held[cpu]=$!
done
held_wait() { kill -0 "${held[0]}" && kill -0 "${held[1]}"; }
held_done() { wait "${held[0]}" && wait "${held[1]}"; }
# vol_writes_fail: a write to vol from each CPU, at once; both must fail.
vol_writes_fail() {
	local p
	taskset -c 0 dd if=/dev/zero of="$vol_dev" bs=4k count=1 oflag=direct 2> "$WORK/dd0.err" &
	p=$!
	! taskset -c 1 dd if=/dev/zero of="$vol_dev" bs=4k count=1 oflag=direct 2> "$WORK/dd1.err" &&
		! wait $p
}
fio --name=steady --filename="$(dev_of other)" --direct=1 --ioengine=io_uring --rw=randwrite \
	--bs=4k --iodepth=4 --size=32M --time_based --runtime=$((LOSS + 5)) --verify=crc32c \
	--do_verify=1 --verify_fatal=1 --verify_backlog=64 > "$WORK/fio-steady.log" 2>&1 &
steady=$!
check "IO on vol fails with an error on both queues once its loss timeout passed" \
	vol_writes_fail
t1=$(now_ms)
echo "# the write failed after $((t1 - t0)) ms (loss timeout $LOSS s)" | tee -a "$WORK/times"
check "... not before the loss timeout" test $((t1 - t0)) -ge $((LOSS * 1000 - 1500))
both_are() { state_is vol "$1" && state_is vol2 "$1"; }
vol_failed_vol2_waits() { state_is vol failed && state_is vol2 reconnecting; }
check "list shows vol failed and vol2, of the same session, reconnecting" vol_failed_vol2_waits
only_vol_lost() {
	grep "loss timeout of" "$WORK/daemon.log"
	grep -q "loss timeout of vol $LOSS s" "$WORK/daemon.log" &&
		! grep -q "loss timeout of vol2" "$WORK/daemon.log"
}
check "... and the daemon logged vol's loss, not vol2's" only_vol_lost
check "... with the attempt, how long the server is away and when it tries next" \
	sh -c "$CLIENT list | grep -E 'failed \(attempt [0-9]+, down [0-9.]+ s, next try in [0-9.]+ s\)'"
check "new IO fails at once while failed" \
	timeout 5 sh -c "! dd if=$vol_dev of=/dev/null bs=4k count=1 iflag=direct"
check "vol2's writes (one per queue), issued when the server went, still wait" held_wait
start_server srv "${srv_args[@]}" || exit 1
check "the server back: vol2's held writes complete without an error" held_done
held_on_disk() {
	dd if="$vol2_dev" bs=4k skip=1000 count=2 iflag=direct 2> /dev/null | cmp - "$WORK/held.blk"
}
check "... and it is on the disk" held_on_disk
check "the other server's device carried on all along: verified IO, no error" wait "$steady"
check "the server back: the devices are live again without remapping" \
	wait_for 10 both_are live
for x in vol vol2; do
	check "and verified IO works on $x, the same device" \
		fio_verify "$(dev_of $x)" --ioengine=io_uring --size=64M --bs=64k --iodepth=8
done
old_daemon=$(cat /run/ibnbd/client.lock)
kill -TERM "$old_daemon"
check "the daemon leaves its devices (SIGTERM)" wait_for 15 sh -c "! kill -0 $old_daemon"
check "a new daemon with another default loss timeout (100 s) takes them over" \
	start_daemon --loss-timeout 100
check "... every device live" wait_for 15 devices_are 3 live
check "... each keeps its own loss timeout; other, which had none, gets the new default" \
	losses_are "$LOSS" 0 100

# 4. Another disk under the same export name and size: the device must not
# carry on against it.
kill -9 "$srv_pid"
wait "$srv_pid" 2>/dev/null
mv "$WORK/vol.img" "$WORK/old.img"
truncate -s 512M "$WORK/vol.img"
start_server srv "${srv_args[@]}" || exit 1
check "another backing under the same name and size: the device fails" \
	wait_for 15 state_is vol failed
check "... while vol2, on the same session, is live" wait_for 15 state_is vol2 live
check "... and takes verified IO" fio_verify "$(dev_of vol2)" --ioengine=io_uring --size=16M \
	--bs=64k --iodepth=8
check "... show says why" sh -c "$CLIENT show vol | grep 'no longer the one' | grep -q identity"
check "... and list too" sh -c "$CLIENT list | grep -q \"failed: export 'vol' on .* is no longer\""
check "... its IO fails" timeout 5 sh -c "! dd if=/dev/zero of=$vol_dev bs=4k count=1 oflag=direct"
check "... and nothing was written to the other backing" test "$(stat -c %b "$WORK/vol.img")" = 0
check "unmap" "$CLIENT" unmap vol
echo "# ---- times ----"
cat "$WORK/times"
echo "# the daemon's own account (from losing a connection to all live again):"
cat "$WORK/daemon.earlier.log" "$WORK/daemon.log" | grep "reconnected after" | sed 's/^/#   /'
done_testing
