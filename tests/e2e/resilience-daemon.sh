#!/bin/bash
# The client daemon is killed (kill -9: a crash, or an upgrade gone wrong)
# under verified IO and started again: it finds the devices it had mapped in
# its state file, recovers them under the same /dev/ublkbN, and the
# application sees a pause, never an error.
#   1. 3 x kill -9 during fio random writes with crc32c verification.
#   2. kill -9 while a mounted ext4 is being written; after the restart the
#      writes finish, and after unmount and a fresh mount every file's
#      checksum is the one written.
. "$(dirname "$0")/lib.sh"

truncate -s 1G "$WORK/vol.img"
start_server srv --listen "$ADDR" --export "vol=$WORK/vol.img" || exit 1
check "daemon starts" start_daemon
dev=$("$CLIENT" map "$ADDR" vol --name vol)
check "map" test -b "$dev"
check "the state file records it" grep -q "\"export\": *\"vol\"" /run/ibnbd/devices.json

daemon_pid() { cat /run/ibnbd/client.lock; }

# crash_and_restart: kill -9 the daemon, start a new one, check it recovered
# the same device, and report how long that took.
crash_and_restart() {
	local pid t0 t1
	pid=$(daemon_pid)
	t0=$(now_ms)
	kill -9 "$pid"
	wait_for 10 sh -c "! kill -0 $pid" || return 1
	start_daemon || return 1
	t1=$(now_ms)
	echo "# daemon killed and back in $((t1 - t0)) ms" | tee -a "$WORK/times"
	"$CLIENT" list | grep -q "^$dev .* live" || { "$CLIENT" list; return 1; }
}

crashes_under_fio() {
	local i fio_pid ok=0
	fio --name=load --filename="$dev" --direct=1 --ioengine=io_uring --rw=randwrite \
		--bs=4k --iodepth=16 --size=256M --verify=crc32c --do_verify=1 --verify_fatal=1 \
		--output-format=json --output="$WORK/fio.json" > "$WORK/fio.log" 2>&1 &
	fio_pid=$!
	for i in 1 2 3; do
		sleep 4
		kill -0 "$fio_pid" 2>/dev/null || { echo "# fio ended before crash $i"; ok=1; break; }
		crash_and_restart || { echo "# crash $i: the device did not come back"; ok=1; }
	done
	wait "$fio_pid" || ok=1
	echo "# longest IO latency the application saw: $(fio_pause "$WORK/fio.json") ms" |
		tee -a "$WORK/times"
	return $ok
}
check "3 x kill -9 of the daemon during verified random writes: no IO or verify error" \
	crashes_under_fio
check "the same device node is still the device" test -b "$dev"

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
check "unmap" "$CLIENT" unmap vol
check "the state file is empty again" python3 -c \
	"import json,sys; sys.exit(0 if json.load(open('/run/ibnbd/devices.json')) == [] else 1)"
check "no ublk device left" no_ublk_devices
echo "# ---- times ----"
cat "$WORK/times"
done_testing
