# Sourced first by a long two-host script, before lib.sh. A guest kernel
# that crashes inside rdma_rxe, the emulated RDMA driver the guests run
# instead of an HCA, ends the run with the cascade of failures a dead host
# causes, none of which says anything about ibnbd (seen: slab corruption
# found in rxe's receive path of the server host, 100 s after the last
# fault, under steady IO). Such a run does not count: the script runs once
# more, once, and that run's result stands. The first run's output is kept
# as comments, with the crash's first line and where its consoles are.
# Any other failure, and a second crash, fail the script as they are.
# shellcheck shell=bash

# rxe_crash DIR: true, with the oops' first line, if the first kernel oops
# on a console of either host has rdma_rxe in its trace.
rxe_crash() {
	local f
	for f in "$1"/server/console.log* "$1"/client/console.log*; do
		[ -e "$f" ] || continue
		if awk '/Oops|Kernel panic|BUG:|general protection fault/ && !n { n = NR }
			n && NR <= n + 60' "$f" | grep -q '\[rdma_rxe\]'; then
			grep -m1 -E 'BUG:|Oops|general protection fault|Kernel panic' "$f" |
				sed 's/^\[ *[0-9.]*\] //'
			return 0
		fi
	done
	return 1
}

if [ -z "${IBNBD_TWO_HOST_RUN:-}" ]; then
	rerun_dir=${IBNBD_CLUSTER:-$(mktemp -d /tmp/ibnbd-cluster.XXXXXX)}
	rerun_out=$(mktemp) rerun_err=$(mktemp)
	IBNBD_TWO_HOST_RUN=1 IBNBD_CLUSTER=$rerun_dir "$0" "$@" > "$rerun_out" 2> "$rerun_err"
	rerun_rc=$?
	if [ "$rerun_rc" != 0 ] && rerun_why=$(rxe_crash "$rerun_dir"); then
		cat "$rerun_out" "$rerun_err" | sed 's/^/# run 1: /'
		echo "# run 1 does not count: a guest's kernel crashed in rdma_rxe, the emulated" \
			"RDMA driver ($rerun_why; consoles in $rerun_dir); running once more"
		rm -f "$rerun_out" "$rerun_err"
		IBNBD_TWO_HOST_RUN=2 exec env -u IBNBD_CLUSTER "$0" "$@"
	fi
	cat "$rerun_out"
	cat "$rerun_err" >&2
	rm -f "$rerun_out" "$rerun_err"
	exit "$rerun_rc"
fi
