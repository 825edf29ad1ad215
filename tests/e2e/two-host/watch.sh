#!/bin/bash
# In the client guest of a two-host test, on its own clock: logs, one line
# each with the monotonic time in ms, when eth0's carrier changes, when a
# silent cut begins or ends (tests/vm/cluster puts silent-cut in our
# scratch directory meanwhile), and when a mapped device's state changes,
# until $IBNBD_VM_OUT/watch.stop exists:
#   <ms> carrier 0|1
#   <ms> silent on|off
#   <ms> state NAME STATE
# The wire is watched by a loop of its own, every 20 ms and with nothing
# heavier than a file test, so that the fault's start and end are stamped when they
# happen even while asking the daemon for its devices' states takes long
# (it does under load in an emulated guest); lines may be out of order.
# watch.sh CLIENT_BINARY > FILE
set -u
client=$1
now() { read -r up _ < /proc/uptime; echo "${up/./}0"; }
stop=$IBNBD_VM_OUT/watch.stop

watch_wire() {
	local c carrier= n silent=
	while [ ! -e "$stop" ]; do
		read -r c < /sys/class/net/eth0/carrier 2>/dev/null
		[ "$c" != "$carrier" ] && { carrier=$c; echo "$(now) carrier $c"; }
		n=off
		[ -e "$IBNBD_VM_OUT/silent-cut" ] && n=on
		[ "$n" != "$silent" ] && { silent=$n; echo "$(now) silent $n"; }
		sleep 0.02
	done
}
watch_wire &

declare -A st
while [ ! -e "$stop" ]; do
	while read -r name state; do
		[ "${st[$name]:-}" != "$state" ] && { st[$name]=$state; echo "$(now) state $name $state"; }
	done < <("$client" list --json 2>/dev/null |
		python3 -c 'import json,sys
for d in json.load(sys.stdin): print(d["name"], d["state"])' 2>/dev/null)
	sleep 0.05
done
wait
