#!/usr/bin/env python3
"""bench/report.py DIR: reads DIR/results.json (written by bench/run), writes
DIR/summary.md and DIR/chart.png, and prints the summary. Runs at the end of
bench/run; run it by hand to redo a report. See docs/benchmarks.md."""
import json
import os
import shutil
import statistics
import subprocess
import sys

NOAUTH = "ibnbd-noauth"
MAXIO = "ibnbd-maxio"
POLL = "ibnbd-poll"
NVME_POLL = "nvmeof-poll"
MULTI = "4k-randread-qd16-4dev"  # local, ibnbd and NVMe-oF only (bench/guest.py)
LABELS = {"local": "local", "ibnbd": "ibnbd", "nvmeof": "NVMe-oF", "nbd": "NBD",
          NOAUTH: "ibnbd --no-auth", NVME_POLL: "NVMe-oF poll queues"}
BASE = "ibnbd-base"
BACKING = {"nullb": "a memory-backed null_blk device, {size} MiB, {block}-byte blocks",
           "file": "a {size} MiB file on the guest's tmpfs"}


def is_bw(wl):
    return wl.split("-")[0] in ("128k", "1m")


def metric(wl):
    return "bw_MiBps" if is_bw(wl) else "iops"


def unit(wl):
    return "MiB/s" if is_bw(wl) else "IOPS"


def fmt(v):
    if v is None:
        return "–"
    if v >= 100:
        return f"{v:,.0f}"
    if v >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


class Results:
    def __init__(self, path):
        self.r = json.load(open(path))
        # The systems measured, in order, and their labels: a baseline
        # build (bench/run --baseline REV) shows as "ibnbd@REV".
        labels = dict(LABELS)
        labels[MAXIO] = f"ibnbd --max-io-size {self.r['options'].get('max_io_compare', '?')}"
        labels[POLL] = f"ibnbd --poll-idle-us {self.r['options'].get('poll_compare', '?')}"
        self.names = {s: labels.get(s, f"ibnbd@{self.r.get('baseline', '?')}")
                      for s in self.r["systems"]}
        self.idx = {}
        for run in self.r["runs"]:
            self.idx.setdefault((run["backing"], run["workload"], run["system"]), []).append(run)

    def values(self, backing, wl, system, key):
        out = []
        for run in self.idx.get((backing, wl, system), []):
            v = run
            for k in key.split("."):
                v = v.get(k) if isinstance(v, dict) else None
            if v is not None:
                out.append(v)
        return out

    def med(self, backing, wl, system, key):
        v = self.values(backing, wl, system, key)
        return statistics.median(v) if v else None

    def cell(self, backing, wl, system, key):
        v = self.values(backing, wl, system, key)
        if not v:
            return "–"
        if len(v) == 1:
            return fmt(v[0])
        return f"{fmt(statistics.median(v))} ({fmt(min(v))}–{fmt(max(v))})"


def wire_limit(r, wl, key):
    """What the wire alone gives for a workload, from perftest (bench/run's
    "limit"): a QD1 4k request costs one small send (the request) and one
    4 KiB RDMA write (the data) one way each, so its latency is their sum
    and its IOPS the inverse; deeper 4k queues are limited by the rate of
    4 KiB writes, large IO by the bandwidth of 128 KiB writes. None when
    the run has no limit measured."""
    lim = r.get("limit")
    if not lim:
        return None
    one = {"lat_mean_us": "mean_us", "lat_p50_us": "p50_us", "lat_p99_us": "p99_us",
           "lat_p999_us": "p999_us"}
    if key in one:
        if not wl.endswith("-qd1"):
            return None
        return lim["ib_send_lat_64"][one[key]] + lim["ib_write_lat_4096"][one[key]]
    if is_bw(wl):
        return lim["ib_write_bw_131072"]["MiBps"] if key == "bw_MiBps" else None
    if key != "iops":
        return None
    if wl.endswith("-qd1"):
        return 1e6 / wire_limit(r, wl, "lat_mean_us")
    return lim["ib_write_bw_4096"]["msgs_per_s"]


def ratio(a, b):
    return a / b if a is not None and b else None


