#!/bin/bash
# The control plane under faults: the daemon's verbs never wait behind a
# device whose server is gone or stuck, and unmap is bounded.
#   1. A server killed (an outage), the loss timeout off: unmap --force of
#      one of its devices fails that device's waiting IO at once and
#      returns within 5 s; a plain unmap of an idle one too; list answers
#      at once and a map to another server works meanwhile.
#   2. A server stuck (SIGSTOP: its host still answers RDMA, the process
#      nothing): the IO timeout fires and is counted; list and map stay
#      responsive; a forced unmap returns within 5 s; the server resumes
#      and the other device carries on without an error.
#   3. SIGTERM while a device is stuck: the daemon leaves within seconds;
#      the next one takes the devices over, and their IO completes once the
#      server resumes.
. "$(dirname "$0")/lib.sh"

truncate -s 128M "$WORK/a.img" "$WORK/b.img" "$WORK/c.img" "$WORK/d.img"
start_server one --listen "$ADDR" --export "a=$WORK/a.img" --export "b=$WORK/b.img" || exit 1
start_server two --listen "$ADDR:4500" --export "c=$WORK/c.img" --export "d=$WORK/d.img" ||
	exit 1
check "daemon starts (loss timeout off, IO timeout 2 s, dead timeout 8 s)" \
	start_daemon --loss-timeout 0 --io-timeout 2 --dead-timeout 8
for x in a b; do "$CLIENT" map "$ADDR" "$x" --name "$x" > /dev/null; done
"$CLIENT" map "$ADDR:4500" c --name c > /dev/null
check "three devices mapped" test "$("$CLIENT" list --json | grep -c '"device"')" = 3
a=$(dev_of a) b=$(dev_of b) c=$(dev_of c)
# within SECONDS COMMAND...: COMMAND succeeds, and within SECONDS
within() {
	local limit=$1 t0 t1 rc
	shift
	t0=$(now_ms)
	"$@"
	rc=$?
	t1=$(now_ms)
	echo "# took $((t1 - t0)) ms" >&2
	[ "$rc" = 0 ] && [ $((t1 - t0)) -le $((limit * 1000)) ]
}

# 1. An outage: the server of a and b is gone, and the loss timeout is off.
kill -9 "$one_pid"
wait "$one_pid" 2>/dev/null
dd if=/dev/zero of="$a" bs=4k count=1 oflag=direct 2> "$WORK/dd-a.err" &
dd_a=$!
sleep 1
check "list answers at once during the outage" within 2 "$CLIENT" list
check "a map to another server works during the outage" \
	within 15 "$CLIENT" map "$ADDR:4500" d --name d
check "unmap --force of a device whose server is gone returns within 5 s" \
	within 5 "$CLIENT" unmap --force a
check "... and its waiting IO failed" fails "$dd_a"
check "a plain unmap of an idle device of that server, within 5 s" within 5 "$CLIENT" unmap b
check "unmap of d (the other server's)" "$CLIENT" unmap d

# 2. A stuck server: nothing answers, yet its host's RDMA does.
start_server one --listen "$ADDR" --export "a=$WORK/a.img" --export "b=$WORK/b.img" || exit 1
"$CLIENT" map "$ADDR" a --name a > /dev/null
a=$(dev_of a)
fio --name=c --filename="$c" --direct=1 --ioengine=io_uring --rw=randwrite --bs=4k \
	--iodepth=8 --numjobs=2 --cpus_allowed=0-1 --cpus_allowed_policy=split --size=8M \
	--offset_increment=16M --time_based --runtime=25 --verify=crc32c --verify_fatal=1 \
	--do_verify=1 --verify_backlog=64 --group_reporting > "$WORK/fio-c.log" 2>&1 &
fio_c=$!
# Writes to a that go on until the server stops answering (3 passes over
# the device take far longer than this section).
fio --name=a --filename="$a" --direct=1 --ioengine=psync --rw=write --bs=64k --loops=3 \
	> "$WORK/fio-a.log" 2>&1 &
fio_a=$!
sleep 2
check "IO runs on a and c when their servers get stuck" kill -0 "$fio_a" "$fio_c"
kill -STOP "$two_pid" "$one_pid"
sleep 3
timeouts() { "$CLIENT" show "$1" --json | python3 -c "import json,sys; print(json.load(sys.stdin)['timeouts'])"; }
check "the IO timeout fires on the stuck device (counted)" \
	wait_for 10 sh -c "[ \$($CLIENT show c --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"timeouts\"])') -gt 0 ]"
check "... and logged" grep -q "unanswered for 2 s" "$WORK/daemon.log"
check "list answers at once while two devices are stuck" within 2 "$CLIENT" list
check "unmap --force of a stuck device returns within 5 s" within 5 "$CLIENT" unmap --force a
check "... its IO failed" fails "$fio_a"
check "... with an IO error" grep -q "Input/output error" "$WORK/fio-a.log"
kill -CONT "$one_pid"
check "a map while c is stuck" within 15 "$CLIENT" map "$ADDR" b --name b
b=$(dev_of b)
kill -CONT "$two_pid"
check "the stuck server resumes: verified IO on c ends without an error" wait "$fio_c"

# 3. SIGTERM with a device stuck: the daemon leaves it to the next one.
fio --name=c --filename="$c" --direct=1 --ioengine=io_uring --rw=randwrite --bs=4k \
	--iodepth=8 --size=8M --time_based --runtime=30 --verify=crc32c --verify_fatal=1 \
	--do_verify=1 --verify_backlog=64 > "$WORK/fio-c2.log" 2>&1 &
fio_c=$!
sleep 2
kill -STOP "$two_pid"
sleep 1
pid=$(cat /run/ibnbd/client.lock)
t0=$(now_ms)
kill -TERM "$pid"
check "SIGTERM with a device stuck: the daemon exits within 10 s" \
	wait_for 10 sh -c "! kill -0 $pid"
echo "# the daemon left after $(($(now_ms) - t0)) ms"
check "its devices stay" test -b "$b" -a -b "$c"
check "a new daemon takes them over" start_daemon --loss-timeout 0 --dead-timeout 8
check "... c waits for its server" sh -c "$CLIENT show c | grep -qE '^state +(reconnecting|recovering|live)'"
kill -CONT "$two_pid"
check "c is live again" wait_for 30 state_is c live
# (Bounded: with no daemon serving c, fio would wait for ever.)
for _ in $(seq 60); do kill -0 "$fio_c" 2> /dev/null || break; sleep 1; done
kill "$fio_c" 2> /dev/null
check "verified IO on c went on across the daemon's upgrade, no error" wait "$fio_c"
check "unmap --all" "$CLIENT" unmap --all
check "no ublk device left" no_ublk_devices
done_testing
