#!/usr/bin/env bash
# What the ACL check costs: server CPU per request of percore (one shard, pinned to
# SERVER_CPU) under GET/SET (1:10) at pipeline PIPELINE from 50 connections, as
#   default    the default user as shipped: allowed everything, so no check runs
#   patterns   a user with 10 key patterns, the keys matching only the last one, so every
#              command is checked and every pattern tried
# Rows alternate ROUNDS times on one server instance. CPU seconds come from /proc/PID/stat,
# requests from INFO's total_commands_processed, both around each run.
# Environment: TEST_TIME (s, 10), ROUNDS (3), PIPELINE (1; 64 makes the check a larger
# share: fewer system calls per request), OUT (default loadtest/results/DATE/acl).
# `make bench-acl` runs it; it writes OUT/acl.md.
set -euo pipefail
# shellcheck source=common.sh
. "$(dirname "$0")/common.sh"
require_binaries "$PERCORE" "$LT"
require_redis_cli
TEST_TIME=${TEST_TIME:-10}
ROUNDS=${ROUNDS:-3}
PIPELINE=${PIPELINE:-1}
OUT=${OUT:-loadtest/results/$(date +%F)/acl}
mkdir -p "$OUT"

port=$(free_port)
SERVER_PID=
start_server percore 1 "$port" "$OUT/percore.log" || { echo "percore did not start" >&2; exit 1; }
trap 'kill "$SERVER_PID" 2>/dev/null || true' EXIT
patterns=()
for p in a b c d e f g h i; do patterns+=("~$p:*"); done
redis-cli -p "$port" ACL SETUSER patterns on '>pw' "${patterns[@]}" '~memtier-*' '+@all' >/dev/null
# The keys exist first, so GETs find values.
taskset -c "$CLIENT_CPU" "$LT" -p "$port" -t 1 -c 10 --pipeline=16 --ratio=1:0 --key-pattern=P:P \
  --key-maximum=100000 -n allkeys --no-progress >/dev/null

processed() { redis-cli -p "$port" info stats | sed -n 's/^total_commands_processed:\([0-9]*\).*/\1/p'; }

declare -A sum_us
for round in $(seq "$ROUNDS"); do
  for row in default patterns; do
    auth=()
    [ "$row" = patterns ] && auth=(-a patterns:pw)
    cpu0=$(cpu_seconds "$SERVER_PID"); n0=$(processed)
    taskset -c "$CLIENT_CPU" "$LT" -p "$port" -t 1 -c 50 --pipeline="$PIPELINE" --ratio=1:10 \
      --key-maximum=100000 --test-time="$TEST_TIME" --no-progress "${auth[@]}" >/dev/null
    cpu1=$(cpu_seconds "$SERVER_PID"); n1=$(processed)
    us=$(awk -v a="$cpu0" -v b="$cpu1" -v n0="$n0" -v n1="$n1" 'BEGIN{printf "%.3f", (b-a)*1e6/(n1-n0)}')
    echo "round $round $row: $us µs CPU per request ($((n1 - n0)) requests)" >&2
    sum_us[$row]=$(awk -v s="${sum_us[$row]:-0}" -v u="$us" 'BEGIN{print s+u}')
  done
done
{
  echo "| user | server CPU per request (µs, pipeline $PIPELINE, mean of $ROUNDS) |"
  echo "|---|---|"
  for row in default patterns; do
    echo "| $row | $(awk -v s="${sum_us[$row]}" -v r="$ROUNDS" 'BEGIN{printf "%.3f", s/r}') |"
  done
} | tee "$OUT/acl.md"
