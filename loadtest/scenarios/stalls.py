#!/usr/bin/env python3
"""Where a server's slow replies come from, from a packet capture and a CPU trace.

Usage: stalls.py CAPTURE.pcap PORT PERF_SCRIPT.txt CLOCK_OFFSET [THRESHOLD_MS]

The server's time for a request is measured on the wire: from the packet that carried the
request batch to the server's next reply packet on that connection (pipelined batches are
answered in order). That excludes the load generator's own delays, which the generator's
latency figures include. Windows where a batch waited at least THRESHOLD_MS (default 1) are
then matched against what the server's CPU was doing (`perf script` of `perf record -C CPU
-k CLOCK_MONOTONIC -e cpu-clock`); CLOCK_OFFSET is CLOCK_REALTIME minus CLOCK_MONOTONIC in
seconds (pcap stamps are realtime):
- "vCPU not running": the CPU produced (almost) no samples at all, not even idle ones. In a
  VM that is the host running something else on that CPU: no guest process can avoid it.
- "other task": another thread or kernel thread held the server's CPU.
- "idle": the server's CPU was idle although the capture had seen the request. On lo the
  capture sees a packet when it is sent, and delivery to the server's socket runs on the
  sender's CPU afterwards, so a stalled generator CPU delays it; or a wake-up came late.
- "server running": the server's own work, with the functions it was in.
"""
import bisect
import collections
import re
import struct
import sys


def read_pcap(path, port, offset):
    """(time on CLOCK_MONOTONIC, client port, to_server, payload bytes) of each data packet."""
    packets = []
    with open(path, "rb") as f:
        head = f.read(24)
        magic = struct.unpack("<I", head[:4])[0]
        if magic not in (0xA1B2C3D4, 0xA1B23C4D):
            sys.exit(f"{path}: not a little-endian pcap file")
        scale = 1e9 if magic == 0xA1B23C4D else 1e6
        link = struct.unpack("<I", head[20:24])[0]
        l2 = {0: 4, 1: 14, 113: 16}.get(link)
        if l2 is None:
            sys.exit(f"{path}: link type {link} not supported (capture on lo)")
        while True:
            rec = f.read(16)
            if len(rec) < 16:
                break
            sec, frac, incl, _ = struct.unpack("<IIII", rec)
            data = f.read(incl)
            ip = data[l2:]
            if len(ip) < 20 or ip[0] >> 4 != 4:
                continue
            ihl = (ip[0] & 15) * 4
            total = struct.unpack(">H", ip[2:4])[0]
            tcp = ip[ihl:]
            if len(tcp) < 14:
                continue
            sport, dport = struct.unpack(">HH", tcp[:4])
            payload = total - ihl - (tcp[12] >> 4) * 4
            if payload <= 0:
                continue
            t = sec + frac / scale - offset
            if dport == port:
                packets.append((t, sport, True, payload))
            elif sport == port:
                packets.append((t, dport, False, payload))
    return packets


def hold_times(packets):
    """(request packet time, reply packet time) for every answered request packet."""
    waiting = collections.defaultdict(collections.deque)
    holds = []
    for t, conn, to_server, _ in packets:
        if to_server:
            waiting[conn].append(t)
        elif waiting[conn]:
            holds.append((waiting[conn].popleft(), t))
    return holds


SAMPLE = re.compile(r"^\s*(.+?)\s+(\d+)\s+\[(\d+)\]\s+([\d.]+):\s+(\S+):\s+\S+\s+(\S+)")


def read_samples(path):
    samples = []
    with open(path, errors="replace") as f:
        for line in f:
            m = SAMPLE.match(line)
            if m and m.group(5).startswith("cpu-clock"):
                samples.append((float(m.group(4)), m.group(1), m.group(6)))
    samples.sort()
    return samples


def classify(window, samples, times, period, server_comms):
    a, b = window
    w = samples[bisect.bisect_left(times, a):bisect.bisect_right(times, b)]
    expected = (b - a) / period
    if len(w) < 0.25 * expected:
        return "vCPU not running", w
    n = len(w)
    own = sum(s[1] in server_comms for s in w) / n
    idle = sum(s[1] == "swapper" for s in w) / n
    if own >= 0.6:
        return "server running", w
    if idle >= 0.5:
        return "idle", w
    return "other task", w


def main():
    if len(sys.argv) < 5:
        sys.exit(__doc__)
    pcap, port, trace, offset = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
    threshold = float(sys.argv[5]) / 1e3 if len(sys.argv) > 5 else 1e-3
    holds = hold_times(read_pcap(pcap, port, offset))
    if not holds:
        sys.exit("no answered requests in the capture")
    d = sorted(b - a for a, b in holds)
    q = lambda p: d[min(len(d) - 1, int(p * len(d)))] * 1e3
    slow = sorted((a, b) for a, b in holds if b - a >= threshold)
    print(f"request batches answered: {len(d):,}")
    print(f"server time on the wire, ms: p50 {q(0.5):.3f}  p99 {q(0.99):.3f}  "
          f"p99.99 {q(0.9999):.3f}  max {d[-1] * 1e3:.3f}")
    print(f"batches held >= {threshold * 1e3:g} ms: {len(slow)}")
    windows = []
    for a, b in slow:
        if windows and a <= windows[-1][1]:
            windows[-1][1] = max(windows[-1][1], b)
        else:
            windows.append([a, b])
    samples = read_samples(trace)
    if not samples:
        print("no CPU samples: cannot say where the time went")
        return
    times = [s[0] for s in samples]
    period = (times[-1] - times[0]) / max(1, len(times) - 1)
    server_comms = {c for c, k in collections.Counter(
        s[1] for s in samples if s[1] != "swapper").most_common(1)}
    kinds = collections.Counter()
    longest = collections.defaultdict(float)
    functions = collections.Counter()
    others = collections.Counter()
    for win in windows:
        kind, w = classify(win, samples, times, period, server_comms)
        kinds[kind] += 1
        longest[kind] = max(longest[kind], win[1] - win[0])
        for s in w:
            if kind == "server running" and s[1] in server_comms:
                functions[s[2]] += 1
            elif kind == "other task" and s[1] not in server_comms and s[1] != "swapper":
                others[s[1]] += 1
    print(f"windows of such waits: {len(windows)} (server thread: {', '.join(server_comms)})")
    for kind, n in kinds.most_common():
        print(f"  {kind}: {n}, longest {longest[kind] * 1e3:.2f} ms")
    if functions:
        print("  server running, in:", ", ".join(f"{f} ({n})" for f, n in functions.most_common(6)))
    if others:
        print("  other tasks:", ", ".join(f"{c} ({n})" for c, n in others.most_common(6)))


if __name__ == "__main__":
    main()
