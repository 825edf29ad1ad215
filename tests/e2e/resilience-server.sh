#!/bin/bash
# The server goes away under verified IO and comes back; the application
# sees pauses, never an error, and nothing acknowledged is lost:
#   1. kill -9 the server 5 times during fio random writes with crc32c
#      verification; restart it each time.
#   2. stop it gracefully (SIGTERM) 3 times under the same load: the client
#      is back within 1 s of the server listening again.
#   3. keep it away longer than the loss timeout: IO fails with EIO and
#      `list` says failed; bring it back: the same device works again.
# Prints, per event, how long after the server listened again the client
# was back, and fio's longest IO latency (the application's longest pause).
. "$(dirname "$0")/lib.sh"

LOSS=25
# Both daemons stamp their log lines with the monotonic clock, so that the
# time from the server listening again to the client being back is read
# from their own logs, not from this script's polling.
export IBNBD_LOG_TIME=1
truncate -s 1G "$WORK/vol.img"
srv_args=(--listen "$ADDR" --export "vol=$WORK/vol.img")
start_server srv "${srv_args[@]}" || exit 1
check "daemon starts (loss timeout $LOSS s)" start_daemon --loss-timeout "$LOSS"
dev=$("$CLIENT" map "$ADDR" vol --name vol)
check "map" test -b "$dev"

reconnects() { grep -c "reconnected after" "$WORK/daemon.log"; }

# outage HOW: takes the server down (kill -9 or SIGTERM), restarts it after a
# second, waits for the client to be back and reports the times.
outage() {
	local how=$1 before t_down t_up t_back
	before=$(reconnects)
	t_down=$(now_ms)
	if [ "$how" = kill ]; then
		kill -9 "$srv_pid"
	else
		kill -TERM "$srv_pid"
	fi
	wait "$srv_pid" 2>/dev/null
	sleep 1
	start_server srv "${srv_args[@]}" >> "$WORK/restarts.log" 2>&1 || return 1
	t_up=$(now_ms)
	wait_for 30 sh -c "[ \$(grep -c 'reconnected after' $WORK/daemon.log) -gt $before ]" ||
		return 1
	t_back=$(now_ms)
	back=$(log_time "reconnected after" "$WORK/daemon.log")
	listened=$(log_time "listening on" "$WORK/srv.log")
	recovery=$(( (back - listened) ))
	echo "# $how: server down $((t_up - t_down)) ms; client back $recovery ms after the" \
		"server listened (daemon and server logs)" | tee -a "$WORK/times"
	[ "$how" = kill ] || [ "$recovery" -le 1000 ]
}

# log_time TEXT FILE: the monotonic time (ms) of the last line with TEXT.
log_time() {
	grep "$1" "$2" | tail -n 1 | sed -E 's/^\[([0-9]+)\.([0-9]{3})\].*/\1\2/'
}

# The write load: 256 MiB of crc32c-checked random writes. fio keeps its
# verify state (which writes completed) in the round's directory, so that a
# verify-only pass afterwards checks exactly what was acknowledged.
load=(--name=load --filename="$dev" --direct=1 --ioengine=io_uring --rw=randwrite --bs=4k
	--iodepth=16 --size=256M --verify=crc32c --verify_fatal=1 --output-format=json)

# load_with_outages HOW N: N outages during the write load (which verifies
# what it wrote once it is done, with do_verify).
load_with_outages() {
	local how=$1 n=$2 i fio_pid ok=0
	mkdir -p "$WORK/$how"
	(cd "$WORK/$how" && exec fio "${load[@]}" --do_verify=1 --verify_state_save=1 \
		--output="$WORK/fio-$how.json" > "$WORK/fio-$how.log" 2>&1) &
	fio_pid=$!
	for i in $(seq "$n"); do
		sleep 4
		kill -0 "$fio_pid" 2>/dev/null || { echo "# fio ended before outage $i"; ok=1; break; }
		outage "$how" || { echo "# outage $i: the client did not come back"; ok=1; }
	done
	wait "$fio_pid" || ok=1
	echo "# longest IO latency the application saw: $(fio_pause "$WORK/fio-$how.json") ms" |
		tee -a "$WORK/times"
	return $ok
}

