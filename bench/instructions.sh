#!/usr/bin/env bash
# Instructions executed per request, counted by valgrind's callgrind: unlike
# req/s on this shared 2-core machine (±15% between identical runs), the
# count is the same run after run, so it shows what a change to the host
# saves. Writes the table to docs/benchmarks.md.
#
#   bench/instructions.sh            # 2,000 requests per row
#   REQUESTS=500 bench/instructions.sh
#
# Each server runs under callgrind; after 300 warm-up requests the counters
# are zeroed, REQUESTS requests go over one keep-alive connection, in turn,
# and the total (user space: host, guest and libc; not the kernel) is divided
# by REQUESTS. Rows: native hyper, wharf and `wasmtime serve` with reuse and
# strict isolation, and `wasmtime serve` sent the seven headers wharf adds
# for Spin, so the two hosts can be compared on the same guest work.
# Under valgrind the pooling allocator can reserve only one instance slot's
# worth of address space, hence --max-instances 1; reuse rows keep one
# instance for the whole run.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup valgrind
scripts/build-components
cargo build --profile fastest -p wharf
cargo build --release -p native-hello
requests=${REQUESTS:-2000}
. bench/common.sh
install_wasmtime_serve
hello_manifest=$(write_hello_manifest)
guest=target/wasm32-wasip2/wasm/guest_hello.wasm

# count <label> <keepalive-client option, or ""> <command...>: one row, after
# 300 warm-up requests.
count() {
  local label=$1 client=()
  [ -n "$2" ] && client=("$2")
  shift 2
  start_callgrind "$@"
  python3 bench/keepalive-client.py "$callgrind_port" 300 "${client[@]}"
  callgrind_count "$requests" "${client[@]}"
  stop_callgrind
  printf '%-56s %9d instructions/request\n' "$label" "$per_request"
  rows+=("| $label | $per_request |")
}

reuse=(--max-instances 1 --max-instance-reuse-count 1000000)
strict=(--max-instances 1 --max-instance-reuse-count 1 --max-instance-concurrent-reuse-count 1)
serve=("$wasmtime_bin" serve -Scli -Sp3 -Wcomponent-model-async --addr 127.0.0.1:PORT)
count "native hyper hello (baseline)" "" target/release/native-hello 127.0.0.1:PORT
count "wharf hello, reuse" "" "$wharf_bin" up -f "$hello_manifest" --listen 127.0.0.1:PORT --state-dir "$work/state" "${reuse[@]}"
count "wharf hello, strict (fresh instance)" "" "$wharf_bin" up -f "$hello_manifest" --listen 127.0.0.1:PORT --state-dir "$work/state" "${strict[@]}"
count "wasmtime serve hello, reuse" "" "${serve[@]}" --max-instance-reuse-count 1000000 "$guest"
count "wasmtime serve hello, reuse, sent wharf's spin-* headers" --spin-headers "${serve[@]}" --max-instance-reuse-count 1000000 "$guest"
count "wasmtime serve hello, strict" "" "${serve[@]}" --max-instance-reuse-count 1 --max-instance-concurrent-reuse-count 1 "$guest"

{
  echo "Command: \`REQUESTS=$requests bench/instructions.sh\`, $(date -u +%Y-%m-%d): valgrind $(valgrind --version | sed 's/valgrind-//'), user-space instructions per request, one keep-alive connection."
  echo
  echo "| server | instructions per request |"
  echo "|---|---|"
  printf '%s\n' "${rows[@]}"
} > "$work/table.md"
write_section instructions "Instructions per request" "$work/table.md"