def targets(res, backing):
    """(target, measured, verdict) rows for one backing."""
    wls = res.r["workloads"]
    rows = []

    def r(wl, key, other="nvmeof"):
        if wl not in wls:
            return None
        return ratio(res.med(backing, wl, "ibnbd", key), res.med(backing, wl, other, key))

    def row(name, v, ok, shown=None):
        if v is None:
            rows.append((name, "not measured", "NOT met (not measured)"))
        else:
            rows.append((name, shown or f"{v:.2f}×", "met" if ok(v) else "NOT met"))

    for wl in ([w for w in wls if w.startswith("4k-randread-qd32")]
               + ["4k-randwrite-qd32", "4k-randrw70-qd32", MULTI]):
        row(f"{wl}: ibnbd IOPS ≥ 1.0× NVMe-oF", r(wl, "iops"), lambda v: v >= 1.0)
    row("4k-randread-qd1: ibnbd mean latency ≤ 1.5× NVMe-oF", r("4k-randread-qd1", "lat_mean_us"),
        lambda v: v <= 1.5)
    row("4k-randread-qd1: ibnbd p99 latency ≤ 1.5× NVMe-oF", r("4k-randread-qd1", "lat_p99_us"),
        lambda v: v <= 1.5)
    for wl in ("128k-read-qd8", "128k-write-qd8"):
        row(f"{wl}: ibnbd bandwidth ≥ 1.0× NVMe-oF", r(wl, "bw_MiBps"), lambda v: v >= 1.0)
    nbd = {wl: r(wl, metric(wl), "nbd") for wl in wls if wl != MULTI}  # not with NBD
    short = [f"{wl} {v:.2f}×" for wl, v in nbd.items() if v is not None and v < 3.0]
    if any(v is None for v in nbd.values()):
        row("every workload: ibnbd ≥ 3× NBD", None, None)
    else:
        low = min(nbd.values())
        rows.append(("every workload: ibnbd ≥ 3× NBD", f"lowest {low:.2f}×",
                     "met" if not short else "NOT met: " + ", ".join(short)))
    ib = res.r["ibnbd"].get(backing, {})
    for wl in [w for w in wls if "qd32" in w]:
        for who in ("client", "server"):
            v = ib.get("syscalls", {}).get(wl, {}).get(f"{who}_syscalls_per_io")
            row(f"{wl}: ibnbd {who} system calls per IO ≤ 0.3", v, lambda v: v <= 0.3,
                None if v is None else f"{v:.2f}")
    if POLL in res.r["systems"] and "4k-randread-qd1" in wls:
        for k, what in (("lat_mean_us", "mean"), ("lat_p99_us", "p99")):
            v = ratio(res.med(backing, "4k-randread-qd1", POLL, k),
                      res.med(backing, "4k-randread-qd1", NVME_POLL, k))
            row(f"4k-randread-qd1: polling ibnbd {what} latency ≤ 1.1× NVMe-oF with poll queues",
                v, lambda v: v <= 1.1)
            v = ratio(res.med(backing, "4k-randread-qd1", POLL, k),
                      wire_limit(res.r, "4k-randread-qd1", k))
            row(f"4k-randread-qd1: polling ibnbd {what} latency ≤ 2× the wire limit",
                v, lambda v: v <= 2.0)
    for who in ("client", "server"):
        v = ib.get(f"idle_{who}_cpu_pct")
        row(f"idle ibnbd {who} daemon < 1% of a CPU", v, lambda v: v < 1.0,
            None if v is None else f"{v:.2f}%")
    per = per_conn_mib(ib)
    row("ibnbd-server memory per connection ≤ 16 MiB", per, lambda v: v <= 16.0,
        None if per is None else f"{per:.2f} MiB")
    return rows


def per_conn_mib(ib):
    """RSS growth from before any client to the largest seen with the device
    mapped (right after the map, and after all the IO), per connection."""
    if "server_rss_idle_KiB" not in ib or not ib.get("connections"):
        return None
    peak = max(ib.get("server_rss_mapped_KiB", 0), ib.get("server_rss_after_KiB", 0))
    return (peak - ib["server_rss_idle_KiB"]) / 1024 / ib["connections"]


