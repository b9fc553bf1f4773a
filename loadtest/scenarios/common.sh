# Shared by the scenario scripts (sourced, not run): the repository root as the working
# directory, where the binaries are, and small helpers.
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

PERCORE=${PERCORE:-target/release/percore}
LT=${LT:-target/release/percore-loadtest}
# Servers run on SERVER_CPU, the load generator on CLIENT_CPU, so they never share a core.
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}

# require_binaries PATH...: stop with the build command when one is missing.
require_binaries() {
  for b in "$@"; do
    [ -x "$b" ] || { echo "build first: cargo build --release --bin percore --bin percore-loadtest (or make bench)" >&2; exit 2; }
  done
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# CPU seconds (user + system) a live process has used.
cpu_seconds() { awk -v hz="$(getconf CLK_TCK)" '{printf "%.2f", ($14+$15)/hz}' "/proc/$1/stat"; }

# require_redis_cli: stop with the install command when redis-cli is missing.
require_redis_cli() {
  command -v redis-cli >/dev/null 2>&1 || { echo "needs redis-cli (apt-get install -y redis-tools)" >&2; exit 2; }
}

# The servers a side-by-side scenario runs: percore, and redis when redis-server is installed.
servers_with_redis() {
  if command -v redis-server >/dev/null 2>&1; then echo "percore redis"; else echo "percore"; fi
}

# side_by_side: the binaries and redis-cli are there; sets `servers` to percore and, when
# installed, redis-server.
side_by_side() {
  require_binaries "$PERCORE" "$LT"
  require_redis_cli
  servers=$(servers_with_redis)
}

# start_one_shard SERVER PORT: percore with one shard, or redis-server without persistence,
# pinned to SERVER_CPU with output discarded; waits until it answers and sets `server_pid`.
start_one_shard() {
  case "$1" in
    percore) taskset -c "$SERVER_CPU" "$PERCORE" --port "$2" --shards 1 >/dev/null 2>&1 & ;;
    redis) taskset -c "$SERVER_CPU" redis-server --port "$2" --bind 127.0.0.1 --save "" --appendonly no >/dev/null 2>&1 & ;;
    *) echo "unknown server '$1': percore or redis" >&2; return 2 ;;
  esac
  server_pid=$!
  until redis-cli -p "$2" ping >/dev/null 2>&1; do sleep 0.05; done
}

# start_server SERVER SHARDS PORT LOG: percore with SHARDS shards, redis-server or
# valkey-server, without persistence, pinned to SERVER_CPU, output to LOG; sets SERVER_PID.
# False when it exits or does not answer within 10 s.
start_server() {
  case "$1" in
    percore) taskset -c "$SERVER_CPU" "$PERCORE" --port "$3" --shards "$2" --save "" >"$4" 2>&1 & ;;
    redis) taskset -c "$SERVER_CPU" redis-server --port "$3" --bind 127.0.0.1 --save "" --appendonly no >"$4" 2>&1 & ;;
    valkey) taskset -c "$SERVER_CPU" valkey-server --port "$3" --bind 127.0.0.1 --save "" --appendonly no >"$4" 2>&1 & ;;
    *) echo "unknown server '$1': percore, redis or valkey" >&2; return 2 ;;
  esac
  SERVER_PID=$!
  for _ in $(seq 200); do
    redis-cli -p "$3" ping >/dev/null 2>&1 && return 0
    kill -0 "$SERVER_PID" 2>/dev/null || return 1
    sleep 0.05
  done
  return 1
}

# growth_fill PORT KEYS [percore-loadtest options...]: SETs KEYS distinct keys (16-byte keys,
# 32-byte values) from 4 connections at pipeline 16, the generator pinned to CLIENT_CPU.
growth_fill() {
  local port=$1 keys=$2
  shift 2
  taskset -c "$CLIENT_CPU" "$LT" -p "$port" -t 1 -c 4 --pipeline=16 --ratio=1:0 --key-pattern=P:P \
    --key-prefix=key: --key-minimum=100000000000 --key-maximum=$((100000000000 + keys - 1)) \
    -n allkeys -d 32 --no-progress --hide-histogram "$@" >/dev/null
}

