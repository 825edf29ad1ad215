# Shared by the two-host scripts (on the host, driving tests/vm/cluster).
# Sourced; the script ends with done_testing (tap.sh). The cluster is
# stopped at exit whatever happens, and a guest kernel that logged a
# problem fails the script.
# shellcheck shell=bash
set -u
cd "$(dirname "${BASH_SOURCE[0]}")/../../.."
. tests/e2e/tap.sh
export IBNBD_CLUSTER=${IBNBD_CLUSTER:-$(mktemp -d /tmp/ibnbd-cluster.XXXXXX)}
cluster=tests/vm/cluster
BUILD=${IBNBD_BUILD_DIR:-build}
CLIENT=$BUILD/src/client/ibnbd-client
SERVER_BIN=$BUILD/src/server/ibnbd-server

now_ms() { echo $(($(date +%s%N) / 1000000)); }
on() { local h=$1; shift; $cluster exec "$h" -- "$@"; } # on HOST COMMAND...
client() { on client "$@"; }

cluster_down() {
	local rc
	$cluster stop
	rc=$?
	[ "$rc" = 0 ] || flunk "the guests' kernels logged no problem (cluster stop: exit $rc)"
	# A failure keeps the consoles, logs and job outputs for the post-mortem.
	if [ "$fail" = 0 ]; then
		rm -rf "$IBNBD_CLUSTER"
	else
		echo "# kept for the post-mortem: $IBNBD_CLUSTER (consoles, daemon logs, jobs)"
	fi
}
on_exit cluster_down
