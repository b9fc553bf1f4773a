#!/usr/bin/env bash
# Where the slow replies of a growth fill come from: fills KEYS keys as growth.sh does, with a
# packet capture on lo and a CPU trace of SERVER_CPU, then stalls.py measures each request
# batch's time at the server on the wire (which leaves out the load generator's own delays)
# and says, for every window where a batch waited THRESHOLD_MS or more, whether the server was
# running (and in which functions), its CPU was idle, another task had it, or the vCPU itself
# was not running. `make bench-stalls`; run as root (tcpdump, perf).
#
# Environment: SERVER (percore; or redis), KEYS (10000000), THRESHOLD_MS (1), SERVER_CPU (0),
# CLIENT_CPU (1), OVERWRITE=1 (the control: record a second fill of the same keys, which
# rewrites them with no table growth). The capture and the trace (about 150 MB for 10M keys) go to a temporary
# directory that is removed afterwards; KEEP=1 keeps it.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=common.sh
. "$(dirname "$0")/common.sh"
require_binaries "$PERCORE" "$LT"
require_redis_cli
for tool in tcpdump perf python3; do
  command -v "$tool" >/dev/null 2>&1 || { echo "needs $tool (apt-get install -y tcpdump linux-perf python3)" >&2; exit 2; }
done

SERVER=${SERVER:-percore}
KEYS=${KEYS:-10000000}
THRESHOLD_MS=${THRESHOLD_MS:-1}
work=$(mktemp -d)
port=$(free_port)
cleanup() {
  [ -n "${server_pid:-}" ] && kill "$server_pid" 2>/dev/null || true
  [ -n "${KEEP:-}" ] && echo "kept in $work" >&2 || rm -rf "$work"
}
trap cleanup EXIT
start_one_shard "$SERVER" "$port"
if [ -n "${OVERWRITE:-}" ]; then
  # The control: fill once unrecorded, so the recorded fill rewrites existing keys with no
  # table growth and no new memory.
  growth_fill "$port" "$KEYS"
fi

# Both recorders run on the generator's CPU, so the server's CPU carries only the server.
# -j adapter_unsynced: the capture's stamps are the kernel's CLOCK_REALTIME.
taskset -c "$CLIENT_CPU" tcpdump -i lo -s 96 -B 262144 -j adapter_unsynced --time-stamp-precision=nano \
  -w "$work/lo.pcap" "tcp port $port" >/dev/null 2>&1 &
tcpdump_pid=$!
taskset -c "$CLIENT_CPU" perf record -C "$SERVER_CPU" -k CLOCK_MONOTONIC -F 4000 -e cpu-clock \
  -o "$work/cpu.data" >/dev/null 2>&1 &
perf_pid=$!
sleep 1
growth_fill "$port" "$KEYS" --json "$work/lt.json"
sleep 0.3
kill -INT "$tcpdump_pid" "$perf_pid"
wait "$tcpdump_pid" "$perf_pid" || true
offset=$(python3 -c 'import time; print(time.time() - time.monotonic())')
perf script -i "$work/cpu.data" -F comm,tid,cpu,time,event,ip,sym --ns 2>/dev/null >"$work/cpu.txt"

echo "== $SERVER, $KEYS keys $([ -n "${OVERWRITE:-}" ] && echo "rewritten" || echo "from empty"); server on CPU $SERVER_CPU, generator on CPU $CLIENT_CPU"
python3 - "$work/lt.json" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
lat = j["commands"]["total"]["latency_ms"]
print(f"generator's view: {j['ops_per_sec']:,.0f} ops/s, p99.99 {lat['p99_99']:.3f} ms, max {lat['max']:.3f} ms")
PY
python3 "$here/stalls.py" "$work/lo.pcap" "$port" "$work/cpu.txt" "$offset" "$THRESHOLD_MS"
