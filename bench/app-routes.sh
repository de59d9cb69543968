# Sourced by bench/http.sh: the app's GET /orders/{id} and POST /orders on
# wharf (instance reuse and strict isolation), with a redis-server of its own
# and key-value on the embedded store.
redis_port=$(free_port)
redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no > "$work/redis.log" 2>&1 &
pids+=($!)
for policy in reuse strict; do
  app_port=$(free_port)
  args=()
  [ "$policy" = strict ] && args=(--max-instance-reuse-count 1 --max-instance-concurrent-reuse-count 1)
  SPIN_VARIABLE_ADMIN_TOKEN=bench SPIN_VARIABLE_CUSTOMER_AUTH=none SPIN_VARIABLE_REDIS_HOST="127.0.0.1:$redis_port" \
    start_wharf "$root/spin.toml" "$app_port" "${args[@]}"
  base="http://127.0.0.1:$app_port"
  curl -fs -X PUT "$base/inventory/products/bench-widget" -H 'Authorization: Bearer bench' \
    -d '{"name":"Widget","price":1999,"currency":"USD","stock":1000000000}' > /dev/null
  order_id=$(curl -fs -X POST "$base/orders" -d '{"user_id":1,"product_id":"bench-widget","quantity":1}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
  cat > "$work/post-order.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["content-type"] = "application/json"
wrk.body = '{"user_id":2,"items":[{"product_id":"bench-widget","quantity":1}]}'
LUA
  for c in 1 16 64; do
    measure "wharf GET /orders/{id}, $policy" "$c" "$base/orders/$order_id"
    measure "wharf POST /orders, $policy" "$c" "$base/orders" "$work/post-order.lua"
  done
  # Resident memory of the whole app right after the load above.
  rss_kib=$(awk '/VmHWM/ {print $2}' "/proc/${pids[-1]}/status")
  extra_rows+=("| peak resident memory of the app under the load above ($policy) | $((rss_kib / 1024)) MiB |")
done

# Start to first answer with a warm compiled-code cache (the runs above warmed it).
for i in 1 2 3 4 5; do
  port=$(free_port)
  t0=$(date +%s%N)
  SPIN_VARIABLE_ADMIN_TOKEN=bench SPIN_VARIABLE_CUSTOMER_AUTH=none SPIN_VARIABLE_REDIS_HOST="127.0.0.1:$redis_port"     "$wharf_bin" up -f "$root/spin.toml" --listen "127.0.0.1:$port" --state-dir "$work/start-$i" > "$work/start-$i.log" 2>&1 &
  pid=$!
  until curl -fs "http://127.0.0.1:$port/.well-known/spin/health" > /dev/null 2>&1; do sleep 0.005; done
  t1=$(date +%s%N)
  kill "$pid"; wait "$pid" 2>/dev/null || true
  starts+=($(( (t1 - t0) / 1000000 )))
done
sorted=$(printf '%s\n' "${starts[@]}" | sort -n | tr '\n' ' ')
extra_rows+=("| host start to first answer, whole app, warm cache (5 runs, ms) | $sorted |")
