#!/usr/bin/env bash
# Stops what `make up` started.
set -euo pipefail
data_dir=$1
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
