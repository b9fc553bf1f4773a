#!/usr/bin/env bash
# Server CPU per request for single commands of the newer data types and for transactions,
# percore beside redis-server (and valkey-server when installed), each row driven by
# memtier_benchmark's --command on one fresh server instance. `make bench-commands` runs it;
# it writes OUT/commands.md and OUT/raw/.
#
# Rows (memtier sends the commands of a row in order on each connection):
#   zadd, zincrby   ZADD / ZINCRBY on one sorted set of ZMEMBERS members (filled first)
#   zrange          ZRANGE 0 9 on that set
#   pfadd           PFADD of a new element into one HyperLogLog
#   setbit          SETBIT at a random offset below KEYS of one bitmap
#   multi-1shard    MULTI / SET {t}key / INCR {t}counter / EXEC (four requests), every key on
#                   one shard
#   multi-2shards   the same with the SET key and the counter on the two shards of a 2-shard
#                   percore (on the same CPU); Redis runs the one-shard form
#   evalsha         EVALSHA of a 3-key rate limiter (a per-minute and a per-hour counter with
#                   their expiry, and a last-seen value; the keys share a hash tag per user)
# Each server runs pinned to SERVER_CPU, memtier to CLIENT_CPU; the rows run ROUNDS times
# with the servers alternating. Server CPU seconds come from /proc/PID/stat around the run.
# Environment: TEST_TIME (s, 10), ROUNDS (2), KEYS (100000), ZMEMBERS (1000000), ROWS (all),
# OUT (default loadtest/results/DATE/commands).
set -euo pipefail
# shellcheck source=common.sh
. "$(dirname "$0")/common.sh"
require_binaries "$PERCORE"
require_redis_cli
if ! command -v memtier_benchmark >/dev/null 2>&1; then
  echo "memtier_benchmark is not on PATH: this scenario needs it (build it from its source" >&2
  echo "outside this repository and put it on PATH)." >&2
  exit 2
fi
TEST_TIME=${TEST_TIME:-10}
ROUNDS=${ROUNDS:-2}
KEYS=${KEYS:-100000}
ZMEMBERS=${ZMEMBERS:-1000000}
ROWS=${ROWS:-"zadd zincrby zrange pfadd setbit multi-1shard multi-2shards evalsha"}
# The rate limiter of the evalsha row.
LIMITER="local m = redis.call('INCR', KEYS[1]) if m == 1 then redis.call('EXPIRE', KEYS[1], 60) end
local h = redis.call('INCR', KEYS[2]) if h == 1 then redis.call('EXPIRE', KEYS[2], 3600) end
redis.call('SET', KEYS[3], ARGV[1])
if m > 100 or h > 1000 then return 0 end
return 1"
OUT=${OUT:-loadtest/results/$(date +%F)/commands}
mkdir -p "$OUT/raw"

servers="percore redis"
command -v valkey-server >/dev/null 2>&1 && servers="$servers valkey"

SERVER_PID=
start() { # server shards port
  start_server "$1" "$2" "$3" "$OUT/raw/$1.log" || { echo "$1 did not start on port $3" >&2; exit 1; }
}
stop() { kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; }
trap stop EXIT

# two_tags PORT: two hash tags whose keys live on different shards of the 2-shard percore
# on PORT, found by storing a probe key per tag and reading INFO's per-shard key counts.
two_tags() {
  local port=$1 first="" first_shard="" t s
  for t in a b c d e f g h i j k l m n o p; do
    redis-cli -p "$port" set "{$t}probe" 1 >/dev/null
    s=$(redis-cli -p "$port" info shards | tr -d '\r' | awk -F'[:,=]' '/^shard/ && $3 > 0 { print $1 }' | head -1)
    redis-cli -p "$port" del "{$t}probe" >/dev/null
    if [ -z "$first" ]; then
      first=$t first_shard=$s
    elif [ "$s" != "$first_shard" ]; then
      echo "$first $t"
      return
    fi
  done
  echo "no two tags on different shards" >&2
  exit 1
}

# row_commands ROW [TAG1 TAG2]: memtier --command arguments, one per line.
row_commands() {
  case "$1" in
    zadd) echo "zadd bigz __key__ n__key__" ;;
    zincrby) echo "zincrby bigz 1 __key__" ;;
    zrange) echo "zrange bigz 0 9" ;;
    pfadd) echo "pfadd hll __key__" ;;
    setbit) echo "setbit bitmap __key__ 1" ;;
    evalsha) echo "evalsha $2 3 {u__key__}:m {u__key__}:h {u__key__}:seen __data__" ;;
    multi-1shard | multi-2shards)
      echo "multi"
      echo "set {$2}__key__ __data__"
      echo "incr {$3}counter"
      echo "exec"
      ;;
  esac
}

