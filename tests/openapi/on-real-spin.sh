#!/usr/bin/env bash
# The OpenAPI conformance check (tests/openapi/run.sh) against real Spin:
# the WASIp2 build (spin.p2.toml) on Spin 3.6.3, the Spin inside SpinKube's
# shim, and the WASIp3 build (spin.toml) on Spin 4.1.0-pre0. Every route,
# error bodies and the saga, as on wharf, with no variable set but the admin
# token, the JWT key and where Redis is. The Spin binaries come from
# ../shared/spin next to the repository; without it this says it skipped.
# Arguments go to run.sh (e.g. --self-test).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
install="$root/../shared/spin/install.sh"
if [ ! -x "$install" ]; then
  echo "SKIPPED tests/openapi/on-real-spin.sh: no real Spin binaries at $root/../shared/spin (they come with the CI workspace)"
  exit 0
fi
status=0
for pair in "3.6.3 spin.p2.toml" "4.1.0-pre0 spin.toml"; do
  read -r version manifest <<<"$pair"
  spin="$("$install" "$version")"
  OPENAPI_SPIN="$spin" OPENAPI_MANIFEST="$manifest" bash "$root/tests/openapi/run.sh" "$@" || status=1
done
exit "$status"
