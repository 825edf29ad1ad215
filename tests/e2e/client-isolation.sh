#!/bin/bash
# The client's RDMA memory is isolated per server: each session has its
# own protection domain, so a server can reach (with the rkeys it is
# given for READ data) only the buffers of the devices it serves, never
# those of another server's devices. The adapter enforces it: an rkey is
# valid only on a QP of its MR's protection domain. Read from the RDMA
# core's resource tracking (`rdma -j res show cm_id|qp|mr`): two servers,
# a device of each and then a second device on the first, with verified
# IO on all; the client's QPs to each server on one PD of their own, every
# client buffer on the PD of the server whose device it belongs to.
. "$(dirname "$0")/lib.sh"
truncate -s 64M "$WORK/a.img" "$WORK/b.img" "$WORK/c.img"
start_server s1 --listen "$ADDR" --export "a=$WORK/a.img" --export "c=$WORK/c.img" || exit 1
start_server s2 --listen "$ADDR:4433" --export "b=$WORK/b.img" || exit 1
check "daemon starts" start_daemon
a=$("$CLIENT" map "$ADDR" a)
b=$("$CLIENT" map "$ADDR:4433" b)
check "a device of each server ($a $b)" test -b "$a" -a -b "$b"

# pds: for each server port, the PDs of the client's QPs to it, and the
# sizes of the client MRs on those PDs (the servers' resources carry their
# comm, ibnbd-server or a worker's ibnbd-srv-wN; the daemon's were made by
# threads that are gone, so carry none).
pds() {
	rdma -j res show cm_id > "$WORK/cm.json" && rdma -j res show qp > "$WORK/qp.json" &&
		rdma -j res show mr > "$WORK/mr.json" || return 1
	python3 - "$WORK" <<'PY'
import json, sys
w = sys.argv[1]
load = lambda n: json.load(open(f"{w}/{n}.json"))
mine = lambda e: (e.get("comm") != "ibnbd-server" and not e.get("comm", "").startswith("ibnbd-srv-")
                  and not e.get("comm", "").startswith("["))
qp_pd = {(q["ifname"], q["lqpn"]): q["pdn"] for q in load("qp") if mine(q) and "pdn" in q}
by_port = {}
for c in load("cm"):
    if mine(c) and "lqpn" in c:
        port = c["dst-addr"].rsplit(":", 1)[1]
        by_port.setdefault(port, set()).add(qp_pd[(c["ifname"].split("/")[0], c["lqpn"])])
mrs = [m for m in load("mr") if mine(m)]
for port, p in sorted(by_port.items()):
    sizes = sorted(m["mrlen"] for m in mrs if m["pdn"] in p)
    print(port, ",".join(map(str, sorted(p))), " ".join(map(str, sizes)))
used = set().union(*by_port.values()) if by_port else set()
print("stray", len([m for m in mrs if m["pdn"] not in used]))
PY
}
# buffers OUT PORT: the client MRs of at least 1 MiB (tag buffers) on PORT's PD
buffers() { awk -v p="$2" '$1 == p { n = 0; for (i = 3; i <= NF; i++) if ($i >= 1048576) n++; print n }' "$1"; }
pdof() { awk -v p="$2" '$1 == p { print $2 }' "$1"; }

check "resource tracking readable" pds
pds > "$WORK/pds1"
sed 's/^/# /' "$WORK/pds1"
q=$(nproc)
[ -n "$(pdof "$WORK/pds1" 4422)" ] && [ -n "$(pdof "$WORK/pds1" 4433)" ] &&
	[[ "$(pdof "$WORK/pds1" 4422)" != *,* ]] && [[ "$(pdof "$WORK/pds1" 4433)" != *,* ]] &&
	[ "$(pdof "$WORK/pds1" 4422)" != "$(pdof "$WORK/pds1" 4433)" ]
result $? "the client's QPs to each server are on one PD of their own ($(pdof "$WORK/pds1" 4422) and $(pdof "$WORK/pds1" 4433))"
[ "$(buffers "$WORK/pds1" 4422)" = "$q" ] && [ "$(buffers "$WORK/pds1" 4433)" = "$q" ]
result $? "each device's $q queue buffers are on its server's PD only ($(buffers "$WORK/pds1" 4422) and $(buffers "$WORK/pds1" 4433))"
grep -q '^stray 0$' "$WORK/pds1"
result $? "no client memory region is on any other PD"

c=$("$CLIENT" map "$ADDR" c)
check "a second device of the first server ($c)" test -b "$c"
pds > "$WORK/pds2"
sed 's/^/# /' "$WORK/pds2"
[ "$(pdof "$WORK/pds2" 4422)" = "$(pdof "$WORK/pds1" 4422)" ] &&
	[ "$(buffers "$WORK/pds2" 4422)" = $((2 * q)) ] && [ "$(buffers "$WORK/pds2" 4433)" = "$q" ] &&
	grep -q '^stray 0$' "$WORK/pds2"
result $? "its buffers join the first server's PD, none the second's ($(buffers "$WORK/pds2" 4422) and $(buffers "$WORK/pds2" 4433))"

pids=()
for d in "$a" "$b" "$c"; do
	fio_verify "$d" --ioengine=io_uring --numjobs="$q" --cpus_allowed=0-$((q - 1)) \
		--cpus_allowed_policy=split --size=8M --offset_increment=16M --bsrange=4k-128k \
		--iodepth=8 > "$WORK/fio.${d##*/}" 2>&1 &
	pids+=($!)
done
for p in "${pids[@]}"; do check "verified IO on every queue of a device" wait "$p"; done
for d in "$a" "$b" "$c"; do check "unmap $d" "$CLIENT" unmap "$d"; done
stop_all
check "no ublk device left" no_ublk_devices
done_testing