def summary(res):
    r = res.r
    o = r["options"]
    g = r["guest"]
    out = [f"# ibnbd benchmark, {r['date']}", "",
           f"Command: `{r['command']}`  ",
           f"Guest: Linux {g['kernel']}, {g['cpus']} vCPUs (qemu TCG), {g['mem_MiB']} MiB, {g['fio']}; "
           f"one guest, every system over the same rxe0 device.  ",
           f"Each point: fio io_uring, direct, {o['runtime']} s after {o['ramp']} s of ramp; "
           f"{o['repeat']} repetition(s), systems interleaved. "
           "Cells: median (min–max) over the repetitions; ratios are of medians.", ""]
    lim = r.get("limit")
    if lim:
        out += [f"Wire limit (perftest over {lim['device']}, the same device and address, "
                    "both ends polling): one way, a 64-byte send "
                    f"{lim['ib_send_lat_64']['mean_us']:.0f} µs (p99 "
                    f"{lim['ib_send_lat_64']['p99_us']:.0f}), a 4 KiB RDMA write "
                    f"{lim['ib_write_lat_4096']['mean_us']:.0f} µs (p99 "
                    f"{lim['ib_write_lat_4096']['p99_us']:.0f}); over {lim['queue_pairs']} "
                    "queue pairs (one per connection of a session), 4 KiB RDMA writes "
                    f"{lim['ib_write_bw_4096']['msgs_per_s']:,.0f}/s, 128 KiB RDMA writes "
                    f"{lim['ib_write_bw_131072']['MiBps']:,.0f} MiB/s. The wire limit column: "
                    "a QD1 4k request as one send plus one 4 KiB write, deeper 4k queues at the "
                    "4 KiB write rate, large IO at the 128 KiB write bandwidth.", ""]
    for backing in r["backings"]:
        desc = BACKING[backing].format(size=o["size"], block=r["block_size"])
        names = res.names
        against = (["nvmeof", "nbd", "local"] + [s for s in (BASE, NOAUTH, MAXIO, POLL) if s in names])
        pairs = [("ibnbd", o2) for o2 in against]
        if POLL in names and NVME_POLL in names:
            pairs.append((POLL, NVME_POLL))
        cols = list(names.values())
        if lim:
            cols.insert(1, "wire limit")
        out += [f"## Backing: {backing}, {desc}", "",
                "| workload | unit | " + " | ".join(cols) + " | "
                + " | ".join(f"{names[a]}/{names[b]}" for a, b in pairs) + " |",
                "|---|---|" + "---|" * (len(cols) + len(pairs))]
        for wl in r["workloads"]:
            k = metric(wl)
            m = {s: res.med(backing, wl, s, k) for s in names}
            rs = [ratio(m[a], m[b]) for a, b in pairs]
            cells = [res.cell(backing, wl, s, k) for s in names]
            if lim:
                cells.insert(1, fmt(wire_limit(r, wl, k)))
            out.append(f"| {wl} | {unit(wl)} | " + " | ".join(cells)
                       + " | " + " | ".join("–" if x is None else f"{x:.2f}" for x in rs) + " |")
        if "4k-randread-qd1" in r["workloads"]:
            keys = ("lat_mean_us", "lat_p50_us", "lat_p99_us", "lat_p999_us")
            out += ["", "4k-randread-qd1 latency, µs (submission to completion):", "",
                    "| system | mean | p50 | p99 | p99.9 |", "|---|---|---|---|---|"]
            for s, name in names.items():
                out.append(f"| {name} | " + " | ".join(
                    res.cell(backing, "4k-randread-qd1", s, k) for k in keys) + " |")
                if s == "local" and lim:
                    out.append("| wire limit | " + " | ".join(
                        fmt(wire_limit(r, "4k-randread-qd1", k)) for k in keys) + " |")
        ibs = [s for s in names if s in ("ibnbd", BASE, NOAUTH, MAXIO, POLL)]
        out += ["", "CPU seconds per million IOs (median): the ibnbd daemons, and the whole "
                "guest busy (fio and the kernel included) for each system:", "",
                "| workload | " + " | ".join(f"{names[s]} {who}" for s in ibs
                                            for who in ("client", "server")) + " | "
                + " | ".join(f"guest: {n}" for n in names.values()) + " |",
                "|---|" + "---|" * (2 * len(ibs) + len(names))]
        for wl in r["workloads"]:
            cells = [res.med(backing, wl, s, f"cpu.{who}_s_per_mio") for s in ibs
                     for who in ("client", "server")]
            cells += [res.med(backing, wl, s, "cpu.guest_busy_s_per_mio") for s in names]
            out.append(f"| {wl} | " + " | ".join(fmt(c) for c in cells) + " |")
        if any(res.values(backing, wl, s, "cpu.client_wakeups_per_io")
               for wl in r["workloads"] for s in ibs):
            out += ["", "Wakeups per IO (median; times a daemon's threads were scheduled in, "
                    "from /proc/PID/task/*/schedstat, per IO the device counted):", "",
                    "| workload | " + " | ".join(f"{names[s]} {who}" for s in ibs
                                                for who in ("client", "server")) + " |",
                    "|---|" + "---|" * (2 * len(ibs))]
            for wl in r["workloads"]:
                cells = [res.med(backing, wl, s, f"cpu.{who}_wakeups_per_io") for s in ibs
                         for who in ("client", "server")]
                out.append(f"| {wl} | " + " | ".join(fmt(c) for c in cells) + " |")
        if any(r.get(s, {}).get(backing, {}).get("syscalls") for s in ibs):
            out += ["", "System calls per IO (a separate fio run per workload after the measured "
                    "points, counted by the raw_syscalls:sys_enter tracepoint per thread, per IO "
                    "the device counted):", "",
                    "| workload | " + " | ".join(f"{names[s]} {who}" for s in ibs
                                                for who in ("client", "server")) + " |",
                    "|---|" + "---|" * (2 * len(ibs))]
            for wl in r["workloads"]:
                cells = [r.get(s, {}).get(backing, {}).get("syscalls", {}).get(wl, {})
                         .get(f"{who}_syscalls_per_io") for s in ibs for who in ("client", "server")]
                out.append(f"| {wl} | " + " | ".join(fmt(c) for c in cells) + " |")
        for s in ibs:
            ib = r.get(s, {}).get(backing, {})
            if not ib:
                continue
            per = per_conn_mib(ib)
            wake = lambda who: ("" if f"idle_{who}_wakeups_per_s" not in ib else
                                f" ({ib[f'idle_{who}_wakeups_per_s']:.1f} wakeups/s)")
            out += ["", f"{names[s]} daemons idle (device mapped, no IO, {o['idle']} s): client "
                    f"{ib.get('idle_client_cpu_pct', float('nan')):.2f}%{wake('client')}, server "
                    f"{ib.get('idle_server_cpu_pct', float('nan')):.2f}%{wake('server')} "
                    "of one CPU.  ",
                    f"{names[s]} server VmRSS: {ib['server_rss_idle_KiB'] / 1024:.1f} MiB before any client, "
                    f"{ib['server_rss_mapped_KiB'] / 1024:.1f} MiB with the device mapped "
                    f"({ib['connections']} connections)"
                    + (f", {ib['server_rss_after_KiB'] / 1024:.1f} MiB after all the IO"
                       if "server_rss_after_KiB" in ib else "")
                    + ("" if per is None else f": {per:.2f} MiB per connection") + "."]
        out += ["", f"Targets ({backing}):", "", "| target | measured | result |", "|---|---|---|"]
        out += [f"| {a} | {b} | {c} |" for a, b, c in targets(res, backing)]
        out.append("")
    return "\n".join(out)


