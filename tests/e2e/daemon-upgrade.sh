#!/bin/bash
# SIGTERM is a live upgrade, as `systemctl restart ibnbd-client` does it: the
# daemon leaves its devices to the next one instead of unmapping them from
# under mounted filesystems. Three devices on two sessions: a mounted ext4
# written file by file, and verified fio on both queues of the others,
# across SIGTERM + a new daemon, and three more in a row (a daemon that
# leaves with one request in flight once hung in its drain): no IO error,
# every file intact. Then `unmap --all` unmaps - but not a mounted device,
# unless forced.
. "$(dirname "$0")/lib.sh"

# Log lines carry the monotonic time, for the report of a slow takeover.
export IBNBD_LOG_TIME=1
truncate -s 256M "$WORK/a.img" "$WORK/b.img" "$WORK/c.img"
start_server one --listen "$ADDR" --export "a=$WORK/a.img" --export "b=$WORK/b.img" || exit 1
start_server two --listen "$ADDR:4500" --export "c=$WORK/c.img" || exit 1
check "daemon starts" start_daemon
a=$("$CLIENT" map "$ADDR" a --name a)
b=$("$CLIENT" map "$ADDR" b --name b)
c=$("$CLIENT" map "$ADDR:4500" c --name c)
check "three devices, two sessions" test -b "$a" -a -b "$b" -a -b "$c"

mkfs.ext4 -q -F "$a"
mkdir "$WORK/mnt"
check "mount ext4 on a" mount "$a" "$WORK/mnt"
writer() {
	local i
	for i in $(seq 1 100); do
		head -c $((128 * 1024 + i * 4096)) /dev/urandom > "$WORK/mnt/f$i" || return 1
		md5sum "$WORK/mnt/f$i" | sed "s|$WORK/mnt/||" >> "$WORK/sums"
		[ $((i % 10)) = 0 ] && { sync || return 1; }
		sleep 0.1
	done
	sync
}
writer > "$WORK/writer.log" 2>&1 &
wpid=$!
verified=(--direct=1 --ioengine=io_uring --rw=randwrite --bs=4k --iodepth=8 --numjobs=2
	--cpus_allowed=0-1 --cpus_allowed_policy=split --size=16M --offset_increment=32M
	--time_based --runtime=60 --verify=crc32c --verify_fatal=1 --do_verify=1
	--verify_backlog=64
	--group_reporting)
fio --name=b --filename="$b" "${verified[@]}" > "$WORK/fio-b.log" 2>&1 &
fio_b=$!
fio --name=c --filename="$c" "${verified[@]}" > "$WORK/fio-c.log" 2>&1 &
fio_c=$!
sleep 4

# term_daemon: SIGTERM to the daemon; true once it has left (within 15 s).
# One that does not leave is killed, and why it did not (stuck_report, its
# log's tail) goes to $WORK/stuck.txt, which show_stuck prints.
term_daemon() {
	local pid
	pid=$(cat /run/ibnbd/client.lock)
	kill -TERM "$pid"
	wait_for 15 sh -c "! kill -0 $pid" && return 0
	{ stuck_report "$pid"; tail -n 30 "$WORK/daemon.log" | sed 's/^/# log: /'; } \
		>> "$WORK/stuck.txt"
	return 1
}
show_stuck() { [ ! -s "$WORK/stuck.txt" ] || { cat "$WORK/stuck.txt"; : > "$WORK/stuck.txt"; }; }

t0=$(now_ms)
check "SIGTERM: the daemon exits" term_daemon
show_stuck
t1=$(now_ms)
echo "# the daemon left after $((t1 - t0)) ms" | tee -a "$WORK/times"
check "it said it leaves the devices" grep -q "leaving the devices to the next daemon" \
	"$WORK/daemon.log"
check "the devices stay, the filesystem mounted" \
	sh -c "test -b $a -a -b $b -a -b $c && mountpoint -q $WORK/mnt"
check "the state file still lists them" \
	test "$(grep -c '"export"' /run/ibnbd/devices.json)" = 3
check "a new daemon starts" start_daemon
t2=$(now_ms)
echo "# the new daemon was up $((t2 - t1)) ms after the old one left" | tee -a "$WORK/times"
check "... and took all three over" wait_for 10 devices_are 3 live

# upgrade N: the Nth more SIGTERM and new daemon; false if the old one did not
# leave within 15 s (a new daemon takes over anyway), or the new one did not
# take all three over.
upgrade() {
	local t0 t1
	t0=$(now_ms)
	term_daemon || { start_daemon; return 1; }
	t1=$(now_ms)
	start_daemon && wait_for 10 devices_are 3 live || return 1
	echo "# upgrade $1: the daemon left after $((t1 - t0)) ms, the next took over" \
		"$(($(now_ms) - t1)) ms later" | tee -a "$WORK/times"
}
more_upgrades() {
	local i
	for i in 1 2 3; do
		kill -0 "$fio_b" && kill -0 "$fio_c" || { echo "# fio ended before upgrade $i"; return 1; }
		upgrade "$i" || { echo "# upgrade $i failed"; return 1; }
		sleep "0.$((RANDOM % 10))"
	done
}
check "3 more upgrades in a row under the same load" more_upgrades
show_stuck
check "the writer on the mounted ext4 finishes without an error" wait "$wpid"
check "verified fio on b ends without an error" wait "$fio_b"
check "verified fio on c ends without an error" wait "$fio_c"
check "unmap --all refuses the mounted device" sh -c "! $CLIENT unmap --all 2> $WORK/all.err"
check "... saying why" grep -q "is in use: it is mounted on" "$WORK/all.err"
check "... and unmaps the others" sh -c "[ \$($CLIENT list --json | grep -c '\"device\"') = 1 ]"
check "umount" umount "$WORK/mnt"
check "mount again" mount "$a" "$WORK/mnt"
check "every file has the checksum it was written with" \
	sh -c "cd $WORK/mnt && md5sum -c --quiet $WORK/sums"
umount "$WORK/mnt"
check "unmap --all" "$CLIENT" unmap --all
check "the state file is empty" python3 -c \
	"import json,sys; sys.exit(0 if json.load(open('/run/ibnbd/devices.json')) == [] else 1)"
check "no ublk device left" no_ublk_devices
echo "# ---- times ----"
cat "$WORK/times"
done_testing
