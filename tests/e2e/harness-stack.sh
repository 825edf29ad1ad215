#!/bin/bash
# In the guest: the kernel stack ibnbd needs is there and works.
set -u
fail=0
check() { # check DESCRIPTION COMMAND...
	if "${@:2}" > /tmp/check.out 2>&1; then
		echo "ok - $1"
	else
		echo "not ok - $1"; sed 's/^/#   /' /tmp/check.out; fail=1
	fi
}
state=/sys/class/infiniband/$IBNBD_VM_RDMA_DEV/ports/1/state
check "/dev/ublk-control exists" test -c /dev/ublk-control
check "$IBNBD_VM_RDMA_DEV port is ACTIVE" grep -q ACTIVE "$state"
check "$IBNBD_VM_RDMA_DEV is bound to $IBNBD_VM_NETDEV ($IBNBD_VM_ADDR)" \
	sh -c "ip -4 addr show dev $IBNBD_VM_NETDEV | grep -q 'inet $IBNBD_VM_ADDR/'"
check "ibv_devices lists $IBNBD_VM_RDMA_DEV" sh -c "ibv_devices | grep -qw $IBNBD_VM_RDMA_DEV"
for m in ublk_drv rdma_rxe nvme_rdma nvmet_rdma nbd null_blk loop; do
	check "module $m is loaded" test -d /sys/module/$m
done
check "configfs is mounted (nvmet, null_blk)" test -d /sys/kernel/config/nvmet

rping_once() {
	timeout 20 rping -s -a "$IBNBD_VM_ADDR" -C 3 > /tmp/rping-server.out 2>&1 &
	local srv=$! i
	for i in $(seq 50); do
		timeout 10 rping -c -a "$IBNBD_VM_ADDR" -C 3 -v && { wait $srv; return; }
		sleep 0.2
	done
	return 1
}
check "rping over $IBNBD_VM_RDMA_DEV (client and server in this guest)" rping_once
exit $fail
