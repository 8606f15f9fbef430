#!/bin/sh
# Install what tests/test_gradio_browser.py needs: Debian chromium + chromium-driver (apt) and selenium (pip).
# Idempotent and quick when everything is there. Usage (as root): .ci/browser-deps.sh [PYTHON]
# PYTHON defaults to .venv/bin/python, else python3.
set -eu
cd "$(dirname "$0")/.."
PY=${1:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}

if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
  [ "$(id -u)" = 0 ] || { echo "browser-deps: need root to apt-get install chromium chromium-driver" >&2; exit 1; }
  export DEBIAN_FRONTEND=noninteractive
  apt-get -o DPkg::Lock::Timeout=600 update -qq
  apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends chromium chromium-driver >/dev/null
fi
"$PY" -c "import importlib.util as u, sys
sys.exit(not all(u.find_spec(m) for m in ('selenium', 'gradio', 'gradio_client')))" ||
  "$PY" -m pip install -q 'selenium>=4.20' 'gradio>=6,<7' gradio_client
