#!/usr/bin/env bash
# Called from .ci/run: regenerate tests/golden/lava with Lava when Python 3.10 exists.
set -euo pipefail
cd "$(dirname "$0")/.."
# --- Lava goldens (tests/golden/lava): when a Python 3.10 interpreter exists, regenerate them
# with Lava itself and fail if any value differs (docs/neuromorphic.md); about a minute
py310=""
for c in python3.10 "$HOME"/.pyenv/versions/3.10.*/bin/python; do
  if "$c" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 10))' >/dev/null 2>&1; then
    py310="$c"; break
  fi
done
if [ -n "$py310" ]; then
  lava_tmp="$(mktemp -d)"
  "$py310" -m venv "$lava_tmp/venv"
  "$lava_tmp/venv/bin/python" -m pip install -q lava-nc==0.10.0
  "$lava_tmp/venv/bin/python" tools/lava_golden.py --check
  rm -rf "$lava_tmp"
else
  echo "lava goldens: no Python 3.10 interpreter; the tests compare against the committed files"
fi
