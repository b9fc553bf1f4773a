#!/usr/bin/env bash
# percore beside redis-server under memtier_benchmark, on one machine, in one run.
#
# Each server runs pinned to SERVER_CPU, memtier_benchmark to CLIENT_CPU; servers alternate
# (A B A B ...) so drift on a noisy machine hits both. For every run it reports ops/s,
# p50/p99/p99.9 latency and the server's CPU seconds per million operations (from /proc).
#
# Environment: TEST_TIME (s, default 60), PIPELINES ("1 32"), ROUNDS (2), THREADS (1),
# CLIENTS (50), RATIO (1:10), DATA_SIZE (32), KEYS (100000), SHARDS (percore shards, 1),
# SERVER_CPU (0), CLIENT_CPU (1), OUT (results directory).
set -euo pipefail
# shellcheck source=common.sh
. "$(dirname "$0")/common.sh"

if ! command -v memtier_benchmark >/dev/null 2>&1; then
  echo "memtier_benchmark is not on PATH: build it from its source (RedisLabs/memtier_benchmark)" >&2
  echo "outside this repository, put it on PATH, and run this again. Nothing was measured." >&2
  exit 2
fi
require_binaries "$PERCORE"

TEST_TIME=${TEST_TIME:-60}
PIPELINES=${PIPELINES:-"1 32"}
ROUNDS=${ROUNDS:-2}
THREADS=${THREADS:-1}
CLIENTS=${CLIENTS:-50}
RATIO=${RATIO:-1:10}
DATA_SIZE=${DATA_SIZE:-32}
KEYS=${KEYS:-100000}
SHARDS=${SHARDS:-1}
OUT=${OUT:-$(mktemp -d)}
mkdir -p "$OUT"

cpu_ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
wait_ready() {
  for _ in $(seq 200); do
    if [ "$(redis-cli -p "$1" ping 2>/dev/null)" = PONG ]; then return 0; fi
    sleep 0.05
  done
  echo "server on port $1 did not start" >&2; return 1
}

start_server() { # name port -> pid
  case "$1" in
    percore) taskset -c "$SERVER_CPU" "$PERCORE" --port "$2" --shards "$SHARDS" >"$OUT/$1.log" 2>&1 & ;;
    redis) taskset -c "$SERVER_CPU" redis-server --port "$2" --bind 127.0.0.1 --save "" --appendonly no >"$OUT/$1.log" 2>&1 & ;;
  esac
  echo $!
}

servers="percore"
if command -v redis-server >/dev/null 2>&1; then servers="percore redis"; else echo "redis-server not installed: measuring percore alone" >&2; fi

echo "| server | pipeline | round | ops/s | p50 ms | p99 ms | p99.9 ms | server CPU s / 1M ops | connection errors |"
echo "|---|---|---|---|---|---|---|---|---|"
for pipeline in $PIPELINES; do
  for round in $(seq "$ROUNDS"); do
    for name in $servers; do
      port=$(free_port)
      pid=$(start_server "$name" "$port")
      wait_ready "$port"
      # Fill every key once so GETs hit.
      taskset -c "$CLIENT_CPU" memtier_benchmark -s 127.0.0.1 -p "$port" -t 1 -c 10 --ratio=1:0 \
        --key-pattern=P:P --key-maximum="$KEYS" -n allkeys -d "$DATA_SIZE" --hide-histogram >/dev/null 2>&1
      before=$(cpu_ticks "$pid")
      json="$OUT/$name-p$pipeline-r$round.json"
      taskset -c "$CLIENT_CPU" memtier_benchmark -s 127.0.0.1 -p "$port" -t "$THREADS" -c "$CLIENTS" \
        --pipeline="$pipeline" --ratio="$RATIO" -d "$DATA_SIZE" --key-maximum="$KEYS" --key-pattern=R:R \
        --test-time="$TEST_TIME" --distinct-client-seed --hide-histogram --json-out-file="$json" >"$OUT/$name-p$pipeline-r$round.txt" 2>&1
      after=$(cpu_ticks "$pid")
      kill "$pid"; wait "$pid" 2>/dev/null || true
      python3 - "$json" "$name" "$pipeline" "$round" "$before" "$after" <<'PY'
import json, os, sys
path, name, pipeline, rnd, before, after = sys.argv[1:]
t = json.load(open(path))["ALL STATS"]["Totals"]
ops = t["Ops/sec"]
lat = t.get("Percentile Latencies", {})
total_ops = ops * float(os.environ.get("TEST_TIME", "60"))
cpu_s = (int(after) - int(before)) / os.sysconf("SC_CLK_TCK")
per_m = cpu_s / (total_ops / 1e6) if total_ops else float("nan")
errors = t.get("Connection Errors", 0)
print(f"| {name} | {pipeline} | {rnd} | {ops:,.0f} | {lat.get('p50.00', 0):.3f} | {lat.get('p99.00', 0):.3f} | {lat.get('p99.90', 0):.3f} | {per_m:.2f} | {errors} |")
PY
    done
  done
done
echo
echo "raw memtier output and JSON: $OUT"
