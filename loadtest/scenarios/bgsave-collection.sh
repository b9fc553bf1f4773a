#!/usr/bin/env bash
# What a BGSAVE costs the clients of a server holding one large collection.
#
# Each server (percore with one shard, and redis-server when installed) runs alone, pinned
# to SERVER_CPU, with the slow log at 1 ms. It is filled with one list of ELEMENTS 16-byte
# elements (RPUSH, 10 per command, through `redis-cli --pipe` on CLIENT_CPU). Then:
#   1. BGSAVE, and at once LPUSHes to the list for PROBE_S seconds, one at a time, timing
#      each round trip: the first write to the list after BGSAVE makes percore copy the list
#      before writing (copy-before-write); Redis forks.
#   2. After that save, BGSAVE again and PINGs for PROBE_S seconds: percore's background
#      walk reaches the list and serializes it on the core; Redis's child does.
# Reported per server: the slowest round trip of each phase and the slow log's entries.
#
# TYPE=set, TYPE=hash or TYPE=zset fills a set (SADD), a hash (HSET, 16-byte fields and
# values) or a sorted set (ZADD, scores in a scattered order) instead, and the first phase
# writes to it with SADD, HSET or ZADD.
#
# Environment: ELEMENTS (10000000), TYPE (list), PROBE_S (3), PERCORE, SERVER_CPU,
# CLIENT_CPU (common.sh).
set -euo pipefail
source "$(dirname "$0")/common.sh"
require_binaries "$PERCORE"
require_redis_cli
ELEMENTS=${ELEMENTS:-10000000}
PROBE_S=${PROBE_S:-3}
TYPE=${TYPE:-list}
case $TYPE in
  list) write='LPUSH big x'; size=llen ;;
  set) write='SADD big x'; size=scard ;;
  hash) write='HSET big x y'; size=hlen ;;
  zset) write='ZADD big 1 x'; size=zcard ;;
  *) echo "TYPE is list, set, hash or zset" >&2; exit 2 ;;
esac
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

python3 - "$ELEMENTS" "$TYPE" >"$work/fill.resp" <<'EOF'
import sys
n, kind = int(sys.argv[1]), sys.argv[2]
out = sys.stdout.buffer
cmd = {"list": b"RPUSH", "set": b"SADD", "hash": b"HSET", "zset": b"ZADD"}[kind]
for i in range(0, n, 10):
    elems = [b"e%015d" % (i + j) for j in range(min(10, n - i))]
    if kind == "hash":
        elems = [x for e in elems for x in (e, b"v" + e[1:])]
    if kind == "zset":
        elems = [x for j, e in enumerate(elems) for x in (b"%d" % ((i + j) * 7919 % n), e)]
    args = [cmd, b"big"] + elems
    out.write(b"*%d\r\n" % len(args))
    for a in args:
        out.write(b"$%d\r\n%s\r\n" % (len(a), a))
EOF

probe() { # probe PORT COMMAND SECONDS: the slowest round trip in ms, after a BGSAVE
  python3 - "$1" "$2" "$3" <<'EOF'
import socket, sys, time
port, cmd, secs = int(sys.argv[1]), sys.argv[2].encode(), float(sys.argv[3])
s = socket.create_connection(("127.0.0.1", port))
def ask(line):
    s.sendall(line + b"\r\n")
    return s.recv(4096)
assert ask(b"BGSAVE").startswith(b"+")
worst, end = 0.0, time.time() + secs
while time.time() < end:
    t = time.time()
    ask(cmd)
    worst = max(worst, time.time() - t)
print(f"{worst * 1000:.1f}")
EOF
}

wait_saved() { # wait_saved PORT: until no background save runs
  until redis-cli -p "$1" info persistence | grep -q '^rdb_bgsave_in_progress:0'; do sleep 0.2; done
}

echo "| server | $TYPE elements | BGSAVE then ${write%% *}: slowest round trip ms | BGSAVE then PING: slowest ms | slow log ≥ 1 ms (µs) |"
echo "|---|---:|---:|---:|---|"
for server in $(servers_with_redis); do
  port=$(free_port)
  mkdir -p "$work/$server"
  case $server in
    percore) taskset -c "$SERVER_CPU" "$PERCORE" --port "$port" --shards 1 --dir "$work/$server" \
               --slowlog-log-slower-than 1000 >/dev/null 2>&1 & ;;
    redis) taskset -c "$SERVER_CPU" redis-server --port "$port" --bind 127.0.0.1 --dir "$work/$server" \
             --save "" --appendonly no --slowlog-log-slower-than 1000 >/dev/null 2>&1 & ;;
  esac
  pid=$!
  until redis-cli -p "$port" ping >/dev/null 2>&1; do sleep 0.05; done
  taskset -c "$CLIENT_CPU" redis-cli -p "$port" --pipe <"$work/fill.resp" >/dev/null
  [ "$(redis-cli -p "$port" $size big)" = "$ELEMENTS" ] || { echo "$server: the fill failed" >&2; exit 1; }
  redis-cli -p "$port" slowlog reset >/dev/null
  lpush=$(taskset -c "$CLIENT_CPU" bash -c "$(declare -f probe); probe $port '$write' $PROBE_S")
  wait_saved "$port"
  ping=$(taskset -c "$CLIENT_CPU" bash -c "$(declare -f probe); probe $port PING $PROBE_S")
  wait_saved "$port"
  slow=$(redis-cli -p "$port" slowlog get 10 | paste -sd' ' | grep -oE '[0-9]+ [0-9]+ [0-9]+ [A-Za-z]+' \
           | awk '{print $4 " " $3}' | paste -sd',' || true)
  echo "| $server | $ELEMENTS | $lpush | $ping | ${slow:-none} |"
  redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true
  wait "$pid" 2>/dev/null || true
done
