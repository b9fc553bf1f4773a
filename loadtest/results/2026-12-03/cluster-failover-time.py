#!/usr/bin/env python3
"""How long a cluster failover takes, percore against redis-server, in the same run.

Six nodes on loopback (three masters, one replica each, made by
`redis-cli --cluster create --cluster-replicas 1`), 1,000 keys written to one master and
confirmed with WAIT 1. Then:
- manual: CLUSTER FAILOVER on the replica, ROUNDS times back and forth; the time from the
  command to the moment every node's CLUSTER SLOTS names the new master (polled every
  5 ms), and that every key is on the new master;
- automatic: the master is killed (SIGKILL); the time until every live node names its
  replica (cluster-node-timeout NODE_TIMEOUT_MS: failure detection is most of it).
Between rounds both servers wait 4 x node timeout: Redis starts no new election sooner.

Usage: cluster-failover-time.py PERCORE_BINARY [redis-server]
"""

import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time

import redis

ROUNDS = 3
KEYS = 1000
NODE_TIMEOUT_MS = 2000


def start(binary, tmp, port, bus):
    d = os.path.join(tmp, str(port))
    os.makedirs(d)
    args = [binary, "--port", str(port), "--cluster-enabled", "yes", "--dir", d,
            "--cluster-port", str(bus), "--cluster-node-timeout", str(NODE_TIMEOUT_MS)]
    if "redis" in os.path.basename(binary):
        args += ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                 "--cluster-config-file", os.path.join(d, "nodes.conf"),
                 "--repl-diskless-sync-delay", "0", "--logfile", os.path.join(d, "log")]
    else:
        args += ["--shards", "1"]
    log = open(os.path.join(d, "stderr.log"), "w")
    p = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=log)
    c = redis.Redis(port=port, decode_responses=True)
    # The raw replies, not redis-py's parsed forms.
    for cmd in ["CLUSTER NODES", "CLUSTER SLOTS", "CLUSTER MYID", "ROLE", "CLUSTER FAILOVER"]:
        c.set_response_callback(cmd, lambda r, **kw: r)
    for _ in range(400):
        try:
            c.ping()
            return p, c
        except redis.ConnectionError:
            time.sleep(0.05)
    raise SystemExit(f"{binary} on {port} did not start")


def wait(what, f, within=60):
    t = time.time()
    while not f():
        if time.time() - t > within:
            raise SystemExit(f"timed out: {what}")
        time.sleep(0.005)


def owner(c, slot):
    for r in c.execute_command("CLUSTER SLOTS"):
        if r[0] <= slot <= r[1]:
            return r[2][2]
    return None


def role_of(c):
    return c.execute_command("ROLE")[0]


def run(binary, base):
    tmp = tempfile.mkdtemp(prefix="failover-time-")
    print(f"{binary}: nodes in {tmp}", file=sys.stderr)
    ports = [base + i for i in range(6)]
    nodes = [start(binary, tmp, p, p + 100) for p in ports]
    procs = [n[0] for n in nodes]
    cs = [n[1] for n in nodes]
    try:
        out = subprocess.run(["redis-cli", "--cluster", "create"]
                             + [f"127.0.0.1:{p}" for p in ports]
                             + ["--cluster-replicas", "1", "--cluster-yes"],
                             capture_output=True, text=True, timeout=120)
        assert "[OK] All 16384 slots covered." in out.stdout, out.stdout + out.stderr
        ids = [c.execute_command("CLUSTER MYID") for c in cs]

        def agreed():
            views = [c.execute_command("CLUSTER NODES") for c in cs]
            slots = [str(c.execute_command("CLUSTER SLOTS")) for c in cs]
            return all(v.count("slave ") == 3 and v.count(" connected") == 6 for v in views) \
                and len(set(slots)) == 1
        wait("agreement", agreed)
        # Master of slot 0 and its replica.
        m = ids.index(owner(cs[0], 0))
        r = next(ids.index(l.split(" ")[0])
                 for l in cs[0].execute_command("CLUSTER NODES").splitlines()
                 if f"slave {ids[m]}" in l)
        wait("replica synced", lambda: cs[r].info("replication")["master_link_status"] == "up")
        keys = []
        i = 0
        while len(keys) < KEYS:
            k = f"k{i}"
            i += 1
            if int(cs[m].execute_command("CLUSTER KEYSLOT", k)) <= 5460:
                cs[m].set(k, i)
                keys.append(k)
        assert cs[m].execute_command("WAIT", 1, 5000) == 1
        times = []
        for n in range(ROUNDS):
            print(f"  round {n}: failover to {ports[r]}", file=sys.stderr)
            t0 = time.perf_counter()
            assert cs[r].execute_command("CLUSTER FAILOVER") in ("OK", b"OK", True)
            wait("new owner everywhere", lambda: all(owner(c, 0) == ids[r] for c in cs))
            times.append((time.perf_counter() - t0) * 1000)
            missing = [k for k in keys if cs[r].get(k) is None]
            assert not missing, f"{len(missing)} keys missing"
            m, r = r, m
            # Redis starts no election within 4 x node timeout of its last one (and masters
            # vote for a master's replicas once in 2 x node timeout): both servers wait it out.
            time.sleep(4 * NODE_TIMEOUT_MS / 1000 + 0.5)
            # Every node (its new master first: it accepts a manual failover only from a
            # node it knows as its replica) sees the old master as the new one's replica.
            wait("old master follows", lambda: role_of(cs[r]) == "slave"
                 and cs[r].info("replication")["master_link_status"] == "up"
                 and all(f"{ids[r]} " in v and f"slave {ids[m]}" in v.split(ids[r], 1)[1]
                         .split("\n", 1)[0]
                         for v in (c.execute_command("CLUSTER NODES") for c in cs)))
        # Automatic: kill the master.
        os.kill(procs[m].pid, signal.SIGKILL)
        procs[m].wait()
        t0 = time.perf_counter()
        live = [c for i, c in enumerate(cs) if i != m]
        wait("automatic failover", lambda: all(owner(c, 0) == ids[r] for c in live), 120)
        auto = (time.perf_counter() - t0) * 1000
        return times, auto
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
                p.wait()


def main():
    percore = sys.argv[1]
    redis_server = sys.argv[2] if len(sys.argv) > 2 else "redis-server"
    only = os.environ.get("ONLY")
    for name, binary, base in [("percore", percore, 26100), ("redis", redis_server, 26200)]:
        if only and only != name:
            continue
        times, auto = run(binary, base)
        print(f"{name}: manual failover ms median {statistics.median(times):.0f} "
              f"max {max(times):.0f} (n={len(times)}); "
              f"automatic after kill (node timeout {NODE_TIMEOUT_MS} ms) {auto:.0f} ms")


if __name__ == "__main__":
    main()
