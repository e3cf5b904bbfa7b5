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
need ip iproute2  # the network tests' checks and cleanup

if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "berth: missing packages: ${missing[*]} (run as root, or install them)" >&2
    exit 1
  fi
  echo "berth: installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# Rust: berth needs 1.89 or newer (Cargo.toml's rust-version). Debian's rustc is older, so rustup installs a
# toolchain in ~/.cargo when there is none or it is too old.
RUST_MIN=1.89
rust_ok() {
  command -v cargo >/dev/null 2>&1 || return 1
  local v
  v=$(rustc --version 2>/dev/null | awk '{print $2}')
  [[ -n $v && $(printf '%s\n%s\n' "$RUST_MIN" "$v" | sort -V | head -1) == "$RUST_MIN" ]]
}
if ! rust_ok && [[ -x $HOME/.cargo/bin/cargo ]]; then
  export PATH="$HOME/.cargo/bin:$PATH"
fi
if ! rust_ok; then
  echo "berth: installing Rust (stable, minimal profile) with rustup into ~/.cargo"
  if command -v rustup >/dev/null 2>&1; then
    rustup toolchain install stable --profile minimal --component rustfmt,clippy
    rustup default stable
  else
    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs |
      sh -s -- -y --profile minimal --component rustfmt,clippy --no-modify-path
  fi
  export PATH="$HOME/.cargo/bin:$PATH"
  rust_ok || { echo "berth: Rust $RUST_MIN or newer is still missing (rustup: https://rustup.rs)" >&2; exit 1; }
  echo "berth: Rust is in ~/.cargo/bin; add it to PATH in your shell (make finds it there by itself)"
fi

# kubectl: Debian has no kubectl package (its kubernetes-client is 1.20), so the Kubernetes project's apt
# repository (pkgs.k8s.io) is added, signed by its key, the way kubernetes.io's install guide does it.
KUBECTL_MINOR=v1.32
if ! command -v kubectl >/dev/null 2>&1; then
  if [[ $(id -u) -ne 0 ]]; then
    echo "berth: kubectl is missing; install kubectl 1.27 or newer (https://kubernetes.io/docs/tasks/tools/)" >&2
    exit 1
  fi
  echo "berth: installing kubectl ${KUBECTL_MINOR} from pkgs.k8s.io"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gpg ca-certificates >/dev/null
  install -d -m 0755 /etc/apt/keyrings
  curl -fsSL "https://pkgs.k8s.io/core:/stable:/${KUBECTL_MINOR}/deb/Release.key" |
    gpg --dearmor --yes -o /etc/apt/keyrings/kubernetes-apt-keyring.gpg
  echo "deb [signed-by=/etc/apt/keyrings/kubernetes-apt-keyring.gpg] https://pkgs.k8s.io/core:/stable:/${KUBECTL_MINOR}/deb/ /" \
    >/etc/apt/sources.list.d/kubernetes.list
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq kubectl >/dev/null
  command -v kubectl >/dev/null 2>&1 || { echo "berth: installing kubectl failed" >&2; exit 1; }
fi
