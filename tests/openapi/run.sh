#!/usr/bin/env bash
# Conformance check of docs/openapi.yaml against what the app serves.
#   bash tests/openapi/run.sh               # validate the spec, start the app, exercise and check it
#   bash tests/openapi/run.sh --self-test   # ... and prove that mutations of the spec are reported
#   bash tests/openapi/run.sh --verbose     # ... listing every exchange and unobserved statuses
# Creates (or reuses) a venv with the pinned dependencies, validates the spec
# (openapi-spec-validator), starts its own redis-server and the app on wharf
# (target/release/wharf with the components in target/wasm32-wasip2/wasm/,
# neither is built here) on free loopback ports with a fresh state directory,
# runs tests/openapi/check.py, and stops everything it started on exit.
# Environment: OPENAPI_VENV (default target/openapi-venv), WHARF (default
# target/release/wharf), OPENAPI_START_TIMEOUT (seconds for the app to come
# up, default 180: the first start compiles the components),
# OPENAPI_MANIFEST (default spin.toml; spin.p2.toml for the WASIp2 build),
# OPENAPI_SPIN (a real `spin` binary: run the app with `spin up` instead of
# wharf; tests/openapi/on-real-spin.sh does it with ../shared/spin).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
venv="${OPENAPI_VENV:-$root/target/openapi-venv}"
wharf="${WHARF:-$root/target/release/wharf}"
spec="$root/docs/openapi.yaml"
req="$root/tests/openapi/requirements.txt"
token="openapi-check-$$"
jwt_key="openapi-check-jwt-secret-of-32-bytes-$$"

"$root/scripts/venv" "$venv" "$req"
py="$venv/bin/python"

echo "openapi: validating $spec"
"$py" -m openapi_spec_validator "$spec"

manifest="${OPENAPI_MANIFEST:-spin.toml}"
suffix=""
[ "$manifest" = spin.p2.toml ] && suffix="_p2"
missing=()
if [ -n "${OPENAPI_SPIN:-}" ]; then
  [ -x "$OPENAPI_SPIN" ] || missing+=("$OPENAPI_SPIN (a spin binary)")
  runtime="spin ($("$OPENAPI_SPIN" --version 2>/dev/null | head -n 1))"
else
  [ -x "$wharf" ] || missing+=("$wharf (cargo build --release -p wharf)")
  runtime="wharf"
fi
for c in inventory order order_events payment payment_worker gateway_sandbox ops; do
  [ -f "$root/target/wasm32-wasip2/wasm/$c$suffix.wasm" ] || missing+=("target/wasm32-wasip2/wasm/$c$suffix.wasm (scripts/build-components)")
done
command -v redis-server >/dev/null || missing+=("redis-server (apt-get install redis-server)")
if [ ${#missing[@]} -gt 0 ]; then
  printf 'openapi: missing %s\n' "${missing[@]}" >&2
  exit 2
fi

work="$(mktemp -d)"
pids=()
cleanup() {
  # Each process was started as the leader of a process group of its own
  # (Spin runs each trigger in a child process): stop the whole group.
  for pid in "${pids[@]}"; do
    kill -- "-$pid" 2>/dev/null || kill "$pid" 2>/dev/null || true
  done
  for pid in "${pids[@]}"; do
    for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 -- "-$pid" 2>/dev/null || kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { "$py" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

redis_port="$(free_port)"
setsid redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no --dir "$work" \
  >"$work/redis.log" 2>&1 &
pids+=($!)

app_port="$(free_port)"
if [ -n "${OPENAPI_SPIN:-}" ]; then
  host=("$OPENAPI_SPIN")
else
  host=("$wharf")
fi
echo "openapi: the app ($manifest) on $runtime"
# Only the admin token, the JWT key and where Redis is: everything else
# (the payment provider included) keeps the manifest's defaults.
(cd "$root" && exec env SPIN_VARIABLE_ADMIN_TOKEN="$token" SPIN_VARIABLE_JWT_VERIFICATION_KEY="$jwt_key" \
  SPIN_VARIABLE_REDIS_HOST="127.0.0.1:$redis_port" \
  setsid "${host[@]}" up -f "$root/$manifest" --listen "127.0.0.1:$app_port" --state-dir "$work/state") \
  >"$work/wharf.log" 2>&1 &
wharf_pid=$!
pids=("$wharf_pid" "${pids[@]}")

# Wait for Redis, then for the host's health route, while wharf lives.
if ! "$py" - "$redis_port" "http://127.0.0.1:$app_port/.well-known/spin/health" "$wharf_pid" \
     "${OPENAPI_START_TIMEOUT:-180}" <<'PY'
import os, socket, sys, time, urllib.request
port, url, pid, timeout = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
deadline = time.monotonic() + timeout
def alive():
    try:
        os.kill(pid, 0)
        return True
    except OSError:
        return False
while time.monotonic() < deadline:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        break
    except OSError:
        time.sleep(0.1)
else:
    sys.exit("redis-server did not start")
while time.monotonic() < deadline and alive():
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            if response.status == 200:
                sys.exit(0)
    except OSError:
        pass
    time.sleep(0.2)
sys.exit("wharf exited" if not alive() else f"{url} did not answer within {timeout:.0f} s")
PY
then
  echo "openapi: the app did not start; $runtime log:" >&2
  tail -n 40 "$work/wharf.log" >&2 || true
  tail -n 10 "$work/redis.log" >&2 || true
  exit 1
fi

status=0
host_kind=wharf
[ -n "${OPENAPI_SPIN:-}" ] && host_kind=spin
"$py" "$root/tests/openapi/check.py" --base-url "http://127.0.0.1:$app_port" --host "$host_kind" \
  --redis-url "redis://127.0.0.1:$redis_port" --own-redis --spec "$spec" --admin-token "$token" --jwt-key "$jwt_key" "$@" || status=$?
if [ "$status" -ne 0 ]; then
  echo "openapi: last lines of the $runtime log:" >&2
  tail -n 20 "$work/wharf.log" >&2 || true
fi
exit "$status"
