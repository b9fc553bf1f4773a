#!/usr/bin/env bash
# Pub/Sub fan-out: messages delivered per second, server CPU per delivered message and
# delivery latency, percore (1 and 2 shards) beside redis-server and valkey-server (when on
# PATH), each row driven by `percore-loadtest pubsub` on one fresh server instance.
# `make bench-pubsub` runs it; it writes OUT/pubsub.md and OUT/raw/.
#
# Scenarios (1 publisher, publishing as fast as IN_FLIGHT undelivered messages allow):
#   1ch-1000subs     1 channel held by 1,000 subscriber connections
#   1000ch-10subs    1,000 channels, each held by the same 10 subscriber connections
# Every subscriber must get every message of its channels in order: a run with a loss, a
# reorder or a broken connection is a failed row, as is a server that cannot subscribe
# (the reason is in the row). Each server runs pinned to SERVER_CPU, the generator to
# CLIENT_CPU; server CPU seconds come from /proc/PID/stat over the publishing window.
# At full speed the latency is mostly queueing (Little's law: about IN_FLIGHT x subscribers
# per channel / deliveries per second); RATE=N publishes N messages/s instead, for latency
# below saturation.
# Environment: TEST_TIME (s, 5), IN_FLIGHT (100), RATE (empty: full speed), DATA_SIZE (64),
# SCENARIOS (both), SERVERS (percore-1 percore-2 redis valkey), OUT (default
# loadtest/results/DATE/pubsub).
set -euo pipefail
# shellcheck source=common.sh
. "$(dirname "$0")/common.sh"
require_binaries "$PERCORE" "$LT"
require_redis_cli
TEST_TIME=${TEST_TIME:-5}
IN_FLIGHT=${IN_FLIGHT:-100}
RATE=${RATE:-}
rate_args=()
[ -n "$RATE" ] && rate_args=(--rate "$RATE")
DATA_SIZE=${DATA_SIZE:-64}
SCENARIOS=${SCENARIOS:-"1ch-1000subs 1000ch-10subs"}
SERVERS=${SERVERS:-"percore-1 percore-2 redis valkey"}
OUT=${OUT:-loadtest/results/$(date +%F)/pubsub}
mkdir -p "$OUT/raw"

servers=""
notes=""
for s in $SERVERS; do
  if [ "$s" = valkey ] && ! command -v valkey-server >/dev/null 2>&1; then
    notes="valkey-server is not on PATH: no valkey rows."
    echo "$notes" >&2
    continue
  fi
  servers="$servers $s"
done

SERVER_PID=
start() { # server port: false when it does not answer
  case "$1" in
    percore-*) start_server percore "${1#percore-}" "$2" "$OUT/raw/$1.log" ;;
    *) start_server "$1" 1 "$2" "$OUT/raw/$1.log" ;;
  esac
}
stop() { [ -n "$SERVER_PID" ] && { kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; }; SERVER_PID=; }
trap stop EXIT

scenario_args() {
  case "$1" in
    1ch-1000subs) echo "--subscribers 1000 --channels 1" ;;
    1000ch-10subs) echo "--subscribers 10 --channels 1000 --channels-per-subscriber 1000" ;;
    *) echo "unknown scenario '$1'" >&2; exit 2 ;;
  esac
}

# fields JSON: delivered/s, published/s, server CPU s per 1M delivered, p99 ms.
fields() {
  python3 -c 'import json, sys
j = json.load(open(sys.argv[1]))
print("%.0f %.0f %.3f %.3f" % (j["delivered_per_sec"], j["published_per_sec"],
      j["server_cpu_s_per_million_delivered"] or 0, j["latency_ms"]["p99"]))' "$1"
}

declare -A row cpu
for scenario in $SCENARIOS; do
  for server in $servers; do
    name="$scenario-$server"
    port=$(free_port)
    if ! start "$server" "$port"; then
      stop
      row[$name]="| $scenario | $server | | | | | | failed: the server did not start |"
      echo "$name: the server did not start" >&2
      continue
    fi
    rc=0
    # shellcheck disable=SC2046
    taskset -c "$CLIENT_CPU" "$LT" pubsub -p "$port" $(scenario_args "$scenario") \
      --test-time "$TEST_TIME" --in-flight "$IN_FLIGHT" "${rate_args[@]}" -d "$DATA_SIZE" \
      --server-pid "$SERVER_PID" --tag "server=$server" --tag "scenario=$scenario" \
      --json "$OUT/raw/$name.json" >"$OUT/raw/$name.txt" 2>&1 || rc=$?
    stop
    if [ "$rc" != 0 ]; then
      why=$(grep -E 'percore-loadtest|FAILED|first error' "$OUT/raw/$name.txt" | head -2 | tr '\n|' ' /')
      [ "${#why}" -gt 100 ] && why="${why:0:100}..."
      row[$name]="| $scenario | $server | | | | | | failed (exit $rc): ${why:-see raw/$name.txt} |"
      echo "$name: failed (exit $rc): $why" >&2
      rm -f "$OUT/raw/$name.json"
      continue
    fi
    read -r delivered published cpu_m p99 < <(fields "$OUT/raw/$name.json")
    cpu[$name]=$cpu_m
    row[$name]="| $scenario | $server | $delivered | $published | $cpu_m | RATIO | $p99 | ok |"
    echo "$name: $delivered delivered/s, $cpu_m s CPU per 1M delivered, p99 $p99 ms" >&2
  done
done

{
  echo "# Pub/Sub fan-out: percore-loadtest pubsub, 1 publisher, ${DATA_SIZE}-byte messages"
  echo
  echo "$(date -u '+%F %T UTC'); $(uname -srm), $(nproc) CPUs; load average $(cut -d' ' -f1-3 /proc/loadavg); percore $(git describe --always --dirty 2>/dev/null || echo unknown); ${TEST_TIME}s per row, ${RATE:-as many as} messages/s, at most $IN_FLIGHT in flight; servers on CPU $SERVER_CPU, the generator on CPU $CLIENT_CPU"
  [ -n "$notes" ] && { echo; echo "$notes"; }
  echo
  echo "| scenario | server | delivered msgs/s | published msgs/s | server CPU s per 1M delivered | ratio to redis | p99 ms | result |"
  echo "|---|---|---:|---:|---:|---:|---:|---|"
  for scenario in $SCENARIOS; do
    base=${cpu[$scenario-redis]:-}
    for server in $servers; do
      name="$scenario-$server"
      ratio=""
      if [ -n "${cpu[$name]:-}" ] && [ -n "$base" ]; then
        ratio=$(awk -v a="${cpu[$name]}" -v b="$base" 'BEGIN { if (b > 0) printf "%.2f", a / b }')
      fi
      echo "${row[$name]/RATIO/$ratio}"
    done
  done
  echo
  echo "delivered msgs/s: messages received by all subscribers together per second, from the first publish to the last delivery. server CPU: user + system seconds of the server process (all its threads) from just before the first publish to the last delivery, per million delivered messages; ratio to redis: that figure over Redis's in the same scenario. p99: delivery latency (publish to receipt; at full speed mostly queueing, see RATE). 1000ch-10subs: 10 connections each subscribed to all 1,000 channels."
} >"$OUT/pubsub.md"
cat "$OUT/pubsub.md"
