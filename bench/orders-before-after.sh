#!/usr/bin/env bash
# POST /orders and GET /orders?status= before and after issue 12 (customer
# identity, payment checks, the outbox, order and index writes with a journal,
# checked counters), in one run on one wharf binary (this checkout's), each app
# with a redis-server of its own, which also holds its key-value store.
# Writes the table to docs/benchmarks.md.
#
#   bench/orders-before-after.sh        # wrk 5 s a run, 3 rounds; 500 counted requests
#   DURATION=3 ROUNDS=5 REQUESTS=200 bench/orders-before-after.sh
#   BEFORE=<revision> bench/orders-before-after.sh
#
# "Before" is the first parent of issue 12's merge (153c6cb^1): its components
# are built from its own sources, in a git worktree of its own, into the
# scratch dir (a cold build of some minutes; this checkout's target/ is not
# touched). "After" is this checkout, run twice: with customer_auth = "none"
# (the development switch the other benches use) and with a customer JWT
# (HS256, verified by the order component) on every request, as production
# runs it.
#
# Every app is seeded alike: a product with stock for far more orders than a
# run places, and 200 orders of user 1, so that the listing's page of 20 is
# full. A placed order is `confirmed` (stock reserved, payment pending), so
# that is the status listed.
#
# Wall clock: wrk at 1 and 16 connections, ROUNDS rounds; within a round the
# apps take turns on each route (before, after, after with JWT, ...), so the
# noise of this shared machine hits them alike; the median of the rounds.
# Instructions (the stable figure): each app again on a fresh store, seeded
# alike, then served under callgrind; after 100 warm-up requests of a route,
# REQUESTS of it are counted over one keep-alive connection, GET then POST.
# The count includes what the Redis trigger does for each order placed.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
scripts/setup wrk redis-server valgrind
before_rev=${BEFORE:-153c6cb^1}
before_commit=$(git rev-parse --verify "$before_rev^{commit}")
scripts/build-components
cargo build --profile fastest -p wharf
duration=${DURATION:-5}
rounds=${ROUNDS:-3}
requests=${REQUESTS:-500}
. bench/common.sh
# A failed run leaves the before worktree's directory gone with $work: prune
# its registration too.
trap 'cleanup; git worktree prune' EXIT

# The "before" app: its manifest, and its components built from its sources
# into $work/before/target, where the manifest's relative sources point.
before_app="$work/before"
mkdir -p "$before_app"
git worktree add --detach "$work/before-src" "$before_commit"
cp "$work/before-src/spin.toml" "$before_app/spin.toml"
before_packages=$(sed -n 's|^source = "target/wasm32-wasip2/wasm/\(.*\)\.wasm"$|\1|p' "$before_app/spin.toml" | tr _ - | sed 's/^/-p /')
(cd "$work/before-src" && CARGO_TARGET_DIR="$before_app/target" cargo build --target wasm32-wasip2 --profile wasm $before_packages)
git worktree remove --force "$work/before-src"

apps=(before after after-jwt)
declare -A manifest=([before]="$before_app/spin.toml" [after]="$root/spin.toml" [after-jwt]="$root/spin.toml")
declare -A label=([before]="before ($(git rev-parse --short "$before_commit"))" [after]="after, customer_auth none" [after-jwt]="after, customer JWT")
# Key-value on each app's Redis (`type = "redis"`), not on wharf's embedded
# SQLite store: that store keeps counters as Spin's does (8-byte integers),
# which before's code cannot read (it wrote and parsed decimal text, as the
# Redis store keeps them; after reads either).
declare -A redis_port
for app in "${apps[@]}"; do
  redis_port[$app]=$(free_port)
  redis-server --port "${redis_port[$app]}" --bind 127.0.0.1 --save "" --appendonly no > "$work/redis-$app.log" 2>&1 &
  pids+=($!)
  printf '[key_value_store.default]\ntype = "redis"\nurl = "redis://127.0.0.1:%s"\n' "${redis_port[$app]}" > "$work/runtime-config-$app.toml"
done

