#!/bin/bash
# Two guests joined by a wire: rping across, a cable pull (and a silent
# cut) stops it while an rping server keeps running on the other side,
# restoring the cable brings it back to that same server, and a crashed
# server host boots again. Then two wires (cluster start --wires 2): each
# carries rping on its own rxe device, a cut of one wire (links or silent)
# stops only it, a cut of all stops both, and restoring brings them back.
. "$(dirname "$0")/two-host/lib.sh"

srv=$($cluster addr server)
$cluster start || { flunk "the cluster starts"; exit 1; }

# One rping server for the whole test, so that rping failing during a cut
# can only be the cut.
rping_server=$($cluster exec server --bg -- timeout 120 rping -s -P -a "$srv")
rping_once() { client timeout 8 rping -c -a "${1:-$srv}" -C 3 > /dev/null 2>&1; } # [ADDR]
rping_tries() { # rping_tries N [ADDR]: 0 once rping gets across
	local i
	for i in $(seq "$1"); do rping_once "${2:-}" && return 0; sleep 0.5; done
	return 1
}

rping_tries 10; result $? "rping from client to server across the wire"
$cluster cut; result $? "cluster cut"
! rping_once; result $? "with the cable pulled, rping fails"
$cluster restore; result $? "cluster restore"
rping_tries 10; result $? "cable restored: rping works again, to the same server"
$cluster cut --silent; result $? "cluster cut --silent"
! rping_once; result $? "with every frame dropped (silent cut), rping fails"
$cluster restore; result $? "cluster restore"
rping_tries 10; result $? "restored: rping works again"
$cluster crash server; result $? "cluster crash server"
! on server true > /dev/null 2>&1; result $? "a crashed host runs nothing"
$cluster boot server; result $? "the crashed server host boots again"
rping_server=$($cluster exec server --bg -- timeout 60 rping -s -P -a "$srv")
rping_tries 10; result $? "rping to the rebooted server"

$cluster stop; result $? "the one-wire cluster stops"
$cluster start --wires 2 || { flunk "a two-wire cluster starts"; exit 1; }
srv2=$($cluster addr server --wire 2)
[ "$srv2" != "$srv" ] && [ "$($cluster addr client --wire 2)" != "$($cluster addr client)" ]
result $? "each host has an address on each wire ($srv, $srv2)"
client sh -c 'rdma link show rxe1/1 | grep -q "netdev $IBNBD_VM_NETDEV2" &&
	[ "$(ip -4 -o addr show dev $IBNBD_VM_NETDEV2 | grep -o "$IBNBD_VM_ADDR2")" = "$IBNBD_VM_ADDR2" ]'
result $? "the client's second wire: rxe1 on eth1 with its own address"
for a in "$srv" "$srv2"; do
	$cluster exec server --bg -- timeout 200 rping -s -P -a "$a" > /dev/null
done
rping_tries 10 "$srv" && rping_tries 10 "$srv2"; result $? "rping across each wire"
for kind in links silent; do
	for w in 1 2; do
		other=$srv2; cut=$srv
		[ "$w" = 2 ] && { other=$srv; cut=$srv2; }
		flag=; [ "$kind" = silent ] && flag=--silent
		$cluster cut --wire "$w" $flag; result $? "cluster cut --wire $w $flag"
		! rping_once "$cut"; result $? "wire $w cut ($kind): rping over it fails"
		rping_tries 3 "$other"; result $? "... and over the other wire works"
		$cluster restore --wire "$w"; result $? "cluster restore --wire $w"
		rping_tries 10 "$cut"; result $? "wire $w restored: rping over it works again"
	done
done
$cluster cut; result $? "cluster cut, all wires"
! rping_once "$srv" && ! rping_once "$srv2"; result $? "with every wire cut, rping fails on both"
$cluster restore; result $? "cluster restore, all wires"
rping_tries 10 "$srv" && rping_tries 10 "$srv2"; result $? "both wires carry rping again"
done_testing
