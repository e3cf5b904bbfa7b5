#!/usr/bin/env bash
# Starts berth in the background (once), applies the Stack CRD and the demo Stack, and says how to use it.
set -euo pipefail
berth=$1 data_dir=$2 listen=$3
pidfile=$data_dir/berth.pid
log=$data_dir/berth.log
mkdir -p "$data_dir"

if [[ -f $pidfile ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
  echo "berth is already running (pid $(cat "$pidfile"), log $log)"
else
  rm -f "$data_dir/kubeconfig"
  nohup "$berth" up --data-dir "$data_dir" --listen "$listen" >>"$log" 2>&1 &
  echo $! >"$pidfile"
  for _ in $(seq 1 100); do
    [[ -f $data_dir/kubeconfig ]] && break
    kill -0 "$(cat "$pidfile")" 2>/dev/null || { echo "berth failed to start; see $log" >&2; tail -n 20 "$log" >&2; exit 1; }
    sleep 0.1
  done
fi

export KUBECONFIG=$data_dir/kubeconfig
for _ in $(seq 1 100); do kubectl get --raw /readyz >/dev/null 2>&1 && break; sleep 0.1; done
kubectl apply -f crds/
kubectl wait --for=condition=Established crd/stacks.berth.dev --timeout=30s
kubectl apply -f config/samples/stack.yaml

cat <<MSG

berth is up (log: $log). Point kubectl at it:
  export KUBECONFIG=$KUBECONFIG
  kubectl get stacks
  kubectl get stack demo -o yaml
Stop it with: make down
MSG
