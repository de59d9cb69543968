#!/usr/bin/env bash
# The wharf image (deploy/wharf/Containerfile) under podman: its size, and
# the time from start to the first 200 on /.well-known/spin/health, against
# the same binary started natively, in one run. Cold: an empty compile
# cache (the components are compiled at start); warm: the cache of an
# earlier start (a volume for the container, a directory natively).
#
# Uses the images and podman config the container tests make, so run them
# first:  cargo test -p shop-tests --test containers
# Usage:  RUNS=5 bench/container-start.sh
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${RUNS:-5}
export CONTAINERS_CONF=$PWD/target/containers/containers.conf
export CONTAINERS_STORAGE_CONF=$PWD/target/containers/storage.conf
[ -f "$CONTAINERS_CONF" ] || { echo "no target/containers: run cargo test -p shop-tests --test containers first" >&2; exit 1; }
image=ghcr.io/example/wharf:0.1.0
binary=target/release/wharf
app_wasm=target/wasm32-wasip2/wasm/guest_hello.wasm
[ -f "$app_wasm" ] || { echo "$app_wasm missing: run scripts/build-components" >&2; exit 1; }

work=$(mktemp -d)
trap 'podman rm -f -t 0 bench-wharf >/dev/null 2>&1 || true; podman volume rm -f bench-wharf-cache >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
cp "$app_wasm" "$work/hello.wasm"
printf 'spin_manifest_version = 2\n[application]\nname = "hello"\n[[trigger.http]]\nroute = "/..."\ncomponent = "hello"\n[component.hello]\nsource = "hello.wasm"\n' > "$work/spin.toml"
chmod -R a+rX "$work"

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
health="http://127.0.0.1:$port/.well-known/spin/health"

# Milliseconds from now until health answers 200.
wait_health() {
  local start=$1
  until curl -fs -o /dev/null "$health"; do sleep 0.005; done
  echo $(( ($(date +%s%N) - start) / 1000000 ))
}

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

native() { # cache dir
  local start; start=$(date +%s%N)
  WHARF_CACHE_DIR=$1 "$binary" up --listen "127.0.0.1:$port" -f "$work/spin.toml" --state-dir "$work/state" >/dev/null 2>&1 &
  local pid=$!
  wait_health "$start"
  kill -TERM "$pid"; wait "$pid" || true
}

container() { # extra podman run args...
  local start; start=$(date +%s%N)
  podman run -d --name bench-wharf -p "127.0.0.1:$port:80" -v "$work:/app:ro" "$@" "$image" \
    up --listen 0.0.0.0:80 -f /app/spin.toml --state-dir /var/lib/wharf/state >/dev/null
  wait_health "$start"
  podman rm -f -t 10 bench-wharf >/dev/null
}

declare -A results
for i in $(seq "$runs"); do
  results[native_cold]+="$(native "$(mktemp -d -p "$work")") "
  container_cold=$(container); results[container_cold]+="$container_cold "
done
warm_cache=$(mktemp -d -p "$work"); native "$warm_cache" >/dev/null
podman volume create bench-wharf-cache >/dev/null
container -v bench-wharf-cache:/var/cache/wharf >/dev/null
for i in $(seq "$runs"); do
  results[native_warm]+="$(native "$warm_cache") "
  results[container_warm]+="$(container -v bench-wharf-cache:/var/cache/wharf) "
done

size() { podman image inspect "$1" --format '{{.Size}}' | awk '{printf "%.1f MB", $1/1e6}'; }
echo "| what | value |"
echo "| --- | --- |"
echo "| image $image | $(size "$image") |"
echo "| of which the base docker.io/library/debian:bookworm-slim (debootstrap minbase) | $(size docker.io/library/debian:bookworm-slim) |"
echo "| the binary ($binary) | $(stat -c %s "$binary" | awk '{printf "%.1f MB", $1/1e6}') |"
for key in native_cold container_cold native_warm container_warm; do
  echo "| start to health, $key (median of $runs, ms) | $(tr ' ' '\n' <<<"${results[$key]}" | grep . | median) (all: ${results[$key]% }) |"
done
