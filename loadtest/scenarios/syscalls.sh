#!/usr/bin/env bash
# System calls per request at pipeline 1, percore beside redis-server (and valkey-server when
# installed): each server pinned to SERVER_CPU and alone there, percore-loadtest on
# CLIENT_CPU with 50 connections at pipeline 1 (1:10 SET:GET) for TEST_TIME seconds, while
# `perf stat -e 'syscalls:sys_enter_*'` counts the server's system calls. Also counts the
# idle server's voluntary context switches over IDLE seconds (wake-ups of an idle server).
# Needs root and perf. Writes OUT/syscalls.md. `make bench-syscalls` runs it.
set -euo pipefail
# shellcheck source=common.sh
. "$(dirname "$0")/common.sh"
require_binaries "$PERCORE" "$LT"
command -v perf >/dev/null 2>&1 || { echo "needs perf (apt-get install -y linux-perf)" >&2; exit 2; }
TEST_TIME=${TEST_TIME:-10}
IDLE=${IDLE:-10}
OUT=${OUT:-loadtest/results/$(date +%F)}
mkdir -p "$OUT/raw"

servers="percore"
for peer in redis-server valkey-server; do
  command -v "$peer" >/dev/null 2>&1 && servers="$servers ${peer%-server}"
done

start() { # server port
  case "$1" in
    percore) taskset -c "$SERVER_CPU" "$PERCORE" --port "$2" --shards 1 >/dev/null 2>&1 & ;;
    redis | valkey) taskset -c "$SERVER_CPU" "$1-server" --port "$2" --bind 127.0.0.1 --save "" --appendonly no >/dev/null 2>&1 & ;;
  esac
  pid=$!
  until "$LT" -p "$2" -t 1 -c 1 -n 1 --ratio=0:1 --no-progress >/dev/null 2>&1; do sleep 0.05; done
}

# Voluntary context switches of every thread of a process.
switches() { cat /proc/"$1"/task/*/status | awk '/^voluntary_ctxt_switches/ { s += $2 } END { print s }'; }

{
  echo "# System calls per request, $(date -u '+%F %T UTC')"
  echo
  echo "$(uname -srm), $(nproc) CPUs; server on CPU $SERVER_CPU, percore-loadtest on CPU $CLIENT_CPU;"
  echo "50 connections, pipeline 1, 1:10 SET:GET, 32-byte values, ${TEST_TIME} s; percore with 1 shard."
  echo
  echo "| server | requests | syscalls per request | io_uring_enter per request | top calls per request | idle wake-ups/s |"
  echo "|---|---:|---:|---:|---|---:|"
} >"$OUT/syscalls.md"

for server in $servers; do
  port=$(free_port)
  start "$server" "$port"
  s0=$(switches "$pid")
  sleep "$IDLE"
  idle=$(awk -v a="$s0" -v b="$(switches "$pid")" -v t="$IDLE" 'BEGIN { printf "%.1f", (b - a) / t }')
  perf stat -e 'syscalls:sys_enter_*' -p "$pid" -x, -o "$OUT/raw/syscalls-$server.perf" -- sleep "$((TEST_TIME + 1))" &
  perf_pid=$!
  sleep 0.5
  taskset -c "$CLIENT_CPU" "$LT" -p "$port" -t 1 -c 50 --pipeline=1 --ratio=1:10 -d 32 --key-maximum=100000 \
    --test-time="$TEST_TIME" --no-progress --hide-histogram --json "$OUT/raw/syscalls-$server.json" >/dev/null
  wait "$perf_pid"
  kill "$pid"; wait "$pid" 2>/dev/null || true
  reqs=$(sed -n 's/^  "requests": \([0-9]*\),*$/\1/p' "$OUT/raw/syscalls-$server.json")
  if [ -z "$reqs" ]; then
    reqs=$(awk -v o="$(sed -n 's/^  "ops_per_sec": \([0-9.]*\),*$/\1/p' "$OUT/raw/syscalls-$server.json")" -v t="$TEST_TIME" 'BEGIN { printf "%d", o * t }')
  fi
  awk -F, -v reqs="$reqs" -v server="$server" -v idle="$idle" '
    $1 ~ /^[0-9]+$/ && $3 ~ /sys_enter_/ { n = $1; name = $3; sub(/.*sys_enter_/, "", name); total += n; if (n > 0) calls[name] = n }
    END {
      top = ""; k = 0
      while (k < 4) { best = ""; for (c in calls) if (best == "" || calls[c] > calls[best]) best = c
        if (best == "") break; top = top (k ? ", " : "") sprintf("%s %.2f", best, calls[best] / reqs); delete calls[best]; k++ }
      enters = 0
      printf "| %s | %d | %.2f | %s | %s | %s |\n", server, reqs, total / reqs, "", top, idle
    }' "$OUT/raw/syscalls-$server.perf" >>"$OUT/syscalls.md"
  echo "$server done" >&2
done
# io_uring_enter per request, filled in from the same counts.
for server in $servers; do
  reqs_line=$(grep "^| $server |" "$OUT/syscalls.md" | awk -F'|' '{ print $3 }' | tr -d ' ')
  enters=$(awk -F, '$3 ~ /sys_enter_io_uring_enter$/ { print $1 }' "$OUT/raw/syscalls-$server.perf")
  per=$(awk -v e="${enters:-0}" -v r="$reqs_line" 'BEGIN { printf "%.2f", e / r }')
  sed -i "s/^| $server | \([0-9]*\) | \([0-9.]*\) |  |/| $server | \1 | \2 | $per |/" "$OUT/syscalls.md"
done
cat "$OUT/syscalls.md"
