#!/bin/bash
# Faults only a second host can show, on two guests joined by a wire:
#   1. the wire is cut for 15 s, 5 times (3 with the links going down, 2
#      silently: every frame dropped, links up), during crc32c-verified
#      random writes: IO pauses and resumes, zero errors;
#   2. the server host crashes (its guest is killed) during verified reads
#      and boots again: the client reconnects and fio finishes, zero errors.
# For each event it prints how long the client took to notice (list shows
# reconnecting), how long after the fault ended it was live again, and the
# longest IO latency fio saw.
set -u
cd "$(dirname "$0")/../.."
export IBNBD_CLUSTER=${IBNBD_CLUSTER:-$(mktemp -d /tmp/ibnbd-cluster.XXXXXX)}
cluster=tests/vm/cluster
BUILD=${IBNBD_BUILD_DIR:-build}
fail=0
trap '$cluster stop; rc=$?; rm -rf "$IBNBD_CLUSTER"; exit $(( fail ? 1 : rc ))' EXIT
result() { if [ "$1" = 0 ]; then echo "ok - $2"; else echo "not ok - $2"; fail=1; fi; }
now_ms() { echo $(($(date +%s%N) / 1000000)); }
srv=$($cluster addr server)
client() { $cluster exec client -- "$@"; }
state() { # the device's state as the daemon reports it
	client "$BUILD/src/client/ibnbd-client" list --json 2>/dev/null |
		python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["state"])' 2>/dev/null
}
wait_state() { # wait_state STATE SECONDS: 0 once the device is in STATE
	local end=$(($(now_ms) + $2 * 1000))
	while [ "$(now_ms)" -lt "$end" ]; do
		[ "$(state)" = "$1" ] && return 0
		sleep 0.2
	done
	return 1
}
pause_of() { python3 tests/e2e/fio_pause.py; } # the longest IO latency, ms

$cluster start || { fail=1; exit; }
# The backing lives on the host's scratch share, so it survives the server
# host's crash; the server's log too.
start_server() {
	$cluster exec server --bg -- sh -c "exec $BUILD/src/server/ibnbd-server --listen $srv \
		--export vol=\$IBNBD_VM_OUT/vol.img >> \$IBNBD_VM_OUT/server.log 2>&1" > /dev/null
	$cluster exec server -- sh -c 'for i in $(seq 100); do
		grep -q listening $IBNBD_VM_OUT/server.log 2>/dev/null && exit 0; sleep 0.1; done; exit 1'
}
$cluster exec server -- sh -c 'truncate -s 512M $IBNBD_VM_OUT/vol.img'
start_server; result $? "the server starts on the server host"
client sh -c "$BUILD/src/client/ibnbd-client daemon --loss-timeout 120 \
	> \$IBNBD_VM_OUT/daemon.log 2>&1"
result $? "the client daemon starts on the client host"
dev=$(client "$BUILD/src/client/ibnbd-client" map "$srv" vol)
result $? "map across the wire ($dev)"

# 1. Wire cuts under verified random writes.
# (Two TCG guests on one wire do a few hundred IOs a second: a small area
# written and verified over and over, for as long as the cuts take.)
job=$($cluster exec client --bg -- fio --name=cut --filename="$dev" --direct=1 \
	--ioengine=io_uring --rw=randwrite --bs=4k --iodepth=16 --size=16M --loops=10000 \
	--runtime=150 --verify=crc32c --do_verify=1 --verify_fatal=1 --output-format=json)
for i in 1 2 3 4 5; do
	sleep 5
	how=""
	[ "$i" -gt 3 ] && how=--silent
	t0=$(now_ms)
	$cluster cut $how
	wait_state reconnecting 14
	t1=$(now_ms)
	sleep $((15 - (t1 - t0) / 1000))
	t2=$(now_ms)
	$cluster restore
	wait_state live 60
	t3=$(now_ms)
	echo "# cut $i ${how:-(links down)}: noticed after $((t1 - t0)) ms, live" \
		"$((t3 - t2)) ms after the wire was back" | tee -a "$IBNBD_CLUSTER/times"
done
out=$($cluster wait client "$job")
rc=$?
result $rc "5 wire cuts of 15 s during verified random writes: no IO or verify error"
[ $rc = 0 ] || echo "$out" | grep -iE '"error"|fio:|verify|err=' | head -20 | sed 's/^/#   /'
echo "# longest IO latency during the cuts: $(echo "$out" | pause_of) ms" |
	tee -a "$IBNBD_CLUSTER/times"

# 2. The server host crashes during verified reads of data already flushed.
client fio --name=w --filename="$dev" --direct=1 --ioengine=io_uring --rw=write --bs=128k \
	--iodepth=8 --size=32M --verify=crc32c --do_verify=0 --fsync_on_close=1 --minimal \
	> /dev/null
result $? "write 32 MiB with checksums and flush them"
job=$($cluster exec client --bg -- fio --name=w --filename="$dev" --direct=1 \
	--ioengine=io_uring --rw=write --bs=128k --iodepth=8 --size=32M --verify=crc32c \
	--verify_only=1 --verify_fatal=1 --loops=10000 --runtime=60 --output-format=json)
sleep 5
t0=$(now_ms)
$cluster crash server
wait_state reconnecting 14
t1=$(now_ms)
$cluster boot server
start_server
t2=$(now_ms)
wait_state live 60
t3=$(now_ms)
echo "# server host crash: noticed after $((t1 - t0)) ms, host and server back after" \
	"$((t2 - t0)) ms, client live $((t3 - t2)) ms after the server listened" |
	tee -a "$IBNBD_CLUSTER/times"
out=$($cluster wait client "$job")
rc=$?
result $rc "server host crash and reboot during verified reads: no IO or verify error"
[ $rc = 0 ] || echo "$out" | grep -iE '"error"|fio:|verify|err=' | head -20 | sed 's/^/#   /'
echo "# longest IO latency across the crash: $(echo "$out" | pause_of) ms" |
	tee -a "$IBNBD_CLUSTER/times"
client "$BUILD/src/client/ibnbd-client" unmap "$dev"
result $? "unmap"
if [ "$fail" != 0 ]; then
	echo "# ---- client daemon log ----"
	client sh -c 'tail -n 40 $IBNBD_VM_OUT/daemon.log' | sed 's/^/#   /'
	echo "# ---- server log ----"
	$cluster exec server -- sh -c 'tail -n 40 $IBNBD_VM_OUT/server.log' | sed 's/^/#   /'
fi
echo "# ---- times ----"
cat "$IBNBD_CLUSTER/times"
echo "# the daemon's own account (from losing a connection to all live again):"
client sh -c 'grep -E "lost:|reconnected after" $IBNBD_VM_OUT/daemon.log' | sed 's/^/#   /'
