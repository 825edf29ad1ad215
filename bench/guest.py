#!/usr/bin/env python3
"""The guest side of bench/run: sets up a backing, serves it through ibnbd,
kernel NVMe-oF over RDMA and kernel NBD over TCP, runs fio on all of them and
on the backing itself, interleaved, and records every run in results.json.
Then bench/report.py writes summary.md and chart.png. See docs/benchmarks.md.

Any failure to set up or measure a system ends the run with an error; the
set-up done so far is taken down in reverse order either way."""
import argparse
import contextlib
import datetime
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time

BUILD = os.environ.get("IBNBD_BUILD_DIR", "build")
ADDR = os.environ.get("IBNBD_VM_ADDR", "")
NQN = "nqn.2014-08.org.ibnbd:bench"
NVMET = "/sys/kernel/config/nvmet"
NULLB = "/sys/kernel/config/nullb"
NULLB_NAME = "ibnbdbench"
NVME_PORT = 4420
NBD_PORT = 10809
BLOCK = 4096  # null_blk block size and the NBD device's block size
IBNBD_PORT = 4422
SYSTEMS = ["local", "ibnbd", "nvmeof", "nbd"]
BASELINE = "ibnbd-base"  # ibnbd built from --baseline REV, when asked for
NOAUTH = "ibnbd-noauth"  # this build with --no-auth, for --auth-compare
MAXIO = "ibnbd-maxio"    # this build's daemon with --max-io-size, for --max-io-compare
POLL = "ibnbd-poll"      # this build, both daemons --poll-idle-us, for --poll-compare
NVME_POLL = "nvmeof-poll"  # the NVMe-oF device through its poll queues (fio --hipri)
CLK_TCK = os.sysconf("SC_CLK_TCK")
WORK = "/tmp/ibnbd-bench"
# The multi-device point: MULTI_DEVS devices of one server, one job each
# (4k random reads at QD16), their IOPS summed: ibnbd maps them in one
# session, NVMe-oF serves them as namespaces of one subsystem (one
# controller); local runs on the backings themselves. Only these three.
MULTI = "4k-randread-qd16-4dev"
MULTI_DEVS = 4


class BenchError(Exception):
    pass


def log(msg):
    print(f"bench: {msg}", file=sys.stderr, flush=True)


def run(cmd, timeout=120):
    """Runs cmd; returns its stdout; raises with its output when it fails."""
    try:
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise BenchError(f"'{shlex.join(cmd)}' did not finish in {timeout} s")
    except OSError as e:
        raise BenchError(f"cannot run '{cmd[0]}': {e.strerror}")
    if p.returncode != 0:
        raise BenchError(f"'{shlex.join(cmd)}' failed (exit {p.returncode}):\n"
                         f"{(p.stdout + p.stderr).strip()}")
    return p.stdout


def write(path, value):
    try:
        with open(path, "w") as f:
            f.write(str(value))
    except OSError as e:
        raise BenchError(f"cannot write '{value}' to {path}: {e.strerror}")


def read(path):
    with open(path) as f:
        return f.read()


def wait_for(what, pred, timeout=10.0, proc=None, logfile=None):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return
        if proc is not None and proc.poll() is not None:
            break
        time.sleep(0.1)
    tail = ""
    if logfile and os.path.exists(logfile):
        tail = "\n" + "".join(open(logfile).readlines()[-20:])
    state = f" (it exited with {proc.returncode})" if proc is not None and proc.poll() is not None else ""
    raise BenchError(f"timed out waiting for {what}{state}{tail}")


def proc_sched(pid):
    """(CPU seconds, times scheduled in) of a process, summed over its
    threads from /proc/PID/task/*/schedstat (nanosecond run time, not the
    10 ms ticks of /proc/PID/stat). Scheduled-in counts are wakeups, give
    or take preemptions."""
    cpu, runs = 0, 0
    for t in os.listdir(f"/proc/{pid}/task"):
        try:
            f = read(f"/proc/{pid}/task/{t}/schedstat").split()
        except OSError:
            continue  # the thread exited meanwhile
        cpu += int(f[0])
        runs += int(f[2])
    return cpu / 1e9, runs


def proc_rss_kib(pid):
    m = re.search(r"^VmRSS:\s+(\d+) kB", read(f"/proc/{pid}/status"), re.M)
    return int(m.group(1))


def guest_cpu():
    """(busy, total) seconds of all CPUs from /proc/stat."""
    v = [int(x) for x in read("/proc/stat").splitlines()[0].split()[1:9]]
    idle = v[3] + v[4]
    return (sum(v) - idle) / CLK_TCK, sum(v) / CLK_TCK


def disk_stat(dev):
    return read(f"/sys/block/{os.path.basename(os.path.realpath(dev))}/stat").split()


