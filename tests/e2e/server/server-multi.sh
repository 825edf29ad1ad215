#!/bin/bash
# In the guest: one ibnbd-server, several exports (a file, a 4 KiB-sector
# loop device read-write, a read-only file), several clients at once spread
# over the workers, each verifying its data; then a clean SIGTERM.
name=server-multi
. "$(dirname "$0")/lib.sh"
port=4422
log=$work/server.log
srv=
loopdev=

cleanup() {
	[ -n "$srv" ] && kill -0 "$srv" 2>/dev/null && kill -KILL "$srv"
	[ -n "$loopdev" ] && losetup -d "$loopdev"
	if [ "$fail" != 0 ] && [ -e "$log" ]; then
		echo "# server log (last 40 lines):"; tail -n 40 "$log" | sed 's/^/#   /'
	fi
	rm -rf "$work"
}
on_exit cleanup

truncate -s 128M "$work/a.img" "$work/ro.img"
truncate -s 64M "$work/loop.img"
seed=$((RANDOM + 1))
check "pattern written into the read-only file" "$probe" --fill-pattern "$work/ro.img" "$seed"
loopdev=$(losetup --show -f --direct-io=on --sector-size 4096 "$work/loop.img") ||
	{ flunk "losetup --sector-size 4096"; exit 1; }

# a and blk are shared: several probe sessions write them at once.
"$server_bin" --no-auth --listen "$addr:$port" --workers 3 --export "a=$work/a.img,shared" \
	--export "blk=$loopdev,shared" --export "ro=$work/ro.img,ro" > "$log" 2>&1 &
srv=$!
for _ in $(seq 100); do grep -q "serving 3 export" "$log" && break; sleep 0.1; done
grep -q "serving 3 export" "$log" && pass "server started" || { flunk "server started"; exit 1; }

check "the loop device reports 4096-byte logical blocks" \
	sh -c "'$probe' $addr blk info | grep -q 'logical block 4096'"

pids=()
# Writers of one export get disjoint ranges: overlapping writers would
# rightly read each other's data.
for i in 1 2 3; do
	"$probe" --range $((i * 32 << 20)):$((32 << 20)) "$addr" a write-read-verify 40 \
		> "$work/c-a$i.out" 2>&1 & pids+=($!)
	"$probe" --range $(((i - 1) * 16 << 20)):$((16 << 20)) "$addr" blk write-read-verify 40 \
		> "$work/c-blk$i.out" 2>&1 & pids+=($!)
done
"$probe" --ro "$addr" ro read-verify 40 "$seed" > "$work/c-ro.out" 2>&1 & pids+=($!)
"$probe" "$addr" blk garbage > "$work/c-garbage.out" 2>&1 & pids+=($!)
n=0
for pid in "${pids[@]}"; do wait "$pid" || n=$((n + 1)); done
if [ $n = 0 ]; then
	pass "${#pids[@]} concurrent clients on 3 exports (one running garbage) all passed"
else
	flunk "$n of ${#pids[@]} concurrent clients failed"
	for f in "$work"/c-*.out; do echo "# $f:"; sed 's/^/#   /' "$f"; done
fi
check "sessions were spread over the workers" \
	sh -c "grep -q 'worker 0 conn' '$log' && grep -q 'worker 1 conn' '$log' && grep -q 'worker 2 conn' '$log'"
check "flush and FUA on the block device" "$probe" "$addr" blk flush fua-write 8192 8192 flush

kill -TERM "$srv"
rc=124
for _ in $(seq 300); do
	if ! kill -0 "$srv" 2>/dev/null; then wait "$srv"; rc=$?; break; fi
	sleep 0.1
done
[ $rc = 124 ] || srv=
if [ $rc = 124 ]; then
	for t in /proc/$srv/task/*; do
		echo "# thread $(cat $t/comm) wchan $(cat $t/wchan 2>/dev/null):"
		sed 's/^/#   /' $t/stack 2>/dev/null
	done
fi
[ $rc = 0 ] && pass "SIGTERM: exit 0" || flunk "SIGTERM: exit $rc"
stats=$(grep "stats (exit)" "$log")
num() { sed -n "s/.* $1=\([0-9]*\).*/\1/p" <<< "$stats"; }
if [ "$(num connections)" -ge 10 ] 2>/dev/null && [ "$(num io_errors)" = 0 ] &&
   [ "$(num flushes)" -ge 2 ] && [ "$(num fua_writes)" -ge 1 ] && [ "$(num writes)" -ge 240 ]; then
	pass "exit counters: $stats"
else
	flunk "exit counters: '$stats'"
fi
done_testing