# A customer token of user 1 for the JWT app: HS256 over the standard
# library's HMAC, claims as the order component requires (sub, aud, exp).
jwt_secret=bench-customer-token-secret-of-32-bytes-or-more
customer_token=$(python3 - "$jwt_secret" <<'PY'
import base64, hashlib, hmac, json, sys, time
def part(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=")
signed = part(json.dumps({"alg": "HS256", "typ": "JWT"}).encode()) + b"." + \
    part(json.dumps({"sub": "1", "aud": "shop", "exp": int(time.time()) + 86400}).encode())
print((signed + b"." + part(hmac.new(sys.argv[1].encode(), signed, hashlib.sha256).digest())).decode())
PY
)

# use_app <app>: exports the variables that app's wharf reads, and sets auth
# to the keep-alive client's options for its customer requests.
use_app() {
  unset SPIN_VARIABLE_CUSTOMER_AUTH SPIN_VARIABLE_JWT_VERIFICATION_KEY
  # Before names its Redis by URL (redis_url), after by redis_host (and
  # redis_password, empty here); each ignores the other's.
  export SPIN_VARIABLE_ADMIN_TOKEN=bench SPIN_VARIABLE_REDIS_HOST="127.0.0.1:${redis_port[$1]}" SPIN_VARIABLE_REDIS_URL="redis://127.0.0.1:${redis_port[$1]}"
  auth=()
  case $1 in
    after) export SPIN_VARIABLE_CUSTOMER_AUTH=none ;;
    after-jwt) export SPIN_VARIABLE_JWT_VERIFICATION_KEY=$jwt_secret; auth=(--header "authorization: Bearer $customer_token") ;;
  esac
}

order_body='{"user_id":1,"items":[{"product_id":"bench-widget","quantity":1}]}'
list_path='/orders?status=confirmed&page_size=20'
post_order=(--method POST --path /orders --header 'content-type: application/json' --body "$order_body" --status 201)
list_orders=(--path "$list_path")

# seed <port>: the product and 200 orders of user 1 (use_app first); checks
# that the listing answers a full page.
seed() {
  curl -fs -X PUT "http://127.0.0.1:$1/inventory/products/bench-widget" -H 'Authorization: Bearer bench' \
    -d '{"name":"Widget","price":1999,"currency":"USD","stock":1000000000}' > /dev/null
  python3 bench/keepalive-client.py "$1" 200 "${post_order[@]}" "${auth[@]}"
  curl -fs "http://127.0.0.1:$1$list_path" "${auth[@]}" |
    python3 -c 'import json, sys; n = len(json.load(sys.stdin)["orders"]); sys.exit(0 if n == 20 else f"a page of {n} orders, not 20")'
}

