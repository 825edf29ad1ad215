#!/bin/bash
# The harness carries COMMAND's exit status out of the guest, and fails a
# run whose COMMAND fails.
set -u
cd "$(dirname "$0")/../.."
tests/vm/run -q -- sh -c 'echo "output reaches the host"; exit 7' > /tmp/ibnbd-exit.$$ 2>&1
rc=$?
out=$(cat /tmp/ibnbd-exit.$$); rm -f /tmp/ibnbd-exit.$$
echo "$out"
[ "$rc" = 7 ] || { echo "not ok - expected exit status 7, got $rc"; exit 1; }
echo "ok - exit status 7 carried out of the guest"
grep -q '^output reaches the host$' <<<"$out" || { echo "not ok - output not streamed"; exit 1; }
echo "ok - output streamed to the host"
