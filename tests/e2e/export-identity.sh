#!/bin/bash
# An export keeps its identity across a server restart in which every
# device number under it changed, as after a reboot that renumbered loop,
# dm and md minors: a file on xfs on a loop device, a loop block device
# reached through a stable symlink, a device-mapper device with a UUID. The
# client's devices of those stay live and their data reads back intact. A
# device that has nothing but its device number (a null_blk disk) is
# warned about at start, and when that number changes its client device
# fails rather than write to what may be another disk.
. "$(dirname "$0")/lib.sh"

mkdir "$WORK/xfs"
truncate -s 320M "$WORK/xfs.img"
truncate -s 64M "$WORK/l.img" "$WORK/d.img" "$WORK/spare.img"
NULLB=/sys/kernel/config/nullb
# No udev here: libdevmapper makes the /dev/mapper nodes itself.
export DM_DISABLE_UDEV=1
loops=()
dms=()
nullbs=()
cleanup() {
	local x
	mountpoint -q "$WORK/xfs" && umount "$WORK/xfs"
	for x in "${dms[@]}"; do dmsetup remove "$x" 2>/dev/null; done
	for x in "${loops[@]}"; do losetup -d "$x" 2>/dev/null; done
	for x in "${nullbs[@]}"; do
		echo 0 > "$NULLB/$x/power" 2>/dev/null
		rmdir "$NULLB/$x" 2>/dev/null
	done
}
on_exit cleanup
loop() { # loop FILE: attach FILE to the first free loop device, in $l
	l=$(losetup --find --show "$1") || return 1
	loops+=("$l")
}
nullb() { # nullb NAME: a 64 MiB memory-backed null_blk disk /dev/NAME
	mkdir "$NULLB/$1" || return 1
	nullbs+=("$1")
	echo 64 > "$NULLB/$1/size" && echo 1 > "$NULLB/$1/memory_backed" &&
		echo 1 > "$NULLB/$1/power" && wait_for 5 test -b "/dev/$1"
}
# Everything the exports live on, in the order given: each step takes the
# lowest free loop number and dm minor.
setup() { # setup STEP...
	local s
	for s in "$@"; do
		case $s in
		xfs) loop "$WORK/xfs.img" && mount -t xfs "$l" "$WORK/xfs" || return 1 ;;
		l) loop "$WORK/l.img" && ln -sfn "$l" "$WORK/dev-l" || return 1 ;;
		d) loop "$WORK/d.img" &&
			dmsetup create ibnbd-test-d --uuid IBNBD-TEST-D \
				--table "0 $((64 << 11)) linear $l 0" &&
			dms+=(ibnbd-test-d) || return 1 ;;
		spare) loop "$WORK/spare.img" &&
			dmsetup create ibnbd-test-spare --table "0 $((64 << 11)) zero" &&
			dms+=(ibnbd-test-spare) || return 1 ;;
		*) nullb "$s" || return 1 ;;
		esac
	done
}
teardown() { cleanup; loops=(); dms=(); nullbs=(); }
numbers() { # numbers NULL_BLK_DEV: the device numbers under x, l, d, n
	stat -L -c '%t:%T' "$(df --output=source "$WORK/xfs" | tail -1)" \
		"$WORK/dev-l" /dev/mapper/ibnbd-test-d "$1" | tr '\n' ' '
}

check "mkfs.xfs" mkfs.xfs -q -f "$WORK/xfs.img"
check "loop, xfs, dm and null_blk set up" setup xfs l d n0
check "a file on xfs" truncate -s 64M "$WORK/xfs/vol.img"
before=$(numbers /dev/n0)
echo "# device numbers (x l d n) before: $before"
srv() { # srv NULL_BLK_DISK: the server's options
	echo --listen "$ADDR" --export "x=$WORK/xfs/vol.img" --export "l=$WORK/dev-l" \
		--export "d=/dev/mapper/ibnbd-test-d" --export "n=/dev/$1"
}
# shellcheck disable=SC2046 # srv's words are the options
start_server srv $(srv n0) || exit 1
sed -n "s/.*export '\(.\)': .*identity /# identity of \1: /p" "$WORK/srv.log"
for x in x l d; do
	check "$x has a stable identity" sh -c "grep \"export '$x'\" $WORK/srv.log |
		grep -v 'identity dev:' | grep -q identity"
done
check "the server warns that n has only its device number" \
	grep -q "export 'n': .* has no stable identity" "$WORK/srv.log"
check "x's identity is its filesystem's UUID, not the device number" \
	grep -q "export 'x': .*identity fs-uuid:" "$WORK/srv.log"

check "daemon starts" start_daemon
for x in x l d n; do "$CLIENT" map "$ADDR" "$x" --name "$x" > /dev/null; done
# Sequential verified writes, read back by a verify-only pass later.
data=(--direct=1 --ioengine=io_uring --rw=write --bs=64k --iodepth=8 --size=32M
	--verify=crc32c --verify_fatal=1)
for x in x l d n; do
	check "verified writes to $x" fio --name="$x" --filename="$(dev_of "$x")" "${data[@]}" \
		--do_verify=1 --output="$WORK/fio-$x.log"
done

# "Reboot" the server: every device under the exports goes away, and comes
# back under other numbers (a spare loop device and dm device take the
# old ones first; null_blk's disk is another one, numbered after a spare).
kill -TERM "$srv_pid"
wait "$srv_pid"
teardown
check "everything set up again, in another order" setup spare nspare n1 d l xfs
after=$(numbers /dev/n1)
echo "# device numbers (x l d n) after:  $after"
changed() { # changed FIELD: the device number under export FIELD (1..4) changed
	local was now
	was=$(echo "$before" | cut -d' ' -f"$1") now=$(echo "$after" | cut -d' ' -f"$1")
	echo "$was -> $now"
	[ -n "$was" ] && [ -n "$now" ] && [ "$was" != "$now" ]
}
i=0
for x in x l d n; do
	i=$((i + 1))
	check "the device number under $x changed" changed $i
done
# shellcheck disable=SC2046
start_server srv $(srv n1) || exit 1
for x in x l d; do
	check "$x: the device stays live" wait_for 20 state_is "$x" live
	check "$x: its data reads back intact" fio --name="$x" --filename="$(dev_of "$x")" \
		"${data[@]}" --verify_only=1 --output="$WORK/verify-$x.log"
done
check "n: renumbered, with only its number to go by, its device fails" \
	wait_for 20 state_is n failed
check "... saying its identity changed" sh -c "$CLIENT show n | grep -q 'backing identity'"
check "x's device takes writes again" fio --name=x2 --filename="$(dev_of x)" "${data[@]}" \
	--do_verify=1 --output="$WORK/fio-x2.log"
done_testing
