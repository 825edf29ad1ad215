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
			echo "allow = *"
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

# Verified writes on a and e, on both queues (a job per CPU), through both
# restarts below; 64 KiB blocks of 0xAB to b from CPU 0 (queue 0), 16 in
# flight.
verified=(--direct=1 --ioengine=io_uring --rw=randwrite --bs=4k --iodepth=8 --numjobs=2
	--cpus_allowed=0-1 --cpus_allowed_policy=split --size=16M --offset_increment=32M
	--time_based --runtime=120 --verify=crc32c --verify_fatal=1 --do_verify=1
	--verify_backlog=64 --verify_state_save=1 --group_reporting)
for x in a e; do
	mkdir -p "$WORK/fio-$x"
	(cd "$WORK/fio-$x" && exec fio --name="$x" --filename="$(dev_of "$x")" "${verified[@]}" \
		> "$WORK/fio-$x.log" 2>&1) &
	eval "fio_$x=\$!"
done
# pattern_load X BYTE: 64 KiB blocks of BYTE to X from CPU 0, 16 in flight.
pattern_load() {
	taskset -c 0 fio --name="$1" --filename="$(dev_of "$1")" --direct=1 --ioengine=io_uring \
		--rw=write --bs=64k --iodepth=16 --buffer_pattern="$2" --time_based --runtime=60 \
		> "$WORK/fio-$1.log" 2>&1
}
# has_byte BYTE FILE: 0 if any 4 KiB block of FILE is all BYTE
has_byte() {
	python3 - "$1" "$2" <<'PY'
import sys
blk = bytes([int(sys.argv[1], 16)]) * 4096
with open(sys.argv[2], "rb") as f:
    while True:
        d = f.read(1 << 20)
        if not d:
            sys.exit(1)
        for i in range(0, len(d), 4096):
            if d[i:i + 4096] == blk:
                sys.exit(0)
PY
}
lacks() { ! has_byte "$1" "$2"; }

# 1. Only b's backing is replaced (another file, another size). b's waiting
# requests must fail, not be sent with the handle b had: on the new
# connections that handle is another export's.
pattern_load b 0xAB &
fio_b=$!
sleep 3
kill -9 "$srv_pid"
wait "$srv_pid" 2>/dev/null
rm "$WORK/b.img"
truncate -s 128M "$WORK/b.img"
start_server srv --config "$WORK/srv.conf" || exit 1
check "b fails: its export is another one" wait_for 20 state_is b failed
check "b says why: another backing" sh -c "$CLIENT show b | grep -q 'no longer the one'"
for x in a c d; do
	check "$x comes back" wait_for 20 state_is "$x" live
done
check "fio on b ends with an error" fails "$fio_b"
for x in a c d e; do
	check "nothing meant for b landed in $x's backing" lacks 0xab "$WORK/$x.img"
done
check "nothing landed in b's new backing" test "$(stat -c %b "$WORK/b.img")" = 0

# 2. c's export is gone and d's is read-only now, with writes waiting on
# both.
for x in c d; do
	pattern_load "$x" 0xCD &
	eval "fio_$x=\$!"
done
sleep 3
check "verified writes on a and e still run at the second restart" \
	sh -c "kill -0 $fio_a && kill -0 $fio_e"
kill -9 "$srv_pid"
wait "$srv_pid" 2>/dev/null
EXPORTS="a:rw b:rw d:ro" conf "$WORK/srv.conf"
start_server srv --config "$WORK/srv.conf" || exit 1
check "c fails: its export is gone" wait_for 20 state_is c failed
check "d fails: its export is read-only now" wait_for 20 state_is d failed
check "a comes back" wait_for 20 state_is a live
check "c says why: no such export" sh -c "$CLIENT show c | grep -q \"no export named 'c'\""
check "d says why: read-only" sh -c "$CLIENT show d | grep -q 'read-only'"
check "fio on c ends with an error" fails "$fio_c"
check "fio on d ends with an error" fails "$fio_d"
for x in a b e; do
	check "nothing meant for c or d landed in $x's backing" lacks 0xcd "$WORK/$x.img"
done
check "verified writes on a (the same session) run through both restarts" wait "$fio_a"
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
