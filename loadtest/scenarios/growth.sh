#!/usr/bin/env bash
# Latency while a table grows: fill KEYS distinct keys (16-byte keys, 32-byte values) into an
# empty server from 4 connections at pipeline 16, and report the client's p99.99 and maximum
# latency with the server's own view (SLOWLOG entries of 1 ms or more, and the longest).
# percore has 1 shard, so one core's table grows from empty to KEYS entries through every
# doubling. `make bench-growth`.
#
# Before each fill, the machine's own latency floor: `redis-cli --intrinsic-latency` runs on
# SERVER_CPU and CLIENT_CPU at once (each keeps the other busy, as server and generator do
# during a fill) and reports the longest time its loop was kept off its CPU. No server can
# show a worst-case latency below that floor on the same machine; on a VM it includes
# kernel threads and the host's preemption of the vCPU, which no process can see or avoid.
#
# FILL=bigzset grows one sorted set instead (issue 16's latency check: ZADD into a set
# growing to KEYS members never holds a command >= 1 ms at the server): `bigzset` of
# `gen_resp` (common.sh), 16-byte members with scores in no particular order, 10 per ZADD,
# the same RESP bytes for every server, sent with `redis-cli --pipe` (one connection, as
# fast as the server answers). redis-cli reports no latencies, so the client columns are
# empty and ops/s counts ZADD calls.
#
# LATENCY_CLOCK=thread-cpu runs percore with `latency-clock thread-cpu`: its SLOWLOG then
# times each command in the core thread's CPU time, which leaves out the times the host
# takes the vCPU away (the floor above), so the server columns show percore's own work on a
# machine whose floor is over 1 ms. Redis has no such clock; its rows stay elapsed time.
#
# Environment: KEYS (10000000), FILL (strings | bigzset), ROUNDS (2), SERVER_CPU (0),
# CLIENT_CPU (1), FLOOR_SECONDS (10; 0 skips the floor), LATENCY_CLOCK (wall | thread-cpu).
set -euo pipefail
# shellcheck source=common.sh
. "$(dirname "$0")/common.sh"
side_by_side

KEYS=${KEYS:-10000000}
ROUNDS=${ROUNDS:-2}
FILL=${FILL:-strings}
case "$FILL" in strings | bigzset) ;; *) echo "FILL is strings or bigzset, not '$FILL'" >&2; exit 2 ;; esac
resp=
if [ "$FILL" = bigzset ]; then
  require_redis_cli
  resp=$(mktemp)
  trap 'rm -f "$resp"' EXIT
  gen_resp bigzset "$KEYS" >"$resp"
fi
FLOOR_SECONDS=${FLOOR_SECONDS:-10}
LATENCY_CLOCK=${LATENCY_CLOCK:-wall}
case "$LATENCY_CLOCK" in wall | thread-cpu) ;; *) echo "LATENCY_CLOCK is wall or thread-cpu, not '$LATENCY_CLOCK'" >&2; exit 2 ;; esac

# The longest stall of a busy loop on each CPU in ms, measured on both at once: "S C".
floor() {
  [ "$FLOOR_SECONDS" -gt 0 ] || { echo "- -"; return; }
  local a b
  a=$(mktemp); b=$(mktemp)
  taskset -c "$SERVER_CPU" redis-cli --intrinsic-latency "$FLOOR_SECONDS" >"$a" 2>&1 &
  taskset -c "$CLIENT_CPU" redis-cli --intrinsic-latency "$FLOOR_SECONDS" >"$b" 2>&1
  wait
  for f in "$a" "$b"; do
    tr '\r' '\n' <"$f" | awk '/Max latency so far:/ { m = $5 } END { printf "%.3f ", m / 1000 }'
  done
  echo
  rm -f "$a" "$b"
}

# The longest SLOWLOG entry in µs (the third field of each entry), or 0.
slowest() {
  redis-cli -p "$1" --no-raw slowlog get 100000 | awk '/^ +3\) \(integer\)/ { if ($3 > m) m = $3 } END { print m + 0 }'
}

echo "| server | round | keys | ops/s | p99 ms | p99.99 ms | max ms | commands >= 1 ms (server) | longest command ms (server) | machine floor ms: server CPU / client CPU |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
for round in $(seq "$ROUNDS"); do
  for server in $servers; do
    read -r floor_s floor_c <<<"$(floor)"
    port=$(free_port)
    start_one_shard "$server" "$port"
    pid=$server_pid
    redis-cli -p "$port" config set slowlog-log-slower-than 1000 >/dev/null
    redis-cli -p "$port" config set slowlog-max-len 100000 >/dev/null
    label=$server
    if [ "$server" = percore ] && [ "$LATENCY_CLOCK" != wall ]; then
      redis-cli -p "$port" config set latency-clock "$LATENCY_CLOCK" >/dev/null
      label="percore ($LATENCY_CLOCK clock)"
    fi
    json=$(mktemp)
    if [ "$FILL" = bigzset ]; then
      t0=$(date +%s.%N)
      taskset -c "$CLIENT_CPU" redis-cli -p "$port" --pipe <"$resp" | grep -q '^errors: 0,' ||
        { echo "$server: the ZADD fill had errors" >&2; exit 1; }
      t1=$(date +%s.%N)
      got=$(redis-cli -p "$port" zcard bigzset)
      [ "$got" = "$KEYS" ] || { echo "$server: ZCARD $got, expected $KEYS" >&2; exit 1; }
      python3 -c 'import json, sys; json.dump({"ops_per_sec": int(sys.argv[1]) / 10 / (float(sys.argv[3]) - float(sys.argv[2]))}, open(sys.argv[4], "w"))' \
        "$KEYS" "$t0" "$t1" "$json"
    else
      growth_fill "$port" "$KEYS" --json "$json"
    fi
    n=$(redis-cli -p "$port" slowlog len)
    worst=$(slowest "$port")
    python3 - "$json" "$label" "$round" "$KEYS" "$n" "$worst" "$floor_s" "$floor_c" <<'PY'
import json, sys
path, server, rnd, keys, n, worst, floor_s, floor_c = sys.argv[1:]
j = json.load(open(path))
lat = j.get("commands", {}).get("total", {}).get("latency_ms")
cols = f"{lat['p99']:.3f} | {lat['p99_99']:.3f} | {lat['max']:.3f}" if lat else "- | - | -"
print(f"| {server} | {rnd} | {int(keys):,} | {j['ops_per_sec']:,.0f} | {cols} | {n} | {int(worst) / 1000:.3f} | {floor_s} / {floor_c} |")
PY
    rm -f "$json"
    kill "$pid"; wait "$pid" 2>/dev/null || true
  done
done
