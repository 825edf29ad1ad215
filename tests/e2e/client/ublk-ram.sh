#!/bin/bash
# In the guest: the client's ublk layer (ublk_dev + ublk_queue) against the
# real ublk driver, through ibnbd-ublk-ram (a RAM-backed ublk device).
#   - the device looks as asked: size, queues, depth, limits, cache/FUA
#   - fio with crc32c data verification: several jobs, 4k..1M, io_uring and
#     libaio, O_DIRECT; data written with one engine re-verified with the other
#   - blkdiscard and BLKZEROOUT zero exactly their range
#   - mkfs.ext4 + mount + files + sync + umount, then mount again and check
#   - negative control: the same checks fail on a device corrupting READs
#   - a --ro device refuses writes
#   - SIGTERM/SIGINT: exit 0 and no /dev/ublkb* or /dev/ublkc* left
#   - user recovery: SIGKILL, IO held while no daemon runs, --recover
#   - bad command lines are refused with exit 2 and create nothing
# Prints TAP; exits 1 on any failure, 77 when ublk is unavailable.
# IBNBD_BUILD_DIR: the build to test (default ./build).
set -u
build=${IBNBD_BUILD_DIR:-$PWD/build}
ram=$build/tests/e2e/client/ibnbd-ublk-ram
tmp=$(mktemp -d /tmp/ublk-ram.XXXXXX)
mnt=$tmp/mnt
n=0 fail=0
pids=()

ok() { n=$((n + 1)); echo "ok $n - $1"; }
not_ok() {
	n=$((n + 1)); fail=1; echo "not ok $n - $1"
	[ -s "$tmp/check.out" ] && sed 's/^/#   /' "$tmp/check.out" | tail -40
}
check() { # check DESCRIPTION COMMAND...
	if "${@:2}" > "$tmp/check.out" 2>&1; then ok "$1"; else not_ok "$1"; fi
	: > "$tmp/check.out"
}
cleanup() {
	local p
	mountpoint -q "$mnt" 2>/dev/null && umount "$mnt"
	for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
	rm -rf "$tmp"
}
trap cleanup EXIT

if [ ! -c /dev/ublk-control ]; then
	echo "1..0 # SKIP /dev/ublk-control is missing (ublk_drv not loaded)"
	exit 77
fi
if [ ! -x "$ram" ]; then
	echo "Bail out! $ram is not built (run scripts/build on the host)"
	exit 1
fi

# start_ram NAME ARGS...: starts the target, waits for its device path on
# stdout; sets ram_pid and ram_dev.
start_ram() {
	local name=$1 i
	shift
	"$ram" "$@" > "$tmp/$name.out" 2> "$tmp/$name.err" &
	ram_pid=$!
	pids+=("$ram_pid")
	ram_dev=
	for i in $(seq 600); do
		if [ -s "$tmp/$name.out" ]; then
			ram_dev=$(head -n1 "$tmp/$name.out")
			[ -b "$ram_dev" ] && return 0
			echo "printed '$ram_dev', which is not a block device"
			return 1
		fi
		kill -0 "$ram_pid" 2>/dev/null || { cat "$tmp/$name.err"; return 1; }
		sleep 0.1
	done
	echo "no device path after 60 s"; cat "$tmp/$name.err"
	return 1
}

# stop_ram NAME PID SIGNAL: the target must exit 0, remove its device, and
# log nothing that looks like a failure.
stop_ram() {
	local name=$1 pid=$2 sig=$3 rc
	kill "-$sig" "$pid" || return 1
	wait "$pid"; rc=$?
	cat "$tmp/$name.err"
	[ "$rc" = 0 ] || { echo "exit status $rc"; return 1; }
	if grep -Eiq 'fail|error|cannot|refused|warn' "$tmp/$name.err"; then
		echo "the log above reports a problem"; return 1
	fi
}

no_ublk_devices() {
	local left
	left=$(ls /dev/ublkb* /dev/ublkc* 2>/dev/null)
	[ -z "$left" ] || { echo "left behind: $left"; return 1; }
	[ -z "$(ls /sys/class/ublk-char 2>/dev/null)" ] ||
		{ echo "left in sysfs: $(ls /sys/class/ublk-char)"; return 1; }
}

