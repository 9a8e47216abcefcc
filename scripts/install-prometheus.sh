#!/usr/bin/env bash
# Install Prometheus and promtool from Debian's `prometheus` package when either is missing
# (idempotent: does nothing when both are on PATH). Used by tests/deploy/test_alerts.py (promtool test
# rules) and tests/deploy/test_observability.py (a real Prometheus against the running components).
# The package's own service is not started: the tests run the binary themselves.
set -euo pipefail

say() { printf 'install-prometheus: %s\n' "$*" >&2; }

if command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1; then
  exit 0
fi
command -v apt-get >/dev/null 2>&1 || { say "error: apt-get not found; install Prometheus 2.x (prometheus and promtool) by hand"; exit 1; }
sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo -n"; fi
say "installing Debian's prometheus package with apt-get"
# policy-rc.d answering 101 keeps dpkg from starting the packaged service (we run the binary
# ourselves, on loopback, with our own configuration).
policy=/usr/sbin/policy-rc.d
created_policy=""
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null && $sudo chmod 755 "$policy" && created_policy=1
fi
cleanup() { if [ -n "$created_policy" ]; then $sudo rm -f "$policy"; fi; }
trap cleanup EXIT
apt() { DEBIAN_FRONTEND=noninteractive $sudo apt-get -o DPkg::Lock::Timeout=600 -q "$@"; }
if ! apt install -y --no-install-recommends prometheus >/dev/null; then
  apt update >/dev/null
  apt install -y --no-install-recommends prometheus >/dev/null
fi
command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1 \
  || { say "error: the prometheus package did not provide prometheus and promtool"; exit 1; }
say "$(promtool --version 2>&1 | head -n 1)"
