#!/bin/bash
# In a guest whose PID 1 is systemd (tests/vm/run --init systemd): the
# units meson installs run the real stack, sandboxed. ibnbd-server.service
# and ibnbd-client.service reach `active` through Type=notify; the
# sandbox is in force (no new privileges, the capabilities the units
# name and no others, a read-only /usr, a private /tmp, /srv writable for
# exports); two exports of one session - a loop block device and a file
# under /srv - are mapped through the daemon the unit runs, and
# crc32c-verified fio runs on both queues of both across `systemctl
# restart ibnbd-client` (a live upgrade) and `systemctl stop` / `start
# ibnbd-server` (a drain, then a reconnect), without an IO error. The
# units' `systemd-analyze security` exposure is printed and must stay
# "OK" (below 4). A persistent map of client.conf appears at start as
# /dev/ibnbd/NAME, known to systemd through udev, and an fstab _netdev
# line on it mounts through systemd; verified fio on that file system runs
# across the client's restart too. `map --persist` edits client.conf from
# inside the sandbox. Both units start after the RDMA device. In the order
# of a shutdown, the file system is unmounted, then the devices unmapped,
# then the daemon stopped; both units stop cleanly.
. "$(dirname "$0")/lib.sh"

if [ "$(cat /proc/1/comm)" != systemd ]; then
	flunk "PID 1 is $(cat /proc/1/comm), not systemd (run with tests/vm/run --init systemd)"
	done_testing
	exit 1
fi
on_exit systemctl stop ibnbd-client.service ibnbd-server.service
check "meson install of this build" meson install -C "$BUILD" --no-rebuild --quiet
SBIN=$(systemctl cat ibnbd-client.service | sed -n 's|^ExecStart=\(.*\)/ibnbd-client .*|\1|p')
conf=$(systemctl cat ibnbd-server.service | sed -n 's/^ExecStart=.*--config //p')
check "the units are installed ($SBIN, $conf)" test -x "$SBIN/ibnbd-client" -a -n "$conf"

mkdir -p "$(dirname "$conf")" /etc/ibnbd /srv/ibnbd
(umask 077 && "$SBIN/ibnbd-client" gen-key > /etc/ibnbd/client.key &&
	echo "$("$SBIN/ibnbd-client" host-id) $(cat /etc/ibnbd/client.key)" > /etc/ibnbd/hosts)
truncate -s 256M "$WORK/loop.img" /srv/ibnbd/file.img /srv/ibnbd/fs.img
loopdev=$(losetup --find --show --direct-io=on "$WORK/loop.img") || { flunk "losetup"; exit 1; }
on_exit losetup -d "$loopdev"
cat > "$conf" <<EOF
listen = $ADDR
hosts_file = /etc/ibnbd/hosts
metrics = 127.0.0.1:9642
[export blk]
path = $loopdev
allow = *
[export file]
path = /srv/ibnbd/file.img
allow = *
[export fs]
path = /srv/ibnbd/fs.img
allow = *
EOF
confdir=$(dirname "$conf")
cat > "$confdir/client.conf" <<EOF
# made by the test
metrics = 127.0.0.1:9643
[map fs]
server = $ADDR
export = fs
EOF
cp "$confdir/client.conf" "$WORK/client.conf.orig"
udevadm control --reload
systemctl daemon-reload
check "systemctl start ibnbd-server: it says READY" timeout 60 systemctl start ibnbd-server.service
check "... and is active" systemctl is-active ibnbd-server.service
t0=$(now_ms)
check "systemctl start ibnbd-client: it says READY" timeout 60 systemctl start ibnbd-client.service
check "... and is active" systemctl is-active ibnbd-client.service
for u in server client; do
	after=" $(systemctl show -p After --value "ibnbd-$u.service") "
	[[ $after == *" network-online.target "* && $after == *" rdma-hw.target "* ]]
	result $? "ibnbd-$u.service starts after network-online.target and rdma-hw.target (the RDMA device)"
done
check "the persistent map fs appears as /dev/ibnbd/fs" wait_for 30 test -b /dev/ibnbd/fs
echo "# systemctl start ibnbd-client to /dev/ibnbd/fs usable: $(( $(now_ms) - t0 )) ms"
dev_active() { [ "$(systemctl show -p ActiveState --value dev-ibnbd-fs.device)" = active ]; }
check "... and systemd knows the device by that name (udev's link)" wait_for 10 dev_active

# Metrics from inside the sandbox, and a reload.
scrape_has() { curl -sf --max-time 5 "http://127.0.0.1:$1/metrics" | grep -q "$2"; }
check "the server's metrics are served under systemd" \
	scrape_has 9642 '^ibnbd_server_export_size_bytes{export="fs"} 268435456$'
check "the client's metrics are served under systemd" \
	scrape_has 9643 '^ibnbd_client_device_state{device="/dev/ublkb[0-9]*",name="fs",state="live"} 1$'
check "systemctl reload ibnbd-server re-reads the hosts file" sh -c "
	systemctl reload ibnbd-server.service && sleep 1 &&
	journalctl -b -u ibnbd-server.service --no-pager -o cat | grep -q 'SIGHUP: 1 host(s) in /etc/ibnbd/hosts'"
