# Shared by the scenario scripts (sourced, not run): the repository root as the working
# directory, where the binaries are, and small helpers.
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

PERCORE=${PERCORE:-target/release/percore}
LT=${LT:-target/release/percore-loadtest}
# Servers run on SERVER_CPU, the load generator on CLIENT_CPU, so they never share a core.
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}

# require_binaries PATH...: stop with the build command when one is missing.
require_binaries() {
  for b in "$@"; do
    [ -x "$b" ] || { echo "build first: cargo build --release --bin percore --bin percore-loadtest (or make bench)" >&2; exit 2; }
  done
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# CPU seconds (user + system) a live process has used.
cpu_seconds() { awk -v hz="$(getconf CLK_TCK)" '{printf "%.2f", ($14+$15)/hz}' "/proc/$1/stat"; }

# require_redis_cli: stop with the install command when redis-cli is missing.
require_redis_cli() {
  command -v redis-cli >/dev/null 2>&1 || { echo "needs redis-cli (apt-get install -y redis-tools)" >&2; exit 2; }
}

# The servers a side-by-side scenario runs: percore, and redis when redis-server is installed.
servers_with_redis() {
  if command -v redis-server >/dev/null 2>&1; then echo "percore redis"; else echo "percore"; fi
}

# side_by_side: the binaries and redis-cli are there; sets `servers` to percore and, when
# installed, redis-server.
side_by_side() {
  require_binaries "$PERCORE" "$LT"
  require_redis_cli
  servers=$(servers_with_redis)
}

# start_one_shard SERVER PORT: percore with one shard, or redis-server without persistence,
# pinned to SERVER_CPU with output discarded; waits until it answers and sets `server_pid`.
start_one_shard() {
  case "$1" in
    percore) taskset -c "$SERVER_CPU" "$PERCORE" --port "$2" --shards 1 >/dev/null 2>&1 & ;;
    redis) taskset -c "$SERVER_CPU" redis-server --port "$2" --bind 127.0.0.1 --save "" --appendonly no >/dev/null 2>&1 & ;;
    *) echo "unknown server '$1': percore or redis" >&2; return 2 ;;
  esac
  server_pid=$!
  until redis-cli -p "$2" ping >/dev/null 2>&1; do sleep 0.05; done
}

# start_server SERVER SHARDS PORT LOG: percore with SHARDS shards, redis-server or
# valkey-server, without persistence, pinned to SERVER_CPU, output to LOG; sets SERVER_PID.
# False when it exits or does not answer within 10 s.
start_server() {
  case "$1" in
    percore) taskset -c "$SERVER_CPU" "$PERCORE" --port "$3" --shards "$2" --save "" >"$4" 2>&1 & ;;
    redis) taskset -c "$SERVER_CPU" redis-server --port "$3" --bind 127.0.0.1 --save "" --appendonly no >"$4" 2>&1 & ;;
    valkey) taskset -c "$SERVER_CPU" valkey-server --port "$3" --bind 127.0.0.1 --save "" --appendonly no >"$4" 2>&1 & ;;
    *) echo "unknown server '$1': percore, redis or valkey" >&2; return 2 ;;
  esac
  SERVER_PID=$!
  for _ in $(seq 200); do
    redis-cli -p "$3" ping >/dev/null 2>&1 && return 0
    kill -0 "$SERVER_PID" 2>/dev/null || return 1
    sleep 0.05
  done
  return 1
}

# growth_fill PORT KEYS [percore-loadtest options...]: SETs KEYS distinct keys (16-byte keys,
# 32-byte values) from 4 connections at pipeline 16, the generator pinned to CLIENT_CPU.
growth_fill() {
  local port=$1 keys=$2
  shift 2
  taskset -c "$CLIENT_CPU" "$LT" -p "$port" -t 1 -c 4 --pipeline=16 --ratio=1:0 --key-pattern=P:P \
    --key-prefix=key: --key-minimum=100000000000 --key-maximum=$((100000000000 + keys - 1)) \
    -n allkeys -d 32 --no-progress --hide-histogram "$@" >/dev/null
}
