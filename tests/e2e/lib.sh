# Shared by the e2e scripts that run inside the guest. Sourced; the script
# ends with done_testing (tap.sh).
# shellcheck shell=bash
set -u
. "$(dirname "${BASH_SOURCE[0]}")/tap.sh"
BUILD=${IBNBD_BUILD_DIR:-build}
SERVER_BIN=$BUILD/src/server/ibnbd-server
CLIENT=$BUILD/src/client/ibnbd-client
ADDR=${IBNBD_VM_ADDR:?run inside tests/vm/run}
WORK=$(mktemp -d /tmp/ibnbd-e2e.XXXXXX)
server_pids=()
# Servers authenticate hosts, as they must unless told --no-auth: this
# host's key, and a hosts file that lists it (and ibnbd-probe, as host
# PROBE_ID with the same key), for start_server and start_daemon to use
# unless a test says otherwise.
PROBE_ID=ibnbd-probe-e2e
(umask 077 && "$CLIENT" gen-key > "$WORK/client.key" &&
	printf '%s %s\n' "$("$CLIENT" host-id)" "$(cat "$WORK/client.key")" \
		"$PROBE_ID" "$(cat "$WORK/client.key")" > "$WORK/hosts") ||
	echo "# cannot make this host's key and hosts file in $WORK"

check() { # check DESCRIPTION COMMAND...: ok if COMMAND succeeds (and its status)
	local desc=$1
	shift
	if "$@" > "$WORK/check.out" 2>&1; then
		pass "$desc"
	else
		flunk "$desc"
		sed 's/^/#   /' "$WORK/check.out" | tail -n 30
		return 1
	fi
}

# start_server NAME ARGS...: ibnbd-server in the background, log in
# $WORK/NAME.log; with $WORK/hosts as its hosts file unless ARGS name one
# (--hosts-file, or a --config that does) or --no-auth; every --export
# without an allow list gets allow=* (every authenticated host).
start_server() {
	local name=$1 i auth=(--hosts-file "$WORK/hosts") args=()
	shift
	[[ " $* " == *" --no-auth "* || " $* " == *" --hosts-file "* ]] && auth=()
	for i in "$@"; do [ -f "$i" ] && grep -q '^hosts_file' "$i" && auth=(); done
	while [ $# -gt 0 ]; do
		if [ "$1" = --export ] && [ $# -gt 1 ]; then
			[[ $2 == *,allow=* ]] && args+=("$1" "$2") || args+=("$1" "$2,allow=*")
			shift 2
		else
			args+=("$1")
			shift
		fi
	done
	# A restart keeps the earlier run's log, for the failure report.
	[ -e "$WORK/$name.log" ] && cat "$WORK/$name.log" >> "$WORK/$name.earlier.log"
	"$SERVER_BIN" "${auth[@]}" "${args[@]}" > "$WORK/$name.log" 2>&1 &
	server_pids+=($!)
	eval "${name}_pid=$!"
	for i in $(seq 100); do
		grep -q "listening" "$WORK/$name.log" && return 0
		kill -0 "$!" 2>/dev/null || break
		sleep 0.1
	done
	echo "# server $name did not start:"; sed 's/^/#   /' "$WORK/$name.log"
	return 1
}

start_daemon() { # start_daemon [daemon options...]; $WORK/client.key unless --key-file
	local key=(--key-file "$WORK/client.key")
	[[ " $* " == *" --key-file "* ]] && key=()
	# A new daemon keeps the earlier one's log, for the failure report.
	[ -e "$WORK/daemon.log" ] && cat "$WORK/daemon.log" >> "$WORK/daemon.earlier.log"
	"$CLIENT" daemon "${key[@]}" "$@" > "$WORK/daemon.log" 2>&1 && return 0
	echo "# the daemon did not start:"; tail -n 20 "$WORK/daemon.log" | sed 's/^/#   /'
	return 1
}

now_ms() { echo $(($(date +%s%N) / 1000000)); }

# stuck_report PID: why PID has not exited - each thread's state, kernel
# stack and (with gdb) user stack - then kill -9 it, so that the script
# goes on to its later checks instead of waiting for the guest's deadline.
stuck_report() {
	local pid=$1 t
	echo "# pid $pid is still there; its threads:"
	for t in /proc/"$pid"/task/*; do
		echo "#   $(cat "$t/comm" 2>/dev/null) $(awk '/^State/ {print $2 $3}' "$t/status" 2>/dev/null) wchan=$(cat "$t/wchan" 2>/dev/null)"
		sed 's/^/#     /' "$t/stack" 2>/dev/null | head -n 12
	done
	for t in /proc/"$pid"/fd/*; do
		case $(readlink "$t") in
		*eventfd* | *io_uring*)
			echo "#   fd ${t##*/} $(readlink "$t"):"
			grep -vE '^(pos|flags|mnt_id|ino):' /proc/"$pid"/fdinfo/"${t##*/}" |
				head -n 40 | sed 's/^/#     /' ;;
		esac
	done
	command -v gdb > /dev/null &&
		timeout 60 gdb -p "$pid" -batch -ex "thread apply all bt" 2>/dev/null |
		grep -E '^(Thread|#)' | sed 's/^/#   /' | head -n 120
	kill -9 "$pid" 2>/dev/null
}

# fails PID: the background job PID (of this shell) ended with an error.
fails() { ! wait "$1"; }

# wait_for SECONDS COMMAND...: polls COMMAND every 0.05 s until it succeeds.
wait_for() {
	local end=$(($(now_ms) + $1 * 1000))
	shift
	until "$@" > /dev/null 2>&1; do
		[ "$(now_ms)" -ge "$end" ] && return 1
		sleep 0.05
	done
}

stop_all() {
	local p
	if [ -e /run/ibnbd/client.lock ]; then
		p=$(cat /run/ibnbd/client.lock 2>/dev/null)
		# SIGTERM leaves the devices to a next daemon; a test's end unmaps.
		[ -n "$p" ] && kill -0 "$p" 2>/dev/null &&
			timeout 20 "$CLIENT" unmap --all --force > /dev/null 2>&1
		[ -n "$p" ] && kill -TERM "$p" 2>/dev/null
		for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
	fi
	for p in "${server_pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
	# A server that died of a fault (SIGSEGV, SIGABRT, SIGBUS, SIGFPE) on
	# its way out fails the test, whatever else it checked.
	for p in "${server_pids[@]}"; do
		wait "$p" 2>/dev/null
		case $? in
		134 | 135 | 136 | 139) flunk "server pid $p crashed (exit status $?)" ;;
		esac
	done
}

