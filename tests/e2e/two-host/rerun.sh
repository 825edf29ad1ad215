# Sourced first by a long two-host script, before lib.sh. A guest kernel
# that crashes for the emulation's sake (vm_emulation_crash in
# tests/vm/lib.sh: inside rdma_rxe, the emulated RDMA driver, or an int3
# trap of TCG's) ends the run with the cascade of failures a dead host
# causes, none of which says anything about ibnbd (seen: slab corruption
# found in rxe's receive path of the server host, 100 s after the last
# fault, under steady IO). Such a run does not count: the script runs once
# more, once, and that run's result stands. The first run's output is kept
# as comments, with the crash's first line and where its consoles are.
# Any other failure, and a second crash, fail the script as they are.
# shellcheck shell=bash

. "$(dirname "${BASH_SOURCE[0]}")/../../vm/lib.sh" # vm_emulation_crash, vm_void_run

if [ -z "${IBNBD_TWO_HOST_RUN:-}" ]; then
	rerun_dir=${IBNBD_CLUSTER:-$(mktemp -d /tmp/ibnbd-cluster.XXXXXX)}
	rerun_out=$(mktemp) rerun_err=$(mktemp)
	IBNBD_TWO_HOST_RUN=1 IBNBD_CLUSTER=$rerun_dir "$0" "$@" > "$rerun_out" 2> "$rerun_err"
	rerun_rc=$?
	if [ "$rerun_rc" != 0 ] && rerun_why=$(vm_emulation_crash "$rerun_dir"/server/console.log* \
		"$rerun_dir"/client/console.log*); then
		vm_void_run "$rerun_why; consoles in $rerun_dir" "$rerun_out" "$rerun_err"
		rm -f "$rerun_out" "$rerun_err"
		IBNBD_TWO_HOST_RUN=2 exec env -u IBNBD_CLUSTER "$0" "$@"
	fi
	cat "$rerun_out"
	cat "$rerun_err" >&2
	rm -f "$rerun_out" "$rerun_err"
	exit "$rerun_rc"
fi
