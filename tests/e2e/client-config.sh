#!/bin/bash
# client.conf: the daemon's options from the file (the command line over
# them), persistent maps made at start - one whose server is not up yet
# keeps trying and shows as reconnecting without holding the start back -
# /dev/ibnbd/NAME links, map --persist and unmap --persist editing the file,
# reload and SIGHUP applying a changed file (a bad line changing nothing),
# the maps coming back after a restart and after unmap --all, and a bad
# line refusing the start with its file and line.
. "$(dirname "$0")/lib.sh"

for v in a b c d; do truncate -s 256M "$WORK/$v.img"; done
start_server one --listen "$ADDR" --export "vol-a=$WORK/a.img" --export "vol-b=$WORK/b.img" \
	--export "vol-d=$WORK/d.img" || exit 1
CONF=$WORK/client.conf
cat > "$CONF" <<CONF_EOF
# a client host's configuration
workers = 1            # one queue per device
loss_timeout = 30
key_file = $WORK/client.key

[map db]
server = $ADDR
export = vol-a
loss_timeout = 0       # db's IO waits for its server forever

[map logs]
server = $ADDR:4422
export = vol-b
ro

# its server starts later
[map later]
server = $ADDR:4430
export = vol-c
CONF_EOF
cp "$CONF" "$WORK/client.conf.orig"