# verify_saved HOW: a verify-only pass over what the round's write load
# recorded as written (fio's verify state); all 256 MiB must be read back.
verify_saved() {
	(cd "$WORK/$1" && ls ./*verify.state && exec fio "${load[@]}" --verify_only=1 \
		--verify_state_load=1 --output="$WORK/verify-$1.json") || return 1
	local out rc
	out=$(python3 -c 'import json,sys; r=json.load(open(sys.argv[1]))["jobs"][0]["read"]
print(r["io_bytes"] >> 20); sys.exit(r["io_bytes"] != 256 << 20)' "$WORK/verify-$1.json")
	rc=$?
	echo "# $1: the verify-only pass with fio's verify state read back $out MiB" |
		tee -a "$WORK/times"
	return $rc
}

check "5 x kill -9 of the server during verified random writes: no IO or verify error" \
	load_with_outages kill 5
check "what fio recorded as written survives: a verify-only pass with its verify state" \
	verify_saved kill
check "3 x graceful stop of the server: no error, back within 1 s of it listening" \
	load_with_outages term 3
check "... and a verify-only pass with its verify state" verify_saved term
check "show says how often it reconnected and what it re-issued" \
	sh -c "$CLIENT show vol | grep -E '^reconnects +[1-9]' && $CLIENT show vol | grep -q '^reissued'"
check "list counts the reconnects" \
	sh -c "$CLIENT list --json | python3 -c 'import json,sys; d=json.load(sys.stdin)[0]; sys.exit(0 if d[\"reconnects\"] >= 8 and d[\"state\"] == \"live\" else 1)'"

# 3. Away longer than the loss timeout.
kill -9 "$srv_pid"
wait "$srv_pid" 2>/dev/null
t0=$(now_ms)
check "IO fails with an error once the loss timeout passed" \
	sh -c "! dd if=/dev/zero of=$dev bs=4k count=1 oflag=direct 2>$WORK/dd.err"
t1=$(now_ms)
echo "# the write failed after $((t1 - t0)) ms (loss timeout $LOSS s)" | tee -a "$WORK/times"
check "... not before the loss timeout" test $((t1 - t0)) -ge $((LOSS * 1000 - 1500))
check "list shows the device failed" \
	sh -c "$CLIENT list --json | grep -q '\"state\": *\"failed\"'"
check "... with the attempt, how long the server is away and when it tries next" \
	sh -c "$CLIENT list | grep -E 'failed \(attempt [0-9]+, down [0-9.]+ s, next try in [0-9.]+ s\)'"
check "new IO fails at once while failed" \
	timeout 5 sh -c "! dd if=$dev of=/dev/null bs=4k count=1 iflag=direct"
start_server srv "${srv_args[@]}" || exit 1
check "the server back: the device is live again without remapping" \
	wait_for 10 sh -c "$CLIENT list --json | grep -q '\"state\": *\"live\"'"
check "and verified IO works on the same device" \
	fio_verify "$dev" --ioengine=io_uring --size=64M --bs=64k --iodepth=8

# 4. Another disk under the same export name and size: the device must not
# carry on against it.
kill -9 "$srv_pid"
wait "$srv_pid" 2>/dev/null
mv "$WORK/vol.img" "$WORK/old.img"
truncate -s 1G "$WORK/vol.img"
start_server srv "${srv_args[@]}" || exit 1
check "another backing under the same name and size: the device fails" \
	wait_for 15 sh -c "$CLIENT list --json | grep -q '\"state\": *\"failed\"'"
check "... show says why" sh -c "$CLIENT show vol | grep 'no longer the one' | grep -q identity"
check "... and list too" sh -c "$CLIENT list | grep -q \"failed: export 'vol' on .* is no longer\""
check "... its IO fails" timeout 5 sh -c "! dd if=/dev/zero of=$dev bs=4k count=1 oflag=direct"
check "... and nothing was written to the other backing" test "$(stat -c %b "$WORK/vol.img")" = 0
check "unmap" "$CLIENT" unmap vol
echo "# ---- times ----"
cat "$WORK/times"
echo "# the daemon's own account (from losing a connection to all live again):"
grep "reconnected after" "$WORK/daemon.log" | sed 's/^/#   /'
done_testing
