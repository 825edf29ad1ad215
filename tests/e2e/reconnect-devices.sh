#!/bin/bash
# Several devices on one session across server restarts in which some of
# their exports changed. Each device whose export is no longer the one it
# was mapped from (another file), is gone, was made read-only, or offers
# less than the device promised the kernel, fails alone (state failed, with
# why); none of its requests - waiting or in flight when the server went
# away - ever reaches another export; the session and its other devices
# come back, and so does a device of another server.
. "$(dirname "$0")/lib.sh"

truncate -s 256M "$WORK/a.img" "$WORK/b.img" "$WORK/c.img" "$WORK/d.img" "$WORK/e.img"
conf() { # conf FILE [max_io_size]: srv's configuration, a..d as listed after
	{
		echo "listen = $ADDR"
		[ -n "${2:-}" ] && echo "max_io_size = $2"
		for x in $EXPORTS; do
			echo "[export ${x%%:*}]"
			echo "path = $WORK/${x%%:*}.img"
			[ "${x#*:}" = ro ] && echo "ro"
		done
	} > "$1"
}
EXPORTS="a:rw b:rw c:rw d:rw" conf "$WORK/srv.conf"
start_server srv --config "$WORK/srv.conf" || exit 1
start_server other --listen "$ADDR:4500" --export "e=$WORK/e.img" || exit 1
check "daemon starts" start_daemon
# b first: on the new connections a then takes the handle b had.
for x in b a c d; do "$CLIENT" map "$ADDR" "$x" --name "$x" > /dev/null; done
"$CLIENT" map "$ADDR:4500" e --name e > /dev/null
check "four devices on one session, one on another" \
	test "$("$CLIENT" list --json | grep -c '"device"')" = 5

# Verified writes on a and e, on both queues (a job per CPU); 64 KiB blocks
# of 0xAB to b from CPU 0 (queue 0), 16 in flight.
verified=(--direct=1 --ioengine=io_uring --rw=randwrite --bs=4k --iodepth=8 --numjobs=2
	--cpus_allowed=0-1 --cpus_allowed_policy=split --size=16M --offset_increment=32M
	--time_based --runtime=20 --verify=crc32c --verify_fatal=1 --do_verify=1
	--verify_state_save=1 --group_reporting)
for x in a e; do
	mkdir -p "$WORK/fio-$x"
	(cd "$WORK/fio-$x" && exec fio --name="$x" --filename="$(dev_of "$x")" "${verified[@]}" \
		> "$WORK/fio-$x.log" 2>&1) &
	eval "fio_$x=\$!"
done
taskset -c 0 fio --name=b --filename="$(dev_of b)" --direct=1 --ioengine=io_uring --rw=write \
	--bs=64k --iodepth=16 --buffer_pattern=0xAB --time_based --runtime=60 \
	> "$WORK/fio-b.log" 2>&1 &
fio_b=$!
sleep 3
kill -9 "$srv_pid"
wait "$srv_pid" 2>/dev/null
# b's backing is replaced by another file, c is gone, d is read-only now.
rm "$WORK/b.img"
truncate -s 128M "$WORK/b.img"
EXPORTS="a:rw b:rw d:ro" conf "$WORK/srv.conf"
start_server srv --config "$WORK/srv.conf" || exit 1
check "b fails: its export is another one" wait_for 20 state_is b failed
check "c fails: its export is gone" wait_for 20 state_is c failed
check "d fails: its export is read-only now" wait_for 20 state_is d failed
check "a comes back" wait_for 20 state_is a live
check "b says why: another backing" sh -c "$CLIENT show b | grep -q 'no longer the one'"
check "c says why: no such export" sh -c "$CLIENT show c | grep -q \"no export named 'c'\""
check "d says why: read-only" sh -c "$CLIENT show d | grep -q 'read-only'"
fails() { ! wait "$1"; }
check "fio on b ends with an error" fails "$fio_b"
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
for x in a d e; do
	check "nothing meant for b landed in $x's backing" no_ab "$WORK/$x.img"
done
check "nothing landed in b's new backing" test "$(stat -c %b "$WORK/b.img")" = 0
check "verified writes on a (the same session) run through the restart" wait "$fio_a"
check "... and on e (another server)" wait "$fio_e"
verify_saved() { # verify_saved NAME: a verify-only pass with fio's saved state
	(cd "$WORK/fio-$1" && exec fio --name="$1" --filename="$(dev_of "$1")" "${verified[@]}" \
		--verify_only=1 --verify_state_load=1 > "$WORK/verify-$1.log" 2>&1)
}
check "a holds what fio recorded as written" verify_saved a
check "IO on the failed devices fails at once" \
	timeout 5 sh -c "! dd if=$(dev_of c) of=/dev/null bs=4k count=1 iflag=direct 2>/dev/null"

# A server that now offers less than the device promised: the device was
# set up for 128 KiB requests, the server now carries 64 KiB.
kill -TERM "$srv_pid"
wait "$srv_pid"
EXPORTS="a:rw" conf "$WORK/srv.conf" 65536
start_server srv --config "$WORK/srv.conf" || exit 1
check "a fails: the server carries smaller IO than the device promised" \
	wait_for 20 state_is a failed
check "... and says so" sh -c "$CLIENT show a | grep -q 'carries IO of at most 65536'"
check "e, on the other server, is untouched" state_is e live
for x in a b c d e; do check "unmap $x" "$CLIENT" unmap "$x"; done
check "no ublk device left" no_ublk_devices
done_testing
