#!/usr/bin/env bash
# Applies the dev overlay (config/samples/dev) with the app's source mounted from this checkout, or from
# BERTH_DEV_SOURCE: a hostPath must be absolute, which a committed overlay cannot know. BERTH_REGISTRY and
# BERTH_HOST_PORT as for scripts/up.sh (scripts/overlay.sh). Arguments go to `kubectl apply` (e.g.
# --dry-run=server); `scripts/dev.sh --print` prints the manifest instead.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
source_dir=$(realpath "${BERTH_DEV_SOURCE:-$repo/examples/flask-app}")
[[ -f $source_dir/app.py ]] || { echo "$source_dir holds no app.py: set BERTH_DEV_SOURCE to the app's source" >&2; exit 1; }
# shellcheck source=scripts/overlay.sh
source "$repo/scripts/overlay.sh"
overlay=$(demo_overlay "$repo/config/samples/dev" "$source_dir")
trap 'rm -rf "$overlay"' EXIT

if [[ ${1:-} == --print ]]; then
  kubectl kustomize "$overlay"
else
  kubectl apply -k "$overlay" "$@"
fi