def disk_sectors(dev):
    """Sectors read + written by a block device (or the sum over a list of
    them), or None for a file."""
    if dev is None:
        return None
    return sum(int(f[2]) + int(f[6]) for f in map(disk_stat, devices(dev)))


def disk_ios(dev):
    """Requests a block device (or a list of them) completed, reads + writes."""
    return sum(int(f[0]) + int(f[4]) for f in map(disk_stat, devices(dev)))


def devices(dev):
    """A point's device: one path, or a list of them (the multi-device point)."""
    return [dev] if isinstance(dev, str) else list(dev)


def fio_targets(name, dev):
    """fio's job options for a point on dev: one job, or one job per device
    of a list, reported as one group (global options go before these)."""
    if isinstance(dev, str):
        return [f"--name={name}", f"--filename={dev}"]
    out = ["--group_reporting"]
    for i, d in enumerate(dev):
        out += [f"--name={name}-{i}", f"--filename={d}"]
    return out


# --- system calls per IO ----------------------------------------------------------

TRACEFS = "/sys/kernel/tracing"
SYSCALL_TRIGGER = "hist:keys=common_pid:vals=hitcount:size=8192"


class SyscallCounter:
    """System calls per thread, counted by the kernel: a histogram trigger on
    the raw_syscalls:sys_enter tracepoint keyed by thread id. Armed only for
    the syscall pass (every system call of the guest pays for it), never
    during the measured points."""

    def __init__(self, cleanup):
        if not os.path.isdir(f"{TRACEFS}/events"):
            run(["mount", "-t", "tracefs", "nodev", TRACEFS])
        self.trigger = f"{TRACEFS}/events/raw_syscalls/sys_enter/trigger"
        if not os.path.exists(self.trigger):
            raise BenchError(f"{self.trigger} is missing: no syscall tracepoints in this kernel")
        write(self.trigger, SYSCALL_TRIGGER)
        cleanup.push("remove the syscall histogram", write, self.trigger, "!" + SYSCALL_TRIGGER)

    def counts(self):
        out = {}
        for m in re.finditer(r"common_pid:\s*(\d+)\s*\}\s*hitcount:\s*(\d+)",
                             read(f"{TRACEFS}/events/raw_syscalls/sys_enter/hist")):
            out[int(m.group(1))] = int(m.group(2))
        return out


def threads(pid):
    return [int(t) for t in os.listdir(f"/proc/{pid}/task")]


def syscall_point(opts, dev, args, ib, counter):
    """System calls per IO of each ibnbd daemon over one fio run."""
    cmd = (["fio", "--direct=1", "--ioengine=io_uring", "--time_based",
            f"--runtime={opts.runtime}", "--output-format=terse"] + args
           + fio_targets("syscalls", dev))
    tids = {"client": threads(ib.daemon.pid), "server": threads(ib.server.pid)}
    c0, i0 = counter.counts(), disk_ios(dev)
    run(cmd, timeout=opts.runtime + 120)
    c1, i1 = counter.counts(), disk_ios(dev)
    ios = i1 - i0
    if ios <= 0:
        raise BenchError(f"the syscall pass on {dev} did no IO")
    res = {"ios": ios}
    for who, ts in tids.items():
        res[f"{who}_syscalls_per_io"] = sum(c1.get(t, 0) - c0.get(t, 0) for t in ts) / ios
    return res


