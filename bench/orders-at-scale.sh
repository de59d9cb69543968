#!/usr/bin/env bash
# Listing and summary cost as the shop grows: p50/p99 of
#   GET /orders?user_id=X&page_size=20, GET /orders?status=paid&page_size=20,
#   GET /orders/summary
# with 1,000, 10,000 and 100,000 orders in the store, on the embedded store
# (SQLite) and on Redis. The stores are filled natively by bench/seed-orders
# (shop-core over the host's own key-value backends), then served by wharf.
#
#   bench/orders-at-scale.sh                       # 5 s per measurement
#   SIZES="1000 10000" DURATION=3 bench/orders-at-scale.sh
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
scripts/setup wrk redis-server
scripts/build-components
cargo build --profile fastest -p wharf
cargo build --release -p seed-orders
. bench/common.sh

duration=${DURATION:-5}
sizes=${SIZES:-"1000 10000 100000"}
redis_port=$(free_port)
redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no > "$work/redis.log" 2>&1 &
pids+=($!)
sleep 0.3
redis_url="redis://127.0.0.1:$redis_port"
cat > "$work/redis-store.toml" <<TOML
[key_value_store.default]
type = "redis"
url = "$redis_url"
TOML

for store in sqlite redis; do
  for n in $sizes; do
    state="$work/$store-$n"
    mkdir -p "$state"
    started=$(date +%s)
    if [ "$store" = sqlite ]; then
      target/release/seed-orders sqlite "$state/sqlite_key_value.db" "$n" > /dev/null
      extra=()
    else
      redis-cli -p "$redis_port" FLUSHALL > /dev/null
      target/release/seed-orders redis "$redis_url" "$n" > /dev/null
      extra=(--runtime-config-file "$work/redis-store.toml")
    fi
    echo "seeded $n orders on $store in $(( $(date +%s) - started )) s"
    port=$(free_port)
    SPIN_VARIABLE_ADMIN_TOKEN=bench SPIN_VARIABLE_CUSTOMER_AUTH=none SPIN_VARIABLE_REDIS_HOST="127.0.0.1:$redis_port" RUST_LOG=warn \
      "$wharf_bin" up -f "$root/spin.toml" --listen "127.0.0.1:$port" --state-dir "$state" "${extra[@]}" > "$state/wharf.log" 2>&1 &
    pid=$!
    pids+=($pid)
    wait_http "http://127.0.0.1:$port/.well-known/spin/health"
    base="http://127.0.0.1:$port"
    measure "$store, $n orders: GET /orders?user_id=1&page_size=20" 16 "$base/orders?user_id=1&page_size=20"
    measure "$store, $n orders: GET /orders?status=paid&page_size=20" 16 "$base/orders?status=paid&page_size=20"
    measure "$store, $n orders: GET /orders/summary" 16 "$base/orders/summary"
    kill "$pid"
    wait "$pid" 2>/dev/null || true
  done
done

{
  echo "Command: \`DURATION=$duration SIZES=\"$sizes\" bench/orders-at-scale.sh\` on $(nproc) cores, $(date -u +%Y-%m-%d)."
  echo "Orders spread over 100 users; every third is paid. wrk -t2 -c16 -d${duration}s on the same machine."
  echo
  echo "| store, orders: route | connections | req/s | p50 | p99 |"
  echo "|---|---|---|---|---|"
  printf '%s\n' "${rows[@]}"
} > "$work/table.md"
write_section scale "Order listing and summary at scale" "$work/table.md"
