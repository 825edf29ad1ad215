#!/bin/bash
# The client daemon is killed (kill -9: a crash, or an upgrade gone wrong)
# under verified IO and started again: it finds the devices it had mapped in
# its state file, recovers them under the same /dev/ublkbN, and the
# application sees a pause, never an error. Three devices: vol and vol2 of
# one server (one session), other of a second server.
#   1. 3 x kill -9 during fio random writes with crc32c verification on
#      both queues of every device.
#   2. kill -9 while a mounted ext4 is being written; after the restart the
#      writes finish, and after unmount and a fresh mount every file's
#      checksum is the one written.
. "$(dirname "$0")/lib.sh"

truncate -s 512M "$WORK/vol.img" "$WORK/vol2.img" "$WORK/other.img"
start_server srv --listen "$ADDR" --export "vol=$WORK/vol.img" --export "vol2=$WORK/vol2.img" ||
	exit 1
start_server other --listen "$ADDR:4500" --export "other=$WORK/other.img" || exit 1
check "daemon starts" start_daemon
"$CLIENT" map "$ADDR" vol --name vol > /dev/null
"$CLIENT" map "$ADDR" vol2 --name vol2 > /dev/null
"$CLIENT" map "$ADDR:4500" other --name other > /dev/null
DEVS="vol vol2 other"
declare -A devs
for x in $DEVS; do devs[$x]=$(dev_of "$x"); done
dev=${devs[vol]}
check "three devices: two of one server, one of another" \
	test -b "${devs[vol]}" -a -b "${devs[vol2]}" -a -b "${devs[other]}"
check "the state file records them" \
	test "$(grep -c '"export"' /run/ibnbd/devices.json)" = 3

daemon_pid() { cat /run/ibnbd/client.lock; }

# crash_and_restart: kill -9 the daemon, start a new one, check it recovered
# every device under the same node, and report how long that took.
crash_and_restart() {
	local pid t0 t1 x
	pid=$(daemon_pid)
	t0=$(now_ms)
	kill -9 "$pid"
	wait_for 10 sh -c "! kill -0 $pid" || return 1
	start_daemon || return 1
	t1=$(now_ms)
	echo "# daemon killed and back in $((t1 - t0)) ms" | tee -a "$WORK/times"
	for x in $DEVS; do
		"$CLIENT" list | grep -q "^${devs[$x]} .* live" || { "$CLIENT" list; return 1; }
	done
}

crashes_under_fio() {
	local i x ok=0
	declare -A fio_pid
	for x in $DEVS; do
		fio --name="$x" --filename="${devs[$x]}" --direct=1 --ioengine=io_uring \
			--rw=randwrite --bs=4k --iodepth=8 --numjobs=2 --cpus_allowed=0-1 \
			--cpus_allowed_policy=split --size=48M --offset_increment=128M \
			--group_reporting --verify=crc32c --do_verify=1 --verify_fatal=1 \
			--output-format=json --output="$WORK/fio-$x.json" > "$WORK/fio-$x.log" 2>&1 &
		fio_pid[$x]=$!
	done
	for i in 1 2 3; do
		sleep 4
		for x in $DEVS; do
			kill -0 "${fio_pid[$x]}" 2>/dev/null ||
				{ echo "# fio on $x ended before crash $i"; ok=1; }
		done
		[ "$ok" = 0 ] || break
		crash_and_restart || { echo "# crash $i: the devices did not come back"; ok=1; }
	done
	for x in $DEVS; do
		wait "${fio_pid[$x]}" || { echo "# fio on $x failed"; ok=1; }
		echo "# $x: longest IO latency the application saw: $(fio_pause "$WORK/fio-$x.json") ms" |
			tee -a "$WORK/times"
	done
	return $ok
}
check "3 x kill -9 of the daemon during verified random writes on 3 devices: no IO or verify error" \
	crashes_under_fio
same_nodes() { local x; for x in $DEVS; do [ "$(dev_of "$x")" = "${devs[$x]}" ] || return 1; done; }
check "the same device nodes are still the devices" same_nodes

# 2. A mounted filesystem under write load.
mkfs.ext4 -q -F "$dev"
mkdir "$WORK/mnt"
check "mount ext4" mount "$dev" "$WORK/mnt"
writer() {
	local i
	for i in $(seq 1 40); do
		head -c $((256 * 1024 + i * 4096)) /dev/urandom > "$WORK/mnt/f$i" || return 1
		md5sum "$WORK/mnt/f$i" | sed "s|$WORK/mnt/||" >> "$WORK/sums"
		sleep 0.1
	done
	sync
}
writer > "$WORK/writer.log" 2>&1 &
wpid=$!
sleep 1
check "kill -9 of the daemon while the filesystem is written" crash_and_restart
check "the writer finishes without an error" wait "$wpid"
check "unmount" umount "$WORK/mnt"
check "mount again" mount "$dev" "$WORK/mnt"
check "every file has the checksum it was written with" \
	sh -c "cd $WORK/mnt && md5sum -c --quiet $WORK/sums"
umount "$WORK/mnt"
check "unmap --all" "$CLIENT" unmap --all
check "the state file is empty again" python3 -c \
	"import json,sys; sys.exit(0 if json.load(open('/run/ibnbd/devices.json')) == [] else 1)"
check "no ublk device left" no_ublk_devices
echo "# ---- times ----"
cat "$WORK/times"
done_testing
