#!/bin/bash
# Two guests joined by a wire: rping across, a cable pull stops it, restoring
# the cable brings it back, and a crashed server host boots again.
set -u
cd "$(dirname "$0")/../.."
export IBNBD_CLUSTER=${IBNBD_CLUSTER:-$(mktemp -d /tmp/ibnbd-cluster.XXXXXX)}
cluster=tests/vm/cluster
trap '$cluster stop; rc=$?; rm -rf "$IBNBD_CLUSTER"; exit $(( fail ? 1 : rc ))' EXIT
fail=0
srv=$($cluster addr server)
$cluster start || { fail=1; exit; }

rping_across() { # rping_across TRIES: 0 if the client reaches the server
	local tries=$1 job i rc=1
	job=$($cluster exec server --bg -- timeout 25 rping -s -a "$srv" -C 3)
	for i in $(seq "$tries"); do
		$cluster exec client -- timeout 8 rping -c -a "$srv" -C 3 -v && { rc=0; break; }
		sleep 0.5
	done
	$cluster wait server "$job" > /dev/null 2>&1
	return $rc
}
result() { if [ "$1" = 0 ]; then echo "ok - $2"; else echo "not ok - $2"; fail=1; fi; }

rping_across 10; result $? "rping from client to server across the wire"
$cluster cut
$cluster exec client -- timeout 5 rping -c -a "$srv" -C 1 > /dev/null 2>&1
[ $? != 0 ]; result $? "with the cable pulled, rping fails"
$cluster restore
rping_across 10; result $? "cable restored: rping works again"
$cluster cut --silent
$cluster exec client -- timeout 5 rping -c -a "$srv" -C 1 > /dev/null 2>&1
[ $? != 0 ]; result $? "with every frame dropped (silent cut), rping fails"
$cluster restore
$cluster crash server
$cluster exec server -- true > /dev/null 2>&1
[ $? != 0 ]; result $? "a crashed host runs nothing"
$cluster boot server; result $? "the crashed server host boots again"
rping_across 10; result $? "rping to the rebooted server"
