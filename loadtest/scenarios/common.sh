# Shared by the scenario scripts (sourced, not run): the repository root as the working
# directory, where the binaries are, and small helpers.
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

PERCORE=${PERCORE:-target/release/percore}
LT=${LT:-target/release/percore-loadtest}

# require_binaries PATH...: stop with the build command when one is missing.
require_binaries() {
  for b in "$@"; do
    [ -x "$b" ] || { echo "build first: cargo build --release --bin percore --bin percore-loadtest (or make bench)" >&2; exit 2; }
  done
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# CPU seconds (user + system) a live process has used.
cpu_seconds() { awk -v hz="$(getconf CLK_TCK)" '{printf "%.2f", ($14+$15)/hz}' "/proc/$1/stat"; }
