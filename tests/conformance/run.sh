#!/usr/bin/env bash
# Spin's public conformance suite against this build of wharf: every test,
# PostgreSQL and MQTT included (their servers start per test), with the
# suite's core modules (componentized at load) and then with its
# pre-built components. The suite is built outside the repo, in
# ../shared/conformance (CONFORMANCE_DIR overrides); where it is absent the
# run says so in one line and passes.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
suite="${CONFORMANCE_DIR:-$root/../shared/conformance}"
if [ ! -f "$suite/run.py" ]; then
  echo "conformance: skipped, Spin's conformance suite is not at $suite (see README)"
  exit 0
fi
wharf="$root/target/release/wharf"
for file in module.wasm component.wasm; do
  python3 "$suite/run.py" --with-postgres --with-mqtt --component-file "$file" \
    --runtime "$wharf up -f {manifest} --listen 127.0.0.1:{port} --state-dir {dir}/.state"
done
