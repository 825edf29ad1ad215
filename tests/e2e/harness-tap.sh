#!/bin/bash
# The e2e scripts' verdict (tests/e2e/tap.sh through lib.sh) cannot pass by
# accident: scripts that stop early - exit 1 before any check, exit 0
# before the end, an unbound variable under set -u - fail, as do a failed
# check and a command that does not exist (even negated, or in a subshell); only a script that reaches done_testing with every check ok passes.
# Runs on the host: lib.sh is sourced with a guest's address set.
set -u
cd "$(dirname "$0")/../.."
repo=$PWD
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0

# expect DESCRIPTION WANT BODY: a script sourcing lib.sh, then BODY, must
# exit with WANT (0 or "non-zero").
expect() {
	local desc=$1 want=$2 rc
	printf '#!/bin/bash\n. %q/tests/e2e/lib.sh\n%s\n' "$repo" "$3" > "$tmp/t.sh"
	IBNBD_VM_ADDR=192.0.2.10 bash "$tmp/t.sh" > "$tmp/out" 2>&1
	rc=$?
	if { [ "$want" = 0 ] && [ "$rc" = 0 ]; } || { [ "$want" != 0 ] && [ "$rc" != 0 ]; }; then
		echo "ok - $desc (exit $rc)"
	else
		echo "not ok - $desc (exit $rc)"; sed 's/^/#   /' "$tmp/out"; fail=1
	fi
}

expect "a script that exits 1 before any check fails" non-zero 'exit 1'
expect "a script that exits 0 before its end fails" non-zero 'check "one" true
exit 0
done_testing'
expect "an unbound variable under set -u fails" non-zero 'check "one" true
echo "$no_such_variable"
done_testing'
expect "a failed check fails the script" non-zero 'check "one" false
done_testing'
expect "a script whose last command fails after done_testing fails" non-zero 'check "one" true
done_testing
false'
expect "a negated check of a command that does not exist fails the script" non-zero \
	'! no-such-ibnbd-command --flag
check "one" true
done_testing'
expect "... also in a subshell" non-zero '( no-such-ibnbd-command ) || true
check "one" true
done_testing'
grep -q "command not found: no-such-ibnbd-command" "$tmp/out" ||
	{ echo "not ok - the missing command is not named"; fail=1; }
expect "a script with every check ok that reaches done_testing passes" 0 'check "one" true
check "two" test -d "$WORK"
done_testing'
grep -q "stopped before the end" "$tmp/out" && { echo "not ok - a passing script says it stopped"; fail=1; }
exit $fail
