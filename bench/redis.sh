#!/usr/bin/env bash
# Redis side of the host: events per second through the Redis trigger
# (publish to handler done, with a trivial handler: the "guest-redis-sink"
# test guest's `noop` message), beside redis-benchmark's PUBLISH rate on the
# same server in the same run as the ceiling; and orders per second through
# the whole saga (POST /orders with tok_approve until every order is paid).
# Appends its table to docs/benchmarks.md.
#
#   bench/redis.sh                 # 50,000 events, 500 orders
#   EVENTS=20000 ORDERS=200 bench/redis.sh
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
scripts/setup redis-server
scripts/build-components
cargo build --profile fastest -p wharf

events=${EVENTS:-50000}
orders=${ORDERS:-500}
. bench/common.sh
now_ns() { date +%s%N; }

redis_port=$(free_port)
redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no > "$work/redis.log" 2>&1 &
pids+=($!)
sleep 0.3
redis_url="redis://127.0.0.1:$redis_port"

# Ceiling: how fast this Redis takes PUBLISH from 8 clients.
publish_rps=$(redis-benchmark -p "$redis_port" -c 8 -n "$events" -q PUBLISH bench.ceiling hello | awk '{for(i=1;i<=NF;i++) if ($i ~ /^[0-9.]+$/ && $(i+1)=="requests") print $i}' | head -1)

# The trigger with a trivial handler.
mkdir -p "$work/sink"
cat > "$work/sink/spin.toml" <<TOML
spin_manifest_version = 2
[application]
name = "bench-sink"
[application.trigger.redis]
address = "$redis_url"
[[trigger.redis]]
channel = "bench.events"
component = "sink"
[component.sink]
source = "$root/target/wasm32-wasip2/wasm/guest_redis_sink.wasm"
TOML
metrics_port=$(free_port)
RUST_LOG=warn "$wharf_bin" up -f "$work/sink" --listen "127.0.0.1:$(free_port)" --metrics-listen "127.0.0.1:$metrics_port" --state-dir "$work/sink-state" > "$work/sink.log" 2>&1 &
pids+=($!)
wait_http "http://127.0.0.1:$metrics_port/metrics"
until [ "$(redis-cli -p "$redis_port" PUBSUB NUMSUB bench.events | tail -1)" = "1" ]; do sleep 0.05; done
handled() { curl -fs "http://127.0.0.1:$metrics_port/metrics" | awk '$1=="wharf_redis_messages_total" {print $2}'; }
t0=$(now_ns)
redis-benchmark -p "$redis_port" -c 8 -n "$events" -q PUBLISH bench.events noop > /dev/null
until [ "$(handled)" -ge "$events" ]; do sleep 0.02; done
t1=$(now_ns)
trigger_eps=$(( events * 1000000000 / (t1 - t0) ))
errors=$(curl -fs "http://127.0.0.1:$metrics_port/metrics" | awk '$1=="wharf_redis_handler_errors_total" {print $2}')

# The whole saga: orders placed over HTTP, charged by the payment worker
# through the sandbox, paid by order-events.
app_port=$(free_port)
SPIN_VARIABLE_ADMIN_TOKEN=bench SPIN_VARIABLE_CUSTOMER_AUTH=none SPIN_VARIABLE_REDIS_HOST="127.0.0.1:$redis_port" RUST_LOG=warn \
  "$wharf_bin" up -f "$root/spin.toml" --listen "127.0.0.1:$app_port" --state-dir "$work/app-state" > "$work/app.log" 2>&1 &
pids+=($!)
base="http://127.0.0.1:$app_port"
wait_http "$base/.well-known/spin/health"
curl -fs -X PUT "$base/inventory/products/saga-widget" -H 'Authorization: Bearer bench' \
  -d '{"name":"Widget","price":500,"currency":"USD","stock":1000000}' > /dev/null
paid() { curl -fs "$base/orders?status=paid&page_size=1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["total_count"])'; }
t0=$(now_ns)
seq 1 "$orders" | xargs -P 8 -I{} curl -fs -o /dev/null -X POST "$base/orders" \
  -d '{"user_id":{},"product_id":"saga-widget","quantity":1,"payment_token":"tok_approve"}'
until [ "$(paid)" -ge "$orders" ]; do sleep 0.05; done
t1=$(now_ns)
saga_ops=$(( orders * 1000000000 / (t1 - t0) ))

table=$(cat <<MD
Command: \`EVENTS=$events ORDERS=$orders bench/redis.sh\` on $(nproc) cores, $(date -u +%Y-%m-%d); Redis, host and load generator on the same machine.

| measure | per second |
|---|---|
| redis-benchmark PUBLISH, 8 clients (ceiling) | ${publish_rps%.*} |
| events through the Redis trigger, publish to handler done, trivial handler | $trigger_eps (handler errors: ${errors:-0}) |
| orders through the whole saga (created → charged → paid), 8 clients | $saga_ops |
MD
)
echo "$table"
echo "$table" > "$work/table.md"
write_section redis "Redis trigger and saga" "$work/table.md"