def stop(proc, what, timeout=20):
    """SIGTERM and wait; a process that needs SIGKILL or fails is an error."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise BenchError(f"{what} did not exit within {timeout} s of SIGTERM; killed")
    if proc.returncode != 0:
        raise BenchError(f"{what} exited with status {proc.returncode}")


class Cleanup:
    """Undo actions, run in reverse order; every failure is reported."""

    def __init__(self):
        self.actions = []
        self.failed = False

    def push(self, what, fn, *args):
        self.actions.append((what, fn, args))

    def run(self):
        while self.actions:
            what, fn, args = self.actions.pop()
            try:
                fn(*args)
            except Exception as e:  # report, and go on taking the rest down
                self.failed = True
                log(f"clean-up: {what}: {e}")


# --- backings ---------------------------------------------------------------

def setup_backing(kind, size_mib, cleanup, name=NULLB_NAME):
    if kind == "nullb":
        d = f"{NULLB}/{name}"
        if not os.path.isdir(NULLB):
            raise BenchError(f"{NULLB} is missing: null_blk is not loaded or configfs not mounted")
        try:
            os.mkdir(d)
        except OSError as e:
            raise BenchError(f"cannot create {d}: {e.strerror}")
        cleanup.push("remove the null_blk device", remove_nullb, d)
        write(f"{d}/size", size_mib)
        write(f"{d}/blocksize", BLOCK)
        write(f"{d}/memory_backed", 1)
        write(f"{d}/power", 1)
        dev = f"/dev/{name}"
        wait_for(f"{dev} to appear", lambda: os.path.exists(dev))
        path = dev
    else:
        path = f"{WORK}/{name}.img"
        with open(path, "wb") as f:
            f.truncate(size_mib << 20)
        cleanup.push("remove the backing file", os.unlink, path)
    # Reads must read data, not holes: fill it all once.
    run(["fio", "--name=fill", f"--filename={path}", "--rw=write", "--bs=1M",
         f"--size={size_mib}M", "--direct=1", "--ioengine=io_uring", "--iodepth=4",
         "--output-format=terse"], timeout=600)
    return path


def remove_nullb(d):
    if read(f"{d}/power").strip() == "1":
        write(f"{d}/power", 0)
    os.rmdir(d)


# --- ibnbd ------------------------------------------------------------------

class Ibnbd:
    """A server and a client daemon of one ibnbd build, serving the backing.
    A second one (the baseline) listens on its own port and keeps its
    daemon's lock, state and control socket in its own run directory."""

    def __init__(self, name, build, port, backing_path, logdir, cleanup, auth=True,
                 daemon_args=(), server_args=(), more=()):
        """more: further backings, exported as bench1, bench2, ... and
        mapped by the same daemon (one session): self.more_devs."""
        server = os.path.join(build, "src/server/ibnbd-server")
        client = os.path.join(build, "src/client/ibnbd-client")
        self.logdir = logdir
        self.slog = f"{logdir}/{name}-server.log"
        self.clog = f"{logdir}/{name}-client.log"
        env = dict(os.environ)
        if port != IBNBD_PORT:
            rundir = f"/run/{name}"
            env.update(IBNBD_RUNDIR=rundir, IBNBD_CLIENT_SOCKET=f"{rundir}/client.sock")
        # Hosts authenticate, as in production: a key for this host, and a
        # hosts file listing it (the handshake's cost is per connection,
        # none of it per IO; --auth-compare measures that claim against a
        # server with --no-auth and a daemon without a key).
        key = f"{logdir}/{name}-client.key"
        hosts = f"{logdir}/{name}-hosts"
        old = os.umask(0o077)
        try:
            k = subprocess.run([client, "gen-key"], stdout=subprocess.PIPE, text=True,
                               check=True).stdout.strip()
            hid = subprocess.run([client, "host-id"], env=env, stdout=subprocess.PIPE,
                                 text=True, check=True).stdout.strip()
            with open(key, "w") as f:
                f.write(k + "\n")
            with open(hosts, "w") as f:
                f.write(f"{hid} {k}\n")
        finally:
            os.umask(old)
        # A second server of the same backing cannot have it exclusively.
        share = ",shared" if port != IBNBD_PORT else ""
        exports = {"bench": backing_path}
        exports.update({f"bench{i}": p for i, p in enumerate(more, 1)})
        access = ["--hosts-file", hosts] if auth else ["--no-auth"]
        for ex, p in exports.items():
            access += ["--export", f"{ex}={p}{share}" + (f",allow={hid}" if auth else "")]
        self.server = subprocess.Popen(
            [server, "--listen", f"{ADDR}:{port}", *access, *server_args],
            stdout=open(self.slog, "w"), stderr=subprocess.STDOUT)
        cleanup.push(f"stop {name}'s server", stop, self.server, f"{name}'s server")
        wait_for(f"{name}'s server to listen", lambda: "listening" in read(self.slog),
                 proc=self.server, logfile=self.slog)
        time.sleep(0.5)
        self.rss_idle_kib = proc_rss_kib(self.server.pid)
        self.daemon = subprocess.Popen([client, "daemon", "--foreground",
                                        *(["--key-file", key] if auth else []), *daemon_args],
                                       env=env,
                                       stdout=open(self.clog, "w"), stderr=subprocess.STDOUT)
        cleanup.push(f"stop {name}'s client daemon", stop, self.daemon, f"{name}'s client daemon")
        wait_for(f"{name}'s client daemon", lambda: "ready" in read(self.clog),
                 proc=self.daemon, logfile=self.clog)
        ctl = lambda *a: subprocess.run([client, *a], env=env, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, text=True, timeout=60)

        def map_one(ex):
            p = ctl("map", f"{ADDR}:{port}", ex)
            if p.returncode != 0:
                raise BenchError(f"{name}: map {ex} failed: {p.stdout.strip()}")
            dev = p.stdout.strip()

            def unmap():
                q = ctl("unmap", dev)
                if q.returncode != 0:
                    raise BenchError(f"{name}: unmap {dev} failed: {q.stdout.strip()}")
            cleanup.push(f"unmap {dev}", unmap)
            if not os.path.exists(dev):
                raise BenchError(f"ibnbd-client map printed '{dev}', not a device")
            return dev
        self.dev = map_one("bench")
        self.more_devs = [map_one(ex) for ex in list(exports)[1:]]
        time.sleep(1)
        self.rss_mapped_kib = proc_rss_kib(self.server.pid)
        self.connections = self.server_stats()["connections"]
        if self.connections < 1:
            raise BenchError("ibnbd-server counts no connection after a map")

    def server_stats(self):
        before = read(self.slog).count("stats (SIGUSR1)")
        self.server.send_signal(signal.SIGUSR1)
        wait_for("ibnbd-server's counters", lambda: read(self.slog).count("stats (SIGUSR1)") > before,
                 proc=self.server, logfile=self.slog)
        line = [l for l in read(self.slog).splitlines() if "stats (SIGUSR1)" in l][-1]
        return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", line)}

    def cpu(self):
        """((client CPU s, wakeups), (server CPU s, wakeups))"""
        return proc_sched(self.daemon.pid), proc_sched(self.server.pid)


