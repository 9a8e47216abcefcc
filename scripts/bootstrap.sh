#!/usr/bin/env bash
# Prepare a machine for WebhookMaster: Java 17+, Maven and Chromium (from Debian's packages when
# missing and we may install), a Python >= 3.11 virtualenv in .venv with the project and its dev extras.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf 'bootstrap: %s\n' "$*" >&2; }

apt_install() {
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo -n"
  command -v apt-get >/dev/null 2>&1 || return 1
  say "installing $* with apt-get"
  $sudo apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "$@" >/dev/null
}

command -v java >/dev/null 2>&1 || apt_install openjdk-17-jre-headless || say "no Java found; install Java 17+"
command -v mvn >/dev/null 2>&1 || apt_install maven || say "no Maven found; install Maven"
# headless browser for tests/ingest_gateway/test_swagger_ui.py
command -v chromium >/dev/null 2>&1 || apt_install chromium || say "no Chromium found; install chromium"

python=""
for candidate in python3.13 python3.12 python3.11 python3; do
  if command -v "$candidate" >/dev/null 2>&1 && "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    python=$candidate; break
  fi
done
[ -n "$python" ] || { say "error: Python 3.11 or newer is required"; exit 1; }

if [ ! -x .venv/bin/python ]; then
  say "creating .venv with $python"
  "$python" -m venv .venv || { apt_install python3-venv && "$python" -m venv .venv; }
fi
stamp=.venv/.installed-$(sha1sum pyproject.toml | cut -c1-12)
if [ ! -f "$stamp" ]; then
  say "installing WebhookMaster and its dependencies into .venv"
  if ! { .venv/bin/pip install -q --upgrade pip && .venv/bin/pip install -q -e '.[dev,bench]'; } \
      >.venv/pip.log 2>&1; then
    tail -n 30 .venv/pip.log >&2
    say "error: installing the Python packages failed (full log: .venv/pip.log)"
    exit 1
  fi
  rm -f .venv/.installed-*
  touch "$stamp"
fi
