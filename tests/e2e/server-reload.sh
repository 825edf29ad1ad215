#!/bin/bash
# SIGHUP re-reads server.conf while a client uses it: an export added is
# served at once, one removed fails its device ("removed") and its file is
# closed, a changed allow list refuses the next open, and a file with an
# error or a change a reload cannot make keeps everything as it was - all
# under verified IO on another export of the same session, which sees
# nothing. An export that grows is noticed by a reload, and a device
# mapped from it keeps working at its size, through a server restart too,
# until it is mapped again; a shrink fails IO past the new end.
. "$(dirname "$0")/lib.sh"

truncate -s 256M "$WORK/a.img" "$WORK/b.img" "$WORK/c.img" "$WORK/d.img" "$WORK/a2.img"
CONF=$WORK/server.conf
conf() { # conf [EXPORT=ALLOW]...: the server's configuration, exports in order
	printf 'listen = %s\nhosts_file = %s\n' "$ADDR" "$WORK/hosts" > "$CONF"
	for x in "$@"; do
		printf '[export %s]\npath = %s\nallow = %s\n' "${x%%=*}" "$WORK/${x%%=*}.img" \
			"${x#*=}" >> "$CONF"
	done
}
conf 'a=*' 'b=*' 'd=*'
# Settings from the command line too (the file has none of them): a reload
# must not report them as changed in the file.
start_server srv --config "$CONF" --workers 2 --keepalive-timeout 12 --listen "$ADDR:4501" || exit 1
check "daemon starts" start_daemon --workers 2
a=$("$CLIENT" map --name va "$ADDR" a) && b=$("$CLIENT" map --name vb "$ADDR" b)
check "a and b mapped ($a $b)" test -b "$a" -a -b "$b"
dd if=/dev/urandom of="$WORK/b.img" bs=1M count=4 conv=notrunc status=none
reloads=0
reload() { # reload [--verb]: SIGHUP (or ibnbd-server reload), and wait for the read
	reloads=$((reloads + 1))
	if [ "${1:-}" = --verb ]; then
		check "ibnbd-server reload --config finds the server and asks it" sh -c "
			'$SERVER_BIN' reload --config '$CONF' | grep -qx 'asked ibnbd-server $srv_pid to re-read $CONF; its log says what changed'"
	else
		kill -HUP "$srv_pid"
	fi
	wait_for 10 sh -c "test \$(grep -c 'SIGHUP: .* host(s) in' '$WORK/srv.log') -ge $reloads"
	sleep 0.5
}
held_by_server() { ls -l /proc/"$srv_pid"/fd 2>/dev/null | grep -q "$1"; }

# Verified IO on a, on both queues, across every reload below.
fio_verify "$a" --ioengine=io_uring --bs=4k --iodepth=16 --size=48M --numjobs=2 \
	--offset_increment=96M --time_based --runtime=40 --verify_backlog=64 \
	> "$WORK/fio.a" 2>&1 &
fio_a=$!
sleep 2

# 1. Add c, remove b, allow d to another host only.
conf 'a=*' 'c=*' 'd=other-host'
reload
check "the reload says what it changed" \
	grep -q "reload of $CONF: 1 export(s) added, 1 removed, 1 allow list(s) changed" "$WORK/srv.log"
check "... and no setting the command line gave as changed in the file" \
	sh -c "! grep 'changed in the file' '$WORK/srv.log'"
c=$("$CLIENT" map --name vc "$ADDR" c)
check "the added export maps ($c)" test -b "$c"
check "... and takes verified IO" fio_verify "$c" --ioengine=io_uring --bs=64k --iodepth=8 --size=32M
check "IO to the removed export's device fails" \
	sh -c "! dd if='$b' of=/dev/null bs=4k count=1 iflag=direct status=none 2>/dev/null"
check "... which is failed, and says why" sh -c "
	'$CLIENT' show vb | grep -qx 'state  *failed' &&
	'$CLIENT' show vb | grep -q \"export 'b' was removed from the server's configuration\""
check "the server closed the removed export's file" sh -c "! ls -l /proc/$srv_pid/fd | grep -q b.img"
check "a new open of d is refused by its new allow list" \
	sh -c "! '$CLIENT' map '$ADDR' d 2> '$WORK/d.err' && grep -q \"not allowed to open export 'd'\" '$WORK/d.err'"

# 2. A file with an error: nothing changes.
conf 'a=*' 'c=*'
echo "colour = blue" >> "$CONF"
reload
check "a bad file is refused, its line named, and nothing changes" \
	grep -q "SIGHUP: $CONF:[0-9]*: unknown key 'colour'.*; the exports stay as they were" "$WORK/srv.log"
