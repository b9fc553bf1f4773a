#!/usr/bin/env bash
# Redis Cluster mode: three percore nodes beside three redis-server nodes, each cluster made
# with `redis-cli --cluster create` on 127.0.0.1, all nodes pinned to SERVER_CPU (one core
# each for percore), memtier_benchmark --cluster-mode on CLIENT_CPU for SECONDS seconds (SET:GET
# 1:10, 32-byte values, 4 connections per thread, pipeline 1 and 16). Prints ops/s and the
# nodes' CPU seconds per million requests, summed over the three nodes. Finishes in about
# a minute with the defaults.
# Environment: SECONDS_PER_RUN (10), CLIENTS (4).
set -euo pipefail
# shellcheck source=common.sh
. "$(dirname "$0")/common.sh"
require_binaries "$PERCORE"
require_redis_cli
command -v memtier_benchmark >/dev/null 2>&1 || { echo "needs memtier_benchmark" >&2; exit 2; }
SECONDS_PER_RUN=${SECONDS_PER_RUN:-10}
CLIENTS=${CLIENTS:-4}
servers=$(servers_with_redis)
work=$(mktemp -d)
pids=()
stop_all() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done; pids=(); }
trap 'stop_all; rm -rf "$work"' EXIT

echo "| server | pipeline | ops/s | CPU s per M requests (3 nodes) |"
echo "|---|---:|---:|---:|"
for server in $servers; do
  for pipe in 1 16; do
    ports=()
    for i in 1 2 3; do
      port=$(free_port); bus=$(free_port); dir="$work/$server-$pipe-$i"; mkdir -p "$dir"
      case "$server" in
        percore) taskset -c "$SERVER_CPU" "$PERCORE" --port "$port" --shards 1 --save "" --dir "$dir" \
                   --cluster-enabled yes --cluster-port "$bus" >"$dir/log" 2>&1 & ;;
        redis) taskset -c "$SERVER_CPU" redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no \
                 --dir "$dir" --cluster-enabled yes --cluster-port "$bus" >"$dir/log" 2>&1 & ;;
      esac
      pids+=($!); ports+=("$port")
    done
    for port in "${ports[@]}"; do until redis-cli -p "$port" ping >/dev/null 2>&1; do sleep 0.05; done; done
    redis-cli --cluster create "${ports[@]/#/127.0.0.1:}" --cluster-yes >"$work/create.log" 2>&1 \
      || { cat "$work/create.log" >&2; exit 1; }
    for port in "${ports[@]}"; do
      until redis-cli -p "$port" cluster info | grep -q 'cluster_state:ok'; do sleep 0.05; done
    done
    before=0; for p in "${pids[@]}"; do before=$(awk -v a="$before" -v b="$(cpu_seconds "$p")" 'BEGIN {print a + b}'); done
    out=$(taskset -c "$CLIENT_CPU" memtier_benchmark -s 127.0.0.1 -p "${ports[0]}" --cluster-mode -t 1 -c "$CLIENTS" \
      --pipeline "$pipe" --test-time "$SECONDS_PER_RUN" --ratio 1:10 -d 32 --key-maximum 100000 \
      --hide-histogram 2>/dev/null)
    after=0; for p in "${pids[@]}"; do after=$(awk -v a="$after" -v b="$(cpu_seconds "$p")" 'BEGIN {print a + b}'); done
    ops=$(echo "$out" | awk '/^Totals/ {print $2; exit}')
    awk -v s="$server" -v p="$pipe" -v o="$ops" -v t="$SECONDS_PER_RUN" -v a="$after" -v b="$before" \
      'BEGIN {printf "| %s | %s | %.0f | %.2f |\n", s, p, o, (a - b) * 1e6 / (o * t)}'
    stop_all
  done
done