finish() {
	local f
	stop_all
	if [ "$fail" != 0 ] || [ -z "$_tap_done" ]; then
		echo "# ---- logs ----"
		for f in "$WORK"/*.log; do
			[ -e "$f" ] || continue
			echo "# $f"; tail -n 40 "$f" | sed 's/^/#   /'
		done
	fi
	rm -rf "$WORK"
}
on_exit finish

# A script that hangs would be killed with the guest, its logs unseen: 30 s
# before the harness's deadline, say so and end it, so finish() reports.
if [ -n "${IBNBD_VM_DEADLINE:-}" ]; then
	(
		sleep $((IBNBD_VM_DEADLINE - $(date +%s) - 30)) 2>/dev/null || exit 0
		echo "not ok - watchdog: the script still runs 30 s before the guest's deadline"
		"$CLIENT" list 2>&1 | sed 's/^/#   /'
		# The script first (its EXIT trap runs once its foreground
		# command is gone), then what it waits for.
		kill -TERM $$
		pkill -TERM -P $$ 2>/dev/null
	) &
	_watchdog=$!
	on_exit kill "$_watchdog"
fi

# fio_verify DEVICE [extra fio args...]: write and verify with crc32c. The
# device must be a block device: fio would make a missing path a file.
fio_verify() {
	local dev=$1
	shift
	[ -b "$dev" ] || { echo "$dev is not a block device"; return 1; }
	fio --name=verify --filename="$dev" --direct=1 --rw=randwrite --verify=crc32c \
		--do_verify=1 --verify_fatal=1 --output-format=terse --minimal "$@"
}

# state_is NAME STATE: the mapped device NAME (its --name or path) is in STATE.
state_is() {
	"$CLIENT" list --json | python3 -c "import json, sys
sys.exit(0 if any(d['state'] == sys.argv[2] for d in json.load(sys.stdin)
                  if sys.argv[1] in (d['name'], d['device'])) else 1)" "$1" "$2"
}

# dev_of NAME: the block device of the mapped device NAME.
dev_of() {
	"$CLIENT" show "$1" --json | python3 -c "import json,sys; print(json.load(sys.stdin)['device'])"
}

# devices_are N STATE: exactly N devices are mapped, all in STATE.
devices_are() {
	"$CLIENT" list --json | python3 -c "import json, sys
d = json.load(sys.stdin)
sys.exit(0 if len(d) == int(sys.argv[1]) and all(x['state'] == sys.argv[2] for x in d) else 1)" "$1" "$2"
}

no_ublk_devices() { ! ls /dev/ublkb* /dev/ublkc* > /dev/null 2>&1; }

# fio_pause JSON: the longest completion latency fio saw (the application's
# longest pause), in ms, from fio's --output-format=json output.
fio_pause() { python3 "$(dirname "${BASH_SOURCE[0]}")/fio_pause.py" "$1"; }