# fill ROW PORT: what the row's commands work on (the sorted set rows' ZMEMBERS members).
fill() {
  case "$1" in
    zadd | zincrby | zrange)
      taskset -c "$CLIENT_CPU" memtier_benchmark -s 127.0.0.1 -p "$2" -t 1 -c 10 --pipeline=64 \
        --key-prefix= --key-minimum=1 --key-maximum="$ZMEMBERS" -n $(((ZMEMBERS + 9) / 10)) \
        --command="zadd bigz __key__ __key__" --command-key-pattern=P --hide-histogram \
        >"$OUT/raw/fill-$1.txt" 2>&1
      ;;
  esac
}

echo "| row | server | ops/s | server CPU s | CPU µs per request | ratio to redis |" >"$OUT/commands.md.tmp"
declare -A cpu_us
for round in $(seq "$ROUNDS"); do
  for row in $ROWS; do
    for server in $servers; do
      shards=1
      [ "$row" = multi-2shards ] && [ "$server" = percore ] && shards=2
      port=$(free_port)
      start "$server" "$shards" "$port"
      tags="t t"
      [ "$row" = multi-2shards ] && [ "$server" = percore ] && tags=$(two_tags "$port")
      [ "$row" = evalsha ] && tags=$(redis-cli -p "$port" script load "$LIMITER" | tr -d '\r')
      fill "$row" "$port"
      args=()
      while IFS= read -r c; do args+=("--command=$c"); done < <(row_commands "$row" $tags)
      name="$row-$server-r$round"
      before=$(cpu_seconds "$SERVER_PID")
      taskset -c "$CLIENT_CPU" memtier_benchmark -s 127.0.0.1 -p "$port" -t 1 -c 50 --pipeline=1 \
        --key-prefix= --key-minimum=1 --key-maximum="$KEYS" -d 16 \
        --test-time="$TEST_TIME" --hide-histogram "${args[@]}" >"$OUT/raw/$name.txt" 2>&1
      after=$(cpu_seconds "$SERVER_PID")
      stop
      ops=$(awk '/^Totals/ { print $2 }' "$OUT/raw/$name.txt")
      us=$(awk -v a="$before" -v b="$after" -v o="$ops" -v t="$TEST_TIME" 'BEGIN { printf "%.2f", (b - a) * 1e6 / (o * t) }')
      cpu_us["$row,$server,$round"]=$us
      echo "$name: $ops ops/s, $us µs CPU per request" >&2
      echo "| $row | $server | $ops | $(awk -v a="$before" -v b="$after" 'BEGIN { printf "%.2f", b - a }') | $us | |" >>"$OUT/commands.md.tmp"
    done
  done
done

# Medians over rounds, and the ratio to Redis's.
{
  echo "# Server CPU per request, memtier_benchmark --command, pipeline 1, 50 connections"
  echo
  echo "$(date -u '+%F %T UTC'); $(uname -srm), $(nproc) CPUs; percore $(git describe --always --dirty 2>/dev/null || echo unknown); $ROUNDS rounds of ${TEST_TIME}s; servers on CPU $SERVER_CPU, memtier on CPU $CLIENT_CPU"
  echo
  echo "| row | $(echo "$servers" | sed 's/ / | /g') | percore / redis |"
  echo "|---|$(for _ in $servers; do printf -- '---:|'; done)---:|"
  for row in $ROWS; do
    line="| $row"
    for server in $servers; do
      vals=$(for r in $(seq "$ROUNDS"); do echo "${cpu_us[$row,$server,$r]}"; done | sort -n)
      med=$(echo "$vals" | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else printf "%.2f", (a[NR / 2] + a[NR / 2 + 1]) / 2 }')
      line="$line | $med"
      eval "med_$server=$med"
    done
    # shellcheck disable=SC2154
    echo "$line | $(awk -v p="$med_percore" -v r="$med_redis" 'BEGIN { printf "%.2f", p / r }') |"
  done
  echo
  echo "CPU µs per request (a memtier request: one command; a transaction row is four). multi-2shards: percore with 2 shards on one CPU, its SET and INCR keys on different shards; Redis runs the same commands. evalsha: one request is one script run (5-7 redis.call)."
  echo
  echo "## Every run"
  echo
  cat "$OUT/commands.md.tmp"
} >"$OUT/commands.md"
rm -f "$OUT/commands.md.tmp"
cat "$OUT/commands.md"
