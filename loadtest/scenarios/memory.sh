#!/usr/bin/env bash
# Bytes per key and per collection element, percore beside redis-server (and valkey-server
# when installed), one server at a time, each pinned to SERVER_CPU with the loader on
# CLIENT_CPU; the RSS (VmRSS) before and after filling, SETTLE seconds after the load, divided
# by the elements stored. `make bench-memory`. Tables:
#
# 1. Strings: KEYS keys of 16 bytes with 32-byte values, as the cache-memory issue defines
#    the workload (percore-loadtest SETs).
# 2. Hashes (issue 15), 8-byte field names and 16-byte values, loaded as RESP through
#    `redis-cli --pipe`, 10 field-value pairs per HSET, the same bytes for every server:
#    - small: HASHES hashes of 10 fields, 16-byte keys (`listpack` encoding);
#    - large: one hash of FIELDS fields (`hashtable` encoding).
#    Sets: SETS sets of 20 small integers, one SADD each (`intset` encoding).
#    Lists: 16-byte elements, 10 per RPUSH, also through `redis-cli --pipe`:
#    - small: LISTS lists of 10 elements, 16-byte keys;
#    - large: one list of ELEMENTS elements.
#    (Redis 7.0 and percore report `quicklist` for both, Valkey 8 `listpack` for the small.)
#    Sorted sets (issue 16), 9-byte members, integer scores, also through `redis-cli --pipe`:
#    - small: ZSETS sorted sets of 10 members, one ZADD each, 16-byte keys (`listpack`);
#    - large: one sorted set of ZMEMBERS 16-byte members, 10 per ZADD (`skiplist`).
#    Bitmaps (issue 16): BITMAPS keys of 16 bytes, each a 1 KB bitmap made by one SETBIT at
#    offset 8191 (`raw` strings), also through `redis-cli --pipe`.
#    HyperLogLogs (issue 16): HLLS keys of 16 bytes, 1000 9-byte elements PFADDed to each in
#    one PFADD (`raw` strings holding sparse HLLs, about 2 KB each; the elements differ
#    between keys, 64 blocks of them in turn).
# 3. percore's bytes as a fraction of Redis's and Valkey's (issue 15's target: <= 0.8x
#    Redis's in every row).
#
# Environment: COUNTS (string rows, "1000000 10000000"), HASHES (1000000), FIELDS (1000000),
# SETS (1000000), LISTS (1000000), ELEMENTS (10000000), ZSETS (1000000), ZMEMBERS (10000000),
# BITMAPS (1000000);
# HLLS (1000000);
# set any of them to "" to skip its rows, e.g. `COUNTS= make bench-memory` for the
# collections only, `COUNTS= HASHES= FIELDS= SETS= make bench-memory` for the lists only.
# SHARDS (percore shards, 1), SETTLE (seconds after a fill, 2), SERVER_CPU (0), CLIENT_CPU (1).
set -euo pipefail
# shellcheck source=common.sh
. "$(dirname "$0")/common.sh"
require_binaries "$PERCORE" "$LT"

COUNTS=${COUNTS-"1000000 10000000"}
HASHES=${HASHES-1000000}
FIELDS=${FIELDS-1000000}
SETS=${SETS-1000000}
LISTS=${LISTS-1000000}
ELEMENTS=${ELEMENTS-10000000}
ZSETS=${ZSETS-1000000}
ZMEMBERS=${ZMEMBERS-10000000}
BITMAPS=${BITMAPS-1000000}
HLLS=${HLLS-1000000}
SHARDS=${SHARDS:-1}
SETTLE=${SETTLE:-2}
servers="percore"
for peer in redis-server valkey-server; do
  command -v "$peer" >/dev/null 2>&1 && servers="$servers ${peer%-server}"
done

info() { # port field (needs redis-cli; empty without it)
  if command -v redis-cli >/dev/null 2>&1; then
    redis-cli -p "$1" info memory | tr -d '\r' | sed -n "s/^$2://p"
  fi
}
rss_bytes() { awk '/^VmRSS:/ { print $2 * 1024 }' "/proc/$1/status"; }

