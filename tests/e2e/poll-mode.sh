#!/bin/bash
# Polling mode: both daemons busy-poll (--poll) or poll and sleep when idle
# (--poll-idle-us, or poll/poll_idle_us in their configuration files). Two
# devices of one session, verified IO on both queues of each, in three
# runs of the same workload:
#   1. interrupts (the default): the reference, measured in this run;
#   2. --poll on both: no worker sleeps during the IO (voluntary context
#      switches per IO a tenth of the reference's at most), the server's
#      workers spin while idle; a kill -9 of the server under verified IO
#      is survived as in interrupt mode;
#   3. poll_idle_us = 1000 from both files: IO verified, and both daemons'
#      workers go to sleep once the IO stops (< 5% of a CPU).
. "$(dirname "$0")/lib.sh"

truncate -s 256M "$WORK/a.img" "$WORK/b.img"
srv_args=(--listen "$ADDR" --workers 2 --export "a=$WORK/a.img" --export "b=$WORK/b.img")

daemon_pid() { cat /run/ibnbd/client.lock; }
# worker_threads PID: the task dirs of PID's workers (threads ibnbd-wN in
# the client, ibnbd-srv-wN in the server).
worker_threads() {
	local t c
	for t in /proc/"$1"/task/*; do
		c=$(cat "$t/comm" 2>/dev/null)
		[[ $c == ibnbd-w* || $c == ibnbd-srv-w* ]] && echo "$t"
	done
}
# workers_sum PID FILE AWK: AWK's number from FILE (status, stat) of each
# of PID's workers, summed.
workers_sum() {
	local t n=0
	for t in $(worker_threads "$1"); do
		n=$((n + $(awk "$3" "$t/$2")))
	done
	echo "$n"
}
# vcsw PID: voluntary context switches (sleeps) of PID's workers, in all.
vcsw() { workers_sum "$1" status '/^voluntary_ctxt_switches/ {print $2}'; }
# ticks PID: CPU time of PID's workers so far, in clock ticks.
ticks() { workers_sum "$1" stat '{print $14 + $15}'; }
# ios: requests both devices completed so far.
ios() {
	local d n=0
	for d in "$dev_a" "$dev_b"; do
		n=$((n + $(awk '{print $1 + $5}' "/sys/block/${d##*/}/stat")))
	done
	echo "$n"
}
# busy_pct PID SECONDS: how much of a CPU PID's workers used over SECONDS.
busy_pct() {
	local t0 t1
	t0=$(ticks "$1")
	sleep "$2"
	t1=$(ticks "$1")
	echo $(((t1 - t0) * 100 / $(getconf CLK_TCK) / $2))
}
# verified IO on both queues of both devices (a job per CPU per device).
run_fio() {
	local d pids=() rc=0
	for d in "$dev_a" "$dev_b"; do
		fio_verify "$d" --ioengine=io_uring --numjobs=2 --cpus_allowed=0-1 \
			--cpus_allowed_policy=split --size=24M --offset_increment=128M \
			--bsrange=4k-64k --iodepth=4 "$@" > "$WORK/fio.${d##*/}" 2>&1 &
		pids+=($!)
	done
	for d in "${pids[@]}"; do wait "$d" || rc=1; done
	[ "$rc" = 0 ] || cat "$WORK"/fio.* | tail -n 20
	return "$rc"
}
map_both() {
	dev_a=$("$CLIENT" map "$ADDR" a --name a) && dev_b=$("$CLIENT" map "$ADDR" b --name b)
}
# measure NAME: run_fio, and the workers' sleeps per 1000 IOs of each daemon.
measure() {
	local s0 c0 i0
	s0=$(vcsw "$srv_pid"); c0=$(vcsw "$(daemon_pid)"); i0=$(ios)
	check "$1: crc32c-verified fio on both queues of both devices" run_fio
	ios_done=$(($(ios) - i0))
	srv_sleeps=$((($(vcsw "$srv_pid") - s0) * 1000 / (ios_done ? ios_done : 1)))
	cli_sleeps=$((($(vcsw "$(daemon_pid)") - c0) * 1000 / (ios_done ? ios_done : 1)))
	echo "# $1: $ios_done IOs; worker sleeps per 1000 IOs: server $srv_sleeps, client $cli_sleeps"
}

