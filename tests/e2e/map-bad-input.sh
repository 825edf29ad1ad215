#!/bin/bash
# Errors a person can act on, and a server that survives garbage while it
# keeps serving verified IO to a well-behaved client.
. "$(dirname "$0")/lib.sh"
PROBE=$BUILD/tests/e2e/server/ibnbd-probe

truncate -s 256M "$WORK/vol.img"
# shared: the garbage probe is a second writing session next to the client.
start_server srv --listen "$ADDR" --export "vol=$WORK/vol.img,shared" || exit 1
check "daemon starts" start_daemon

check "an unknown export is named in the error" \
	sh -c "! $CLIENT map $ADDR nosuch 2>$WORK/e1 && grep -q \"no export named 'nosuch'\" $WORK/e1"
t0=$(date +%s)
"$CLIENT" map "$ADDR:4999" vol 2> "$WORK/e2"
rc=$?
t1=$(date +%s)
check "an unreachable server fails (exit $rc) within 10 s ($((t1 - t0)) s), naming address and port" \
	sh -c "[ $rc != 0 ] && [ $((t1 - t0)) -le 10 ] && grep -q '$ADDR:4999' $WORK/e2"
"$CLIENT" map 192.0.2.99 vol 2> "$WORK/e3"
rc=$?
t2=$(date +%s)
check "a host that does not answer fails within 12 s ($((t2 - t1)) s)" \
	sh -c "[ $rc != 0 ] && [ $((t2 - t1)) -le 12 ] && grep -q '192.0.2.99' $WORK/e3"
check "a second daemon is refused" \
	sh -c "timeout 5 $CLIENT daemon --foreground 2>&1 | grep -q 'already running'"

dev=$("$CLIENT" map "$ADDR" vol)
check "map" test -b "$dev"
fio_verify "$dev" --ioengine=io_uring --numjobs=2 --size=64M --offset_increment=128M \
	--bsrange=4k-128k --iodepth=8 --loops=3 > "$WORK/fio.log" 2>&1 &
fio_pid=$!
if [ -x "$PROBE" ]; then
	# Its own range, away from what fio verifies.
	check "garbage and out-of-range requests are rejected" \
		"$PROBE" --host-id "$PROBE_ID" --key-file "$WORK/client.key" \
		--range $((224 << 20)):$((32 << 20)) "$ADDR" vol garbage
else
	flunk "no $PROBE to send garbage with"
fi
check "verified fio kept running through the garbage" wait "$fio_pid"
check "the server logged what it rejected" grep -qiE 'reject|invalid|bad' "$WORK/srv.log"
check "the server is still alive" kill -0 "$srv_pid"

mkdir -p "$WORK/mnt"
mkfs.ext4 -q -F "$dev" && mount "$dev" "$WORK/mnt"
check "unmapping a mounted device is refused" \
	sh -c "! $CLIENT unmap $dev 2>$WORK/e4 && grep -q 'mounted' $WORK/e4"
umount "$WORK/mnt"
check "unmap --force works" "$CLIENT" unmap --force "$dev"
# A daemon that may not pin enough (no CAP_IPC_LOCK, as under its systemd
# unit, and an 8 MiB locked-memory limit): the map fails and says why.
p=$(cat /run/ibnbd/client.lock)
kill -TERM "$p"; wait_for 10 sh -c "! kill -0 $p"
check "a daemon with an 8 MiB locked-memory limit and no CAP_IPC_LOCK starts" \
	prlimit --memlock=8388608:8388608 setpriv --bounding-set=-ipc_lock --inh-caps=-ipc_lock \
	"$CLIENT" daemon --key-file "$WORK/client.key" --workers 2
"$CLIENT" map "$ADDR" vol > "$WORK/e5" 2>&1
rc=$?
check "... its map fails (status $rc), naming the limit and LimitMEMLOCK" \
	sh -c "[ $rc != 0 ] && grep -q 'locked-memory limit (8 MiB; raise LimitMEMLOCK=' $WORK/e5"
sed 's/^/# /' "$WORK/e5"
listed_none() { "$CLIENT" list --json | python3 -c "import json, sys; sys.exit(len(json.load(sys.stdin)))"; }
check "... and leaves no device behind" sh -c "$(declare -f listed_none no_ublk_devices); CLIENT=$CLIENT; listed_none && no_ublk_devices"
stop_all
check "no ublk device left" no_ublk_devices
done_testing
