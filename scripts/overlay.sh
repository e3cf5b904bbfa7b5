# shellcheck shell=bash
# Sourced by scripts/up.sh and scripts/dev.sh: `demo_overlay DIR [SOURCE]` writes a kustomization that applies the
# demo sample DIR (config/samples or one of its overlays) with this machine's settings, prints its directory, and
# leaves removing it to the caller. A committed overlay cannot know them:
#   BERTH_REGISTRY   the registry `make images` pushed to (scripts/images.sh; default 127.0.0.1:5000, the sample's)
#   BERTH_HOST_PORT  the app's hostPort (default 5500, the sample's)
#   SOURCE           the app's source directory on this machine (the dev overlay's hostPath; it must be absolute)
# Kustomize takes only relative paths to other kustomizations, so the overlay lives inside the checkout (.cache).

demo_overlay() {
  local sample=$1 source=${2:-}
  local repo registry=${BERTH_REGISTRY:-127.0.0.1:5000} host_port=${BERTH_HOST_PORT:-5500}
  repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
  [[ $host_port =~ ^[0-9]+$ ]] || { echo "BERTH_HOST_PORT must be a port number, not '$host_port'" >&2; return 1; }
  mkdir -p "$repo/.cache"
  local overlay
  overlay=$(mktemp -d "$repo/.cache/demo-overlay.XXXXXX")
  {
    cat <<YAML
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - $(realpath --relative-to="$overlay" "$sample")
YAML
    if [[ $registry != 127.0.0.1:5000 ]]; then
      # Kustomize's image transformer, told where a Stack keeps its images (kustomizeconfig below).
      echo "configurations:"
      echo "  - kustomizeconfig.yaml"
      echo "images:"
      local image
      grep -oE '127\.0\.0\.1:5000/[^:[:space:]]+' "$repo/config/samples/base/stack.yaml" | sort -u |
        while read -r image; do
          printf '  - name: %s\n    newName: %s\n' "$image" "$registry/${image#127.0.0.1:5000/}"
        done
    fi
    echo "patches:"
    echo "  - target: {group: berth.dev, kind: Stack, name: demo}"
    echo "    patch: |-"
    printf '      - {op: replace, path: /spec/app/ports/0/hostPort, value: %s}\n' "$host_port"
    if [[ -n $source ]]; then
      printf '      - {op: replace, path: /spec/app/volumes/0/hostPath/path, value: "%s"}\n' "$source"
    fi
  } >"$overlay/kustomization.yaml"
  cat >"$overlay/kustomizeconfig.yaml" <<YAML
images:
  - {kind: Stack, path: spec/app/image}
  - {kind: Stack, path: spec/database/image}
  - {kind: Stack, path: spec/redis/image}
YAML
  echo "$overlay"
}