# --- kernel NVMe-oF over RDMA -------------------------------------------------

def setup_nvmeof(backing_path, cleanup, poll_queues=0, more=()):
    """One subsystem: namespace 1 serves backing_path, namespaces 2, 3, ...
    the further backings (one controller, as ibnbd's one session). Returns
    the block device of each namespace, in order."""
    subsys = f"{NVMET}/subsystems/{NQN}"
    port = f"{NVMET}/ports/1"
    if not os.path.isdir(NVMET):
        raise BenchError(f"{NVMET} is missing: nvmet is not loaded")
    for d in (subsys, port):
        if os.path.exists(d):
            raise BenchError(f"{d} already exists: another NVMe-oF target is set up")
    os.mkdir(subsys)
    cleanup.push("remove the nvmet subsystem", os.rmdir, subsys)
    write(f"{subsys}/attr_allow_any_host", 1)
    paths = [backing_path, *more]
    for nsid, path in enumerate(paths, 1):
        ns = f"{subsys}/namespaces/{nsid}"
        os.mkdir(ns)
        cleanup.push(f"remove nvmet namespace {nsid}", os.rmdir, ns)
        write(f"{ns}/device_path", path)
        write(f"{ns}/enable", 1)
        cleanup.push(f"disable nvmet namespace {nsid}", write, f"{ns}/enable", 0)
    os.mkdir(port)
    cleanup.push("remove the nvmet port", os.rmdir, port)
    write(f"{port}/addr_trtype", "rdma")
    write(f"{port}/addr_adrfam", "ipv4")
    write(f"{port}/addr_traddr", ADDR)
    write(f"{port}/addr_trsvcid", NVME_PORT)
    link = f"{port}/subsystems/{NQN}"
    os.symlink(subsys, link)
    cleanup.push("unlink the nvmet subsystem from its port", os.unlink, link)
    before = set(os.listdir("/sys/block"))
    run(["nvme", "connect", "-t", "rdma", "-a", ADDR, "-s", str(NVME_PORT), "-n", NQN,
         *([f"--nr-poll-queues={poll_queues}"] if poll_queues else [])])
    cleanup.push("nvme disconnect", run, ["nvme", "disconnect", "-n", NQN])

    def find():
        found = {}
        for b in sorted(set(os.listdir("/sys/block")) - before):
            try:
                # The multipath head, not the hidden per-controller path.
                if (b.startswith("nvme") and read(f"/sys/block/{b}/device/subsysnqn").strip() == NQN
                        and read(f"/sys/block/{b}/hidden").strip() != "1"
                        and os.path.exists(f"/dev/{b}")):
                    found[int(read(f"/sys/block/{b}/nsid"))] = f"/dev/{b}"
            except (OSError, ValueError):
                pass
        return [found[n] for n in range(1, len(paths) + 1)] if len(found) == len(paths) else None
    wait_for("the NVMe-oF namespaces' block devices", lambda: find() is not None)
    return find()


# --- kernel NBD over TCP ------------------------------------------------------

def setup_nbd(backing_path, nconn, logdir, cleanup):
    conf = f"{WORK}/nbd-server.conf"
    with open(conf, "w") as f:
        f.write(f"[generic]\nlistenaddr = {ADDR}\nport = {NBD_PORT}\n"
                f"[bench]\nexportname = {backing_path}\n")
    nlog = f"{logdir}/nbd-server.log"
    # It daemonizes (its -d mode serves a single connection): its processes
    # are the ones running with this configuration file.
    with open(nlog, "w") as f:
        p = subprocess.run(["nbd-server", "-C", conf], stdout=f, stderr=subprocess.STDOUT)
    if p.returncode != 0:
        raise BenchError(f"nbd-server exited with {p.returncode}:\n{read(nlog)}")
    cleanup.push("stop nbd-server", stop_nbd_server, conf)
    wait_for("nbd-server to run", lambda: nbd_server_pids(conf))
    dev = None
    for i in range(16):
        if read(f"/sys/block/nbd{i}/size").strip() == "0" and not os.path.exists(f"/sys/block/nbd{i}/pid"):
            dev = f"/dev/nbd{i}"
            break
    if dev is None:
        raise BenchError("no free /dev/nbdN")
    run(["nbd-client", ADDR, str(NBD_PORT), dev, "-N", "bench", "-b", str(BLOCK),
         "-C", str(nconn)])
    cleanup.push(f"nbd-client -d {dev}", run, ["nbd-client", "-d", dev])
    return dev


