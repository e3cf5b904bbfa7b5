#!/usr/bin/env bash
# Prepares the Python virtualenv that drives Helm in e2e/tests/helm.rs: helm-python-sdk, which carries Helm's
# Go engine (Helm v4) as a shared library, so no helm binary is needed. Idempotent and cached: a venv that
# already has the pinned SDK is left alone. Prints nothing but errors unless it installs something.
#
#   e2e/helm/setup.sh [VENV_DIR]      (default: target/helm-venv, or $BERTH_HELM_VENV)
set -euo pipefail
cd "$(dirname "$0")/../.."

SDK_VERSION=0.2.2
venv=${1:-${BERTH_HELM_VENV:-target/helm-venv}}

have_sdk() {
  [[ -x "$venv/bin/python" ]] &&
    "$venv/bin/python" - "$SDK_VERSION" >/dev/null 2>&1 <<'PY'
import sys
from importlib.metadata import version
assert version("helm-python-sdk") == sys.argv[1]
import helm_python  # loads the native library
PY
}

if have_sdk; then
  exit 0
fi

# Two test runs may set up at once: the second waits for the first, then finds its venv.
mkdir -p "$(dirname "$venv")"
exec 9>"$venv.lock"
if command -v flock >/dev/null 2>&1; then
  flock 9
  if have_sdk; then
    exit 0
  fi
fi

if ! command -v python3 >/dev/null 2>&1; then
  echo "helm setup: python3 is missing" >&2
  exit 1
fi

# Debian's python3 ships without venv/ensurepip; python3-venv brings both.
if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
  if [[ $(id -u) -ne 0 ]]; then
    echo "helm setup: python3-venv is missing (run as root, or install it)" >&2
    exit 1
  fi
  echo "helm setup: installing python3-venv"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
fi

echo "helm setup: creating $venv with helm-python-sdk $SDK_VERSION"
rm -rf "$venv"
python3 -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-input "helm-python-sdk==$SDK_VERSION"
have_sdk || { echo "helm setup: helm-python-sdk did not import from $venv" >&2; exit 1; }
