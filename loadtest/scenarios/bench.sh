#!/usr/bin/env bash
# percore beside every other Redis-protocol server on this machine, workload by workload, in
# one run. `make bench` runs it; it writes OUT/report.md, OUT/report.svg and OUT/raw/.
#
# - Each server runs pinned to SERVER_CPU, the load generator to CLIENT_CPU.
# - Every (workload, round) starts each server fresh, fills the key range so GETs hit, warms
#   up for WARMUP seconds, then measures; servers alternate A B A B across rounds so drift on
#   a noisy machine hits all of them.
# - Drivers: percore-loadtest always; memtier_benchmark too when it is on PATH, on the same
#   server instance right after, so the two generators' figures can be cross-checked.
# - Collection workloads (hash, set, list; issue 15) are memtier_benchmark only, through its
#   `--command`; each is a write row then a read row on one server instance and keyspace:
#   HSET then HGET, SADD then SISMEMBER, LPUSH then RPOP (see pair_rows below). Without
#   memtier_benchmark they are skipped, saying so.
# - Server CPU seconds come from /proc/PID/stat around the measured run; the generator's own
#   CPU from getrusage (percore-loadtest) or the shell's child times (memtier).
#
# Peers: redis-server, valkey-server and dragonfly, each when installed.
# Environment: TEST_TIME (s, 10), ROUNDS (2), WARMUP (s, 2), KEYS (100000), SHARDS (percore
# shards, 1), SERVER_CPU (0), CLIENT_CPU (1), WORKLOADS (names below, all but large and large-set), OUT (directory,
# default loadtest/results/DATE), LIST_DEPTH (elements per list before LPUSH/RPOP, see below), COLLECTION_RATE (below).
# `WORKLOADS="hash set list" make bench` runs the collection rows alone.
set -euo pipefail
# shellcheck source=common.sh
. "$(dirname "$0")/common.sh"
require_binaries "$PERCORE" "$LT"
TEST_TIME=${TEST_TIME:-10}
ROUNDS=${ROUNDS:-2}
WARMUP=${WARMUP:-2}
KEYS=${KEYS:-100000}
SHARDS=${SHARDS:-1}
OUT=${OUT:-loadtest/results/$(date +%F)}
WORKLOADS=${WORKLOADS:-"p1 p32 get-hits 1kb conns-500 fixed-rate light hash set list"}
# Every list starts with LIST_DEPTH elements, so RPOP finds one even at 200,000 pops a second
# with no LPUSH before it; the run still checks afterwards that no list ran empty.
LIST_DEPTH=${LIST_DEPTH:-$((200000 * TEST_TIME / KEYS + 10))}
# A second percore with 2 shards on the same CPU: half the requests cross cores, so its CPU
# per request beside the 1-shard figure is the price of the cross-core hop. TWO_SHARDS=0 skips.
TWO_SHARDS=${TWO_SHARDS:-1}
# COLLECTION_RATE=N: the collection rows' measured runs send at most N requests a second per
# connection (memtier --rate-limiting; 1200 is 60,000/s over 50 connections, under every
# server's peak). At pipeline 1 without it, each server is ~85 % busy whatever it does and
# its CPU per request follows the throughput the generator reaches, which swings ±15 %
# from run to run on a shared machine; at a fixed rate the CPU per request is the server's
# own cost at that load. Empty: as fast as the servers answer.
COLLECTION_RATE=${COLLECTION_RATE:-}
mkdir -p "$OUT/raw"