# ---- 1. interrupts ----
start_server srv "${srv_args[@]}" || exit 1
srv_pid=$srv_pid
check "daemon starts (interrupts)" start_daemon --workers 2
check "the server says it takes interrupts" grep -q "worker(s) (interrupts)" "$WORK/srv.log"
check "the daemon says it takes interrupts" grep -q "2 worker(s), interrupts" "$WORK/daemon.log"
check "two devices of one session mapped" map_both
measure "interrupts"
ref_srv=$srv_sleeps ref_cli=$cli_sleeps
check "interrupts: the workers sleep between IOs (the reference: $ref_srv, $ref_cli per 1000)" \
	test "$ref_srv" -ge 100 -a "$ref_cli" -ge 100
stop_all

# ---- 2. --poll on both ----
start_server srv "${srv_args[@]}" --poll || exit 1
check "daemon starts (--poll)" start_daemon --workers 2 --poll
check "the server says it polls" grep -q "worker(s) (polling)" "$WORK/srv.log"
check "the daemon says it polls" grep -q "2 worker(s), polling" "$WORK/daemon.log"
check "two devices mapped" map_both
measure "--poll"
check "--poll: server workers sleep a tenth as often as with interrupts at most ($srv_sleeps vs $ref_srv per 1000 IOs)" \
	test $((srv_sleeps * 10)) -le "$ref_srv"
check "--poll: client workers sleep a tenth as often as with interrupts at most ($cli_sleeps vs $ref_cli per 1000 IOs)" \
	test $((cli_sleeps * 10)) -le "$ref_cli"
pct=$(busy_pct "$srv_pid" 2)
check "--poll: idle, the server's workers spin ($pct% of a CPU)" test "$pct" -ge 40
# A server kill under polling: the poll loop sees the failed completions.
# The writes are paced to last about 8 s, so that the kill finds them
# running; the verify pass after them reads back every acknowledged write.
kill_pids=()
for d in "$dev_a" "$dev_b"; do
	fio_verify "$d" --ioengine=io_uring --numjobs=2 --cpus_allowed=0-1 \
		--cpus_allowed_policy=split --size=8M --offset_increment=128M --bs=4k \
		--iodepth=4 --rate_iops=,250 > "$WORK/fio-kill.${d##*/}" 2>&1 &
	kill_pids+=($!)
done
sleep 3
check "--poll: fio still writes when the server is killed" kill -0 "${kill_pids[@]}"
kill -9 "$srv_pid"
wait "$srv_pid" 2>/dev/null
sleep 1
start_server srv "${srv_args[@]}" --poll || exit 1
fio_ok() { local p; for p in "$@"; do wait "$p" || return 1; done; }
check "--poll: kill -9 of the server under crc32c-verified writes: no IO or verify error" \
	fio_ok "${kill_pids[@]}" || cat "$WORK"/fio-kill.* | tail -n 20
check "--poll: both devices live again" wait_for 30 devices_are 2 live
check "--poll: the daemon logged the reconnect" grep -q "reconnected after" "$WORK/daemon.log"
stop_all

# ---- 3. adaptive, from the configuration files ----
cat > "$WORK/server.conf" <<CONF
listen = $ADDR
workers = 2
hosts_file = $WORK/hosts
poll = yes
poll_idle_us = 1000
[export a]
path = $WORK/a.img
allow = *
[export b]
path = $WORK/b.img
allow = *
CONF
printf 'workers = 2\npoll = yes\npoll_idle_us = 1000\n' > "$WORK/client.conf"
start_server srv --config "$WORK/server.conf" || exit 1
check "daemon starts (client.conf: poll, poll_idle_us)" start_daemon --config "$WORK/client.conf"
check "the server says it polls and sleeps after 1000 us" \
	grep -q "polling, sleeping after 1000 us idle" "$WORK/srv.log"
check "the daemon says it polls and sleeps after 1000 us" \
	grep -q "2 worker(s), polling, sleeping after 1000 us idle" "$WORK/daemon.log"
check "two devices mapped" map_both
measure "poll_idle_us 1000"
check "adaptive: the workers sleep no more often than with interrupts ($srv_sleeps, $cli_sleeps vs $ref_srv, $ref_cli per 1000 IOs)" \
	test "$srv_sleeps" -le "$ref_srv" -a "$cli_sleeps" -le "$ref_cli"
sleep 1
pct=$(busy_pct "$srv_pid" 2)
check "adaptive: idle, the server's workers sleep ($pct% of a CPU)" test "$pct" -lt 5
pct=$(busy_pct "$(daemon_pid)" 2)
check "adaptive: idle, the client's workers sleep ($pct% of a CPU)" test "$pct" -lt 5
check "adaptive: a device still answers after the sleep" \
	dd if="$dev_a" of=/dev/null bs=4k count=16 iflag=direct status=none
stop_all
check "no ublk device left" no_ublk_devices
done_testing