def chart(res, d):
    """chart.png: per workload, each system's median normalized to local,
    with the min–max range, one panel per backing (log scale)."""
    gp = shutil.which("gnuplot")
    if not gp:
        raise SystemExit("report: gnuplot is not installed (scripts/install-deps)")
    r = res.r
    panels = []
    vals = []
    for backing in r["backings"]:
        dat = os.path.join(d, f"chart-{backing}.dat")
        with open(dat, "w") as f:
            f.write("# workload " + " ".join(f"{s} {s}_min {s}_max" for s in res.names) + "\n")
            for wl in r["workloads"]:
                k = metric(wl)
                loc = res.med(backing, wl, "local", k)
                row = [wl]
                for s in res.names:
                    v = res.values(backing, wl, s, k)
                    if not v or not loc:
                        row += ["NaN"] * 3
                    else:
                        row += [f"{statistics.median(v) / loc:.4f}", f"{min(v) / loc:.4f}",
                                f"{max(v) / loc:.4f}"]
                        vals += [min(v) / loc, max(v) / loc]
                f.write(" ".join(row) + "\n")
        plots = ", ".join(
            f"'{dat}' using {2 + 3 * i}:{3 + 3 * i}:{4 + 3 * i}"
            + (":xtic(1)" if i == 0 else "") + f" title '{name}' noenhanced"
            for i, name in enumerate(res.names.values()))
        panels.append(f"set title 'backing: {backing} (IOPS, or MiB/s for 128k and 1m, relative to local; "
                      f"median and min-max)'\nplot {plots}\n")
    script = f"""set terminal pngcairo size 1400,{520 * len(panels)} font ',10'
set output '{os.path.join(d, "chart.png")}'
set multiplot layout {len(panels)},1
set style data histograms
set style histogram errorbars gap 2 lw 1
set style fill solid 0.8 border -1
set logscale y
set yrange [{min([x for x in vals if x > 0] or [0.01]) / 2:.4g}:{max(vals or [1]) * 2:.4g}]
set ylabel 'relative to local (log)'
set grid ytics
set key top right
set xtics rotate by -20
""" + "".join(panels) + "unset multiplot\n"
    p = subprocess.run([gp], input=script, text=True, capture_output=True)
    if p.returncode != 0:
        raise SystemExit(f"report: gnuplot failed:\n{p.stderr}")


def main():
    if len(sys.argv) != 2:
        raise SystemExit("usage: bench/report.py RESULTS_DIR")
    d = sys.argv[1]
    res = Results(os.path.join(d, "results.json"))
    text = summary(res)
    with open(os.path.join(d, "summary.md"), "w") as f:
        f.write(text)
    chart(res, d)
    print(text)
    print(f"results: {d}/results.json, {d}/summary.md, {d}/chart.png")


if __name__ == "__main__":
    main()
