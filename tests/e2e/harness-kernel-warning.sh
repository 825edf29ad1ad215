#!/bin/bash
# The harness fails a run whose guest kernel logs a WARNING (even when
# COMMAND succeeds), and one whose guest kernel oopses.
set -u
cd "$(dirname "$0")/../.."
fail=0
# The line the kernel's __warn() prints, put in the kernel log.
tests/vm/run -q -- sh -c 'echo "<4>WARNING: CPU: 0 PID: 1 at harness-selftest.c:1 selftest+0x0/0x0" > /dev/kmsg' \
	> /tmp/ibnbd-warn.$$ 2>&1
rc=$?
cat /tmp/ibnbd-warn.$$
if [ "$rc" = 3 ] && grep -q 'WARNING: CPU: 0 PID: 1 at harness-selftest' /tmp/ibnbd-warn.$$; then
	echo "ok - a kernel WARNING fails the run (exit 3) and is printed"
else
	echo "not ok - a kernel WARNING gave exit $rc"; fail=1
fi
# A real oops: sysrq-c crashes the guest kernel.
tests/vm/run -q --timeout 120 -- sh -c 'echo c > /proc/sysrq-trigger; sleep 30' > /tmp/ibnbd-warn.$$ 2>&1
rc=$?
tail -n 5 /tmp/ibnbd-warn.$$
if [ "$rc" != 0 ] && grep -qE 'Kernel panic|Oops|BUG' /tmp/ibnbd-warn.$$; then
	echo "ok - a kernel crash fails the run (exit $rc) and is printed"
else
	echo "not ok - a kernel crash gave exit $rc"; fail=1
fi
rm -f /tmp/ibnbd-warn.$$
exit $fail
