#!/usr/bin/env bash
# Offline validation of deploy/: creates (or reuses) a venv under target/,
# installs the pinned dependencies, runs tests/deploy/validate.py.
#   bash tests/deploy/run.sh               # render + validate every overlay
#   bash tests/deploy/run.sh --self-test   # ... and prove every rule can fail
# Environment: DEPLOY_VENV (default target/deploy-venv), SPINKUBE_SCHEMAS
# (default /work/shared/spinkube/jsonschema), DEPLOY_RENDERER=python to skip
# the kustomize/kubectl binary, SHOP_SPIN_TOML (default spin.toml).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
venv="${DEPLOY_VENV:-$root/target/deploy-venv}"
req="$root/tests/deploy/requirements.txt"
"$root/scripts/venv" "$venv" "$req"
exec "$venv/bin/python" "$root/tests/deploy/validate.py" "$@"
