# TAP for the e2e scripts, sourced first: ok/not ok lines, and an exit
# status that cannot pass by accident. A script passes only if no check
# failed, it exited with status 0, and it reached its end: its last line is
# `done_testing`. A script that stops early (exit 1 after a failed start,
# an unbound variable under set -u, even exit 0) fails, and says so.
# Cleanup that must run whatever happens goes in with on_exit.
# shellcheck shell=bash
fail=0
_tap_done=
_tap_cleanup=()
_tap_failed=()

# A command that does not exist fails the script, wherever it was run: a
# negated check (`! cmd`) of a missing command would otherwise pass. The
# handler runs in a subshell, so it leaves a note for _tap_exit.
_tap_cnf=$(mktemp /tmp/ibnbd-tap-cnf.XXXXXX)
command_not_found_handle() {
	echo "not ok - command not found: $1"
	echo "$1" >> "$_tap_cnf"
	return 127
}

pass() { echo "ok - $*"; }
flunk() { echo "not ok - $*"; fail=1; _tap_failed+=("$*"); }
# result STATUS DESCRIPTION: ok if STATUS is 0
result() { if [ "$1" = 0 ]; then pass "$2"; else flunk "$2"; fi; }

# on_exit COMMAND...: run at exit (last added first), before the verdict.
on_exit() { _tap_cleanup=("$(printf '%q ' "$@")" "${_tap_cleanup[@]}"); }

done_testing() { _tap_done=1; }

_tap_exit() {
	local rc=$? c
	trap - EXIT
	for c in "${_tap_cleanup[@]}"; do eval "$c"; done
	if [ -s "$_tap_cnf" ]; then
		flunk "commands not found: $(sort -u "$_tap_cnf" | tr '\n' ' ')"
	fi
	rm -f "$_tap_cnf"
	if [ -z "$_tap_done" ]; then
		flunk "stopped before the end of the script (exit status $rc)"
	elif [ "$rc" != 0 ]; then
		flunk "exit status $rc"
	fi
	# Last, so that a log cut to its end still says what failed.
	if [ "${#_tap_failed[@]}" -gt 0 ]; then
		echo "# failed checks:"
		for c in "${_tap_failed[@]}"; do echo "#   $c"; done
	fi
	exit $(( fail ? 1 : 0 ))
}
trap _tap_exit EXIT
