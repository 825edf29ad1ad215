#!/bin/bash
# In the guest: ibnbd-server over real verbs (rxe), driven by ibnbd-probe.
# Exports a 256 MiB file (rw) and a loop device (ro); checks IO with data
# verification, malformed requests while another client does verified IO,
# clear client errors, the flush/FUA counters and a clean SIGTERM exit.
name=server-basic
. "$(dirname "$0")/lib.sh"
port=4422
log=$work/server.log
srv=
loopdev=

check_fails() { # check_fails DESCRIPTION COMMAND...: COMMAND must fail
	if "${@:2}" > "$work/check.out" 2>&1; then
		flunk "$1 (it succeeded)"; sed 's/^/#   /' "$work/check.out"
	else
		pass "$1"
	fi
}
cleanup() {
	[ -n "$srv" ] && kill -0 "$srv" 2>/dev/null && kill -KILL "$srv"
	[ -n "$loopdev" ] && losetup -d "$loopdev"
	if { [ "$fail" != 0 ] || [ -n "${IBNBD_E2E_VERBOSE:-}" ]; } && [ -e "$log" ]; then
		echo "# server log (last 60 lines):"; tail -n 60 "$log" | sed 's/^/#   /'
	fi
	rm -rf "$work"
}
on_exit cleanup

[ -x "$server_bin" ] && [ -x "$probe" ] || { echo "not ok - binaries missing in $build"; exit 1; }

# Backing stores: a sparse file (rw), and a loop device over a file filled
# with the probe's read-verify pattern (ro), so reads there can be checked.
seed=$((RANDOM * 32768 + RANDOM + 1))
truncate -s 256M "$work/disk.img"
truncate -s 64M "$work/ro.img"
check "pattern written into the read-only backing file" "$probe" --fill-pattern "$work/ro.img" "$seed"
loopdev=$(losetup --show -f --direct-io=on "$work/ro.img") || { flunk "losetup"; exit 1; }

# disk is shared: verifying clients and garbage senders write it at once,
# each from its own session (server-resil.sh covers the single-writer rule).
"$server_bin" --no-auth --listen "$addr:$port" --workers 2 \
	--export "disk=$work/disk.img,shared" --export "rodisk=$loopdev,ro" > "$log" 2>&1 &
srv=$!
for _ in $(seq 100); do
	grep -q "serving 2 export" "$log" && break
	kill -0 "$srv" 2>/dev/null || break
	sleep 0.1
done
if grep -q "serving 2 export" "$log"; then pass "server started"; else flunk "server started"; exit 1; fi

check "info on the file export" sh -c "'$probe' $addr disk info | tee /dev/stderr | grep -q 'size 268435456 bytes'"
check "info on the loop export says read-only" sh -c "'$probe' $addr rodisk info | tee /dev/stderr | grep -q 'read-only'"
check "write-read-verify 48 on the file export" "$probe" "$addr" disk write-read-verify 48
check "read-verify 24 on the read-only loop export" "$probe" --ro "$addr" rodisk read-verify 24 "$seed"
# The verification itself must be able to fail.
check_fails "read-verify with the wrong pattern fails" "$probe" --ro "$addr" rodisk read-verify 4 $((seed + 1))
check_fails "write-read-verify on the read-only export fails" "$probe" "$addr" rodisk write-read-verify 2
check "flush, FUA write, discard, write-zeroes, keepalive" "$probe" "$addr" disk \
	flush fua-write 4096 8192 discard 1048576 65536 write-zeroes 2097152 65536 keepalive

# Zeroing opcodes really zero; the check itself can fail.
check "write-zeroes, write-zeroes NOUNMAP and discard read back as zeroes" "$probe" "$addr" disk \
	write 3145728 65536 write-zeroes 3145728 65536 expect-zero 3145728 65536 \
	write 4194304 65536 write-zeroes-nounmap 4194304 65536 expect-zero 4194304 65536 \
	write 5242880 65536 discard 5242880 65536 expect-zero 5242880 65536
check_fails "expect-zero fails on written data" "$probe" "$addr" disk \
	write 6291456 4096 expect-zero 6291456 4096

