#!/usr/bin/env bash
# Installs what building and testing berth needs, only when it is missing (idempotent).
set -euo pipefail

missing=()
need() { command -v "$1" >/dev/null 2>&1 || missing+=("$2"); }
need gcc gcc
need make make
need curl curl
need python3 python3
need nft nftables # Pod egress masquerade (berth up) and the network tests

if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "berth: missing packages: ${missing[*]} (run as root, or install them)" >&2
    exit 1
  fi
  echo "berth: installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "berth: cargo is missing; berth needs Rust 1.89 or newer (rustup: https://rustup.rs)" >&2
  exit 1
fi

if ! command -v kubectl >/dev/null 2>&1; then
  if [[ $(id -u) -eq 0 ]] && apt-get install -y -qq kubectl >/dev/null 2>&1; then
    echo "berth: installed kubectl"
  else
    echo "berth: kubectl is missing; install kubectl 1.27 or newer (https://kubernetes.io/docs/tasks/tools/)" >&2
    exit 1
  fi
fi