check "ibnbd-server list-exports asks the unit's server (its control socket in /run/ibnbd)" \
	sh -c "'$SBIN/ibnbd-server' list-exports | grep -Eq '^fs +'"
check "systemctl reload ibnbd-client re-reads client.conf (ibnbd-client reload, sandboxed)" \
	sh -c "systemctl reload ibnbd-client.service &&
	journalctl -b -u ibnbd-client.service --no-pager -o cat | grep -q 'reload: 0 map(s) added, 0 removed, 0 changed'"

# The sandbox, as the kernel sees the processes.
spid=$(systemctl show -p MainPID --value ibnbd-server.service)
cpid=$(systemctl show -p MainPID --value ibnbd-client.service)
status_of() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status"; }
[ "$(status_of "$spid" NoNewPrivs)" = 1 ] && [ "$(status_of "$cpid" NoNewPrivs)" = 1 ]
result $? "both daemons run with no new privileges"
[ "$(status_of "$spid" CapBnd)" = 0000000000000000 ]
result $? "the server has no capability at all (bounding set $(status_of "$spid" CapBnd))"
[ "$(status_of "$cpid" CapBnd)" = 0000000000200000 ]
result $? "the client has CAP_SYS_ADMIN only, for ublk (bounding set $(status_of "$cpid" CapBnd))"
in_ns() { nsenter -t "$1" -m -- "${@:2}"; }
! in_ns "$spid" touch /usr/ibnbd-write-test 2> /dev/null
result $? "the server cannot write /usr (ProtectSystem=strict)"
! in_ns "$cpid" touch /etc/ibnbd-write-test 2> /dev/null
result $? "the client cannot write /etc"
in_ns "$cpid" test -w "$confdir/client.conf"
result $? "... but may edit its client.conf ($confdir), for map --persist"
in_ns "$spid" test -w /srv/ibnbd/file.img
result $? "the server may write exports under /srv"
! in_ns "$spid" test -e "$WORK/loop.img"
result $? "the server has a private /tmp"
touch /root/ibnbd-home-test
! in_ns "$spid" test -e /root/ibnbd-home-test
result $? "... and sees nothing in /root (ProtectHome)"
rm -f /root/ibnbd-home-test
for u in server client; do
	score=$(systemd-analyze security --no-pager "ibnbd-$u.service" 2>&1 | sed -n 's/.*exposure level for .*: \([0-9.]*\) .*/\1/p')
	awk -v s="${score:-99}" 'BEGIN { exit !(s < 4) }'
	result $? "systemd-analyze security: ibnbd-$u.service exposure ${score:-unknown} (below 4: OK)"
done

blk=$("$SBIN/ibnbd-client" map "$ADDR" blk)
file=$("$SBIN/ibnbd-client" map "$ADDR" file --persist)
check "two exports mapped through the unit's daemon ($blk $file)" test -b "$blk" -a -b "$file"
check "map --persist from inside the sandbox added [map file] to client.conf" \
	grep -q '^\[map file\]' "$confdir/client.conf"
check "... a link for it too" test "$(readlink -f /dev/ibnbd/file)" = "$file"

# An fstab line on the stable name, mounted by systemd.
mnt=/mnt/ibnbd-fs
check "mkfs.ext4 on /dev/ibnbd/fs" mkfs.ext4 -q -F /dev/ibnbd/fs
mkdir -p "$mnt"
echo "/dev/ibnbd/fs $mnt ext4 _netdev,nofail 0 0" >> /etc/fstab
on_exit sed -i "\\|^/dev/ibnbd/fs |d" /etc/fstab
systemctl daemon-reload
mount_unit=$(systemd-escape -p --suffix=mount "$mnt")
check "systemctl start $mount_unit (from the fstab line)" timeout 60 systemctl start "$mount_unit"
check "... it is mounted from the ibnbd device" \
	test "$(findmnt -n -o SOURCE "$mnt")" = "$(readlink -f /dev/ibnbd/fs)"
check "... after ibnbd-client.service (_netdev)" \
	sh -c "systemctl show -p After --value '$mount_unit' | grep -q remote-fs-pre.target"
# 2 jobs, one per CPU (so one per ublk queue), paced to last ~25 s.
fio_pids=()
for d in "$blk" "$file"; do
	fio_verify "$d" --ioengine=io_uring --numjobs=2 --cpus_allowed=0-1 \
		--cpus_allowed_policy=split --size=24M --offset_increment=64M --bs=4k-64k \
		--iodepth=8 --rate=1m > "$WORK/fio.${d##*/}" 2>&1 &
	fio_pids+=($!)
done
fio --name=fsload --directory="$mnt" --size=16M --numjobs=2 --rw=randwrite --bs=4k \
	--ioengine=io_uring --direct=1 --iodepth=4 --rate=512k --verify=crc32c --do_verify=1 \
	--verify_fatal=1 --minimal > "$WORK/fio.fs" 2>&1 &