# name: percore-loadtest/memtier arguments. fixed-rate's rate is filled in at run time.
workload_args() {
  case "$1" in
    p1) echo "-t 1 -c 50 --pipeline=1 --ratio=1:10 -d 32" ;;
    p32) echo "-t 1 -c 50 --pipeline=32 --ratio=1:10 -d 32" ;;
    get-hits) echo "-t 1 -c 50 --pipeline=1 --ratio=0:1 -d 32" ;;
    1kb) echo "-t 1 -c 50 --pipeline=1 --ratio=1:10 -d 1024" ;;
    conns-500) echo "-t 1 -c 500 --pipeline=1 --ratio=1:10 -d 32" ;;
    fixed-rate) echo "-t 1 -c 50 --pipeline=1 --ratio=1:10 -d 32" ;;
    light) echo "-t 1 -c 50 --pipeline=1 --ratio=1:10 -d 32" ;;
    large) echo "-t 1 -c 10 --pipeline=1 --ratio=0:1 -d 262144" ;;
    large-set) echo "-t 1 -c 10 --pipeline=1 --ratio=1:0 -d 262144" ;;
    hash | set | list) echo "-t 1 -c 50 --pipeline=1 -d 16" ;;
    *) echo "unknown workload $1" >&2; exit 2 ;;
  esac
}
data_size() { workload_args "$1" | sed 's/.*-d \([0-9]*\).*/\1/'; }
# Keys a workload fills and reads: `large` (GETs of 256 KiB values, the zero-copy send path)
# and `large-set` (SETs of them, the path of a large argument) hold 1,000 of them (256 MB);
# the others KEYS.
workload_keys() { case "$1" in large | large-set) echo 1000 ;; *) echo "$KEYS" ;; esac; }

# Collection workloads: the write row, then the read row, on one keyspace of KEYS keys
# (memtier-1 .. memtier-KEYS), each a memtier_benchmark --command with uniform random keys.
# fill_command runs once per key first, so every read hits: HGET finds field f, SISMEMBER
# finds the fill's member (memtier's constant data), RPOP finds a list of LIST_DEPTH or more.
# The write rows send memtier's --random-data, so SADD adds a new member, LPUSH pushes new
# bytes and HSET overwrites field f with a new value.
is_pair() { case "$1" in hash | set | list) return 0 ;; *) return 1 ;; esac; }
pair_rows() {
  case "$1" in
    hash) echo "hset hget" ;;
    set) echo "sadd sismember" ;;
    list) echo "lpush rpop" ;;
  esac
}
row_command() {
  case "$1" in
    hset) echo "hset __key__ f __data__" ;;
    hget) echo "hget __key__ f" ;;
    sadd) echo "sadd __key__ __data__" ;;
    sismember) echo "sismember __key__ __data__" ;;
    lpush) echo "lpush __key__ __data__" ;;
    rpop) echo "rpop __key__" ;;
  esac
}
fill_command() {
  case "$1" in
    hash) echo "hset __key__ f __data__" ;;
    set) echo "sadd __key__ __data__" ;;
    list) echo "lpush __key__$(for _ in $(seq "$LIST_DEPTH"); do printf ' __data__'; done)" ;;
  esac
}

servers="percore"
[ "$TWO_SHARDS" = 1 ] && servers="$servers percore-2s"
# ZEROCOPY=BYTES: also percore with zero-copy sends from BYTES (`--zerocopy-send-min-bytes`;
# off by default), beside the default, for the `large` workload.
[ -n "${ZEROCOPY:-}" ] && servers="$servers percore-zc"
for peer in redis-server valkey-server dragonfly; do
  if command -v "$peer" >/dev/null 2>&1; then servers="$servers ${peer%-server}"; fi
done
drivers="percore-loadtest"
if command -v memtier_benchmark >/dev/null 2>&1; then
  drivers="$drivers memtier"
else
  echo "memtier_benchmark is not on PATH: measuring with percore-loadtest only (build memtier" >&2
  echo "from its source outside this repository and put it on PATH to cross-check)." >&2
  for w in $WORKLOADS; do
    if is_pair "$w"; then echo "memtier_benchmark is not on PATH: the $w rows ($(pair_rows "$w")) are skipped." >&2; fi
  done
fi
echo "servers: $servers; drivers: $drivers; workloads: $WORKLOADS; $ROUNDS rounds of ${TEST_TIME}s" >&2

