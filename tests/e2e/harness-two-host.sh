#!/bin/bash
# Two guests joined by a wire: rping across, a cable pull (and a silent
# cut) stops it while an rping server keeps running on the other side,
# restoring the cable brings it back to that same server, and a crashed
# server host boots again.
. "$(dirname "$0")/two-host/lib.sh"

srv=$($cluster addr server)
$cluster start || { flunk "the cluster starts"; exit 1; }

# One rping server for the whole test, so that rping failing during a cut
# can only be the cut.
rping_server=$($cluster exec server --bg -- timeout 120 rping -s -P -a "$srv")
rping_once() { client timeout 8 rping -c -a "$srv" -C 3 > /dev/null 2>&1; }
rping_tries() { # rping_tries N: 0 once rping gets across
	local i
	for i in $(seq "$1"); do rping_once && return 0; sleep 0.5; done
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
done_testing