def nbd_server_pids(conf):
    pids = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            argv = read(f"/proc/{pid}/cmdline").split("\0")
        except OSError:
            continue
        if os.path.basename(argv[0]) == "nbd-server" and conf in argv:
            pids.append(int(pid))
    return pids


def stop_nbd_server(conf):
    for pid in nbd_server_pids(conf):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    end = time.monotonic() + 20
    while nbd_server_pids(conf):
        if time.monotonic() > end:
            raise BenchError(f"nbd-server still runs 20 s after SIGTERM: pids {nbd_server_pids(conf)}")
        time.sleep(0.1)


# --- the wire's limit --------------------------------------------------------

PERFTEST_PORT = 18515


def rdma_device():
    devs = sorted(os.listdir("/sys/class/infiniband")) if os.path.isdir("/sys/class/infiniband") else []
    if not devs:
        raise BenchError("no RDMA device in /sys/class/infiniband")
    return devs[0]


def perftest(tool, size, iters, dev, extra=()):
    """One perftest run over dev, its server and client both in this guest,
    connected through the RDMA CM (-R) to ADDR, so over the same rxe device
    and address the systems use. Returns the client's result line as a
    dict of its columns."""
    # -F: no CPU-frequency warning (a guest has no cpufreq to read).
    common = [tool, "-R", "-F", "-d", dev, "-s", str(size), "-n", str(iters),
              "-p", str(PERFTEST_PORT), *extra]
    srv = subprocess.Popen(common, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        time.sleep(1)  # perftest's server listens on its TCP port, then waits
        out = run(common + [ADDR], timeout=120)
        srv.wait(30)
    finally:
        if srv.poll() is None:
            srv.kill()
            srv.wait()
    head, vals = None, None
    for line in out.splitlines():
        f = line.split()
        if f and f[0] == "#bytes":
            head = line
        elif head and f and f[0] == str(size) and len(f) >= 5:
            vals = f
    if not head or not vals:
        raise BenchError(f"cannot read {tool}'s result:\n{out.strip()}")
    # Columns are named by headers with spaces ("99% percentile[usec]"):
    # take them in order from the known names.
    names = re.findall(r"#bytes|#iterations|[A-Za-z_0-9.%]+(?: percentile)?\[[^\]]+\]", head)
    if len(names) != len(vals):
        raise BenchError(f"{tool}: {len(names)} columns named, {len(vals)} read:\n{out.strip()}")
    return {n: float(v) for n, v in zip(names, vals)}


def wire_limit(nqp):
    """The rxe wire without any block layer: perftest's one-way latency of
    a 64-byte send and a 4 KiB RDMA write (perftest polls), and the message
    rate of 4 KiB and 128 KiB RDMA writes over nqp queue pairs (as many as
    an ibnbd session has connections: one per CPU). See docs/benchmarks.md
    for how they become the "wire limit" column."""
    dev = rdma_device()
    lat = {}
    for tool, size in (("ib_send_lat", 64), ("ib_write_lat", 4096)):
        r = perftest(tool, size, 2000, dev)
        lat[f"{tool}_{size}"] = {"mean_us": r["t_avg[usec]"], "p50_us": r["t_typical[usec]"],
                                 "p99_us": r["99% percentile[usec]"],
                                 "p999_us": r["99.9% percentile[usec]"]}
    for size, iters in ((4096, 20000), (131072, 2000)):
        r = perftest("ib_write_bw", size, iters, dev, ["-q", str(nqp)])
        mps = r["MsgRate[Mpps]"] * 1e6
        lat[f"ib_write_bw_{size}"] = {"msgs_per_s": mps, "MiBps": mps * size / 2**20}
    lat["device"], lat["queue_pairs"] = dev, nqp
    return lat


# --- workloads and one point ----------------------------------------------------

def workloads(ncpu):
    rr = ["--rw=randread", "--bs=4k"]
    return [
        ("4k-randread-qd1", rr + ["--iodepth=1"]),
        ("4k-randread-qd32", rr + ["--iodepth=32"]),
        (f"4k-randread-qd32-{ncpu}jobs", rr + ["--iodepth=32", f"--numjobs={ncpu}", "--group_reporting"]),
        ("4k-randwrite-qd32", ["--rw=randwrite", "--bs=4k", "--iodepth=32"]),
        ("4k-randrw70-qd32", ["--rw=randrw", "--rwmixread=70", "--bs=4k", "--iodepth=32"]),
        ("128k-read-qd8", ["--rw=read", "--bs=128k", "--iodepth=8"]),
        ("128k-write-qd8", ["--rw=write", "--bs=128k", "--iodepth=8"]),
        ("1m-read-qd4", ["--rw=read", "--bs=1m", "--iodepth=4"]),
        ("1m-write-qd4", ["--rw=write", "--bs=1m", "--iodepth=4"]),
        (MULTI, rr + ["--iodepth=16"]),
    ]


def fio_dir(j):
    lat = j["lat_ns"]
    pct = lat.get("percentile", {})
    us = lambda ns: ns / 1000.0
    return {
        "ios": j["total_ios"], "iops": j["iops"], "bw_MiBps": j["bw_bytes"] / 2**20,
        "lat_mean_us": us(lat["mean"]), "lat_p50_us": us(pct.get("50.000000", 0)),
        "lat_p99_us": us(pct.get("99.000000", 0)), "lat_p999_us": us(pct.get("99.900000", 0)),
    }


def point(opts, system, dev, wl, args, fio_json, ibnbd, stat_dev):
    cmd = (["fio", "--direct=1", "--ioengine=io_uring",
            "--time_based", f"--runtime={opts.runtime}", f"--ramp_time={opts.ramp}",
            "--lat_percentiles=1", "--clat_percentiles=0", "--percentile_list=50:99:99.9",
            "--output-format=json", f"--output={fio_json}"] + args + fio_targets(wl, dev))
    s0, g0 = disk_sectors(stat_dev), guest_cpu()
    d0 = ibnbd.cpu() if ibnbd else None
    run(cmd, timeout=opts.runtime + opts.ramp + 120)
    d1 = ibnbd.cpu() if ibnbd else None
    s1, g1 = disk_sectors(stat_dev), guest_cpu()
    j = json.load(open(fio_json))
    job = j["jobs"][0]
    if job.get("error"):
        raise BenchError(f"fio on {system} ({wl}) reported error {job['error']}")
    r, w = fio_dir(job["read"]), fio_dir(job["write"])
    if r["ios"] + w["ios"] == 0:
        raise BenchError(f"fio on {system} ({wl}) did no IO")
    # Latencies: the direction with the most IOs (reads in the 70/30 mix).
    main = r if r["ios"] >= w["ios"] else w
    rec = {k: main[k] for k in ("lat_mean_us", "lat_p50_us", "lat_p99_us", "lat_p999_us")}
    rec.update(iops=r["iops"] + w["iops"], bw_MiBps=r["bw_MiBps"] + w["bw_MiBps"],
               ios=r["ios"] + w["ios"], read=r, write=w)
    # CPU per million IOs over the whole fio run (ramp included): the IOs
    # counted by the block device over the same window, in fio-sized units.
    cpu = {"window_s": g1[1] / os.cpu_count() - g0[1] / os.cpu_count()}
    bs = {"128k": 128 << 10, "1m": 1 << 20}.get(wl.split("-")[0], 4096)
    if s0 is not None:
        dev_ios = (s1 - s0) * 512 / bs
        cpu["device_ios"] = dev_ios
        if dev_ios > 0:
            mio = dev_ios / 1e6
            cpu["guest_busy_s_per_mio"] = (g1[0] - g0[0]) / mio
            if ibnbd:
                cpu["client_s_per_mio"] = (d1[0][0] - d0[0][0]) / mio
                cpu["server_s_per_mio"] = (d1[1][0] - d0[1][0]) / mio
                cpu["client_wakeups_per_io"] = (d1[0][1] - d0[0][1]) / dev_ios
                cpu["server_wakeups_per_io"] = (d1[1][1] - d0[1][1]) / dev_ios
    rec["cpu"] = cpu
    return rec


# --- main -----------------------------------------------------------------------

def parse_args():
    p = argparse.ArgumentParser(prog="bench/run (guest)")
    p.add_argument("--backing", choices=["nullb", "file", "both"], default="nullb")
    p.add_argument("--size", type=int, default=1024, help="MiB")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--runtime", type=int, default=10)
    p.add_argument("--ramp", type=int, default=2)
    p.add_argument("--idle", type=int, default=10)
    p.add_argument("--only", default="")
    p.add_argument("--auth-compare", action="store_true")
    p.add_argument("--max-io-compare", default="")
    p.add_argument("--poll-compare", type=int, default=0)
    p.add_argument("--no-syscalls", action="store_true")
    p.add_argument("--baseline-build", default="")
    p.add_argument("--baseline-rev", default="")
    p.add_argument("--out", required=True)
    o = p.parse_args()
    if o.repeat < 1 or o.runtime < 1 or o.idle < 1 or o.size < 64:
        p.error("--repeat, --runtime, --idle must be >= 1 and --size >= 64")
    return o


def main():
    opts = parse_args()
    if not ADDR:
        raise BenchError("IBNBD_VM_ADDR is not set: run bench/run on the host")
    ncpu = os.cpu_count()
    wls = workloads(ncpu)
    if opts.only:
        want = opts.only.split(",")
        unknown = set(want) - {n for n, _ in wls}
        if unknown:
            raise BenchError(f"unknown workload(s) {', '.join(sorted(unknown))}; "
                             f"known: {', '.join(n for n, _ in wls)}")
        wls = [w for w in wls if w[0] in want]
    backings = ["nullb", "file"] if opts.backing == "both" else [opts.backing]
    systems = list(SYSTEMS)
    if opts.baseline_build:
        systems.insert(2, BASELINE)
    if opts.auth_compare:
        systems.insert(2, NOAUTH)
    if opts.max_io_compare:
        systems.insert(2, MAXIO)
    if opts.poll_compare:
        systems.insert(2, POLL)
        systems.insert(systems.index("nvmeof") + 1, NVME_POLL)
    os.makedirs(WORK, exist_ok=True)
    os.makedirs(f"{opts.out}/fio", exist_ok=True)
    os.makedirs(f"{opts.out}/logs", exist_ok=True)
    fio_ver = run(["fio", "--version"]).strip()
    results = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": os.environ.get("IBNBD_BENCH_CMDLINE", "bench/run " + shlex.join(sys.argv[1:])),
        "guest": {"kernel": os.uname().release, "cpus": ncpu, "fio": fio_ver,
                  "mem_MiB": int(re.search(r"MemTotal:\s+(\d+)", read("/proc/meminfo")).group(1)) // 1024},
        "options": {k: v for k, v in vars(opts).items() if k not in ("out", "baseline_build")},
        "block_size": BLOCK, "systems": systems, "workloads": [n for n, _ in wls],
        "backings": backings, "ibnbd": {}, BASELINE: {}, NOAUTH: {}, MAXIO: {}, POLL: {},
        "runs": [],
    }
    if opts.baseline_rev:
        results["baseline"] = opts.baseline_rev
    resfile = f"{opts.out}/results.json"
    log("the wire's limit: perftest over the same RDMA device and address")
    results["limit"] = wire_limit(ncpu)
    lim = results["limit"]
    log(f"wire limit: send 64 B {lim['ib_send_lat_64']['mean_us']:.0f} us, "
        f"write 4 KiB {lim['ib_write_lat_4096']['mean_us']:.0f} us one way; "
        f"4 KiB writes {lim['ib_write_bw_4096']['msgs_per_s']:.0f}/s, "
        f"128 KiB writes {lim['ib_write_bw_131072']['MiBps']:.0f} MiB/s")

    def save():
        tmp = resfile + ".tmp"
        with open(tmp, "w") as f:
            json.dump(results, f, indent=1)
        os.replace(tmp, resfile)

    for backing in backings:
        cleanup = Cleanup()
        try:
            logdir = f"{opts.out}/logs/{backing}"
            os.makedirs(logdir, exist_ok=True)
            log(f"{backing}: setting up the backing ({opts.size} MiB) and filling it")
            path = setup_backing(backing, opts.size, cleanup)
            more = []
            if any(wl == MULTI for wl, _ in wls):
                log(f"{backing}: {MULTI_DEVS - 1} more backings of {opts.size // MULTI_DEVS} MiB "
                    "for the multi-device point")
                more = [setup_backing(backing, opts.size // MULTI_DEVS, cleanup,
                                      f"{NULLB_NAME}{i}") for i in range(1, MULTI_DEVS)]
            log(f"{backing}: ibnbd")
            ibs = {"ibnbd": Ibnbd("ibnbd", BUILD, IBNBD_PORT, path, logdir, cleanup, more=more)}
            if opts.baseline_build:
                log(f"{backing}: ibnbd built from {opts.baseline_rev} (the baseline)")
                ibs[BASELINE] = Ibnbd(BASELINE, opts.baseline_build, IBNBD_PORT + 1, path,
                                      logdir, cleanup)
            if opts.auth_compare:
                log(f"{backing}: ibnbd with --no-auth (no key, no hosts file)")
                ibs[NOAUTH] = Ibnbd(NOAUTH, BUILD, IBNBD_PORT + 2, path, logdir, cleanup,
                                    auth=False)
            if opts.max_io_compare:
                log(f"{backing}: ibnbd with --max-io-size {opts.max_io_compare}")
                ibs[MAXIO] = Ibnbd(MAXIO, BUILD, IBNBD_PORT + 3, path, logdir, cleanup,
                                   daemon_args=["--max-io-size", opts.max_io_compare])
            if opts.poll_compare:
                us = ["--poll-idle-us", str(opts.poll_compare)]
                log(f"{backing}: ibnbd polling, both daemons {' '.join(us)}")
                ibs[POLL] = Ibnbd(POLL, BUILD, IBNBD_PORT + 4, path, logdir, cleanup,
                                  daemon_args=us, server_args=us)
            log(f"{backing}: NVMe-oF over RDMA")
            nvme, *nvme_more = setup_nvmeof(path, cleanup, ncpu if opts.poll_compare else 0, more)
            log(f"{backing}: NBD over TCP")
            nbd = setup_nbd(path, ncpu, logdir, cleanup)
            devs = {"local": path, "nvmeof": nvme, NVME_POLL: nvme, "nbd": nbd}
            devs.update({name: ib.dev for name, ib in ibs.items()})
            log(f"{backing}: " + ", ".join(f"{s} {devs[s]}" for s in systems))
            multi = {"local": [path, *more], "ibnbd": [ibs["ibnbd"].dev, *ibs["ibnbd"].more_devs],
                     "nvmeof": [nvme, *nvme_more]} if more else {}
            if multi:
                log(f"{backing}: {MULTI}: " + ", ".join(f"{s} {' '.join(d)}" for s, d in multi.items()))
            for name, ib in ibs.items():
                results[name][backing] = {
                    "device": ib.dev, "server_rss_idle_KiB": ib.rss_idle_kib,
                    "server_rss_mapped_KiB": ib.rss_mapped_kib, "connections": ib.connections}
            log(f"{backing}: idle CPU of the ibnbd daemons over {opts.idle} s, device mapped, no IO")
            c0 = {name: ib.cpu() for name, ib in ibs.items()}
            time.sleep(opts.idle)
            c1 = {name: ib.cpu() for name, ib in ibs.items()}
            for name in ibs:
                res = results[name][backing]
                for k, who in enumerate(("client", "server")):
                    res[f"idle_{who}_cpu_pct"] = 100 * (c1[name][k][0] - c0[name][k][0]) / opts.idle
                    res[f"idle_{who}_wakeups_per_s"] = (c1[name][k][1] - c0[name][k][1]) / opts.idle
            save()

            def on(wl):
                """(system, device or devices) of a workload."""
                if wl == MULTI:
                    return [(s, multi[s]) for s in systems if s in multi]
                return [(s, devs[s]) for s in systems]
            total = opts.repeat * sum(len(on(wl)) for wl, _ in wls)
            n = 0
            for rep in range(1, opts.repeat + 1):
                for wl, args in wls:
                    for system, dev in on(wl):
                        n += 1
                        fj = f"{opts.out}/fio/{backing}-{wl}-{system}-r{rep}.json"
                        stat_dev = None if system == "local" and backing == "file" else dev
                        extra = ["--hipri"] if system == NVME_POLL else []
                        rec = point(opts, system, dev, wl, args + extra, fj,
                                    ibs.get(system), stat_dev)
                        rec = {"system": system, "backing": backing, "workload": wl,
                               "repetition": rep, **rec}
                        results["runs"].append(rec)
                        save()
                        log(f"[{n}/{total}] {backing} {wl} {system} r{rep}: "
                            f"{rec['iops']:.0f} IOPS {rec['bw_MiBps']:.1f} MiB/s "
                            f"mean {rec['lat_mean_us']:.0f} us p99 {rec['lat_p99_us']:.0f} us")
            if not opts.no_syscalls:
                log(f"{backing}: system calls per IO (one more fio run per workload and "
                    "ibnbd system, the syscall tracepoint counting)")
                counter = SyscallCounter(cleanup)
                for wl, args in wls:
                    for name, dev in on(wl):
                        if name not in ibs:
                            continue
                        sc = syscall_point(opts, dev, args, ibs[name], counter)
                        results[name][backing].setdefault("syscalls", {})[wl] = sc
                        log(f"{backing} {wl} {name}: system calls per IO: client "
                            f"{sc['client_syscalls_per_io']:.2f}, server "
                            f"{sc['server_syscalls_per_io']:.2f}")
                save()
            for name, ib in ibs.items():
                results[name][backing]["server_rss_after_KiB"] = proc_rss_kib(ib.server.pid)
                results[name][backing]["server_stats_after"] = ib.server_stats()
            save()
        finally:
            log(f"{backing}: taking everything down")
            cleanup.run()
        if cleanup.failed:
            raise BenchError(f"{backing}: clean-up failed (see above)")
    save()
    subprocess.run([sys.executable, os.path.join(os.path.dirname(__file__), "report.py"), opts.out],
                   check=True)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        main()
    except BenchError as e:
        log(f"FAILED: {e}")
        sys.exit(1)
    except subprocess.CalledProcessError as e:
        log(f"FAILED: {e}")
        sys.exit(1)
