#!/usr/bin/env bash
# CPU per request at pipeline 1, the connection/dispatch split (issue 14) beside its parent
# and Redis: each server alone on CPU 0 and memtier_benchmark on CPU 1, both SCHED_FIFO;
# server CPU from /proc/PID/stat (utime+stime) around the run. Rounds alternate the servers.
#   usage: connsplit-p1.sh BEFORE_BINARY AFTER_BINARY [ROUNDS]
set -euo pipefail
before=$1 after=$2 rounds=${3:-3}
port=$((20000 + RANDOM % 20000))
tick=$(getconf CLK_TCK)
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }
run() { # name, command...
    local name=$1; shift
    chrt -f 50 taskset -c 0 "$@" >/dev/null 2>&1 &
    local pid=$!
    for _ in $(seq 100); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.05; done
    local c0 out c1 ops
    c0=$(cpu "$pid")
    out=$(chrt -f 50 taskset -c 1 memtier_benchmark -p "$port" --protocol=redis -t 1 -c 50 \
        --pipeline=1 --ratio=1:1 --test-time=10 --hide-histogram 2>/dev/null)
    c1=$(cpu "$pid")
    kill "$pid"; wait "$pid" 2>/dev/null || true
    ops=$(awk '/^Totals/ {print $2}' <<<"$out")
    awk -v n="$name" -v c=$((c1 - c0)) -v t="$tick" -v o="$ops" \
        'BEGIN { printf "%-8s ops/s %9.0f  cpu %5.2f s  us/request %6.3f\n", n, o, c/t, c/t*1e6/(o*10) }'
}
for r in $(seq "$rounds"); do
    run before "$before" --port "$port" --shards 1 --save ""
    run after "$after" --port "$port" --shards 1 --save ""
    run redis redis-server --port "$port" --save "" --appendonly no
done
