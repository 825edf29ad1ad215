#!/bin/bash
# A server with two RDMA devices (rxe0 on eth0, rxe1 on eth1, as a host
# with two ports or HCAs has) serves connections on both at once: every
# worker takes connections of either device. Two sessions, one per
# device, verified IO on every queue of both.
. "$(dirname "$0")/lib.sh"

ADDR2=${IBNBD_VM_ADDR2:?the guest has a second NIC (tests/vm/run)}
truncate -s 128M "$WORK/a.img" "$WORK/b.img"
start_server srv --listen "$ADDR" --listen "$ADDR2" --workers 1 \
	--export "a=$WORK/a.img" --export "b=$WORK/b.img" || exit 1
check "daemon starts" start_daemon
a=$("$CLIENT" map "$ADDR" a)
b=$("$CLIENT" map "$ADDR2" b)
check "a mapped over $IBNBD_VM_RDMA_DEV, b over $IBNBD_VM_RDMA_DEV2" test -b "$a" -a -b "$b"
check "no connection was refused" sh -c "test -s $WORK/srv.log && ! grep -qi 'refused\|cannot set up RDMA' $WORK/srv.log"
check "its one worker serves connections on both devices" \
	sh -c "grep -q 'worker 0: serving connections on RDMA device rxe0' $WORK/srv.log &&
	       grep -q 'worker 0: serving connections on RDMA device rxe1' $WORK/srv.log"
pids=()
for d in "$a" "$b"; do
	fio_verify "$d" --ioengine=io_uring --numjobs=2 --cpus_allowed=0-1 \
		--cpus_allowed_policy=split --size=16M --offset_increment=32M --bsrange=4k-128k \
		--iodepth=8 > "$WORK/fio.${d##*/}" 2>&1 &
	pids+=($!)
done
for p in "${pids[@]}"; do check "verified IO over one device" wait "$p"; done
check "unmap a" "$CLIENT" unmap "$a"
check "unmap b" "$CLIENT" unmap "$b"
done_testing
