#!/usr/bin/env bash
# Bytes per key: load KEYS keys (16-byte keys, 32-byte values, as the cache-memory issue
# defines the workload) into percore and into redis-server, then report RSS and used_memory
# per key side by side. `make bench-memory`.
#
# Environment: COUNTS ("1000000 10000000"), SHARDS (percore shards, 1), SERVER_CPU (0),
# CLIENT_CPU (1).
set -euo pipefail
# shellcheck source=common.sh
. "$(dirname "$0")/common.sh"
require_binaries "$PERCORE" "$LT"

COUNTS=${COUNTS:-"1000000 10000000"}
SHARDS=${SHARDS:-1}
servers=$(servers_with_redis)

info() { # port field (needs redis-cli; empty without it)
  if command -v redis-cli >/dev/null 2>&1; then
    redis-cli -p "$1" info memory | tr -d '\r' | sed -n "s/^$2://p"
  fi
}
rss_bytes() { awk '/^VmRSS:/ { print $2 * 1024 }' "/proc/$1/status"; }

echo "| server | keys | RSS bytes/key | used_memory bytes/key | RSS MB |"
echo "|---|---:|---:|---:|---:|"
for count in $COUNTS; do
  for server in $servers; do
    port=$(free_port)
    case "$server" in
      percore) taskset -c "$SERVER_CPU" "$PERCORE" --port "$port" --shards "$SHARDS" >/dev/null 2>&1 & ;;
      redis) taskset -c "$SERVER_CPU" redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no >/dev/null 2>&1 & ;;
    esac
    pid=$!
    until "$LT" -p "$port" -t 1 -c 1 -n 1 --ratio=0:1 --no-progress >/dev/null 2>&1; do sleep 0.05; done
    base=$(rss_bytes "$pid")
    base_used=$(info "$port" used_memory)
    # Keys "key:" + 12 digits = 16 bytes; values 32 bytes.
    taskset -c "$CLIENT_CPU" "$LT" -p "$port" -t 1 -c 20 --pipeline=32 --ratio=1:0 --key-pattern=P:P \
      --key-prefix=key: --key-minimum=100000000000 --key-maximum=$((100000000000 + count - 1)) \
      -n allkeys -d 32 --no-progress --hide-histogram >/dev/null
    sleep 1
    rss=$(rss_bytes "$pid")
    used=$(info "$port" used_memory)
    awk -v s="$server" -v n="$count" -v r="$rss" -v r0="$base" -v u="$used" -v u0="$base_used" \
      'BEGIN { printf "| %s | %d | %.1f | %s | %.0f |\n", s, n, (r - r0) / n, (u == "" ? "–" : sprintf("%.1f", (u - u0) / n)), r / 1048576 }'
    kill "$pid"; wait "$pid" 2>/dev/null || true
  done
done