# start SERVER PORT: the server pinned to SERVER_CPU, loopback only, no persistence; waits
# until it answers and sets `pid`.
start() {
  case "$1" in
    percore) taskset -c "$SERVER_CPU" "$PERCORE" --bind 127.0.0.1 --port "$2" --shards "$SHARDS" >/dev/null 2>&1 & ;;
    *) taskset -c "$SERVER_CPU" "$1-server" --port "$2" --bind 127.0.0.1 --save "" --appendonly no >/dev/null 2>&1 & ;;
  esac
  pid=$!
  until "$LT" -p "$2" -t 1 -c 1 -n 1 --ratio=0:1 --no-progress >/dev/null 2>&1; do sleep 0.05; done
}
stop() { kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""; }
pid=""
trap '[ -z "$pid" ] || kill "$pid" 2>/dev/null || true' EXIT

if [ -n "$COUNTS" ]; then
  echo "| server | keys | RSS bytes/key | used_memory bytes/key | RSS MB |"
  echo "|---|---:|---:|---:|---:|"
  for count in $COUNTS; do
    for server in $servers; do
      port=$(free_port)
      start "$server" "$port"
      base=$(rss_bytes "$pid")
      base_used=$(info "$port" used_memory)
      # Keys "key:" + 12 digits = 16 bytes; values 32 bytes.
      taskset -c "$CLIENT_CPU" "$LT" -p "$port" -t 1 -c 20 --pipeline=32 --ratio=1:0 --key-pattern=P:P \
        --key-prefix=key: --key-minimum=100000000000 --key-maximum=$((100000000000 + count - 1)) \
        -n allkeys -d 32 --no-progress --hide-histogram >/dev/null
      sleep "$SETTLE"
      rss=$(rss_bytes "$pid")
      used=$(info "$port" used_memory)
      awk -v s="$server" -v n="$count" -v r="$rss" -v r0="$base" -v u="$used" -v u0="$base_used" \
        'BEGIN { printf "| %s | %d | %.1f | %s | %.0f |\n", s, n, (r - r0) / n, (u == "" ? "–" : sprintf("%.1f", (u - u0) / n)), r / 1048576 }'
      stop
    done
  done
fi

[ -n "$HASHES$FIELDS$SETS$LISTS$ELEMENTS$ZSETS$ZMEMBERS$BITMAPS$HLLS" ] || exit 0
require_redis_cli
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"; [ -z "$pid" ] || kill "$pid" 2>/dev/null || true' EXIT

