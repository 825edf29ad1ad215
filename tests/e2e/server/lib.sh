# Shared by the server e2e scripts (in the guest, driving ibnbd-server with
# ibnbd-probe). Sourced after the script sets `name`; gives the paths, a
# scratch directory $work and the TAP helpers.
# shellcheck shell=bash
set -u
build=${IBNBD_BUILD_DIR:-build}
server_bin=$build/src/server/ibnbd-server
probe=$build/tests/e2e/server/ibnbd-probe
addr=${IBNBD_VM_ADDR:?run me inside tests/vm/run}
fail=0
work=$(mktemp -d "/tmp/${name:?}.XXXXXX")

pass() { echo "ok - $1"; }
flunk() { echo "not ok - $1"; fail=1; }
check() { # check DESCRIPTION COMMAND...
	if "${@:2}" > "$work/check.out" 2>&1; then
		pass "$1"
	else
		flunk "$1"; sed 's/^/#   /' "$work/check.out"
	fi
}
