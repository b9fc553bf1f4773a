#!/usr/bin/env bash
# CPU per command on a list of N elements ("e" + 15 digits), at its middle and its ends:
# percore and redis-server each with list-compress-depth 0 and 1, one at a time, the server
# under SCHED_FIFO on SERVER_CPU, redis-benchmark (one connection; the cheap commands
# pipelined 32 deep, the scans not) under SCHED_FIFO on CLIENT_CPU. CPU = the server's
# threads' run time (/proc/PID/task/*/schedstat) over the run, divided by the commands.
# Run from the repository root: loadtest/results/2026-12-03/list-compress-cpu.sh
set -euo pipefail
PERCORE=${PERCORE:-target/release/percore}
N=${N:-1000000}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"; [ -z "${pid:-}" ] || kill "$pid" 2>/dev/null || true' EXIT
python3 - "$N" >"$tmp/fill.resp" <<'PY'
import sys
n = int(sys.argv[1]); out = sys.stdout.buffer
for start in range(0, n, 10):
    m = min(10, n - start)
    out.write(b"*%d\r\n$5\r\nRPUSH\r\n$1\r\nL\r\n" % (2 + m)
              + b"".join(b"$16\r\ne%015d\r\n" % e for e in range(start, start + m)))
PY
cpu_ns() { cat /proc/"$1"/task/*/schedstat | awk '{ s += $1 } END { print s }'; }
mid=$((N / 2))
pivot=$(printf 'e%015d' "$mid")
# count|pipeline|command: the cheap commands pipelined 32 deep, so the per-request cost of
# the network path does not hide their own.
ops=(
  "200000|32|LINDEX L $mid"
  "200000|32|LSET L $mid $pivot"
  "200000|32|LRANGE L $mid $((mid + 9))"
  "200000|32|LINDEX L 5"
  "200000|32|LRANGE L 0 9"
  "200000|32|RPUSH L e999999999999999"
  "200000|32|RPOP L"
  "100|1|LINSERT L BEFORE $pivot x"
  "100|1|LREM L 1 x"
  "100|1|LPOS L $pivot"
)
echo "| server | depth | used_memory bytes/element | $(for o in "${ops[@]}"; do printf '%s | ' "${o##*|}"; done)"
echo "|---|---:|---:|$(for o in "${ops[@]}"; do printf -- '---:|'; done)"
for server in percore redis; do
  for depth in 0 1; do
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    case $server in
      percore) chrt -f 50 taskset -c "$SERVER_CPU" "$PERCORE" --bind 127.0.0.1 --port "$port" --shards 1 --list-compress-depth "$depth" >/dev/null 2>&1 & ;;
      redis) chrt -f 50 taskset -c "$SERVER_CPU" redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --list-compress-depth "$depth" >/dev/null 2>&1 & ;;
    esac
    pid=$!
    until redis-cli -p "$port" ping >/dev/null 2>&1; do sleep 0.05; done
    u0=$(redis-cli -p "$port" info memory | tr -d '\r' | sed -n 's/^used_memory://p')
    taskset -c "$CLIENT_CPU" redis-cli -p "$port" --pipe <"$tmp/fill.resp" >/dev/null
    u1=$(redis-cli -p "$port" info memory | tr -d '\r' | sed -n 's/^used_memory://p')
    row="| $server | $depth | $(awk -v a="$u0" -v b="$u1" -v n="$N" 'BEGIN { printf "%.1f", (b - a) / n }') |"
    for o in "${ops[@]}"; do
      n=${o%%|*}; rest=${o#*|}; pipe=${rest%%|*}; cmd=${rest#*|}
      c0=$(cpu_ns "$pid")
      # shellcheck disable=SC2086
      chrt -f 50 taskset -c "$CLIENT_CPU" redis-benchmark -p "$port" -c 1 -P "$pipe" -n "$n" -q $cmd >/dev/null
      c1=$(cpu_ns "$pid")
      row="$row $(awk -v a="$c0" -v b="$c1" -v n="$n" 'BEGIN { printf "%.1f", (b - a) / n / 1000 }') |"
    done
    echo "$row"
    kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""
  done
done