sysfs_is() { # sysfs_is FILE VALUE
	local v
	v=$(cat "$1") || return 1
	[ "$v" = "$2" ] || { echo "$1 is '$v', expected '$2'"; return 1; }
}

check "no ublk device exists before the test" no_ublk_devices
if ! start_ram main --size 256M --queues 2 --depth 64 --max-io 1M > "$tmp/check.out" 2>&1; then
	not_ok "ibnbd-ublk-ram --size 256M --queues 2 --depth 64 prints a usable device"
	echo "Bail out! the device did not start"
	exit 1
fi
ok "ibnbd-ublk-ram --size 256M --queues 2 --depth 64 prints a usable device ($ram_dev)"
main_pid=$ram_pid dev=$ram_dev
blk=/sys/block/${dev#/dev/}

check "size is 256 MiB" sh -c "[ \$(blockdev --getsize64 $dev) = $((256 << 20)) ]"
check "2 hardware queues" sh -c "[ \$(ls $blk/mq | wc -l) = 2 ]"
check "depth 64" sysfs_is "$blk/mq/0/nr_tags" 64
check "max IO 1 MiB" sysfs_is "$blk/queue/max_hw_sectors_kb" 1024
check "512-byte logical, 4k physical blocks" sh -c \
	"[ \$(cat $blk/queue/logical_block_size) = 512 ] && [ \$(cat $blk/queue/physical_block_size) = 4096 ]"
check "volatile write cache advertised" sysfs_is "$blk/queue/write_cache" "write back"
check "FUA advertised" sysfs_is "$blk/queue/fua" 1
check "discard advertised (1 GiB, 4k granularity)" sh -c \
	"[ \$(cat $blk/queue/discard_max_hw_bytes) = $((1 << 30)) ] && [ \$(cat $blk/queue/discard_granularity) = 4096 ]"
check "write zeroes advertised" sh -c "[ \$(cat $blk/queue/write_zeroes_max_bytes) -gt 0 ]"
check "read-write" sysfs_is "$blk/ro" 0

# fio: 4 jobs on their own 64 MiB quarter each, mixed block sizes 4k..1M.
fio_common=(--filename="$dev" --direct=1 --numjobs=4 --size=32M --offset_increment=64M
	--bssplit=4k/30:16k/20:64k/20:256k/15:1m/15 --iodepth=16 --group_reporting
	--verify=crc32c --verify_fatal=1 --randrepeat=1 --output-format=terse)
check "fio io_uring: 4 jobs random writes 4k..1M, crc32c verified" \
	fio --name=uring --ioengine=io_uring --rw=randwrite --do_verify=1 "${fio_common[@]}"
check "fio libaio: re-verifies the io_uring jobs' data (verify_only)" \
	fio --name=uring --ioengine=libaio --rw=randwrite --verify_only "${fio_common[@]}"
check "fio libaio: 4 jobs sequential writes 4k..1M, crc32c verified" \
	fio --name=aio --ioengine=libaio --rw=write --do_verify=1 "${fio_common[@]}"
check "fio io_uring: re-verifies the libaio jobs' data (verify_only)" \
	fio --name=aio --ioengine=io_uring --rw=write --verify_only "${fio_common[@]}"
check "fio io_uring: mixed random reads/writes with an fsync (FLUSH) every 8 writes, verified" \
	fio --name=mixed --ioengine=io_uring --rw=randrw --fsync=8 --do_verify=1 \
	--filename="$dev" --direct=1 --numjobs=2 --size=16M --offset_increment=128M \
	--bs=4k --iodepth=8 --verify=crc32c --verify_fatal=1 --output-format=terse

# Discard and write-zeroes: exactly their range reads back as zeroes, the
# rest keeps its data (so the device does not just return zeroes).
dd if=/dev/urandom of="$tmp/pattern" bs=1M count=8 status=none
range_is() { # range_is OFFSET LENGTH FILE|zero: compares a device range
	local src=$3
	[ "$src" = zero ] && src=/dev/zero
	cmp -n "$2" <(dd if="$dev" bs=512 skip=$(($1 / 512)) count=$(($2 / 512)) iflag=direct status=none) \
		<(dd if="$src" bs=512 skip=$(($1 / 512)) count=$(($2 / 512)) status=none)
}
check "8 MiB pattern written" dd if="$tmp/pattern" of="$dev" bs=1M oflag=direct status=none
check "pattern reads back" range_is 0 $((8 << 20)) "$tmp/pattern"
check "blkdiscard 1M..5M" blkdiscard -o $((1 << 20)) -l $((4 << 20)) "$dev"
check "discarded range reads back as zeroes" range_is $((1 << 20)) $((4 << 20)) zero
check "data before the discarded range is intact" range_is 0 $((1 << 20)) "$tmp/pattern"
check "data after the discarded range is intact" range_is $((5 << 20)) $((3 << 20)) "$tmp/pattern"
zoff=$(((6 << 20) + 512)) zlen=$((8192 + 1024))
check "blkdiscard -z (write zeroes) of 9 KiB at 6M+512, off the page grid" \
	blkdiscard -z -o $zoff -l $zlen "$dev"
check "zeroed range reads back as zeroes" range_is $zoff $zlen zero
around_zeroes() {
	range_is $((6 << 20)) 512 "$tmp/pattern" &&
		range_is $((zoff + zlen)) $(((8 << 20) - zoff - zlen)) "$tmp/pattern"
}
check "the sectors around the zeroed range are intact" around_zeroes

# A filesystem on top: mkfs (discards the device first), files, sync,
# umount; then mount again, compare, and fsck.
mkdir -p "$mnt"
check "mkfs.ext4" mkfs.ext4 -q -F "$dev"
check "mount" mount "$dev" "$mnt"
write_files() {
	local i
	for i in 1 2 3; do
		dd if=/dev/urandom of="$mnt/file$i" bs=1M count=$((i * 5)) status=none || return 1
	done
	mkdir -p "$mnt/dir" && cp "$mnt/file1" "$mnt/dir/copy" &&
		(cd "$mnt" && md5sum file1 file2 file3 dir/copy > "$tmp/md5") && sync
}
check "write 30 MiB of files and sync" write_files
check "umount" umount "$mnt"
check "mount again" mount "$dev" "$mnt"
check "files read back identical after remount" sh -c "cd $mnt && md5sum -c --quiet $tmp/md5"
check "umount again" umount "$mnt"
check "e2fsck finds the filesystem clean" e2fsck -fn "$dev"

# The checks above must be able to fail: against a device that corrupts
# every READ, the same fio verification and the pattern compare must fail.
if start_ram bad --size 64M --queues 1 --depth 16 --corrupt-reads > "$tmp/check.out" 2>&1; then
	ok "ibnbd-ublk-ram --corrupt-reads starts ($ram_dev)"
	bad_pid=$ram_pid bad_dev=$ram_dev
	neg_fio() {
		! fio --name=neg --filename="$bad_dev" --ioengine=io_uring --direct=1 \
			--rw=randwrite --bssplit=4k/50:64k/50 --size=4M --iodepth=4 \
			--verify=crc32c --do_verify=1 --verify_fatal=1 > "$tmp/neg.fio" 2>&1 ||
			return 1
		# It must have failed for the right reason, not on its arguments.
		grep -i "verify" "$tmp/neg.fio" | grep -Eiq "bad|fail|mismatch" ||
			{ cat "$tmp/neg.fio"; return 1; }
	}
	check "negative control: fio's crc32c verification fails on a corrupting device" neg_fio
	neg_pattern() {
		dd if="$tmp/pattern" of="$bad_dev" bs=1M oflag=direct status=none || return 1
		! dd if="$bad_dev" bs=1M count=8 iflag=direct status=none | cmp -s - "$tmp/pattern"
	}
	check "negative control: the pattern compare fails on a corrupting device" neg_pattern
	check "SIGTERM: the corrupting device's daemon exits 0" stop_ram bad "$bad_pid" TERM
else
	not_ok "ibnbd-ublk-ram --corrupt-reads starts"
fi

# A read-only device next to the read-write one.
if start_ram ro --size 64M --queues 1 --depth 16 --ro > "$tmp/check.out" 2>&1; then
	ok "ibnbd-ublk-ram --ro starts ($ram_dev)"
	ro_pid=$ram_pid ro_dev=$ram_dev
	check "the --ro device is read-only for the kernel" sysfs_is "/sys/block/${ro_dev#/dev/}/ro" 1
	check "the --ro device reads" dd if="$ro_dev" of=/dev/null bs=1M count=4 iflag=direct status=none
	check "the --ro device refuses a direct write" \
		sh -c "! dd if=/dev/zero of=$ro_dev bs=4k count=1 oflag=direct status=none"
	check "the --ro device refuses a discard" sh -c "! blkdiscard $ro_dev"
	check "the read-write device still serves while the --ro one runs" \
		dd if="$dev" of=/dev/null bs=1M count=4 iflag=direct status=none
	check "SIGINT: the --ro device's daemon exits 0 cleanly" stop_ram ro "$ro_pid" INT
	check "the --ro device is gone" sh -c "[ ! -e $ro_dev ]"
else
	not_ok "ibnbd-ublk-ram --ro starts"
fi

check "the read-write device's daemon is still running" kill -0 "$main_pid"
check "SIGTERM: the daemon exits 0 and logs no failure" stop_ram main "$main_pid" TERM
check "no /dev/ublkb* or /dev/ublkc* remain" no_ublk_devices
pids=()

# What the kernel sent, from the daemon's exit summary: the volatile cache
# and FUA attributes must have brought FLUSH and FUA writes (ext4's journal,
# fio's fsyncs), blkdiscard DISCARD, and BLKZEROOUT WRITE_ZEROES.
served() { # served WHAT: the count before WHAT in the summary line
	sed -n "/ served /s/.*[ (]\([0-9][0-9]*\) $1.*/\1/p" "$tmp/main.err"
}
served_some() {
	local v
	v=$(served "$1")
	[ -n "$v" ] && [ "$v" -gt 0 ] || { grep served "$tmp/main.err"; return 1; }
}
for what in reads writes FUA flushes discards write-zeroes; do
	check "the kernel sent $what to the daemon" served_some "$what"
done

# User recovery: SIGKILL the daemon; the device stays (QUIESCED) and holds
# new IO; a new daemon takes it over with --recover and the held IO
# completes with the right data.
img=$tmp/recovery.img
if start_ram rec1 --size 64M --queues 2 --depth 16 --backing "$img" > "$tmp/check.out" 2>&1; then
	ok "ibnbd-ublk-ram --backing starts ($ram_dev)"
	rec_pid=$ram_pid rec_dev=$ram_dev rec_id=${ram_dev#/dev/ublkb}
	check "8 MiB pattern written before the crash" \
		dd if="$tmp/pattern" of="$rec_dev" bs=1M oflag=direct status=none
	kill -KILL "$rec_pid"; wait "$rec_pid" 2>/dev/null
	check "after SIGKILL the block device remains" test -b "$rec_dev"
	dd if="$rec_dev" of="$tmp/held" bs=1M count=8 iflag=direct status=none &
	held_pid=$!
	sleep 2
	check "a read issued while no daemon runs is held, not failed" kill -0 "$held_pid"
	if start_ram rec2 --recover "$rec_id" --backing "$img" > "$tmp/check.out" 2>&1 &&
		[ "$ram_dev" = "$rec_dev" ]; then
		ok "ibnbd-ublk-ram --recover $rec_id takes the device over"
		rec_pid=$ram_pid
		check "the held read completes once recovered" wait "$held_pid"
		check "the held read returned the data written before the crash" \
			cmp "$tmp/held" "$tmp/pattern"
		check "fio verify on the recovered device" \
			fio --name=rec --filename="$rec_dev" --ioengine=io_uring --direct=1 \
			--rw=randwrite --bssplit=4k/50:128k/50 --size=16M --iodepth=8 \
			--verify=crc32c --do_verify=1 --verify_fatal=1 --output-format=terse
		check "SIGTERM: the recovering daemon exits 0 cleanly" stop_ram rec2 "$rec_pid" TERM
	else
		not_ok "ibnbd-ublk-ram --recover $rec_id takes the device over"
		kill -KILL "$held_pid" 2>/dev/null
	fi
	check "after recovery and SIGTERM no ublk device remains" no_ublk_devices
else
	not_ok "ibnbd-ublk-ram --backing starts"
fi
pids=()

# A small geometry: one queue of depth 4 with 64 KiB requests, under fio at
# iodepth 16 with blocks up to 1 MiB: the kernel splits and waits for tags.
if start_ram small --size 64M --queues 1 --depth 4 --max-io 64K > "$tmp/check.out" 2>&1; then
	ok "ibnbd-ublk-ram --queues 1 --depth 4 --max-io 64K starts ($ram_dev)"
	small_pid=$ram_pid
	check "max IO 64 KiB" sysfs_is "/sys/block/${ram_dev#/dev/}/queue/max_hw_sectors_kb" 64
	check "fio libaio: split 4k..1M requests over 4 tags, crc32c verified" \
		fio --name=small --filename="$ram_dev" --ioengine=libaio --direct=1 --numjobs=2 \
		--size=8M --offset_increment=32M --rw=randwrite \
		--bssplit=4k/25:64k/25:256k/25:1m/25 --iodepth=16 --verify=crc32c \
		--do_verify=1 --verify_fatal=1 --output-format=terse
	check "SIGTERM: the small device's daemon exits 0 cleanly" stop_ram small "$small_pid" TERM
else
	not_ok "ibnbd-ublk-ram --queues 1 --depth 4 --max-io 64K starts"
fi

# SIGTERM under load: IO in flight fails or completes, the daemon still
# exits 0 and removes the device (and the kernel logs no warning or hang).
if start_ram load --size 64M --queues 2 --depth 32 > "$tmp/check.out" 2>&1; then
	ok "ibnbd-ublk-ram starts for the stop-under-load test ($ram_dev)"
	load_pid=$ram_pid
	fio --name=load --filename="$ram_dev" --ioengine=io_uring --direct=1 --numjobs=2 \
		--rw=randrw --bs=16k --iodepth=32 --time_based --runtime=60 \
		--output-format=terse > "$tmp/load.fio" 2>&1 &
	fio_pid=$!
	sleep 4
	check "fio is running against the device" kill -0 "$fio_pid"
	kill -TERM "$load_pid"
	wait "$load_pid"; load_rc=$?
	if [ "$load_rc" = 0 ]; then ok "SIGTERM under load: the daemon exits 0"
	else echo "exit status $load_rc" > "$tmp/check.out"; cat "$tmp/load.err" >> "$tmp/check.out"
		not_ok "SIGTERM under load: the daemon exits 0"; fi
	: > "$tmp/check.out"
	fio_gone() {
		local i
		for i in $(seq 600); do
			kill -0 "$fio_pid" 2>/dev/null || { wait "$fio_pid"; return 0; }
			sleep 0.1
		done
		echo "fio still runs 60 s after the device was removed"; return 1
	}
	check "fio ends once the device is gone" fio_gone
	check "no ublk device remains after the stop under load" no_ublk_devices
else
	not_ok "ibnbd-ublk-ram starts for the stop-under-load test"
fi
pids=()

# Bad command lines get a clear error and exit 2, and create nothing.
bad_cmdline() {
	local rc
	"$ram" "$@" > "$tmp/bad.out" 2> "$tmp/bad.err"; rc=$?
	cat "$tmp/bad.err"
	[ "$rc" = 2 ] && [ -s "$tmp/bad.err" ] && [ ! -s "$tmp/bad.out" ]
}
check "no --size is refused" bad_cmdline
check "--size 1000 (not a multiple of 512) is refused" bad_cmdline --size 1000
check "--size 12Q is refused" bad_cmdline --size 12Q
check "--depth 0 is refused" bad_cmdline --size 16M --depth 0
check "--depth 5000 is refused" bad_cmdline --size 16M --depth 5000
check "--max-io 3000 is refused" bad_cmdline --size 16M --max-io 3000
check "--queues x is refused" bad_cmdline --size 16M --queues x
check "nothing was created by the bad command lines" no_ublk_devices

echo "1..$n"
exit $fail
