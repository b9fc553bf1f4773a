#!/usr/bin/env bash
# What a burst of connections leaves resident in an idle percore: one shard pinned to
# SERVER_CPU; memtier_benchmark (on CLIENT_CPU) opens CONNS connections (THREADS threads)
# and runs pipelined SET/GET over a small key space for LOAD_S seconds, then disconnects.
# Reported: RSS and used_memory before the burst, RSS at its end, and both again after
# SETTLE_S idle seconds (the network ring's provided buffers, the connections' buffers).
#
# Environment: PERCORE, CONNS (500), THREADS (5), PIPELINE (16), DATA_SIZE (32), LOAD_S (5), SETTLE_S (4),
# LABEL (the row's name; default the binary's path), SERVER_CPU, CLIENT_CPU (common.sh).
set -euo pipefail
source "$(dirname "$0")/common.sh"
require_binaries "$PERCORE"
require_redis_cli
command -v memtier_benchmark >/dev/null || { echo "needs memtier_benchmark" >&2; exit 2; }
CONNS=${CONNS:-500}
THREADS=${THREADS:-5}
PIPELINE=${PIPELINE:-16}
LOAD_S=${LOAD_S:-5}
SETTLE_S=${SETTLE_S:-4}
LABEL=${LABEL:-$PERCORE}
DATA_SIZE=${DATA_SIZE:-32}

port=$(free_port)
taskset -c "$SERVER_CPU" "$PERCORE" --port "$port" --shards 1 >/dev/null 2>&1 &
pid=$!
trap 'kill "$pid" 2>/dev/null || true' EXIT
until redis-cli -p "$port" ping >/dev/null 2>&1; do sleep 0.05; done
rss_kib() { awk '/^VmRSS/{print $2}' "/proc/$pid/status"; }
used_kib() { redis-cli -p "$port" info memory | awk -F: '/^used_memory:/{printf "%d", $2 / 1024}'; }

rss0=$(rss_kib); used0=$(used_kib)
taskset -c "$CLIENT_CPU" memtier_benchmark -p "$port" -t "$THREADS" -c $((CONNS / THREADS)) \
  --pipeline "$PIPELINE" --test-time "$LOAD_S" --ratio 1:1 --data-size "$DATA_SIZE" \
  --key-maximum 10000 --hide-histogram >/dev/null 2>&1
rss1=$(rss_kib)
sleep "$SETTLE_S"
rss2=$(rss_kib); used2=$(used_kib)
redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true
wait "$pid" 2>/dev/null || true
trap - EXIT
echo "| $LABEL | $rss0 | $used0 | $rss1 | $rss2 | $used2 | $((rss2 - rss0)) |"
