#!/usr/bin/env bash
# TLS beside plain TCP, percore against redis-server's own TLS (Debian builds it with TLS):
# redis-benchmark --tls (SET and GET, 50 clients, pipeline 1 and 16) against each server
# pinned to SERVER_CPU, the generator on CLIENT_CPU; the server's CPU seconds per million
# requests and the throughput, medians of ROUNDS rounds. Certificates (ECDSA P-256, a CA, a
# server and a client certificate: mutual TLS, as `tls-auth-clients yes` by default) are
# made with openssl for the run. Prints a markdown table.
# Environment: ROUNDS (3), REQUESTS (200000 per test), CLIENTS (50).
set -euo pipefail
# shellcheck source=common.sh
. "$(dirname "$0")/common.sh"
require_binaries "$PERCORE"
require_redis_cli
command -v openssl >/dev/null 2>&1 || { echo "needs openssl (apt-get install -y openssl)" >&2; exit 2; }
command -v redis-benchmark >/dev/null 2>&1 || { echo "needs redis-benchmark (apt-get install -y redis-tools)" >&2; exit 2; }
ROUNDS=${ROUNDS:-3}
REQUESTS=${REQUESTS:-200000}
CLIENTS=${CLIENTS:-50}

pki=$(mktemp -d)
trap 'rm -rf "$pki"' EXIT
(
  cd "$pki"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.crt -days 2 -subj "/CN=bench CA"
  for who in server client; do
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout $who.key -out $who.csr -subj "/CN=$who"
    printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n' >ext.cnf
    openssl x509 -req -in $who.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out $who.crt -days 2 -extfile ext.cnf
  done
) >/dev/null 2>&1
tls_files=(--tls-cert-file "$pki/server.crt" --tls-key-file "$pki/server.key" --tls-ca-cert-file "$pki/ca.crt")
client_tls=(--tls --cacert "$pki/ca.crt" --cert "$pki/client.crt" --key "$pki/client.key")

servers="percore"
command -v redis-server >/dev/null 2>&1 && servers="$servers redis"
results=$(mktemp)
for round in $(seq 1 "$ROUNDS"); do
  for server in $servers; do
    for mode in tls plain; do
      port=$(free_port); tport=$(free_port)
      case "$server" in
        percore) taskset -c "$SERVER_CPU" "$PERCORE" --port "$port" --tls-port "$tport" --shards 1 --save "" "${tls_files[@]}" >/dev/null 2>&1 & ;;
        redis) taskset -c "$SERVER_CPU" redis-server --port "$port" --tls-port "$tport" --bind 127.0.0.1 --save "" --appendonly no "${tls_files[@]}" >/dev/null 2>&1 & ;;
      esac
      pid=$!
      until redis-cli -p "$port" ping >/dev/null 2>&1; do sleep 0.05; done
      if [ "$mode" = tls ]; then args=(-p "$tport" "${client_tls[@]}"); else args=(-p "$port"); fi
      for pipe in 1 16; do
        before=$(cpu_seconds "$pid")
        out=$(taskset -c "$CLIENT_CPU" redis-benchmark "${args[@]}" -n "$REQUESTS" -c "$CLIENTS" -P "$pipe" -t set,get --csv 2>/dev/null)
        after=$(cpu_seconds "$pid")
        rps=$(echo "$out" | awk -F'"' '/^"(SET|GET)"/ {s += $4; n++} END {printf "%.0f", s / n}')
        echo "$server $mode p$pipe $rps $(awk -v a="$after" -v b="$before" -v n="$REQUESTS" 'BEGIN {printf "%.3f", (a - b) * 1e6 / (2 * n)}')" >>"$results"
      done
      kill "$pid"; wait "$pid" 2>/dev/null || true
    done
  done
done
python3 - "$results" "$ROUNDS" <<'PY'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    server, mode, pipe, rps, cpu = line.split()
    rows.setdefault((mode, pipe), {}).setdefault(server, []).append((float(rps), float(cpu)))
print(f"Medians of {sys.argv[2]} rounds; CPU = server CPU seconds per million requests.")
print()
print("| connection | pipeline | percore ops/s | percore CPU | redis ops/s | redis CPU | CPU percore : redis |")
print("|---|---|---:|---:|---:|---:|---:|")
for (mode, pipe), by in sorted(rows.items()):
    p = by.get("percore", []); r = by.get("redis", [])
    med = lambda xs, i: statistics.median(x[i] for x in xs) if xs else float("nan")
    ratio = med(p, 1) / med(r, 1) if r else float("nan")
    print(f"| {mode} | {pipe} | {med(p,0):,.0f} | {med(p,1):.2f} | {med(r,0):,.0f} | {med(r,1):.2f} | {ratio:.2f}x |")
PY
rm -f "$results"