# gen_resp KIND N: the RESP of the fill.
# - small N: N hashes, 10 pairs per HSET. Keys "hash:" + 11 digits (16 bytes), fields
#   field:00..field:09, values "v" + 12 digits + "-" + 2 digits.
# - large N: one hash "bighash" of N fields, 10 pairs per HSET. Fields "f" + 7 digits, values
#   "v" + 15 digits.
# - sets N: N sets of 20 small integers, one SADD each.
# - lists N: N lists of 10 elements, one RPUSH each. Keys "list:" + 11 digits, elements "e" +
#   12 digits + "-" + 2 digits.
# - biglist N: one list "biglist" of N elements, 10 per RPUSH. Elements "e" + 15 digits.
# - zsets N: N sorted sets of 10 members, one ZADD each. Keys "zset:" + 11 digits, members
#   "member:00".."member:09", scores 0-99 (varying per set).
# - bigzset N: one sorted set "bigzset" of N members, 10 per ZADD. Members "m" + 15 digits,
#   scores spread over 0-1000002 in no particular order.
# - bitmaps N: N bitmaps of 1 KB, one SETBIT at offset 8191 each. Keys "bitmap:" + 9 digits.
# - hlls N: N HyperLogLogs, one PFADD of 1000 elements each. Keys "hll:" + 12 digits,
#   elements "b" + 2 digits + "-e" + 4 digits, from block (key number mod 64).
# No field, value or list element parses as an integer, so no server stores one as a number.
gen_resp() {
  python3 - "$1" "$2" <<'PY'
import sys
mode, n = sys.argv[1], int(sys.argv[2])
out = sys.stdout.buffer
chunk = []
def flush():
    out.write(b"".join(chunk))
    chunk.clear()
if mode == "small":
    fmt = (b"*22\r\n$4\r\nHSET\r\n$16\r\nhash:%011d\r\n"
           + b"".join(b"$8\r\nfield:%02d\r\n$16\r\nv%%012d-%02d\r\n" % (j, j) for j in range(10)))
    for i in range(n):
        chunk.append(fmt % ((i,) * 11))
        if len(chunk) == 10000:
            flush()
elif mode == "sets":
    # 20 distinct small integers per set (an intset of 2-byte members on every server).
    head = b"*22\r\n$4\r\nSADD\r\n$16\r\nset:%012d\r\n"
    for i in range(n):
        members = [b"%d" % (j * 1500 + i % 1500) for j in range(20)]
        chunk.append(head % i + b"".join(b"$%d\r\n%s\r\n" % (len(m), m) for m in members))
        if len(chunk) == 10000:
            flush()
elif mode == "lists":
    fmt = (b"*12\r\n$5\r\nRPUSH\r\n$16\r\nlist:%011d\r\n"
           + b"".join(b"$16\r\ne%%012d-%02d\r\n" % j for j in range(10)))
    for i in range(n):
        chunk.append(fmt % ((i,) * 11))
        if len(chunk) == 10000:
            flush()
elif mode == "zsets":
    head = b"*22\r\n$4\r\nZADD\r\n$16\r\nzset:%011d\r\n"
    for i in range(n):
        pairs = []
        for j in range(10):
            s = b"%d" % ((j * 7 + i) % 100)
            pairs.append(b"$%d\r\n%s\r\n$9\r\nmember:%02d\r\n" % (len(s), s, j))
        chunk.append(head % i + b"".join(pairs))
        if len(chunk) == 10000:
            flush()
elif mode == "bitmaps":
    assert n <= 10**9, "keys are bitmap: + 9 digits"
    fmt = b"*4\r\n$6\r\nSETBIT\r\n$16\r\nbitmap:%09d\r\n$4\r\n8191\r\n$1\r\n1\r\n"
    for i in range(n):
        chunk.append(fmt % i)
        if len(chunk) == 10000:
            flush()
elif mode == "bigzset":
    assert n <= 10**15, "members are m + 15 digits"
    for start in range(0, n, 10):
        m = min(10, n - start)
        parts = [b"*%d\r\n$4\r\nZADD\r\n$7\r\nbigzset\r\n" % (2 + 2 * m)]
        for e in range(start, start + m):
            s = b"%d" % (e * 7919 % 1000003)
            parts.append(b"$%d\r\n%s\r\n$16\r\nm%015d\r\n" % (len(s), s, e))
        chunk.append(b"".join(parts))
        if len(chunk) == 10000:
            flush()
elif mode == "hlls":
    blocks = [b"".join(b"$9\r\nb%02d-e%04d\r\n" % (b, j) for j in range(1000)) for b in range(64)]
    head = b"*1002\r\n$5\r\nPFADD\r\n$16\r\nhll:%012d\r\n"
    for i in range(n):
        chunk.append(head % i + blocks[i % 64])
        if len(chunk) == 1000:
            flush()
elif mode == "biglist":
    assert n <= 10**15, "elements are e + 15 digits"
    for start in range(0, n, 10):
        m = min(10, n - start)
        chunk.append(b"*%d\r\n$5\r\nRPUSH\r\n$7\r\nbiglist\r\n" % (2 + m)
                     + b"".join(b"$16\r\ne%015d\r\n" % e for e in range(start, start + m)))
        if len(chunk) == 10000:
            flush()
else:
    assert n < 10**7, "fields are f + 7 digits"
    for start in range(0, n, 10):
        m = min(10, n - start)
        parts = [b"*%d\r\n$4\r\nHSET\r\n$7\r\nbighash\r\n" % (2 + 2 * m)]
        for f in range(start, start + m):
            parts.append(b"$8\r\nf%07d\r\n$16\r\nv%015d\r\n" % (f, f))
        chunk.append(b"".join(parts))
        if len(chunk) == 10000:
            flush()
flush()
PY
}
