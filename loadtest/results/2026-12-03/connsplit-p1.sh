#!/usr/bin/env bash
# CPU per request at pipeline 1, the connection/dispatch split (issue 14) beside its parent
# and Redis: each server alone on CPU 0 and memtier_benchmark on CPU 1, both SCHED_FIFO;
# server CPU from /proc/PID/stat (utime+stime) around the run. Rounds alternate the servers.
# A run during which another real-time task ran (someone else's measurement on the same
# CPUs would starve a server of equal priority) is dropped and run again.
#   usage: connsplit-p1.sh BEFORE_BINARY AFTER_BINARY [ROUNDS]
set -euo pipefail
before=$1 after=$2 rounds=${3:-3}
for tool in memtier_benchmark redis-server redis-cli; do
    command -v "$tool" >/dev/null 2>&1 || { echo "$tool is not on PATH: this comparison needs it" >&2; exit 2; }
done
port=$((20000 + RANDOM % 20000))
tick=$(getconf CLK_TCK)
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# Real-time tasks other than the pids given (kernel threads aside).
others() {
    ps -eo cls=,pid=,args= | awk -v mine=" $* " '($1 == "FF" || $1 == "RR") && $3 !~ /^\[/ \
        && index(mine, " " $2 " ") == 0 { n++ } END { print n + 0 }'
}
quiet() {
    for _ in $(seq 900); do
        [ "$(others)" = 0 ] && return
        sleep 1
    done
    echo "other real-time tasks kept running" >&2
    exit 1
}
server= load=
trap 'kill $server $load 2>/dev/null || true' EXIT
run() { # name, command...
    local name=$1; shift
    for _ in $(seq 5); do
        quiet
        chrt -f 50 taskset -c 0 "$@" >/dev/null 2>&1 &
        server=$!
        for _ in $(seq 100); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.05; done
        local c0 c1 ops disturbed=0 out
        out=$(mktemp)
        c0=$(cpu "$server")
        chrt -f 50 taskset -c 1 memtier_benchmark -p "$port" --protocol=redis -t 1 -c 50 \
            --pipeline=1 --ratio=1:1 --test-time=10 --hide-histogram >"$out" 2>/dev/null &
        load=$!
        while kill -0 "$load" 2>/dev/null; do
            [ "$(others "$server" "$load")" = 0 ] || disturbed=1
            sleep 0.5
        done
        wait "$load" || true
        c1=$(cpu "$server")
        kill "$server"; wait "$server" 2>/dev/null || true
        server= load=
        ops=$(awk '/^Totals/ {print $2}' "$out"); rm -f "$out"
        if [ "$disturbed" = 1 ] || [ -z "$ops" ]; then
            echo "$name: disturbed by another real-time task, run again" >&2
            continue
        fi
        awk -v n="$name" -v c=$((c1 - c0)) -v t="$tick" -v o="$ops" \
            'BEGIN { printf "%-8s ops/s %9.0f  cpu %5.2f s  us/request %6.3f\n", n, o, c/t, c/t*1e6/(o*10) }'
        return
    done
}
for _ in $(seq "$rounds"); do
    run before "$before" --port "$port" --shards 1 --save ""
    run after "$after" --port "$port" --shards 1 --save ""
    run redis redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no
done
