#!/usr/bin/env bash
# What the Prometheus endpoint costs: percore-loadtest's ops/s and p99 against percore with
# metrics off, and with metrics on and scraped every SCRAPE_EVERY seconds, alternating A B A B.
# percore runs pinned to SERVER_CPU, the generator (and the scraper) to CLIENT_CPU.
#
# Environment: TEST_TIME (s, 10), ROUNDS (3), PIPELINES ("1 32"), SHARDS (1), SCRAPE_EVERY (1),
# SERVER_CPU (0), CLIENT_CPU (1).
set -euo pipefail
# shellcheck source=common.sh
. "$(dirname "$0")/common.sh"
require_binaries "$PERCORE" "$LT"
command -v curl >/dev/null 2>&1 || { echo "curl is needed to scrape (apt-get install -y curl)" >&2; exit 2; }
TEST_TIME=${TEST_TIME:-10}
ROUNDS=${ROUNDS:-3}
PIPELINES=${PIPELINES:-"1 32"}
SHARDS=${SHARDS:-1}
SCRAPE_EVERY=${SCRAPE_EVERY:-1}
out=$(mktemp -d)

value() { sed -n "s/^  \"$1\": \([0-9.]*\),*$/\1/p" "$2"; }

echo "| metrics | pipeline | round | ops/s | p99 ms | scrapes |"
echo "|---|---|---|---:|---:|---:|"
for pipeline in $PIPELINES; do
  for round in $(seq "$ROUNDS"); do
    for mode in off scraped; do
      port=$(free_port)
      extra=()
      if [ "$mode" = scraped ]; then mport=$(free_port); extra=(--metrics-port "$mport"); fi
      taskset -c "$SERVER_CPU" "$PERCORE" --port "$port" --shards "$SHARDS" "${extra[@]}" >"$out/percore.log" 2>&1 &
      pid=$!
      until "$LT" -p "$port" -t 1 -c 1 -n 1 --no-progress >/dev/null 2>&1; do sleep 0.05; done
      taskset -c "$CLIENT_CPU" "$LT" -p "$port" -t 1 -c 10 --pipeline=16 --ratio=1:0 --key-pattern=P:P \
        --key-maximum=100000 -n allkeys --no-progress >/dev/null
      scrapes=0
      scraper=
      if [ "$mode" = scraped ]; then
        (while true; do taskset -c "$CLIENT_CPU" curl -s "http://127.0.0.1:$mport/metrics" >/dev/null; echo >>"$out/scrapes"; sleep "$SCRAPE_EVERY"; done) &
        scraper=$!
        : >"$out/scrapes"
      fi
      taskset -c "$CLIENT_CPU" "$LT" -p "$port" -t 1 -c 50 --pipeline="$pipeline" --ratio=1:10 -d 32 \
        --key-maximum=100000 --distinct-client-seed --test-time="$TEST_TIME" --no-progress --hide-histogram \
        --json "$out/run.json" >/dev/null
      if [ -n "$scraper" ]; then kill "$scraper"; wait "$scraper" 2>/dev/null || true; scrapes=$(wc -l <"$out/scrapes"); fi
      kill "$pid"; wait "$pid" 2>/dev/null || true
      p99=$(sed -n '/"total"/,/}/p' "$out/run.json" | sed -n 's/^ *"p99": \([0-9.]*\),*$/\1/p')
      printf "| %s | %s | %s | %.0f | %.3f | %s |\n" "$mode" "$pipeline" "$round" "$(value ops_per_sec "$out/run.json")" "$p99" "$scrapes"
    done
  done
done
rm -rf "$out"
