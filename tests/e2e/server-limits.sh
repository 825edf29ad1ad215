#!/bin/bash
# The server's limits (docs/server-config.md, "Limits") under attack. A
# legitimate host maps two devices on one session and runs crc32c-verified
# fio on both, round after round, while: hundreds of connections arrive
# that never say HELLO; a host opens and closes connections in a loop; a
# host holds as many connections as it can get (refused past
# max_connections_per_host); a host opens sessions (refused past
# max_sessions_per_host); a host asks for slots beyond the server's
# memory budget (refused past max_slot_memory). Each refusal names its
# limit; the legitimate host's IO never fails, it maps a device in the
# middle of it, and the server's memory grows by no more than the budget.
# Then: a map past max_opens_per_session, and a map to a server whose
# max_connections it would pass, fail with sentences naming the limit; a
# flood from one address holds no more than max_handshakes_per_address,
# so a host at another address maps meanwhile; and once the attackers are
# gone the server counts only the legitimate host.
. "$(dirname "$0")/lib.sh"
PROBE=$BUILD/tests/e2e/server/ibnbd-probe
budget_mib=96 handshakes=220

for h in hostL hostM hostS hostC; do
	(umask 077 && "$CLIENT" gen-key > "$WORK/$h.key" &&
		echo "$h $(cat "$WORK/$h.key")" >> "$WORK/hosts") || { flunk "key for $h"; exit 1; }
done
cat > "$WORK/limits.conf" <<EOF
max_connections_per_host = 20
max_sessions_per_host = 4
max_opens_per_session = 3
max_slot_memory = ${budget_mib}M
max_handshakes = $handshakes
# Every host of this test is at the guest's one address (the part at the
# end checks the cap per address, with a second one).
max_handshakes_per_address = $handshakes
EOF
truncate -s 64M "$WORK/a.img" "$WORK/b.img" "$WORK/c.img" "$WORK/d.img"
start_server srv --config "$WORK/limits.conf" --listen "$ADDR" --export "a=$WORK/a.img" \
	--export "b=$WORK/b.img" --export "c=$WORK/c.img" --export "d=$WORK/d.img" || exit 1
grep -q "limits: 1024 connections, 20 per host, 4 sessions per host, 3 exports open per session, $budget_mib MiB" \
	"$WORK/srv.log"
result $? "the server logs its limits at start ($(grep -m1 -o 'limits: .*' "$WORK/srv.log"))"
rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$srv_pid/status"; }
start_rss=$(rss_kib)
check "daemon starts" start_daemon
a=$("$CLIENT" map "$ADDR" a)
check "the legitimate host maps a ($a)" test -b "$a"

stats() { # stats: the server's counters now (SIGUSR1)
	local n
	n=$(grep -c "stats (SIGUSR1)" "$WORK/srv.log")
	kill -USR1 "$srv_pid"
	for _ in $(seq 100); do
		[ "$(grep -c "stats (SIGUSR1)" "$WORK/srv.log")" -gt "$n" ] && break; sleep 0.1
	done
	grep "stats (SIGUSR1)" "$WORK/srv.log" | tail -n 1
}
field() { sed -n "s/.* $1=\([0-9]*\).*/\1/p" <<< "$2"; }
# until_line FILE PATTERN: waits (up to 60 s) until a line of FILE matches.
until_line() { for _ in $(seq 600); do grep -q "$2" "$1" && return 0; sleep 0.1; done; return 1; }
base=$(stats)
base_rss=$(rss_kib)
base_slots=$(field slot_memory_bytes "$base")
echo "# before the attack: server RSS $((base_rss / 1024)) MiB, $(field connections_now "$base") connections, $((base_slots >> 20)) MiB of slots"

# What a connection that never says HELLO costs the server, asking for the
# largest queue depth it allows (128): measured, and bounded by
# max_handshakes of them (docs/server-config.md, "Limits").
"$PROBE" --no-hello --queue-depth 128 "$ADDR" a connections 100 3 > "$WORK/cost.out" 2>&1 &
cost=$!
until_line "$WORK/cost.out" '^connections:'
cost_rss=$(rss_kib)
wait "$cost"
served=$(sed -n 's/.* served \([0-9]*\).*/\1/p' "$WORK/cost.out")
per_conn=$(( (cost_rss - base_rss) / ${served:-1} ))
echo "# $served connections before HELLO: server RSS +$(((cost_rss - base_rss) / 1024)) MiB, $per_conn KiB each"
[ "${served:-0}" -gt 50 ] && [ "$per_conn" -le 512 ]
result $? "a connection before HELLO holds at most 512 KiB of the server's memory ($per_conn KiB)"
sleep 11 # they are dropped within 10 s

