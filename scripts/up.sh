#!/usr/bin/env bash
# Starts berth in the background (once), applies the Stack CRD and the demo Stack (its images come from
# `make images`), waits until the Stack is Ready, and says how to use it. Running it again changes nothing.
#
#   scripts/up.sh BERTH DATA_DIR LISTEN     (what `make up` runs)
#
# Environment: BERTH_REGISTRY (where `make images` pushed, default 127.0.0.1:5000), BERTH_HOST_PORT (the app's
# port on this machine, default 5500), BERTH_UP_FLAGS (more `berth up` flags, e.g. `--bridge b1 --pod-cidr
# 10.90.0.0/24`), BERTH_UP_TIMEOUT (how long to wait for Ready, default 300s).
set -euo pipefail
berth=$1 data_dir=$2 listen=$3
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
pidfile=$data_dir/berth.pid
log=$data_dir/berth.log
read -r -a up_flags <<<"${BERTH_UP_FLAGS:-}"
mkdir -p "$data_dir"

if [[ -f $pidfile ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
  echo "berth is already running (pid $(cat "$pidfile"), log $log)"
else
  rm -f "$data_dir/kubeconfig"
  nohup "$berth" up --data-dir "$data_dir" --listen "$listen" "${up_flags[@]}" >>"$log" 2>&1 &
  echo $! >"$pidfile"
  for _ in $(seq 1 100); do
    [[ -f $data_dir/kubeconfig ]] && break
    kill -0 "$(cat "$pidfile")" 2>/dev/null || { echo "berth failed to start; see $log" >&2; tail -n 20 "$log" >&2; exit 1; }
    sleep 0.1
  done
fi

export KUBECONFIG=$data_dir/kubeconfig
for _ in $(seq 1 100); do kubectl get --raw /readyz >/dev/null 2>&1 && break; sleep 0.1; done
kubectl apply -f "$repo/crds/"
kubectl wait --for=condition=Established crd/stacks.berth.dev --timeout=30s
# config/samples/stack.yaml, with this machine's registry and port.
# shellcheck source=scripts/overlay.sh
source "$repo/scripts/overlay.sh"
overlay=$(demo_overlay "$repo/config/samples")
trap 'rm -rf "$overlay"' EXIT
kubectl apply -k "$overlay"

# The first start pulls the images and initializes the database.
timeout=${BERTH_UP_TIMEOUT:-300s}
echo "waiting up to $timeout for stack/demo to be Ready"
if ! kubectl wait --for=condition=Ready stack/demo --timeout="$timeout"; then
  kubectl get stack demo -o wide >&2 || true
  kubectl get pods -o wide >&2 || true
  cat >&2 <<MSG
stack/demo is not Ready yet. See why with:
  export KUBECONFIG=$KUBECONFIG
  kubectl describe stack demo
  kubectl get events --sort-by=.lastTimestamp
berth's own log: $log
MSG
  exit 1
fi

cat <<MSG

The demo stack is up: http://127.0.0.1:${BERTH_HOST_PORT:-5500} (berth's log: $log). Point kubectl at it:
  export KUBECONFIG=$KUBECONFIG
  kubectl get stacks
  kubectl get pods
  kubectl logs -f -l berth.dev/stack=demo,berth.dev/component=app
  kubectl exec -it \$(kubectl get pod -o name -l berth.dev/stack=demo,berth.dev/component=database) -- psql -U demo demo
Variants: scripts/dev.sh (source mounted from examples/flask-app, Flask's reloader) or
  kubectl apply -k config/samples/prod (gunicorn).
berth runs in the background; \`make down\` stops it and every container it started (killing only berth up
leaves the containers running, for the next berth up to adopt).
MSG