# How many blk-mq queues a device has.
queues_of() { ls -d /sys/block/"$(basename "$(readlink -f "$1")")"/mq/* | wc -l; }
link_is_dev() { [ -L "/dev/ibnbd/$1" ] && [ -b "/dev/ibnbd/$1" ] &&
	[ "$(readlink -f "/dev/ibnbd/$1")" = "$(dev_of "$1")" ]; }
json_field() { # json_field NAME FIELD: that field of device NAME in list --json
	"$CLIENT" list --json | python3 -c "import json, sys
print(*[d.get(sys.argv[2], '') for d in json.load(sys.stdin) if d['name'] == sys.argv[1]])" "$1" "$2"
}
daemon_pid() { cat /run/ibnbd/client.lock 2>/dev/null; }
start_conf() { # the daemon with $CONF (and its key_file), log in daemon.log
	[ -e "$WORK/daemon.log" ] && cat "$WORK/daemon.log" >> "$WORK/daemon.earlier.log"
	"$CLIENT" daemon --config "$CONF" "$@" > "$WORK/daemon.log" 2>&1
}
db_logs_live() { state_is db live && state_is logs live; }
later_waits() {
	"$CLIENT" list | grep -E "^ +later +$ADDR:4430 +vol-c .*reconnecting \(attempt [0-9]+.*: ."
}
names_devices() {
	"$CLIENT" list --json | python3 -c "import json,sys
print(sorted((d['name'], d['device']) for d in json.load(sys.stdin)))"
}
verify_db() { # what fio wrote to db, read back and checked
	link_is_dev db || return 1
	fio --name=verify --filename=/dev/ibnbd/db --direct=1 --rw=randwrite --verify=crc32c \
		--verify_only=1 --verify_fatal=1 --ioengine=io_uring --size=64M --bs=16k \
		--iodepth=16 --minimal
}
no_devices_no_links() { no_ublk_devices && [ -z "$(ls -A /dev/ibnbd 2>/dev/null)" ]; }
two_fio() {
	local p1 p2
	fio_verify /dev/ibnbd/extra --ioengine=io_uring --size=32M --bs=4k --iodepth=8 \
		--numjobs=2 --offset_increment=64M & p1=$!
	fio_verify /dev/ibnbd/later --ioengine=libaio --size=32M --bs=64k --iodepth=8 \
		--numjobs=2 --offset_increment=64M & p2=$!
	wait $p1 && wait $p2
}
logged_once() { # the first failure of 'later' is logged, not every attempt
	[ "$(cat "$WORK"/daemon*.log | grep -c 'map later .* not made yet')" -le 2 ]
}
stop_daemon() { # SIGTERM: the devices stay for the next daemon
	local p
	p=$(daemon_pid)
	kill -TERM "$p" && for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || return 0; sleep 0.1; done
	return 1
}

# ---- a bad line: no start, the file and line named ----
printf 'workers = 2\n[map x]\nserver = %s\nexport = e\nsize = 1G\n' "$ADDR" > "$WORK/bad.conf"
"$CLIENT" daemon --config "$WORK/bad.conf" > "$WORK/bad.out" 2>&1
rc=$?
check "a bad line refuses the start (status 2, got $rc)" test "$rc" = 2
check "... naming the file and the line" \
	grep -q "$WORK/bad.conf:5: unknown key 'size' in a map section" "$WORK/bad.out"
check "... and no daemon runs" sh -c "! $CLIENT list"
"$CLIENT" daemon --config "$WORK/missing.conf" > "$WORK/bad.out" 2>&1
rc=$?
check "a --config that does not exist refuses the start (status $rc)" \
	sh -c "test $rc = 2 && grep -q 'missing.conf: No such file' $WORK/bad.out"

# ---- the start: maps from the file, one server not up ----
t0=$(now_ms)
check "the daemon starts with the file (its key_file too)" start_conf
check "... within 5 s, although the server of 'later' does not answer ($(( $(now_ms) - t0 )) ms)" \
	test $(( $(now_ms) - t0 )) -lt 5000
check "db and logs are mapped from the file" wait_for 20 db_logs_live
echo "# daemon start to db and logs live: $(( $(now_ms) - t0 )) ms"
check "/dev/ibnbd/db links to db's device" link_is_dev db
check "/dev/ibnbd/logs links to logs' device" link_is_dev logs
check "logs is read-only, as its section says" test "$(blockdev --getro /dev/ibnbd/logs)" = 1
check "db is writable" test "$(blockdev --getro /dev/ibnbd/db)" = 0
check "workers = 1 from the file: db has 1 queue" test "$(queues_of /dev/ibnbd/db)" = 1
check "db has its section's loss timeout (0: forever), logs the file's 30 s" \
	test "$(json_field db loss_timeout_s) $(json_field logs loss_timeout_s)" = "0 30"
check "'later' shows as reconnecting, with why" wait_for 10 later_waits
"$CLIENT" list | sed 's/^/# /'
check "list --json marks the three persistent" \
	test "$(json_field db persistent) $(json_field logs persistent) $(json_field later persistent)" = "True True True"
check "show works for a map not made yet" sh -c "$CLIENT show later | grep -q reconnecting"
check "fio on /dev/ibnbd/db, crc32c verify" \
	fio_verify /dev/ibnbd/db --ioengine=io_uring --size=64M --bs=16k --iodepth=16
check "writing to the ro device fails" \
	sh -c "! dd if=/dev/zero of=/dev/ibnbd/logs bs=4k count=1 oflag=direct status=none"

start_server two --listen "$ADDR:4430" --export "vol-c=$WORK/c.img" || flunk "server two starts"
check "'later' is mapped once its server is up (within 35 s: the backoff)" \
	wait_for 35 state_is later live
check "/dev/ibnbd/later links to it" link_is_dev later
check "the daemon logged the failure once, not every attempt" logged_once

# ---- map --persist and unmap --persist ----
check "map --persist --loss-timeout 45" \
	"$CLIENT" map "$ADDR" vol-d --name extra --persist --loss-timeout 45
check "... adds [map extra] to the file, with its loss timeout" \
	sh -c "grep -A3 '^\\[map extra\\]' $CONF | grep -q 'export = vol-d' &&
	       grep -A3 '^\\[map extra\\]' $CONF | grep -q 'loss_timeout = 45'"
check "... keeping the rest of the file as it was" \
	sh -c "head -n $(wc -l < "$WORK/client.conf.orig") $CONF | cmp -s - $WORK/client.conf.orig"
check "map --persist of a name already configured is refused" \
	sh -c "! $CLIENT map $ADDR vol-d --name extra --persist"
dev_logs=$(dev_of logs)
check "unmap --persist logs" "$CLIENT" unmap logs --persist
check "... removes its section and nothing else" \
	sh -c "! grep -q 'map logs' $CONF && ! grep -q vol-b $CONF && grep -q '^\\[map db\\]' $CONF && grep -q 'its server starts later' $CONF"
check "... the device and its link are gone" sh -c "test ! -e $dev_logs && test ! -e /dev/ibnbd/logs"
"$CLIENT" unmap --all --persist > "$WORK/all.out" 2>&1
rc=$?
check "unmap --all --persist is refused (status $rc)" \
	sh -c "test $rc = 2 && grep -q 'would empty the configuration' $WORK/all.out"

# ---- reload (and SIGHUP): the file again, without a restart ----
cp "$CONF" "$WORK/before-reload.conf"
printf '\n[map logs2]\nserver = %s\nexport = vol-b\n' "$ADDR" >> "$CONF"
check "reload after a section was added: says so" \
	sh -c "$CLIENT reload | grep -q '^reloaded: 1 map(s) added, 0 removed, 0 changed$'"
check "... and maps it" wait_for 15 state_is logs2 live
logs2_linked() { link_is_dev logs2 && [ "$(json_field logs2 persistent)" = True ]; }
check "... as /dev/ibnbd/logs2, persistent" logs2_linked
printf 'colour = blue\n' >> "$CONF"
bad_line=$(wc -l < "$CONF")
"$CLIENT" reload > "$WORK/reload.out" 2>&1
rc=$?
check "a reload of a file with a bad line fails (status $rc), naming the file and the line" \
	sh -c "test $rc = 1 && grep -q \"$CONF:$bad_line: unknown key 'colour' in a map section\" \
		$WORK/reload.out"
check "... the daemon logged that it keeps what it has" \
	grep -q "the configuration in use is kept" "$WORK/daemon.log"
check "... and every device is as it was" devices_are 4 live
sed 's/^workers = 1 /workers = 2 /' "$WORK/before-reload.conf" > "$CONF"
kill -HUP "$(daemon_pid)"
logs2_forgotten() { [ "$(json_field logs2 persistent)" = False ] && state_is logs2 live; }
check "SIGHUP reloads too: logs2, gone from the file, is no longer persistent; its device stays" \
	wait_for 10 logs2_forgotten
check "... and the daemon says the new workers takes a restart" \
	grep -q "reload: workers changed in the file: it takes effect at the next start" \
	"$WORK/daemon.log"
check "unmap logs2" "$CLIENT" unmap logs2
cp "$WORK/before-reload.conf" "$CONF"

# ---- a restart (SIGTERM, an upgrade): devices taken over, none doubled ----
before=$(names_devices)
echo "# before: $before"
check "SIGTERM" stop_daemon
check "a new daemon with the file starts" start_conf
same_devices() { [ "$(names_devices)" = "$before" ]; }
check "it has db, later and extra, each once, on the same devices" wait_for 15 same_devices
check "all three live" wait_for 15 devices_are 3 live
check "db's data is intact after the takeover (verify only)" verify_db

# ---- unmap --all, then a start maps them again from the file ----
check "unmap --all" "$CLIENT" unmap --all
check "no device and no link is left" no_devices_no_links
check "SIGTERM" stop_daemon
check "a start with --workers 2 (over the file's 1)" start_conf --workers 2
check "db, later and extra are mapped again from the file" wait_for 20 devices_are 3 live
check "the command line won: db has 2 queues" test "$(queues_of /dev/ibnbd/db)" = 2
check "extra has the loss timeout map --persist recorded" test "$(json_field extra loss_timeout_s)" = 45
check "db's data survived unmap and map (verify only)" verify_db
check "fio on /dev/ibnbd/extra and /dev/ibnbd/later, both queues, crc32c verify" two_fio

# ---- a plain unmap of a map still waiting: not tried again, the file kept ----
check "unmap --all" "$CLIENT" unmap --all
check "SIGTERM" stop_daemon
kill -TERM "$two_pid"; wait "$two_pid" 2>/dev/null
check "a start while later's server is down" start_conf
check "later waits" wait_for 10 state_is later reconnecting
check "unmap later (not made yet)" "$CLIENT" unmap later
check "... it is no longer listed" sh -c "! $CLIENT list | grep -q later"
check "... and stays in the file" grep -q '^\[map later\]' "$CONF"
start_server two --listen "$ADDR:4430" --export "vol-c=$WORK/c.img" || flunk "server two starts again"
sleep 5
check "... and is not mapped when its server comes back" sh -c "! $CLIENT list | grep -q later"
check "db and extra are there" devices_are 2 live

done_testing