{
  echo "date: $(date -u '+%F %T UTC')"
  echo "machine: $(uname -srm), $(nproc) CPUs: $(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -1)"
  echo "memory: $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
  echo "percore: $(git describe --always --dirty 2>/dev/null || echo unknown), $SHARDS shard(s)"
  for s in $servers; do
    case "$s" in
      redis) echo "redis: $(redis-server --version)" ;;
      valkey) echo "valkey: $(valkey-server --version)" ;;
      dragonfly) echo "dragonfly: $(dragonfly --version 2>&1 | head -1)" ;;
    esac
  done
  command -v memtier_benchmark >/dev/null 2>&1 && echo "memtier_benchmark: $(memtier_benchmark --version | head -1)"
  echo "pinning: servers on CPU $SERVER_CPU, load generator on CPU $CLIENT_CPU; ${TEST_TIME}s per run, $ROUNDS rounds, ${WARMUP}s warm-up, $KEYS keys"
  for w in $WORKLOADS; do
    if is_pair "$w"; then
      echo "collections: memtier --command, write row then read row per server instance; lists start at $LIST_DEPTH elements${COLLECTION_RATE:+; $COLLECTION_RATE requests/s per connection}"
      break
    fi
  done
} >"$OUT/machine.txt"

# CHILD_CPU := CPU seconds of this shell's finished children (user + system). Not called in
# $(...): a subshell has children of its own.
CHILD_CPU=0
children_cpu() {
  times >"$OUT/.times"
  CHILD_CPU=$(tail -1 "$OUT/.times" | awk '{ t = 0; for (i = 1; i <= 2; i++) { split($i, a, /[ms]/); t += a[1] * 60 + a[2] } printf "%.2f", t }')
}

SERVER_PID=
start_server() { # name port
  case "$1" in
    percore) taskset -c "$SERVER_CPU" "$PERCORE" --port "$2" --shards "$SHARDS" >"$OUT/raw/$1.log" 2>&1 & ;;
    percore-2s) taskset -c "$SERVER_CPU" "$PERCORE" --port "$2" --shards 2 >"$OUT/raw/$1.log" 2>&1 & ;;
    percore-zc) taskset -c "$SERVER_CPU" "$PERCORE" --port "$2" --shards "$SHARDS" --zerocopy-send-min-bytes "$ZEROCOPY" >"$OUT/raw/$1.log" 2>&1 & ;;
    redis) taskset -c "$SERVER_CPU" redis-server --port "$2" --bind 127.0.0.1 --save "" --appendonly no >"$OUT/raw/$1.log" 2>&1 & ;;
    valkey) taskset -c "$SERVER_CPU" valkey-server --port "$2" --bind 127.0.0.1 --save "" --appendonly no >"$OUT/raw/$1.log" 2>&1 & ;;
    dragonfly) taskset -c "$SERVER_CPU" dragonfly --port "$2" --bind 127.0.0.1 --proactor_threads 1 --dbfilename "" >"$OUT/raw/$1.log" 2>&1 & ;;
  esac
  SERVER_PID=$!
  for _ in $(seq 200); do
    if "$LT" -p "$2" -t 1 -c 1 -n 1 --ratio=0:1 --no-progress >/dev/null 2>&1; then return 0; fi
    sleep 0.05
  done
  echo "$1 did not start on port $2 (see $OUT/raw/$1.log)" >&2
  exit 1
}
stop_server() { kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; }
trap stop_server EXIT

rate=
seq=0
# write_meta NAME SERVER WORKLOAD DRIVER ROUND BEFORE AFTER CLIENT_CPU [KEY=VALUE...]: the
# run's sidecar for `percore-loadtest report`, from the server's CPU seconds around it.
write_meta() {
  local name=$1 server=$2 workload=$3 driver=$4 round=$5 before=$6 after=$7 client_cpu=$8
  shift 8
  seq=$((seq + 1))
  {
    echo "seq=$seq"
    echo "json=$name.json"
    echo "server=$server"
    echo "workload=$workload"
    echo "driver=$driver"
    echo "round=$round"
    echo "seconds=$TEST_TIME"
    echo "server_cpu_s=$(awk -v a="$before" -v b="$after" 'BEGIN { printf "%.2f", b - a }')"
    [ -n "$client_cpu" ] && echo "client_cpu_s=$client_cpu"
    for kv in "$@"; do echo "$kv"; done
  } >"$OUT/raw/$name.meta"
  echo "$name: $(grep -E '^Totals' "$OUT/raw/$name.txt" | awk '{print $2}') ops/s" >&2
}