# The legitimate host's IO: verified rounds on every mapped device until
# told to stop; any failed round fails it.
touch "$WORK/go"
fio_rounds() { # fio_rounds DEVICE NAME
	local n=0
	while [ -e "$WORK/go" ]; do
		fio_verify "$1" --ioengine=io_uring --size=16M --bsrange=4k-128k --iodepth=8 \
			> "$WORK/fio-$2.out" 2>&1 || { echo "round $n failed"; cat "$WORK/fio-$2.out"; return 1; }
		n=$((n + 1))
	done
	echo "$n verified rounds"
}
fio_rounds "$a" a > "$WORK/rounds-a" 2>&1 &
fio_a=$!
peak=$base_rss
( while [ -e "$WORK/go" ]; do rss_kib; sleep 0.5; done ) > "$WORK/rss" &
sampler=$!

# Hundreds of connections that never authenticate, two floods at once,
# each 3 waves of 100 (together below max_handshakes, whose refusals
# server-auth tests: the hosts below must be able to connect meanwhile).
flood=()
for f in 1 2; do
	( for _ in 1 2 3; do "$PROBE" --no-hello --queue-depth 128 "$ADDR" a connections 100 7; done ) \
		> "$WORK/flood$f.out" 2>&1 &
	flood+=($!)
done
# A host connecting, authenticating and leaving, over and over.
( n=0; while [ -e "$WORK/go" ]; do
	"$PROBE" --host-id hostC --key-file "$WORK/hostC.key" "$ADDR" a connections 2 0 \
		> "$WORK/churn.last" 2>&1 || { cat "$WORK/churn.last"; exit 1; }
	n=$((n + 1))
  done; echo "$n rounds of 2 connections" ) > "$WORK/churn.out" 2>&1 &
churn=$!

# connections_refused NAME OUTPUT LIMIT: some were served, some refused by LIMIT.
limited() {
	local line served refused
	line=$(grep '^connections:' "$2")
	served=$(sed -n 's/.* served \([0-9]*\).*/\1/p' <<< "$line")
	refused=$(sed -n "s/.* refused-$3 \([0-9]*\).*/\1/p" <<< "$line")
	if [ "${served:-0}" -gt 0 ] && [ "${refused:-0}" -gt 0 ]; then
		pass "$1 (${line#connections: })"
	else
		flunk "$1 (${line:-no summary})"; sed 's/^/#   /' "$2" | tail -n 5
	fi
}
"$PROBE" --host-id hostS --key-file "$WORK/hostS.key" "$ADDR" a connections 6 2 \
	> "$WORK/hostS.out" 2>&1
limited "a host opening 6 sessions is refused past max_sessions_per_host" "$WORK/hostS.out" \
	max_sessions_per_host
grep -q "served 4 " "$WORK/hostS.out"; result $? "... exactly 4 of them served"
"$PROBE" --host-id hostL --key-file "$WORK/hostL.key" --session 11111111-2222-3333-4444-555555555555 \
	"$ADDR" a connections 30 40 > "$WORK/hostL.out" 2>&1 &
hostL=$!
sleep 12
b=$("$CLIENT" map "$ADDR" b)
check "the legitimate host maps b in the middle of it ($b)" test -b "$b"
fio_rounds "$b" b > "$WORK/rounds-b" 2>&1 &
fio_b=$!
"$PROBE" --host-id hostM --key-file "$WORK/hostM.key" --session 66666666-7777-8888-9999-000000000000 \
	"$ADDR" a connections 40 6 > "$WORK/hostM.out" 2>&1 &
hostM=$!
until_line "$WORK/hostM.out" '^connections:'
during=$(stats)
echo "# while hosts L and M hold theirs: $(field connections_now "$during") connections, $(($(field slot_memory_bytes "$during") >> 20)) MiB of slots"
[ "$(field slot_memory_bytes "$during")" -le $((budget_mib << 20)) ] &&
	[ "$(field connections_now "$during")" -ge 22 ]
result $? "the slot memory counted stays within max_slot_memory, hosts L and M holding theirs"
wait "$hostM"
limited "a host asking for slots past the memory budget is refused past max_slot_memory" \
	"$WORK/hostM.out" max_slot_memory
grep -q "dropped by the server 0" "$WORK/hostM.out"; result $? "... and keeps those it got"
wait "$hostL"
limited "a host holding 30 connections is refused past max_connections_per_host" \
	"$WORK/hostL.out" max_connections_per_host
