#!/usr/bin/env bash
# Stops what `make up` started: the `berth up` process, then (through `berth down`) every container it ran
# and its Pod network (bridge, veths, nftables table).
set -euo pipefail
data_dir=$1
root=$(cd "$(dirname "$0")/.." && pwd)
pidfile=$data_dir/berth.pid
if [[ -f $pidfile ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
  pid=$(cat "$pidfile")
  kill -INT "$pid"
  for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
  echo "berth stopped"
else
  echo "berth is not running"
fi
rm -f "$pidfile"
berth=${BERTH:-}
if [[ -z $berth ]]; then
  for candidate in "$root/target/release/berth" "$root/target/debug/berth" "$(command -v berth || true)"; do
    [[ -n $candidate && -x $candidate ]] && { berth=$candidate; break; }
  done
fi
if [[ -z $berth ]]; then
  echo "no berth binary found (build it with \`make build\`, or set BERTH): containers and the pod network stay" >&2
  exit 1
fi
[[ -d $data_dir ]] && "$berth" down --data-dir "$data_dir"