# Garbage against both exports while a well-behaved client verifies IO.
"$probe" "$addr" disk write-read-verify 96 > "$work/wrv.out" 2>&1 &
wrv=$!
check "garbage against the file export" "$probe" "$addr" disk garbage
check "garbage against the read-only export" "$probe" "$addr" rodisk garbage
if wait "$wrv"; then
	pass "write-read-verify concurrent with garbage"
else
	flunk "write-read-verify concurrent with garbage"; sed 's/^/#   /' "$work/wrv.out"
fi
check "server survived the garbage" kill -0 "$srv"
check "server logged the rejects, naming the peer" \
	grep -q "from $addr:[0-9]* host 'ibnbd-probe-[0-9]*': rejected READ tag 0 handle 77 " "$log"
check "server logged the dropped connections" grep -q "protocol violation, dropping the connection" "$log"
check "write-read-verify after garbage" "$probe" "$addr" disk write-read-verify 16

# Clear errors.
out=$("$probe" "$addr" no-such-export info 2>&1); rc=$?
if [ $rc != 0 ] && grep -q "export 'no-such-export' not found" <<< "$out"; then
	pass "unknown export: clear error ($out)"
else
	flunk "unknown export: rc=$rc: $out"
fi
t0=$(date +%s)
out=$(timeout 30 "$probe" "$addr:$((port + 1))" disk info 2>&1); rc=$?
t1=$(date +%s)
if [ $rc != 0 ] && [ $rc != 124 ] && [ $((t1 - t0)) -le 10 ] &&
   grep -q "$addr" <<< "$out" && grep -q "port $((port + 1))" <<< "$out"; then
	pass "unreachable port: clear error in $((t1 - t0)) s ($out)"
else
	flunk "unreachable port: rc=$rc after $((t1 - t0)) s: $out"
fi

# Nobody at that address (same subnet, no ARP answer).
nohost=${addr%.*}.99
t0=$(date +%s)
out=$(timeout 30 "$probe" "$nohost" disk info 2>&1); rc=$?
t1=$(date +%s)
if [ $rc != 0 ] && [ $rc != 124 ] && [ $((t1 - t0)) -le 10 ] &&
   grep -q "$nohost port $port" <<< "$out"; then
	pass "unreachable host: clear error in $((t1 - t0)) s ($out)"
else
	flunk "unreachable host: rc=$rc after $((t1 - t0)) s: $out"
fi

# The config file: errors name file and line; a good one serves.
cat > "$work/bad.conf" <<EOF
listen = $addr:$((port + 2))
[export a]
path = $work/disk.img
colour = blue
EOF
out=$("$server_bin" --no-auth --config "$work/bad.conf" 2>&1); rc=$?
if [ $rc != 0 ] && grep -q "bad.conf:4: unknown key 'colour'" <<< "$out"; then
	pass "config error names file and line ($out)"
else
	flunk "config error: rc=$rc: $out"
fi
cat > "$work/good.conf" <<EOF
# a comment
listen = $addr:$((port + 2))
workers = 1
[export cfg-ro]
path = $work/disk.img
ro = yes
EOF
"$server_bin" --no-auth --config "$work/good.conf" > "$work/cfg.log" 2>&1 &
cfgsrv=$!
for _ in $(seq 100); do grep -q "serving 1 export" "$work/cfg.log" && break; sleep 0.1; done
check "server from a config file serves a read-only export" \
	sh -c "'$probe' $addr:$((port + 2)) cfg-ro info | grep -q read-only"
kill -TERM "$cfgsrv"; wait "$cfgsrv"; rc=$?
if [ $rc = 0 ]; then
	pass "config-file server: SIGTERM exit 0"
else
	flunk "config-file server exit $rc"; sed 's/^/#   /' "$work/cfg.log"
fi

