#!/bin/bash
# Two exports from one server (a file and a loop block device) and a third
# from a second server on another port, mapped at once, with concurrent
# verified IO on all three.
. "$(dirname "$0")/lib.sh"

truncate -s 256M "$WORK/a.img" "$WORK/loop.img" "$WORK/c.img"
loopdev=$(losetup --find --show --direct-io=on "$WORK/loop.img") || { flunk "losetup"; exit 1; }
on_exit losetup -d "$loopdev"
start_server one --listen "$ADDR" --export "a=$WORK/a.img" --export "blk=$loopdev" || exit 1
start_server two --listen "$ADDR:4500" --export "c=$WORK/c.img" || exit 1
check "daemon starts" start_daemon

a=$("$CLIENT" map "$ADDR" a)
b=$("$CLIENT" map "$ADDR:4422" blk)
c=$("$CLIENT" map "$ADDR:4500" c)
check "three devices mapped ($a $b $c)" test -b "$a" -a -b "$b" -a -b "$c"
check "the block-device export has the loop device's size" \
	test "$(blockdev --getsize64 "$b")" = "$(blockdev --getsize64 "$loopdev")"
check "list shows three devices" test "$("$CLIENT" list --json | grep -c '"device"')" = 3

fio_pids=()
for d in "$a" "$b" "$c"; do
	fio_verify "$d" --ioengine=io_uring --numjobs=2 --size=96M --offset_increment=128M \
		--bsrange=4k-256k --iodepth=8 > "$WORK/fio.${d##*/}" 2>&1 &
	fio_pids+=($!)
done
for p in "${fio_pids[@]}"; do
	wait "$p" || fail=1
done
[ "$fail" = 0 ] && pass "concurrent crc32c-verified fio on all three" ||
	{ flunk "concurrent verified fio"; cat "$WORK"/fio.* | sed 's/^/#   /' | tail -n 20; }
check "the loop device holds what the device holds" \
	cmp <(dd if="$b" bs=1M count=64 iflag=direct status=none) \
	    <(dd if="$loopdev" bs=1M count=64 iflag=direct status=none)
for d in "$a" "$b" "$c"; do check "unmap $d" "$CLIENT" unmap "$d"; done
stop_all
check "no ublk device left" no_ublk_devices
done_testing