rows=()
[ -n "$HASHES" ] && rows+=("small $HASHES 10 hash:00000000000")
[ -n "$FIELDS" ] && rows+=("large 1 $FIELDS bighash")
[ -n "$SETS" ] && rows+=("sets $SETS 20 set:000000000000")
[ -n "$LISTS" ] && rows+=("lists $LISTS 10 list:00000000000")
[ -n "$ELEMENTS" ] && rows+=("biglist 1 $ELEMENTS biglist")
[ -n "$ZSETS" ] && rows+=("zsets $ZSETS 10 zset:00000000000")
[ -n "$ZMEMBERS" ] && rows+=("bigzset 1 $ZMEMBERS bigzset")
[ -n "$BITMAPS" ] && rows+=("bitmaps $BITMAPS 1 bitmap:000000000")
[ -n "$HLLS" ] && rows+=("hlls $HLLS 1000 hll:000000000000")
echo
echo "| server | keys x elements | encoding | RSS bytes/key | RSS bytes/element | used_memory bytes/element | RSS MB |"
echo "|---|---|---|---:|---:|---:|---:|"
for row in "${rows[@]}"; do
  read -r kind hashes per sample <<<"$row"
  fields=$((hashes * per))
  # One command per key (sets, small lists) or per 10 elements (hashes, the big list).
  cmds=$((hashes * ((per + 9) / 10)))
  case "$kind" in sets | lists | zsets | hlls) cmds=$hashes ;; esac
  # The one-key rows are generated by element count, the others by key count.
  one_key=$(case "$kind" in large | biglist | bigzset) echo 1 ;; *) echo 0 ;; esac)
  n=$([ "$one_key" = 1 ] && echo "$per" || echo "$hashes")
  # The HLL fill is ~14 KB per key (15 GB at 1M keys): generated again for each server and
  # streamed (the generator is deterministic, so every server still gets the same bytes).
  [ "$kind" = hlls ] || gen_resp "$kind" "$n" >"$tmp/$kind.resp"
  for server in $servers; do
    port=$(free_port)
    start "$server" "$port"
    sleep 0.5
    base=$(rss_bytes "$pid")
    base_used=$(info "$port" used_memory)
    if [ "$kind" = hlls ]; then
      (taskset -cp "$CLIENT_CPU" "$BASHPID" >/dev/null && gen_resp "$kind" "$n") |
        taskset -c "$CLIENT_CPU" redis-cli -p "$port" --pipe >"$tmp/pipe.out"
    else
      taskset -c "$CLIENT_CPU" redis-cli -p "$port" --pipe <"$tmp/$kind.resp" >"$tmp/pipe.out"
    fi
    grep -q "errors: 0, replies: ${cmds}\$" "$tmp/pipe.out" ||
      { echo "$server: fill failed: $(tail -1 "$tmp/pipe.out")" >&2; stop; exit 1; }
    sleep "$SETTLE"
    rss=$(rss_bytes "$pid")
    used=$(info "$port" used_memory)
    enc=$(redis-cli -p "$port" object encoding "$sample")
    case "$kind" in
      large) got=$(redis-cli -p "$port" hlen "$sample") ;;
      biglist) got=$(redis-cli -p "$port" llen "$sample") ;;
      bigzset) got=$(redis-cli -p "$port" zcard "$sample") ;;
      *) got=$(redis-cli -p "$port" dbsize) ;;
    esac
    want=$([ "$one_key" = 1 ] && echo "$per" || echo "$hashes")
    [ "$got" = "$want" ] || { echo "$server: $got stored, $want expected" >&2; stop; exit 1; }
    awk -v s="$server" -v h="$hashes" -v p="$per" -v e="$enc" -v r="$rss" -v r0="$base" -v u="$used" -v u0="$base_used" \
      'BEGIN { printf "| %s | %d x %d | %s | %s | %.1f | %s | %.0f |\n", s, h, p, e,
               sprintf(h == 1 ? "%.0f" : "%.1f", (r - r0) / h), (r - r0) / (h * p),
               (u == "" ? "–" : sprintf("%.1f", (u - u0) / (h * p))), r / 1048576 }'
    echo "$kind $server $((rss - base)) $fields" >>"$tmp/per-field"
    stop
  done
  rm -f "$tmp/$kind.resp"
done

echo
echo "| row | percore : redis | percore : valkey |"
echo "|---|---:|---:|"
awk -v hashes="$HASHES" -v fields="$FIELDS" -v sets="$SETS" -v lists="$LISTS" -v elements="$ELEMENTS" \
  -v zsets="$ZSETS" -v zmembers="$ZMEMBERS" -v bitmaps="$BITMAPS" -v hlls="$HLLS" '
  { b[$1, $2] = $3 / $4; k[$1] = 1 }
  END { split("small large sets lists biglist zsets bigzset bitmaps hlls", order)
        name["small"] = hashes " hashes x 10"; name["large"] = "1 hash x " fields
        name["sets"] = sets " sets x 20"; name["lists"] = lists " lists x 10"; name["biglist"] = "1 list x " elements
        name["zsets"] = zsets " sorted sets x 10"; name["bigzset"] = "1 sorted set x " zmembers
        name["bitmaps"] = bitmaps " bitmaps of 1 KB"
        name["hlls"] = hlls " HLLs x 1000 elements"
        for (i = 1; i in order; i++) { r = order[i]; if (!(r in k)) continue
          printf "| %s | %s | %s |\n", name[r],
            ((r, "redis") in b ? sprintf("%.2f", b[r, "percore"] / b[r, "redis"]) : "–"),
            ((r, "valkey") in b ? sprintf("%.2f", b[r, "percore"] / b[r, "valkey"]) : "–") } }' "$tmp/per-field"