grep -q "served 20 " "$WORK/hostL.out" && grep -q "dropped by the server 0" "$WORK/hostL.out"
result $? "... exactly 20 of them served, and kept while it keeps them alive"
for p in "${flood[@]}"; do wait "$p"; done
attempts=0 dropped=0
for f in "$WORK"/flood*.out; do
	while read -r line; do
		attempts=$((attempts + $(sed -n 's/.* asked \([0-9]*\).*/\1/p' <<< "$line")))
		echo "# flood: ${line#connections: }"
	done < <(grep '^connections:' "$f")
	while read -r line; do
		dropped=$((dropped + ${line##* }))
	done < <(grep '^held:' "$f")
done
[ "$attempts" = 600 ] && [ "$dropped" -gt 0 ]
result $? "600 connection attempts that never authenticate ($dropped accepted then dropped by the handshake timeout)"
rm -f "$WORK/go"
wait "$churn"; result $? "the looping host's connections were all served or refused cleanly ($(tail -n 1 "$WORK/churn.out"))"
wait "$fio_a"; result $? "verified fio on a never failed ($(tail -n 1 "$WORK/rounds-a"))"
wait "$fio_b"; result $? "verified fio on b never failed ($(tail -n 1 "$WORK/rounds-b"))"
wait "$sampler"
peak=$(sort -n "$WORK/rss" | tail -n 1)
# The budget, from the server's start: max_slot_memory, and
# max_handshakes connections before HELLO at 512 KiB.
allow=$(( (budget_mib << 10) + handshakes * 512 ))
echo "# server RSS: $((start_rss / 1024)) MiB at start, $((base_rss / 1024)) MiB before the attack, $((peak / 1024)) MiB at most during it"
[ $((peak - start_rss)) -le "$allow" ]
result $? "the server's memory grew by at most the budget ($(((peak - start_rss) / 1024)) of $((allow / 1024)) MiB since its start)"

c=$("$CLIENT" map "$ADDR" c)
check "a third export on the session ($c)" test -b "$c"
if "$CLIENT" map "$ADDR" d > "$WORK/map.out" 2>&1; then
	flunk "a fourth export, past max_opens_per_session 3, is refused (it mapped)"
else
	grep -q "max_opens_per_session" "$WORK/map.out"
	result $? "a fourth export, past max_opens_per_session 3, is refused: $(head -n 1 "$WORK/map.out")"
fi
echo "max_connections = 1" > "$WORK/tight.conf"
start_server tight --listen "$ADDR:4431" --export "a=$WORK/d.img" --config "$WORK/tight.conf" || exit 1
if "$CLIENT" map "$ADDR:4431" a > "$WORK/map.out" 2>&1; then
	flunk "a session past another server's max_connections 1 is refused (it mapped)"
else
	grep -q "refused host '.*': the server's max_connections is reached" "$WORK/map.out"
	result $? "a session past another server's max_connections 1 is refused: $(head -n 1 "$WORK/map.out")"
fi
grep -q "refused: the server has 1 connections (max_connections 1)" "$WORK/tight.log"
result $? "... and that server's log says why"

# A flood from one address takes max_handshakes_per_address (8) of
# max_handshakes (24): the daemon maps over the guest's other address
# while the flood's connections are held (the server drops them 5 to 10 s
# after they came), and a host at the flooding address is refused.
ADDR2=${IBNBD_VM_ADDR2:?the guest has a second NIC (tests/vm/run)}
printf 'max_handshakes = 24\nmax_handshakes_per_address = 8\n' > "$WORK/pa.conf"
truncate -s 64M "$WORK/e.img"
start_server pa --config "$WORK/pa.conf" --listen "$ADDR:4433" --listen "$ADDR2:4433" \
	--export "e=$WORK/e.img" || exit 1
"$PROBE" --no-hello --queue-depth 16 "$ADDR:4433" e connections 40 8 > "$WORK/flood-pa.out" 2>&1 &
pa_flood=$!
until_line "$WORK/flood-pa.out" '^connections:'
grep -q "asked 40 served 8 .* busy 32 " "$WORK/flood-pa.out"
result $? "a flood of 40 from $ADDR: 8 in their handshake, 32 refused ($(grep -m1 '^connections:' "$WORK/flood-pa.out"))"
"$PROBE" --host-id hostC --key-file "$WORK/hostC.key" "$ADDR:4433" e connections 1 0 \
	> "$WORK/pa-same.out" 2>&1
grep -q "served 0 .* busy 1 " "$WORK/pa-same.out"
result $? "... a host at the same address is refused meanwhile ($(grep -m1 '^connections:' "$WORK/pa-same.out"))"
e=$("$CLIENT" map "$ADDR2:4433" e 2> "$WORK/map-e.err")
check "... a host at $ADDR2 maps meanwhile ($e $(head -n 1 "$WORK/map-e.err"))" test -b "$e"
kill -0 "$pa_flood" 2> /dev/null
result $? "... while the flood still held its connections"
grep -q "refused: 8 connections from its address are in their handshake already (max_handshakes_per_address)" \
	"$WORK/pa.log"
result $? "... and the server's log names the limit"
check "verified IO on it" fio_verify "$e" --ioengine=io_uring --size=8M --bs=64k --iodepth=4
wait "$pa_flood"
check "unmap $e" "$CLIENT" unmap "$e"

sleep 11 # the last unauthenticated connections are dropped within 10 s
after=$(stats)
echo "# after: $after"
[ "$(field connections_now "$after")" = "$(field connections_now "$base")" ]
result $? "once the attackers are gone the server counts the legitimate host's connections only ($(field connections_now "$after"))"
[ "$(field limits_refused "$after")" -gt 0 ]; result $? "refusals are counted (limits_refused $(field limits_refused "$after"))"
for d in "$a" "$b" "$c"; do check "unmap $d" "$CLIENT" unmap "$d"; done
stop_all
check "no ublk device left" no_ublk_devices
done_testing