# Counters: flush and FUA arrived (SIGUSR1).
kill -USR1 "$srv"
for _ in $(seq 50); do grep -q "stats (SIGUSR1)" "$log" && break; sleep 0.1; done
stats=$(grep "stats (SIGUSR1)" "$log" | tail -n 1)
num() { sed -n "s/.* $1=\([0-9]*\).*/\1/p" <<< "$stats"; }
if [ "$(num flushes)" -ge 1 ] 2>/dev/null && [ "$(num fua_writes)" -ge 1 ] &&
   [ "$(num discards)" -ge 1 ] && [ "$(num write_zeroes)" -ge 1 ] &&
   [ "$(num rejected)" -ge 10 ] && [ "$(num writes)" -ge 100 ]; then
	pass "counters: $stats"
else
	flunk "counters: '$stats'"
fi

# SIGTERM: clean exit 0 within seconds, with a client in the middle of IO.
"$probe" "$addr" disk write-read-verify 100000 > "$work/wrv2.out" 2>&1 &
late=$!
for _ in $(seq 100); do grep -q "ibnbd-probe-$late': opened export 'disk'" "$log" && break; sleep 0.1; done
sleep 1
# The stop makes what clients were told is written durable: the kernel's
# fdatasync tracepoint must see the server flush the writable export's file
# descriptor, and only that one (rodisk is read-only).
tr=/sys/kernel/tracing
[ -d "$tr/events" ] || mount -t tracefs nodev "$tr"
fd_of() { # fd_of PATH: the server's descriptor open on PATH
	local f
	for f in /proc/"$srv"/fd/*; do
		[ "$(readlink "$f")" = "$1" ] && { echo "${f##*/}"; return 0; }
	done
	return 1
}
disk_fd=$(fd_of "$work/disk.img") && ro_fd=$(fd_of "$loopdev")
check "the server holds both exports open (disk fd ${disk_fd:-?}, rodisk fd ${ro_fd:-?})" \
	[ -n "${disk_fd:-}" ] && [ -n "${ro_fd:-}" ]
echo > "$tr/trace"
echo 1 > "$tr/events/syscalls/sys_enter_fdatasync/enable"
on_exit sh -c "echo 0 > $tr/events/syscalls/sys_enter_fdatasync/enable"
srv_pid=$srv
kill -TERM "$srv"
t0=$(date +%s)
rc=124
for _ in $(seq 300); do
	if ! kill -0 "$srv" 2>/dev/null; then wait "$srv"; rc=$?; break; fi
	sleep 0.1
done
t1=$(date +%s)
[ $rc = 124 ] || srv=
if [ $rc = 0 ]; then
	pass "SIGTERM: server exited 0 in $((t1 - t0)) s"
else
	flunk "SIGTERM: server exit status $rc"
fi
check "SIGTERM: the busy connection was drained, then closed" \
	grep -q "ibnbd-probe-$late': closing: server shutting down, in-flight IO finished" "$log"
if wait "$late"; then
	flunk "SIGTERM: the client saw its connection end"; sed 's/^/#   /' "$work/wrv2.out"
else
	pass "SIGTERM: the client saw its connection end ($(tail -n 1 "$work/wrv2.out"))"
fi
check "exit report printed" grep -q "stats (exit)" "$log"
echo 0 > "$tr/events/syscalls/sys_enter_fdatasync/enable"
# Trace lines read "ibnbd-server-PID [cpu] ... sys_fdatasync(fd: N)", N in
# hex or decimal by kernel version.
synced=$(python3 - "$tr/trace" "${srv_pid:?}" <<'PY'
import re, sys
fds = sorted({int(m.group(1), 0) for m in re.finditer(
    r"-%s\s+\[.*sys_fdatasync\(fd: (\w+)\)" % sys.argv[2], open(sys.argv[1]).read())})
print(" ".join(map(str, fds)))
PY
)
if [ "$synced" = "${disk_fd:-x}" ]; then
	pass "SIGTERM: the server flushed the writable export (fd $synced) before exiting, not the read-only one"
else
	flunk "SIGTERM: fdatasync at exit on fds '$synced', expected only disk's ${disk_fd:-?}"
	grep fdatasync "$tr/trace" | head -5 | sed 's/^/#   /'
fi
done_testing
