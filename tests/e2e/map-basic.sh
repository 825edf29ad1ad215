#!/bin/bash
# Map a 1 GiB file export over RDMA, verify data end to end with fio across
# block sizes and engines, remap and verify again, compare checksums with the
# backing file, run filesystems on it, discard and write zeroes, flush/FUA,
# read-only access, and leave no ublk device behind.
. "$(dirname "$0")/lib.sh"

truncate -s 1G "$WORK/vol.img"
truncate -s 64M "$WORK/ro.img"
dd if=/dev/urandom of="$WORK/ro.img" bs=1M count=4 conv=notrunc status=none
start_server srv --listen "$ADDR" --export "vol=$WORK/vol.img" --export "rodata=$WORK/ro.img,ro" ||
	exit 1
check "daemon starts" start_daemon

dev=$("$CLIENT" map "$ADDR" vol --name vol)
if [ -b "$dev" ]; then pass "map prints a block device ($dev)"; else flunk "map printed '$dev'"; exit 1; fi
check "size is 1 GiB" test "$(blockdev --getsize64 "$dev")" = 1073741824
check "list shows it live" sh -c "$CLIENT list | grep -E '^$dev +vol +$ADDR:4422 +vol .* rw +live'"

# The whole device, several jobs, 4k..1M, both engines.
# (libaio first: the io_uring pass then covers the whole device, and is
# what the remapped device is verified against.)
check "fio libaio, 2 jobs, bs 64k, crc32c verify" \
	fio_verify "$dev" --ioengine=libaio --numjobs=2 --size=128M --offset_increment=512M \
	--bs=64k --iodepth=8 --group_reporting
check "fio io_uring, 4 jobs x 256 MiB (the whole device), bs 4k-1M, crc32c verify" \
	fio_verify "$dev" --ioengine=io_uring --numjobs=4 --size=256M --offset_increment=256M \
	--bsrange=4k-1m --iodepth=16 --group_reporting
sum_dev=$(md5sum < "$dev")
check "unmap" "$CLIENT" unmap vol
check "the device is gone after unmap" test ! -e "$dev"
dev=$("$CLIENT" map "$ADDR" vol --name vol)
check "map again" test -b "$dev"
check "data survives unmap and map (checksum)" test "$(md5sum < "$dev")" = "$sum_dev"
check "fio verify-only pass over the remapped device" \
	fio --name=reverify --filename="$dev" --direct=1 --ioengine=io_uring --numjobs=4 \
	--size=256M --offset_increment=256M --bsrange=4k-1m --iodepth=16 --rw=randwrite \
	--verify=crc32c --verify_only=1 --verify_fatal=1 --minimal
check "the backing file's checksum equals the device's" \
	test "$(md5sum < "$WORK/vol.img")" = "$sum_dev"

# Discard and write zeroes reach the backing store.
check "blkdiscard 8 MiB at 64 MiB" blkdiscard -o 64M -l 8M "$dev"
check "the discarded range reads back zero (device)" \
	cmp -n 8388608 <(dd if="$dev" bs=1M skip=64 count=8 iflag=direct status=none) /dev/zero
check "the discarded range reads back zero (backing file)" \
	cmp -n 8388608 <(dd if="$WORK/vol.img" bs=1M skip=64 count=8 status=none) /dev/zero
check "blkdiscard -z 4 MiB at 100 MiB" blkdiscard -z -o 100M -l 4M "$dev"
check "the zeroed range reads back zero (backing file)" \
	cmp -n 4194304 <(dd if="$WORK/vol.img" bs=1M skip=100 count=4 status=none) /dev/zero

# Flush and FUA reach the server.
kill -USR1 "$srv_pid"; sleep 0.5
before=$(grep -o 'flushes=[0-9]*' "$WORK/srv.log" | tail -n1 | cut -d= -f2)
check "fio --fsync=1 (flush after every write)" \
	fio --name=fsync --filename="$dev" --direct=1 --ioengine=psync --rw=write --bs=4k \
	--size=1M --fsync=1 --minimal
check "cache attributes: write back with FUA" \
	sh -c "grep -q 'write back' /sys/block/${dev#/dev/}/queue/write_cache && grep -q 1 /sys/block/${dev#/dev/}/queue/fua"
kill -USR1 "$srv_pid"; sleep 0.5
after=$(grep -o 'flushes=[0-9]*' "$WORK/srv.log" | tail -n1 | cut -d= -f2)
check "the server counted the flushes (${before:-?} -> ${after:-?})" \
	test "${after:-0}" -ge $(( ${before:-0} + 200 ))

# Filesystems.
for fs in ext4 xfs; do
	mkfs_ok=1
	case $fs in
	ext4) mkfs.ext4 -q -F "$dev" || mkfs_ok=0 ;;
	xfs) mkfs.xfs -q -f "$dev" || mkfs_ok=0 ;;
	esac
	[ $mkfs_ok = 1 ] && pass "mkfs.$fs" || flunk "mkfs.$fs"
	mkdir -p "$WORK/mnt"
	check "mount $fs" mount "$dev" "$WORK/mnt"
	for i in $(seq 20); do
		mkdir -p "$WORK/mnt/d$((i % 4))"
		head -c $((i * 37 * 1024)) /dev/urandom > "$WORK/mnt/d$((i % 4))/f$i"
	done
	(cd "$WORK/mnt" && find . -type f | sort | xargs md5sum) > "$WORK/sums.$fs"
	sync
	check "unmap refuses a mounted device" sh -c "! $CLIENT unmap vol 2>$WORK/refuse.err && grep -q 'mounted' $WORK/refuse.err"
	check "umount $fs" umount "$WORK/mnt"
	check "unmap after umount" "$CLIENT" unmap vol
	dev=$("$CLIENT" map "$ADDR" vol --name vol)
	check "mount $fs again after remap" mount "$dev" "$WORK/mnt"
	check "$fs: every file's checksum intact" sh -c "cd $WORK/mnt && md5sum --quiet -c $WORK/sums.$fs"
	umount "$WORK/mnt"
done
check "unmap" "$CLIENT" unmap vol

# Read-only.
check "map --rw of a ro export is refused" \
	sh -c "! $CLIENT map $ADDR rodata --rw 2>$WORK/ro.err && grep -q 'read-only' $WORK/ro.err"
rodev=$("$CLIENT" map "$ADDR" rodata 2> "$WORK/ro.err")
check "map without --ro of a ro export maps it read-only ($rodev) and says so" \
	sh -c "test -b '$rodev' && test \"\$(blockdev --getro '$rodev')\" = 1 &&
	       grep -q 'read-only for this host: mapped read-only' '$WORK/ro.err' &&
	       $CLIENT show '$rodev' | grep -qx 'access  *ro'"
check "unmap it" "$CLIENT" unmap "$rodev"
rodev=$("$CLIENT" map "$ADDR" rodata --ro)
check "map --ro" test -b "$rodev"
check "the device is read-only" test "$(blockdev --getro "$rodev")" = 1
check "a write fails" sh -c "! dd if=/dev/zero of=$rodev bs=4k count=1 oflag=direct status=none 2>/dev/null"
check "reads return the export's data" \
	cmp <(dd if="$rodev" bs=1M count=4 iflag=direct status=none) <(head -c 4M "$WORK/ro.img")
check "unmap ro" "$CLIENT" unmap "$rodev"

stop_all
check "no ublk device left after unmap and daemon exit" no_ublk_devices
done_testing