check "... c still serves what was written to it" \
	fio_verify "$c" --ioengine=io_uring --bs=64k --iodepth=8 --size=32M --verify_only=1

# 3. A change a reload cannot make (a's path): refused, nothing changes.
printf 'listen = %s\nhosts_file = %s\n[export a]\npath = %s\nallow = *\n[export c]\npath = %s\nallow = *\n' \
	"$ADDR" "$WORK/hosts" "$WORK/a2.img" "$WORK/c.img" > "$CONF"
reload
check "changing an export's path is refused" \
	grep -q "SIGHUP: export 'a': its path, ro or shared changed" "$WORK/srv.log"
check "... and a is still served from a.img" held_by_server a.img

# 4. b again: a new export of the same name, with the same data; asked
# by the verb this time.
conf 'a=*' 'c=*' 'b=*'
reload --verb
check "b is added again" grep -q "reload: export 'b' added" "$WORK/srv.log"
b2=$("$CLIENT" map --name vb2 "$ADDR" b)
check "... it maps ($b2) and reads what b.img holds" \
	cmp <(dd if="$b2" bs=1M count=4 iflag=direct status=none) <(head -c 4M "$WORK/b.img")

"$SERVER_BIN" reload --config "$WORK/hosts" > "$WORK/noserver.out" 2>&1
check "ibnbd-server reload of a file no server reads: status 1 and why ($?)" sh -c "
	test $? = 1 && grep -q 'no running ibnbd-server reads $WORK/hosts' '$WORK/noserver.out'"

wait "$fio_a"
check "verified IO on a through every reload: no error" test $? = 0 ||
	sed 's/^/#   /' "$WORK/fio.a" | tail -n 20
check "a stayed live" state_is va live

# 5. c grows (a file extended; an LV resized is the same to the server):
# the reload notices, and new opens get the new size; the mapped vc keeps
# its size and its data, also through a restart of the server, whose
# re-open finds the grown export - the same one, not a changed one - and
# `show` says a remap is needed (6.12's ublk cannot resize a device).
# Mapped again, it has the new size. Then a shrink, which a reload reports
# and which fails IO past the new end.
size0=$(blockdev --getsize64 "$c")
truncate -s 320M "$WORK/c.img"
reload
check "the reload notices that c grew" \
	grep -q "reload: export 'c' grew from $size0 to 335544320 bytes" "$WORK/srv.log"
check "... and counts it" grep -q "allow list(s) changed, 1 resized" "$WORK/srv.log"
check "the server lists c at its new size" sh -c \
	"'$SERVER_BIN' list-exports | grep -Eq '^c +[^ ]+ +335544320 '"
kill -TERM "$srv_pid"; wait "$srv_pid"
start_server srv --config "$CONF" --workers 2 --keepalive-timeout 12 --listen "$ADDR:4501" ||
	flunk "the server starts again"
reloads=0
check "after the server's restart vc is live again (not failed: c only grew)" \
	wait_for 20 state_is vc live
check "... at its old size ($size0)" test "$(blockdev --getsize64 "$c")" = "$size0"
check "... and says a remap would give it the rest" sh -c "
	'$CLIENT' show vc | grep -qE '^export_size +335544320' && '$CLIENT' show vc | grep -qE '^remap_needed +true'"
check "... with its data intact" \
	fio_verify "$c" --ioengine=io_uring --bs=64k --iodepth=8 --size=32M --verify_only=1
check "the client's log says it grew" grep -q "export 'c' on .* grew to 335544320 bytes" "$WORK/daemon.log"
check "unmap vc" "$CLIENT" unmap vc
c=$("$CLIENT" map --name vc "$ADDR" c)
check "mapped again, c is 335544320 bytes" test "$(blockdev --getsize64 "$c")" = 335544320
check "... and nothing needs a remap" sh -c "! '$CLIENT' show vc | grep -q remap_needed"
check "... and its end takes verified IO" \
	fio_verify "$c" --ioengine=io_uring --bs=64k --iodepth=8 --offset=300M --size=20M
truncate -s 256M "$WORK/c.img"
reload
check "a reload reports that c shrank" \
	grep -q "reload: export 'c' shrank from 335544320 to 268435456 bytes" "$WORK/srv.log"
check "IO past the new end fails" \
	sh -c "! dd if='$c' of=/dev/null bs=64k count=1 skip=4600 iflag=direct status=none 2>/dev/null"
check "IO before it works" dd if="$c" of=/dev/null bs=64k count=1 iflag=direct status=none

for n in va vb vb2 vc; do check "unmap $n" "$CLIENT" unmap "$n"; done
stop_all
check "no ublk device left" no_ublk_devices
done_testing