# Wall clock: all three apps up at once, measured in turns.
declare -A port
for app in "${apps[@]}"; do
  use_app "$app"
  port[$app]=$(free_port)
  start_wharf "${manifest[$app]}" "${port[$app]}" --runtime-config-file "$work/runtime-config-$app.toml"
  seed "${port[$app]}"
  {
    echo 'wrk.method = "POST"'
    echo 'wrk.headers["content-type"] = "application/json"'
    echo "wrk.body = '$order_body'"
  } > "$work/post-$app.lua"
  : > "$work/get-$app.lua"
  if [ ${#auth[@]} -gt 0 ]; then
    echo "wrk.headers[\"authorization\"] = \"Bearer $customer_token\"" | tee -a "$work/post-$app.lua" >> "$work/get-$app.lua"
  fi
done
for round in $(seq 1 "$rounds"); do
  for route in get post; do
    for c in 1 16; do
      for app in "${apps[@]}"; do
        url="http://127.0.0.1:${port[$app]}/orders"
        [ "$route" = get ] && url="http://127.0.0.1:${port[$app]}$list_path"
        wrk_run "$c" "$url" "$work/$route-$app.lua"
        printf 'round %s %-5s c=%-3s %-28s %10s req/s  p50 %-9s p99 %s\n' "$round" "$route" "$c" "${label[$app]}" "$rps" "$p50" "$p99"
        printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$route" "$c" "$app" "$rps" "$p50" "$p99" >> "$work/wrk.tsv"
      done
    done
  done
done
for p in "${pids[@]:${#apps[@]}}"; do kill "$p"; wait "$p" 2>/dev/null || true; done

# wait_idle <pid>: until the process has used under a tenth of a core for
# a fifth of a second (the Redis trigger handles deliveries in the
# background); gives up after a minute.
wait_idle() {
  local before after
  for _ in $(seq 1 300); do
    before=$(tree_cpu_ticks "$1")
    sleep 0.2
    after=$(tree_cpu_ticks "$1")
    [ $((after - before)) -le $(($(getconf CLK_TCK) / 50)) ] && return 0
  done
  echo "wait_idle: process $1 still busy after a minute" >&2
  return 1
}

# publish_in_turn <redis port> <channel> <file>: publishes the file's
# contents REQUESTS times, each once the server is idle again.
publish_in_turn() {
  for _ in $(seq 1 "$requests"); do
    redis-cli -p "$1" -x publish "$2" < "$3" > /dev/null
    wait_idle "$callgrind_pid"
  done
}

# count_event <app> <channel>: instructions per delivery of one event the app
# publishes on the channel to its subscriber (the payment worker's fresh
# instance for orders.created): an event captured from one more POST, then
# published REQUESTS times while counting, each once the one before is
# handled (under callgrind there is one instance slot).
count_event() {
  local event="$work/event-$1.json"
  redis-cli -p "${redis_port[$1]}" subscribe "$2" > "$work/subscribed.txt" &
  local subscriber=$!
  sleep 0.5
  python3 bench/keepalive-client.py "$callgrind_port" 1 "${post_order[@]}" "${auth[@]}"
  wait_idle "$callgrind_pid"
  kill "$subscriber"; wait "$subscriber" 2>/dev/null || true
  python3 -c 'import sys, json
lines = open(sys.argv[1]).read().split("\n")
last = max(i for i, line in enumerate(lines) if line == "message")
event = json.loads(lines[last + 2])
assert event["event_type"] == sys.argv[2], event
sys.stdout.write(json.dumps(event))' "$work/subscribed.txt" "$2" > "$event"
  callgrind_window "$callgrind_pid" publish_in_turn "${redis_port[$1]}" "$2" "$event"
  callgrind_dumps=$((callgrind_dumps + 1))
  printf '%s\tevent\t%s\n' "$1" $(( $(awk '/^totals:/ {print $2}' "$callgrind_out.$callgrind_dumps") / requests )) >> "$work/instructions.tsv"
}

# Instructions: one app at a time under callgrind, on a store seeded as above
# by wharf outside valgrind. Only the order component answers under callgrind:
# a reused instance of another component would hold the one slot that
# --max-instances 1 leaves, and POST /orders would get 503.
for app in "${apps[@]}"; do
  use_app "$app"
  seed_port=$(free_port)
  redis-cli -p "${redis_port[$app]}" flushall > /dev/null
  start_wharf "${manifest[$app]}" "$seed_port" --runtime-config-file "$work/runtime-config-$app.toml"
  seed "$seed_port"
  kill "${pids[-1]}"; wait "${pids[-1]}" 2>/dev/null || true
  start_callgrind "$wharf_bin" up -f "${manifest[$app]}" --listen 127.0.0.1:PORT --state-dir "$work/state-$seed_port" \
    --runtime-config-file "$work/runtime-config-$app.toml" --max-instances 1 --max-instance-reuse-count 1000000
  python3 bench/keepalive-client.py "$callgrind_port" 100 "${list_orders[@]}" "${auth[@]}"
  callgrind_count "$requests" "${list_orders[@]}" "${auth[@]}"
  printf '%s\tget\t%s\n' "$app" "$per_request" >> "$work/instructions.tsv"
  python3 bench/keepalive-client.py "$callgrind_port" 100 "${post_order[@]}" "${auth[@]}"
  callgrind_count "$requests" "${post_order[@]}" "${auth[@]}"
  printf '%s\tpost\t%s\n' "$app" "$per_request" >> "$work/instructions.tsv"
  # Before's payment worker consumed every orders.created; after's is asked
  # (orders.payment_requested) only for orders placed with a payment token,
  # and the bench's have none, so their POST sets off no delivery.
  if grep -q '^channel = "orders.created"$' "${manifest[$app]}"; then
    count_event "$app" orders.created
  else
    printf '%s\tevent\t0\n' "$app" >> "$work/instructions.tsv"
  fi
  # Each POST's count includes the payment worker's handling of the event
  # it sets off; a delivery that failed (as every one did while the pool
  # had one fiber stack per slot) would leave that out unseen.
  if grep -q "redis handler failed" "$work/server-$callgrind_port.log"; then
    grep -m 3 "redis handler failed" "$work/server-$callgrind_port.log" >&2
    echo "a Redis delivery failed under callgrind: the counts would not hold the payment worker's work" >&2
    exit 1
  fi
  stop_callgrind
  cat "$work/instructions.tsv"
done

{
  echo "Command: \`DURATION=$duration ROUNDS=$rounds REQUESTS=$requests bench/orders-before-after.sh\` on $(nproc) cores, $(date -u +%Y-%m-%d); before = \`$before_rev\` ($(git rev-parse --short "$before_commit")), after = $(git rev-parse --short HEAD), both on this checkout's wharf (\`fastest\`), key-value on each app's redis-server, 200 orders seeded."
  echo
  python3 - "$work/instructions.tsv" "$work/wrk.tsv" "GET $list_path" "$requests" "$rounds" "${label[before]}" "${label[after]}" "${label[after-jwt]}" <<'PY'
import csv, statistics, sys
instructions, wrk, list_route, requests, rounds = sys.argv[1:6]
labels = dict(zip(["before", "after", "after-jwt"], sys.argv[6:9]))
routes = {"get": f"`{list_route}`", "post": "`POST /orders`"}

def rows(path):
    return list(csv.reader(open(path), delimiter="\t"))

def change(after, before):
    return f"{(after - before) / before * 100:+.1f}%"

def ms(latency):
    for unit, factor in (("us", 0.001), ("ms", 1), ("s", 1000)):
        if latency.endswith(unit):
            return float(latency[: -len(unit)]) * factor
    raise ValueError(f"a wrk latency without a unit: {latency!r}")

print(f"User-space instructions per request (callgrind; {requests} requests over one keep-alive connection, after warm-up):")
print()
print("| route | " + " | ".join(labels.values()) + " |")
print("|---|---|---|---|")
counts = {(app, route): int(n) for app, route, n in rows(instructions)}
# A POST's count holds the delivery of the event it sets off for the
# payment worker (before's only); "event" counts that delivery alone, so the
# two rows after it split the POST.
for app in labels:
    counts[(app, "post-alone")] = counts[(app, "post")] - counts[(app, "event")]
measured = dict(routes, event="its event delivered to the payment worker", **{"post-alone": "`POST /orders` without its event"})

def cell(app, route):
    if route == "event" and counts[(app, route)] == 0:
        return "none: no worker is asked"
    return f"{counts[(app, route)]:,} ({change(counts[(app, route)], counts[('before', route)])})"

for route, name in measured.items():
    cells = [f"{counts[('before', route)]:,}"] + [cell(app, route) for app in ("after", "after-jwt")]
    print(f"| {name} | " + " | ".join(cells) + " |")

print()
print(f"Wall clock (wrk; the median of {rounds} rounds taken in turns, the rounds' range in brackets, and the median p50):")
print()
print("| route | connections | " + " | ".join(labels.values()) + " |")
print("|---|---|---|---|---|")
runs = {}
for route, conns, app, rps, p50, _p99 in rows(wrk):
    runs.setdefault((route, conns, app), []).append((float(rps), ms(p50)))
for route, name in routes.items():
    for conns in ("1", "16"):
        before = statistics.median(rate for rate, _ in runs[(route, conns, "before")])
        cells = []
        for app in labels:
            rates = [rate for rate, _ in runs[(route, conns, app)]]
            median = statistics.median(rates)
            p50 = statistics.median(latency for _, latency in runs[(route, conns, app)])
            versus = "" if app == "before" else f" ({change(median, before)})"
            cells.append(f"{median:,.0f}{versus} req/s [{min(rates):,.0f}–{max(rates):,.0f}], p50 {p50:.2f} ms")
        print(f"| {name} | {conns} | " + " | ".join(cells) + " |")
PY
} > "$work/table.md"
cat "$work/table.md"
write_section orders-before-after "Orders before and after issue 12" "$work/table.md"
