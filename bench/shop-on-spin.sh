#!/usr/bin/env bash
# The shop's GET /orders/{id} and POST /orders, each build on real Spin and
# on wharf, measured in one run: the WASIp3 build (spin.toml) on wharf and
# on Spin 4.1.0-pre0, the WASIp2 build (spin.p2.toml) on wharf and on Spin
# 3.6.3 (the Spin inside SpinKube's shim). Each server gets a state dir of
# its own (key-value on its embedded SQLite store, Spin's layout on both)
# and the same redis-server for events. Writes the table to
# docs/benchmarks.md (section shop-on-spin).
#
#   bench/shop-on-spin.sh                        # 10 s per measurement, wharf --profile fastest
#   DURATION=5 WHARF_PROFILE=release bench/shop-on-spin.sh   # quicker, no LTO build
#
# The Spin binaries come from ../shared/spin (see its README); without them
# the script says so and stops.
set -euo pipefail
cd "$(dirname "$0")/.."
shared=../shared/spin
if [ ! -x "$shared/install.sh" ]; then
  echo "bench/shop-on-spin.sh: no real Spin at $shared; nothing measured" >&2
  exit 1
fi
profile=${WHARF_PROFILE:-fastest}
scripts/setup wrk redis-server
scripts/build-components
cargo build --profile "$profile" -p wharf

duration=${DURATION:-10}
. bench/common.sh
wharf_bin=target/$profile/wharf

redis_port=$(free_port)
redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no > "$work/redis.log" 2>&1 &
pids+=($!)
export SPIN_VARIABLE_ADMIN_TOKEN=bench SPIN_VARIABLE_CUSTOMER_AUTH=none SPIN_VARIABLE_REDIS_HOST="127.0.0.1:$redis_port"
cat > "$work/post-order.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["content-type"] = "application/json"
wrk.body = '{"user_id":2,"items":[{"product_id":"bench-widget","quantity":1}]}'
LUA

# server label, runtime (wharf or a Spin version), manifest
for server in "wharf|wharf|spin.toml|WASIp3" "spin 4.1.0-pre0|4.1.0-pre0|spin.toml|WASIp3" \
              "wharf|wharf|spin.p2.toml|WASIp2" "spin 3.6.3|3.6.3|spin.p2.toml|WASIp2"; do
  IFS='|' read -r label runtime manifest build <<<"$server"
  port=$(free_port)
  if [ "$runtime" = wharf ]; then
    start_wharf "$manifest" "$port"
  else
    spin_bin=$("$shared/install.sh" "$runtime")
    # A process group of its own: Spin runs each trigger in a child process.
    setsid "$spin_bin" up -f "$manifest" --listen "127.0.0.1:$port" --state-dir "$work/spin-$port" \
      > "$work/spin-$port.log" 2>&1 &
    pids+=(-$!)
    wait_http "http://127.0.0.1:$port/.well-known/spin/health"
  fi
  base="http://127.0.0.1:$port"
  curl -fs -X PUT "$base/inventory/products/bench-widget" -H 'Authorization: Bearer bench' \
    -d '{"name":"Widget","price":1999,"currency":"USD","stock":1000000000}' > /dev/null
  order_id=$(curl -fs -X POST "$base/orders" -d '{"user_id":1,"product_id":"bench-widget","quantity":1}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
  for c in 1 16; do
    measure "$label, $build build, GET /orders/{id}" "$c" "$base/orders/$order_id"
    measure "$label, $build build, POST /orders" "$c" "$base/orders" "$work/post-order.lua"
  done
done

{
  echo "Command: \`DURATION=$duration WHARF_PROFILE=$profile bench/shop-on-spin.sh\` on $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), $(date -u +%Y-%m-%d)."
  echo "wrk -t2 (-t1 for one connection) -d${duration}s on the same machine, which also runs the server. wharf: \`--profile $profile\`, default instance policy (WASIp3 instances reused, WASIp2 a fresh instance per request, as Spin does); Spin: the release builds in ../shared/spin. Key-value on each server's embedded SQLite store (Spin's file layout on both), events on one redis-server; customer authentication off (\`customer_auth = \"none\"\`). POST /orders publishes \`orders.created\` and, the orders having no payment token, asks no payment worker."
  echo
  echo "| server | connections | req/s | p50 | p99 |"
  echo "|---|---|---|---|---|"
  printf '%s\n' "${rows[@]}"
} > "$work/table.md"
write_section shop-on-spin "The shop, each build on wharf and on real Spin" "$work/table.md"
