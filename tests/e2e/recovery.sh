#!/bin/bash
# A new daemon never forgets a device its predecessor left:
#   1. restarted while its server is away: its devices are taken over and
#      wait (reconnecting), and live once the server is back, their IO done;
#   2. with fewer workers than the devices have queues (--workers 1 for
#      two-queue devices): taken over all the same;
#   3. one it cannot take over now (another process holds its char device,
#      so the kernel refuses START_USER_RECOVERY): listed failed, with why,
#      kept in the state file, tried again, and taken over once released;
#   4. one whose export changed while no daemon ran (the state file says
#      what it maps): taken over failed, its IO failing, never writing to
#      the other backing.
. "$(dirname "$0")/lib.sh"

# Log lines carry the monotonic time, for the report of a failed takeover.
export IBNBD_LOG_TIME=1
truncate -s 128M "$WORK/a.img" "$WORK/b.img" "$WORK/c.img"
srv_args=(--listen "$ADDR" --export "a=$WORK/a.img" --export "b=$WORK/b.img")
start_server one "${srv_args[@]}" || exit 1
start_server two --listen "$ADDR:4500" --export "c=$WORK/c.img" || exit 1
check "daemon starts" start_daemon
a=$("$CLIENT" map "$ADDR" a --name a)
b=$("$CLIENT" map "$ADDR" b --name b)
c=$("$CLIENT" map "$ADDR:4500" c --name c)
check "three devices, two sessions" test -b "$a" -a -b "$b" -a -b "$c"
kill_daemon() {
	local pid
	pid=$(cat /run/ibnbd/client.lock)
	kill -9 "$pid"
	wait_for 10 sh -c "! kill -0 $pid"
}
verified=(--direct=1 --ioengine=io_uring --rw=randwrite --bs=4k --iodepth=8 --numjobs=2
	--cpus_allowed=0-1 --cpus_allowed_policy=split --size=8M --offset_increment=16M
	--time_based --runtime=15 --verify=crc32c --verify_fatal=1 --do_verify=1
	--verify_backlog=64
	--group_reporting)

# 1. Daemon and server gone at once; the daemon comes back first.
fio --name=a --filename="$a" "${verified[@]}" > "$WORK/fio-a.log" 2>&1 &
fio_a=$!
sleep 3
check "kill -9 the daemon" kill_daemon
kill -9 "$one_pid"
wait "$one_pid" 2>/dev/null
check "a new daemon starts while the server of a and b is away" start_daemon
check "a is taken over and waits for its server" \
	sh -c "$CLIENT show a | grep -qE '^state +(reconnecting|recovering)'"
check "c is taken over and live" state_is c live
start_server one "${srv_args[@]}" || exit 1
check "the server back: a is live" wait_for 30 state_is a live
check "verified IO on a across all of it: no error" wait "$fio_a"

# 2. A daemon with fewer workers than the devices have queues.
check "kill -9 the daemon" kill_daemon
check "a daemon with one worker starts" start_daemon --workers 1
check "it took all three two-queue devices over" wait_for 10 devices_are 3 live
check "verified IO on every queue of b through one worker" \
	fio --name=b --filename="$b" "${verified[@]}" --runtime=5

# 3. A device the kernel will not hand over yet.
check "kill -9 the daemon" kill_daemon
# Another process (not this shell: the daemon would inherit the fd). The
# char device opens once the killed daemon's last reference is gone (the
# kernel allows one opener), which can be a moment after it exited.
bash -c 'for _ in $(seq 100); do
	{ exec 7<>"$1"; } 2> /dev/null && exec sleep 600
	sleep 0.1
done' holder "/dev/ublkc${c#/dev/ublkb}" &
holder=$!
check "another process holds c's char device" wait_for 5 test -e "/proc/$holder/fd/7"
check "a daemon starts while another process holds c's char device" start_daemon
check "c is listed failed, not taken over, with why" \
	sh -c "$CLIENT list | grep -E '^$c .*failed: .*refused to hand $c over'"
check "the state file keeps c" python3 -c "import json, sys
sys.exit(0 if any(d['export'] == 'c' for d in json.load(open('/run/ibnbd/devices.json'))) else 1)"
both_live() { state_is a live && state_is b live; }
check "a and b are live" wait_for 10 both_live
kill "$holder"
wait "$holder" 2>/dev/null
# (IO on c only once it is served: without a daemon it waits for ever.)
if check "released: c is taken over on the next try" wait_for 30 state_is c live; then
	check "and works" timeout 60 fio --name=c --filename="$c" "${verified[@]}" --runtime=3
else
	"$CLIENT" list | sed 's/^/# /'
	sed 's/^/# log: /' "$WORK/daemon.log" | tail -n 40
fi

# 4. The export changed while no daemon ran.
check "kill -9 the daemon" kill_daemon
kill -9 "$one_pid"
wait "$one_pid" 2>/dev/null
mv "$WORK/b.img" "$WORK/b-old.img"
truncate -s 128M "$WORK/b.img"
start_server one "${srv_args[@]}" || exit 1
check "a daemon starts" start_daemon
check "b is taken over failed: its export is another file" \
	sh -c "$CLIENT show b | grep -q 'not the one'"
check "b's IO fails" timeout 5 sh -c "! dd if=/dev/zero of=$b bs=4k count=1 oflag=direct"
check "nothing reached the new backing" test "$(stat -c %b "$WORK/b.img")" = 0
check "a is live" state_is a live
check "unmap --all" timeout 60 "$CLIENT" unmap --all
check "no ublk device left" no_ublk_devices
done_testing
