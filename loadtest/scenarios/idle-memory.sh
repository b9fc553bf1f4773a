#!/usr/bin/env bash
# Memory per idle connection, percore beside redis-server (and valkey-server when installed):
# each server pinned to SERVER_CPU gets CONNS clients that each send one PING and then stay
# idle; the server's RSS before and after, divided by CONNS. Prints a markdown table.
# Environment: CONNS (10000).
set -euo pipefail
# shellcheck source=common.sh
. "$(dirname "$0")/common.sh"
require_binaries "$PERCORE" "$LT"
CONNS=${CONNS:-10000}
ulimit -n $((CONNS + 1024))

servers="percore"
for peer in redis-server valkey-server; do
  command -v "$peer" >/dev/null 2>&1 && servers="$servers ${peer%-server}"
done
echo "| server | RSS before (MiB) | RSS with $CONNS idle clients (MiB) | bytes per idle client |"
echo "|---|---:|---:|---:|"
for server in $servers; do
  port=$(free_port)
  case "$server" in
    percore) taskset -c "$SERVER_CPU" "$PERCORE" --port "$port" --shards 1 --maxclients $((CONNS + 100)) >/dev/null 2>&1 & ;;
    *) taskset -c "$SERVER_CPU" "$server-server" --port "$port" --bind 127.0.0.1 --save "" --appendonly no --maxclients $((CONNS + 100)) >/dev/null 2>&1 & ;;
  esac
  pid=$!
  until "$LT" -p "$port" -t 1 -c 1 -n 1 --ratio=0:1 --no-progress >/dev/null 2>&1; do sleep 0.05; done
  python3 - "$pid" "$port" "$server" "$CONNS" <<'PY'
import socket, sys, time
pid, port, name, n = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
def rss():
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1]) * 1024
time.sleep(0.5)
before = rss()
conns = [socket.create_connection(("127.0.0.1", port)) for _ in range(n)]
for c in conns:
    c.sendall(b"PING\r\n")
for c in conns:
    assert c.recv(16) == b"+PONG\r\n"
time.sleep(1)
after = rss()
print(f"| {name} | {before / 2**20:.1f} | {after / 2**20:.1f} | {(after - before) // n:,} |")
PY
  kill "$pid"; wait "$pid" 2>/dev/null || true
done
