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
