#!/bin/bash
# In the guest: the client daemon's control plane and its errors for people.
set -u
. "$(dirname "$0")/tap.sh"
C=${IBNBD_BUILD_DIR:-build}/src/client/ibnbd-client
expect() { # expect DESCRIPTION EXIT_STATUS STDERR_PATTERN -- COMMAND...
	local desc=$1 want=$2 pat=$3 rc
	shift 4
	"$@" > /tmp/out 2> /tmp/err
	rc=$?
	if [ "$rc" = "$want" ] && grep -qE "$pat" /tmp/err; then
		echo "ok - $desc"
	else
		echo "not ok - $desc (exit $rc, want $want)"; sed 's/^/#   /' /tmp/out /tmp/err; fail=1
	fi
}

expect "verbs without a daemon say so" 1 "daemon is not running" -- $C list
expect "map without a daemon says so" 1 "daemon is not running" -- $C map "$IBNBD_VM_ADDR" vol
expect "a bad port is refused before anything else" 2 "port must be a number" -- $C map "$IBNBD_VM_ADDR:0" vol
expect "map needs an export" 2 "usage" -- $C map "$IBNBD_VM_ADDR"

# No ublk driver: hide the control node from a daemon in its own namespace.
expect "no ublk driver is named" 1 "no ublk driver" -- \
	unshare -m sh -c "mount -t tmpfs none /dev && exec $C daemon --foreground"

$C daemon || { echo "not ok - daemon starts"; exit 1; }
echo "ok - daemon starts and returns once ready"
expect "a second daemon is refused, naming the first" 1 "already running \(pid [0-9]+\)" -- $C daemon --foreground
$C list > /tmp/list && grep -q '^DEVICE' /tmp/list && echo "ok - list prints a table" ||
	{ echo "not ok - list"; fail=1; }
[ "$($C list --json | tr -d ' \n')" = "[]" ] && echo "ok - list --json prints an empty array" ||
	{ echo "not ok - list --json"; fail=1; }
expect "unmapping an unknown device is refused" 1 "no mapped device" -- $C unmap /dev/ublkb99
resp=$(printf 'not json\n' | timeout 5 socat - UNIX-CONNECT:/run/ibnbd/client.sock 2>/dev/null ||
	python3 -c 'import socket;s=socket.socket(socket.AF_UNIX);s.connect("/run/ibnbd/client.sock");s.sendall(b"not json\n");print(s.recv(4096).decode())')
grep -q '"ok":false' <<<"$resp" && echo "ok - a malformed request gets an error answer" ||
	{ echo "not ok - malformed request: $resp"; fail=1; }
$C list > /dev/null && echo "ok - the daemon still serves after it" || { echo "not ok - daemon died"; fail=1; }

pid=$(cat /run/ibnbd/client.lock)
kill -TERM "$pid"
for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
kill -0 "$pid" 2>/dev/null && { echo "not ok - daemon ignores SIGTERM"; fail=1; } ||
	echo "ok - SIGTERM stops the daemon"
[ ! -e /run/ibnbd/client.sock ] && echo "ok - the control socket is removed" ||
	{ echo "not ok - control socket left behind"; fail=1; }
done_testing
