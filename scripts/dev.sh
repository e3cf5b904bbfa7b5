#!/usr/bin/env bash
# Applies the dev overlay (config/samples/dev) with the app's source mounted from this checkout: a hostPath must be
# absolute, which a committed overlay cannot know. Arguments go to `kubectl apply` (e.g. --dry-run=server);
# `scripts/dev.sh --print` prints the manifest instead.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
source_dir=$repo/examples/flask-app
# Kustomize takes only relative paths to other kustomizations, so the overlay lives inside the checkout.
mkdir -p "$repo/.cache"
overlay=$(mktemp -d "$repo/.cache/dev-overlay.XXXXXX")
trap 'rm -rf "$overlay"' EXIT

cat >"$overlay/kustomization.yaml" <<YAML
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - $(realpath --relative-to="$overlay" "$repo/config/samples/dev")
patches:
  - target:
      group: berth.dev
      kind: Stack
      name: demo
    patch: |-
      - op: replace
        path: /spec/app/volumes/0/hostPath/path
        value: $source_dir
YAML

if [[ ${1:-} == --print ]]; then
  kubectl kustomize "$overlay"
else
  kubectl apply -k "$overlay" "$@"
fi
