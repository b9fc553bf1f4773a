#!/usr/bin/env bash
# Snapshots of KEYS keys (16-byte keys, 32-byte values), percore beside redis-server:
# SAVE time and MB/s, load time at restart, and BGSAVE under a steady write load: the
# machine's extra memory while it runs (MemAvailable, so Redis's forked child counts) and
# the load generator's p99 during it against p99 without; then percore importing Redis's
# RDB file on 2 shards (`--import-rdb`). `make bench-snapshot`.
#
# Environment: KEYS (10000000), RATE (writes/s during the BGSAVE runs, 50000), SERVER_CPU
# (0), CLIENT_CPU (1).
set -euo pipefail
# shellcheck source=common.sh
. "$(dirname "$0")/common.sh"
side_by_side

KEYS=${KEYS:-10000000}
RATE=${RATE:-50000}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

avail_kib() { awk '/^MemAvailable:/ { print $2 }' /proc/meminfo; }
now_ms() { date +%s%3N; }
launch() { # server dir port
  case "$1" in
    percore) taskset -c "$SERVER_CPU" "$PERCORE" --port "$3" --shards 1 --dir "$2" >/dev/null 2>&1 & ;;
    redis) taskset -c "$SERVER_CPU" redis-server --port "$3" --bind 127.0.0.1 --dir "$2" --save "" --appendonly no >/dev/null 2>&1 & ;;
  esac
  pid=$!
  until redis-cli -p "$3" ping 2>/dev/null | grep -q PONG; do sleep 0.02; done
}
in_progress() { redis-cli -p "$1" info persistence | tr -d '\r' | sed -n 's/^rdb_bgsave_in_progress://p'; }
p99() { # port seconds -> the generator's p99 (ms) of SETs at RATE/s over the whole keyspace
  taskset -c "$CLIENT_CPU" "$LT" -p "$1" -t 1 -c 50 --ratio=1:0 --key-pattern=R:R --key-prefix=key: \
    --key-minimum=100000000000 --key-maximum=$((100000000000 + KEYS - 1)) -d 32 --rate "$RATE" \
    --test-time "$2" --no-progress --hide-histogram --json "$work/lt.json" >/dev/null
  python3 -c 'import json,sys; print("%.3f" % json.load(open(sys.argv[1]))["commands"]["total"]["latency_ms"]["p99"])' "$work/lt.json"
}

echo "| server | keys | SAVE s | file MB | MB/s | load s | BGSAVE s under writes | extra memory during BGSAVE MB | p99 without / during BGSAVE ms |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
for server in $servers; do
  dir="$work/$server"; mkdir -p "$dir"
  port=$(free_port)
  launch "$server" "$dir" "$port"
  taskset -c "$CLIENT_CPU" "$LT" -p "$port" -t 1 -c 20 --pipeline=32 --ratio=1:0 --key-pattern=P:P \
    --key-prefix=key: --key-minimum=100000000000 --key-maximum=$((100000000000 + KEYS - 1)) \
    -n allkeys -d 32 --no-progress --hide-histogram >/dev/null
  t0=$(now_ms); redis-cli -p "$port" save >/dev/null; t1=$(now_ms)
  save_s=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", (b - a) / 1000 }')
  mb=$(du -sm --apparent-size "$dir" | cut -f1)
  base_p99=$(p99 "$port" 10)
  # BGSAVE while the generator writes; sample the machine's available memory meanwhile.
  before=$(avail_kib)
  ( p99 "$port" 15 > "$work/during" ) &
  gen=$!
  sleep 2
  t0=$(now_ms); redis-cli -p "$port" bgsave >/dev/null
  low=$before
  sleep 0.05
  while [ "$(in_progress "$port")" = "1" ]; do
    a=$(avail_kib); [ "$a" -lt "$low" ] && low=$a
    sleep 0.05
  done
  t1=$(now_ms)
  wait "$gen"
  bg_s=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", (b - a) / 1000 }')
  extra=$(( (before - low) / 1024 ))
  redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true
  wait "$pid" 2>/dev/null || true
  # Load at start: from launch to the first PONG.
  port=$(free_port)
  t0=$(now_ms); launch "$server" "$dir" "$port"; t1=$(now_ms)
  load_s=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", (b - a) / 1000 }')
  keys=$(redis-cli -p "$port" dbsize)
  redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true
  wait "$pid" 2>/dev/null || true
  awk -v s="$server" -v k="$keys" -v sv="$save_s" -v mb="$mb" -v l="$load_s" -v bg="$bg_s" -v x="$extra" \
    -v p0="$base_p99" -v p1="$(cat "$work/during")" \
    'BEGIN { printf "| %s | %d | %s | %d | %.0f | %s | %s | %d | %s / %s |\n", s, k, sv, mb, (sv > 0 ? mb / sv : 0), l, bg, x, p0, p1 }'
done

# RDB import: Redis's file of the run above started by percore with 2 shards (--import-rdb),
# beside Redis's own load of it (the "load s" of its row), from launch to the first PONG.
if [ -f "$work/redis/dump.rdb" ]; then
  mkdir -p "$work/import"
  port=$(free_port)
  t0=$(now_ms)
  taskset -c "$SERVER_CPU,$CLIENT_CPU" "$PERCORE" --port "$port" --shards 2 --dir "$work/import" \
    --import-rdb "$work/redis/dump.rdb" >/dev/null 2>&1 &
  pid=$!
  until redis-cli -p "$port" ping 2>/dev/null | grep -q PONG; do sleep 0.02; done
  t1=$(now_ms)
  keys=$(redis-cli -p "$port" dbsize)
  redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true
  wait "$pid" 2>/dev/null || true
  mb=$(du -m --apparent-size "$work/redis/dump.rdb" | cut -f1)
  awk -v k="$keys" -v mb="$mb" -v a="$t0" -v b="$t1" \
    'BEGIN { printf "\n| RDB import | keys | file MB | load s |\n|---|---:|---:|---:|\n| percore --import-rdb, 2 shards | %d | %d | %.2f |\n", k, mb, (b - a) / 1000 }'
fi