# dbsize PORT: the server's key count (empty without redis-cli).
dbsize() {
  if command -v redis-cli >/dev/null 2>&1; then redis-cli -p "$1" dbsize | tr -d '\r'; fi
}

# run_pair WORKLOAD SERVER ROUND: one server instance, filled, warmed up with the write
# command, then the write row and the read row, TEST_TIME each.
run_pair() {
  local workload=$1 server=$2 round=$3 port common write_row read_row row name random before after c0 keys
  port=$(free_port)
  start_server "$server" "$port"
  common="-s 127.0.0.1 -p $port $(workload_args "$workload") --key-minimum=1 --key-maximum=$KEYS --hide-histogram"
  # Fill: each of 10 connections takes its own tenth of the keys (pattern P), once each.
  # shellcheck disable=SC2086
  taskset -c "$CLIENT_CPU" memtier_benchmark $common -c 10 --pipeline=16 --command="$(fill_command "$workload")" \
    --command-key-pattern=P -n $(((KEYS + 9) / 10)) >"$OUT/raw/$workload-$server-fill-r$round.txt" 2>&1
  keys=$(dbsize "$port")
  if [ -n "$keys" ] && [ "$keys" != "$KEYS" ]; then
    echo "$workload on $server: the fill left $keys keys, $KEYS expected" >&2
    exit 1
  fi
  read -r write_row read_row <<<"$(pair_rows "$workload")"
  # shellcheck disable=SC2086
  taskset -c "$CLIENT_CPU" memtier_benchmark $common --command="$(row_command "$write_row")" --command-key-pattern=R \
    --random-data --distinct-client-seed --test-time="$WARMUP" >/dev/null 2>&1
  for row in "$write_row" "$read_row"; do
    name="$row-$server-memtier-r$round"
    random=
    [ "$row" = "$write_row" ] && random=--random-data
    before=$(cpu_seconds "$SERVER_PID")
    children_cpu
    c0=$CHILD_CPU
    # shellcheck disable=SC2086
    taskset -c "$CLIENT_CPU" memtier_benchmark $common --command="$(row_command "$row")" --command-key-pattern=R \
      $random ${COLLECTION_RATE:+--rate-limiting=$COLLECTION_RATE} --distinct-client-seed --test-time="$TEST_TIME" --json-out-file="$OUT/raw/$name.json" >"$OUT/raw/$name.txt" 2>&1
    children_cpu
    after=$(cpu_seconds "$SERVER_PID")
    # After RPOP, a key short of KEYS is a list that ran empty: some pops found nothing.
    keys=$(dbsize "$port")
    write_meta "$name" "$server" "$row" memtier "$round" "$before" "$after" \
      "$(awk -v a="$c0" -v b="$CHILD_CPU" 'BEGIN { printf "%.2f", b - a }')" "command=$(row_command "$row")" "keys_after=$keys"
    if [ -n "$keys" ] && [ "$keys" != "$KEYS" ]; then
      echo "warning: $name left $keys of $KEYS keys: some lists ran empty, raise LIST_DEPTH" >&2
    fi
  done
  stop_server
}
# Median percore-loadtest ops/s of a workload on a server, from this run's raw files.
measured_ops() { # workload server
  for f in "$OUT"/raw/"$1"-"$2"-percore-loadtest-r*.json; do
    [ -e "$f" ] && sed -n 's/^  "ops_per_sec": \([0-9.]*\),*$/\1/p' "$f"
  done | sort -g | awk '{ v[NR] = $1 } END { if (NR) print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }'
}

