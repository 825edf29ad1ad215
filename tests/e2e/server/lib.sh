# Shared by the server e2e scripts (in the guest, driving ibnbd-server with
# ibnbd-probe). Sourced after the script sets `name`; gives the paths, a
# scratch directory $work and the TAP helpers (tap.sh: the script ends with
# done_testing and registers its cleanup with on_exit).
# shellcheck shell=bash
set -u
# TAP with the guards every e2e script has: the script must reach its
# done_testing, and a command that does not exist fails it.
. "$(dirname "${BASH_SOURCE[0]}")/../tap.sh"
build=${IBNBD_BUILD_DIR:-build}
server_bin=$build/src/server/ibnbd-server
probe=$build/tests/e2e/server/ibnbd-probe
addr=${IBNBD_VM_ADDR:?run me inside tests/vm/run}
work=$(mktemp -d "/tmp/${name:?}.XXXXXX")
check() { # check DESCRIPTION COMMAND...
	if "${@:2}" > "$work/check.out" 2>&1; then
		pass "$1"
	else
		flunk "$1"; sed 's/^/#   /' "$work/check.out"
	fi
}
