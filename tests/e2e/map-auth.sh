#!/bin/bash
# The client daemon authenticates to servers with its host key: with the
# key the server lists for it, it maps and verified IO flows; without a
# key, with another key, under an id the server does not list, or facing a
# server that runs --no-auth while it has a key, the map fails with a
# sentence saying which; a key file others may read, or a damaged key, and
# the daemon refuses to start, saying why. Per export allow lists: a host
# not listed is refused with a sentence (and logged), one listed ":ro"
# maps read-only only, and an export without a list is open to nobody.
# The server goes on serving.
. "$(dirname "$0")/lib.sh"

truncate -s 64M "$WORK/vol.img"
start_server srv --listen "$ADDR" --export "vol=$WORK/vol.img" || exit 1
start_server open --listen "$ADDR:4430" --no-auth --export "vol=$WORK/vol.img,shared" || exit 1

map_fails() { # map_fails DESCRIPTION TEXT [ADDR]: map vol fails, saying TEXT
	if "$CLIENT" map "${3:-$ADDR}" vol > "$WORK/map.out" 2>&1; then
		flunk "$1 (the map succeeded)"
		"$CLIENT" unmap --all --force > /dev/null 2>&1
	elif grep -q "$2" "$WORK/map.out"; then
		pass "$1: $(head -n 1 "$WORK/map.out")"
	else
		flunk "$1 (no '$2')"; sed 's/^/#   /' "$WORK/map.out"
	fi
}
stop_daemon() {
	local p
	p=$(cat /run/ibnbd/client.lock 2>/dev/null)
	"$CLIENT" unmap --all > /dev/null 2>&1
	[ -n "$p" ] && kill -TERM "$p" 2>/dev/null
	for _ in $(seq 100); do [ -n "$p" ] && kill -0 "$p" 2>/dev/null || return 0; sleep 0.1; done
	return 1
}
daemon_refused() { # daemon_refused DESCRIPTION TEXT DAEMON-ARGS...
	if timeout 20 "$CLIENT" daemon --foreground "${@:3}" > "$WORK/d.out" 2>&1; then
		flunk "$1 (the daemon ran)"
	elif grep -q "$2" "$WORK/d.out"; then
		pass "$1: $(grep -m1 "$2" "$WORK/d.out")"
	else
		flunk "$1 (no '$2')"; sed 's/^/#   /' "$WORK/d.out"
	fi
}

check "the daemon starts with this host's key" start_daemon
grep -q "authenticating with its key" "$WORK/daemon.log"; result $? "... and says it has one"
dev=$("$CLIENT" map "$ADDR" vol)
check "with the key the server lists: map ($dev)" test -b "$dev"
check "verified writes and reads" fio_verify "$dev" --ioengine=io_uring --size=16M --bs=64k \
	--iodepth=8
map_fails "a server running --no-auth is refused by a host with a key" \
	"did not authenticate itself" "$ADDR:4430"
check "unmap" "$CLIENT" unmap "$dev"
check "the daemon stops" stop_daemon

(umask 077 && "$CLIENT" gen-key > "$WORK/other.key")
check "a daemon with another key starts" start_daemon --key-file "$WORK/other.key"
map_fails "another key: the server cannot prove it holds it" "could not prove it holds this host's key"
check "the daemon stops" stop_daemon

check "a daemon under an id the server does not list starts" start_daemon --host-id not-listed
map_fails "an unlisted host id: refused" "refused host 'not-listed': it is not in the server's hosts file"
grep -q "host 'not-listed' refused: not in the hosts file" "$WORK/srv.log"
result $? "... and the server's log names the host and why"
check "the daemon stops" stop_daemon

# No key at all (none at the default path in the guest either).
[ ! -e /etc/ibnbd/client.key ]; result $? "no /etc/ibnbd/client.key here"
check "a daemon without a key starts" "$CLIENT" daemon
map_fails "without a key: the map says a key is needed" "this one has no key: give the daemon --key-file"
dev=$("$CLIENT" map "$ADDR:4430" vol)
check "... while a --no-auth server takes it ($dev)" test -b "$dev"
check "the daemon stops" stop_daemon