fio_pids+=($!)
sleep 4
check "systemctl restart ibnbd-client under verified fio" timeout 60 systemctl restart ibnbd-client.service
check "... the new daemon is active" systemctl is-active ibnbd-client.service
sleep 3
check "systemctl stop ibnbd-server under verified fio" timeout 60 systemctl stop ibnbd-server.service
grep_journal() { journalctl -b -u "$1" --no-pager -o cat | grep -q "$2"; }
wait_for 10 grep_journal ibnbd-server.service "stats (exit)"
result $? "... the server drained and said so in the journal"
sleep 3
check "systemctl start ibnbd-server" timeout 60 systemctl start ibnbd-server.service
wait_for 30 grep_journal ibnbd-client.service ": reconnected after"
result $? "... the client reconnected ($(journalctl -b -u ibnbd-client.service --no-pager -o cat | grep -m1 ": reconnected after"))"
rc=0
for p in "${fio_pids[@]}"; do wait "$p" || rc=1; done
[ $rc = 0 ] && pass "verified fio on both devices, both queues, and on the mounted file system, without an IO error" ||
	{ flunk "verified fio"; tail -n 5 "$WORK"/fio.* | sed 's/^/#   /'; }

check "unmap --persist file" "$SBIN/ibnbd-client" unmap file --persist
check "... client.conf is as the test wrote it" cmp "$confdir/client.conf" "$WORK/client.conf.orig"

# The orderly shutdown, as systemd orders it: a shutdown gives every unit a
# stop job in one transaction, so these stop jobs, in one transaction, with
# remote-fs-pre.target through which the order runs: the file system is
# unmounted first, then ibnbd-client-shutdown.service unmaps the devices,
# then the daemon stops (blk, unmounted, is mapped too).
check "ibnbd-client-shutdown.service starts" systemctl start ibnbd-client-shutdown.service
cursor=$(journalctl -n 0 --show-cursor --no-pager | sed -n 's/^-- cursor: //p')
check "one transaction stops $mount_unit, remote-fs-pre.target, ibnbd-client-shutdown and ibnbd-client" \
	timeout 120 systemctl stop "$mount_unit" remote-fs-pre.target \
	ibnbd-client-shutdown.service ibnbd-client.service
# The order from the journal's monotonic stamps (the service units are
# unloaded once inactive, their state-change times with them): systemd's
# "Unmounted" of the mount before its "Stopping" of the shutdown unit (whose
# stop runs unmap --all), the daemon's last "unmapped" before systemd's
# "Stopping" of the daemon's unit.
order=$(journalctl -o json --after-cursor="$cursor" --no-pager | python3 -c '
import json, sys
mount = sys.argv[1]
ev = [json.loads(l) for l in sys.stdin if l.strip()]
msg = lambda e: e.get("MESSAGE") if isinstance(e.get("MESSAGE"), str) else ""
t = lambda e: int(e["__MONOTONIC_TIMESTAMP"]) // 1000
umount = [t(e) for e in ev if e.get("UNIT") == mount and msg(e).startswith("Unmounted ")]
unmap = [t(e) for e in ev if e.get("_SYSTEMD_UNIT") == "ibnbd-client.service" and msg(e).endswith(": unmapped")]
stopping = lambda u: [t(e) for e in ev if e.get("UNIT") == u and msg(e).startswith("Stopping ")]
unmap_job, stop = stopping("ibnbd-client-shutdown.service"), stopping("ibnbd-client.service")
if umount and unmap and unmap_job and stop:
    print(unmap_job[0] - umount[0], stop[0] - unmap[-1], len(unmap))
else:
    print("missing:", "Unmounted" * (not umount), "unmapped" * (not unmap),
          "Stopping" * (not unmap_job or not stop))
' "$mount_unit")
umount_to_unmap=- unmap_to_stop=- n_unmapped=0
[[ $order == missing* ]] || read -r umount_to_unmap unmap_to_stop n_unmapped <<< "$order"
[ "$umount_to_unmap" -ge 0 ] 2> /dev/null
result $? "the file system is unmounted before unmap --all begins (${umount_to_unmap} ms between; $order)"
[ "$unmap_to_stop" -ge 0 ] 2> /dev/null && [ "$n_unmapped" = 2 ]
result $? "both devices are unmapped before the daemon stops (${unmap_to_stop} ms between)"
check "... and the shutdown unit says so" grep_journal ibnbd-client-shutdown.service "Deactivated successfully"
check "no link is left in /dev/ibnbd" sh -c '[ -z "$(ls -A /dev/ibnbd 2>/dev/null)" ]'
check "systemctl stop ibnbd-server" timeout 60 systemctl stop ibnbd-server.service
states=$(systemctl is-active ibnbd-client.service ibnbd-server.service | sort -u | tr '\n' ' ')
[ "$states" = "inactive " ]; result $? "both units are inactive, not failed ($states)"
journalctl -b -u ibnbd-server.service -u ibnbd-client.service --no-pager -o cat | tail -n 40 > "$WORK/journal.log"
check "no ublk device left" no_ublk_devices
done_testing
