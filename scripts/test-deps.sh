#!/usr/bin/env bash
# Installs what the image tests need, only when it is missing (idempotent): a real OCI registry
# (docker-registry), the tools that fill it (skopeo, umoci) and a static busybox to build images from.
set -euo pipefail

missing=()
command -v docker-registry >/dev/null 2>&1 || missing+=(docker-registry)
command -v skopeo >/dev/null 2>&1 || missing+=(skopeo)
command -v umoci >/dev/null 2>&1 || missing+=(umoci)
# The dynamically linked `busybox` package also provides /bin/busybox; images need the static one.
dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q 'install ok installed' || missing+=(busybox-static)
# The runtime benchmark runs `runc` side by side with berth's runtime.
command -v runc >/dev/null 2>&1 || missing+=(runc)

((${#missing[@]})) || exit 0

if [[ $(id -u) -ne 0 ]]; then
  echo "berth: missing test packages: ${missing[*]} (run as root, or install them)" >&2
  exit 1
fi
echo "berth: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -qq "${missing[@]}" >/dev/null 2>&1 || {
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
}
# Debian starts the registry it just installed on :5000 where an init system runs; the tests start their own.
if [[ " ${missing[*]} " == *" docker-registry "* ]] && command -v systemctl >/dev/null 2>&1 &&
  systemctl is-active --quiet docker-registry 2>/dev/null; then
  systemctl disable --now docker-registry >/dev/null 2>&1 || true
fi
