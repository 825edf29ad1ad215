#!/bin/bash
# Several devices on one session across a server restart in which some of
# their exports changed: each device whose export is no longer the one it
# was mapped from fails alone (state failed, with why), and none of its
# requests - waiting or in flight when the server went away - ever reaches
# another export; the session and its other devices come back.
. "$(dirname "$0")/lib.sh"

truncate -s 256M "$WORK/a.img" "$WORK/b.img"
srv_args=(--listen "$ADDR" --export "a=$WORK/a.img" --export "b=$WORK/b.img")
start_server srv "${srv_args[@]}" || exit 1
check "daemon starts" start_daemon
# b first: on the new connections a then takes the handle b had.
b=$("$CLIENT" map "$ADDR" b --name b)
a=$("$CLIENT" map "$ADDR" a --name a)
check "two devices on one session ($a $b)" test -b "$a" -a -b "$b"

# 64 KiB blocks of 0xAB to b from CPU 0 (queue 0), 16 in flight.
taskset -c 0 fio --name=b --filename="$b" --direct=1 --ioengine=io_uring --rw=write \
	--bs=64k --iodepth=16 --buffer_pattern=0xAB --time_based --runtime=60 \
	> "$WORK/fio-b.log" 2>&1 &
fio_pid=$!
sleep 3
kill -9 "$srv_pid"
wait "$srv_pid" 2>/dev/null
# b's backing is replaced by another file of another size.
rm "$WORK/b.img"
truncate -s 128M "$WORK/b.img"
start_server srv "${srv_args[@]}" || exit 1
check "b fails: its export changed" wait_for 20 state_is b failed
check "a comes back" wait_for 20 state_is a live
check "fio on b ends with an error" sh -c "! wait $fio_pid"
has_ab() { # has_ab FILE: 0 if any 4 KiB block of FILE is all 0xAB
	python3 - "$1" <<'PY'
import sys
blk = b"\xab" * 4096
with open(sys.argv[1], "rb") as f:
    while True:
        d = f.read(1 << 20)
        if not d:
            sys.exit(1)
        for i in range(0, len(d), 4096):
            if d[i:i + 4096] == blk:
                sys.exit(0)
PY
}
no_ab() { ! has_ab "$1"; }
check "nothing meant for b landed in a's backing" no_ab "$WORK/a.img"
check "nothing landed in b's new backing" test "$(stat -c %b "$WORK/b.img")" = 0
check "a works: verified IO" fio_verify "$a" --ioengine=io_uring --size=32M --bs=64k --iodepth=8
check "unmap a" "$CLIENT" unmap a
check "unmap b" "$CLIENT" unmap b
done_testing
