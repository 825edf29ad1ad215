#!/bin/bash
# The daemon's --max-io-size: a device gets the smaller of it and the
# server's max_io_size, the kernel hands the daemon requests that large
# (not split at the 128K default), and data verifies; a bad value stops the
# start with a sentence.
. "$(dirname "$0")/lib.sh"
truncate -s 128M "$WORK/a.img" "$WORK/b.img"
echo "max_io_size = 1048576" > "$WORK/big.conf"
start_server big --config "$WORK/big.conf" --listen "$ADDR" --export "a=$WORK/a.img" || exit 1
start_server small --listen "$ADDR:4433" --export "b=$WORK/b.img" || exit 1

for v in 2M 6000 0 big; do
	"$CLIENT" daemon --foreground --max-io-size "$v" > "$WORK/bad.out" 2>&1
	rc=$?
	[ "$rc" = 2 ] && grep -q -- "--max-io-size must be a multiple of 4K from 4K to 1024K" "$WORK/bad.out"
	result $? "--max-io-size $v refuses the start (exit $rc: $(head -n 1 "$WORK/bad.out"))"
done

check "daemon starts with --max-io-size 1M" start_daemon --max-io-size 1M
a=$("$CLIENT" map "$ADDR" a)
b=$("$CLIENT" map "$ADDR:4433" b)
check "a device of each server ($a $b)" test -b "$a" -a -b "$b"
kb() { cat "/sys/block/${1##*/}/queue/max_hw_sectors_kb"; }
[ "$(kb "$a")" = 1024 ]
result $? "against a server offering 1M: requests up to 1M ($(kb "$a") KiB)"
[ "$(kb "$b")" = 512 ]
result $? "against one offering its default 512K: up to 512K ($(kb "$b") KiB)"

# writes_sectors DEV: "WRITES SECTORS" the block layer completed on DEV so far.
writes_sectors() { awk '{ print $5, $7 }' "/sys/block/${1##*/}/stat"; }
for d in "$a" "$b"; do
	read -r w0 s0 < <(writes_sectors "$d")
	check "verified 1M writes on $d" fio_verify "$d" --ioengine=io_uring --rw=write --bs=1M \
		--iodepth=4 --size=64M
	read -r w1 s1 < <(writes_sectors "$d")
	echo "# $d: $((w1 - w0)) writes, $(( (s1 - s0) / (w1 - w0 > 0 ? w1 - w0 : 1) / 2 )) KiB each on average"
	want=$(( $(kb "$d") * 2 ))
	[ $((w1 - w0)) -gt 0 ] && [ $(( (s1 - s0) / (w1 - w0) )) -ge $((want * 9 / 10)) ]
	result $? "... each one request of up to $(kb "$d") KiB, not split"
done
for d in "$a" "$b"; do check "unmap $d" "$CLIENT" unmap "$d"; done
stop_all
check "no ublk device left" no_ublk_devices
done_testing