for workload in $WORKLOADS; do
  if is_pair "$workload"; then
    case " $drivers " in
      *" memtier "*)
        for round in $(seq "$ROUNDS"); do
          for server in $servers; do run_pair "$workload" "$server" "$round"; done
        done
        ;;
      *) echo "$workload: skipped (needs memtier_benchmark on PATH)" >&2 ;;
    esac
    continue
  fi
  args=$(workload_args "$workload")
  d=$(data_size "$workload")
  nkeys=$(workload_keys "$workload")
  if [ "$workload" = light ]; then
    rate=10000
    echo "light: $rate requests/s" >&2
  elif [ "$workload" = fixed-rate ]; then
    # Half of the strongest peer's closed-loop peak at pipeline 1 (Redis when installed).
    base=$(echo "$servers" | tr ' ' '\n' | grep -v '^percore' | head -1)
    base=${base:-percore}
    peak=$(measured_ops p1 "$base")
    if [ -z "$peak" ]; then
      echo "fixed-rate needs the p1 workload first (to find $base's peak); skipped" >&2
      continue
    fi
    rate=$(awk -v p="$peak" 'BEGIN { printf "%d", p / 2 }')
    echo "fixed-rate: $rate requests/s (50% of $base's p1 peak of $peak)" >&2
  fi
  for round in $(seq "$ROUNDS"); do
    for server in $servers; do
      port=$(free_port)
      start_server "$server" "$port"
      taskset -c "$CLIENT_CPU" "$LT" -p "$port" -t 1 -c 10 --pipeline=16 --ratio=1:0 --key-pattern=P:P \
        --key-maximum="$nkeys" -n allkeys -d "$d" --no-progress --hide-histogram >/dev/null
      common="-p $port $args --key-maximum=$nkeys --key-pattern=R:R --distinct-client-seed --hide-histogram"
      # shellcheck disable=SC2086
      taskset -c "$CLIENT_CPU" "$LT" $common --test-time="$WARMUP" --no-progress >/dev/null
      for driver in $drivers; do
        name="$workload-$server-$driver-r$round"
        extra=
        before=$(cpu_seconds "$SERVER_PID")
        if [ "$driver" = percore-loadtest ]; then
          [ -n "$rate" ] && case "$workload" in fixed-rate | light) extra="--rate=$rate" ;; esac
          # shellcheck disable=SC2086
          taskset -c "$CLIENT_CPU" "$LT" $common $extra --test-time="$TEST_TIME" --no-progress \
            --json "$OUT/raw/$name.json" >"$OUT/raw/$name.txt" 2>&1
          client_cpu=
        else
          conns=$(echo "$args" | sed 's/.*-c \([0-9]*\).*/\1/')
          [ -n "$rate" ] && case "$workload" in fixed-rate | light) extra="--rate-limiting=$((rate / conns))" ;; esac
          children_cpu
          c0=$CHILD_CPU
          # shellcheck disable=SC2086
          taskset -c "$CLIENT_CPU" memtier_benchmark -s 127.0.0.1 $common $extra --test-time="$TEST_TIME" \
            --json-out-file="$OUT/raw/$name.json" >"$OUT/raw/$name.txt" 2>&1
          children_cpu
          client_cpu=$(awk -v a="$c0" -v b="$CHILD_CPU" 'BEGIN { printf "%.2f", b - a }')
        fi
        after=$(cpu_seconds "$SERVER_PID")
        write_meta "$name" "$server" "$workload" "$driver" "$round" "$before" "$after" "$client_cpu"
      done
      stop_server
    done
  done
done
rm -f "$OUT/.times"
if ! ls "$OUT"/raw/*.meta >/dev/null 2>&1; then
  echo "nothing was measured (workloads: $WORKLOADS)" >&2
  exit 2
fi
"$LT" report "$OUT"
echo >&2
echo "report: $OUT/report.md, $OUT/report.svg; raw runs: $OUT/raw" >&2
