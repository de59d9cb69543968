#!/usr/bin/env bash
# HTTP throughput and latency of the host, beside a native hyper server
# measured in the same run. Writes the table to docs/benchmarks.md.
#
#   bench/http.sh            # 10 s per measurement
#   DURATION=3 bench/http.sh # quicker
#
# Rows: the hello component under strict isolation (a fresh instance per
# request) and under instance reuse (128 requests per instance, 16 at once),
# on wharf and on `wasmtime serve` of the same wasmtime release (the
# competitor; built once into target/bench-tools, about 15 minutes), the
# app's GET /orders/{id} and POST /orders (reuse), and native hyper.
# wrk runs on the same 2-core machine as the server, so absolute numbers are
# lower than on a dedicated load generator; the ratios are what to compare.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
scripts/setup wrk redis-server
scripts/build-components
cargo build --profile fastest -p wharf
cargo build --release -p native-hello

duration=${DURATION:-10}
. bench/common.sh
install_wasmtime_serve


extra_rows=()
starts=()
hello_manifest=$(write_hello_manifest)

native_port=$(free_port)
target/release/native-hello "127.0.0.1:$native_port" & pids+=($!)
wait_http "http://127.0.0.1:$native_port/"
strict_port=$(free_port)
start_wharf "$hello_manifest" "$strict_port" --max-instance-reuse-count 1 --max-instance-concurrent-reuse-count 1
reuse_port=$(free_port)
start_wharf "$hello_manifest" "$reuse_port"
# wasmtime serve runs the same guest with the same instance policies; it
# adds no routing or spin-* headers, which is what wharf pays for Spin's semantics.
start_wasmtime_serve() { # <port> [extra args...]
  local port=$1; shift
  "$wasmtime_bin" serve -Scli -Sp3 -Wcomponent-model-async --addr "127.0.0.1:$port" "$@" target/wasm32-wasip2/wasm/guest_hello.wasm > "$work/serve-$port.log" 2>&1 &
  pids+=($!)
  wait_http "http://127.0.0.1:$port/"
}
serve_strict_port=$(free_port)
start_wasmtime_serve "$serve_strict_port" --max-instance-reuse-count 1 --max-instance-concurrent-reuse-count 1
serve_reuse_port=$(free_port)
start_wasmtime_serve "$serve_reuse_port" --max-instance-reuse-count 128 --max-instance-concurrent-reuse-count 16

for c in 1 16 64; do
  measure "native hyper hello (baseline)" "$c" "http://127.0.0.1:$native_port/"
  measure "wharf hello, strict (fresh instance)" "$c" "http://127.0.0.1:$strict_port/"
  measure "wharf hello, reuse 128/16" "$c" "http://127.0.0.1:$reuse_port/"
  measure "wasmtime serve hello, strict" "$c" "http://127.0.0.1:$serve_strict_port/"
  measure "wasmtime serve hello, reuse 128/16" "$c" "http://127.0.0.1:$serve_reuse_port/"
done

if [ -f spin.toml ] && [ -f target/wasm32-wasip2/wasm/order.wasm ]; then
  . bench/app-routes.sh
fi

{
  echo "Command: \`DURATION=$duration bench/http.sh\` on $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), $(date -u +%Y-%m-%d)."
  echo "wrk -t2 (-t1 for one connection) -d${duration}s on the same machine, which also runs the server."
  echo
  echo "| server / route | connections | req/s | p50 | p99 |"
  echo "|---|---|---|---|---|"
  printf '%s\n' "${rows[@]}"
  if [ ${#extra_rows[@]} -gt 0 ]; then
    echo
    echo "| measure | value |"
    echo "|---|---|"
    printf '%s\n' "${extra_rows[@]}"
  fi
} > "$work/table.md"
write_section http "HTTP" "$work/table.md"