cp "$WORK/client.key" "$WORK/open.key"; chmod 644 "$WORK/open.key"
daemon_refused "a key file others may read: the daemon refuses to start" "chmod 600" \
	--key-file "$WORK/open.key"
# One base64 character changed (each carries 6 bits of the key).
(umask 077 && python3 -c 'import sys; k = open(sys.argv[1]).read(); c = "B" if k[12] == "A" else "A"
sys.stdout.write(k[:12] + c + k[13:])' "$WORK/client.key" > "$WORK/bad.key")
cmp -s "$WORK/bad.key" "$WORK/client.key"; [ $? = 1 ]; result $? "a damaged copy of the key"
daemon_refused "a damaged key: the daemon refuses to start" "checksum" --key-file "$WORK/bad.key"
daemon_refused "a missing key file: the daemon refuses to start" "nosuch.key" \
	--key-file "$WORK/nosuch.key"

check "the server still serves this host" start_daemon
dev=$("$CLIENT" map "$ADDR" vol)
check "map again ($dev)" test -b "$dev"

# ---- allow lists ----
me=$("$CLIENT" host-id)
truncate -s 16M "$WORK/mine.img" "$WORK/theirs.img" "$WORK/ro.img" "$WORK/none.img"
cat > "$WORK/acl.conf" <<EOC
listen = $ADDR:4431
[export mine]
path = $WORK/mine.img
allow = someone-else $me
[export theirs]
path = $WORK/theirs.img
allow = someone-else
[export rohost]
path = $WORK/ro.img
allow = $me:ro
[export none]
path = $WORK/none.img
EOC
start_server acl --config "$WORK/acl.conf" || exit 1
grep -q "export 'none' has no allow list: no host may open it" "$WORK/acl.log"
result $? "the server warns at start of an export nobody may open"
dev=$("$CLIENT" map "$ADDR:4431" mine)
check "an export that lists this host: map ($dev)" test -b "$dev"
check "verified IO on it" fio_verify "$dev" --ioengine=io_uring --size=8M --bs=64k --iodepth=4
map_export_fails() { # map_export_fails DESCRIPTION TEXT EXPORT [MAP-ARGS...]
	if "$CLIENT" map "$ADDR:4431" "${@:3}" > "$WORK/map.out" 2>&1; then
		flunk "$1 (the map succeeded)"
	elif grep -q "$2" "$WORK/map.out"; then
		pass "$1: $(head -n 1 "$WORK/map.out")"
	else
		flunk "$1 (no '$2')"; sed 's/^/#   /' "$WORK/map.out"
	fi
}
map_export_fails "an export that lists other hosts only: refused" 	"host $me is not allowed to open export 'theirs'" theirs
grep -q "host '$me' is not allowed to open export 'theirs'" "$WORK/acl.log"
result $? "... and the server's log names the host and the export"
map_export_fails "an export without an allow list: refused" "not allowed to open export 'none'" none
map_export_fails "an export this host may only read: --rw refused" "read-only" rohost --rw
dev=$("$CLIENT" map "$ADDR:4431" rohost --ro)
check "... and read-only it maps ($dev)" test -b "$dev"
fails_start() { # fails_start DESCRIPTION TEXT SERVER-ARGS...
	if timeout 20 "$SERVER_BIN" "${@:3}" > "$WORK/s.out" 2>&1; then
		flunk "$1 (it ran)"
	elif grep -q "$2" "$WORK/s.out"; then
		pass "$1: $(grep -m1 "$2" "$WORK/s.out")"
	else
		flunk "$1 (no '$2')"; sed 's/^/#   /' "$WORK/s.out"
	fi
}
fails_start "--no-auth with an allow list by host id: refused at start" "host ids are unproven" \
	--no-auth --listen "$ADDR:4432" --export "x=$WORK/none.img,allow=$me"

# ---- block devices are opened exclusively ----
loopdev=$(losetup --show -f "$WORK/none.img")
check "mkfs and mount a loop device" sh -c "mkfs.ext4 -q -F $loopdev && mkdir -p $WORK/mnt && mount $loopdev $WORK/mnt"
fails_start "a mounted block device is not exported" "in use: mounted" \
	--no-auth --listen "$ADDR:4432" --export "x=$loopdev"
umount "$WORK/mnt"
losetup -d "$loopdev"
done_testing
